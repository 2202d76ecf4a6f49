"""Test-set sampling uncertainty of the report's metrics: a paired bootstrap over the test
set's split units.

The sd over seeds says how much training noise moves a metric; it says nothing of which test
transcripts happened to be drawn. Here every resample draws the test set's units with
replacement, the unit the split kept whole (``workflow.bootstrap_unit``, :func:`split_units`):
under the ``locus`` scheme a
locus, genes whose TSSs lie within ``split.locus_tss_distance`` bp or whose exons overlap drawn
together (they share DNA, so they are not independent: drawing them apart narrows the
intervals); under ``gene`` (and ``chrom``, whose unit, a chromosome, is too few to resample) a
gene, its transcripts together. The same resamples serve every run (paired), and each run is
scored on them exactly as
``isoflow.metrics`` scores the whole test set: per tissue R², Spearman (average ranks) and
Pearson, their unweighted mean over the tissues where the observed values vary, tied
predictions scoring 0; within-gene Spearman the mean of the per-(gene, tissue) rhos of the
drawn genes (a drawn gene's rhos are its own, ``metrics.group_rhos``). A unit drawn k times
counts k times: it is a weighted statistic with integer weights, so no resample is expanded
and every resample of a chunk is computed at once (numpy over a (B, n, tissues) array).

A setting's value in a resample is the mean over its seeds of their values in it; its 95 %
interval the 2.5th and 97.5th percentiles over resamples; a difference between two settings
is taken resample by resample (paired), its interval likewise. Same predictions, resample
count and seed: the same intervals, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isoflow.errors import InputError
from isoflow.files import atomic_path
from isoflow.metrics import PREDICTION_COLUMNS, group_rhos
from isoflow.splits import LOCUS_TSS_DISTANCE, gene_keys, locus_units

# The report's metric labels (tables.METRIC_LABELS and the within-gene column), in order.
LABELS = ("R²", "Spearman", "Pearson", "within-gene Spearman")
# Elements of one (resamples x transcripts x tissues) block: chunks of resamples stay under it.
BLOCK = 4_000_000
LEVEL = 0.95
# A run's resample values (write_run), beside its metrics.json and predictions.parquet.
BOOTSTRAP_FILE = "bootstrap.npz"
# What a resample draws (workflow.bootstrap_unit: the unit the split kept whole), in the
# plural as the notes say it.
UNIT_NAMES = {"gene": "genes", "locus": "loci"}


def split_units(
    annotation: str | Path | None, unit: str, locus_tss_distance: int = LOCUS_TSS_DISTANCE
) -> pd.Series | None:
    """Gene key -> the key of its locus (``splits.locus_units`` of ``annotation``,
    transcripts.parquet, the function and distance the locus split read) when ``unit`` is
    ``locus``; None (each gene its own unit) for ``gene``."""
    if unit not in UNIT_NAMES:
        raise ValueError(f"unknown bootstrap unit {unit!r}; one of {', '.join(UNIT_NAMES)}")
    if unit == "gene":
        return None
    columns = ["gene_id", "chrom", "strand", "tss", "exon_starts", "exon_ends"]
    return locus_units(pd.read_parquet(annotation, columns=columns), locus_tss_distance)


class TestSet:
    """The test set every run is scored on: its transcripts (sorted), tissues (sorted), the
    gene and the resampled unit of each transcript and the observed values, from the first
    predictions read. ``units``: :func:`split_units` (None: each gene its own unit)."""

    def __init__(
        self, predictions: pd.DataFrame, source: str | Path, units: pd.Series | None = None
    ):
        wide = _wide(predictions, "observed", source)
        genes = predictions.drop_duplicates("transcript_id").set_index("transcript_id")
        transcripts = wide.index.to_numpy()
        gene_of = genes.loc[transcripts, "gene_id"].to_numpy()
        if units is None:
            unit, unit_of = "gene", gene_of
        else:
            unit = "locus"
            unit_of = pd.Series(gene_keys(pd.Series(gene_of))).map(units).to_numpy()
            missing = pd.isna(unit_of)
            if missing.any():
                row = int(np.argmax(missing))
                raise InputError(
                    source,
                    transcripts[row],
                    f"gene {gene_of[row]} is in no locus of the annotation the split read: "
                    "the predictions are not of this annotation; rerun the dataset and runs",
                )
        self._set(
            transcripts,
            wide.columns.to_numpy(),
            gene_of,
            unit,
            unit_of,
            wide.to_numpy(dtype=np.float64),
            source,
        )

    @classmethod
    def from_arrays(
        cls,
        transcripts: np.ndarray,
        tissues: np.ndarray,
        gene_of: np.ndarray,
        unit: str,
        unit_of: np.ndarray,
        observed: np.ndarray,
        source: str | Path,
    ) -> TestSet:
        """The test set a :func:`write_run` file holds."""
        test = cls.__new__(cls)
        test._set(transcripts, tissues, gene_of, unit, unit_of, observed, source)
        return test

    def _set(self, transcripts, tissues, gene_of, unit, unit_of, observed, source) -> None:
        self.transcripts = transcripts
        self.tissues = tissues
        self.observed = observed
        self.genes, self.gene_index = np.unique(gene_of, return_inverse=True)
        self.unit = unit
        self.units, self.unit_index = np.unique(unit_of.astype(str), return_inverse=True)
        # each gene's unit (a gene's transcripts share it: units are unions of gene keys)
        self.gene_unit = np.zeros(len(self.genes), dtype=np.int64)
        self.gene_unit[self.gene_index] = self.unit_index
        self.source = str(source)

    def unit_of(self) -> np.ndarray:
        """Each transcript's unit key."""
        return self.units[self.unit_index]

    def predicted(self, predictions: pd.DataFrame, source: str | Path) -> np.ndarray:
        """``predictions``' (transcripts, tissues) predicted values, checked to be scored on
        this test set (same transcripts, tissues and observed values)."""
        observed = _wide(predictions, "observed", source)
        self.check(
            observed.index.to_numpy(),
            observed.columns.to_numpy(),
            observed.to_numpy(dtype=np.float64),
            source,
        )
        return _wide(predictions, "predicted", source).to_numpy(dtype=np.float64)

    def check(
        self,
        transcripts: np.ndarray,
        tissues: np.ndarray,
        observed: np.ndarray,
        source: str | Path,
        gene_of: np.ndarray | None = None,
        unit_of: np.ndarray | None = None,
    ) -> None:
        """Raise ``InputError`` naming ``source`` unless its sorted ``transcripts``,
        ``tissues`` and ``observed`` values (and, given, each transcript's gene and unit)
        are this test set's: the report compares runs on one test set, the same resamples
        of it."""
        if len(transcripts) != len(self.transcripts) or not (transcripts == self.transcripts).all():
            extra = sorted(set(transcripts) ^ set(self.transcripts))
            raise InputError(
                source,
                extra[0] if extra else None,
                f"not scored on the test set of {self.source} ({len(transcripts)} transcripts "
                f"against {len(self.transcripts)}): the report compares runs on one test set",
            )
        if list(tissues) != list(self.tissues):
            raise InputError(source, None, f"tissues {list(tissues)} differ from {self.source}'s")
        same = np.isclose(observed, self.observed, rtol=0, atol=1e-6)
        if not same.all():
            row, col = np.argwhere(~same)[0]
            raise InputError(
                source,
                f"{self.transcripts[row]}, {self.tissues[col]}",
                f"observed value differs from {self.source}'s: not the same targets",
            )
        if gene_of is not None:
            differs = gene_of != self.genes[self.gene_index]
            if differs.any():
                row = int(np.argmax(differs))
                raise InputError(
                    source,
                    self.transcripts[row],
                    f"gene {gene_of[row]}, {self.genes[self.gene_index][row]} in "
                    f"{self.source}: not the same test genes, so not the same resamples",
                )
        if unit_of is not None:
            differs = unit_of.astype(str) != self.unit_of()
            if differs.any():
                row = int(np.argmax(differs))
                raise InputError(
                    source,
                    self.transcripts[row],
                    f"{self.unit} {unit_of[row]}, {self.unit_of()[row]} in {self.source}: not "
                    "the same test units, so not the same resamples",
                )

    def unit_counts(self, resamples: int, seed: int) -> np.ndarray:
        """(resamples, units) how many times each unit is drawn in each resample."""
        rng = np.random.default_rng(seed)
        n = len(self.units)
        draws = rng.integers(0, n, size=(resamples, n))
        flat = draws + (np.arange(resamples) * n)[:, None]
        return np.bincount(flat.ravel(), minlength=resamples * n).reshape(resamples, n)


