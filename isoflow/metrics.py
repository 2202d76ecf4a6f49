"""Test-set metrics: per-tissue R², Spearman, Pearson, their means, and within-gene Spearman.

Conventions (also what ``metrics.json`` means):

- Per tissue, over all test transcripts: R² = 1 - SS_res / SS_tot (can be negative),
  Pearson r, Spearman rho with tied values given their average rank (scipy's default).
- A tissue whose observed values are constant (or hold a non-finite value, which the
  callers reject before) has an undefined correlation: it is reported as ``None`` (JSON
  ``null``) and left out of the means. That set of tissues depends on the test set alone,
  so every run on it is averaged over the same tissues.
- A tissue whose observed values vary but whose predictions are all equal ranks nothing: its
  Spearman and Pearson are 0 (what any order of the tied values gives on average), never
  left out. Leaving it out would average a model that cannot tell transcripts apart over an
  easier, smaller set. ``constant_prediction_tissues`` names those tissues.
- Within-gene Spearman: for each gene with at least two test isoforms and each tissue, the
  Spearman rho between predicted and observed across that gene's isoforms (ties: average
  ranks). A (gene, tissue) group whose observed values are all equal has no defined rank
  correlation and is skipped (again a property of the test set, the same for every run). A
  group whose observed values vary but whose predictions all tie scores 0: a model that
  gives a gene's isoforms one value (a DNA-only model, for isoforms sharing a TSS) has not
  ranked them. The reported value is the unweighted mean over the scored groups; ``None``
  when there is none. ``within_gene_groups`` counts the scored groups and
  ``within_gene_tied`` those of them scored 0 for tied predictions. Ties are exact
  (``==``), which holds for equal inputs because a run predicts each distinct input once and
  copies that row to every transcript sharing it (``isoflow.train.predict``): predicted each
  in its own batch and position, one input came out up to ~1e-6 apart (a float sum's order
  depends on both: on an Intel CPU with the kernels held to AVX2, as on a GPU under bf16),
  and 90 of the DNA-only demo run's 770 groups of one input were ranked by that noise, often
  ±1 (docs/benchmarks.md, "The same bytes on another CPU").
  ``isoflow rescore`` of a ``predictions.parquet`` written before that keeps its noise.
- Prediction spread: per tissue sd(predicted) / sd(observed) over the test transcripts, the
  median over the tissues where the observed sd is not zero (``None`` when there is none).
  A run whose spread is below ``COLLAPSE_RATIO`` predicts an (almost) constant per tissue
  and is marked ``collapsed``: its correlations rank float noise, whatever their value.
- Every number is finite or ``None``: ``metrics.json`` is strict JSON (no NaN/Infinity).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

# A run whose predictions spread less than this fraction of the observed values' spread
# (median over tissues) is "collapsed": it predicts a constant up to float noise.
COLLAPSE_RATIO = 0.01


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def r2_score(observed: np.ndarray, predicted: np.ndarray) -> float | None:
    """Coefficient of determination; None when the observed values are constant."""
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    ss_tot = float(np.sum((observed - observed.mean()) ** 2))
    if len(observed) < 2 or ss_tot == 0.0:
        return None
    ss_res = float(np.sum((observed - predicted) ** 2))
    return _finite_or_none(1.0 - ss_res / ss_tot)


def _correlation(kind: str, observed: np.ndarray, predicted: np.ndarray) -> float | None:
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    finite = np.isfinite(observed).all() and np.isfinite(predicted).all()
    if len(observed) < 2 or not finite or np.ptp(observed) == 0:
        return None  # undefined: a non-finite value (callers reject them first) or no spread
    if np.ptp(predicted) == 0:
        return 0.0  # tied predictions rank nothing (module docstring)
    func = stats.spearmanr if kind == "spearman" else stats.pearsonr
    return _finite_or_none(func(observed, predicted)[0])


def tissue_metrics(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """R², Spearman and Pearson of one tissue's observed vs predicted values."""
    return {
        "r2": r2_score(observed, predicted),
        "spearman": _correlation("spearman", observed, predicted),
        "pearson": _correlation("pearson", observed, predicted),
    }


