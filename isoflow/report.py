"""Tables and figures for the HTML report (``snakemake --report``).

Readers: ``results/annotation/transcripts.parquet``, ``results/targets/{tissue_set}.stats.tsv``,
``results/splits/{scheme}.tsv``, the sequence FASTAs and each run's ``metrics.json``,
``history.csv`` and ``predictions.parquet`` (formats in DESIGN.md). Each table is a pandas
DataFrame written as a small self-contained HTML page; each figure is a matplotlib
``Figure`` (no pyplot state, so the Agg canvas is used whatever the environment says).

The paper's headline numbers (``config["report"]["paper"]``) enter the cross-experiment
tables and charts as a separate row/bar whose source says ``reported in paper``: they are
the paper's figures, never this workflow's.
"""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from isoflow.errors import InputError, atomic_path
from isoflow.experiments import (
    FACTOR_LABELS,
    FACTORS,
    ablation_groups,
    control_runs,
    factor_level,
    setting_groups,
)
from isoflow.splits import SPLITS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("r2", "spearman", "pearson")
METRIC_LABELS = {"r2": "R²", "spearman": "Spearman", "pearson": "Pearson"}
SOURCE_RUN = "this workflow"
SOURCE_PAPER = "reported in paper"
SOURCE_BASELINE = "sequence-free baseline"
SOURCE_CONTROL = "shuffled-target control"
BASELINE_LABEL = (
    "sequence-free baseline (ridge on length, UTR/CDS lengths, exon count, biotype, GC)"
)
CONTROL_LABEL = "shuffled-target control"
# A collapsed run (constant predictions, metrics.json "collapsed": true) has R² but no
# meaningful correlation: tables print this word instead, figures draw no bar.
COLLAPSED = "collapsed"
CORRELATION_LABELS = ("Spearman", "Pearson", "within-gene Spearman")
# Stamped on every figure made from the synthetic demo (config demo.enabled).
DEMO_MARK = "SYNTHETIC DEMO DATA (not GTEx; not comparable to the paper)"
PREDICTION_COLUMNS = ("transcript_id", "gene_id", "tissue", "observed", "predicted")

# Figures are read in the report at their natural size: large enough fonts, no zooming.
FONT_SIZE = 11
WIDTH_IN = 9.0
RUN_COLOR = "#2b6cb0"
SECOND_COLOR = "#dd6b20"
THIRD_COLOR = "#38a169"
PAPER_COLOR = "#a0aec0"
BASELINE_COLOR = "#4a5568"
DEMO_COLOR = "#c53030"


# ---------------------------------------------------------------- readers


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


def read_splits(path: str | Path) -> pd.DataFrame:
    """``splits/{scheme}.tsv``: transcript_id, gene_id, split."""
    splits = pd.read_csv(path, sep="\t", dtype=str)
    for column in ("transcript_id", "gene_id", "split"):
        if column not in splits.columns:
            raise InputError(path, 1, f"missing column {column!r} in the header")
    bad = ~splits["split"].isin(SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            path,
            row + 2,
            f"split {splits['split'].iloc[row]!r} is not one of {', '.join(SPLITS)}",
        )
    return splits


def sequence_lengths(fasta: str | Path) -> np.ndarray:
    """Length of every record of a (gzip) FASTA, in file order."""
    import pysam

    with pysam.FastxFile(str(fasta)) as records:
        return np.fromiter((len(r.sequence or "") for r in records), dtype=np.int64)


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
    """Spearman rho across each gene's isoforms, per (gene, tissue).

    Same definition as ``isoflow.metrics.within_gene_spearman`` (genes with at least two
    isoforms; groups with constant observed or predicted values are undefined and
    dropped), whose value is the mean of the ``rho`` column returned here.
    """
    frame = predictions[["gene_id", "tissue", "observed", "predicted"]].copy()
    keys = ["gene_id", "tissue"]
    frame = frame[frame.groupby(keys)["gene_id"].transform("size") >= 2]
    if frame.empty:
        return pd.DataFrame({"gene_id": [], "tissue": [], "isoforms": [], "rho": []})
    grouped = frame.groupby(keys)
    frame["ro"] = grouped["observed"].rank(method="average")
    frame["rp"] = grouped["predicted"].rank(method="average")
    grouped = frame.groupby(keys)
    frame["co"] = frame["ro"] - grouped["ro"].transform("mean")
    frame["cp"] = frame["rp"] - grouped["rp"].transform("mean")
    frame["xy"] = frame["co"] * frame["cp"]
    frame["xx"] = frame["co"] ** 2
    frame["yy"] = frame["cp"] ** 2
    sums = frame.groupby(keys).agg(
        isoforms=("xy", "size"), xy=("xy", "sum"), xx=("xx", "sum"), yy=("yy", "sum")
    )
    sums = sums[(sums["xx"] > 0) & (sums["yy"] > 0)]
    sums["rho"] = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    return sums[["isoforms", "rho"]].reset_index()


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


# ---------------------------------------------------------------- tables: across runs


