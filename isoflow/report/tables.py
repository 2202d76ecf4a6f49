"""The report's tables (pandas DataFrames) and their rendering as small HTML pages.

Data views (biotypes, splits, lengths, zeros per tissue), one run's views (per tissue,
within-gene ρ, best epoch, error by biotype and length) and the across-run tables: seeds
pooled (mean ± sd, n; with ``isoflow.report.bootstrap``'s resamples also each metric's 95 %
interval over test genes and each level's paired difference from its comparison's first
level and from the baseline), the shuffled-target control, the sequence-free baseline and the
paper's headline numbers (``config["report"]["paper"]``) as a row whose source says
``reported in paper``: the paper's figures, never this workflow's.
"""

from __future__ import annotations

import html
import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isoflow.experiments import (
    FACTOR_LABELS,
    FACTORS,
    ablation_groups,
    control_runs,
    factor_level,
    setting_groups,
)
from isoflow.files import atomic_path
from isoflow.report import bootstrap
from isoflow.report.readers import METRICS, is_collapsed
from isoflow.splits import NEAR_TSS_BP, SPLITS, leak_share
from isoflow.workflow import BASELINE_METRICS

METRIC_LABELS = {"r2": "R²", "spearman": "Spearman", "pearson": "Pearson"}
SOURCE_RUN = "this workflow"
SOURCE_PAPER = "reported in paper"
SOURCE_BASELINE = "sequence-free baseline"
SOURCE_CONTROL = "shuffled-target control"
BASELINE_LABEL = (
    "sequence-free baseline (ridge on length, UTR/CDS lengths, exon count, biotype, GC)"
)
# The baseline's pooled row names its folder where a setting names its runs.
BASELINE_RUN = posixpath.dirname(BASELINE_METRICS)
CONTROL_LABEL = "shuffled-target control"
# A collapsed run (constant predictions, metrics.json "collapsed": true) has R² but no
# meaningful correlation: tables print this word instead, figures draw no bar.
COLLAPSED = "collapsed"
CORRELATION_LABELS = ("Spearman", "Pearson", "within-gene Spearman")


# ---------------------------------------------------------------- tables: the data


def biotype_table(transcripts: pd.DataFrame) -> pd.DataFrame:
    """Transcripts and genes per ``transcript_type``, most frequent first."""
    table = (
        transcripts.groupby("transcript_type")
        .agg(transcripts=("transcript_id", "size"), genes=("gene_id", "nunique"))
        .reset_index()
        .sort_values(["transcripts", "transcript_type"], ascending=[False, True])
    )
    table["fraction"] = table["transcripts"] / table["transcripts"].sum()
    return table.rename(columns={"transcript_type": "transcript type"}).reset_index(drop=True)


def split_table(splits: pd.DataFrame) -> pd.DataFrame:
    """Transcripts and genes per split, and genes that also occur in another split."""
    genes_per_split = splits.groupby("gene_id")["split"].nunique()
    shared = set(genes_per_split[genes_per_split > 1].index)
    rows = []
    for split in SPLITS:
        part = splits[splits["split"] == split]
        rows.append(
            {
                "split": split,
                "transcripts": len(part),
                "genes": part["gene_id"].nunique(),
                "fraction of transcripts": len(part) / len(splits) if len(splits) else math.nan,
                "genes also in another split": len(set(part["gene_id"]) & shared),
            }
        )
    return pd.DataFrame(rows)


SAME_TSS_COLUMN = "TSS of a train transcript of another gene"
NEAR_TSS_COLUMN = f"a train TSS of another gene within {NEAR_TSS_BP:,} bp"


def leak_table(table: pd.DataFrame, leaks: pd.DataFrame) -> pd.DataFrame:
    """``split_table(...)`` with, per held-out split, its transcripts whose TSS is a train
    transcript's of another gene and those with a train TSS of another gene within
    ``NEAR_TSS_BP`` (``splits.tss_leaks``), each as ``count (share)``; blank for train."""
    table = table.copy()
    by_split = leaks.set_index("split")
    for column, key in ((SAME_TSS_COLUMN, "same_tss"), (NEAR_TSS_COLUMN, "near_tss")):
        cells = []
        for split in table["split"]:
            if split in by_split.index:
                count, total = int(by_split.at[split, key]), int(by_split.at[split, "transcripts"])
                cells.append(f"{count:,} ({leak_share(count, total)})")
            else:
                cells.append(None)
        table[column] = cells
    return table