def within_gene_spearman(
    gene_ids: Sequence[str], observed: np.ndarray, predicted: np.ndarray
) -> float | None:
    """Mean over (gene, tissue) groups of the Spearman rho across a gene's isoforms (module
    docstring: groups with constant observed values skipped, tied predictions scored 0)."""
    rhos, _ = within_gene_groups(gene_ids, observed, predicted)
    return _finite_or_none(float(rhos.mean())) if len(rhos) else None


def group_rhos(
    frame: pd.DataFrame,
    keys: Sequence[str],
    observed: str = "observed",
    predicted: str = "predicted",
) -> pd.DataFrame:
    """Spearman's rho between ``observed`` and ``predicted`` within each group of ``keys``
    (rows in one group: one gene's isoforms in one tissue), the one definition behind
    ``within_gene_groups`` and the report's per-group table. Groups of fewer than two rows
    and groups whose observed values do not vary are dropped; a group whose predictions all
    tie scores 0 (module docstring). Indexed by ``keys`` (sorted), with columns
    ``isoforms``, ``rho`` and ``tied``. Computed as the Pearson correlation of
    within-group average ranks, which is Spearman's rho with ties averaged, vectorised over
    every group at once."""
    keys = list(keys)
    frame = frame[[*keys, observed, predicted]]
    frame = frame[frame.groupby(keys)[keys[0]].transform("size") >= 2]
    if frame.empty:
        index = pd.MultiIndex.from_arrays([[] for _ in keys], names=keys)
        return pd.DataFrame(
            {
                "isoforms": np.zeros(0, dtype=np.int64),
                "rho": np.zeros(0),
                "tied": np.zeros(0, bool),
            },
            index=index,
        )
    grouped = frame.groupby(keys)
    frame = frame.assign(
        ro=grouped[observed].rank(method="average"), rp=grouped[predicted].rank(method="average")
    )
    grouped = frame.groupby(keys)
    frame = frame.assign(
        co=frame["ro"] - grouped["ro"].transform("mean"),
        cp=frame["rp"] - grouped["rp"].transform("mean"),
    )
    frame = frame.assign(xy=frame["co"] * frame["cp"], xx=frame["co"] ** 2, yy=frame["cp"] ** 2)
    sums = frame.groupby(keys).agg(
        isoforms=("xy", "size"), xy=("xy", "sum"), xx=("xx", "sum"), yy=("yy", "sum")
    )
    sums = sums[sums["xx"] > 0]  # observed values that vary: a rank order to match
    tied = (sums["yy"] == 0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(tied, 0.0, (sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])).to_numpy())
    return pd.DataFrame({"isoforms": sums["isoforms"], "rho": rho, "tied": tied}, index=sums.index)


def within_gene_groups(
    gene_ids: Sequence[str], observed: np.ndarray, predicted: np.ndarray
) -> tuple[np.ndarray, int]:
    """(rho of every scored (gene, tissue) group, how many of them scored 0 for predictions
    that all tie). ``observed`` and ``predicted`` are (n_transcripts, n_tissues); the rhos
    come tissue by tissue (column order), genes sorted within a tissue (``group_rhos``)."""
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if observed.ndim == 1:
        observed, predicted = observed[:, None], predicted[:, None]
    n, n_tissues = observed.shape
    long = pd.DataFrame(
        {
            "tissue": np.repeat(np.arange(n_tissues), n),
            "gene": np.tile(np.asarray(gene_ids), n_tissues),
            "obs": observed.T.reshape(-1),
            "pred": predicted.T.reshape(-1),
        }
    )
    groups = group_rhos(long, ["tissue", "gene"], "obs", "pred")
    return groups["rho"].to_numpy(dtype=np.float64), int(groups["tied"].sum())


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def prediction_spread(observed: np.ndarray, predicted: np.ndarray) -> float | None:
    """Median over tissues of sd(predicted) / sd(observed) for (n, n_tissues) arrays; tissues
    with constant observed values are left out; None when no tissue is left."""
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        sd_observed = observed.std(axis=0)
        sd_predicted = predicted.std(axis=0)
        defined = (sd_observed > 0) & np.isfinite(sd_observed) & np.isfinite(sd_predicted)
        if observed.shape[0] < 2 or not defined.any():
            return None
        return _finite_or_none(float(np.median(sd_predicted[defined] / sd_observed[defined])))


