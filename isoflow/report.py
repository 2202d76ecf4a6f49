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

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("r2", "spearman", "pearson")
METRIC_LABELS = {"r2": "R²", "spearman": "Spearman", "pearson": "Pearson"}
SPLITS = ("train", "valid", "test")
# The factors an ablation varies one at a time; seed is replication, averaged over.
FACTORS = ("modalities", "dna_encoder", "aggregator")
FACTOR_LABELS = {
    "modalities": "modalities",
    "dna_encoder": "DNA encoder",
    "aggregator": "aggregator",
    "fraction": "training fraction",
}
SOURCE_RUN = "this workflow"
SOURCE_PAPER = "reported in paper"
PREDICTION_COLUMNS = ("transcript_id", "gene_id", "tissue", "observed", "predicted")

# Figures are read in the report at their natural size: large enough fonts, no zooming.
FONT_SIZE = 11
WIDTH_IN = 9.0
RUN_COLOR = "#2b6cb0"
SECOND_COLOR = "#dd6b20"
THIRD_COLOR = "#38a169"
PAPER_COLOR = "#a0aec0"


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
    return metrics


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


def factor_level(experiment: Mapping[str, Any], factor: str) -> str:
    """How a run's setting of ``factor`` is written in tables (modalities joined by +)."""
    value = experiment[factor]
    if factor == "modalities":
        return "+".join(value)
    if factor == "fraction":
        return f"{float(value):g}"
    return str(value)


def _settings(experiment: Mapping[str, Any], exclude: Iterable[str]) -> str:
    parts = []
    for key in ("modalities", "dna_encoder", "aggregator", "fraction", "shuffle_targets"):
        if key in exclude:
            continue
        if key == "shuffle_targets":
            if experiment.get(key):
                parts.append("shuffled targets")
            continue
        parts.append(f"{FACTOR_LABELS[key]} {factor_level(experiment, key)}")
    return ", ".join(parts)


def ablation_groups(
    experiments: Mapping[str, Mapping[str, Any]], factor: str
) -> list[dict[str, Any]]:
    """Groups of runs that differ only in ``factor`` (seeds pooled), two or more levels each.

    Returns ``[{"fixed": str, "levels": {level: [run, ...]}}]`` in config order. For the
    DNA-encoder factor, runs without DNA are left out: their encoder setting is unused.
    """
    if factor not in (*FACTORS, "fraction"):
        raise ValueError(f"unknown ablation factor {factor!r}")
    groups: dict[tuple, dict[str, list[str]]] = {}
    fixed: dict[tuple, str] = {}
    for run, exp in experiments.items():
        if factor == "dna_encoder" and "dna" not in exp["modalities"]:
            continue
        key = tuple(
            factor_level(exp, k) if k != "shuffle_targets" else bool(exp.get(k))
            for k in ("modalities", "dna_encoder", "aggregator", "fraction", "shuffle_targets")
            if k != factor
        )
        groups.setdefault(key, {}).setdefault(factor_level(exp, factor), []).append(run)
        fixed.setdefault(key, _settings(exp, exclude=(factor,)))
    return [
        {"fixed": fixed[key], "levels": levels}
        for key, levels in groups.items()
        if len(levels) >= 2
    ]