def leak_note(scheme: str) -> str:
    """What the two leak columns of :func:`leak_table` count, and what they say of ``scheme``."""
    note = (
        f"{SAME_TSS_COLUMN}: valid or test transcripts whose TSS (contig, strand, position) "
        "is a train transcript's of another gene: the same DNA window, and for a readthrough "
        "gene such as INO80B-WBP1 the same first exons. "
        f"{NEAR_TSS_COLUMN}: those with such a TSS on either strand within {NEAR_TSS_BP:,} "
        "bp (the same ones included; a bidirectional promoter), whose windows are nearly "
        "the same sequence. "
    )
    if scheme == "gene":
        note += (
            "The gene scheme leaves both in (a gene ID is its only unit); the locus scheme "
            "keeps genes sharing a TSS or exons on one side (docs/reproduction.md)."
        )
    elif scheme == "locus":
        note += (
            "The locus scheme puts genes with TSSs within split.locus_tss_distance of each "
            f"other on one side, so {SAME_TSS_COLUMN} is 0, and {NEAR_TSS_COLUMN} too when "
            f"that distance is {NEAR_TSS_BP:,} bp or more (the default)."
        )
    return note


def reference_counts_table(
    table: pd.DataFrame, dataset: pd.DataFrame, reference: Mapping[str, Any]
) -> pd.DataFrame:
    """``split_table(...)`` with, per split, the dataset's genes and transcripts (``dataset``:
    its ``split`` and ``gene_id`` columns) beside the published ``reference``
    (``report.reference_counts``: ``genes`` / ``transcripts`` per split) and the relative
    difference (dataset - reference) / reference, as a signed percentage."""
    table = table.copy()
    for what in ("genes", "transcripts"):
        ours, theirs, diff = [], [], []
        for split in table["split"]:
            part = dataset[dataset["split"] == split]
            mine = part["gene_id"].nunique() if what == "genes" else len(part)
            ref = int(reference[what][split])
            ours.append(mine)
            theirs.append(ref)
            diff.append(f"{(mine - ref) / ref:+.1%}" if ref else "")
        table[f"{what} in dataset"] = ours
        table[f"{what} in reference"] = theirs
        table[f"{what}: dataset vs reference"] = diff
    return table


