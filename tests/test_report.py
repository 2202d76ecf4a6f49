"""isoflow.report: tables and figures, on small inputs written in the DESIGN.md formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isoflow import report
from isoflow.errors import InputError
from isoflow.experiments import expand_experiments
from isoflow.metrics import evaluate, within_gene_spearman

TISSUES = ["Adipose Tissue", "Brain", "Liver", "Lung", "Testis"]
PAPER = {"label": "IsoFormer paper (test label)", "r2": 0.53, "spearman": 0.72}


# ---------------------------------------------------------------- inputs in the contract formats


def write_data_inputs(root: Path, n_genes: int = 40, seed: int = 0) -> None:
    """transcripts.parquet, targets stats, splits, rna/protein FASTA under ``root/results``."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_genes):
        for t in range(1 + g % 4):
            rows.append(
                {
                    "transcript_id": f"ENST{g:05d}{t}.1",
                    "gene_id": f"ENSG{g:05d}.1",
                    "gene_name": f"G{g}",
                    "transcript_type": ["protein_coding", "lncRNA", "retained_intron"][(g + t) % 3],
                }
            )
    transcripts = pd.DataFrame(rows)
    (root / "results/annotation").mkdir(parents=True, exist_ok=True)
    transcripts.to_parquet(root / "results/annotation/transcripts.parquet")

    (root / "results/targets").mkdir(parents=True, exist_ok=True)
    stats = "tissue\tn_samples\tmean\tsd\n" + "".join(
        f"{t}\t{10 + 3 * i}\t{1.5 + i / 10:.3f}\t0.800\n" for i, t in enumerate(TISSUES)
    )
    stats += "# transcripts in GTEx only: 3\n# in annotation only: 2\n# in both: 100\n"
    (root / "results/targets/smts.stats.tsv").write_text(stats)

    (root / "results/splits").mkdir(parents=True, exist_ok=True)
    split_of_gene = {
        g: ["train", "train", "train", "valid", "test"][i % 5]
        for i, g in enumerate(transcripts["gene_id"].unique())
    }
    splits = transcripts[["transcript_id", "gene_id"]].assign(
        split=transcripts["gene_id"].map(split_of_gene)
    )
    splits.to_csv(root / "results/splits/gene.tsv", sep="\t", index=False)

    (root / "results/sequences").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "results/sequences/rna.fa.gz", "wt") as rna:
        for tid in transcripts["transcript_id"]:
            seq = "".join(rng.choice(list("ACGT"), int(rng.integers(50, 5000))))
            rna.write(f">{tid}\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)))
            rna.write("\n")
    with gzip.open(root / "results/sequences/protein.fa.gz", "wt") as protein:
        for tid in transcripts["transcript_id"][::2]:
            seq = "M" + "".join(
                rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(rng.integers(20, 900)))
            )
            protein.write(f">{tid}\n{seq}\n")


def write_run(root: Path, run: str, quality: float, seed: int = 0, n_genes: int = 30) -> Path:
    """metrics.json (from isoflow.metrics.evaluate), predictions.parquet, history.csv."""
    rng = np.random.default_rng(seed)
    genes = np.repeat([f"ENSG{g:05d}.1" for g in range(n_genes)], 3)
    transcripts = [f"ENST{i:06d}.1" for i in range(len(genes))]
    observed = rng.gamma(2.0, 1.0, size=(len(genes), len(TISSUES)))
    noise = rng.normal(size=observed.shape) * np.linspace(0.3, 2.0, len(TISSUES))
    predicted = quality * observed + (1 - quality) * observed.mean() + noise * (1 - quality)
    metrics = evaluate(genes, observed, predicted, TISSUES)
    out = root / "results/runs" / run
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics))
    long = pd.DataFrame(
        {
            "transcript_id": np.repeat(transcripts, len(TISSUES)),
            "gene_id": np.repeat(genes, len(TISSUES)),
            "tissue": np.tile(TISSUES, len(genes)),
            "observed": observed.ravel(),
            "predicted": predicted.ravel(),
        }
    )
    long.to_parquet(out / "predictions.parquet")
    # Lightning's CSVLogger style: step rows with train_loss, epoch rows with val columns.
    lines = ["epoch,step,train_loss,val_loss,val_r2"]
    for epoch in range(4):
        lines.append(f"{epoch},{epoch * 10 + 5},{2.0 / (epoch + 1):.4f},,")
        lines.append(f"{epoch},{epoch * 10 + 9},,{2.2 / (epoch + 1):.4f},{0.1 * epoch:.3f}")
    (out / "history.csv").write_text("\n".join(lines) + "\n")
    return out


