"""Readers of the files the report shows, each checked for what the report uses.

A run's ``metrics.json``, ``history.csv`` and ``predictions.parquet``; the targets' table
and ``stats.tsv`` (samples per tissue, GTEx ↔ annotation overlap); the sequence FASTAs;
the transcripts table joined to predictions (formats in DESIGN.md). The splits TSV is read
by its owner, ``isoflow.splits.read_splits``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isoflow.errors import InputError
from isoflow.metrics import PREDICTION_COLUMNS

METRICS = ("r2", "spearman", "pearson")


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A run's ``metrics.json``, checked for the keys the report uses."""
    try:
        metrics = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, err.lineno, f"not valid JSON: {err.msg}") from err
    if not isinstance(metrics, dict):
        raise InputError(path, None, "expected a JSON object")
    for key in ("mean", "per_tissue", "within_gene_spearman", "n_test"):
        if key not in metrics:
            raise InputError(path, key, "missing key (see DESIGN.md, metrics.json)")
    for key in METRICS:
        if key not in metrics["mean"]:
            raise InputError(path, f"mean.{key}", "missing key")
    for tissue, values in metrics["per_tissue"].items():
        for key in METRICS:
            if key not in values:
                raise InputError(path, f"per_tissue.{tissue}.{key}", "missing key")
    if "within_gene_groups" not in metrics:
        # written before tied predictions scored 0: its within-gene and constant-tissue
        # correlations skipped what newer runs count, so a table mixing them would flatter it
        raise InputError(
            path,
            "within_gene_groups",
            "written before tied predictions scored 0 (2026-11-27), so its correlations are "
            "not comparable with newer runs'; rescore it from its predictions: isoflow "
            f"rescore {Path(path).parent}",
        )
    # Optional (older runs lack them: not collapsed, spread unknown).
    if not isinstance(metrics.get("collapsed", False), bool):
        raise InputError(path, "collapsed", f"expected true or false, got {metrics['collapsed']!r}")
    spread = metrics.get("prediction_spread")
    if spread is not None and (isinstance(spread, bool) or not isinstance(spread, int | float)):
        raise InputError(path, "prediction_spread", f"expected a number or null, got {spread!r}")
    return metrics


def is_collapsed(metrics: Mapping[str, Any]) -> bool:
    """Whether a run predicted (near) constants; a missing key (older runs) means no."""
    return bool(metrics.get("collapsed", False))


def read_history(path: str | Path) -> pd.DataFrame:
    """``history.csv`` as one row per epoch (the last logged value of each column).

    Lightning's CSV logger writes step and epoch rows with blanks in the columns not
    logged at that row; ``groupby(...).last()`` keeps the last non-blank value.
    """
    history = pd.read_csv(path)
    for column in ("epoch", "train_loss", "val_loss"):
        if column not in history.columns:
            raise InputError(path, 1, f"missing column {column!r} in the header")
    numeric = history.select_dtypes("number")
    return numeric.groupby("epoch", sort=True).last().reset_index()


def read_predictions(path: str | Path) -> pd.DataFrame:
    """``predictions.parquet`` (long: transcript_id, gene_id, tissue, observed, predicted)."""
    predictions = pd.read_parquet(path)
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise InputError(path, None, f"missing columns {missing}")
    return predictions


def read_tissue_stats(path: str | Path) -> pd.DataFrame:
    """``{tissue_set}.stats.tsv``: tissue, n_samples, mean, sd (comment lines dropped)."""
    stats = pd.read_csv(path, sep="\t", comment="#")
    for column in ("tissue", "n_samples"):
        if column not in stats.columns:
            raise InputError(path, 1, f"missing column {column!r} in the header")
    return stats


_OVERLAP_LINE = re.compile(r"#\s*transcripts_(\w+)\t(.*)")


