"""isoflow.report: tables and figures, on small inputs written in the DESIGN.md formats."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.experiments import ABLATIONS
from helpers.report_inputs import (
    TISSUES,
    build_experiments,
    write_baseline,
    write_data_inputs,
    write_run,
)
from isoflow.errors import InputError
from isoflow.experiments import (
    FACTORS,
    ablation_groups,
    control_runs,
    expand_experiments,
    setting_groups,
)
from isoflow.metrics import within_gene_spearman
from isoflow.report import build, figures, readers, tables
from isoflow.splits import read_splits

PAPER = {"label": "IsoFormer paper (test label)", "r2": 0.53, "spearman": 0.72}


def write_all_runs(root: Path) -> dict[str, dict]:
    experiments = expand_experiments(ABLATIONS)
    for i, run in enumerate(experiments):
        write_run(root, run, quality=0.4 + 0.07 * i, seed=i)
    return experiments


def load_metrics(root: Path, experiments) -> dict[str, dict]:
    return {
        run: readers.read_metrics(root / "results/runs" / run / "metrics.json")
        for run in experiments
    }


def collapse(run_dir: Path) -> dict:
    """Rewrite a run as collapsed: constant predictions, metrics marked so."""
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    predictions["predicted"] = 1.0
    predictions.to_parquet(run_dir / "predictions.parquet")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.update(collapsed=True, prediction_spread=0.0)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


# ---------------------------------------------------------------- data tables


def test_biotype_table_counts_transcripts_and_genes():
    frame = pd.DataFrame(
        {
            "transcript_id": ["a", "b", "c", "d"],
            "gene_id": ["g1", "g2", "g2", "g3"],
            "transcript_type": ["lncRNA", "protein_coding", "protein_coding", "protein_coding"],
        }
    )
    table = tables.biotype_table(frame)
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
    table = tables.split_table(splits).set_index("split")
    assert table.loc["train", "transcripts"] == 3
    assert table.loc["train", "genes"] == 2
    assert table.loc["test", "transcripts"] == 1
    assert table.loc["train", "genes also in another split"] == 1  # g3
    assert table.loc["valid", "genes also in another split"] == 0
    assert table["fraction of transcripts"].sum() == pytest.approx(1.0)


def test_split_view_reads_the_splits_through_their_owner(tmp_path):
    """build_splits reads with isoflow.splits.read_splits: its checks, its one-line errors
    (the line of an unknown split, a transcript listed twice), and no output on error."""
    path, out = tmp_path / "gene.tsv", tmp_path / "out"
    path.write_text("transcript_id\tgene_id\tsplit\na\tg1\ttrain\nb\tg2\tvalidation\n")
    with pytest.raises(InputError, match=r"gene.tsv:3: split 'validation' is not train/valid"):
        build.build_splits(path, out / "s.svg", out / "s.html", "gene")
    path.write_text("transcript_id\tgene_id\tsplit\na\tg1\ttrain\na\tg1\ttest\n")
    with pytest.raises(InputError, match=r"gene.tsv:3: transcript a listed twice"):
        build.build_splits(path, out / "s.svg", out / "s.html", "gene")
    assert not out.exists()


def test_split_view_counts_held_out_transcripts_at_a_train_tss_of_another_gene(tmp_path):
    """A reviewer's finding: under the gene scheme a readthrough gene's transcript (its own
    gene ID, its parent's TSS) can be in test while the parent is in train. With the
    annotation, the splits view counts such transcripts (same TSS, and a train TSS of another
    gene within 1 kb) per held-out split, and says what the scheme does about them."""
    splits = tmp_path / "gene.tsv"
    splits.write_text(
        "transcript_id\tgene_id\tsplit\na\tPARENT.1\ttrain\nb\tREADTHROUGH.1\ttest\n"
        "c\tNEIGHBOUR.1\ttest\nd\tFAR.1\tvalid\n"
    )
    annotation = tmp_path / "transcripts.parquet"
    pd.DataFrame(
        {"transcript_id": ["a", "b", "c", "d"],
         "gene_id": ["PARENT.1", "READTHROUGH.1", "NEIGHBOUR.1", "FAR.1"],
         "chrom": ["chr2"] * 4, "strand": ["+", "+", "-", "+"],
         "tss": [1000, 1000, 400, 90_000]}
    ).to_parquet(annotation)  # fmt: skip
    html = tmp_path / "s.html"
    build.build_splits(splits, tmp_path / "s.svg", html, "gene", transcripts=annotation)
    text = html.read_text()
    assert tables.SAME_TSS_COLUMN in text and tables.NEAR_TSS_COLUMN in text
    assert "The gene scheme leaves both in" in text
    table = tables.leak_table(
        tables.split_table(read_splits(splits)),
        pd.DataFrame(
            [
                {"split": "valid", "transcripts": 1, "same_tss": 0, "near_tss": 0},
                {"split": "test", "transcripts": 2, "same_tss": 1, "near_tss": 2},
            ]
        ),
    ).set_index("split")
    assert table.loc["test", tables.SAME_TSS_COLUMN] == "1 (50.00%)"
    assert table.loc["test", tables.NEAR_TSS_COLUMN] == "2 (100.00%)"
    assert table.loc["valid", tables.NEAR_TSS_COLUMN] == "0 (0.00%)"
    assert pd.isna(table.loc["train", tables.SAME_TSS_COLUMN])
    for cell in ("1 (50.00%)", "2 (100.00%)", "0 (0.00%)"):
        assert cell in text
    build.build_splits(splits, tmp_path / "s.svg", html, "locus", transcripts=annotation)
    assert "too when that distance is 1,000 bp or more" in html.read_text()
    build.build_splits(splits, tmp_path / "s.svg", html, "gene")
    assert tables.SAME_TSS_COLUMN not in html.read_text()


def test_split_view_shows_the_reference_counts_beside_the_dataset(tmp_path):
    """report.reference_counts: the dataset's genes and transcripts per split beside the
    reference's, with (dataset - reference) / reference; without the key, nothing."""
    splits = tmp_path / "gene.tsv"
    splits.write_text(
        "transcript_id\tgene_id\tsplit\na\tg1\ttrain\nb\tg1\ttrain\nc\tg2\ttrain\n"
        "d\tg3\tvalid\ne\tg4\ttest\n"
    )
    dataset = tmp_path / "d.parquet"  # b left out of the dataset (e.g. dna.edge: drop)
    pd.DataFrame(
        {"transcript_id": ["a", "c", "d", "e"], "gene_id": ["g1", "g2", "g3", "g4"],
         "split": ["train", "train", "valid", "test"]}
    ).to_parquet(dataset)  # fmt: skip
    reference = {
        "label": "card",
        "source": "hf",
        "genes": {"train": 4, "valid": 1, "test": 2},
        "transcripts": {"train": 2, "valid": 1, "test": 1},
    }
    html = tmp_path / "s.html"
    build.build_splits(
        splits, tmp_path / "s.svg", html, "gene", dataset=dataset, reference=reference
    )
    text = html.read_text()
    for column in ("genes in dataset", "genes in reference", "transcripts: dataset vs reference"):
        assert column in text
    assert "card (hf)" in text and "report.reference_counts" in text
    table = tables.reference_counts_table(
        tables.split_table(read_splits(splits)), pd.read_parquet(dataset), reference
    ).set_index("split")
    assert table.loc["train", "transcripts"] == 3  # the splits file
    assert table.loc["train", "transcripts in dataset"] == 2  # the dataset
    assert table.loc["train", "genes: dataset vs reference"] == "-50.0%"  # (2 - 4) / 4
    assert table.loc["test", "genes: dataset vs reference"] == "-50.0%"
    assert table.loc["valid", "transcripts: dataset vs reference"] == "+0.0%"
    build.build_splits(splits, tmp_path / "s.svg", html, "gene")
    assert "reference" not in html.read_text()


def test_read_tissue_stats_drops_comment_lines(tmp_path):
    write_data_inputs(tmp_path)
    stats = readers.read_tissue_stats(tmp_path / "results/targets/smts.stats.tsv")
    assert list(stats["tissue"]) == TISSUES
    assert stats["n_samples"].tolist() == [10, 13, 16, 19, 22]


def test_sequence_lengths_and_limits(tmp_path):
    fasta = tmp_path / "x.fa.gz"
    with gzip.open(fasta, "wt") as fh:
        fh.write(">a\nACGT\nAC\n>b\nA\n>c\n" + "A" * 60 + "\n" + "C" * 40 + "\n")
    lengths = readers.sequence_lengths(fasta)
    assert lengths.tolist() == [6, 1, 100]
    table = tables.length_table({"RNA": lengths}, {"RNA": 5}).iloc[0]
    assert table["over limit"] == 2
    assert table["max"] == 100 and table["min"] == 1 and table["median"] == 6


# ---------------------------------------------------------------- run readers and views


def test_read_metrics_missing_key_is_one_line_error(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"mean": {"r2": 0.1, "spearman": 0.2, "pearson": 0.3}}))
    with pytest.raises(InputError, match=r"metrics.json:per_tissue: missing key"):
        readers.read_metrics(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"metrics.json:1: not valid JSON"):
        readers.read_metrics(path)


