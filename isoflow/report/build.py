"""The report rules' entry points, one per rule (``scripts/report_*.py`` call them): read
the inputs (``isoflow.report.readers``, ``isoflow.splits``), make the tables
(``isoflow.report.tables``) and figures (``isoflow.report.figures``), write each output
atomically. A bad input raises ``InputError`` before any output is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from isoflow.errors import InputError
from isoflow.experiments import FACTOR_LABELS
from isoflow.report.bootstrap import BOOTSTRAP_FILE, bootstrap_runs
from isoflow.report.bootstrap import read_runs as read_bootstrap
from isoflow.report.bootstrap import summary as bootstrap_summary
from isoflow.report.figures import (
    plot_ablation,
    plot_counts,
    plot_errors,
    plot_history,
    plot_isoforms_per_gene,
    plot_lengths,
    plot_per_tissue,
    plot_runs,
    plot_scaling,
    plot_scatter,
    plot_split_sizes,
    plot_targets,
    plot_within_gene,
    plot_within_gene_runs,
    save_figure,
)
from isoflow.report.readers import (
    is_collapsed,
    join_transcripts,
    read_history,
    read_metrics,
    read_overlap,
    read_overlap_examples,
    read_predictions,
    read_targets,
    read_tissue_stats,
    sequence_lengths,
)
from isoflow.report.tables import (
    BASELINE_LABEL,
    BASELINE_RUN,
    COLLAPSED,
    CONTROL_LABEL,
    DEMO_MARK,
    OVERLAP_SIDES,
    SOURCE_RUN,
    ablation_display,
    ablation_table,
    biotype_table,
    dna_span_note,
    leak_note,
    leak_table,
    length_table,
    model_stamp,
    overlap_note,
    paper_note,
    per_tissue_table,
    reference_counts_table,
    run_rows,
    runs_display,
    runs_table,
    scatter_tissues,
    split_table,
    within_gene_rhos,
    write_table,
    zero_table,
)
from isoflow.splits import TSS_COLUMNS, read_splits, tss_leaks
from isoflow.workflow import BASELINE_METRICS

log = logging.getLogger(__name__)

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
    write_table(counts, table, "Transcripts by biotype (annotation)", stamp=_data_stamp(demo))


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
        stamp=_data_stamp(demo),
    )


def build_splits(
    splits: str | Path,
    figure: str | Path,
    table: str | Path,
    scheme: str,
    demo: bool = False,
    dataset: str | Path | None = None,
    reference: Mapping[str, Any] | None = None,
    transcripts: str | Path | None = None,
) -> None:
    """Transcripts and genes per split from ``splits/{scheme}.tsv``; with ``transcripts``
    (``transcripts.parquet``) also the held-out transcripts whose TSS is, or lies near, a
    train TSS of another gene (``splits.tss_leaks``); with ``reference``
    (``report.reference_counts``) also the genes and transcripts per split of ``dataset``
    (the dataset parquet) beside the reference's, with the relative difference."""
    frame = read_splits(splits)
    sizes = split_table(frame)
    save_figure(plot_split_sizes(sizes), figure, demo)
    notes = []
    if transcripts is not None:
        annotation = pd.read_parquet(
            transcripts, columns=["transcript_id", "gene_id", *TSS_COLUMNS]
        )
        sizes = leak_table(sizes, tss_leaks(annotation, frame, source=transcripts))
        notes.append(leak_note(scheme))
    if reference:
        if dataset is None:
            raise ValueError("reference counts need the dataset parquet")
        rows = pd.read_parquet(dataset, columns=["split", "gene_id"])
        sizes = reference_counts_table(sizes, rows, reference)
        source = f" ({reference['source']})" if reference.get("source") else ""
        notes.append(
            f"transcripts, genes: rows of splits/{scheme}.tsv (every annotation transcript). "
            f"In dataset: rows of {Path(dataset).name} (annotation ∩ GTEx, after every "
            f"filter). In reference: {reference['label']}{source}, from the config key "
            "report.reference_counts, not from this run. Difference: (dataset - reference) "
            "/ reference."
        )
    write_table(
        sizes,
        table,
        f"Split sizes ({scheme} scheme)",
        note=" ".join(notes) or None,
        stamp=_data_stamp(demo),
    )


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
        stamp=_data_stamp(demo),
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
    sides = {key: overlap[key] for key in OVERLAP_SIDES if key in overlap}
    save_figure(plot_isoforms_per_gene(per_gene, sides), isoforms_figure, demo)
    note = "Share of transcripts with target 0 (no TPM in any sample of the tissue). "
    note += overlap_note(overlap, read_overlap_examples(stats))
    write_table(zeros, table, "Targets: zeros per tissue", note=note, stamp=_data_stamp(demo))


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
    note = (
        f"{metrics['n_test']:,} test transcripts. Blank: undefined (the observed values are "
        "constant). Predictions that are all equal rank nothing and score 0"
    )
    constant = metrics.get("constant_prediction_tissues") or []
    note += f" (here: {', '.join(constant)})." if constant else "."
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
        stamp=model_stamp(demo),
    )
    save_figure(plot_per_tissue(metrics, run), tissue_figure, demo)
    tissues = scatter_tissues(metrics, n_scatter)
    save_figure(plot_scatter(predictions, metrics, tissues, run, max_points), scatter, demo)
    save_figure(plot_within_gene(within_gene_rhos(predictions), metrics, run), within_gene, demo)
    if transcripts_path is not None and errors is not None:
        joined = join_transcripts(predictions, transcripts_path)
        save_figure(plot_errors(joined, run), errors, demo)