EXPERIMENTS_CONFIG = {
    "experiments": [
        {"modalities": ["dna", "rna", "protein"]},
        {"modalities": ["dna", "rna", "protein"], "seed": 1},
        {"modalities": ["rna", "protein"]},
        {"modalities": ["dna"]},
        {"modalities": ["dna", "rna", "protein"], "aggregator": "concat"},
        {"modalities": ["dna", "rna", "protein"], "dna_encoder": "borzoi"},
        {"modalities": ["dna", "rna", "protein"], "fraction": 0.25},
    ]
}


def write_all_runs(root: Path) -> dict[str, dict]:
    experiments = expand_experiments(EXPERIMENTS_CONFIG)
    for i, run in enumerate(experiments):
        write_run(root, run, quality=0.4 + 0.07 * i, seed=i)
    return experiments


# ---------------------------------------------------------------- data tables


def test_biotype_table_counts_transcripts_and_genes():
    frame = pd.DataFrame(
        {
            "transcript_id": ["a", "b", "c", "d"],
            "gene_id": ["g1", "g2", "g2", "g3"],
            "transcript_type": ["lncRNA", "protein_coding", "protein_coding", "protein_coding"],
        }
    )
    table = report.biotype_table(frame)
    assert list(table["transcript type"]) == ["protein_coding", "lncRNA"]
    assert list(table["transcripts"]) == [3, 1]
    assert list(table["genes"]) == [2, 1]
    assert table["fraction"].sum() == pytest.approx(1.0)


def test_split_table_counts_and_flags_genes_on_two_sides():
    splits = pd.DataFrame(
        {
            "transcript_id": ["a", "b", "c", "d", "e"],
            "gene_id": ["g1", "g1", "g2", "g3", "g3"],
            "split": ["train", "train", "valid", "train", "test"],
        }
    )
    table = report.split_table(splits).set_index("split")
    assert table.loc["train", "transcripts"] == 3
    assert table.loc["train", "genes"] == 2
    assert table.loc["test", "transcripts"] == 1
    assert table.loc["train", "genes also in another split"] == 1  # g3
    assert table.loc["valid", "genes also in another split"] == 0
    assert table["fraction of transcripts"].sum() == pytest.approx(1.0)


def test_read_splits_rejects_an_unknown_split_naming_the_line(tmp_path):
    path = tmp_path / "gene.tsv"
    path.write_text("transcript_id\tgene_id\tsplit\na\tg1\ttrain\nb\tg2\tvalidation\n")
    with pytest.raises(InputError, match=r"gene.tsv:3: split 'validation' is not one of"):
        report.read_splits(path)


def test_read_tissue_stats_drops_comment_lines(tmp_path):
    write_data_inputs(tmp_path)
    stats = report.read_tissue_stats(tmp_path / "results/targets/smts.stats.tsv")
    assert list(stats["tissue"]) == TISSUES
    assert stats["n_samples"].tolist() == [10, 13, 16, 19, 22]


def test_sequence_lengths_and_limits(tmp_path):
    fasta = tmp_path / "x.fa.gz"
    with gzip.open(fasta, "wt") as fh:
        fh.write(">a\nACGT\nAC\n>b\nA\n>c\n" + "A" * 60 + "\n" + "C" * 40 + "\n")
    lengths = report.sequence_lengths(fasta)
    assert lengths.tolist() == [6, 1, 100]
    table = report.length_table({"RNA": lengths}, {"RNA": 5}).iloc[0]
    assert table["over limit"] == 2
    assert table["max"] == 100 and table["min"] == 1 and table["median"] == 6


# ---------------------------------------------------------------- run readers and views


def test_read_metrics_missing_key_is_one_line_error(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"mean": {"r2": 0.1, "spearman": 0.2, "pearson": 0.3}}))
    with pytest.raises(InputError, match=r"metrics.json:per_tissue: missing key"):
        report.read_metrics(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"metrics.json:1: not valid JSON"):
        report.read_metrics(path)