def length_table(lengths: Mapping[str, np.ndarray], limits: Mapping[str, int]) -> pd.DataFrame:
    """Length quantiles per sequence kind and how many exceed the encoder's limit."""
    rows = []
    for kind, values in lengths.items():
        values = np.asarray(values)
        limit = limits.get(kind)
        over = int((values > limit).sum()) if limit else 0
        rows.append(
            {
                "sequence": kind,
                "records": len(values),
                "min": int(values.min()) if len(values) else None,
                "median": int(np.round(np.median(values))) if len(values) else None,
                "90%": int(np.round(np.percentile(values, 90))) if len(values) else None,
                "max": int(values.max()) if len(values) else None,
                "limit": limit,
                "over limit": over,
                "fraction over limit": over / len(values) if len(values) else None,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- tables: one run


def per_tissue_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per tissue (metrics.json order) plus a final ``mean`` row."""
    rows = [
        {"tissue": tissue, **{METRIC_LABELS[m]: values[m] for m in METRICS}}
        for tissue, values in metrics["per_tissue"].items()
    ]
    rows.append({"tissue": "mean", **{METRIC_LABELS[m]: metrics["mean"][m] for m in METRICS}})
    return pd.DataFrame(rows)


def within_gene_rhos(predictions: pd.DataFrame) -> pd.DataFrame:
    """Spearman rho across each gene's isoforms, per (gene, tissue): columns gene_id,
    tissue, isoforms, rho, tied. The groups ``isoflow.metrics.within_gene_spearman``
    averages (``metrics.group_rhos``, one definition), so the mean of ``rho`` is the
    metrics value."""
    from isoflow.metrics import group_rhos

    return group_rhos(predictions, ["gene_id", "tissue"]).reset_index()


def scatter_tissues(metrics: Mapping[str, Any], n: int) -> list[str]:
    """``n`` tissues spread over the R² range: best, ..., worst (undefined R² last)."""
    per_tissue = metrics["per_tissue"]
    ranked = sorted(
        per_tissue,
        key=lambda t: (per_tissue[t]["r2"] is None, -(per_tissue[t]["r2"] or 0.0)),
    )
    if n >= len(ranked):
        return ranked
    if n <= 1:
        return ranked[:n]
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, n)).astype(int))
    return [ranked[i] for i in picks]


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch with the lowest ``val_loss``: the checkpoint the test set is scored with
    (ModelCheckpoint monitors val_loss, mode min; the first epoch wins a tie)."""
    val = history[["epoch", "val_loss"]].dropna()
    if val.empty:
        return None
    return int(val.loc[val["val_loss"].idxmin(), "epoch"])


ISOFORM_BINS = (("2", 2, 2), ("3–4", 3, 4), ("5+", 5, None))


def isoform_bins(rhos: pd.DataFrame) -> pd.DataFrame:
    """Within-gene ρ by how many isoforms the gene has in the test set (2, 3–4, 5+):
    pairs, genes, mean and sd of ρ per bin (``rhos`` from ``within_gene_rhos``)."""
    rows = []
    for label, low, high in ISOFORM_BINS:
        part = rhos[(rhos["isoforms"] >= low) & ((rhos["isoforms"] <= high) if high else True)]
        rows.append(
            {
                "isoforms per gene": label,
                "pairs": len(part),
                "genes": part["gene_id"].nunique(),
                "mean ρ": float(part["rho"].mean()) if len(part) else np.nan,
                "sd": float(part["rho"].std(ddof=1)) if len(part) > 1 else np.nan,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- tables: across runs


def _metric_values(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    values = {m: metrics["mean"][m] for m in METRICS}
    values["within_gene_spearman"] = metrics["within_gene_spearman"]
    return values


def _pooled(runs: list[str], metrics_by_run: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds of each metric (sd blank for one value).

    Every metric pools every seed, collapsed or not: which seeds collapse is decided from
    their test predictions, so keeping only the others would select on the test set. A
    collapsed seed's correlation is what ``isoflow.metrics`` computed for it (0 where its
    predictions tie exactly, else the rank order of its near-constant predictions; never
    NaN: ``metrics.json`` is strict JSON). A metric a run leaves undefined (``null``: the
    observed values do not vary, the same for every run on the test set) is left out.
    ``collapsed`` counts the collapsed seeds.
    """
    collapsed = sum(is_collapsed(metrics_by_run[r]) for r in runs)
    row: dict[str, Any] = {"seeds": len(runs), COLLAPSED: collapsed}
    for key in (*METRICS, "within_gene_spearman"):
        values = [_metric_values(metrics_by_run[r])[key] for r in runs]
        values = [v for v in values if v is not None]
        label = METRIC_LABELS.get(key, "within-gene Spearman")
        row[label] = float(np.mean(values)) if values else None
        row[f"{label} sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    row["n_test"] = metrics_by_run[runs[0]]["n_test"]
    row["runs"] = ", ".join(runs)
    return row


# Bootstrap resamples per run (``bootstrap.bootstrap_runs``): run -> metric label -> values.
Boot = Mapping[str, Mapping[str, np.ndarray]]
DELTA_REFERENCE = "Δ vs the comparison's first level (95% CI)"
DELTA_BASELINE = "Δ vs sequence-free baseline (95% CI)"
NOT_DISTINGUISHABLE = "not distinguishable on this test set"


def _with_intervals(row: dict[str, Any], runs: Sequence[str], boot: Boot | None) -> dict[str, Any]:
    """``row`` with each metric's 95 % bootstrap interval of the seed mean (``{label} CI
    low``/``high``); unchanged without ``boot``."""
    if boot is None:
        return row
    pooled = bootstrap.pooled(boot, runs)
    for label in bootstrap.LABELS:
        ci = bootstrap.interval(pooled[label])
        row[f"{label} CI low"], row[f"{label} CI high"] = ci if ci else (None, None)
    return row


def delta_text(
    boot: Boot,
    runs: Sequence[str],
    reference: Sequence[str],
    row: Mapping[str, Any],
    reference_row: Mapping[str, Any],
    name: str | None = None,
) -> str:
    """Per metric: ``row`` minus ``reference_row`` (seed means) with the 95 % interval of
    the paired bootstrap difference, and ``NOT_DISTINGUISHABLE`` where it covers 0."""
    intervals = bootstrap.difference(boot, runs, reference)
    parts = []
    for label in bootstrap.LABELS:
        a, b, ci = row.get(label), reference_row.get(label), intervals[label]
        if a is None or b is None or pd.isna(a) or pd.isna(b) or ci is None:
            continue
        text = f"{label} {a - b:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"
        if ci[0] <= 0 <= ci[1]:
            text += f" {NOT_DISTINGUISHABLE}"
        parts.append(text)
    return (f"vs {name}: " if name else "") + "; ".join(parts)


def paper_row(paper: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The paper's headline numbers as a table row; None when the config has none."""
    if not paper:
        return None
    return {
        "source": SOURCE_PAPER,
        "setting": paper.get("label", "paper"),
        "R²": paper.get("r2"),
        "Spearman": paper.get("spearman"),
    }


def baseline_row(
    baseline: Mapping[str, Any] | None, boot: Boot | None = None
) -> dict[str, Any] | None:
    """The sequence-free baseline (``results/baseline/metrics.json``) as a pooled row (with
    ``boot``, its intervals: ``boot[BASELINE_RUN]``)."""
    if baseline is None:
        return None
    row = _with_intervals(_pooled([BASELINE_RUN], {BASELINE_RUN: baseline}), [BASELINE_RUN], boot)
    return {"source": SOURCE_BASELINE, **row, "seeds": None}


def _vs_baseline(
    row: dict[str, Any], runs: Sequence[str], boot: Boot | None, base: Mapping[str, Any] | None
) -> dict[str, Any]:
    if boot is not None and base is not None and BASELINE_RUN in boot:
        row[DELTA_BASELINE] = delta_text(boot, runs, [BASELINE_RUN], row, base)
    return row


def control_row(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    boot: Boot | None = None,
) -> dict[str, Any] | None:
    """The shuffled-target control pooled over its seeds; None without shuffled runs."""
    runs = control_runs(experiments)
    if not runs:
        return None
    return {"source": SOURCE_CONTROL, **_with_intervals(_pooled(runs, metrics_by_run), runs, boot)}


def runs_table(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    boot: Boot | None = None,
) -> pd.DataFrame:
    """One row per setting (seeds pooled: mean, sd, n), then the baseline and the paper.

    A shuffled-target setting keeps its row, with ``source`` saying it is the control. With
    ``boot`` (``bootstrap.bootstrap_runs``, the baseline under ``BASELINE_RUN``) each row
    has its 95 % intervals and its difference from the baseline (``DELTA_BASELINE``).
    """
    rows = []
    base = baseline_row(baseline, boot)
    for setting, runs in setting_groups(experiments).items():
        exp = experiments[runs[0]]
        pooled = _with_intervals(_pooled(runs, metrics_by_run), runs, boot)
        rows.append(
            {
                "source": SOURCE_CONTROL if exp.get("shuffle_targets") else SOURCE_RUN,
                "setting": setting,
                **_vs_baseline(pooled, runs, boot, base),
                **{FACTOR_LABELS[f]: factor_level(exp, f) for f in FACTORS},
                "training fraction": factor_level(exp, "fraction"),
                "shuffled targets": "yes" if exp.get("shuffle_targets") else "no",
            }
        )
    if base:
        rows.append({**base, "setting": BASELINE_LABEL})
    row = paper_row(paper)
    if row:
        rows.append({"source": row["source"], "setting": row["setting"], **_paper_metrics(row)})
    return pd.DataFrame(rows)


def run_rows(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Every run unpooled (the machine-readable ``runs.tsv``), then the baseline."""
    rows = []
    named = [(run, metrics_by_run[run], experiments[run]) for run in experiments]
    if baseline is not None:
        named.append(("baseline", baseline, None))
    for run, metrics, exp in named:
        values = _metric_values(metrics)
        rows.append(
            {
                "source": SOURCE_BASELINE
                if exp is None
                else SOURCE_CONTROL
                if exp.get("shuffle_targets")
                else SOURCE_RUN,
                "run": BASELINE_LABEL if exp is None else run,
                **{METRIC_LABELS[m]: values[m] for m in METRICS},
                "within-gene Spearman": values["within_gene_spearman"],
                COLLAPSED: is_collapsed(metrics),
                "prediction_spread": metrics.get("prediction_spread"),
                "n_test": metrics["n_test"],
                **{FACTOR_LABELS[f]: exp and factor_level(exp, f) for f in FACTORS},
                "seed": exp and exp["seed"],
                "training fraction": exp and factor_level(exp, "fraction"),
                "shuffled targets": exp and ("yes" if exp.get("shuffle_targets") else "no"),
            }
        )
    table = pd.DataFrame(rows)
    # whole numbers, blank for the baseline (its None made the column 0.0, 1.0)
    table["seed"] = table["seed"].astype("Int64")
    return table


def _mean_sd_text(mean: Any, sd: Any) -> str | None:
    if mean is None or pd.isna(mean):
        return None
    if sd is not None and not pd.isna(sd):
        return f"{mean:.3f} ± {sd:.3f}"
    return f"{mean:.3f}"


def _with_interval_text(text: str | None, table: pd.DataFrame, label: str, i: int) -> str | None:
    """``text`` with row ``i``'s 95 % interval of ``label`` appended, ``[low, high]``."""
    low, high = f"{label} CI low", f"{label} CI high"
    if text is None or low not in table.columns or pd.isna(table[low].iloc[i]):
        return text
    return f"{text} [{table[low].iloc[i]:.3f}, {table[high].iloc[i]:.3f}]"


def _collapsed_seeds(table: pd.DataFrame, i: int) -> int:
    """How many of row ``i``'s seeds collapsed (0 without the column or for a blank)."""
    if COLLAPSED not in table.columns or "seeds" not in table.columns:
        return 0
    k = table[COLLAPSED].iloc[i]
    return 0 if k is None or pd.isna(k) else int(k)


def pooled_display(table: pd.DataFrame, first: Iterable[str]) -> pd.DataFrame:
    """A pooled table as a reader sees it: ``mean ± sd`` cells (a correlation pooled with
    collapsed seeds adds ``(k of n collapsed)``), ``collapsed`` where every seed collapsed,
    seeds as ``n`` or ``n (k collapsed)``; the ``first`` columns lead."""
    shown = pd.DataFrame({c: table[c] for c in first if c in table.columns})
    all_collapsed = (
        table[COLLAPSED].fillna(0).astype(int).eq(table["seeds"].fillna(1).astype(int))
        & table[COLLAPSED].fillna(0).astype(int).gt(0)
        if COLLAPSED in table.columns
        else pd.Series(False, index=table.index)
    )
    for label in ("R²", "Spearman", "Pearson", "within-gene Spearman"):
        if label not in table.columns:
            continue
        sd = table[f"{label} sd"] if f"{label} sd" in table.columns else None
        cells = []
        for i, mean in enumerate(table[label]):
            if label in CORRELATION_LABELS and all_collapsed.iloc[i]:
                cells.append(COLLAPSED)
                continue
            text = _mean_sd_text(mean, None if sd is None else sd.iloc[i])
            text = _with_interval_text(text, table, label, i)
            k = _collapsed_seeds(table, i)
            if text and label in CORRELATION_LABELS and k:
                # pooled with every seed: the cell says how many of them collapsed
                text += f" ({k} of {int(table['seeds'].iloc[i])} {COLLAPSED})"
            cells.append(text)
        shown[label] = cells
    if "seeds" in table.columns:
        cells = []
        for seeds, collapsed in zip(
            table["seeds"], table.get(COLLAPSED, [0] * len(table)), strict=True
        ):
            if seeds is None or pd.isna(seeds):
                cells.append(None)
            elif collapsed and not pd.isna(collapsed):
                cells.append(f"{int(seeds)} ({int(collapsed)} {COLLAPSED})")
            else:
                cells.append(f"{int(seeds)}")
        shown["seeds"] = cells
    for column in (DELTA_REFERENCE, DELTA_BASELINE):
        if column in table.columns:
            shown[column] = table[column]
    return shown


def runs_display(table: pd.DataFrame) -> pd.DataFrame:
    """The all-runs table as a reader sees it (see ``pooled_display``), settings after."""
    shown = pooled_display(table, ("source", "setting"))
    for column in ("n_test", *(FACTOR_LABELS[f] for f in FACTORS), "training fraction"):
        if column in table.columns:
            shown[column] = table[column]
    shown["runs"] = table.get("runs")
    return shown


# The DNA each level's model reads (``workflow.dna_span``), in the ablations whose levels
# can differ in it (``workflow.DNA_SPAN_FACTORS``): the span behind the DNA tokens the
# aggregator sees, and how it came from the encoder.
DNA_SPAN_COLUMN = "DNA span (bp)"
DNA_READ_COLUMN = "DNA read"


def ablation_display(table: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The ablation table as a reader sees it: ``mean ± sd`` cells, the factor first (then
    the DNA span each level reads, when the table holds it).

    With several comparisons each row names its comparison and what it holds fixed; with
    one, the table leaves both out (``build_ablation`` states the fixed settings once).
    """
    several = "comparison" in table.columns and table["comparison"].nunique() > 1
    first = ["source", "comparison", FACTOR_LABELS[factor]] if several else None
    first = (first or ["source", FACTOR_LABELS[factor]]) + [DNA_SPAN_COLUMN, DNA_READ_COLUMN]
    shown = pooled_display(table, first)
    for column in ("n_test",) + (("held fixed",) if several else ()):
        if column in table.columns:
            shown[column] = table[column]
    return shown


def _paper_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"R²": row["R²"], "Spearman": row["Spearman"]}


def ablation_table(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    factor: str,
    paper: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    dna_spans: Mapping[str, Mapping[str, Any]] | None = None,
    boot: Boot | None = None,
) -> pd.DataFrame:
    """One row per (group, level of ``factor``), seeds pooled; then the shuffled-target
    control, the sequence-free baseline and the paper's row, in that order. ``dna_spans``
    (run -> ``workflow.dna_span``): each level's DNA span and how it is read, from its first
    run (its seeds read the same). With ``boot`` (as for :func:`runs_table`) each row has
    its 95 % intervals, and each level its difference from its comparison's first level
    (``DELTA_REFERENCE``) and from the baseline (``DELTA_BASELINE``)."""
    label = FACTOR_LABELS[factor]
    rows = []
    base = baseline_row(baseline, boot)
    for i, group in enumerate(ablation_groups(experiments, factor), start=1):
        reference_level, reference_runs = next(iter(group["levels"].items()))
        reference_row = _pooled(reference_runs, metrics_by_run)
        for level, runs in group["levels"].items():
            span = (dna_spans or {}).get(runs[0])
            pooled = _with_intervals(_pooled(runs, metrics_by_run), runs, boot)
            if boot is not None:
                pooled[DELTA_REFERENCE] = (
                    f"reference ({reference_level})"
                    if level == reference_level
                    else delta_text(
                        boot, runs, reference_runs, pooled, reference_row, str(reference_level)
                    )
                )
            pooled = _vs_baseline(pooled, runs, boot, base)
            rows.append(
                {
                    "source": SOURCE_RUN,
                    "comparison": i,
                    label: level,
                    **(
                        {DNA_SPAN_COLUMN: span["span_bp"], DNA_READ_COLUMN: span["text"]}
                        if span
                        else {}
                    ),
                    "held fixed": group["fixed"],
                    **pooled,
                }
            )
    row = control_row(experiments, metrics_by_run, boot)
    if row:
        runs = control_runs(experiments)
        rows.append({**_vs_baseline(row, runs, boot, base), label: CONTROL_LABEL})
    if base:
        rows.append({**base, label: BASELINE_LABEL})
    row = paper_row(paper)
    if row:
        rows.append({"source": row["source"], label: row["setting"], **_paper_metrics(row)})
    return pd.DataFrame(rows)


def dna_span_note(table: pd.DataFrame) -> str:
    """What the DNA span columns say, and, when the compared levels read different spans,
    that the comparison varies the span as well as the factor; empty without the columns."""
    if DNA_SPAN_COLUMN not in table.columns:
        return ""
    note = (
        f"{DNA_SPAN_COLUMN}: the DNA behind the tokens the aggregator sees, from the config "
        "and the encoder registry (tokens kept x bp per token for a positional cache; the "
        "encoder's whole output, averaged into pool_to slots, for an adaptive one; its whole "
        "output read raw); every token's encoder saw the whole input it reads. "
    )
    runs = table[table["source"] == SOURCE_RUN]
    spans = runs.groupby("comparison")[DNA_SPAN_COLUMN].nunique(dropna=False)
    if (spans > 1).any():
        note += "The levels read different spans: the comparison varies the span as well. "
    return note


# ---------------------------------------------------------------- tables: targets and errors


def zero_table(values: pd.DataFrame) -> pd.DataFrame:
    """Per tissue: transcripts, how many have target 0 and their share, median log1p TPM."""
    rows = []
    for tissue in values.columns:
        column = values[tissue].dropna()
        zeros = int((column == 0).sum())
        rows.append(
            {
                "tissue": tissue,
                "transcripts": len(column),
                "zeros": zeros,
                "share zero": zeros / len(column) if len(column) else None,
                "median log1p TPM": float(column.median()) if len(column) else None,
            }
        )
    return pd.DataFrame(rows)


# The three sides of the GTEx <-> annotation overlap (stats.tsv ``# transcripts_*`` lines).
OVERLAP_SIDES = ("gtex_only", "annotation_only", "both")


def overlap_note(
    overlap: Mapping[str, int], examples: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The overlap counts, the share of annotation transcripts with a GTEx row, example IDs
    of each one-sided set and GENCODE's ``_PAR_Y`` copies on each side."""
    if not overlap:
        return "GTEx ↔ annotation overlap: not recorded in the stats file."
    sides = [key for key in OVERLAP_SIDES if key in overlap]
    parts = [f"{key.replace('_', ' ')} {overlap[key]:,}" for key in sides]
    parts += [
        f"{key.replace('_', ' ')} {count:,}"
        for key, count in overlap.items()
        if key not in OVERLAP_SIDES and not key.startswith("par_y_")
    ]
    note = "Transcripts, GTEx ↔ annotation: " + ", ".join(parts) + "."
    annotation = overlap.get("both", 0) + overlap.get("annotation_only", 0)
    if "both" in overlap and annotation:
        note += (
            f" {overlap['both'] / annotation:.1%} of the annotation's transcripts have a GTEx row."
        )
    shown = [(key, ids) for key, ids in (examples or {}).items() if ids]
    if shown:
        labels = {"gtex_only": "GTEx only", "annotation_only": "annotation only"}
        note += " Examples, " + "; ".join(
            f"{labels.get(key, key.replace('_', ' '))}: {', '.join(ids)}" for key, ids in shown
        )
        note += "."
    if "par_y_gtex" in overlap or "par_y_annotation" in overlap:
        note += (
            f" _PAR_Y copies (chrY PAR): {overlap.get('par_y_gtex', 0):,} in GTEx, "
            f"{overlap.get('par_y_annotation', 0):,} in the annotation (annotation.par_y)."
        )
    return note


LENGTH_BINS = (0, 500, 1000, 2000, 4000, np.inf)
LENGTH_LABELS = ("<500", "500–1k", "1k–2k", "2k–4k", "≥4k")


def error_tables(joined: pd.DataFrame, top: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test error (predicted - observed, log1p TPM) by biotype (``top`` most frequent, the
    rest as other) and by spliced length bin: pairs, transcripts, MAE, bias."""
    frame = joined.assign(error=joined["predicted"] - joined["observed"])
    frame["abs"] = frame["error"].abs()
    common = frame.groupby("transcript_type")["transcript_id"].nunique().nlargest(top).index
    frame["biotype"] = frame["transcript_type"].where(
        frame["transcript_type"].isin(common), "other"
    )
    frame["length bin"] = pd.cut(frame["length"], LENGTH_BINS, labels=LENGTH_LABELS, right=False)

    def summary(key: str) -> pd.DataFrame:
        grouped = frame.groupby(key, observed=True)
        return grouped.agg(
            pairs=("error", "size"),
            transcripts=("transcript_id", "nunique"),
            MAE=("abs", "mean"),
            bias=("error", "mean"),
        ).reset_index()

    by_biotype = summary("biotype").sort_values("transcripts", ascending=False)
    return by_biotype.reset_index(drop=True), summary("length bin")


# ---------------------------------------------------------------- HTML tables

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.2em;
       color: #1a202c; background: #fff; }
h2 { font-size: 1.25em; margin: 0 0 .6em 0; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: .35em .7em; border-bottom: 1px solid #e2e8f0; text-align: left;
         white-space: nowrap; }
td.wrap { white-space: normal; overflow-wrap: anywhere; min-width: 16em; max-width: 26em; }
th { background: #edf2f7; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.paper td { background: #fefcbf; font-style: italic; }
tr.baseline td { background: #edf2f7; }
tr.control td { background: #fff5f5; }
td.collapsed { color: #c53030; font-weight: 600; }
tr.summary td { font-weight: 600; border-top: 2px solid #a0aec0; }
p.note { font-size: 13px; color: #4a5568; max-width: 60em; }
p.stamp { color: #c53030; font-weight: 700; max-width: 60em; }
"""

# Stamped on every figure and table made from the synthetic demo (config demo.enabled); the
# tables of trained runs also say what read the sequences.
DEMO_MARK = "SYNTHETIC DEMO DATA (not GTEx; not comparable to the paper)"
DEMO_MODEL_MARK = (
    "SYNTHETIC DEMO DATA, read by tiny random-weight encoders (not pretrained models): not "
    "GTEx; not comparable to the paper"
)


def tiny_encoders_mark(names: Iterable[str]) -> str:
    """The stamp of runs outside the demo that read encoders with random weights."""
    return (
        f"TINY RANDOM-WEIGHT ENCODERS ({', '.join(names)}: encoders.<name>.source is tiny): "
        "these runs read no pretrained model; not comparable to the paper"
    )


def model_stamp(demo: bool, tiny_encoders: Iterable[str] = ()) -> str | None:
    """What a table of trained runs is stamped with: the demo's mark, the tiny encoders'
    outside the demo, or nothing for runs on pretrained encoders."""
    tiny = list(tiny_encoders)
    return DEMO_MODEL_MARK if demo else tiny_encoders_mark(tiny) if tiny else None


_NUMBER_TEXT = re.compile(r"-?\d+(\.\d+)?( ± \d+(\.\d+)?)?( \[-?\d+(\.\d+)?, -?\d+(\.\d+)?\])?")


_ROW_CLASSES = {SOURCE_PAPER: "paper", SOURCE_BASELINE: "baseline", SOURCE_CONTROL: "control"}


def _integer_columns(table: pd.DataFrame) -> set[str]:
    """Columns of whole numbers, also when blanks turned them into floats (a paper row)."""
    whole = set()
    for column in table.columns:
        values = pd.to_numeric(table[column], errors="coerce").dropna()
        if len(values) and values.notna().sum() == table[column].notna().sum():
            if (values == np.round(values)).all() and (
                pd.api.types.is_integer_dtype(table[column]) or table[column].isna().any()
            ):
                whole.add(column)
    return whole


def _cell(value: Any, integer: bool = False) -> tuple[str, bool]:
    """Rendered text and whether it is numeric (right-aligned)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", False
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer) or (integer and isinstance(value, float | np.floating)):
        return f"{int(value):,}", True
    if isinstance(value, float | np.floating):
        return f"{float(value):.3f}", True
    text = html.escape(str(value))
    return text, bool(_NUMBER_TEXT.fullmatch(text))


def table_html(
    table: pd.DataFrame,
    title: str,
    note: str | None = None,
    summary_rows: Iterable[int] = (),
    stamp: str | None = None,
) -> str:
    """A self-contained HTML page: title, an optional ``stamp`` under it (the demo's mark),
    the table, an optional note under it.

    Rows whose ``source`` is the paper are highlighted and italic, the baseline's and the
    shuffled control's shaded; ``summary_rows`` (positions) are set bold, e.g. a mean row.
    """
    summary = set(summary_rows)
    whole = _integer_columns(table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for i, record in enumerate(table.itertuples(index=False)):
        values = dict(zip(table.columns, record, strict=True))
        cls = ""
        if values.get("source") in _ROW_CLASSES:
            cls = f' class="{_ROW_CLASSES[values["source"]]}"'
        elif i in summary:
            cls = ' class="summary"'
        cells = []
        for column, value in zip(table.columns, record, strict=True):
            text, numeric = _cell(value, column in whole)
            if text == COLLAPSED:
                cells.append(f'<td class="collapsed">{text}</td>')
            elif numeric:
                cells.append(f'<td class="num">{text}</td>')
            elif len(text) > 30:
                cells.append(f'<td class="wrap">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    stamp_html = f'<p class="stamp">{html.escape(stamp)}</p>' if stamp else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h2>{html.escape(title)}</h2>{stamp_html}<table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{note_html}</body></html>\n"
    )


def write_table(
    table: pd.DataFrame,
    path: str | Path,
    title: str,
    note: str | None = None,
    summary_rows: Iterable[int] = (),
    stamp: str | None = None,
) -> None:
    """Write ``table`` as HTML (``.html``, ``stamp`` under its title) or TSV (``.tsv``),
    atomically."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".tsv"):
            table.to_csv(tmp, sep="\t", index=False, na_rep="")
        else:
            tmp.write_text(table_html(table, title, note, summary_rows, stamp))


# How this workflow aggregates the metrics the paper's row is read beside.
AGGREGATION = (
    "this workflow's figures are the unweighted mean over tissues of the per-tissue metric "
    "on this workflow's test split"
)


def paper_note(paper: Mapping[str, Any] | None) -> str | None:
    """What the paper's row is (its label, which should name the paper's aggregation and
    split, and the metrics it gives: a missing one is left out) and how this workflow's
    figures beside it are aggregated."""
    if not paper:
        return None
    given = [
        f"{label} {paper[key]}"
        for key, label in (("r2", "R²"), ("spearman", "Spearman"))
        if paper.get(key) is not None
    ]
    values = f": {', '.join(given)}" if given else ""
    return (
        f"The highlighted row is not from this workflow: it repeats the headline result "
        f"reported in the paper ({paper.get('label', 'paper')}{values}) for comparison; "
        f"{AGGREGATION}, which may differ from the paper's aggregation and split."
    )