def _metric_values(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    values = {m: metrics["mean"][m] for m in METRICS}
    values["within_gene_spearman"] = metrics["within_gene_spearman"]
    return values


def _pooled(runs: list[str], metrics_by_run: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds of each metric (sd blank for one seed)."""
    row: dict[str, Any] = {"seeds": len(runs)}
    for key in (*METRICS, "within_gene_spearman"):
        values = [_metric_values(metrics_by_run[r])[key] for r in runs]
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


def runs_table(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Every run with its mean metrics, then its settings; the paper's row last."""
    rows = []
    for run, exp in experiments.items():
        metrics = metrics_by_run[run]
        values = _metric_values(metrics)
        rows.append(
            {
                "source": SOURCE_RUN,
                "run": run,
                **{METRIC_LABELS[m]: values[m] for m in METRICS},
                "within-gene Spearman": values["within_gene_spearman"],
                "n_test": metrics["n_test"],
                **{FACTOR_LABELS[f]: factor_level(exp, f) for f in FACTORS},
                "seed": exp["seed"],
                "training fraction": factor_level(exp, "fraction"),
                "shuffled targets": "yes" if exp.get("shuffle_targets") else "no",
            }
        )
    row = paper_row(paper)
    if row:
        rows.append({"source": row["source"], "run": row["setting"], **_paper_metrics(row)})
    return pd.DataFrame(rows)


def ablation_display(table: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The ablation table as a reader sees it: ``mean ± sd`` cells, the factor first.

    With several comparisons each row names its comparison and what it holds fixed; with
    one, the table leaves both out (``build_ablation`` states the fixed settings once).
    """
    several = "comparison" in table.columns and table["comparison"].nunique() > 1
    shown = pd.DataFrame(
        {"source": table["source"], FACTOR_LABELS[factor]: table[FACTOR_LABELS[factor]]}
    )
    if several:
        shown.insert(1, "comparison", table["comparison"])
    for label in ("R²", "Spearman", "Pearson", "within-gene Spearman"):
        if label not in table.columns:
            continue
        sd = table[f"{label} sd"] if f"{label} sd" in table.columns else None
        cells = []
        for i, mean in enumerate(table[label]):
            if mean is None or pd.isna(mean):
                cells.append(None)
            elif sd is not None and not pd.isna(sd.iloc[i]):
                cells.append(f"{mean:.3f} ± {sd.iloc[i]:.3f}")
            else:
                cells.append(f"{mean:.3f}")
        shown[label] = cells
    for column in ("seeds", "n_test") + (("held fixed",) if several else ()):
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
) -> pd.DataFrame:
    """One row per (group, level of ``factor``), seeds pooled; the paper's row last."""
    rows = []
    for i, group in enumerate(ablation_groups(experiments, factor), start=1):
        for level, runs in group["levels"].items():
            rows.append(
                {
                    "source": SOURCE_RUN,
                    "comparison": i,
                    FACTOR_LABELS[factor]: level,
                    "held fixed": group["fixed"],
                    **_pooled(runs, metrics_by_run),
                }
            )
    row = paper_row(paper)
    if row:
        rows.append(
            {"source": row["source"], FACTOR_LABELS[factor]: row["setting"], **_paper_metrics(row)}
        )
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
tr.summary td { font-weight: 600; border-top: 2px solid #a0aec0; }
p.note { font-size: 13px; color: #4a5568; max-width: 60em; }
"""


_NUMBER_TEXT = re.compile(r"-?\d+(\.\d+)?( ± \d+(\.\d+)?)?")


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

    Rows whose ``source`` is the paper are highlighted and italic; ``summary_rows``
    (positions) are set bold, e.g. a mean row.
    """
    summary = set(summary_rows)
    whole = _integer_columns(table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for i, record in enumerate(table.itertuples(index=False)):
        values = dict(zip(table.columns, record, strict=True))
        cls = ""
        if values.get("source") == SOURCE_PAPER:
            cls = ' class="paper"'
        elif i in summary:
            cls = ' class="summary"'
        cells = []
        for column, value in zip(table.columns, record, strict=True):
            text, numeric = _cell(value, column in whole)
            if numeric:
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
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.xaxis.label.set_size(FONT_SIZE + 1)
    ax.yaxis.label.set_size(FONT_SIZE + 1)
    ax.title.set_size(FONT_SIZE + 2)


def save_figure(fig: Figure, path: str | Path) -> None:
    """Save as SVG or PNG by the path's suffix, atomically."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"{path}: figures are .svg or .png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120 if fmt == "png" else None)


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


def plot_history(history: pd.DataFrame, run: str) -> Figure:
    """Losses per epoch; other logged numeric columns (e.g. validation R²) beside them."""
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
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (MSE)")
    ax.set_title("Loss")
    ax.legend(frameon=False, fontsize=FONT_SIZE)
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
    """Histogram of per-(gene, tissue) Spearman across isoforms; the reported mean marked."""
    fig = _figure(WIDTH_IN, 4.0)
    ax = fig.add_subplot()
    if rhos.empty:
        _message(ax, "no test gene has two isoforms with varying expression")
        return fig
    ax.hist(rhos["rho"], bins=np.linspace(-1, 1, 41), color=RUN_COLOR)
    reported = metrics.get("within_gene_spearman")
    if reported is not None:
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
    ax.set_xlabel("Spearman ρ across a gene's isoforms (predicted vs observed)")
    ax.set_ylabel("(gene, tissue) pairs")
    ax.set_title(f"Within-gene isoform ranking — {run}: {len(rhos):,} pairs, {genes:,} genes")
    _style(ax)
    return fig


def plot_metric_bars(
    labels: list[str],
    values: Mapping[str, list[float | None]],
    errors: Mapping[str, list[float | None]] | None,
    title: str,
    paper: Mapping[str, Any] | None,
    ylabel: str = "",
) -> Figure:
    """R² and Spearman per label as paired horizontal bars (long run names stay readable);
    the paper's pair last, grey, hatched and labelled as reported in the paper."""
    rows = list(labels) + (["paper (reported)"] if paper else [])
    fig = _figure(WIDTH_IN, 1.8 + 0.75 * max(len(rows), 2))
    ax = fig.add_subplot()
    height = 0.38
    y = np.arange(len(rows))
    pairs = (("r2", RUN_COLOR), ("spearman", SECOND_COLOR))
    for i, (metric, color) in enumerate(pairs):
        vals = [np.nan if v is None else float(v) for v in values[metric]]
        err = None
        if errors is not None and any(e is not None and not pd.isna(e) for e in errors[metric]):
            err = [np.nan if e is None or pd.isna(e) else float(e) for e in errors[metric]]
        offset = (i - 0.5) * height
        ax.barh(
            y[: len(labels)] + offset,
            vals,
            height,
            xerr=err,
            capsize=3,
            color=color,
            label=f"{METRIC_LABELS[metric]} (this workflow)",
        )
        for yi, v in zip(y, vals, strict=False):
            if not np.isnan(v):
                ax.text(max(v, 0), yi + offset, f" {v:.2f}", va="center", fontsize=FONT_SIZE - 1)
        if paper and paper.get(metric) is not None:
            ax.barh(
                len(labels) + offset,
                paper[metric],
                height,
                color=PAPER_COLOR,
                hatch="//",
                edgecolor="white",
                label="reported in paper, not this workflow" if i == 0 else None,
            )
            ax.text(
                paper[metric],
                len(labels) + offset,
                f" {METRIC_LABELS[metric]} {paper[metric]:.2f} (paper)",
                va="center",
                fontsize=FONT_SIZE - 1,
                style="italic",
            )
    ax.set_yticks(y, rows)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("test-set mean over tissues")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.margins(x=0.2)
    fig.legend(frameon=False, fontsize=FONT_SIZE - 1, loc="outside lower center", ncols=2)
    _style(ax)
    return fig


def plot_runs(table: pd.DataFrame, paper: Mapping[str, Any] | None) -> Figure:
    runs = table[table["source"] == SOURCE_RUN]
    return plot_metric_bars(
        list(runs["run"]),
        {"r2": list(runs["R²"]), "spearman": list(runs["Spearman"])},
        None,
        "All runs, test-set means",
        paper,
    )


def plot_ablation(table: pd.DataFrame, factor: str, paper: Mapping[str, Any] | None) -> Figure:
    """One bar pair per level of ``factor`` (mean ± sd over seeds), grouped by comparison."""
    runs = table[table["source"] == SOURCE_RUN]
    label = FACTOR_LABELS[factor]
    if runs["comparison"].nunique() > 1:
        labels = [
            f"{lv}\n[{int(c)}]" for lv, c in zip(runs[label], runs["comparison"], strict=True)
        ]
    else:
        labels = list(runs[label])
    return plot_metric_bars(
        labels,
        {"r2": list(runs["R²"]), "spearman": list(runs["Spearman"])},
        {"r2": list(runs["R² sd"]), "spearman": list(runs["Spearman sd"])},
        f"Ablation: {label}",
        paper,
        ylabel=label + (" [comparison]" if runs["comparison"].nunique() > 1 else ""),
    )


def plot_scaling(table: pd.DataFrame, paper: Mapping[str, Any] | None) -> Figure:
    """Mean R² and Spearman against the training fraction, one line pair per comparison."""
    runs = table[table["source"] == SOURCE_RUN]
    fig = _figure(WIDTH_IN, 4.6)
    ax = fig.add_subplot()
    for comparison, part in runs.groupby("comparison"):
        part = part.assign(f=part["training fraction"].astype(float)).sort_values("f")
        suffix = f" [{comparison}]" if runs["comparison"].nunique() > 1 else ""
        for metric, color, marker in (("R²", RUN_COLOR, "o"), ("Spearman", SECOND_COLOR, "s")):
            sd = part[f"{metric} sd"].fillna(0.0)
            ax.errorbar(
                part["f"],
                part[metric],
                yerr=sd,
                color=color,
                marker=marker,
                capsize=3,
                label=f"{metric}{suffix} (this workflow)",
            )
    if paper:
        for metric, color in (("r2", RUN_COLOR), ("spearman", SECOND_COLOR)):
            if paper.get(metric) is not None:
                ax.axhline(paper[metric], color=color, ls="--", lw=1, alpha=0.7)
                ax.annotate(
                    f"paper {METRIC_LABELS[metric]} {paper[metric]:.2f} (reported, full data) ",
                    xy=(1, paper[metric]),
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
    ax.legend(frameon=False, fontsize=FONT_SIZE - 1, loc="upper left", bbox_to_anchor=(1, 1))
    _style(ax)
    return fig


def plot_within_gene_runs(table: pd.DataFrame) -> Figure:
    runs = table[table["source"] == SOURCE_RUN]
    values = [np.nan if v is None else v for v in runs["within-gene Spearman"]]
    fig = _figure(WIDTH_IN, 1.4 + 0.45 * max(len(runs), 2))
    ax = fig.add_subplot()
    y = np.arange(len(runs))
    ax.barh(y, values, color=RUN_COLOR)
    for yi, v in zip(y, values, strict=True):
        if not np.isnan(v):
            ax.text(v, yi, f" {v:.3f}", va="center", fontsize=FONT_SIZE - 1)
    ax.set_yticks(y, runs["run"])
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("mean Spearman ρ across a gene's isoforms (test set)")
    ax.set_title("Within-gene isoform ranking, all runs")
    ax.margins(x=0.15)
    _style(ax)
    return fig


# ---------------------------------------------------------------- entry points (one per rule)


def build_biotypes(transcripts: str | Path, figure: str | Path, table: str | Path) -> None:
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
    )
    write_table(counts, table, "Transcripts by biotype (annotation)")


def build_tissues(stats: str | Path, figure: str | Path, table: str | Path) -> None:
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
    )
    write_table(
        frame,
        table,
        "Samples per tissue",
        note="mean and sd: of the target log(1 + mean TPM) over transcripts, per tissue.",
    )


def build_splits(splits: str | Path, figure: str | Path, table: str | Path, scheme: str) -> None:
    """Transcripts and genes per split from ``splits/{scheme}.tsv``."""
    sizes = split_table(read_splits(splits))
    save_figure(plot_split_sizes(sizes), figure)
    write_table(sizes, table, f"Split sizes ({scheme} scheme)")


def build_lengths(
    rna: str | Path,
    protein: str | Path,
    figure: str | Path,
    table: str | Path,
    max_nt: int | None,
    max_aa: int | None,
) -> None:
    """RNA (nt) and protein (aa) length distributions against the encoders' limits."""
    lengths = {"RNA": sequence_lengths(rna), "protein": sequence_lengths(protein)}
    limits = {"RNA": max_nt, "protein": max_aa}
    save_figure(plot_lengths(lengths, limits), figure)
    write_table(
        length_table(lengths, limits),
        table,
        "Sequence lengths (RNA in nt, protein in aa)",
        note="limit: rna.max_nt and protein.max_aa from the config; longer sequences are "
        "truncated before encoding.",
    )


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
) -> None:
    """Every per-run view: training curves, per-tissue metrics, scatter, within-gene."""
    metrics = read_metrics(metrics_path)
    history = read_history(history_path)
    predictions = read_predictions(predictions_path)
    save_figure(plot_history(history, run), curves)
    table = per_tissue_table(metrics)
    write_table(
        table,
        tissue_table,
        f"Per-tissue test metrics — {run}",
        note=f"{metrics['n_test']:,} test transcripts. Blank: undefined (constant values).",
        summary_rows=[len(table) - 1],
    )
    save_figure(plot_per_tissue(metrics, run), tissue_figure)
    tissues = scatter_tissues(metrics, n_scatter)
    save_figure(plot_scatter(predictions, metrics, tissues, run, max_points), scatter)
    save_figure(plot_within_gene(within_gene_rhos(predictions), metrics, run), within_gene)


def _load_metrics(
    experiments: Mapping[str, Mapping[str, Any]], metrics_paths: Iterable[str | Path]
) -> dict[str, dict[str, Any]]:
    """Run name -> metrics; the run is the parent folder's name (results/runs/{run}/)."""
    by_run = {Path(p).parent.name: read_metrics(p) for p in metrics_paths}
    missing = [run for run in experiments if run not in by_run]
    if missing:
        raise InputError(None, missing[0], "no metrics.json given for this configured run")
    return by_run


def build_experiments(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_paths: Iterable[str | Path],
    paper: Mapping[str, Any] | None,
    table_html_path: str | Path,
    table_tsv_path: str | Path,
    figure: str | Path,
    within_gene: str | Path,
) -> None:
    """All runs side by side with the paper's headline numbers; within-gene across runs."""
    metrics_by_run = _load_metrics(experiments, metrics_paths)
    table = runs_table(experiments, metrics_by_run, paper)
    write_table(table, table_html_path, "All runs (test set)", note=paper_note(paper))
    write_table(table, table_tsv_path, "")
    save_figure(plot_runs(table, paper), figure)
    save_figure(plot_within_gene_runs(table), within_gene)


def build_ablation(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_paths: Iterable[str | Path],
    factor: str,
    paper: Mapping[str, Any] | None,
    table_path: str | Path,
    figure: str | Path,
) -> None:
    """One factor varied, everything else held fixed (``fraction``: the data-scaling view)."""
    metrics_by_run = _load_metrics(experiments, metrics_paths)
    table = ablation_table(experiments, metrics_by_run, factor, paper)
    label = FACTOR_LABELS[factor]
    note = (
        f"Each comparison holds every setting but the {label} fixed; metrics are test-set "
        "means over tissues, then mean ± sd over seeds where there are several. "
    )
    fixed = table.loc[table["source"] == SOURCE_RUN].get("held fixed", pd.Series()).unique()
    if len(fixed) == 1:
        note += f"Held fixed: {fixed[0]}. "
    note += paper_note(paper) or ""
    title = "Data scaling" if factor == "fraction" else f"Ablation: {label}"
    write_table(ablation_display(table, factor), table_path, title, note=note)
    if factor == "fraction":
        save_figure(plot_scaling(table, paper), figure)
    else:
        save_figure(plot_ablation(table, factor, paper), figure)


# ---------------------------------------------------------------- what rule all asks for

RUN_VIEWS = ("curves.svg", "per_tissue.html", "per_tissue.svg", "scatter.png", "within_gene.svg")


def report_paths(
    experiments: Mapping[str, Mapping[str, Any]], report_dir: str = "results/report"
) -> list[str]:
    """Every report figure and table a config can make (rules/report.smk's outputs).

    The data views always; the per-run views for each run; the cross-run table with at
    least one run; an ablation only for a factor some runs differ in alone (all else
    equal); the data-scaling view only when runs differ in training fraction.
    """
    paths = [
        f"{report_dir}/data/{name}.{ext}"
        for name in ("biotypes", "tissues", "splits", "lengths")
        for ext in ("svg", "html")
    ]
    paths += [f"{report_dir}/runs/{run}/{view}" for run in experiments for view in RUN_VIEWS]
    if experiments:
        paths += [f"{report_dir}/experiments/runs.{ext}" for ext in ("html", "tsv", "svg")]
        paths.append(f"{report_dir}/experiments/within_gene.svg")
    for factor in FACTORS:
        if ablation_groups(experiments, factor):
            paths += [
                f"{report_dir}/experiments/ablation_{factor}.{ext}" for ext in ("html", "svg")
            ]
    if ablation_groups(experiments, "fraction"):
        paths += [f"{report_dir}/experiments/scaling.{ext}" for ext in ("html", "svg")]
    return paths


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
    base = [
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
        "--hide-scrollbars",
        f"--window-size={window[0]},{window[1]}",
        "--virtual-time-budget=30000",
    ]
    dom = subprocess.run(
        [*base, "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    match = re.search(r'<pre id="isoflow-drive"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    if dom.returncode != 0 or not match:
        raise RuntimeError(f"chromium did not finish the report walk: {dom.stderr[-2000:]}")
    log = json.loads(html.unescape(match.group(1)))
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