def read_overlap(path: str | Path) -> dict[str, int]:
    """GTEx ↔ annotation overlap from the ``# transcripts_{key}\t{count}`` comment lines
    of ``{tissue_set}.stats.tsv`` (``gtex_only``, ``annotation_only``, ``both``); empty when
    the file has none (written before they were added)."""
    overlap: dict[str, int] = {}
    with open(path) as lines:
        for number, line in enumerate(lines, start=1):
            match = _OVERLAP_LINE.fullmatch(line.rstrip("\n"))
            if not match:
                continue
            key, value = match.groups()
            try:
                count = int(value)
            except ValueError:
                raise InputError(
                    path, number, f"transcripts_{key}: count {value!r} is not a whole number"
                ) from None
            if count < 0:
                raise InputError(path, number, f"transcripts_{key}: negative count {count}")
            overlap[key] = count
    return overlap


_EXAMPLES_LINE = re.compile(r"#\s*examples_(\w+)\t(.*)")


def read_overlap_examples(path: str | Path) -> dict[str, list[str]]:
    """Example IDs of each side of the overlap from the ``# examples_{key}\t{id,id,...}``
    comment lines of ``{tissue_set}.stats.tsv`` (``gtex_only``, ``annotation_only``); empty
    when the file has none."""
    examples: dict[str, list[str]] = {}
    with open(path) as lines:
        for line in lines:
            match = _EXAMPLES_LINE.fullmatch(line.rstrip("\n"))
            if match:
                key, value = match.groups()
                examples[key] = [tid for tid in value.split(",") if tid]
    return examples


def read_targets(path: str | Path) -> tuple[pd.DataFrame, pd.Series]:
    """``targets/{tissue_set}.parquet``: (log1p TPM, one column per tissue; gene_id per row).

    The tissues are the schema metadata ``isoflow.tissues`` where present, else every
    column but the IDs; each must be numeric."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    frame = pd.read_parquet(path)
    for column in ("transcript_id", "gene_id"):
        if column not in frame.columns:
            raise InputError(path, None, f"missing column {column!r}")
    meta = (schema.metadata or {}).get(b"isoflow.tissues")
    tissues = (
        json.loads(meta)
        if meta
        else [c for c in frame.columns if c not in ("transcript_id", "gene_id")]
    )
    missing = [t for t in tissues if t not in frame.columns]
    if missing:
        raise InputError(path, None, f"tissue columns {missing} named in isoflow.tissues absent")
    for tissue in tissues:
        if not pd.api.types.is_numeric_dtype(frame[tissue]):
            raise InputError(path, tissue, f"tissue column is {frame[tissue].dtype}, not numeric")
    return frame[tissues], frame["gene_id"]


def sequence_lengths(fasta: str | Path) -> np.ndarray:
    """Length of every record of a (gzip) FASTA, in file order."""
    import pysam

    with pysam.FastxFile(str(fasta)) as records:
        return np.fromiter((len(r.sequence or "") for r in records), dtype=np.int64)


def join_transcripts(predictions: pd.DataFrame, transcripts: str | Path) -> pd.DataFrame:
    """Predictions with each transcript's biotype and spliced length (sum of exons, nt)."""
    import pyarrow.parquet as pq

    needed = ["transcript_id", "transcript_type", "exon_starts", "exon_ends"]
    missing = [c for c in needed if c not in pq.read_schema(transcripts).names]
    if missing:
        raise InputError(transcripts, None, f"missing columns {missing} (see DESIGN.md)")
    annotation = pd.read_parquet(transcripts, columns=needed)
    annotation["length"] = [
        int(np.sum(np.asarray(e) - np.asarray(s)))
        for s, e in zip(annotation["exon_starts"], annotation["exon_ends"], strict=True)
    ]
    joined = predictions.merge(
        annotation[["transcript_id", "transcript_type", "length"]], on="transcript_id", how="left"
    )
    missing = joined.loc[joined["transcript_type"].isna(), "transcript_id"]
    if len(missing):
        raise InputError(
            transcripts,
            missing.iloc[0],
            f"predicted transcript not in the annotation ({missing.nunique()} such)",
        )
    return joined