def test_read_history_merges_lightning_step_and_epoch_rows(tmp_path):
    out = write_run(tmp_path, "r", quality=0.5)
    history = readers.read_history(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["train_loss"].tolist() == pytest.approx([2.0, 1.0, 0.6667, 0.5], abs=1e-4)
    assert history["val_loss"].notna().all()
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,train_loss\n0,1.0\n")
    with pytest.raises(InputError, match=r"bad.csv:1: missing column 'val_loss'"):
        readers.read_history(bad)


def test_read_predictions_requires_the_long_columns(tmp_path):
    path = tmp_path / "predictions.parquet"
    pd.DataFrame({"transcript_id": ["a"], "tissue": ["Brain"]}).to_parquet(path)
    with pytest.raises(InputError, match=r"missing columns \['gene_id', 'observed'"):
        readers.read_predictions(path)


def test_within_gene_rhos_mean_is_the_metrics_value(tmp_path):
    out = write_run(tmp_path, "r", quality=0.6)
    predictions = readers.read_predictions(out / "predictions.parquet")
    metrics = readers.read_metrics(out / "metrics.json")
    rhos = tables.within_gene_rhos(predictions)
    assert len(rhos) > 0 and rhos["rho"].between(-1, 1).all()
    assert rhos["rho"].mean() == pytest.approx(metrics["within_gene_spearman"], abs=1e-9)


def test_within_gene_rhos_by_hand():
    predictions = pd.DataFrame(
        {
            "gene_id": ["g1"] * 3 + ["g2"] * 2 + ["g3"] + ["g4"] * 2,
            "tissue": ["T"] * 8,
            "observed": [1.0, 2.0, 3.0, 5.0, 5.0, 1.0, 1.0, 2.0],  # g2 constant -> undefined
            # g1 reversed -> -1; g3 one isoform; g4 tied predictions -> 0
            "predicted": [3.0, 2.0, 1.0, 1.0, 2.0, 1.0, 4.0, 4.0],
        }
    )
    rhos = tables.within_gene_rhos(predictions)
    assert rhos["gene_id"].tolist() == ["g1", "g4"]
    assert rhos["rho"].tolist() == pytest.approx([-1.0, 0.0])
    assert rhos["tied"].tolist() == [False, True]
    genes, obs, pred = predictions["gene_id"], predictions["observed"], predictions["predicted"]
    assert within_gene_spearman(genes, obs.to_numpy(), pred.to_numpy()) == pytest.approx(-0.5)
    fig = figures.plot_within_gene(rhos, {"within_gene_spearman": -0.5}, "r")
    assert fig._suptitle.get_text().endswith("\n1 of the pairs: predictions all tied, scored ρ = 0")


def test_scatter_tissues_spread_over_r2_from_best_to_worst():
    per_tissue = {
        t: {"r2": r2, "spearman": 0.5, "pearson": 0.5}
        for t, r2 in zip("ABCDEFG", [0.1, 0.9, None, 0.5, 0.3, 0.7, -0.2], strict=True)
    }
    metrics = {"per_tissue": per_tissue}
    assert tables.scatter_tissues(metrics, 3) == ["B", "E", "C"]  # best, middle, worst(None)
    assert tables.scatter_tissues(metrics, 1) == ["B"]
    assert len(tables.scatter_tissues(metrics, 20)) == 7


def test_per_tissue_table_ends_with_the_mean_row(tmp_path):
    metrics = readers.read_metrics(write_run(tmp_path, "r", quality=0.5) / "metrics.json")
    table = tables.per_tissue_table(metrics)
    assert table["tissue"].tolist() == [*TISSUES, "mean"]
    assert table.iloc[-1]["R²"] == pytest.approx(metrics["mean"]["r2"])
    assert table.iloc[0]["Spearman"] == metrics["per_tissue"][TISSUES[0]]["spearman"]


# ---------------------------------------------------------------- across experiments


def test_ablation_table_means_over_seeds_and_puts_the_paper_last(tmp_path):
    experiments = write_all_runs(tmp_path)
    metrics = {
        run: readers.read_metrics(tmp_path / "results/runs" / run / "metrics.json")
        for run in experiments
    }
    table = tables.ablation_table(experiments, metrics, "modalities", PAPER)
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
    assert last["source"] == tables.SOURCE_PAPER
    assert (last["R²"], last["Spearman"]) == (0.53, 0.72)
    assert last["modalities"] == PAPER["label"]
    assert (table.iloc[:-1]["source"] == tables.SOURCE_RUN).all()
    no_paper = tables.ablation_table(experiments, metrics, "modalities", None)
    assert (no_paper["source"] == tables.SOURCE_RUN).all()


def test_ablation_display_writes_mean_plus_minus_sd(tmp_path):
    experiments = write_all_runs(tmp_path)
    metrics = {
        run: readers.read_metrics(tmp_path / "results/runs" / run / "metrics.json")
        for run in experiments
    }
    table = tables.ablation_table(experiments, metrics, "modalities", PAPER)
    shown = tables.ablation_display(table, "modalities")
    assert list(shown.columns[:3]) == ["source", "modalities", "R²"]
    assert "comparison" not in shown.columns  # one comparison only
    assert "held fixed" not in shown.columns  # stated once in the note instead
    full = table.iloc[0]
    assert shown.iloc[0]["R²"] == f"{full['R²']:.3f} ± {full['R² sd']:.3f}"
    assert shown.iloc[-1]["R²"] == "0.530" and shown.iloc[-1]["source"] == tables.SOURCE_PAPER
    page = tables.table_html(shown, "x")
    assert f'<td class="num">{full["R²"]:.3f} ± {full["R² sd"]:.3f}</td>' in page


def test_dna_encoder_ablation_states_the_dna_span_each_level_reads(tmp_path):
    """A reviewer's finding: under positional pooling the DNA-encoder ablation compares
    16,384 bp of Enformer bins with 768 bp of NT 6-mers. With the spans
    (workflow.ablation_dna_spans), each level's row states the DNA it reads, and the note
    says the comparison varies the span as well; without them, the table is as before."""
    from isoflow import workflow

    experiments = write_all_runs(tmp_path)
    paths = [tmp_path / "results/runs" / run / "metrics.json" for run in experiments]
    config = {**ABLATIONS, "model": {"cached_modalities": ["dna", "rna", "protein"]}}
    spans = workflow.ablation_dna_spans(config, experiments, "dna_encoder")
    html = tmp_path / "a.html"
    build.build_ablation(
        experiments, paths, "dna_encoder", None, html, tmp_path / "a.svg", dna_spans=spans
    )
    text = html.read_text()
    assert tables.DNA_SPAN_COLUMN in text and tables.DNA_READ_COLUMN in text
    assert "the comparison varies the span as well" in text
    metrics = load_metrics(tmp_path, experiments)
    table = tables.ablation_table(experiments, metrics, "dna_encoder", None, None, spans)
    by_level = table.set_index("DNA encoder")
    # the tiny encoders (ABLATIONS sets no spec) on the schema's 196,608 bp window, adaptive
    # caches of 8 Enformer bins (128 bp) and 16 Borzoi bins (32 bp)
    assert by_level.loc["enformer", tables.DNA_SPAN_COLUMN] == 1_024
    assert by_level.loc["borzoi", tables.DNA_SPAN_COLUMN] == 512
    assert "averaged into 8 slots" in by_level.loc["enformer", tables.DNA_READ_COLUMN]
    shown = tables.ablation_display(table, "dna_encoder")
    assert list(shown.columns[:4]) == [
        "source",
        "DNA encoder",
        tables.DNA_SPAN_COLUMN,
        tables.DNA_READ_COLUMN,
    ]
    assert '<td class="num">1,024</td>' in text
    build.build_ablation(experiments, paths, "dna_encoder", None, html, tmp_path / "a.svg")
    assert tables.DNA_SPAN_COLUMN not in html.read_text()


def test_runs_table_pools_seeds_then_baseline_then_paper(tmp_path):
    experiments = write_all_runs(tmp_path)
    metrics = load_metrics(tmp_path, experiments)
    baseline = write_baseline(tmp_path)
    table = tables.runs_table(experiments, metrics, PAPER, baseline)
    settings = list(setting_groups(experiments))
    assert table["setting"].tolist() == [*settings, tables.BASELINE_LABEL, PAPER["label"]]
    assert "dna+rna+protein_enformer_cross_attention" in settings  # s0 and s1 pooled
    full = table.iloc[0]
    seeds = [metrics[f"dna+rna+protein_enformer_cross_attention_s{s}"] for s in (0, 1)]
    assert full["seeds"] == 2
    assert full["R²"] == pytest.approx(np.mean([m["mean"]["r2"] for m in seeds]))
    assert full["Spearman sd"] == pytest.approx(
        np.std([m["mean"]["spearman"] for m in seeds], ddof=1)
    )
    assert table.iloc[-2]["source"] == tables.SOURCE_BASELINE
    assert table.iloc[-2]["R²"] == baseline["mean"]["r2"]
    assert pd.isna(table.iloc[-1]["within-gene Spearman"])
    rows = tables.run_rows(experiments, metrics, baseline)
    assert rows["run"].tolist() == [*experiments, tables.BASELINE_LABEL]
    assert rows[tables.COLLAPSED].tolist() == [False] * len(rows)


def test_table_html_escapes_and_marks_the_paper_row():
    table = pd.DataFrame(
        [
            {"source": tables.SOURCE_RUN, "run": "<b>x</b>", "R²": 0.12345, "n": 1234},
            {"source": tables.SOURCE_PAPER, "run": "paper", "R²": 0.53, "n": None},
        ]
    )
    page = tables.table_html(table, "T & U", note="a note")
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "<h2>T &amp; U</h2>" in page
    assert '<td class="num">0.123</td>' in page and '<td class="num">1,234</td>' in page
    assert page.count('<tr class="paper">') == 1
    assert '<tr class="paper"><td>reported in paper</td><td>paper</td>' in page


# ---------------------------------------------------------------- entry points write the files


@pytest.mark.slow
def test_data_views_write_figures_and_tables(tmp_path):
    write_data_inputs(tmp_path)
    res, out = tmp_path / "results", tmp_path / "out"
    build.build_targets(
        res / "targets/smts.parquet",
        res / "targets/smts.stats.tsv",
        out / "tg.svg",
        out / "tg.html",
        out / "iso.svg",
    )
    assert "gtex only 3, annotation only 2, both 100" in (out / "tg.html").read_text()
    assert "Zeros per tissue" in (out / "tg.svg").read_text()
    assert "GTEx ↔ annotation" in (out / "iso.svg").read_text()
    build.build_biotypes(res / "annotation/transcripts.parquet", out / "b.svg", out / "b.html")
    build.build_tissues(res / "targets/smts.stats.tsv", out / "t.svg", out / "t.html")
    build.build_splits(
        res / "splits/gene.tsv",
        out / "s.svg",
        out / "s.html",
        "gene",
        transcripts=res / "annotation/transcripts.parquet",
    )
    assert tables.NEAR_TSS_COLUMN in (out / "s.html").read_text()
    build.build_lengths(
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


@pytest.mark.slow
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
    write_data_inputs(tmp_path)
    build.build_run(
        "myrun",
        *args,
        **outputs,
        n_scatter=3,
        max_points=100,
        transcripts_path=tmp_path / "results/annotation/transcripts.parquet",
        errors=out / "errors.svg",
    )
    assert "By biotype" in (out / "errors.svg").read_text()
    assert "best epoch 3" in (out / "curves.svg").read_text()
    assert (out / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "val_r2" in (out / "curves.svg").read_text()
    assert "Testis" in (out / "per_tissue.html").read_text()
    assert "Within-gene isoform ranking" in (out / "within_gene.svg").read_text()
    assert "3–4" in (out / "within_gene.svg").read_text()  # the isoforms-per-gene bins

    assert "score 0." in (out / "per_tissue.html").read_text()  # no tissue predicted constant
    assert tables.DEMO_MODEL_MARK not in (out / "per_tissue.html").read_text()

    # a tissue predicted constant is named in the note; the demo's table carries its stamp
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(
        json.dumps({**metrics, "constant_prediction_tissues": ["Testis"]})
    )
    build.build_run("myrun", *args, **outputs, demo=True)
    page = (out / "per_tissue.html").read_text()
    assert "score 0 (here: Testis)." in page and tables.DEMO_MODEL_MARK in page
    assert "predictions all tied" not in (out / "within_gene.svg").read_text()

    collapse(run_dir)
    build.build_run("myrun", *args, **outputs)
    page = (out / "per_tissue.html").read_text()
    assert page.startswith("<!DOCTYPE") and "COLLAPSED" in page
    assert page.count('<td class="collapsed">collapsed</td>') == 2 * (len(TISSUES) + 1)

    (run_dir / "metrics.json").write_text("{}")
    fresh = {k: tmp_path / "fresh" / v.name for k, v in outputs.items()}
    with pytest.raises(InputError, match=r"metrics\.json:mean: missing key \(see DESIGN\.md"):
        build.build_run("myrun", *args, **fresh)
    assert not (tmp_path / "fresh").exists() or not list((tmp_path / "fresh").iterdir())


@pytest.mark.slow
def test_all_runs_views_in_one_job_are_each_runs_own(tmp_path):
    # rule report_runs (resources.train_jobs: one): build_runs draws run i's views into the
    # i-th block of outputs, the files build_run writes for that run alone
    runs = ["rna_enformer_cross_attention_s0", "dna_enformer_cross_attention_s1"]
    dirs = [write_run(tmp_path, run, quality=0.3 + 0.3 * i, seed=i) for i, run in enumerate(runs)]
    views = ["curves", "tissue_table", "tissue_figure", "scatter", "within_gene"]
    files = ["curves.svg", "per_tissue.html", "per_tissue.svg", "scatter.png", "within_gene.svg"]
    outputs = [tmp_path / "all" / run / name for run in runs for name in files]
    inputs = [
        [d / name for d in dirs] for name in ("metrics.json", "history.csv", "predictions.parquet")
    ]
    build.build_runs(runs, views, outputs, *inputs, n_scatter=2, max_points=100)
    for run, run_dir in zip(runs, dirs, strict=True):
        alone = {
            view: tmp_path / "alone" / run / name for view, name in zip(views, files, strict=True)
        }
        build.build_run(
            run,
            *(run_dir / n for n in ("metrics.json", "history.csv", "predictions.parquet")),
            **alone,
            n_scatter=2,
            max_points=100,
        )
        table = (tmp_path / "all" / run / "per_tissue.html").read_text()
        assert table == alone["tissue_table"].read_text() and run in table
        assert run in (tmp_path / "all" / run / "curves.svg").read_text()
    with pytest.raises(ValueError, match="2 runs need 10 outputs"):
        build.build_runs(runs, views, outputs[:-1], *inputs)
    with pytest.raises(ValueError, match="not an input of run"):
        build.build_runs(runs[::-1], views, outputs, *inputs)


@pytest.mark.slow
def test_experiment_views_name_the_paper_as_the_paper(tmp_path):
    experiments = write_all_runs(tmp_path)
    paths = [tmp_path / "results/runs" / run / "metrics.json" for run in experiments]
    out = tmp_path / "out"
    build.build_experiments(
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
    assert "No sequence-free baseline was given" in page
    tsv = pd.read_csv(out / "runs.tsv", sep="\t")
    assert tsv["run"].tolist() == list(experiments)  # every run, unpooled
    assert "reported" in (out / "runs.svg").read_text()
    assert figures.DEMO_MARK not in (out / "runs.svg").read_text()
    assert 'class="stamp"' not in page  # pretrained runs: no stamp
    # the demo's tables say what made their numbers, and so do runs on tiny encoders outside it
    build.build_experiments(
        experiments,
        paths,
        PAPER,
        out / "d.html",
        out / "d.tsv",
        out / "d.svg",
        out / "dw.svg",
        demo=True,
    )
    assert tables.DEMO_MODEL_MARK in (out / "d.html").read_text()
    build.build_ablation(
        experiments,
        paths,
        "modalities",
        PAPER,
        out / "t.html",
        out / "t.svg",
        tiny_encoders=["enformer", "esm2"],
    )
    stamp = '<p class="stamp">TINY RANDOM-WEIGHT ENCODERS (enformer, esm2: encoders.'
    assert stamp in (out / "t.html").read_text()
    for factor in (*FACTORS, "fraction"):
        build.build_ablation(
            experiments, paths, factor, PAPER, out / f"a_{factor}.html", out / f"a_{factor}.svg"
        )
        assert "reported in paper" in (out / f"a_{factor}.html").read_text()
    held = "Held fixed: DNA encoder enformer, aggregator cross_attention, training fraction 1."
    assert held in (out / "a_modalities.html").read_text()
    assert "Data scaling" in (out / "a_fraction.svg").read_text()
    with pytest.raises(InputError, match="no metrics.json given"):
        build.build_ablation(
            experiments, paths[:-1], "modalities", PAPER, out / "x.html", out / "x.svg"
        )


# Three seeds of each modality setting and of the shuffled control (the demo's grid shape
# once config `seeds: [0, 1, 2]` expands it).
SEEDED_CONFIG = {
    "experiments": [
        {"modalities": m, "seed": s}
        for m in (["dna"], ["rna"], ["dna", "rna", "protein"])
        for s in (0, 1, 2)
    ]
    + [
        {"modalities": ["dna", "rna", "protein"], "shuffle_targets": True, "seed": s}
        for s in (0, 1, 2)
    ]
}


def write_seeded_runs(root: Path, collapsed: tuple[str, ...] = ()) -> dict[str, dict]:
    experiments = expand_experiments(SEEDED_CONFIG)
    for i, run in enumerate(experiments):
        quality = 0.0 if "shuffled" in run else 0.3 + 0.2 * ("rna" in run) + 0.01 * i
        out = write_run(root, run, quality=quality, seed=i)
        if run in collapsed:
            collapse(out)
    return experiments


def test_shuffled_runs_are_the_control_not_an_ablation_level(tmp_path):
    experiments = write_seeded_runs(tmp_path)
    shuffled = [r for r in experiments if r.endswith("_shuffled")]
    assert control_runs(experiments) == shuffled
    for group in ablation_groups(experiments, "modalities"):
        assert not {r for runs in group["levels"].values() for r in runs} & set(shuffled)
    metrics = load_metrics(tmp_path, experiments)
    table = tables.ablation_table(experiments, metrics, "modalities", PAPER, None)
    control = table[table["source"] == tables.SOURCE_CONTROL].iloc[0]
    assert control["modalities"] == tables.CONTROL_LABEL and control["seeds"] == 3
    spearman = [metrics[r]["mean"]["spearman"] for r in shuffled]
    assert control["Spearman"] == pytest.approx(np.mean(spearman))
    assert control["Spearman sd"] == pytest.approx(np.std(spearman, ddof=1))
    assert table["source"].tolist()[-2:] == [tables.SOURCE_CONTROL, tables.SOURCE_PAPER]


def test_collapsed_runs_print_collapsed_not_correlations(tmp_path):
    dna = [f"dna_enformer_cross_attention_s{s}" for s in (0, 1, 2)]
    rna = "rna_enformer_cross_attention_s1"
    experiments = write_seeded_runs(tmp_path, collapsed=(*dna, rna))
    metrics = load_metrics(tmp_path, experiments)
    table = tables.ablation_table(experiments, metrics, "modalities", None)
    shown = tables.ablation_display(table, "modalities").set_index("modalities")
    assert shown.loc["dna", "Spearman"] == "collapsed"
    assert shown.loc["dna", "Pearson"] == "collapsed"
    assert shown.loc["dna", "within-gene Spearman"] == "collapsed"
    assert shown.loc["dna", "seeds"] == "3 (3 collapsed)"
    r2 = [metrics[r]["mean"]["r2"] for r in dna]  # R² of a constant stays meaningful
    assert shown.loc["dna", "R²"] == f"{np.mean(r2):.3f} ± {np.std(r2, ddof=1):.3f}"
    # One of three rna seeds collapsed: every metric pools all three (keeping the two live
    # ones selected seeds on their test predictions), and the cell says one collapsed.
    every = [metrics[f"rna_enformer_cross_attention_s{s}"]["mean"]["spearman"] for s in (0, 1, 2)]
    assert shown.loc["rna", "Spearman"] == (
        f"{np.mean(every):.3f} ± {np.std(every, ddof=1):.3f} (1 of 3 collapsed)"
    )
    assert shown.loc["rna", "seeds"] == "3 (1 collapsed)"
    page = tables.table_html(shown.reset_index(), "x")
    assert '<td class="collapsed">collapsed</td>' in page
    # The figure draws no Spearman bar for dna, and says why.
    fig = figures.plot_ablation(table, "modalities")
    ax = fig.axes[0]
    assert "collapsed" in [t.get_text().strip() for t in ax.texts]
    spearman_bars = [
        b
        for c in ax.containers
        for b in c
        if c.get_label().lstrip("_").startswith("Spearman (this")
    ]
    assert len(spearman_bars) == 2  # rna and dna+rna+protein, not dna
    # rna's bar pools its 3 seeds, one collapsed: its label says so
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert any(t.endswith("(n=3 seeds; 1 collapsed)") for t in ticks), ticks
    assert any(t.endswith("(n=3 seeds)") for t in ticks), ticks  # dna+rna+protein
    # A run without the key (older metrics.json) is not collapsed.
    assert not readers.is_collapsed({"mean": {}})


def test_read_metrics_checks_the_collapsed_keys(tmp_path):
    out = write_run(tmp_path, "r", quality=0.5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert not readers.is_collapsed(readers.read_metrics(out / "metrics.json"))
    (out / "metrics.json").write_text(json.dumps({**metrics, "collapsed": "yes"}))
    with pytest.raises(InputError, match=r"metrics.json:collapsed: expected true or false"):
        readers.read_metrics(out / "metrics.json")
    (out / "metrics.json").write_text(json.dumps({**metrics, "prediction_spread": "0.1"}))
    with pytest.raises(InputError, match=r"metrics.json:prediction_spread: expected a number"):
        readers.read_metrics(out / "metrics.json")
    (out / "metrics.json").write_text(json.dumps({**metrics, "prediction_spread": None}))
    assert readers.read_metrics(out / "metrics.json")["prediction_spread"] is None


def _error_bars(ax) -> list:
    from matplotlib.container import BarContainer, ErrorbarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer) and c.errorbar]
    lines = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    return [
        c for c in bars if any(len(seg) for seg in c.errorbar.lines[2][0].get_segments())
    ] + lines


def test_across_figures_have_error_bars_control_band_and_baseline(tmp_path):
    from matplotlib.container import BarContainer

    experiments = write_seeded_runs(tmp_path)
    baseline = write_baseline(tmp_path)
    metrics = load_metrics(tmp_path, experiments)
    table = tables.ablation_table(experiments, metrics, "modalities", PAPER, baseline)
    runs = tables.runs_table(experiments, metrics, PAPER, baseline)
    for fig in (
        figures.plot_ablation(table, "modalities"),
        figures.plot_runs(runs),
        figures.plot_within_gene_runs(runs),
    ):
        ax = fig.axes[0]
        assert _error_bars(ax), "no error bars"
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert any(t.startswith(tables.CONTROL_LABEL) and "(n=3)" in t for t in legend), legend
        assert any(tables.SOURCE_BASELINE in t for t in legend), legend
        # The band lies behind the bars (it once covered the R² bars it was drawn after).
        bands = [p for p in ax.patches if p.get_label().startswith(tables.CONTROL_LABEL)]
        bars = [b for c in ax.containers if isinstance(c, BarContainer) for b in c]
        assert bands and max(b.get_zorder() for b in bands) < min(b.get_zorder() for b in bars)
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        assert figures.BASELINE_TICK in ticks
        assert any("(n=3 seeds)" in t for t in ticks)
    scaling_exps = expand_experiments(
        {
            "experiments": [
                {"modalities": ["rna"], "fraction": f, "seed": s}
                for f in (0.25, 1.0)
                for s in (0, 1)
            ]
        }
    )
    for i, run in enumerate(scaling_exps):
        write_run(tmp_path, run, quality=0.4 + 0.05 * i, seed=i)
    metrics = load_metrics(tmp_path, scaling_exps)
    fig = figures.plot_scaling(tables.ablation_table(scaling_exps, metrics, "fraction", PAPER))
    assert _error_bars(fig.axes[0])


# ---------------------------------------------------------------- best epoch, bins, data views


def test_best_epoch_is_the_lowest_val_loss_and_is_marked(tmp_path):
    history = pd.DataFrame(
        {"epoch": [0, 1, 2, 3], "train_loss": [3, 2, 1, 0.5], "val_loss": [3, 1.5, 1.5, 2]}
    )
    assert tables.best_epoch(history) == 1  # a tie keeps the first (ModelCheckpoint: strict)
    assert tables.best_epoch(history.assign(val_loss=np.nan)) is None
    fig = figures.plot_history(history, "r")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("best epoch 1: val_loss 1.5") for t in texts), texts
    assert 1 in [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == "--"]


def test_isoform_bins_by_hand():
    rhos = pd.DataFrame(
        {
            "gene_id": ["a", "a", "b", "c", "d", "e"],
            "tissue": ["T", "U", "T", "T", "T", "T"],
            "isoforms": [2, 2, 3, 4, 5, 9],
            "rho": [1.0, 0.0, 0.5, -0.5, 0.2, 0.4],
        }
    )
    bins = tables.isoform_bins(rhos).set_index("isoforms per gene")
    assert bins["pairs"].tolist() == [2, 2, 2]
    assert bins["genes"].tolist() == [1, 2, 2]
    assert bins["mean ρ"].tolist() == pytest.approx([0.5, 0.0, 0.3])
    assert bins.loc["2", "sd"] == pytest.approx(np.std([1.0, 0.0], ddof=1))
    empty = tables.isoform_bins(rhos[rhos["isoforms"] == 2])
    assert empty["pairs"].tolist() == [2, 0, 0] and empty["mean ρ"].isna().tolist()[1:] == [
        True,
        True,
    ]


def test_read_overlap_reads_the_stats_comment_lines(tmp_path):
    path = tmp_path / "smts.stats.tsv"
    path.write_text(
        "tissue\tn_samples\tmean\tsd\nLiver\t3\t1.0\t0.5\n"
        "# transcripts_gtex_only\t2\n# transcripts_annotation_only\t0\n"
        "# transcripts_both\t1674\n"
    )
    assert readers.read_overlap(path) == {"gtex_only": 2, "annotation_only": 0, "both": 1674}
    assert readers.read_tissue_stats(path)["tissue"].tolist() == ["Liver"]
    path.write_text("tissue\tn_samples\n# transcripts_both\t12x\n")
    with pytest.raises(InputError, match=r"smts.stats.tsv:2: transcripts_both: count '12x'"):
        readers.read_overlap(path)
    path.write_text("tissue\tn_samples\n# transcripts_both\t-1\n")
    with pytest.raises(InputError, match="negative count"):
        readers.read_overlap(path)
    path.write_text("tissue\tn_samples\nLiver\t3\n")  # an older file: no overlap lines
    assert readers.read_overlap(path) == {}
    assert "not recorded" in tables.overlap_note({})


def test_overlap_examples_and_par_y_counts_reach_the_note(tmp_path):
    path = tmp_path / "smts.stats.tsv"
    path.write_text(
        "tissue\tn_samples\tmean\tsd\nLiver\t3\t1.0\t0.5\n"
        "# transcripts_gtex_only\t2\n# transcripts_annotation_only\t1\n"
        "# transcripts_both\t3\n# transcripts_par_y_gtex\t1\n"
        "# transcripts_par_y_annotation\t0\n"
        "# examples_gtex_only\tT9.1,T8.1_PAR_Y\n# examples_annotation_only\tT7.2\n"
    )
    overlap = readers.read_overlap(path)
    examples = readers.read_overlap_examples(path)
    assert examples == {"gtex_only": ["T9.1", "T8.1_PAR_Y"], "annotation_only": ["T7.2"]}
    assert tables.overlap_note(overlap, examples) == (
        "Transcripts, GTEx ↔ annotation: gtex only 2, annotation only 1, both 3. 75.0% of "
        "the annotation's transcripts have a GTEx row. Examples, GTEx only: T9.1, "
        "T8.1_PAR_Y; annotation only: T7.2. _PAR_Y copies (chrY PAR): 1 in GTEx, 0 in the "
        "annotation (annotation.par_y)."
    )
    path.write_text("tissue\tn_samples\n# transcripts_both\t3\n")  # an older file
    assert readers.read_overlap_examples(path) == {}


def write_targets(root: Path) -> Path:
    frame = pd.DataFrame(
        {
            "transcript_id": ["t1", "t2", "t3", "t4"],
            "gene_id": ["g1", "g1", "g1", "g2"],
            "Liver": np.array([0.0, 0.0, 1.5, 2.0], dtype=np.float32),
            "Brain": np.array([0.0, 3.0, 1.0, 2.0], dtype=np.float32),
        }
    )
    path = root / "smts.parquet"
    frame.to_parquet(path)
    return path


def test_targets_zero_shares_and_isoforms_per_gene(tmp_path):
    values, genes = readers.read_targets(write_targets(tmp_path))
    assert list(values.columns) == ["Liver", "Brain"]
    zeros = tables.zero_table(values).set_index("tissue")
    assert zeros.loc["Liver", "zeros"] == 2 and zeros.loc["Liver", "share zero"] == 0.5
    assert zeros.loc["Brain", "share zero"] == 0.25
    assert genes.value_counts().to_dict() == {"g1": 3, "g2": 1}
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"transcript_id": ["t"], "gene_id": ["g"], "Liver": ["high"]}).to_parquet(bad)
    with pytest.raises(InputError, match=r"bad.parquet:Liver: tissue column is \w+, not numeric"):
        readers.read_targets(bad)
    pd.DataFrame({"transcript_id": ["t"], "Liver": [1.0]}).to_parquet(bad)
    with pytest.raises(InputError, match="missing column 'gene_id'"):
        readers.read_targets(bad)
    table = pa.Table.from_pandas(
        pd.DataFrame({"transcript_id": ["t"], "gene_id": ["g"], "Liver": [1.0]}),
        preserve_index=False,
    ).replace_schema_metadata({"isoflow.tissues": json.dumps(["Liver", "Lung"])})
    pq.write_table(table, bad)
    with pytest.raises(InputError, match=r"tissue columns \['Lung'\] named in isoflow.tissues"):
        readers.read_targets(bad)