def test_read_history_merges_lightning_step_and_epoch_rows(tmp_path):
    out = write_run(tmp_path, "r", quality=0.5)
    history = report.read_history(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["train_loss"].tolist() == pytest.approx([2.0, 1.0, 0.6667, 0.5], abs=1e-4)
    assert history["val_loss"].notna().all()
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,train_loss\n0,1.0\n")
    with pytest.raises(InputError, match=r"bad.csv:1: missing column 'val_loss'"):
        report.read_history(bad)


def test_read_predictions_requires_the_long_columns(tmp_path):
    path = tmp_path / "predictions.parquet"
    pd.DataFrame({"transcript_id": ["a"], "tissue": ["Brain"]}).to_parquet(path)
    with pytest.raises(InputError, match=r"missing columns \['gene_id', 'observed'"):
        report.read_predictions(path)


def test_within_gene_rhos_mean_is_the_metrics_value(tmp_path):
    out = write_run(tmp_path, "r", quality=0.6)
    predictions = report.read_predictions(out / "predictions.parquet")
    metrics = report.read_metrics(out / "metrics.json")
    rhos = report.within_gene_rhos(predictions)
    assert len(rhos) > 0 and rhos["rho"].between(-1, 1).all()
    assert rhos["rho"].mean() == pytest.approx(metrics["within_gene_spearman"], abs=1e-9)


def test_within_gene_rhos_by_hand():
    predictions = pd.DataFrame(
        {
            "gene_id": ["g1"] * 3 + ["g2"] * 2 + ["g3"],
            "tissue": ["T"] * 6,
            "observed": [1.0, 2.0, 3.0, 5.0, 5.0, 1.0],  # g2 constant -> undefined
            "predicted": [3.0, 2.0, 1.0, 1.0, 2.0, 1.0],  # g1 reversed -> -1; g3 one isoform
        }
    )
    rhos = report.within_gene_rhos(predictions)
    assert rhos["gene_id"].tolist() == ["g1"]
    assert rhos["rho"].tolist() == pytest.approx([-1.0])
    genes, obs, pred = predictions["gene_id"], predictions["observed"], predictions["predicted"]
    assert within_gene_spearman(genes, obs.to_numpy(), pred.to_numpy()) == pytest.approx(-1.0)


def test_scatter_tissues_spread_over_r2_from_best_to_worst():
    per_tissue = {
        t: {"r2": r2, "spearman": 0.5, "pearson": 0.5}
        for t, r2 in zip("ABCDEFG", [0.1, 0.9, None, 0.5, 0.3, 0.7, -0.2], strict=True)
    }
    metrics = {"per_tissue": per_tissue}
    assert report.scatter_tissues(metrics, 3) == ["B", "E", "C"]  # best, middle, worst(None)
    assert report.scatter_tissues(metrics, 1) == ["B"]
    assert len(report.scatter_tissues(metrics, 20)) == 7


def test_per_tissue_table_ends_with_the_mean_row(tmp_path):
    metrics = report.read_metrics(write_run(tmp_path, "r", quality=0.5) / "metrics.json")
    table = report.per_tissue_table(metrics)
    assert table["tissue"].tolist() == [*TISSUES, "mean"]
    assert table.iloc[-1]["R²"] == pytest.approx(metrics["mean"]["r2"])
    assert table.iloc[0]["Spearman"] == metrics["per_tissue"][TISSUES[0]]["spearman"]


# ---------------------------------------------------------------- across experiments


def test_ablation_groups_vary_one_factor_and_pool_seeds():
    experiments = expand_experiments(EXPERIMENTS_CONFIG)
    modalities = report.ablation_groups(experiments, "modalities")
    assert len(modalities) == 1
    levels = modalities[0]["levels"]
    assert set(levels) == {"dna+rna+protein", "rna+protein", "dna"}
    assert levels["dna+rna+protein"] == [
        "dna+rna+protein_enformer_cross_attention_s0",
        "dna+rna+protein_enformer_cross_attention_s1",
    ]
    aggregator = report.ablation_groups(experiments, "aggregator")
    assert [set(g["levels"]) for g in aggregator] == [{"cross_attention", "concat"}]
    encoder = report.ablation_groups(experiments, "dna_encoder")
    assert [set(g["levels"]) for g in encoder] == [{"enformer", "borzoi"}]
    # rna+protein runs carry dna_encoder=enformer but use no DNA: not in the encoder ablation.
    assert all(
        "rna+protein_enformer_cross_attention_s0" not in runs
        for g in encoder
        for runs in g["levels"].values()
    )
    scaling = report.ablation_groups(experiments, "fraction")
    assert [sorted(g["levels"]) for g in scaling] == [["0.25", "1"]]
    assert (
        report.ablation_groups({"only": experiments[next(iter(experiments))]}, "aggregator") == []
    )
    with pytest.raises(ValueError, match="unknown ablation factor"):
        report.ablation_groups(experiments, "seed")


def test_ablation_table_means_over_seeds_and_puts_the_paper_last(tmp_path):
    experiments = write_all_runs(tmp_path)
    metrics = {
        run: report.read_metrics(tmp_path / "results/runs" / run / "metrics.json")
        for run in experiments
    }
    table = report.ablation_table(experiments, metrics, "modalities", PAPER)
    full = table[table["modalities"] == "dna+rna+protein"].iloc[0]
    seeds = [
        metrics[f"dna+rna+protein_enformer_cross_attention_s{s}"]["mean"]["r2"] for s in (0, 1)
    ]
    assert full["seeds"] == 2
    assert full["R²"] == pytest.approx(np.mean(seeds))
    assert full["R² sd"] == pytest.approx(np.std(seeds, ddof=1))
    single = table[table["modalities"] == "dna"].iloc[0]
    assert pd.isna(single["R² sd"])
    last = table.iloc[-1]
    assert last["source"] == report.SOURCE_PAPER
    assert (last["R²"], last["Spearman"]) == (0.53, 0.72)
    assert last["modalities"] == PAPER["label"]
    assert (table.iloc[:-1]["source"] == report.SOURCE_RUN).all()
    no_paper = report.ablation_table(experiments, metrics, "modalities", None)
    assert (no_paper["source"] == report.SOURCE_RUN).all()


def test_ablation_display_writes_mean_plus_minus_sd(tmp_path):
    experiments = write_all_runs(tmp_path)
    metrics = {
        run: report.read_metrics(tmp_path / "results/runs" / run / "metrics.json")
        for run in experiments
    }
    table = report.ablation_table(experiments, metrics, "modalities", PAPER)
    shown = report.ablation_display(table, "modalities")
    assert list(shown.columns[:3]) == ["source", "modalities", "R²"]
    assert "comparison" not in shown.columns  # one comparison only
    assert "held fixed" not in shown.columns  # stated once in the note instead
    full = table.iloc[0]
    assert shown.iloc[0]["R²"] == f"{full['R²']:.3f} ± {full['R² sd']:.3f}"
    assert shown.iloc[-1]["R²"] == "0.530" and shown.iloc[-1]["source"] == report.SOURCE_PAPER
    page = report.table_html(shown, "x")
    assert f'<td class="num">{full["R²"]:.3f} ± {full["R² sd"]:.3f}</td>' in page


def test_runs_table_lists_every_run_then_the_paper(tmp_path):
    experiments = write_all_runs(tmp_path)
    metrics = {
        run: report.read_metrics(tmp_path / "results/runs" / run / "metrics.json")
        for run in experiments
    }
    table = report.runs_table(experiments, metrics, PAPER)
    assert table["run"].tolist() == [*experiments, PAPER["label"]]
    first = next(iter(experiments))
    assert table.iloc[0]["R²"] == metrics[first]["mean"]["r2"]
    assert table.iloc[0]["within-gene Spearman"] == metrics[first]["within_gene_spearman"]
    assert pd.isna(table.iloc[-1]["within-gene Spearman"])


def test_table_html_escapes_and_marks_the_paper_row():
    table = pd.DataFrame(
        [
            {"source": report.SOURCE_RUN, "run": "<b>x</b>", "R²": 0.12345, "n": 1234},
            {"source": report.SOURCE_PAPER, "run": "paper", "R²": 0.53, "n": None},
        ]
    )
    page = report.table_html(table, "T & U", note="a note")
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "<h2>T &amp; U</h2>" in page
    assert '<td class="num">0.123</td>' in page and '<td class="num">1,234</td>' in page
    assert page.count('<tr class="paper">') == 1
    assert '<tr class="paper"><td>reported in paper</td><td>paper</td>' in page


# ---------------------------------------------------------------- entry points write the files


def test_data_views_write_figures_and_tables(tmp_path):
    write_data_inputs(tmp_path)
    res, out = tmp_path / "results", tmp_path / "out"
    report.build_biotypes(res / "annotation/transcripts.parquet", out / "b.svg", out / "b.html")
    report.build_tissues(res / "targets/smts.stats.tsv", out / "t.svg", out / "t.html")
    report.build_splits(res / "splits/gene.tsv", out / "s.svg", out / "s.html", "gene")
    report.build_lengths(
        res / "sequences/rna.fa.gz",
        res / "sequences/protein.fa.gz",
        out / "l.svg",
        out / "l.html",
        max_nt=3000,
        max_aa=500,
    )
    for name in ("b", "t", "s", "l"):
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
        assert "</table>" in (out / f"{name}.html").read_text()
    assert "Liver" in (out / "t.svg").read_text()  # SVG text stays text
    assert "protein_coding" in (out / "b.html").read_text()
    assert "model limit 3,000 nt" in (out / "l.svg").read_text()
    assert not list(out.glob(".*.tmp"))


def test_run_views_and_a_bad_metrics_file_leaves_no_output(tmp_path):
    run_dir = write_run(tmp_path, "dna+rna+protein_enformer_cross_attention_s0", quality=0.6)
    out = tmp_path / "out"
    outputs = dict(
        curves=out / "curves.svg",
        tissue_table=out / "per_tissue.html",
        tissue_figure=out / "per_tissue.svg",
        scatter=out / "scatter.png",
        within_gene=out / "within_gene.svg",
    )
    args = (run_dir / "metrics.json", run_dir / "history.csv", run_dir / "predictions.parquet")
    report.build_run("myrun", *args, **outputs, n_scatter=3, max_points=100)
    assert (out / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "val_r2" in (out / "curves.svg").read_text()
    assert "Testis" in (out / "per_tissue.html").read_text()
    assert "Within-gene isoform ranking" in (out / "within_gene.svg").read_text()

    (run_dir / "metrics.json").write_text("{}")
    fresh = {k: tmp_path / "fresh" / v.name for k, v in outputs.items()}
    with pytest.raises(InputError):
        report.build_run("myrun", *args, **fresh)
    assert not (tmp_path / "fresh").exists() or not list((tmp_path / "fresh").iterdir())


def test_experiment_views_name_the_paper_as_the_paper(tmp_path):
    experiments = write_all_runs(tmp_path)
    paths = [tmp_path / "results/runs" / run / "metrics.json" for run in experiments]
    out = tmp_path / "out"
    report.build_experiments(
        experiments,
        paths,
        PAPER,
        out / "runs.html",
        out / "runs.tsv",
        out / "runs.svg",
        out / "wg.svg",
    )
    page = (out / "runs.html").read_text()
    assert "IsoFormer paper (test label)" in page and "not from this workflow" in page
    tsv = pd.read_csv(out / "runs.tsv", sep="\t")
    assert len(tsv) == len(experiments) + 1
    assert "reported" in (out / "runs.svg").read_text()
    for factor in (*report.FACTORS, "fraction"):
        report.build_ablation(
            experiments, paths, factor, PAPER, out / f"a_{factor}.html", out / f"a_{factor}.svg"
        )
        assert "reported in paper" in (out / f"a_{factor}.html").read_text()
    held = "Held fixed: DNA encoder enformer, aggregator cross_attention, training fraction 1."
    assert held in (out / "a_modalities.html").read_text()
    assert "Data scaling" in (out / "a_fraction.svg").read_text()
    with pytest.raises(InputError, match="no metrics.json given"):
        report.build_ablation(
            experiments, paths[:-1], "modalities", PAPER, out / "x.html", out / "x.svg"
        )


def test_report_paths_ask_only_for_views_the_runs_support():
    data_only = report.report_paths({})
    assert len(data_only) == 8 and "results/report/data/lengths.svg" in data_only
    assert not [p for p in data_only if "/experiments/" in p or "/runs/" in p]
    experiments = expand_experiments(EXPERIMENTS_CONFIG)
    paths = report.report_paths(experiments, "out")
    for factor in ("modalities", "dna_encoder", "aggregator"):
        assert f"out/experiments/ablation_{factor}.html" in paths
    assert "out/experiments/scaling.svg" in paths
    assert sum(p.endswith("/scatter.png") for p in paths) == len(experiments)
    one = dict(list(experiments.items())[:1])
    assert not [p for p in report.report_paths(one) if "ablation" in p or "scaling" in p]
    assert "results/report/experiments/runs.html" in report.report_paths(one)
    assert len(set(paths)) == len(paths)
