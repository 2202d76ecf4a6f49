"""The report's figures: matplotlib ``Figure`` objects (no pyplot state, so the Agg canvas
is used whatever the environment says), saved as SVG or PNG.

Every demo figure is stamped ``DEMO_MARK`` on the figure itself (``mark_demo``); no text
runs outside a figure (``fit_texts`` widens an axis for value labels, ``clipped_texts``
lists what still would). The paper's numbers appear only as a bar or line labelled as
reported in the paper.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from isoflow.experiments import FACTOR_LABELS
from isoflow.files import atomic_path
from isoflow.report.readers import METRICS, is_collapsed
from isoflow.report.tables import (
    COLLAPSED,
    CONTROL_LABEL,
    CORRELATION_LABELS,
    DEMO_MARK,
    ISOFORM_BINS,
    METRIC_LABELS,
    SOURCE_BASELINE,
    SOURCE_CONTROL,
    SOURCE_PAPER,
    SOURCE_RUN,
    best_epoch,
    error_tables,
    isoform_bins,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# Figures are read in the report at their natural size: large enough fonts, no zooming.
FONT_SIZE = 11
WIDTH_IN = 9.0
RUN_COLOR = "#2b6cb0"
SECOND_COLOR = "#dd6b20"
THIRD_COLOR = "#38a169"
PAPER_COLOR = "#a0aec0"
DEMO_COLOR = "#c53030"
PAD_IN = 0.1  # savefig's pad_inches around the tight box
PNG_LEVEL = 3  # zlib level of the PNGs (PIL's default: 6)


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


def _data_texts(ax) -> list:
    """The texts of ``ax`` that ``fit_texts`` fits: not blank, placed in data coordinates,
    on a linear x axis that runs left to right (none on any other axes)."""
    if ax.get_xscale() != "linear" or ax.xaxis_inverted():
        return []
    return [t for t in ax.texts if t.get_transform() == ax.transData and t.get_text().strip()]


def _laid_out(fig: Figure, renderer=None):
    """Run the figure's layout engine (if any) and return the renderer to measure it with:
    ``renderer``, else the figure's canvas's (Agg if it has none). Nothing is drawn."""
    if renderer is None:
        if not hasattr(fig.canvas, "get_renderer"):
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            FigureCanvasAgg(fig)
        renderer = fig.canvas.get_renderer()
    engine = fig.get_layout_engine()
    if engine is not None and fig.axes:
        engine.execute(fig)
    return renderer


def fit_texts(fig: Figure, rounds: int = 4) -> bool:
    """Widen each axes' x range until every text placed in data coordinates (value labels
    beside bars) ends inside the axes: nothing runs past the figure's edge. Measured with
    the canvas's renderer (Agg at the figure's dpi).

    Each round lays the figure out (``_laid_out``: the layout engine only, no draw) and
    measures the texts. A figure with no such text is left alone, not laid out: no limit
    would change (docs/benchmarks.md, "Report figures"). Returns whether the figure was
    laid out at its final limits (the last round changed none).
    """
    fitted = [(ax, texts) for ax in fig.axes if (texts := _data_texts(ax))]
    if not fitted:
        return False
    for _ in range(rounds):
        renderer = _laid_out(fig)
        changed = False
        for ax, texts in fitted:
            box = ax.get_window_extent(renderer)
            x0, x1 = ax.get_xlim()
            need = x1
            for text in texts:
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
            return True
    return False


# Text layouts measured by earlier saves in this process (report_runs: 21 runs' figures
# share most tick labels, legends and titles), per set of text settings (_text_settings).
_LAYOUTS: dict[tuple, dict[tuple, tuple]] = {}


def _text_settings() -> tuple:
    """The rcParams a text's layout may read beyond its own properties (fonts, TeX, math)."""
    from matplotlib import rcParams

    return tuple(
        (k, tuple(v) if isinstance(v, list) else v)
        for k, v in sorted(rcParams.items())
        if k.startswith(("font.", "text.", "mathtext."))
    )


_PATCH_LOCK = threading.Lock()