def _metric_values(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    values = {m: metrics["mean"][m] for m in METRICS}
    values["within_gene_spearman"] = metrics["within_gene_spearman"]
    return values


def _pooled(runs: list[str], metrics_by_run: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds of each metric (sd blank for one value).

    R² pools every seed; the correlations pool only the seeds that did not collapse (a
    constant prediction has no rank order). ``collapsed`` counts the collapsed seeds.
    """
    live = [r for r in runs if not is_collapsed(metrics_by_run[r])]
    row: dict[str, Any] = {"seeds": len(runs), COLLAPSED: len(runs) - len(live)}
    for key in (*METRICS, "within_gene_spearman"):
        pool = runs if key == "r2" else live
        values = [_metric_values(metrics_by_run[r])[key] for r in pool]
        values = [v for v in values if v is not None]
        label = METRIC_LABELS.get(key, "within-gene Spearman")
        row[label] = float(np.mean(values)) if values else None
        row[f"{label} sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    row["n_test"] = metrics_by_run[runs[0]]["n_test"]
    row["runs"] = ", ".join(runs)
    return row


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


def baseline_row(baseline: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The sequence-free baseline (``results/baseline/metrics.json``) as a pooled row."""
    if baseline is None:
        return None
    row = _pooled(["results/baseline"], {"results/baseline": baseline})
    return {"source": SOURCE_BASELINE, **row, "seeds": None}


def control_row(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any] | None:
    """The shuffled-target control pooled over its seeds; None without shuffled runs."""
    runs = control_runs(experiments)
    if not runs:
        return None
    return {"source": SOURCE_CONTROL, **_pooled(runs, metrics_by_run)}


def runs_table(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per setting (seeds pooled: mean, sd, n), then the baseline and the paper.

    A shuffled-target setting keeps its row, with ``source`` saying it is the control.
    """
    rows = []
    for setting, runs in setting_groups(experiments).items():
        exp = experiments[runs[0]]
        rows.append(
            {
                "source": SOURCE_CONTROL if exp.get("shuffle_targets") else SOURCE_RUN,
                "setting": setting,
                **_pooled(runs, metrics_by_run),
                **{FACTOR_LABELS[f]: factor_level(exp, f) for f in FACTORS},
                "training fraction": factor_level(exp, "fraction"),
                "shuffled targets": "yes" if exp.get("shuffle_targets") else "no",
            }
        )
    row = baseline_row(baseline)
    if row:
        rows.append({**row, "setting": BASELINE_LABEL})
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
    return pd.DataFrame(rows)


def _mean_sd_text(mean: Any, sd: Any) -> str | None:
    if mean is None or pd.isna(mean):
        return None
    if sd is not None and not pd.isna(sd):
        return f"{mean:.3f} ± {sd:.3f}"
    return f"{mean:.3f}"


def pooled_display(table: pd.DataFrame, first: Iterable[str]) -> pd.DataFrame:
    """A pooled table as a reader sees it: ``mean ± sd`` cells, ``collapsed`` where every
    seed collapsed, seeds as ``n`` or ``n (k collapsed)``; the ``first`` columns lead."""
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
            else:
                cells.append(_mean_sd_text(mean, None if sd is None else sd.iloc[i]))
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
    return shown


def runs_display(table: pd.DataFrame) -> pd.DataFrame:
    """The all-runs table as a reader sees it (see ``pooled_display``), settings after."""
    shown = pooled_display(table, ("source", "setting"))
    for column in ("n_test", *(FACTOR_LABELS[f] for f in FACTORS), "training fraction"):
        if column in table.columns:
            shown[column] = table[column]
    shown["runs"] = table.get("runs")
    return shown


def ablation_display(table: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The ablation table as a reader sees it: ``mean ± sd`` cells, the factor first.

    With several comparisons each row names its comparison and what it holds fixed; with
    one, the table leaves both out (``build_ablation`` states the fixed settings once).
    """
    several = "comparison" in table.columns and table["comparison"].nunique() > 1
    first = ["source", "comparison", FACTOR_LABELS[factor]] if several else None
    shown = pooled_display(table, first or ["source", FACTOR_LABELS[factor]])
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
) -> pd.DataFrame:
    """One row per (group, level of ``factor``), seeds pooled; then the shuffled-target
    control, the sequence-free baseline and the paper's row, in that order."""
    label = FACTOR_LABELS[factor]
    rows = []
    for i, group in enumerate(ablation_groups(experiments, factor), start=1):
        for level, runs in group["levels"].items():
            rows.append(
                {
                    "source": SOURCE_RUN,
                    "comparison": i,
                    label: level,
                    "held fixed": group["fixed"],
                    **_pooled(runs, metrics_by_run),
                }
            )
    row = control_row(experiments, metrics_by_run)
    if row:
        rows.append({**row, label: CONTROL_LABEL})
    row = baseline_row(baseline)
    if row:
        rows.append({**row, label: BASELINE_LABEL})
    row = paper_row(paper)
    if row:
        rows.append({"source": row["source"], label: row["setting"], **_paper_metrics(row)})
    return pd.DataFrame(rows)


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
"""


_NUMBER_TEXT = re.compile(r"-?\d+(\.\d+)?( ± \d+(\.\d+)?)?")


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
    table: pd.DataFrame, title: str, note: str | None = None, summary_rows: Iterable[int] = ()
) -> str:
    """A self-contained HTML page: title, the table, an optional note under it.

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
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h2>{html.escape(title)}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{note_html}</body></html>\n"
    )


def write_table(
    table: pd.DataFrame,
    path: str | Path,
    title: str,
    note: str | None = None,
    summary_rows: Iterable[int] = (),
) -> None:
    """Write ``table`` as HTML (``.html``) or TSV (``.tsv``), atomically."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".tsv"):
            table.to_csv(tmp, sep="\t", index=False, na_rep="")
        else:
            tmp.write_text(table_html(table, title, note, summary_rows))


def paper_note(paper: Mapping[str, Any] | None) -> str | None:
    if not paper:
        return None
    return (
        f"The highlighted row is not from this workflow: it repeats the headline result "
        f"reported in the paper ({paper.get('label', 'paper')}: R² {paper.get('r2')}, "
        f"Spearman {paper.get('spearman')}) for comparison."
    )


# ---------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure text with (fit_texts, clipped_texts)
    return fig


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.xaxis.label.set_size(FONT_SIZE + 1)
    ax.yaxis.label.set_size(FONT_SIZE + 1)
    ax.title.set_size(FONT_SIZE + 2)


def mark_demo(fig: Figure) -> None:
    """Stamp ``DEMO_MARK`` on the figure itself, as the first line of its suptitle (the
    constrained layout keeps room for it, so it can be neither cropped nor overlooked)."""
    current = fig._suptitle.get_text() if fig._suptitle is not None else ""
    text = f"{DEMO_MARK}\n{current}" if current else DEMO_MARK
    fig.suptitle(text, color=DEMO_COLOR, fontsize=FONT_SIZE + 1, fontweight="bold")


def _drawn_texts(fig: Figure, renderer) -> list:
    """Every text artist the figure draws: tick labels only for ticks inside the view."""
    from matplotlib.text import Text

    ticks, shown = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) or 1.0
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update((id(tick.label1), id(tick.label2)))
                inside = low - 1e-9 * span <= tick.get_loc() <= high + 1e-9 * span
                if inside and tick.get_visible():
                    shown += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    for text in fig.findobj(Text):
        if id(text) not in ticks and text.get_visible():
            shown.append(text)
    return [t for t in shown if t.get_text().strip()]


def _renderer(fig: Figure):
    """Lay the figure out and return a renderer to measure it with (Agg if none)."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def clipped_texts(fig: Figure, tolerance_px: float = 1.0) -> list[str]:
    """The texts of ``fig`` that reach outside the figure (empty: nothing is clipped)."""
    renderer = _renderer(fig)
    box = fig.bbox
    outside = []
    for text in _drawn_texts(fig, renderer):
        ext = text.get_window_extent(renderer)
        if (
            ext.x0 < box.x0 - tolerance_px
            or ext.y0 < box.y0 - tolerance_px
            or ext.x1 > box.x1 + tolerance_px
            or ext.y1 > box.y1 + tolerance_px
        ):
            outside.append(text.get_text())
    return outside


def fit_texts(fig: Figure, rounds: int = 4) -> None:
    """Widen each axes' x range until every text placed in data coordinates (value labels
    beside bars) ends inside the axes: nothing runs past the figure's edge."""
    for _ in range(rounds):
        renderer = _renderer(fig)
        changed = False
        for ax in fig.axes:
            if ax.get_xscale() != "linear" or ax.xaxis_inverted():
                continue
            box = ax.get_window_extent(renderer)
            x0, x1 = ax.get_xlim()
            need = x1
            for text in ax.texts:
                if text.get_transform() != ax.transData or not text.get_text().strip():
                    continue
                ext = text.get_window_extent(renderer)
                if ext.x1 <= box.x1:
                    continue
                anchor = ax.transData.transform((text.get_position()[0], 0))[0]
                tail = ext.x1 - anchor  # text width to the right of its anchor
                if tail >= box.width * 0.9:
                    continue  # cannot fit by rescaling; the layout must change
                xa = text.get_position()[0]
                need = max(need, x0 + (xa - x0) * box.width / (box.width - tail) * 1.02)
            if need > x1 * (1 + 1e-9):
                ax.set_xlim(x0, need)
                changed = True
        if not changed:
            return


def save_figure(fig: Figure, path: str | Path, demo: bool = False) -> None:
    """Save as SVG or PNG by the path's suffix, atomically; ``demo`` stamps ``DEMO_MARK``.

    Value labels are fitted inside their axes first, and ``bbox_inches="tight"`` keeps any
    other artist (a legend outside the axes) in the saved image.
    """
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"{path}: figures are .svg or .png")
    if demo:
        mark_demo(fig)
    fit_texts(fig)
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp,
            format=fmt,
            dpi=120 if fmt == "png" else None,
            bbox_inches="tight",
            pad_inches=0.1,
        )


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=FONT_SIZE + 1, wrap=True)
    ax.set_axis_off()