def _wide(predictions: pd.DataFrame, column: str, source: str | Path) -> pd.DataFrame:
    if predictions.duplicated(["transcript_id", "tissue"]).any():
        row = predictions[predictions.duplicated(["transcript_id", "tissue"])].iloc[0]
        raise InputError(source, row["transcript_id"], f"two rows for tissue {row['tissue']}")
    wide = predictions.pivot(index="transcript_id", columns="tissue", values=column)
    wide = wide.sort_index().sort_index(axis=1)
    if wide.isna().any().any():
        row, col = np.argwhere(wide.isna().to_numpy())[0]
        raise InputError(source, wide.index[row], f"no {column} value for {wide.columns[col]}")
    return wide


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``np.take_along_axis(values, index[None], axis=1)`` for (B, n, T) ``values`` and an
    (n, T) ``index``, as one flat ``np.take`` (several times faster)."""
    b, n, t = values.shape
    flat = (index * t + np.arange(t)).ravel()
    return np.take(values.reshape(b, n * t), flat, axis=1).reshape(b, n, t)


class _Ranking:
    """What ranking ``values`` (n, T) needs whatever the weights, taken once per array
    instead of once per chunk of resamples: each tissue's sort order and its inverse, and
    where ties are, the first and last sorted position of each value's run of ties."""

    def __init__(self, values: np.ndarray):
        n, t = values.shape
        self.order = np.argsort(values, axis=0, kind="stable")
        self.inverse = np.argsort(self.order, axis=0)
        ordered = np.take_along_axis(values, self.order, axis=0)
        new = np.ones_like(ordered, dtype=bool)
        new[1:] = ordered[1:] != ordered[:-1]
        self.ties = not new.all()
        if self.ties:
            positions = np.arange(n)[:, None].repeat(t, axis=1)
            first = np.maximum.accumulate(np.where(new, positions, 0), axis=0)
            ends = np.ones_like(new)
            ends[:-1] = new[1:]
            self.last = np.minimum.accumulate(np.where(ends, positions, n - 1)[::-1], axis=0)[::-1]
            self.starts = first > 0
            self.before = np.maximum(first - 1, 0)