@contextmanager
def _reused_measures() -> Iterator[None]:
    """Within the block, matplotlib measures each text and places each axis' ticks once per
    distinct input, not once per pass (``save_figure``: the constrained layout's two
    passes, the tight box, the output draw; each re-measured every tick label and re-placed
    every tick, several times per pass: docs/benchmarks.md, "Report figures").

    * ``Text._get_layout`` (a text's lines' sizes and offsets from its anchor, not its
      position) is keyed on what it reads: the string, font, line spacing, alignment,
      rotation, math and TeX settings, the figure's dpi and the renderer's kind and dpi.
      Wrapped texts (their lines depend on their position) and texts whose rotation follows
      their transform are measured every time. Bboxes are copied out, never shared. Kept
      for later saves in the process (``_LAYOUTS``, per font/text/math rcParams): one
      ``report_runs`` job saves 105 figures with mostly the same labels.
    * ``Axis._update_ticks`` (the ticks' positions and labels from the locator and
      formatter, and which of them fall inside the view) is kept for the axis' latest state:
      its view interval, its scale, its locators and formatters and the axes' box in
      display units (the locators' tick count follows the axes' size); matplotlib rewrites
      the same Tick objects in place, so an earlier state's list is never returned.

    One save at a time in a process (a lock): the patched methods are the classes'.

    Outputs are unchanged (``bench/bench_report.py`` compares them with the old code's).
    """
    from matplotlib.axis import Axis
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    with _PATCH_LOCK:  # the methods are the class's, for every thread: one save at a time
        yield from _patched(Text, Axis, Bbox)


def _patched(Text, Axis, Bbox) -> Iterator[None]:  # noqa: N803 (the classes patched)
    """The body of :func:`_reused_measures`, under its lock."""
    measure, update = Text._get_layout, Axis._update_ticks
    layouts = _LAYOUTS.setdefault(_text_settings(), {})
    if len(layouts) > 50_000:  # a bound for long-lived processes; a few hundred per run
        layouts.clear()
    ticks: dict[int, tuple[tuple, list]] = {}  # id(axis) -> (its state, its ticks)

    def layout(text, renderer):
        if text.get_wrap() or text.get_transform_rotates_text():
            return measure(text, renderer)
        key = (
            type(renderer),
            type(getattr(renderer, "_renderer", None)),
            getattr(renderer, "dpi", None),
            text.get_figure(root=True).dpi,
            text.get_text(),
            hash(text.get_fontproperties()),
            text.get_usetex(),
            text.get_parse_math(),
            text.get_linespacing(),
            text.get_rotation(),
            text.get_rotation_mode(),
            text.get_horizontalalignment(),
            text.get_verticalalignment(),
            text._get_multialignment(),
        )
        if key not in layouts:
            layouts[key] = measure(text, renderer)
        bbox, info, corner = layouts[key]
        return Bbox(bbox.get_points().copy()), list(info), corner

    def update_ticks(axis):
        key = (
            id(axis),
            tuple(axis.get_view_interval()),
            axis.get_scale(),
            tuple(id(x) for x in (axis.major.locator, axis.major.formatter)),
            tuple(id(x) for x in (axis.minor.locator, axis.minor.formatter)),
            tuple(axis.axes.bbox.bounds),
            axis.get_figure(root=True).dpi,
        )
        # Only the axis' latest state: _update_ticks rewrites the same Tick objects in
        # place, so a list kept for an earlier state would now hold the later labels.
        held = ticks.get(id(axis))
        if held is None or held[0] != key:
            held = ticks[id(axis)] = (key, update(axis))
        return list(held[1])

    Text._get_layout, Axis._update_ticks = layout, update_ticks
    try:
        yield
    finally:
        Text._get_layout, Axis._update_ticks = measure, update


def _tight_box(fig: Figure, fmt: str, dpi: float | None):
    """Lay ``fig`` out as ``savefig`` would for ``fmt``, without its measuring draw; return
    the tight box (inches, padded) that ``bbox_inches="tight"`` would save.

    ``savefig`` with a layout engine or ``bbox_inches="tight"`` first draws the whole figure
    with drawing disabled: the constrained layout runs at the start of that draw, and the
    rest of it (every tick, text and line placed, nothing output) only repeats what the
    output draw does. The layout and the tight box need only the layout engine and
    ``get_tightbbox``, measured with the renderer the output format uses (SVG: its own
    text metrics at 72 dpi; PNG: Agg at the output dpi)."""
    from matplotlib.backend_bases import _get_renderer

    with fig.canvas._switch_canvas_and_return_print_method(fmt) as print_method:
        if dpi is not None:
            fig.set_dpi(dpi)
        renderer = _get_renderer(fig, print_method)  # as savefig: SVG sets 72 dpi
        _laid_out(fig, renderer)
        return fig.get_tightbbox(renderer).padded(PAD_IN)