def plot_counts(
    labels: list[str], counts: list[float], xlabel: str, title: str, top: int = 25
) -> Figure:
    """Horizontal bar chart, largest first; beyond ``top`` bars the rest is one 'other' bar."""
    labels, counts = list(labels), list(counts)
    if len(labels) > top:
        rest = sum(counts[top - 1 :])
        labels = labels[: top - 1] + [f"other ({len(labels) - top + 1} kinds)"]
        counts = counts[: top - 1] + [rest]
    fig = _figure(WIDTH_IN, 1.2 + 0.32 * max(len(labels), 3))
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    ax.barh(y, counts, color=RUN_COLOR)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    for yi, c in zip(y, counts, strict=True):
        ax.text(c, yi, f" {c:,.0f}", va="center", fontsize=FONT_SIZE - 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.margins(x=0.15)
    _style(ax)
    return fig


def plot_lengths(lengths: Mapping[str, np.ndarray], limits: Mapping[str, int]) -> Figure:
    """One histogram per sequence kind (log x), the encoder limit as a dashed line."""
    units = {"RNA": "nt", "protein": "aa"}
    fig = _figure(WIDTH_IN, 3.6 * len(lengths))
    axes = fig.subplots(len(lengths), 1, squeeze=False)[:, 0]
    for ax, (kind, values) in zip(axes, lengths.items(), strict=True):
        values = np.asarray(values)
        values = values[values > 0]
        unit = units.get(kind, "")
        if len(values) == 0:
            _message(ax, f"no {kind} sequences")
            continue
        bins = np.logspace(np.log10(values.min()), np.log10(values.max() + 1), 50)
        ax.hist(values, bins=bins, color=RUN_COLOR)
        ax.set_xscale("log")
        limit = limits.get(kind)
        if limit:
            over = (values > limit).mean()
            ax.axvline(limit, color=SECOND_COLOR, ls="--", lw=1.5)
            ax.text(
                limit,
                ax.get_ylim()[1] * 0.95,
                f" model limit {limit:,} {unit}\n {over:.1%} longer (truncated)",
                color=SECOND_COLOR,
                va="top",
                fontsize=FONT_SIZE - 1,
            )
        ax.set_xlabel(f"{kind} length ({unit}, log scale)")
        ax.set_ylabel("sequences")
        ax.set_title(f"{kind}: {len(values):,} sequences, median {np.median(values):,.0f} {unit}")
        _style(ax)
    return fig


def plot_split_sizes(table: pd.DataFrame) -> Figure:
    fig = _figure(WIDTH_IN * 0.7, 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    width = 0.38
    ax.bar(x - width / 2, table["transcripts"], width, label="transcripts", color=RUN_COLOR)
    ax.bar(x + width / 2, table["genes"], width, label="genes", color=SECOND_COLOR)
    ax.set_xticks(x, table["split"])
    ax.set_ylabel("count")
    ax.set_title("Split sizes")
    ax.legend(frameon=False, fontsize=FONT_SIZE)
    _style(ax)
    return fig


def best_epoch(history: pd.DataFrame) -> int | None:
    """The epoch with the lowest ``val_loss``: the checkpoint the test set is scored with
    (ModelCheckpoint monitors val_loss, mode min; the first epoch wins a tie)."""
    val = history[["epoch", "val_loss"]].dropna()
    if val.empty:
        return None
    return int(val.loc[val["val_loss"].idxmin(), "epoch"])


def plot_history(history: pd.DataFrame, run: str) -> Figure:
    """Losses per epoch, the best epoch (lowest val_loss, the checkpoint tested) marked;
    other logged numeric columns (e.g. validation R²) beside them."""
    from matplotlib.ticker import MaxNLocator

    others = [
        c
        for c in history.columns
        if c not in ("epoch", "step", "train_loss", "val_loss") and history[c].notna().any()
    ]
    ncols = 2 if others else 1
    fig = _figure(WIDTH_IN, 4.0)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    ax = axes[0]
    for column, color in (("train_loss", RUN_COLOR), ("val_loss", SECOND_COLOR)):
        series = history[["epoch", column]].dropna()
        ax.plot(series["epoch"], series[column], marker="o", ms=3, color=color, label=column)
    best = best_epoch(history)
    if best is not None:
        loss = float(history.loc[history["epoch"] == best, "val_loss"].iloc[0])
        ax.plot([best], [loss], marker="*", ms=14, color=SECOND_COLOR, ls="none", zorder=5)
        for a in axes:
            a.axvline(best, color="black", ls="--", lw=1, alpha=0.6)
        ax.annotate(
            f"best epoch {best}: val_loss {loss:.3g}\n(checkpoint tested)",
            xy=(best, loss),
            xytext=(0, 12),
            textcoords="offset points",
            ha="right" if best == history["epoch"].max() else "left" if best == 0 else "center",
            va="bottom",
            fontsize=FONT_SIZE - 1,
        )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (MSE)")
    ax.set_title("Loss" + (f" (best epoch {best}, dashed)" if best is not None else ""))
    ax.legend(frameon=False, fontsize=FONT_SIZE)
    ax.margins(y=0.25)
    _style(ax)
    if others:
        ax = axes[1]
        for column in others[:6]:
            series = history[["epoch", column]].dropna()
            ax.plot(series["epoch"], series[column], marker="o", ms=3, label=column)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Other logged values")
        ax.legend(frameon=False, fontsize=FONT_SIZE - 1)
        _style(ax)
    fig.suptitle(run, fontsize=FONT_SIZE + 1)
    return fig


def plot_per_tissue(metrics: Mapping[str, Any], run: str) -> Figure:
    """R², Spearman and Pearson per tissue as grouped horizontal bars, means as lines."""
    tissues = list(metrics["per_tissue"])
    fig = _figure(WIDTH_IN, 1.6 + 0.42 * max(len(tissues), 3))
    ax = fig.add_subplot()
    y = np.arange(len(tissues))
    height = 0.27
    colors = (RUN_COLOR, SECOND_COLOR, THIRD_COLOR)
    for i, (metric, color) in enumerate(zip(METRICS, colors, strict=True)):
        values = [metrics["per_tissue"][t][metric] for t in tissues]
        values = [np.nan if v is None else v for v in values]
        mean = metrics["mean"][metric]
        label = METRIC_LABELS[metric] + (f" (mean {mean:.3f})" if mean is not None else "")
        ax.barh(y + (i - 1) * height, values, height, color=color, label=label)
        if mean is not None:
            ax.axvline(mean, color=color, ls=":", lw=1.2)
    ax.set_yticks(y, tissues)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("test-set value")
    ax.set_title(f"Per-tissue metrics — {run}")
    fig.legend(frameon=False, fontsize=FONT_SIZE, loc="outside lower center", ncols=3)
    _style(ax)
    return fig


def plot_scatter(
    predictions: pd.DataFrame,
    metrics: Mapping[str, Any],
    tissues: list[str],
    run: str,
    max_points: int = 5000,
    seed: int = 0,
) -> Figure:
    """Predicted vs observed for ``tissues`` (one panel each), identity line, metrics in title.

    At most ``max_points`` points per panel, a fixed random subset, so the PNG stays light.
    """
    ncols = min(2, max(len(tissues), 1))
    nrows = max(1, math.ceil(len(tissues) / ncols))
    fig = _figure(WIDTH_IN, 4.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    rng = np.random.default_rng(seed)
    for ax, tissue in zip(axes, tissues, strict=False):
        part = predictions[predictions["tissue"] == tissue]
        if len(part) > max_points:
            part = part.iloc[np.sort(rng.choice(len(part), max_points, replace=False))]
        if part.empty:
            _message(ax, f"{tissue}: no predictions")
            continue
        ax.scatter(part["observed"], part["predicted"], s=6, alpha=0.4, color=RUN_COLOR, lw=0)
        lo = float(min(part["observed"].min(), part["predicted"].min()))
        hi = float(max(part["observed"].max(), part["predicted"].max()))
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        m = metrics["per_tissue"].get(tissue, {})
        stats = ", ".join(
            f"{METRIC_LABELS[k]} {m[k]:.2f}" for k in ("r2", "spearman") if m.get(k) is not None
        )
        ax.set_title(f"{tissue}\n{stats}")
        ax.set_xlabel("observed log(1 + TPM)")
        ax.set_ylabel("predicted")
        _style(ax)
    for ax in axes[len(tissues) :]:
        ax.set_axis_off()
    fig.suptitle(f"Predicted vs observed, test set — {run}", fontsize=FONT_SIZE + 1)
    return fig


def plot_within_gene(rhos: pd.DataFrame, metrics: Mapping[str, Any], run: str) -> Figure:
    """Histogram of per-(gene, tissue) Spearman across isoforms, the reported mean marked;
    beside it the mean ± sd per isoforms-per-gene bin (2, 3–4, 5+)."""
    fig = _figure(WIDTH_IN, 4.4)
    if rhos.empty:
        why = "no test gene has two isoforms with varying expression"
        if is_collapsed(metrics):
            why = f"{COLLAPSED}: constant predictions, no isoform is ranked above another"
        _message(fig.add_subplot(), why)
        return fig
    ax, by_bin = fig.subplots(1, 2, width_ratios=[2.2, 1])
    ax.hist(rhos["rho"], bins=np.linspace(-1, 1, 41), color=RUN_COLOR)
    reported = metrics.get("within_gene_spearman")
    if is_collapsed(metrics):
        ax.set_title(f"{COLLAPSED}: constant predictions", color=DEMO_COLOR)
    elif reported is not None:
        ax.axvline(reported, color=SECOND_COLOR, ls="--", lw=1.5)
        ax.text(
            reported,
            ax.get_ylim()[1] * 0.95,
            f" mean {reported:.3f}",
            color=SECOND_COLOR,
            va="top",
            fontsize=FONT_SIZE,
        )
    ax.axvline(0, color="black", lw=0.8)
    genes = rhos["gene_id"].nunique()
    ax.set_xlabel("Spearman ρ across a gene's isoforms")
    ax.set_ylabel("(gene, tissue) pairs")
    _style(ax)
    bins = isoform_bins(rhos)
    groups = [
        rhos.loc[(rhos["isoforms"] >= low) & ((rhos["isoforms"] <= high) if high else True), "rho"]
        for _, low, high in ISOFORM_BINS
    ]
    x = np.arange(1, len(bins) + 1)
    by_bin.boxplot(
        [g.to_numpy() if len(g) else [np.nan] for g in groups],
        positions=x,
        widths=0.6,
        showmeans=True,
        meanprops={"marker": "D", "markerfacecolor": SECOND_COLOR, "markeredgecolor": "none"},
        medianprops={"color": RUN_COLOR},
    )
    by_bin.set_xticks(
        x, [f"{b}\nn={n:,}" for b, n in zip(bins["isoforms per gene"], bins["pairs"], strict=True)]
    )
    by_bin.axhline(0, color="black", lw=0.8)
    by_bin.set_ylim(-1.05, 1.05)
    by_bin.set_xlabel("isoforms per gene (test)")
    by_bin.set_ylabel("ρ (box: quartiles, ◆ mean)")
    _style(by_bin)
    fig.suptitle(
        f"Within-gene isoform ranking — {run}: {len(rhos):,} pairs, {genes:,} genes",
        fontsize=FONT_SIZE + 1,
    )
    return fig


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


_PAIR = (("R²", RUN_COLOR), ("Spearman", SECOND_COLOR))
BASELINE_TICK = (
    "sequence-free baseline\n(ridge on length, UTR/CDS\nlengths, exon count, biotype, GC)"
)


def _all_collapsed(row: Mapping[str, Any]) -> bool:
    n, k = row.get("seeds"), row.get(COLLAPSED)
    if k is None or pd.isna(k) or not k:
        return False
    return n is None or pd.isna(n) or int(k) >= int(n)


def _number(value: Any) -> float:
    return np.nan if value is None or pd.isna(value) else float(value)


def _row_label(row: Mapping[str, Any], label_column: str) -> str:
    if row["source"] == SOURCE_BASELINE:
        return (
            "sequence-free baseline\n(ridge on length, UTR/CDS\nlengths, exon count, biotype, GC)"
        )
    if row["source"] == SOURCE_PAPER:
        return "paper (reported)"
    label = str(row[label_column])
    seeds = row.get("seeds")
    if seeds is not None and not pd.isna(seeds):
        label += f"\n(n={int(seeds)} seed{'s' if int(seeds) != 1 else ''})"
    return label


def _control_band(ax, table: pd.DataFrame, metric: str, color: str, vertical: bool) -> None:
    """The shuffled-target control as a floor band: mean ± sd over its seeds."""
    for _, row in table[table["source"] == SOURCE_CONTROL].iterrows():
        mean, sd = _number(row[metric]), _number(row.get(f"{metric} sd"))
        if np.isnan(mean):
            continue
        n = row.get("seeds")
        label = f"{CONTROL_LABEL}, {metric} mean" + (" ± sd" if not np.isnan(sd) else "")
        label += f" (n={int(n)})" if n is not None and not pd.isna(n) else ""
        span, line = (ax.axvspan, ax.axvline) if vertical else (ax.axhspan, ax.axhline)
        # Behind every bar and line: a floor to read the bars against, not a cover.
        if not np.isnan(sd):
            span(mean - sd, mean + sd, color=color, alpha=0.18, lw=0, label=label, zorder=0)
            line(mean, color=color, ls=":", lw=1.2, zorder=0.5)
        else:
            line(mean, color=color, ls=":", lw=1.5, label=label, zorder=0.5)


def plot_metric_bars(
    table: pd.DataFrame,
    label_column: str,
    title: str,
    ylabel: str = "",
    metrics: tuple[tuple[str, str], ...] = _PAIR,
    xlabel: str = "test-set mean over tissues",
) -> Figure:
    """Horizontal bars per row of a pooled table (long names stay readable): this
    workflow's settings (mean ± sd over seeds as error bars, n in the label), then the
    sequence-free baseline (dotted hatch), then the paper's (grey, hatched, labelled as
    reported in the paper). The shuffled-target control is a band, not a bar; a collapsed
    setting gets no correlation bar, the word ``collapsed`` instead."""
    order = (SOURCE_RUN, SOURCE_BASELINE, SOURCE_PAPER)
    rows = [
        r
        for source in order
        for _, r in table[table["source"] == source].iterrows()
        # the paper reports no within-gene value: no empty row for it
        if source != SOURCE_PAPER or any(not np.isnan(_number(r.get(m))) for m, _ in metrics)
    ]
    fig = _figure(WIDTH_IN, 2.2 + 0.8 * max(len(rows), 2))
    ax = fig.add_subplot()
    height = 0.8 / len(metrics)
    y = np.arange(len(rows))
    seen: set[tuple[str, str]] = set()
    for i, (metric, color) in enumerate(metrics):
        offset = (i - (len(metrics) - 1) / 2) * height
        if metric in table.columns:
            _control_band(ax, table, metric, color, vertical=True)
        for yi, row in zip(y, rows, strict=True):
            value = _number(row.get(metric))
            sd = _number(row.get(f"{metric} sd"))
            source = row["source"]
            if metric in CORRELATION_LABELS and _all_collapsed(row):
                ax.text(
                    0,
                    yi + offset,
                    f" {COLLAPSED}",
                    va="center",
                    color=DEMO_COLOR,
                    fontsize=FONT_SIZE - 1,
                    fontweight="bold",
                )
                continue
            if np.isnan(value):
                continue
            style: dict[str, Any] = {"color": color}
            legend = f"{metric} (this workflow, mean ± sd over seeds)"
            text = f" {value:.2f}"
            if source == SOURCE_BASELINE:
                style = {"color": color, "alpha": 0.55, "hatch": "..", "edgecolor": "white"}
                legend = f"{metric} ({SOURCE_BASELINE})"
            elif source == SOURCE_PAPER:
                style = {"color": PAPER_COLOR, "hatch": "//", "edgecolor": "white"}
                legend = "reported in paper, not this workflow"
                text = f" {metric} {value:.2f} (paper)"
                sd = np.nan
            key = (source, legend)
            ax.barh(
                yi + offset,
                value,
                height,
                xerr=None if np.isnan(sd) else sd,
                capsize=3,
                label=f"_{legend}" if key in seen else legend,  # _: not in legend
                **style,
            )
            seen.add(key)
            right = max(value + (0 if np.isnan(sd) else sd), 0)
            ax.text(
                right,
                yi + offset,
                text,
                va="center",
                fontsize=FONT_SIZE - 1,
                style="italic" if source == SOURCE_PAPER else "normal",
            )
    ax.set_yticks(y, [_row_label(r, label_column) for r in rows])
    ax.tick_params(axis="y", labelsize=FONT_SIZE - 1)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.margins(x=0.05)
    fig.legend(frameon=False, fontsize=FONT_SIZE - 1, loc="outside lower center", ncols=2)
    _style(ax)
    ax.tick_params(axis="y", labelsize=FONT_SIZE - 1)
    return fig


def plot_runs(table: pd.DataFrame) -> Figure:
    """Every setting (seeds pooled) beside the baseline, the control band and the paper."""
    return plot_metric_bars(table, "setting", "All runs, test-set means")


def plot_ablation(table: pd.DataFrame, factor: str) -> Figure:
    """One bar pair per level of ``factor`` (mean ± sd over seeds), grouped by comparison."""
    label = FACTOR_LABELS[factor]
    runs = table["source"] == SOURCE_RUN
    several = runs.any() and table.loc[runs, "comparison"].nunique() > 1
    shown = table.copy()
    if several:
        shown.loc[runs, label] = [
            f"{lv} [{int(c)}]"
            for lv, c in zip(shown.loc[runs, label], shown.loc[runs, "comparison"], strict=True)
        ]
    return plot_metric_bars(
        shown,
        label,
        f"Ablation: {label}",
        ylabel=label + (" [comparison]" if several else ""),
    )


def plot_scaling(table: pd.DataFrame) -> Figure:
    """Mean R² and Spearman (± sd over seeds) against the training fraction, one line pair
    per comparison; the shuffled control as a band, the baseline and paper as lines."""
    runs = table[table["source"] == SOURCE_RUN]
    fig = _figure(WIDTH_IN, 5.0)
    ax = fig.add_subplot()
    several = runs["comparison"].nunique() > 1
    for metric, color in _PAIR:
        _control_band(ax, table, metric, color, vertical=False)
    for comparison, part in runs.groupby("comparison"):
        part = part.assign(f=part["training fraction"].astype(float)).sort_values("f")
        suffix = f" [{comparison}]" if several else ""
        for (metric, color), marker in zip(_PAIR, ("o", "s"), strict=True):
            sd = part[f"{metric} sd"].astype(float).fillna(0.0)
            ax.errorbar(
                part["f"],
                part[metric].astype(float),
                yerr=sd,
                color=color,
                marker=marker,
                capsize=3,
                label=f"{metric}{suffix} (this workflow, mean ± sd over seeds)",
            )
    for source, style, what in (
        (SOURCE_BASELINE, "-.", "sequence-free baseline"),
        (SOURCE_PAPER, "--", "paper (reported, full data)"),
    ):
        for _, row in table[table["source"] == source].iterrows():
            for metric, color in _PAIR:
                value = _number(row.get(metric))
                if np.isnan(value):
                    continue
                ax.axhline(value, color=color, ls=style, lw=1, alpha=0.8)
                ax.annotate(
                    f"{what} {metric} {value:.2f} ",
                    xy=(1, value),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    color=color,
                    fontsize=FONT_SIZE - 1,
                    style="italic",
                )
    ax.set_xscale("log")
    fractions = sorted(runs["training fraction"].astype(float).unique())
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("fraction of the training set (log scale)")
    ax.set_ylabel("test-set mean over tissues")
    ax.set_title("Data scaling")
    fig.legend(frameon=False, fontsize=FONT_SIZE - 1, loc="outside lower center", ncols=2)
    _style(ax)
    return fig


def plot_within_gene_runs(table: pd.DataFrame) -> Figure:
    """Within-gene Spearman per setting (mean ± sd over seeds), baseline, control band."""
    return plot_metric_bars(
        table,
        "setting",
        "Within-gene isoform ranking, all runs",
        metrics=(("within-gene Spearman", RUN_COLOR),),
        xlabel="mean Spearman ρ across a gene's isoforms (test set)",
    )


# ---------------------------------------------------------------- targets and errors


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


def overlap_note(overlap: Mapping[str, int]) -> str:
    if not overlap:
        return "GTEx ↔ annotation overlap: not recorded in the stats file."
    parts = [f"{key.replace('_', ' ')} {count:,}" for key, count in overlap.items()]
    return "Transcripts, GTEx ↔ annotation: " + ", ".join(parts) + "."


def plot_targets(values: pd.DataFrame, zeros: pd.DataFrame) -> Figure:
    """Share of zero targets per tissue; histogram of every log1p TPM target."""
    fig = _figure(WIDTH_IN, 1.8 + 0.3 * max(len(zeros), 8))
    share, hist = fig.subplots(1, 2)
    y = np.arange(len(zeros))
    shares = zeros["share zero"].astype(float).fillna(0)
    from matplotlib.ticker import PercentFormatter

    share.barh(y, shares, color=RUN_COLOR)
    for yi, v in zip(y, shares, strict=True):
        share.text(v, yi, f" {v:.1%}", va="center", fontsize=FONT_SIZE - 2)
    share.set_xlim(0, max(0.05, float(shares.max()) * 1.1))
    share.xaxis.set_major_formatter(PercentFormatter(1.0))
    share.set_yticks(y, zeros["tissue"])
    share.tick_params(axis="y", labelsize=FONT_SIZE - 2)
    share.invert_yaxis()
    share.set_xlabel("share of transcripts with target 0")
    share.set_title("Zeros per tissue")
    _style(share)
    share.tick_params(axis="y", labelsize=FONT_SIZE - 2)
    flat = values.to_numpy(dtype=float).ravel()
    flat = flat[~np.isnan(flat)]
    hist.hist(flat, bins=60, color=RUN_COLOR)
    hist.set_yscale("log")
    hist.set_xlabel("target log(1 + mean TPM)")
    hist.set_ylabel("(transcript, tissue) pairs, log scale")
    hist.set_title(f"All targets: {len(flat):,} values")
    _style(hist)
    return fig


def plot_isoforms_per_gene(per_gene: pd.Series, overlap: Mapping[str, int]) -> Figure:
    """Genes by number of isoforms with targets (10+ pooled); GTEx ↔ annotation overlap."""
    fig = _figure(WIDTH_IN, 4.0)
    genes, both = fig.subplots(1, 2, width_ratios=[1.6, 1])
    capped = per_gene.clip(upper=10)
    counts = capped.value_counts().sort_index()
    labels = [f"{int(k)}" if k < 10 else "10+" for k in counts.index]
    x = np.arange(len(counts))
    genes.bar(x, counts.to_numpy(), color=RUN_COLOR)
    genes.set_xticks(x, labels)
    genes.set_xlabel("isoforms per gene (transcripts with targets)")
    genes.set_ylabel("genes")
    genes.set_title(f"{len(per_gene):,} genes, median {per_gene.median():g} isoforms")
    _style(genes)
    if overlap:
        keys = list(overlap)
        yy = np.arange(len(keys))
        both.barh(yy, [overlap[k] for k in keys], color=SECOND_COLOR)
        for yi, k in zip(yy, keys, strict=True):
            both.text(overlap[k], yi, f" {overlap[k]:,}", va="center", fontsize=FONT_SIZE - 1)
        both.set_yticks(yy, [k.replace("_", " ") for k in keys])
        both.invert_yaxis()
        both.set_xlabel("transcripts")
        both.set_title("GTEx ↔ annotation")
        _style(both)
    else:
        _message(both, "GTEx ↔ annotation overlap\nnot recorded")
    return fig


LENGTH_BINS = (0, 500, 1000, 2000, 4000, np.inf)
LENGTH_LABELS = ("<500", "500–1k", "1k–2k", "2k–4k", "≥4k")


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


def plot_errors(joined: pd.DataFrame, run: str) -> Figure:
    """Mean absolute error (bars) and bias (diamonds) by biotype and by transcript length."""
    by_biotype, by_length = error_tables(joined)
    fig = _figure(WIDTH_IN, 2.2 + 0.35 * max(len(by_biotype), 5))
    left, right = fig.subplots(1, 2)
    y = np.arange(len(by_biotype))
    left.barh(y, by_biotype["MAE"], color=RUN_COLOR, label="mean |error|")
    left.plot(by_biotype["bias"], y, "D", color=SECOND_COLOR, label="bias (mean error)")
    left.set_yticks(
        y,
        [
            f"{b} (n={n:,})"
            for b, n in zip(by_biotype["biotype"], by_biotype["transcripts"], strict=True)
        ],
    )
    left.invert_yaxis()
    left.axvline(0, color="black", lw=0.8)
    left.set_xlabel("error, log(1 + TPM)")
    left.set_title("By biotype")
    _style(left)
    left.tick_params(axis="y", labelsize=FONT_SIZE - 2)
    x = np.arange(len(by_length))
    right.bar(x, by_length["MAE"], color=RUN_COLOR)
    right.plot(x, by_length["bias"], "D", color=SECOND_COLOR)
    right.set_xticks(
        x,
        [
            f"{b}\nn={n:,}"
            for b, n in zip(by_length["length bin"], by_length["transcripts"], strict=True)
        ],
    )
    right.axhline(0, color="black", lw=0.8)
    right.set_xlabel("spliced transcript length (nt)")
    right.set_title("By length")
    _style(right)
    right.tick_params(axis="x", labelsize=FONT_SIZE - 2)
    fig.legend(frameon=False, fontsize=FONT_SIZE - 1, loc="outside lower center", ncols=2)
    fig.suptitle(f"Test error by biotype and length — {run}", fontsize=FONT_SIZE + 1)
    return fig


# ---------------------------------------------------------------- entry points (one per rule)


def build_biotypes(
    transcripts: str | Path, figure: str | Path, table: str | Path, demo: bool = False
) -> None:
    """Transcripts per biotype (``transcript_type``) from ``transcripts.parquet``."""
    frame = pd.read_parquet(transcripts, columns=["transcript_id", "gene_id", "transcript_type"])
    counts = biotype_table(frame)
    save_figure(
        plot_counts(
            list(counts["transcript type"]),
            list(counts["transcripts"]),
            "transcripts",
            f"Transcripts by biotype: {len(frame):,} transcripts, "
            f"{frame['gene_id'].nunique():,} genes",
        ),
        figure,
        demo,
    )
    write_table(counts, table, "Transcripts by biotype (annotation)")


def build_tissues(
    stats: str | Path, figure: str | Path, table: str | Path, demo: bool = False
) -> None:
    """GTEx samples per tissue from ``{tissue_set}.stats.tsv``."""
    frame = read_tissue_stats(stats)
    save_figure(
        plot_counts(
            list(frame["tissue"]),
            list(frame["n_samples"]),
            "GTEx samples",
            f"Samples per tissue: {int(frame['n_samples'].sum()):,} samples, {len(frame)} tissues",
            top=len(frame),
        ),
        figure,
        demo,
    )
    write_table(
        frame,
        table,
        "Samples per tissue",
        note="mean and sd: of the target log(1 + mean TPM) over transcripts, per tissue.",
    )


def build_splits(
    splits: str | Path, figure: str | Path, table: str | Path, scheme: str, demo: bool = False
) -> None:
    """Transcripts and genes per split from ``splits/{scheme}.tsv``."""
    sizes = split_table(read_splits(splits))
    save_figure(plot_split_sizes(sizes), figure, demo)
    write_table(sizes, table, f"Split sizes ({scheme} scheme)")


def build_lengths(
    rna: str | Path,
    protein: str | Path,
    figure: str | Path,
    table: str | Path,
    max_nt: int | None,
    max_aa: int | None,
    demo: bool = False,
) -> None:
    """RNA (nt) and protein (aa) length distributions against the encoders' limits."""
    lengths = {"RNA": sequence_lengths(rna), "protein": sequence_lengths(protein)}
    limits = {"RNA": max_nt, "protein": max_aa}
    save_figure(plot_lengths(lengths, limits), figure, demo)
    write_table(
        length_table(lengths, limits),
        table,
        "Sequence lengths (RNA in nt, protein in aa)",
        note="limit: rna.max_nt and protein.max_aa from the config; longer sequences are "
        "truncated before encoding.",
    )


def build_targets(
    targets: str | Path,
    stats: str | Path,
    figure: str | Path,
    table: str | Path,
    isoforms_figure: str | Path,
    demo: bool = False,
) -> None:
    """The targets: share of zeros per tissue, log1p TPM histogram, isoforms per gene, and
    how GTEx's transcripts overlap the annotation's (``stats.tsv`` comment lines)."""
    values, genes = read_targets(targets)
    overlap = read_overlap(stats)
    zeros = zero_table(values)
    save_figure(plot_targets(values, zeros), figure, demo)
    per_gene = genes.value_counts()
    save_figure(plot_isoforms_per_gene(per_gene, overlap), isoforms_figure, demo)
    note = "Share of transcripts with target 0 (no TPM in any sample of the tissue). "
    note += overlap_note(overlap)
    write_table(zeros, table, "Targets: zeros per tissue", note=note)


def build_run(
    run: str,
    metrics_path: str | Path,
    history_path: str | Path,
    predictions_path: str | Path,
    curves: str | Path,
    tissue_table: str | Path,
    tissue_figure: str | Path,
    scatter: str | Path,
    within_gene: str | Path,
    n_scatter: int = 4,
    max_points: int = 5000,
    transcripts_path: str | Path | None = None,
    errors: str | Path | None = None,
    demo: bool = False,
) -> None:
    """Every per-run view: training curves, per-tissue metrics, scatter, within-gene, and
    (with ``transcripts_path``) the error by biotype and by transcript length."""
    metrics = read_metrics(metrics_path)
    history = read_history(history_path)
    predictions = read_predictions(predictions_path)
    save_figure(plot_history(history, run), curves, demo)
    table = per_tissue_table(metrics)
    note = f"{metrics['n_test']:,} test transcripts. Blank: undefined (constant values)."
    if is_collapsed(metrics):
        note = (
            f"COLLAPSED: this run predicts (near) constants (prediction_spread "
            f"{metrics.get('prediction_spread')}); its correlations are not meaningful. " + note
        )
        for label in ("Spearman", "Pearson"):
            table[label] = COLLAPSED
    write_table(
        table,
        tissue_table,
        f"Per-tissue test metrics — {run}",
        note=note,
        summary_rows=[len(table) - 1],
    )
    save_figure(plot_per_tissue(metrics, run), tissue_figure, demo)
    tissues = scatter_tissues(metrics, n_scatter)
    save_figure(plot_scatter(predictions, metrics, tissues, run, max_points), scatter, demo)
    save_figure(plot_within_gene(within_gene_rhos(predictions), metrics, run), within_gene, demo)
    if transcripts_path is not None and errors is not None:
        joined = join_transcripts(predictions, transcripts_path)
        save_figure(plot_errors(joined, run), errors, demo)


def _load_metrics(
    experiments: Mapping[str, Mapping[str, Any]], metrics_paths: Iterable[str | Path]
) -> dict[str, dict[str, Any]]:
    """Run name -> metrics; the run is the parent folder's name (results/runs/{run}/)."""
    by_run = {Path(p).parent.name: read_metrics(p) for p in metrics_paths}
    missing = [run for run in experiments if run not in by_run]
    if missing:
        raise InputError(None, missing[0], "no metrics.json given for this configured run")
    return by_run


def _load_baseline(path: str | Path | None) -> dict[str, Any] | None:
    return None if path is None else read_metrics(path)


def _across_note(paper: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None) -> str:
    note = (
        "Metrics are test-set means over tissues, then mean ± sd over seeds (seeds: how "
        "many runs; sd blank for one). A collapsed run (constant predictions) counts in R² "
        "only; 'collapsed' replaces correlations where every seed collapsed. "
        f"The {CONTROL_LABEL} (shuffle_targets: true) is the floor a model must clear. "
    )
    if baseline is not None:
        note += f"The {BASELINE_LABEL} reads no sequence. "
    else:
        note += "No sequence-free baseline was given (results/baseline/metrics.json). "
    return note + (paper_note(paper) or "")


def build_experiments(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_paths: Iterable[str | Path],
    paper: Mapping[str, Any] | None,
    table_html_path: str | Path,
    table_tsv_path: str | Path,
    figure: str | Path,
    within_gene: str | Path,
    baseline_path: str | Path | None = None,
    demo: bool = False,
) -> None:
    """All settings (seeds pooled) beside the control, the baseline and the paper's
    headline numbers; within-gene across settings. ``runs.tsv``: every run unpooled."""
    metrics_by_run = _load_metrics(experiments, metrics_paths)
    baseline = _load_baseline(baseline_path)
    table = runs_table(experiments, metrics_by_run, paper, baseline)
    write_table(
        runs_display(table),
        table_html_path,
        "All runs (test set)",
        note=_across_note(paper, baseline),
    )
    write_table(run_rows(experiments, metrics_by_run, baseline), table_tsv_path, "")
    save_figure(plot_runs(table), figure, demo)
    save_figure(plot_within_gene_runs(table), within_gene, demo)


def build_ablation(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_paths: Iterable[str | Path],
    factor: str,
    paper: Mapping[str, Any] | None,
    table_path: str | Path,
    figure: str | Path,
    baseline_path: str | Path | None = None,
    demo: bool = False,
) -> None:
    """One factor varied, everything else held fixed (``fraction``: the data-scaling view)."""
    metrics_by_run = _load_metrics(experiments, metrics_paths)
    baseline = _load_baseline(baseline_path)
    table = ablation_table(experiments, metrics_by_run, factor, paper, baseline)
    label = FACTOR_LABELS[factor]
    note = f"Each comparison holds every setting but the {label} fixed. "
    fixed = table.loc[table["source"] == SOURCE_RUN].get("held fixed", pd.Series()).unique()
    if len(fixed) == 1:
        note += f"Held fixed: {fixed[0]}. "
    note += _across_note(paper, baseline)
    title = "Data scaling" if factor == "fraction" else f"Ablation: {label}"
    write_table(ablation_display(table, factor), table_path, title, note=note)
    if factor == "fraction":
        save_figure(plot_scaling(table), figure, demo)
    else:
        save_figure(plot_ablation(table, factor), figure, demo)


# ---------------------------------------------------------------- the built report in a browser

# The report (snakemake --report) is a JavaScript app: results sit behind menu clicks. A copy
# of it gets this script, which clicks through it like a reader and writes what it saw
# (navbar text, size of the image or table shown) into <pre id="isoflow-drive">, read back
# from Chromium's --dump-dom. The same copy under --screenshot shows the last view.
_DRIVER = """
<script>
(function () {
  const log = [];
  const pause = (ms) => new Promise((r) => setTimeout(r, ms));
  function byText(text) {
    const all = Array.from(document.querySelectorAll("a, li, span, td"));
    const hits = all.filter((el) => el.textContent.trim() === text);
    return hits.length ? hits[hits.length - 1] : null;
  }
  async function click(text) {
    const el = byText(text);
    if (!el) { log.push({ step: "click", text, ok: false }); return false; }
    el.click();
    await pause(300);
    log.push({ step: "click", text, ok: true });
    return true;
  }
  async function category(name) {
    // The breadcrumb "Results" leads back to the list of categories.
    const crumb = byText("Results");
    if (crumb) { crumb.click(); await pause(300); }
    return click(name);
  }
  async function view(label) {
    const row = Array.from(document.querySelectorAll("tr")).find(
      (tr) => tr.cells.length && tr.cells[0].textContent.trim() === label);
    if (!row) { log.push({ step: "view", text: label, ok: false }); return; }
    row.querySelector("a").click();
    await pause(600);
    // The largest embedded image: the result, not the logo or icons.
    const img = Array.from(document.querySelectorAll("img[src^='data:image']")).sort(
      (a, b) => b.naturalWidth * b.naturalHeight - a.naturalWidth * a.naturalHeight)[0];
    const frame = document.querySelector("iframe[src^='data:text/html']");
    log.push({ step: "view", text: label, ok: true,
               img: img ? [img.naturalWidth, img.naturalHeight] : null,
               iframe: frame ? frame.getAttribute("src") : null });
  }
  function nav(text) { log.push({ step: "nav", text, seen: document.body.innerText }); }
  async function drive() {
    try {
      await pause(500);
      nav("start");
      STEPS
    } catch (err) {
      log.push({ step: "error", text: String(err), ok: false });
    }
    const pre = document.createElement("pre");
    pre.id = "isoflow-drive";
    pre.style.display = "none";
    pre.textContent = JSON.stringify(log);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", drive);
})();
</script>
"""
BROWSER_STEPS = ("category", "click", "view", "nav")


def _headless(chromium: str, workdir: Path, *flags: str) -> list[str]:
    """A headless Chromium command with a profile of its own under ``workdir``."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={workdir / 'chromium-profile'}",
        *flags,
    ]


def _dom_json(command: list[str], page: Path, pre_id: str, timeout_s: float, what: str) -> Any:
    """Load ``page`` with ``command``; the JSON its script left in ``<pre id=pre_id>``."""
    dom = subprocess.run(
        [*command, "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    match = re.search(rf'<pre id="{pre_id}"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    if dom.returncode != 0 or not match:
        raise RuntimeError(f"chromium did not {what}: {dom.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))


def browse_report(
    report_html: str | Path,
    steps: Iterable[tuple[str, str]],
    workdir: str | Path,
    chromium: str = "chromium",
    screenshot: str | Path | None = None,
    window: tuple[int, int] = (1600, 1000),
    timeout_s: float = 180,
) -> list[dict[str, Any]]:
    """Click through a built report in headless Chromium; return what each step saw.

    ``steps``: ``("category", name)`` opens a top-level result category, ``("click", text)``
    any menu entry, ``("view", label)`` shows the result whose first label is ``label``,
    ``("nav", name)`` records the page text. Each log entry has ``step``, ``text`` and
    ``ok``; a view also ``img`` ([width, height] of the image shown) and ``iframe`` (the
    data URI of an HTML table shown); a nav ``seen`` (the page's visible text).
    ``screenshot``: also save a PNG of the last view.
    """
    js = []
    for kind, text in steps:
        if kind not in BROWSER_STEPS:
            raise ValueError(f"unknown browser step {kind!r}; one of {BROWSER_STEPS}")
        js.append(f"await {kind}({json.dumps(text)});")
    source = Path(report_html).read_text()
    cut = source.rindex("</body>")  # the last one: embedded libraries contain the string
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    page = workdir / "driven-report.html"
    page.write_text(source[:cut] + _DRIVER.replace("STEPS", "\n      ".join(js)) + source[cut:])
    base = _headless(
        chromium,
        workdir,
        "--hide-scrollbars",
        f"--window-size={window[0]},{window[1]}",
        "--virtual-time-budget=30000",
    )
    log = _dom_json(base, page, "isoflow-drive", timeout_s, "finish the report walk")
    if screenshot is not None:
        shot = subprocess.run(
            [*base, f"--screenshot={Path(screenshot).resolve()}", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if shot.returncode != 0 or not Path(screenshot).exists():
            raise RuntimeError(f"chromium screenshot failed: {shot.stderr[-2000:]}")
    return log


_SVG_CHECK = """
<script>
window.addEventListener("load", () => {
  const out = {};
  for (const holder of document.querySelectorAll("div[data-file]")) {
    const svg = holder.querySelector("svg");
    const box = svg.getBoundingClientRect();
    const outside = [];
    for (const group of svg.querySelectorAll("g[id^='text_']")) {
      const r = group.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < box.left - 1 || r.top < box.top - 1 ||
          r.right > box.right + 1 || r.bottom > box.bottom + 1) {
        const note = Array.from(group.childNodes).find((n) => n.nodeType === 8);
        outside.push(note ? note.textContent.trim() : group.id);
      }
    }
    out[holder.dataset.file] = {texts: svg.querySelectorAll("g[id^='text_']").length, outside};
  }
  const pre = document.createElement("pre");
  pre.id = "isoflow-svg";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def svg_text_overflow(
    svgs: Iterable[str | Path],
    workdir: str | Path,
    chromium: str = "chromium",
    timeout_s: float = 180,
) -> dict[str, dict[str, Any]]:
    """Render matplotlib SVGs in headless Chromium; per file, how many text groups it has
    and the texts whose rendered box reaches outside the image (``outside``)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parts = []
    for svg in svgs:
        source = Path(svg).read_text()
        parts.append(
            f'<div data-file="{html.escape(str(svg))}">{source[source.index("<svg") :]}</div>'
        )
    page = workdir / "svg-check.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        + "".join(parts)
        + _SVG_CHECK
        + "</body></html>"
    )
    command = _headless(chromium, workdir, "--virtual-time-budget=10000")
    return _dom_json(command, page, "isoflow-svg", timeout_s, "check the SVGs")