def test_errors_by_biotype_and_length(tmp_path):
    transcripts = pd.DataFrame(
        {
            "transcript_id": ["t1", "t2", "t3"],
            "transcript_type": ["protein_coding", "lncRNA", "protein_coding"],
            "exon_starts": [[0, 1000], [0], [0]],
            "exon_ends": [[300, 1100], [5000], [700]],
        }
    )
    path = tmp_path / "transcripts.parquet"
    transcripts.to_parquet(path)
    predictions = pd.DataFrame(
        {
            "transcript_id": ["t1", "t1", "t2", "t3"],
            "gene_id": ["g"] * 4,
            "tissue": ["A", "B", "A", "A"],
            "observed": [1.0, 2.0, 0.0, 1.0],
            "predicted": [2.0, 1.0, 3.0, 1.5],
        }
    )
    joined = readers.join_transcripts(predictions, path)
    assert joined["length"].tolist() == [400, 400, 5000, 700]
    by_biotype, by_length = tables.error_tables(joined)
    coding = by_biotype.set_index("biotype").loc["protein_coding"]
    assert coding["transcripts"] == 2 and coding["MAE"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert coding["bias"] == pytest.approx((1 - 1 + 0.5) / 3)
    lengths = by_length.set_index("length bin")
    assert lengths.loc["<500", "pairs"] == 2 and lengths.loc["≥4k", "MAE"] == 3.0
    unknown = predictions.assign(transcript_id=["t1", "t1", "t2", "t9"])
    with pytest.raises(InputError, match=r"transcripts.parquet:t9: predicted transcript not"):
        readers.join_transcripts(unknown, path)
    transcripts.drop(columns="exon_ends").to_parquet(path)
    with pytest.raises(InputError, match=r"missing columns \['exon_ends'\]"):
        readers.join_transcripts(predictions, path)


# ---------------------------------------------------------------- every figure: no text clipped


def every_figure(tmp_path: Path) -> dict:
    """Each figure function of the report on small inputs (the paper and baseline shown)."""
    experiments = write_seeded_runs(tmp_path, collapsed=("dna_enformer_cross_attention_s0",))
    baseline = write_baseline(tmp_path)
    metrics = load_metrics(tmp_path, experiments)
    run = next(iter(experiments))
    run_dir = tmp_path / "results/runs" / run
    predictions = readers.read_predictions(run_dir / "predictions.parquet")
    write_data_inputs(tmp_path)
    res = tmp_path / "results"
    lengths = {
        "RNA": readers.sequence_lengths(res / "sequences/rna.fa.gz"),
        "protein": readers.sequence_lengths(res / "sequences/protein.fa.gz"),
    }
    counts = tables.biotype_table(pd.read_parquet(res / "annotation/transcripts.parquet"))
    values, genes = readers.read_targets(write_targets(tmp_path))
    transcripts = pd.DataFrame(
        {
            "transcript_id": predictions["transcript_id"].unique(),
            "transcript_type": "protein_coding",
            "exon_starts": [[0]] * predictions["transcript_id"].nunique(),
            "exon_ends": [[1500]] * predictions["transcript_id"].nunique(),
        }
    )
    transcripts.to_parquet(tmp_path / "tx.parquet")
    table = tables.ablation_table(experiments, metrics, "modalities", PAPER, baseline)
    runs = tables.runs_table(experiments, metrics, PAPER, baseline)
    scaling = expand_experiments(
        {"experiments": [{"modalities": ["rna"], "fraction": f} for f in (0.1, 1.0)]}
    )
    for i, name in enumerate(scaling):
        write_run(tmp_path, name, quality=0.5 + 0.1 * i, seed=i)
    scaling_table = tables.ablation_table(
        scaling, load_metrics(tmp_path, scaling), "fraction", PAPER, baseline
    )
    return {
        "counts": lambda: figures.plot_counts(
            list(counts["transcript type"]), list(counts["transcripts"]), "transcripts", "t"
        ),
        "lengths": lambda: figures.plot_lengths(lengths, {"RNA": 3000, "protein": 500}),
        "splits": lambda: figures.plot_split_sizes(
            tables.split_table(read_splits(res / "splits/gene.tsv"))
        ),
        "targets": lambda: figures.plot_targets(values, tables.zero_table(values)),
        "isoforms": lambda: figures.plot_isoforms_per_gene(
            genes.value_counts(), {"gtex_only": 2, "annotation_only": 0, "both": 1674}
        ),
        "history": lambda: figures.plot_history(readers.read_history(run_dir / "history.csv"), run),
        "per_tissue": lambda: figures.plot_per_tissue(metrics[run], run),
        "scatter": lambda: figures.plot_scatter(predictions, metrics[run], TISSUES[:3], run),
        "within_gene": lambda: figures.plot_within_gene(
            tables.within_gene_rhos(predictions), metrics[run], run
        ),
        "errors": lambda: figures.plot_errors(
            readers.join_transcripts(predictions, tmp_path / "tx.parquet"), run
        ),
        "ablation": lambda: figures.plot_ablation(table, "modalities"),
        "runs": lambda: figures.plot_runs(runs),
        "within_gene_runs": lambda: figures.plot_within_gene_runs(runs),
        "scaling": lambda: figures.plot_scaling(scaling_table),
    }


@pytest.mark.slow
@pytest.mark.parametrize("demo", [False, True])
def test_no_figure_text_runs_outside_the_figure(tmp_path, demo):
    """Every text artist's window extent lies inside the figure, after the layout
    ``save_figure`` applies (the paper's 'Spearman 0.72 (paper)' label was clipped)."""
    for name, make in every_figure(tmp_path).items():
        fig = make()
        if demo:
            figures.mark_demo(fig)
        figures.fit_texts(fig)
        assert figures.clipped_texts(fig) == [], name


def test_the_clipped_paper_label_of_the_demo_runs_figure_now_fits(tmp_path):
    """The tester's case: the demo's long run names left too little room, and the paper's
    'Spearman 0.72 (paper)' ran past the right edge. ``clipped_texts`` sees it in the raw
    layout; ``fit_texts`` (applied by ``save_figure``) brings it inside."""
    config = {
        "experiments": [
            {"modalities": m, "aggregator": a}
            for m, a in (
                (["dna"], "cross_attention"),
                (["rna"], "cross_attention"),
                (["protein"], "cross_attention"),
                (["dna", "rna", "protein"], "cross_attention"),
                (["dna", "rna", "protein"], "concat"),
            )
        ]
        + [
            {"modalities": ["dna", "rna", "protein"], "shuffle_targets": True, "seed": s}
            for s in (0, 1, 2)
        ]
    }
    experiments = expand_experiments(config)
    for i, run in enumerate(experiments):
        write_run(tmp_path, run, quality=0.3 + 0.05 * i, seed=i)
    table = tables.runs_table(experiments, load_metrics(tmp_path, experiments), PAPER)
    fig = figures.plot_runs(table)
    assert figures.clipped_texts(fig) == [" Spearman 0.72 (paper)"]
    figures.fit_texts(fig)
    assert figures.clipped_texts(fig) == []
    figures.save_figure(fig, tmp_path / "runs.svg")
    assert "Spearman 0.72 (paper)" in (tmp_path / "runs.svg").read_text()


NUMBER = re.compile(r"-?\d+\.?\d*(?:e-?\d+)?")


def normalised_svg(path: Path) -> str:
    """SVG text without its date, matplotlib's random ids numbered in order of appearance."""
    text = re.sub(r"<dc:date>[^<]*</dc:date>", "", path.read_text())
    ids: dict[str, str] = {}
    return re.sub(
        r"\b[a-z][0-9a-f]{10}\b", lambda m: ids.setdefault(m.group(0), f"id{len(ids)}"), text
    )


@pytest.mark.slow
def test_save_figure_writes_what_savefig_tight_writes(tmp_path):
    """``save_figure`` lays the figure out and measures its tight box itself, draws it once
    and reuses text and tick measures within the save: the files are what plain
    ``savefig(bbox_inches="tight", pad_inches=0.1)`` writes (SVG text up to its date and
    random ids, PNG pixels), value labels fitted first (``fit_texts``), for every report
    figure (a long run name makes a suptitle wider than the figure: the tight box reaches
    past it), to 0.001 pt
    (SVG coordinates; one figure's background writes -0 where savefig wrote 0), also under
    other font settings after text layouts were kept from earlier saves. matplotlib's own
    methods are back in place afterwards."""
    import matplotlib
    from matplotlib.axis import Axis
    from matplotlib.text import Text
    from PIL import Image

    methods = (Text._get_layout, Axis._update_ticks)
    compared, makers = [], every_figure(tmp_path)
    makers["long name"] = lambda: figures.plot_per_tissue(
        {
            "per_tissue": {t: {"r2": 0.5, "spearman": 0.6, "pearson": 0.7} for t in TISSUES},
            "mean": {"r2": 0.5, "spearman": 0.6, "pearson": 0.7},
        },
        "a run with a very long name " * 4,
    )

    def same_file(name: str, make, fmt: str) -> None:
        new, old = make(), make()
        figures.save_figure(new, tmp_path / f"new.{fmt}", demo=True)
        figures.mark_demo(old)
        figures.fit_texts(old)
        old.savefig(
            tmp_path / f"old.{fmt}",
            dpi=120 if fmt == "png" else None,
            bbox_inches="tight",
            pad_inches=0.1,
        )
        if fmt == "svg":
            a, b = (normalised_svg(tmp_path / f"{v}.svg") for v in ("new", "old"))
            assert NUMBER.sub("#", a) == NUMBER.sub("#", b), name  # the same elements
            x, y = (np.array([float(v) for v in NUMBER.findall(t)]) for t in (a, b))
            assert np.abs(x - y).max() <= 1e-3, name  # points (0 and -0 differ in text)
            if name == "long name":  # the title runs past the 9-inch figure's edges
                assert float(re.search(r'width="([\d.]+)pt"', a).group(1)) > 9 * 72 + 20
        else:
            a, b = (np.asarray(Image.open(tmp_path / f"{v}.png")) for v in ("new", "old"))
            assert a.shape == b.shape and (a == b).all(), name
        compared.append(f"{name}.{fmt}")

    for name, make in makers.items():
        for fmt in ("svg", "png") if name == "scatter" else ("svg",):
            same_file(name, make, fmt)
    # Layouts measured by earlier saves are reused only under the same font settings: the
    # same FontProperties ('sans-serif') resolve to another font here.
    with matplotlib.rc_context({"font.sans-serif": ["DejaVu Serif"]}):
        same_file("serif history", makers["history"], "svg")
    assert len(compared) == len(makers) + 2  # scatter as PNG too, and the serif history
    assert "serif history.svg" in compared
    assert (Text._get_layout, Axis._update_ticks) == methods


def count_draws(fig, monkeypatch) -> list:
    """Each ``fig.draw`` call (any layout, measuring or saving pass) appends to the list."""
    draws, draw = [], fig.draw
    monkeypatch.setattr(fig, "draw", lambda renderer: draws.append(1) or draw(renderer))
    return draws


def count_layouts(fig, monkeypatch) -> list:
    """Each run of the figure's layout engine appends to the list."""
    layouts, engine = [], fig.get_layout_engine()
    execute = engine.execute
    monkeypatch.setattr(engine, "execute", lambda f: layouts.append(1) or execute(f))
    return layouts


def test_fit_texts_never_draws_a_figure_without_texts_in_data_coordinates(tmp_path, monkeypatch):
    """Nothing for ``fit_texts`` to fit (tick labels, titles, a legend, a text in axes
    coordinates): the figure is not laid out or drawn, its limits stay as they were; saving
    it draws it once (``save_figure`` lays it out and measures its tight box without
    drawing it; savefig's own layout-and-measure draw is skipped), not three times."""
    fig = figures.plot_per_tissue(
        {
            "per_tissue": {t: {"r2": 0.5, "spearman": 0.6, "pearson": 0.7} for t in TISSUES},
            "mean": {"r2": 0.5, "spearman": 0.6, "pearson": 0.7},
        },
        "a run with a very long name " * 3,
    )
    figures.mark_demo(fig)
    ax = fig.axes[0]
    ax.text(0.99, 0.5, "in axes coordinates " * 5, transform=ax.transAxes)
    ax.text(ax.get_xlim()[1], 0, "   ")  # blank: nothing to fit
    log = fig.add_subplot(2, 1, 2)
    log.set_xscale("log")
    log.text(10.0, 0.5, "a value label on a log axis is not fitted " * 3)
    limits = [a.get_xlim() for a in fig.axes]
    draws, layouts = count_draws(fig, monkeypatch), count_layouts(fig, monkeypatch)
    assert figures.fit_texts(fig) is False  # not laid out
    assert draws == layouts == []
    assert [a.get_xlim() for a in fig.axes] == limits
    figures.save_figure(fig, tmp_path / "figure.svg")
    assert len(draws) == len(layouts) == 1


def test_fit_texts_still_widens_the_x_range_for_a_long_value_label(tmp_path, monkeypatch):
    """A value label that runs past its axes' right edge is a text to fit: the figure is
    laid out (not drawn) to measure it and the x range widened until the label ends inside
    the axes; saving it then lays it out twice (fitted again, then in the output's metrics)
    and draws it once."""
    fig = figures.plot_counts(["a", "b", "c"], [3.0, 10.0, 7.0], "transcripts", "title")
    ax, label = fig.axes[0], fig.axes[0].texts[1]
    label.set_text(" 10 transcripts, a longer value label")

    def overhang() -> float:
        renderer = figures._renderer(fig)
        return label.get_window_extent(renderer).x1 - ax.get_window_extent(renderer).x1

    x1 = ax.get_xlim()[1]
    assert overhang() > 50  # pixels past the axes
    draws, layouts = count_draws(fig, monkeypatch), count_layouts(fig, monkeypatch)
    assert figures.fit_texts(fig) is True  # laid out at its final limits
    assert layouts and not draws  # measured: laid out, not drawn
    assert ax.get_xlim()[1] > x1 * 1.2
    assert overhang() <= 0
    draws.clear(), layouts.clear()
    figures.save_figure(fig, tmp_path / "counts.svg")
    assert len(draws) == 1 and len(layouts) == 2


def test_demo_figures_say_synthetic_on_the_figure(tmp_path):
    write_data_inputs(tmp_path)
    res = tmp_path / "results"
    for demo in (True, False):
        out = tmp_path / f"out_{demo}"
        build.build_biotypes(
            res / "annotation/transcripts.parquet", out / "b.svg", out / "b.html", demo=demo
        )
        svg = (out / "b.svg").read_text()
        assert (figures.DEMO_MARK in svg) is demo
    fig = figures.plot_history(
        pd.DataFrame({"epoch": [0, 1], "train_loss": [2, 1], "val_loss": [2, 1]}), "run-x"
    )
    figures.mark_demo(fig)
    assert fig._suptitle.get_text() == f"{figures.DEMO_MARK}\nrun-x"  # the run's name kept


@pytest.mark.parametrize("run", ["dna_enformer_cross_attention_s0", None])
def test_run_captions_render_with_and_without_a_run_wildcard(run):
    # rule report_run renders each caption with its {run} wildcard; rule report_runs (one job
    # for every run) has none, and "``{{ snakemake.wildcards.run }}``" then rendered as a
    # broken rst literal, 126 docutils warnings in the demo's report
    import jinja2
    from docutils.core import publish_parts

    from helpers.paths import REPO

    class Wildcards:
        def __init__(self, **values):
            self.__dict__.update(values)

    snakemake = SimpleNamespace(
        wildcards=Wildcards(**({"run": run} if run else {})),
        config={"report": {"scatter_tissues": 4}},
    )
    for path in sorted((REPO / "report").glob("run_*.rst")):
        text = jinja2.Environment().from_string(path.read_text()).render(snakemake=snakemake)
        settings = {"report_level": 2, "halt_level": 2}  # a warning stops it
        html = publish_parts(text, writer_name="html", settings_overrides=settings)["body"]
        assert (run or "the run this section is named after") in html, path.name


def test_reused_tick_measures_follow_the_axis_back_to_an_earlier_view():
    """Within one save the axis' ticks are placed once per state, and matplotlib rewrites
    the same Tick objects in place: wide, narrow, wide again must give the wide ticks, not
    the kept list now holding the narrow labels (a cache of every state did)."""
    fig = figures._figure(4, 3)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])

    def ticks():
        return [(t.get_loc(), t.label1.get_text()) for t in ax.xaxis._update_ticks()]

    def at(low, high):
        ax.set_xlim(low, high)
        return ticks()

    wide, narrow = at(0, 1), at(0.6, 1)
    with figures._reused_measures():
        assert at(0, 1) == wide
        assert at(0.6, 1) == narrow
        assert at(0, 1) == wide


