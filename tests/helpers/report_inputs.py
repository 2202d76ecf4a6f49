"""Workflow outputs in the DESIGN.md formats, written small and fast, for the report's tests:
the data views' inputs (annotation, targets, splits, sequences), a run's metrics, predictions
and history, and the sequence-free baseline's."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from isoflow.metrics import evaluate

TISSUES = ["Adipose Tissue", "Brain", "Liver", "Lung", "Testis"]


def write_data_inputs(root: Path, n_genes: int = 40, seed: int = 0) -> None:
    """transcripts.parquet (with chrom, strand, tss), targets (+ stats), splits, rna/protein
    FASTA under ``root/results``.

    The annotation also holds the 90 transcripts ``write_run`` predicts, so the per-run
    error views find each predicted transcript's biotype and length."""
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
    known = {row["transcript_id"] for row in rows}
    for i in range(90):
        if f"ENST{i:06d}.1" not in known:
            rows.append(
                {
                    "transcript_id": f"ENST{i:06d}.1",
                    "gene_id": f"ENSG{i // 3:05d}.1",
                    "gene_name": f"G{i // 3}",
                    "transcript_type": ["protein_coding", "lncRNA"][i % 2],
                }
            )
    transcripts = pd.DataFrame(rows)
    # genes 100 kb apart on chr1, their isoforms' TSSs within 100 bp: the splits view's TSS
    # counts (isoflow.splits.tss_leaks) read chrom, strand and tss
    gene_index = transcripts["gene_id"].str[4:9].astype(int)
    transcripts["chrom"] = "chr1"
    transcripts["strand"] = np.where(gene_index % 2, "-", "+")
    transcripts["tss"] = gene_index * 100_000 + transcripts.groupby("gene_id").cumcount() * 10
    exons = [int(n) for n in rng.integers(1, 6, len(transcripts))]
    transcripts["exon_starts"] = [[1000 * k for k in range(n)] for n in exons]
    transcripts["exon_ends"] = [
        [1000 * k + int(rng.integers(50, 900)) for k in range(n)] for n in exons
    ]
    (root / "results/annotation").mkdir(parents=True, exist_ok=True)
    transcripts.to_parquet(root / "results/annotation/transcripts.parquet")

    (root / "results/targets").mkdir(parents=True, exist_ok=True)
    targets = transcripts[["transcript_id", "gene_id"]].copy()
    for tissue in TISSUES:
        values = np.log1p(rng.gamma(0.8, 5.0, len(targets)))
        values[rng.random(len(targets)) < 0.2] = 0.0
        targets[tissue] = values.astype(np.float32)
    table = pa.Table.from_pandas(targets, preserve_index=False)
    table = table.replace_schema_metadata({"isoflow.tissues": json.dumps(TISSUES)})
    pq.write_table(table, root / "results/targets/smts.parquet")
    stats = "tissue\tn_samples\tmean\tsd\n" + "".join(
        f"{t}\t{10 + 3 * i}\t{1.5 + i / 10:.3f}\t0.800\n" for i, t in enumerate(TISSUES)
    )
    stats += "# transcripts_gtex_only\t3\n# transcripts_annotation_only\t2\n"
    stats += "# transcripts_both\t100\n"
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
    """metrics.json (from isoflow.metrics.evaluate), predictions.parquet, history.csv.

    Every run of ``n_genes`` is scored on one test set (the same observed values, as every
    run of a workflow is); ``seed`` draws its noise."""
    genes = np.repeat([f"ENSG{g:05d}.1" for g in range(n_genes)], 3)
    transcripts = [f"ENST{i:06d}.1" for i in range(len(genes))]
    observed = np.random.default_rng(n_genes).gamma(2.0, 1.0, size=(len(genes), len(TISSUES)))
    rng = np.random.default_rng(seed)
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


def write_baseline(root: Path) -> dict:
    """results/baseline/{metrics.json,predictions.parquet} in a run's format (the contract
    of the baseline rule), with the collapsed/prediction_spread keys of newer runs."""
    out = write_run(root, "baseline", quality=0.3, seed=99)
    target = root / "results/baseline"
    target.mkdir(parents=True, exist_ok=True)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.update(collapsed=False, prediction_spread=0.4)
    (target / "metrics.json").write_text(json.dumps(metrics))
    (out / "predictions.parquet").rename(target / "predictions.parquet")
    return metrics


def build_experiments(experiments, paths, out: Path, name: str = "r", **options) -> Path:
    """``isoflow.report.build.build_experiments`` of ``paths`` into ``out``, without a paper:
    ``{name}.html``, ``{name}.tsv``, ``{name}.svg`` and ``{name}w.svg``; returns the page."""
    from isoflow.report import build

    build.build_experiments(
        experiments,
        paths,
        None,
        out / f"{name}.html",
        out / f"{name}.tsv",
        out / f"{name}.svg",
        out / f"{name}w.svg",
        **options,
    )
    return out / f"{name}.html"