def save_figure(fig: Figure, path: str | Path, demo: bool = False) -> None:
    """Save as SVG or PNG by the path's suffix, atomically; ``demo`` stamps ``DEMO_MARK``.

    Value labels are fitted inside their axes first. The figure is laid out and saved with
    the tight box ``bbox_inches="tight", pad_inches=0.1`` would find (it keeps any artist
    outside the figure, e.g. a title longer than the figure is wide, in the saved image),
    but drawn only once (``_tight_box``), with text and tick measures reused within the
    save (text layouts also across saves, ``_reused_measures``): the same file as
    ``savefig(bbox_inches="tight")`` (``test_save_figure_writes_what_savefig_tight_writes``)
    at ~0.6x its CPU. ``_tight_box`` and ``_reused_measures`` use matplotlib internals of
    the pinned 3.11.2 (requirements.lock); that test fails if an update changes them.
    """
    from matplotlib import rc_context

    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"{path}: figures are .svg or .png")
    if demo:
        mark_demo(fig)
    dpi = 120 if fmt == "png" else None
    figure_dpi, canvas, engine = fig.dpi, fig.canvas, fig.get_layout_engine()
    with _reused_measures():
        # Fitted in Agg's metrics at the figure's dpi, as before (the output format's
        # metrics would fit the labels too, but widen the axes up to ~4 % differently).
        fit_texts(fig)
        try:
            box = _tight_box(fig, fmt, dpi)
            fig.set_dpi(figure_dpi)
            with rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
                fig.set_layout_engine(None)  # laid out above: savefig draws once, no layout
            # PNG: zlib level 3, not PIL's 6: the same pixels, ~5 % more bytes, half the
            # encoding time (docs/benchmarks.md, "Report figures").
            options = {"pil_kwargs": {"compress_level": PNG_LEVEL}} if fmt == "png" else {}
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches=box, **options)
        finally:
            fig.set_dpi(figure_dpi)
            fig.set_canvas(canvas)
            if engine is not None:
                fig.set_layout_engine(engine)


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
    tied = int(rhos["tied"].sum()) if "tied" in rhos else 0
    fig.suptitle(
        f"Within-gene isoform ranking — {run}: {len(rhos):,} pairs, {genes:,} genes"
        + (f"\n{tied:,} of the pairs: predictions all tied, scored ρ = 0" if tied else ""),
        fontsize=FONT_SIZE + 1,
    )
    return fig


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
        return BASELINE_TICK
    if row["source"] == SOURCE_PAPER:
        return "paper (reported)"
    label = str(row[label_column])
    seeds = row.get("seeds")
    if seeds is not None and not pd.isna(seeds):
        label += f"\n(n={int(seeds)} seed{'s' if int(seeds) != 1 else ''}"
        k = row.get(COLLAPSED)
        if k is not None and not pd.isna(k) and 0 < int(k) < int(seeds):
            # every seed is pooled, the collapsed ones too: say how many of them collapsed
            label += f"; {int(k)} collapsed"
        label += ")"
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
    workflow's settings (mean ± sd over seeds as error bars, or the 95 % interval over test
    genes when the table has the report's bootstrap; n in the label), then the
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
            # with the report's bootstrap: the 95 % interval over test genes, not the sd
            low, high = _number(row.get(f"{metric} CI low")), _number(row.get(f"{metric} CI high"))
            interval = not (np.isnan(low) or np.isnan(high))
            if interval:
                legend = f"{metric} (this workflow, seed mean, 95% CI over test genes)"
            if source == SOURCE_BASELINE:
                style = {"color": color, "alpha": 0.55, "hatch": "..", "edgecolor": "white"}
                legend = f"{metric} ({SOURCE_BASELINE})"
                legend += ", 95% CI over test genes" if interval else ""
            elif source == SOURCE_PAPER:
                style = {"color": PAPER_COLOR, "hatch": "//", "edgecolor": "white"}
                legend = "reported in paper, not this workflow"
                text = f" {metric} {value:.2f} (paper)"
                sd = np.nan
                interval = False
            key = (source, legend)
            if interval:
                xerr: Any = [[max(value - low, 0.0)], [max(high - value, 0.0)]]
                reach = high
            else:
                xerr = None if np.isnan(sd) else sd
                reach = value + (0 if np.isnan(sd) else sd)
            ax.barh(
                yi + offset,
                value,
                height,
                xerr=xerr,
                capsize=3,
                label=f"_{legend}" if key in seen else legend,  # _: not in legend
                **style,
            )
            seen.add(key)
            right = max(reach, 0)
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
