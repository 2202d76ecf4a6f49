"""Sequence-free baseline: what the annotation alone predicts of an isoform's expression.

A third party reports R² ≈ 0.24 from length features alone; the sequence models are shown
beside this baseline, trained and scored on the same splits.

Features per transcript (``transcript_features``): spliced length, 5'UTR / CDS / 3'UTR
lengths, exon count, GC fraction of the spliced RNA (G+C over A+C+G+T; other letters such as
N are left out; no A/C/G/T at all gives NaN, which the model fills with the training mean),
and the transcript biotype one-hot (``design_matrix``; lengths and exon count as log1p).

Model (``fit_ridge``): every column standardised with the training split's mean and sd (a
column constant on the training split is only centred), targets centred per tissue, ridge
regression per tissue by SVD; each tissue's alpha is the one of ``ALPHAS`` with the lowest
mean squared error on the valid split. The model is fitted on the training split only, as a
training run is, and scored on the test split with ``isoflow.metrics.evaluate``.

Outputs (``run_baseline``), in a training run's formats (DESIGN.md): ``metrics.json``,
``predictions.parquet`` (transcript_id, gene_id, tissue, observed, predicted), and
``features.tsv``: ``feature``, one column per tissue, ``mean``; each value the ridge
coefficient on the standardised feature (log1p TPM per sd of the feature), rows by
decreasing absolute mean.

A gradient-boosting model is not offered: scikit-learn is not a dependency of isoflow, and
the ridge is a few lines of numpy.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from isoflow.errors import InputError
from isoflow.files import atomic_path
from isoflow.gtex import TISSUES_METADATA_KEY
from isoflow.metrics import evaluate, metrics_text, predictions_frame
from isoflow.sequences import read_fasta
from isoflow.splits import SPLITS

PathLike = str | os.PathLike
log = logging.getLogger(__name__)

MODELS = ("ridge",)
LENGTH_FEATURES = ("tx_len", "utr5_len", "cds_len", "utr3_len", "exon_count")
ALPHAS = np.logspace(-3, 6, 19)


def gc_fraction(sequence: str) -> float:
    """(G + C) / (A + C + G + T|U) of a sequence, any case; NaN when it has none of them."""
    seq = sequence.upper()
    gc = seq.count("G") + seq.count("C")
    called = gc + seq.count("A") + seq.count("T") + seq.count("U")
    return gc / called if called else float("nan")


def transcript_features(
    transcripts: pd.DataFrame, rna: Mapping[str, str], rna_path: PathLike | None = None
) -> pd.DataFrame:
    """One row per transcript of ``transcripts`` (transcripts.parquet columns), in its order.

    Columns: transcript_id, transcript_type, tx_len (sum of exon lengths), utr5_len,
    cds_len, utr3_len, exon_count, gc. Every transcript needs an RNA whose length is its
    spliced length (else the FASTA and the table come from different annotations).
    """
    ids = transcripts["transcript_id"].to_numpy()
    exon_count = transcripts["exon_starts"].map(len).to_numpy(dtype=np.int64)
    tx_len = np.array(
        [
            int(np.sum(np.subtract(ends, starts)))
            for starts, ends in zip(
                transcripts["exon_starts"], transcripts["exon_ends"], strict=True
            )
        ],
        dtype=np.int64,
    )
    gc = np.empty(len(ids), dtype=np.float64)
    for i, transcript_id in enumerate(ids):
        sequence = rna.get(transcript_id)
        if sequence is None:
            missing = sum(t not in rna for t in ids)
            raise InputError(rna_path, transcript_id, f"no RNA sequence ({missing} missing)")
        if len(sequence) != tx_len[i]:
            raise InputError(
                rna_path,
                transcript_id,
                f"RNA is {len(sequence)} nt but its exons sum to {tx_len[i]} nt: the FASTA and "
                "transcripts.parquet come from different annotations; rerun the sequences rule",
            )
        gc[i] = gc_fraction(sequence)
    return pd.DataFrame(
        {
            "transcript_id": ids,
            "transcript_type": transcripts["transcript_type"].to_numpy(),
            "tx_len": tx_len,
            "utr5_len": transcripts["utr5_len"].to_numpy(dtype=np.int64),
            "cds_len": transcripts["cds_len"].to_numpy(dtype=np.int64),
            "utr3_len": transcripts["utr3_len"].to_numpy(dtype=np.int64),
            "exon_count": exon_count,
            "gc": gc,
        }
    )


def design_matrix(features: pd.DataFrame, biotypes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(n, k) float matrix and its column names: log1p lengths, gc, biotype one-hot."""
    columns = [np.log1p(features[name].to_numpy(dtype=np.float64)) for name in LENGTH_FEATURES]
    names = [f"log1p_{name}" for name in LENGTH_FEATURES]
    columns.append(features["gc"].to_numpy(dtype=np.float64))
    names.append("gc")
    for biotype in biotypes:
        columns.append((features["transcript_type"] == biotype).to_numpy(dtype=np.float64))
        names.append(f"biotype={biotype}")
    return np.column_stack(columns), names