def build_runs(
    runs: list[str],
    views: list[str],
    outputs: list[str | Path],
    metrics_paths: list[str | Path],
    history_paths: list[str | Path],
    predictions_paths: list[str | Path],
    **options: Any,
) -> None:
    """:func:`build_run` for each of ``runs`` in one process (rule report_runs): run ``i``'s
    inputs are the ``i``-th of each path list, its views the ``i``-th run of
    ``len(views)`` paths in ``outputs``, in the order of ``views`` (build_run's argument
    names); ``options`` go to every call."""
    per_run = len(views)
    lists = (metrics_paths, history_paths, predictions_paths)
    if len(outputs) != per_run * len(runs) or any(len(paths) != len(runs) for paths in lists):
        raise ValueError(
            f"{len(runs)} runs need {per_run * len(runs)} outputs and {len(runs)} of each "
            f"input, got {len(outputs)} outputs and {[len(paths) for paths in lists]} inputs"
        )
    for i, run in enumerate(runs):
        for paths in lists:
            if Path(paths[i]).parent.name != run:
                raise ValueError(f"{paths[i]}: not an input of run {run}")
        named = dict(zip(views, outputs[i * per_run : (i + 1) * per_run], strict=True))
        build_run(run, metrics_paths[i], history_paths[i], predictions_paths[i], **named, **options)
        log.info("views of run %s (%d of %d) done", run, i + 1, len(runs))


def _load_metrics(
    experiments: Mapping[str, Mapping[str, Any]], metrics_paths: Iterable[str | Path]
) -> dict[str, dict[str, Any]]:
    """Run name -> metrics; the run is the parent folder's name (results/runs/{run}/)."""
    by_run = {Path(p).parent.name: read_metrics(p) for p in metrics_paths}
    missing = [run for run in experiments if run not in by_run]
    if missing:
        raise InputError(None, missing[0], "no metrics.json given for this configured run")
    return by_run


def _paths_by_run(metrics_paths: Iterable[str | Path]) -> dict[str, str | Path]:
    return {Path(p).parent.name: p for p in metrics_paths}


# The bootstrap's defaults (config report.bootstrap_resamples, report.bootstrap_seed).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def _bootstrap(
    metrics_by_run: Mapping[str, Any],
    paths: Mapping[str, str | Path],
    baseline_path: str | Path | None,
    resamples: int,
    seed: int,
    precomputed: bool = False,
    units: pd.Series | None = None,
    unit: str = "gene",
) -> dict[str, Any]:
    """Every run's (and the baseline's) metrics on the same resamples of the test units,
    from the ``predictions.parquet`` beside each ``metrics.json`` (``report.bootstrap``;
    ``units``: ``bootstrap.split_units``, None: genes); ``precomputed``: from the
    ``bootstrap.npz`` there instead (rule ``report_bootstrap``, ``bootstrap.write_run``:
    each run resampled once, not once per table), made resampling ``unit`` (checked)."""
    name = BOOTSTRAP_FILE if precomputed else "predictions.parquet"
    files = {
        run: Path(paths.get(run, f"results/runs/{run}/metrics.json")).with_name(name)
        for run in metrics_by_run
    }
    if baseline_path is not None:
        files[BASELINE_RUN] = Path(baseline_path).with_name(name)
    for run, path in files.items():
        if not path.exists():
            raise InputError(path, None, f"missing: the report's bootstrap reads {run}'s {name}")
    if precomputed:
        return read_bootstrap(files, resamples, seed, unit)
    return bootstrap_runs(files, resamples, seed, units)