def tissue_means(
    observed: np.ndarray, predicted: np.ndarray, tissues: Sequence[str]
) -> tuple[dict[str, dict[str, float | None]], dict[str, float | None]]:
    """(per tissue, mean over tissues) of R², Spearman and Pearson for (n_transcripts,
    n_tissues) arrays: ``evaluate``'s ``per_tissue`` and ``mean``, without the within-gene
    Spearman (what validation logs each epoch)."""
    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if observed.shape != predicted.shape or observed.shape[1] != len(tissues):
        raise ValueError(
            f"observed {observed.shape} and predicted {predicted.shape} must both be "
            f"(n_transcripts, {len(tissues)}), one column per tissue named"
        )
    per_tissue = {
        tissue: tissue_metrics(observed[:, t], predicted[:, t]) for t, tissue in enumerate(tissues)
    }
    mean = {
        key: _mean([m[key] for m in per_tissue.values()]) for key in ("r2", "spearman", "pearson")
    }
    return per_tissue, mean


def evaluate(
    gene_ids: Sequence[str],
    observed: np.ndarray,
    predicted: np.ndarray,
    tissues: Sequence[str],
) -> dict[str, Any]:
    """The ``metrics.json`` dictionary (DESIGN.md) for (n_transcripts, n_tissues) arrays,
    computed at the precision ``predictions.parquet`` stores them (float32, widened to
    float64 for the sums): the metrics are a function of that file, so ``isoflow rescore``
    of an unchanged run writes the same ``metrics.json`` bit for bit (float64 targets gave
    another last digit of ``prediction_spread``)."""
    observed = np.asarray(observed, dtype=np.float32).astype(np.float64)
    predicted = np.asarray(predicted, dtype=np.float32).astype(np.float64)
    per_tissue, mean = tissue_means(observed, predicted, tissues)
    spread = prediction_spread(observed, predicted)
    rhos, tied = within_gene_groups(gene_ids, observed, predicted)
    with np.errstate(invalid="ignore"):
        varies = np.ptp(observed, axis=0) > 0
    constant = [t for i, t in enumerate(tissues) if varies[i] and np.ptp(predicted[:, i]) == 0]
    return {
        "mean": mean,
        "per_tissue": per_tissue,
        "constant_prediction_tissues": constant,
        "within_gene_spearman": _finite_or_none(float(rhos.mean())) if len(rhos) else None,
        "within_gene_groups": int(len(rhos)),
        "within_gene_tied": tied,
        "n_test": int(observed.shape[0]),
        "prediction_spread": spread,
        "collapsed": spread is not None and spread < COLLAPSE_RATIO,
    }


def metrics_text(metrics: dict[str, Any]) -> str:
    """``metrics.json``'s text: strict JSON (a NaN or infinity raises here), indented."""
    import json

    return json.dumps(metrics, indent=2, allow_nan=False) + "\n"


# the columns of predictions.parquet, a run's or the baseline's (predictions_frame)
PREDICTION_COLUMNS = ("transcript_id", "gene_id", "tissue", "observed", "predicted")


def predictions_frame(
    frame: pd.DataFrame, tissues: Sequence[str], predicted: np.ndarray
) -> pd.DataFrame:
    """``predictions.parquet`` of a run or the baseline: one row per transcript x tissue
    (transcript_id, gene_id, tissue, observed, predicted; float32)."""
    n = len(frame)
    return pd.DataFrame(
        {
            "transcript_id": np.repeat(frame["transcript_id"].to_numpy(), len(tissues)),
            "gene_id": np.repeat(frame["gene_id"].to_numpy(), len(tissues)),
            "tissue": np.tile(np.array(tissues, dtype=object), n),
            "observed": frame[list(tissues)].to_numpy(dtype=np.float32).reshape(-1),
            "predicted": predicted.astype(np.float32).reshape(-1),
        }
    )


# ---------------------------------------------------------------- `isoflow rescore`

HELP = (
    "recompute a run's (or the baseline's) metrics.json from its predictions.parquet under "
    "today's definitions (e.g. one written before tied predictions scored 0)"
)