@dataclass
class RidgeFit:
    """A fitted multi-output ridge on standardised features (``fit_ridge``)."""

    mean: np.ndarray  # (k,) training mean of each feature (NaN is filled with it)
    scale: np.ndarray  # (k,) training sd, 1 where the column is constant
    coef: np.ndarray  # (k, n_tissues), per sd of the feature
    intercept: np.ndarray  # (n_tissues,)
    alpha: np.ndarray  # (n_tissues,) the alpha chosen on the valid split

    def standardise(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.mean, x)
        return (x - self.mean) / self.scale

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.standardise(x) @ self.coef + self.intercept


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    alphas: Sequence[float] = ALPHAS,
) -> RidgeFit:
    """Ridge per tissue (column of ``y``), alpha per tissue by valid-split MSE."""
    mean = np.nanmean(np.where(np.isnan(x_train).all(axis=0), 0.0, x_train), axis=0)
    unscaled = RidgeFit(mean, np.ones_like(mean), np.empty(0), np.empty(0), np.empty(0))
    scale = unscaled.standardise(x_train).std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    fit = RidgeFit(mean, scale, np.empty(0), y_train.mean(axis=0), np.empty(0))
    z_train, z_valid = fit.standardise(x_train), fit.standardise(x_valid)
    u, s, vt = np.linalg.svd(z_train, full_matrices=False)
    uty = u.T @ (y_train - fit.intercept)
    best_mse = np.full(y_train.shape[1], np.inf)
    fit.coef = np.zeros((x_train.shape[1], y_train.shape[1]))
    fit.alpha = np.zeros(y_train.shape[1])
    for alpha in sorted(alphas):
        coef = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
        mse = ((z_valid @ coef + fit.intercept - y_valid) ** 2).mean(axis=0)
        better = mse < best_mse
        best_mse[better] = mse[better]
        fit.coef[:, better] = coef[:, better]
        fit.alpha[better] = alpha
    return fit


def read_dataset_targets(path: PathLike) -> tuple[pd.DataFrame, list[str]]:
    """transcript_id, gene_id, split and the tissue columns of a dataset parquet (no
    sequences: they are the bulk of the file and the baseline does not read them)."""
    meta = pq.read_schema(path).metadata or {}
    if TISSUES_METADATA_KEY not in meta:
        raise InputError(path, None, "no isoflow.tissues schema metadata (not a dataset table)")
    tissues = json.loads(meta[TISSUES_METADATA_KEY])
    columns = ["transcript_id", "gene_id", "split", *tissues]
    frame = pq.read_table(path, columns=columns).to_pandas()
    duplicated = frame["transcript_id"].duplicated()
    if duplicated.any():
        raise InputError(path, frame["transcript_id"][duplicated].iloc[0], "listed twice")
    values = frame[tissues].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i[0]) for i in bad.nonzero())
        raise InputError(
            path, frame["transcript_id"].iat[row], f"target of {tissues[col]} is {values[row, col]}"
        )
    for split in SPLITS:
        if not (frame["split"] == split).any():
            raise InputError(
                path,
                "split",
                f"no {split} transcripts: the baseline fits on train, picks alpha on valid and "
                "scores on test (config split.valid_fraction/test_fraction must be > 0)",
            )
    return frame, tissues


def run_baseline(
    transcripts_parquet: PathLike,
    rna_fa_gz: PathLike,
    dataset_parquet: PathLike,
    metrics_json: PathLike,
    predictions_parquet: PathLike,
    features_tsv: PathLike,
    model: str = "ridge",
) -> dict[str, Any]:
    """Fit the baseline on the dataset's train split, write the three outputs, return the
    test metrics (the ``metrics.json`` dictionary)."""
    if model not in MODELS:
        raise InputError("config", "baseline.model", f"{model!r} is not one of {list(MODELS)}")
    frame, tissues = read_dataset_targets(dataset_parquet)
    annotation = pd.read_parquet(transcripts_parquet).set_index("transcript_id")
    missing = frame.loc[~frame["transcript_id"].isin(annotation.index), "transcript_id"]
    if len(missing):
        raise InputError(
            transcripts_parquet,
            missing.iloc[0],
            f"dataset transcript not in the annotation ({len(missing)} missing)",
        )
    annotation = annotation.loc[frame["transcript_id"]].reset_index()
    features = transcript_features(annotation, read_fasta(rna_fa_gz), rna_fa_gz)
    biotypes = sorted(features["transcript_type"].unique())
    x, names = design_matrix(features, biotypes)
    y = frame[tissues].to_numpy(dtype=np.float64)
    side = {split: (frame["split"] == split).to_numpy() for split in SPLITS}
    fit = fit_ridge(x[side["train"]], y[side["train"]], x[side["valid"]], y[side["valid"]])
    for tissue, alpha in zip(tissues, fit.alpha, strict=True):
        log.info("ridge %s: alpha %g (lowest valid MSE)", tissue, alpha)

    test = frame[side["test"]].reset_index(drop=True)
    predicted = fit.predict(x[side["test"]])
    metrics = evaluate(test["gene_id"].to_numpy(), y[side["test"]], predicted, tissues)
    log.info(
        "baseline test: %d transcripts, mean R² %s, mean Spearman %s",
        metrics["n_test"],
        metrics["mean"]["r2"],
        metrics["mean"]["spearman"],
    )
    coefficients = pd.DataFrame(fit.coef, columns=tissues)
    coefficients.insert(0, "feature", names)
    coefficients["mean"] = fit.coef.mean(axis=1)
    coefficients = coefficients.iloc[np.argsort(-np.abs(coefficients["mean"]), kind="stable")]

    with atomic_path(predictions_parquet) as tmp:
        predictions_frame(test, tissues, predicted).to_parquet(tmp, index=False)
    with atomic_path(features_tsv) as tmp:
        coefficients.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(metrics_json) as tmp:
        tmp.write_text(metrics_text(metrics))
    return metrics