def _across_runs(
    experiments: Mapping[str, Mapping[str, Any]],
    metrics_paths: Iterable[str | Path],
    baseline_path: str | Path | None,
    resamples: int,
    seed: int,
    precomputed: bool,
    unit: str = "gene",
    units: pd.Series | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """What a table across runs reads: each run's metrics, the baseline's (None without
    one), checked scored on one test set (``check_comparable``), and their bootstrap
    (:func:`_bootstrap`) resampling ``unit``: from the per-run files (``precomputed``), else
    from the predictions with ``units`` (``bootstrap.split_units``, required for loci)."""
    if unit != "gene" and units is None and not precomputed:
        raise ValueError(f"resampling {unit} units from the predictions needs their units")
    metrics_paths = list(metrics_paths)
    metrics_by_run = _load_metrics(experiments, metrics_paths)
    baseline = _load_baseline(baseline_path)
    paths = _paths_by_run(metrics_paths)
    check_comparable(metrics_by_run, baseline, baseline_path, paths)
    boot = _bootstrap(
        metrics_by_run, paths, baseline_path, resamples, seed, precomputed, units, unit
    )
    return metrics_by_run, baseline, boot


def _load_baseline(path: str | Path | None) -> dict[str, Any] | None:
    return None if path is None else read_metrics(path)


def _scored_on(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What a run was scored on: test transcripts, tissues, scored (gene, tissue) groups."""
    return {
        "n_test": metrics["n_test"],
        "tissues": sorted(metrics["per_tissue"]),
        "within_gene_groups": metrics["within_gene_groups"],
    }


def check_comparable(
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Any] | None = None,
    baseline_path: str | Path | None = None,
    paths: Mapping[str, str | Path] | None = None,
) -> None:
    """Raise ``InputError`` naming the first run (or the baseline) whose test transcripts
    (``n_test``), tissue set or scored within-gene groups differ from the first run's: the
    tables pool and compare runs as if they were scored on one test set."""
    paths = paths or {}
    named = [
        (run, paths.get(run, f"results/runs/{run}/metrics.json"), m)
        for run, m in metrics_by_run.items()
    ]
    if baseline is not None:
        named.append(("baseline", baseline_path or BASELINE_METRICS, baseline))
    if not named:
        return
    first, _, reference = named[0]
    expected = _scored_on(reference)
    for run, path, metrics in named[1:]:
        got = _scored_on(metrics)
        for key, value in got.items():
            if value != expected[key]:
                shown = (
                    f"{len(value)} tissues ({', '.join(sorted(set(value) ^ set(expected[key])))}"
                    " not in both)"
                    if key == "tissues"
                    else value
                )
                want = f"{len(expected[key])} tissues" if key == "tissues" else expected[key]
                raise InputError(
                    path,
                    key,
                    f"{shown} in {run}, {want} in {first}: the report compares runs scored "
                    "on one test set; rescore or retrain the runs on the same split and tissues",
                )


def _data_stamp(demo: bool) -> str | None:
    return DEMO_MARK if demo else None


# The per-tissue metrics a test-set mean averages (metrics.json "per_tissue"), as labelled.
MEAN_METRICS = {"r2": "R²", "spearman": "Spearman", "pearson": "Pearson"}


def tissues_note(
    metrics_by_run: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Any] | None = None
) -> str:
    """How many tissues each test-set mean averages and which it leaves out: a tissue whose
    observed test values are constant has null metrics (``metrics.tissue_metrics``), which
    the means skip, so the note names them rather than let a tissue drop out silently."""
    scored = [*metrics_by_run.values(), *([baseline] if baseline is not None else [])]
    if not scored:
        return ""
    tissues = sorted(scored[0]["per_tissue"])
    left_out = {
        label: sorted({t for m in scored for t, v in m["per_tissue"].items() if v.get(key) is None})
        for key, label in MEAN_METRICS.items()
    }
    if not any(left_out.values()):
        return f"Each mean averages all {len(tissues)} tissues. "
    parts = []
    for names, labels in _grouped(left_out).items():
        which = "each mean" if len(labels) == len(MEAN_METRICS) else " and ".join(labels)
        kept = len(tissues) - len(names)
        if names:
            parts.append(
                f"{which} averages {kept} of {len(tissues)} tissues, leaving out "
                f"{len(names)}: {', '.join(names)} (metrics undefined: the observed test "
                "values are constant)"
            )
        else:
            parts.append(f"{which} averages all {len(tissues)} tissues")
    note = "; ".join(parts)
    return note[0].upper() + note[1:] + ". "


def _grouped(left_out: Mapping[str, list[str]]) -> dict[tuple[str, ...], list[str]]:
    """Metric labels grouped by the tissues they leave out, in metric order."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for label, names in left_out.items():
        groups.setdefault(tuple(names), []).append(label)
    return groups


def _across_note(
    paper: Mapping[str, Any] | None,
    baseline: Mapping[str, Any] | None,
    metrics_by_run: Mapping[str, Mapping[str, Any]],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    unit: str = "gene",
) -> str:
    info = {"resamples": resamples, "seed": seed, "unit": unit}
    note = bootstrap_summary(info) + (
        "Metrics are test-set means over tissues, then mean ± sd over seeds (seeds: how "
        "many runs; sd blank for one). Every seed counts in every metric, a collapsed one "
        "(constant predictions) too, with the correlation isoflow.metrics gave it (0 where "
        "its predictions tie): leaving it out would pick seeds by their test predictions. "
        "A correlation cell says how many of its seeds collapsed; 'collapsed' replaces "
        "correlations where every seed collapsed. Every run is "
        "scored on the same test transcripts, tissues and (gene, tissue) groups (checked): "
        "predictions that all tie "
        "score 0, never drop out. "
        f"The {CONTROL_LABEL} (shuffle_targets: true) is the floor a model must clear. "
    )
    note += tissues_note(metrics_by_run, baseline)
    if baseline is not None:
        note += f"The {BASELINE_LABEL} reads no sequence. "
    else:
        note += f"No sequence-free baseline was given ({BASELINE_METRICS}). "
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
    tiny_encoders: Iterable[str] = (),
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    bootstrap_seed: int = BOOTSTRAP_SEED,
    bootstrap_precomputed: bool = False,
    bootstrap_unit: str = "gene",
    bootstrap_units: pd.Series | None = None,
) -> None:
    """All settings (seeds pooled) beside the control, the baseline and the paper's
    headline numbers; within-gene across settings. ``runs.tsv``: every run unpooled.
    ``tiny_encoders``: the encoders with random weights the runs read (outside the demo,
    the tables say so). ``bootstrap_precomputed``: the bootstrap's values from each run's
    ``bootstrap.npz`` (rule report_bootstrap), else resampled here from its predictions.
    ``bootstrap_unit``: what the bootstrap resamples (``workflow.bootstrap_unit``), checked
    in the files; resampled here, ``bootstrap_units`` gives each gene's unit
    (``bootstrap.split_units``)."""
    metrics_by_run, baseline, boot = _across_runs(
        experiments,
        metrics_paths,
        baseline_path,
        bootstrap_resamples,
        bootstrap_seed,
        bootstrap_precomputed,
        bootstrap_unit,
        bootstrap_units,
    )
    table = runs_table(experiments, metrics_by_run, paper, baseline, boot)
    write_table(
        runs_display(table),
        table_html_path,
        "All runs (test set)",
        note=_across_note(
            paper, baseline, metrics_by_run, bootstrap_resamples, bootstrap_seed, bootstrap_unit
        ),
        stamp=model_stamp(demo, tiny_encoders),
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
    tiny_encoders: Iterable[str] = (),
    dna_spans: Mapping[str, Mapping[str, Any]] | None = None,
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    bootstrap_seed: int = BOOTSTRAP_SEED,
    bootstrap_precomputed: bool = False,
    bootstrap_unit: str = "gene",
    bootstrap_units: pd.Series | None = None,
) -> None:
    """One factor varied, everything else held fixed (``fraction``: the data-scaling view);
    ``tiny_encoders`` as for :func:`build_experiments`; ``dna_spans``
    (``workflow.ablation_dna_spans``): the DNA each level reads, stated per row; the
    bootstrap's options as for :func:`build_experiments`."""
    metrics_by_run, baseline, boot = _across_runs(
        experiments,
        metrics_paths,
        baseline_path,
        bootstrap_resamples,
        bootstrap_seed,
        bootstrap_precomputed,
        bootstrap_unit,
        bootstrap_units,
    )
    table = ablation_table(experiments, metrics_by_run, factor, paper, baseline, dna_spans, boot)
    label = FACTOR_LABELS[factor]
    note = f"Each comparison holds every setting but the {label} fixed. "
    fixed = table.loc[table["source"] == SOURCE_RUN].get("held fixed", pd.Series()).unique()
    if len(fixed) == 1:
        note += f"Held fixed: {fixed[0]}. "
    note += dna_span_note(table)
    note += _across_note(
        paper, baseline, metrics_by_run, bootstrap_resamples, bootstrap_seed, bootstrap_unit
    )
    title = "Data scaling" if factor == "fraction" else f"Ablation: {label}"
    write_table(
        ablation_display(table, factor),
        table_path,
        title,
        note=note,
        stamp=model_stamp(demo, tiny_encoders),
    )
    if factor == "fraction":
        save_figure(plot_scaling(table), figure, demo)
    else:
        save_figure(plot_ablation(table, factor), figure, demo)