# ---------------------------------------------------------------- pooling checks


def test_runs_scored_on_another_test_set_are_refused(tmp_path):
    """build.py said every run is scored on the same tissues and groups, and checked none of
    it: runs with n_test 90 and 60 pooled silently, n_test taken from the first."""
    experiments = write_seeded_runs(tmp_path)
    paths = [tmp_path / "results/runs" / run / "metrics.json" for run in experiments]
    out = tmp_path / "out"
    odd = list(experiments)[4]
    write_run(tmp_path, odd, quality=0.5, seed=4, n_genes=20)  # fewer test transcripts
    with pytest.raises(
        InputError,
        match=rf"{odd}/metrics.json:n_test: 60 in {odd}, 90 in dna_enformer_\w+_s0: ",
    ):
        build.build_ablation(experiments, paths, "modalities", None, out / "a.html", out / "a.svg")
    assert not out.exists()  # nothing half-written
    write_run(tmp_path, odd, quality=0.5, seed=4)
    metrics = json.loads(paths[4].read_text())
    metrics["per_tissue"]["Kidney"] = metrics["per_tissue"].pop(TISSUES[0])
    paths[4].write_text(json.dumps(metrics))
    with pytest.raises(
        InputError,
        match=r":tissues: 5 tissues \(Adipose Tissue, Kidney not in both\) in rna_\w+, 5 tissues",
    ):
        build_experiments(experiments, paths, out)
    write_run(tmp_path, odd, quality=0.5, seed=4)
    metrics = json.loads(paths[4].read_text())
    metrics["within_gene_groups"] -= 1
    paths[4].write_text(json.dumps(metrics))
    with pytest.raises(InputError, match=r":within_gene_groups: "):
        build_experiments(experiments, paths, out)
    write_run(tmp_path, odd, quality=0.5, seed=4)
    baseline_dir = tmp_path / "results/baseline"
    write_baseline(tmp_path)
    metrics = json.loads((baseline_dir / "metrics.json").read_text())
    metrics["n_test"] = 1
    (baseline_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(InputError, match=r"baseline/metrics.json:n_test: 1 in baseline, 90 in "):
        build_experiments(experiments, paths, out, baseline_path=baseline_dir / "metrics.json")


def test_runs_tsv_writes_seeds_as_whole_numbers_beside_the_baseline(tmp_path):
    experiments = write_seeded_runs(tmp_path)
    paths = [tmp_path / "results/runs" / run / "metrics.json" for run in experiments]
    write_baseline(tmp_path)
    out = tmp_path / "out"
    build_experiments(
        experiments, paths, out, baseline_path=tmp_path / "results/baseline/metrics.json"
    )
    tsv = pd.read_csv(out / "r.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert tsv["seed"].tolist() == [str(e["seed"]) for e in experiments.values()] + [""]


def test_paper_note_leaves_a_missing_metric_out_and_states_the_aggregation():
    note = tables.paper_note({"label": "X et al., Table 2", "r2": 0.43, "spearman": None})
    assert "None" not in note and "Spearman" not in note
    assert "R² 0.43" in note and "unweighted mean over tissues" in note
    note = tables.paper_note({"label": "X", "r2": None, "spearman": None})
    assert "None" not in note and "(X)" in note