def rescore(
    run_dir: str | os.PathLike, *, write: bool = True
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(new metrics, the old ``metrics.json`` or None): ``run_dir/metrics.json`` rewritten
    from ``run_dir/predictions.parquet`` (the float32 predictions as stored: values that
    differed only below float32's precision now tie) in the file's own transcript and
    tissue order. Every read and check comes first (an unreadable or empty table, a
    missing, null or non-finite value, a transcript under two genes, an unreadable old
    ``metrics.json``: one :class:`InputError` line naming the file and what is wrong), so
    ``write=False`` validates without writing."""
    import json

    from isoflow.errors import InputError
    from isoflow.files import atomic_path

    run_dir = Path(run_dir)
    path = run_dir / "predictions.parquet"
    if not path.is_file():
        raise InputError(path, None, "no predictions to rescore (a run's or the baseline's)")
    import pyarrow as pa

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as err:  # the file's fault, not a bug
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            path,
            None,
            f"not a readable Parquet table ({reason}): write the run's predictions again",
        ) from None
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(path, None, f"missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise InputError(path, None, "no rows: nothing to rescore")
    for column in ("transcript_id", "gene_id", "tissue"):
        null = frame[column].isna().to_numpy()
        if null.any():
            row = int(np.flatnonzero(null)[0])
            raise InputError(path, f"row {row + 1}", f"{column} is empty")
    for column in ("observed", "predicted"):
        kind = frame[column].dtype
        if not pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind):
            raise InputError(path, column, f"not a numeric column ({kind})")
        values = frame[column].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = frame.iloc[int(np.flatnonzero(bad)[0])]
            raise InputError(
                path,
                f"{row['transcript_id']}/{row['tissue']}",
                f"{column} is {values[np.flatnonzero(bad)[0]]} ({int(bad.sum())} non-finite "
                f"value(s) in {column}): metrics over it would leave the tissue out",
            )
    genes_per = frame.groupby("transcript_id", sort=False)["gene_id"].nunique()
    if (genes_per > 1).any():
        tx = genes_per.index[genes_per.to_numpy() > 1][0]
        found = sorted(str(g) for g in frame.loc[frame["transcript_id"] == tx, "gene_id"].unique())
        raise InputError(
            path, tx, f"under two genes ({', '.join(found[:2])}): one gene per transcript"
        )
    transcripts = pd.unique(frame["transcript_id"])
    tissues = [str(t) for t in pd.unique(frame["tissue"])]
    if frame.duplicated(["transcript_id", "tissue"]).any() or len(frame) != len(transcripts) * len(
        tissues
    ):
        raise InputError(
            path, None, "not one row per transcript and tissue: not a predictions table"
        )
    wide = {
        column: frame.pivot(index="transcript_id", columns="tissue", values=column)
        .loc[transcripts, tissues]
        .to_numpy(dtype=np.float64)
        for column in ("observed", "predicted")
    }
    genes = frame.drop_duplicates("transcript_id").set_index("transcript_id").loc[transcripts]
    metrics = evaluate(genes["gene_id"].to_numpy(), wide["observed"], wide["predicted"], tissues)
    old_path = run_dir / "metrics.json"
    old, old_text = None, None
    if old_path.is_file():
        try:
            old_text = old_path.read_text(encoding="utf-8")
            old = json.loads(old_text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(
                old_path, None, f"unreadable ({err}): remove it to rescore from the predictions"
            ) from None
        if not isinstance(old, dict):
            raise InputError(
                old_path, None, "not a metrics mapping: remove it to rescore from the predictions"
            )
    text = metrics_text(metrics)
    if write and old_text != text:  # an unchanged file keeps its mtime: nothing downstream reruns
        with atomic_path(old_path) as tmp:
            tmp.write_text(text)
    return metrics, old


def add_arguments(parser) -> None:
    parser.add_argument(
        "runs", nargs="+", help="run folders (results/runs/RUN) or results/baseline"
    )


def run(args) -> int:
    import logging

    log = logging.getLogger("isoflow.metrics")
    # every run checked before any is rewritten: a bad third run leaves the first two as
    # they were
    for run_dir in args.runs:
        rescore(run_dir, write=False)
    for run_dir in args.runs:
        new, old = rescore(run_dir)
        before = (old or {}).get("within_gene_spearman")
        log.info(
            "%s: within-gene Spearman %s -> %s (%d groups, %d with tied predictions scored 0); "
            "test mean Spearman %s -> %s",
            run_dir,
            before,
            new["within_gene_spearman"],
            new["within_gene_groups"],
            new["within_gene_tied"],
            ((old or {}).get("mean") or {}).get("spearman"),
            new["mean"]["spearman"],
        )
    return 0