def _centred_ranks(ranking: _Ranking, weights: np.ndarray) -> np.ndarray:
    """(B, n, T) average ranks of the values of ``ranking`` (n, T) in each resample whose
    transcript weights are ``weights`` (B, n) (the ranks of the expanded sample, ties
    averaged), less their mean (N + 1) / 2: multiples of 1/2, so the sums below are exact
    and a tissue whose drawn values all tie has rank variance exactly 0."""
    w = np.take(weights, ranking.order, axis=1)  # (B, n, T): each tissue's weights, sorted
    cum = np.cumsum(w, axis=1)
    if not ranking.ties:  # no ties: a value's copies take the ranks cum - w + 1 ... cum
        ranked = cum - (w - 1) / 2
    else:
        below = np.where(ranking.starts[None], _gather(cum, ranking.before), 0).astype(cum.dtype)
        group = _gather(cum, ranking.last) - below
        ranked = below + (group + 1) / 2
    ranked -= (cum[:, -1:, :] + 1) / 2
    return _gather(ranked, ranking.inverse)


def _chunk_means(
    observed: np.ndarray,
    predicted: Sequence[np.ndarray],
    weights: np.ndarray,
    rankings: Sequence[_Ranking] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Per run, (B,) R², Spearman and Pearson means over tissues for one chunk of
    resamples (``weights``: (B, n) copies of each transcript; ``rankings``: the
    :class:`_Ranking` of ``observed`` and of each run's predictions, else taken here)."""
    if rankings is None:
        rankings = [_Ranking(observed), *(_Ranking(pred) for pred in predicted)]
    w = weights.astype(np.float64)
    total = w.sum(axis=1)[:, None]
    # ranks in float32: whole and half numbers, exact below 2**23 copies; their sums in
    # float64 (einsum's accumulation), so the intervals do not move in the third decimal
    w32 = weights.astype(np.float32)
    ro = _centred_ranks(rankings[0], w32)
    soo = np.einsum("bn,bnt->bt", w, ro * ro, dtype=np.float64)
    varies = soo > 0  # observed values that vary among the drawn transcripts
    wo, woo = w @ observed, w @ (observed * observed)
    ss_tot = woo - wo * wo / total
    out = []
    for pred, ranking in zip(predicted, rankings[1:], strict=True):
        rp = _centred_ranks(ranking, w32)
        spp = np.einsum("bn,bnt->bt", w, rp * rp, dtype=np.float64)
        sop = np.einsum("bn,bnt->bt", w, ro * rp, dtype=np.float64)
        tied = spp == 0  # the drawn predictions all equal: they rank nothing, 0
        wp, wpp, wop = w @ pred, w @ (pred * pred), w @ (observed * pred)
        ss_res = w @ ((observed - pred) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = {
                "R²": 1.0 - ss_res / ss_tot,
                "Spearman": np.where(tied, 0.0, sop / np.sqrt(soo * spp)),
                "Pearson": np.where(
                    tied,
                    0.0,
                    (wop - wo * wp / total)
                    / np.sqrt(ss_tot * np.maximum(wpp - wp * wp / total, 0.0)),
                ),
            }
        run = {}
        for label, value in values.items():
            defined = varies & np.isfinite(value)  # undefined tissues left out of the mean
            count = defined.sum(axis=1)
            total_defined = np.where(defined, value, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                run[label] = np.where(count > 0, total_defined / count, np.nan)
        out.append(run)
    return out


def gene_rhos(test: TestSet, predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A run's within-gene Spearman per test gene (``test.genes`` order): the sum of its
    (gene, tissue) rhos and how many there are, what :func:`_within_gene` resamples. All the
    bootstrap keeps of the long table, so a run's frame is dropped once read."""
    rhos = group_rhos(predictions, ["gene_id", "tissue"]).reset_index()
    per_gene = rhos.groupby("gene_id")["rho"].agg(["sum", "size"])
    sums = np.zeros(len(test.genes))
    sizes = np.zeros(len(test.genes))
    where = pd.Index(test.genes).get_indexer(per_gene.index)
    sums[where], sizes[where] = per_gene["sum"].to_numpy(), per_gene["size"].to_numpy()
    return sums, sizes


def _within_gene(rhos: tuple[np.ndarray, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """(B,) within-gene Spearman: each drawn gene's (gene, tissue) rhos (:func:`gene_rhos`),
    as often as drawn (``counts``: (B, genes), its unit's draws)."""
    sums, sizes = rhos
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ sums) / (counts @ sizes)


def run_resamples(
    test: TestSet,
    predicted: Sequence[np.ndarray],
    rhos: Sequence[tuple[np.ndarray, np.ndarray]],
    counts: np.ndarray,
) -> list[dict[str, np.ndarray]]:
    """Per run (``predicted``: its (n, T) values; ``rhos``: its :func:`gene_rhos`), each
    metric's value in each resample (``counts``: ``TestSet.unit_counts``), (B,) arrays."""
    weights = counts[:, test.unit_index]  # (B, n) each transcript's copies
    n, t = test.observed.shape
    chunk = max(1, BLOCK // max(1, n * t))
    parts: list[dict[str, list[np.ndarray]]] = [{} for _ in predicted]
    rankings = [_Ranking(test.observed), *(_Ranking(pred) for pred in predicted)]
    for start in range(0, len(counts), chunk):
        chunk_weights = weights[start : start + chunk]
        means = _chunk_means(test.observed, predicted, chunk_weights, rankings)
        for part, run in zip(parts, means, strict=True):
            for label, values in run.items():
                part.setdefault(label, []).append(values)
    out = []
    for part, genes in zip(parts, rhos, strict=True):
        run = {label: np.concatenate(values) for label, values in part.items()}
        run["within-gene Spearman"] = _within_gene(genes, counts[:, test.gene_unit])
        out.append(run)
    return out


def bootstrap_runs(
    predictions_paths: Mapping[str, str | Path],
    resamples: int,
    seed: int,
    units: pd.Series | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Run -> metric label -> (resamples,) values, every run on the same resamples of the
    first run's test units (``units``: :func:`split_units`, None: genes); a run scored on
    another test set raises ``InputError``. Of each
    run's table only its (n, T) predictions and per-gene rhos are kept (12 runs of 20,000
    transcripts x 30 tissues, 200 resamples: peak RSS 640 MB, 1,209 MB holding the tables)."""
    test: TestSet | None = None
    predicted, rhos = [], []
    for path in predictions_paths.values():
        frame = pd.read_parquet(path, columns=PREDICTION_COLUMNS)
        if test is None:
            test = TestSet(frame, path, units)
        predicted.append(test.predicted(frame, path))
        rhos.append(gene_rhos(test, frame))
        del frame
    if test is None:
        return {}
    values = run_resamples(test, predicted, rhos, test.unit_counts(resamples, seed))
    return dict(zip(predictions_paths, values, strict=True))


def write_run(
    predictions_path: str | Path,
    out: str | Path,
    resamples: int,
    seed: int,
    units: pd.Series | None = None,
) -> None:
    """One run's metrics in each resample (rule ``report_bootstrap``), into ``out`` (.npz,
    written whole or not at all) with the test set they were drawn from: its transcripts,
    tissues, each transcript's gene and unit (``units``: :func:`split_units`, None: genes),
    the unit's name and the observed values, for :func:`read_runs`' check. The resamples
    depend only on ``seed`` and the test units, so runs of one test set get the same ones,
    and the values are byte for byte those of :func:`bootstrap_runs`."""
    write_runs([(predictions_path, out)], resamples, seed, units)


def write_runs(
    runs: Sequence[tuple[str | Path, str | Path]],
    resamples: int,
    seed: int,
    units: pd.Series | None = None,
) -> None:
    """:func:`write_run` for each (predictions, out) of ``runs`` in one job (rule
    ``report_bootstraps``), each file byte for byte :func:`write_run`'s. What runs of one
    test set share (the resamples, the observed values' sort order and, in each chunk of
    resamples, their ranks and sums, ``run_resamples``) is taken once for them all, not once
    per run. A run scored on another test set than those before it (transcripts, tissues,
    genes, units or observed values not the same bytes) is resampled with its own, as
    :func:`write_run` would: its file holds that test set, which :func:`read_runs` names."""
    groups: list[tuple[TestSet, list[tuple[str | Path, str | Path, np.ndarray, Any]]]] = []
    for predictions_path, out in runs:
        frame = pd.read_parquet(predictions_path, columns=PREDICTION_COLUMNS)
        test = TestSet(frame, predictions_path, units)
        member = (predictions_path, out, test.predicted(frame, predictions_path))
        member += (gene_rhos(test, frame),)
        del frame
        for shared, members in groups:
            if _same_test_set(shared, test):
                members.append(member)
                break
        else:
            groups.append((test, [member]))
    for test, members in groups:
        counts = test.unit_counts(resamples, seed)
        values = run_resamples(test, [m[2] for m in members], [m[3] for m in members], counts)
        for (predictions_path, out, _, _), run in zip(members, values, strict=True):
            _save_run(test, run, predictions_path, out, resamples, seed)


def _same_test_set(a: TestSet, b: TestSet) -> bool:
    """Whether two runs' test sets would write the same bytes (so share their resamples)."""
    return (
        a.transcripts.shape == b.transcripts.shape
        and (a.transcripts == b.transcripts).all()
        and list(a.tissues) == list(b.tissues)
        and (a.genes[a.gene_index] == b.genes[b.gene_index]).all()
        and (a.unit, list(a.unit_of())) == (b.unit, list(b.unit_of()))
        and a.observed.tobytes() == b.observed.tobytes()
    )


def _save_run(
    test: TestSet,
    values: Mapping[str, np.ndarray],
    predictions_path: str | Path,
    out: str | Path,
    resamples: int,
    seed: int,
) -> None:
    arrays = {f"value_{i}": values[label] for i, label in enumerate(LABELS)}
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            transcripts=test.transcripts.astype(str),
            tissues=test.tissues.astype(str),
            gene_of=test.genes[test.gene_index].astype(str),
            unit=np.str_(test.unit),
            unit_of=test.unit_of().astype(str),
            observed=test.observed,
            resamples=np.int64(resamples),
            seed=np.int64(seed),
            predictions=np.str_(str(predictions_path)),
            **arrays,
        )


def read_runs(
    files: Mapping[str, str | Path], resamples: int, seed: int, unit: str = "gene"
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`bootstrap_runs` from the runs' :func:`write_run` files: run -> metric label
    -> (resamples,) values. A file made with other resamples, seed or unit (``unit``:
    ``workflow.bootstrap_unit``), or on another test set than the first's
    (transcripts, tissues, observed values, genes, units), raises ``InputError`` naming
    it."""
    test: TestSet | None = None
    out = {}
    for run, path in files.items():
        with np.load(path, allow_pickle=False) as data:
            made = (
                int(data["resamples"]),
                int(data["seed"]),
                str(data["unit"]) if "unit" in data.files else "unrecorded unit",
            )
            if made != (resamples, seed, unit):
                raise InputError(
                    path,
                    None,
                    f"made with {made[0]} resamples, seed {made[1]}, unit {made[2]}; the report "
                    f"asks for {resamples}, seed {seed}, unit {unit}: rerun rule "
                    "report_bootstrap for it",
                )
            transcripts = data["transcripts"].astype(object)
            tissues = data["tissues"].astype(object)
            gene_of = data["gene_of"].astype(object)
            unit_of = data["unit_of"].astype(object)
            if test is None:
                test = TestSet.from_arrays(
                    transcripts, tissues, gene_of, unit, unit_of, data["observed"], path
                )
            test.check(
                transcripts, tissues, data["observed"], path, gene_of=gene_of, unit_of=unit_of
            )
            out[run] = {label: data[f"value_{i}"] for i, label in enumerate(LABELS)}
    return out


def pooled(
    boot: Mapping[str, Mapping[str, np.ndarray]], runs: Sequence[str]
) -> dict[str, np.ndarray]:
    """The seed-mean of each metric in each resample."""
    return {label: np.mean([boot[r][label] for r in runs], axis=0) for label in LABELS}


def interval(values: np.ndarray) -> tuple[float, float] | None:
    """The central ``LEVEL`` percentile interval; None when no resample has a value."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def difference(
    boot: Mapping[str, Mapping[str, np.ndarray]], runs: Sequence[str], reference: Sequence[str]
) -> dict[str, tuple[float, float] | None]:
    """Per metric, the interval of (runs' seed mean - reference's seed mean), paired."""
    a, b = pooled(boot, runs), pooled(boot, reference)
    return {label: interval(a[label] - b[label]) for label in LABELS}


# What one resample draws under each unit, and what it draws together, as the notes say it.
UNIT_TEXT = {
    "gene": ("the test genes", "a gene's transcripts together"),
    "locus": (
        "the test loci",
        "the split's unit: genes whose TSSs lie within split.locus_tss_distance bp or whose "
        "exons overlap, drawn together",
    ),
}


def summary(info: Mapping[str, Any]) -> str:
    """The note's sentence on what the intervals are (``info``: resamples, seed, unit)."""
    unit = info.get("unit", "gene")
    drawn, together = UNIT_TEXT[unit]
    return (
        f"[low, high]: 95 % interval over {info['resamples']:,} paired bootstrap resamples of "
        f"{drawn} ({together}; the same resamples for every run; seed {info['seed']}): which "
        f"test {UNIT_NAMES[unit]} were drawn. The ± sd over seeds covers "
        "training noise only. Δ: a setting minus the named one, seed means, resample by "
        "resample; where its interval covers 0 the table says the two are not "
        "distinguishable on this test set. "
    )
