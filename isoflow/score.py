"""Score expression constructs with a model bundle or an ensemble of bundles: ``isoflow score``.

Each construct (:mod:`isoflow.constructs`) becomes the three model inputs once
(:func:`isoflow.constructs.construct_inputs`, with the ``dna.window`` every bundle shares); each
bundle (:func:`isoflow.bundle.load_model`) predicts log(1 + TPM) per tissue (a fine-tuned
bundle: its table's columns, in the table's units; :func:`isoflow.bundle.output_units`
labels them) for all of them, in batches, on a GPU when there is one. Over the bundles
(seeds, runs) the table holds the mean and the sd per construct and tissue; for target
tissues, a tissue-specificity score per construct (:func:`specificity`).
docs/constructs.md ("Scoring") is the user's page.

Outputs (``--out PREFIX``; rule ``score_constructs`` names them one by one)::

    PREFIX.scores.tsv / .parquet   long: one row per construct x tissue
                                   construct_id tissue mean sd n_models target warnings
    PREFIX.specificity.tsv         with target tissues: one row per construct
                                   construct_id targets specificity specificity_sd
                                   target_mean other_mean n_models rank warnings
    PREFIX.heatmap.svg (or .png)   constructs x tissues: mean (annotated mean +- sd), sd,
                                   and the specificity with its sd

Importing this module loads no torch (``isoflow score --help`` from a fresh clone); the
bundle code is imported when a model is loaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isoflow.commands import (
    BATCH_SIZE_HELP,
    CONSTRUCT_FLAGS,
    CONSTRUCTS_FLAGS,
    DEVICE_HELP,
    MODEL_FLAGS,
    OUT_FLAGS,
    REPLACED,
    add_construct_arguments,
    positive_int,
)
from isoflow.constructs import (
    CONSTRUCT_FIELD,
    Construct,
    aav_limit_ignored,
    check_placement,
    construct_inputs,
    read_background,
    read_constructs,
)
from isoflow.errors import InputError, did_you_mean
from isoflow.files import atomic_path, check_output_files, check_prefix, output_set
from isoflow.progress import Progress

log = logging.getLogger("isoflow.score")

HELP = (
    "Score expression constructs (TSV or GenBank) with one or more model bundles: predicted "
    "log(1 + TPM) per tissue (mean and sd over the bundles), a tissue-specificity score for "
    "target tissues, and a heat map."
)
SCORE_COLUMNS = ("construct_id", "tissue", "mean", "sd", "n_models", "target", "warnings")
SPECIFICITY_COLUMNS = (
    "construct_id",
    "targets",
    "specificity",
    "specificity_sd",
    "target_mean",
    "other_mean",
    "n_models",
    "rank",
    "warnings",
)
FIGURE_FORMATS = ("svg", "png")
# Annotate each heat-map cell with mean +- sd up to this many cells; beyond it the numbers
# would be too small to read and the sd panel alone shows the spread.
ANNOTATE_MAX_CELLS = 200
WARNING_SEPARATOR = " | "


@dataclass
class Scores:
    """What :func:`score_constructs` returns.

    ``predictions``: ``(n_models, n_constructs, n_tissues)`` float32, in ``units``
    (:func:`isoflow.bundle.output_units`: log(1 + TPM), or a fine-tuned bundle's table's
    units), which every label of the outputs names;
    ``constructs``, ``tissues`` (the bundles' order), ``models`` (each bundle's run name and
    path), ``targets`` (target tissues, may be empty), ``warnings`` (construct id -> the
    warnings logged while reading or placing it, e.g. cut to the DNA window)."""

    constructs: list[str]
    tissues: list[str]
    models: list[dict[str, str]]
    predictions: np.ndarray
    targets: list[str] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    units: str = "log(1 + TPM)"

    @property
    def n_models(self) -> int:
        return int(self.predictions.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """``(n_constructs, n_tissues)`` mean over the bundles."""
        return self.predictions.mean(axis=0)

    @property
    def sd(self) -> np.ndarray:
        """``(n_constructs, n_tissues)`` sample sd over the bundles (ddof 1; NaN for one)."""
        return _sd(self.predictions)

    def _warning_text(self, cid: str) -> str:
        return WARNING_SEPARATOR.join(self.warnings.get(cid, []))

    @property
    def table(self) -> pd.DataFrame:
        """The long table: one row per construct x tissue (``SCORE_COLUMNS``)."""
        n_c, n_t = len(self.constructs), len(self.tissues)
        return pd.DataFrame(
            {
                "construct_id": np.repeat(self.constructs, n_t),
                "tissue": np.tile(self.tissues, n_c),
                "mean": self.mean.reshape(-1).astype(np.float64),
                "sd": self.sd.reshape(-1).astype(np.float64),
                "n_models": np.full(n_c * n_t, self.n_models, dtype=np.int64),
                "target": np.tile([t in self.targets for t in self.tissues], n_c),
                "warnings": np.repeat([self._warning_text(c) for c in self.constructs], n_t),
            },
            columns=list(SCORE_COLUMNS),
        )

    @property
    def specificity(self) -> pd.DataFrame | None:
        """One row per construct (``SPECIFICITY_COLUMNS``), ranked by specificity (1 = most
        specific for the targets); None without target tissues."""
        if not self.targets:
            return None
        per_model, target_mean, other_mean = specificity(
            self.predictions, self.tissues, self.targets
        )
        mean = per_model.mean(axis=0)
        order = np.argsort(-mean, kind="stable")
        rank = np.empty(len(mean), dtype=np.int64)
        rank[order] = np.arange(1, len(mean) + 1)
        return pd.DataFrame(
            {
                "construct_id": self.constructs,
                "targets": ",".join(self.targets),
                "specificity": mean.astype(np.float64),
                "specificity_sd": _sd(per_model).astype(np.float64),
                "target_mean": target_mean.mean(axis=0).astype(np.float64),
                "other_mean": other_mean.mean(axis=0).astype(np.float64),
                "n_models": self.n_models,
                "rank": rank,
                "warnings": [self._warning_text(c) for c in self.constructs],
            },
            columns=list(SPECIFICITY_COLUMNS),
        )


def _sd(values: np.ndarray) -> np.ndarray:
    """Sample sd (ddof 1) over axis 0; NaN with a single model (no spread to measure)."""
    if values.shape[0] < 2:
        return np.full(values.shape[1:], np.nan, dtype=np.float64)
    return values.astype(np.float64).std(axis=0, ddof=1)


def specificity(
    predictions: np.ndarray, tissues: Sequence[str], targets: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue specificity of each construct under each model, in the predictions' units
    (log(1 + TPM); a fine-tuned bundle's table's units):

        S = mean over target tissues - mean over the other tissues

    of one model's predictions. ``predictions`` ``(n_models, n_constructs, n_tissues)``;
    returns ``(S, target_mean, other_mean)``, each ``(n_models, n_constructs)``. S > 0: the
    construct is predicted higher in the targets than elsewhere; in log(1 + TPM), S = 1
    is e-fold more (1 + TPM). The ensemble's score is the mean of S over the models, its
    sd their spread."""
    check_targets(targets, tissues)
    is_target = np.array([t in set(targets) for t in tissues])
    values = predictions.astype(np.float64)
    target_mean = values[..., is_target].mean(axis=-1)
    other_mean = values[..., ~is_target].mean(axis=-1)
    return target_mean - other_mean, target_mean, other_mean


def check_targets(targets: Iterable[str], tissues: Sequence[str]) -> list[str]:
    """``targets`` as a list, each a tissue of the model, once, leaving at least one other
    tissue; else an :class:`InputError` naming the tissue (closest spelling suggested)."""
    targets = list(targets)
    for t in targets:
        if t not in tissues:
            hint = did_you_mean(t, tissues, cutoff=0.5)
            raise InputError(
                None,
                "target_tissues",
                f"{t!r} is not a tissue of the model{hint}; tissues: {', '.join(tissues)}",
            )
    if len(set(targets)) != len(targets):
        raise InputError(None, "target_tissues", f"a tissue is named twice: {targets}")
    if targets and len(set(targets)) == len(tissues):
        raise InputError(
            None, "target_tissues", "every tissue is a target: leave at least one to compare"
        )
    return targets


# ---------------------------------------------------------------------------- bundles


def check_bundles(bundles: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The manifests of ``bundles``, checked to agree on the units of their outputs
    (:func:`check_units`), the tissues (same order) and the DNA window, which an ensemble
    (and a design's ``--model`` with its ``--holdout-model``) needs; one line naming the
    bundle that differs."""
    from isoflow.bundle import DIGESTS, MANIFEST, WEIGHTS, check_digests, read_manifest

    if not bundles:
        raise InputError(None, "models", "no model bundle given (results/models/RUN)")
    seen: dict[Path, Path] = {}
    weights: dict[str, Path] = {}
    manifests = []
    for path in bundles:
        resolved = Path(path).resolve()
        if resolved in seen:
            raise InputError(path, None, "bundle given twice: each model counts once")
        seen[resolved] = Path(path)
        manifest = read_manifest(path)
        if DIGESTS not in manifest:  # refused by load_model: say so before any work
            check_digests(path, manifest)
        # a copied bundle is the same model: it would count twice in the mean and shrink sd
        digest = (manifest.get(DIGESTS) or {}).get(WEIGHTS) or (
            manifest.get("checkpoint") or {}
        ).get("sha256")
        if digest and digest in weights:
            raise InputError(
                path,
                None,
                f"the same weights as {weights[digest]} (model.pt / checkpoint sha256 "
                f"{digest[:12]}...): a copy counts once; give each model once",
            )
        if digest:
            weights[digest] = Path(path)
        manifests.append(manifest)
    first, first_path = manifests[0], Path(bundles[0])
    if len(manifests) > 1:  # before the tissues: fine-tuned columns may bear tissues' names
        check_units(bundles, manifests)
    for path, manifest in zip(bundles[1:], manifests[1:], strict=True):
        where = Path(path) / MANIFEST
        if list(manifest["tissues"]) != list(first["tissues"]):
            raise InputError(
                where,
                "tissues",
                f"{_tissue_difference(manifest['tissues'], first['tissues'])} than "
                f"{first_path}: an ensemble's bundles must predict the same tissues in the "
                "same order (models of one dataset)",
            )
        if int(manifest["dna"]["window"]) != int(first["dna"]["window"]):
            raise InputError(
                where,
                "dna.window",
                f"{manifest['dna']['window']} bp, {first_path} reads "
                f"{first['dna']['window']} bp: an ensemble's bundles must read one DNA window",
            )
    differences = ensemble_differences(bundles, manifests)
    if differences:
        log.warning(
            "the %d bundles are not the seeds of one experiment: they differ in %s; their "
            "mean mixes different models and their sd is no spread over seeds (give one "
            "experiment's seeds for that)",
            len(bundles),
            "; ".join(differences),
        )
    return manifests


def check_units(
    bundles: Sequence[str | os.PathLike], manifests: Sequence[Mapping[str, Any]]
) -> None:
    """Bundles averaged together must predict in one unit: log(1 + TPM) (trained on GTEx),
    or the units of one measurement table (fine-tuned on the table of one
    ``finetune.source.sha256``: the seeds of a fine-tuning). A fine-tuned bundle with
    columns named as tissues, or fine-tuned on another table, is one line naming both
    bundles; so is a fine-tuned bundle whose manifest records no table."""
    from isoflow.bundle import GTEX_UNITS, MANIFEST

    units = []
    for path, manifest in zip(bundles, manifests, strict=True):
        record = manifest.get("finetune")
        if record is None:
            units.append((GTEX_UNITS, f"predicts {GTEX_UNITS} (not fine-tuned)"))
            continue
        source = record.get("source") or {}
        if not source.get("sha256"):
            raise InputError(
                Path(path) / MANIFEST,
                "finetune.source",
                "no measurement table recorded (sha256), so its outputs' units are unknown "
                "and it cannot be averaged with other bundles: score it alone, or fine-tune "
                "it again (isoflow finetune records the table)",
            )
        units.append(
            (
                source["sha256"],
                f"predicts the units of {source.get('table')} (sha256 {source['sha256'][:12]}), "
                "the table it was fine-tuned on",
            )
        )
    for path, (unit, said) in zip(bundles[1:], units[1:], strict=True):
        if unit != units[0][0]:
            raise InputError(
                Path(path) / MANIFEST,
                "finetune.source" if unit != GTEX_UNITS else None,
                f"{said}, but {bundles[0]} {units[0][1]}: bundles used together are averaged "
                "and compared in one unit; give bundles fine-tuned on one table, or none "
                "fine-tuned",
            )


def ensemble_differences(
    bundles: Sequence[str | os.PathLike], manifests: Sequence[Mapping[str, Any]]
) -> list[str]:
    """What makes ``bundles`` other than seeds of one experiment: each experiment setting
    but the seed (aggregator, modalities, DNA encoder, fraction...), the dataset (its
    sha256) and, for fine-tuned bundles, each fine-tuning setting but the seed (mode,
    ``finetune_last``, lr...: ``finetune.<key>``) on which they differ, as ``key: value
    (bundles) / value (bundles)``."""

    def shown(value: Any) -> str:
        if isinstance(value, list | tuple):
            return "+".join(map(str, value))
        return str(value)

    settings = [
        {
            **{k: shown(v) for k, v in (m.get("experiment") or {}).items() if k != "seed"},
            "dataset": shown((m.get("dataset") or {}).get("sha256", "unrecorded"))[:12],
            **{
                f"finetune.{k}": shown(v)
                for k, v in ((m.get("finetune") or {}).get("settings") or {}).items()
                if k != "seed"
            },
        }
        for m in manifests
    ]
    out = []
    for key in dict.fromkeys(k for one in settings for k in one):
        groups: dict[str, list[str]] = {}
        for path, one in zip(bundles, settings, strict=True):
            groups.setdefault(one.get(key, "unset"), []).append(str(path))
        if len(groups) > 1:
            out.append(
                f"{key}: " + " / ".join(f"{v} ({', '.join(paths)})" for v, paths in groups.items())
            )
    return out


def read_cut(manifest: Mapping[str, Any], modality: str) -> tuple[int | None, str]:
    """What a bundle's encoder of ``modality`` (``rna``, ``protein``) reads of a longer
    sequence, ``(letters, truncate mode)``: its family's ``raw_cut`` of the spec the manifest
    records (cached or raw: the cache and the loader cut alike), else ``rna.max_nt`` /
    ``rna.truncate`` or ``protein.max_aa`` (N-terminal)."""
    entry = (manifest.get("encoders") or {}).get(modality)
    if entry and entry.get("spec") is not None:
        from isoflow.model.encoders import spec_raw_cut

        return spec_raw_cut(entry["name"], entry["spec"])
    if modality == "rna":
        return int(manifest["rna"]["max_nt"]), str(manifest["rna"]["truncate"])
    return int(manifest["protein"]["max_aa"]), "keep_5prime"


def cut_warnings(cid: str, placed: Any, manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    """One warning per modality and cut when the RNA or protein of ``placed`` (a construct's
    model inputs) is longer than what the encoder of some bundles reads (:func:`read_cut`):
    constructs that differ only past the cut get the same prediction from those bundles."""
    out = []
    for modality, name, unit in (("rna", "RNA", "nt"), ("protein", "protein", "aa")):
        seq = getattr(placed, modality, None) or ""
        cut: dict[tuple[int, str], list[str]] = {}
        for manifest in manifests:
            if modality not in manifest["modalities"]:
                continue
            letters, mode = read_cut(manifest, modality)
            if letters is not None and len(seq) > letters:
                cut.setdefault((letters, mode), []).append(str(manifest["run"]))
        for (letters, mode), runs in cut.items():
            end = {"rna": ("5'", "3'"), "protein": ("N-terminal", "C-terminal")}[modality]
            kept = end[0] if mode == "keep_5prime" else end[1]
            if len(runs) == len(manifests):
                who = "every bundle reads" if len(runs) > 1 else f"bundle {runs[0]!r} reads"
            else:
                who = f"bundle{'s' * (len(runs) > 1)} {', '.join(map(repr, runs))} read"
                who += "s" * (len(runs) == 1)
            out.append(
                f"construct {cid!r}: its {name} is {len(seq):,} {unit}; {who} only its "
                f"{kept} {letters:,} {unit} (the {name} encoder's cut), so a change outside "
                "them does not change the score"
            )
    return out


def _done(action: str) -> str:
    """``score`` -> ``scored``, ``fine-tune`` -> ``fine-tuned``."""
    return action + ("d" if action.endswith("e") else "ed")


def _placed_with(key: str, shown: str) -> str:
    """A placement option as :func:`isoflow.finetune.placement_differences` shows it
    (``on``/``off``, a number, a letter, ``path (sha256 ...)`` or ``none``), said as the
    commands' flags take it: ``with --polya-in-rna``, ``without --polya-in-rna`` (a switch
    takes no value), ``with --polya-tail 7``, ``with --fill N``, ``without --background``."""
    flag = {**CONSTRUCT_FLAGS, "background": "--background"}[key]
    if key == "polya_in_rna":
        return f"with {flag}" if shown == "on" else f"without {flag}"
    if key == "background" and shown == "none":
        return f"without {flag}"
    return f"with {flag} {shown}"


def check_finetuned_placement(
    bundles: Sequence[str | os.PathLike],
    manifests: Sequence[Mapping[str, Any]],
    *,
    fill: str = "N",
    background: str | None = None,
    polya_in_rna: bool = False,
    polya_tail: int = 0,
    background_path: str | os.PathLike | None = None,
    action: str = "score",
) -> None:
    """A bundle from ``isoflow finetune`` learned from constructs placed one way (its
    manifest's ``finetune.construct_options``); scoring constructs placed another way (an
    RNA with or without the polyA part or tail, other DNA around the cassette:
    :func:`isoflow.finetune.placement_differences`) would predict from inputs it never
    saw, so it is refused before any model loads, as bundles that disagree on tissues or window
    are: one line naming the manifest, the option, both values and the fix. A fine-tuned
    bundle without the record (fine-tuned before it was kept) is a warning. ``action``:
    what is done with the bundle, for the message (``score``, ``explain``, ``design``;
    ``fine-tune``: ``isoflow finetune`` started from a fine-tuned bundle), whose fix names
    the placement as the flags take it (:func:`_placed_with`)."""
    from isoflow.bundle import MANIFEST
    from isoflow.finetune import placement_differences

    for path, manifest in zip(bundles, manifests, strict=True):
        record = manifest.get("finetune")
        if not isinstance(record, dict):
            continue
        options = record.get("construct_options")
        if not isinstance(options, dict):
            log.warning(
                "%s: a fine-tuned bundle that does not record how its constructs were placed "
                "(fine-tuned before isoflow kept it): %s with fill %s, background %s, "
                "polya_in_rna %s, polya_tail %d; if it was fine-tuned on other inputs, fine-tune "
                "it again to have them checked",
                Path(path) / MANIFEST,
                _done(action),
                fill,
                background_path or ("given" if background is not None else "none"),
                "on" if polya_in_rna else "off",
                polya_tail,
            )
            continue
        differences = placement_differences(
            options,
            fill=fill,
            background=background,
            polya_in_rna=polya_in_rna,
            polya_tail=polya_tail,
            background_path=background_path,
        )
        if differences:
            key, then, now = differences[0]
            what = "RNA" if key.startswith("polya") else "DNA around the cassette"
            fix = ", ".join(_placed_with(k, t) for k, t, _ in differences)
            if action == "fine-tune":
                base = (record.get("base") or {}).get("path")
                other = f"fine-tune its base bundle ({base or 'finetune.base.path'}) instead"
            else:
                other = f"fine-tune it on constructs placed as you {action} them"
            raise InputError(
                Path(path) / MANIFEST,
                f"finetune.construct_options.{key}",
                f"fine-tuned {_placed_with(key, then)}, {_done(action)} here "
                f"{_placed_with(key, now)}: the model would read another {what} than it "
                f"learned from; {action} {fix} (as fine-tuned), or {other}",
            )


def _tissue_difference(these: Sequence[str], those: Sequence[str]) -> str:
    extra, missing = sorted(set(these) - set(those)), sorted(set(those) - set(these))
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"tissues {extra}")
        if missing:
            parts.append(f"no {missing}")
        return f"other tissues ({'; '.join(parts)})"
    return "the tissues in another order"


# ---------------------------------------------------------------------------- warnings


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.construct_ids: list[str | None] = []  # the construct each one is filed under

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))
        self.construct_ids.append(getattr(record, CONSTRUCT_FIELD, None))


@contextmanager
def _collected(logger_name: str = "isoflow.constructs"):
    """Warnings logged by ``logger_name`` inside the block (still logged as usual)."""
    handler = _Collect()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def read_with_warnings(
    path: str | os.PathLike, **options: Any
) -> tuple[list[Construct], dict[str, list[str]]]:
    """:func:`isoflow.constructs.read_constructs`, and each construct's warnings (those the
    reader files under a construct, :func:`isoflow.constructs.warn_construct`: the AAV size,
    a GenBank record's notes); warnings about the file (a column kept as extra) are logged
    only."""
    with _collected() as collected:
        constructs = read_constructs(path, **options)
    ids = {c.id for c in constructs}
    warnings: dict[str, list[str]] = {}
    for cid, message in zip(collected.construct_ids, collected.messages, strict=True):
        if cid in ids:
            warnings.setdefault(cid, []).append(message)
    return constructs, warnings


# ---------------------------------------------------------------------------- scoring


def score_constructs(
    constructs: Sequence[Construct],
    bundles: Sequence[str | os.PathLike],
    *,
    target_tissues: Iterable[str] | None = None,
    batch_size: int | None = None,
    fill: str = "N",
    background: str | None = None,
    polya_in_rna: bool = False,
    polya_tail: int = 0,
    device: str | None = None,
    warnings: Mapping[str, list[str]] | None = None,
    progress_every_s: float | None = None,
    background_path: str | os.PathLike | None = None,
) -> Scores:
    """Predict every construct with every bundle (model bundles, ``results/models/{run}/``).

    The bundles must agree on tissues and DNA window (:func:`check_bundles`); each construct
    is placed in that window once (``fill`` / ``background``, ``polya_in_rna``,
    ``polya_tail``: :func:`isoflow.constructs.construct_inputs`), and its cut-to-the-window
    warning joins ``warnings`` (e.g. from :func:`read_with_warnings`). Bundles are loaded one
    at a time on ``device`` (default CUDA when available) and predict in batches of
    ``batch_size`` (default each bundle's evaluation batch size); a progress line at most
    every ``progress_every_s`` s (``isoflow.progress``). ``target_tissues``: the tissues the
    specificity score is for (:func:`specificity`)."""
    from isoflow.bundle import load_model, output_units

    constructs = list(constructs)
    if not constructs:
        raise InputError(None, "constructs", "no constructs to score")
    manifests = check_bundles(bundles)
    tissues = list(manifests[0]["tissues"])
    targets = check_targets(target_tissues or [], tissues)
    window = int(manifests[0]["dna"]["window"])
    check_placement(
        window,
        fill=fill,
        background=background,
        polya_tail=polya_tail,
        background_path=background_path,
    )
    check_finetuned_placement(
        bundles,
        manifests,
        fill=fill,
        background=background,
        polya_in_rna=polya_in_rna,
        polya_tail=polya_tail,
        background_path=background_path,
    )
    notes = {cid: list(msgs) for cid, msgs in (warnings or {}).items()}
    reads_dna = any("dna" in m["modalities"] for m in manifests)  # else no window warning
    inputs = []
    for c in constructs:
        with _collected() as collected:
            try:
                placed = construct_inputs(
                    c,
                    window=window,
                    fill=fill,
                    background=background,
                    polya_in_rna=polya_in_rna,
                    polya_tail=polya_tail,
                    reads_dna=reads_dna,
                )
            except ValueError as err:  # fill, background or polya_tail the window cannot take
                raise InputError(None, c.id, str(err)) from None
        inputs.append(placed)
        messages = collected.messages
        for message in cut_warnings(c.id, placed, manifests):
            log.warning("%s", message)
            messages.append(message)
        if messages:
            notes.setdefault(c.id, []).extend(messages)
    n = len(inputs)
    progress = Progress(
        "score", total=n * len(bundles), unit="predictions", every_s=progress_every_s, logger=log
    )
    predictions = np.zeros((len(bundles), n, len(tissues)), dtype=np.float32)
    models = []
    for k, path in enumerate(bundles):
        model = load_model(path, device=device)
        log.info("bundle %d/%d: %r", k + 1, len(bundles), model)
        done = [0]

        def step(now: int, _total: int, done=done) -> None:
            progress.update(now - done[0])
            done[0] = now

        predictions[k] = model.predict(inputs, batch_size=batch_size, progress=step)
        models.append({"run": str(manifests[k]["run"]), "path": str(path)})
        del model
    progress.finish()
    return Scores(
        constructs=[c.id for c in constructs],
        tissues=tissues,
        models=models,
        predictions=predictions,
        targets=targets,
        warnings={c.id: notes[c.id] for c in constructs if notes.get(c.id)},
        units=output_units(manifests[0]),
    )


# ---------------------------------------------------------------------------- outputs


def output_paths(
    prefix: str | os.PathLike, *, specificity: bool, figure_format: str = "svg"
) -> dict[str, str]:
    """The files ``isoflow score --out PREFIX`` writes (keys as :func:`write_scores`)."""
    if figure_format not in FIGURE_FORMATS:
        raise ValueError(f"figure format is one of {FIGURE_FORMATS}, not {figure_format!r}")
    prefix = str(prefix)
    paths = {
        "tsv": f"{prefix}.scores.tsv",
        "parquet": f"{prefix}.scores.parquet",
        "figure": f"{prefix}.heatmap.{figure_format}",
    }
    if specificity:
        paths["specificity"] = f"{prefix}.specificity.tsv"
    return paths


def write_scores(
    scores: Scores,
    paths: Mapping[str, str | os.PathLike],
    demo: bool = False,
    possible: Iterable[str | os.PathLike] = (),
):
    """Write the outputs named in ``paths`` (each optional), all or none
    (:func:`isoflow.files.output_set`; then the files of ``possible``, every file the
    command may write there, that this run does not write are removed): ``tsv`` and
    ``parquet`` (the long table; the Parquet carries ``isoflow.models``, ``isoflow.tissues``
    ``isoflow.target_tissues`` and ``isoflow.units`` as JSON schema metadata),
    ``specificity`` (TSV; needs target tissues), ``figure`` (:func:`plot_scores`, SVG or
    PNG by suffix; ``demo`` stamps the demo mark) and ``html`` (the report's table:
    :func:`report_table`)."""
    if "specificity" in paths and scores.specificity is None:
        raise ValueError("a specificity table needs target tissues")
    with output_set(paths, possible=possible, what="score") as tmp:
        _write_scores(scores, tmp, demo)


def _write_scores(scores: Scores, paths: Mapping[str, str | os.PathLike], demo: bool) -> None:
    table = scores.table
    if "tsv" in paths:
        with atomic_path(paths["tsv"]) as tmp:
            table.to_csv(tmp, sep="\t", index=False, na_rep="", float_format="%.6g")
    if "parquet" in paths:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pa.Table.from_pandas(table, preserve_index=False)
        meta = dict(arrow.schema.metadata or {})
        meta.update(
            {
                b"isoflow.models": json.dumps(scores.models).encode(),
                b"isoflow.tissues": json.dumps(scores.tissues).encode(),
                b"isoflow.target_tissues": json.dumps(scores.targets).encode(),
                b"isoflow.units": json.dumps(scores.units).encode(),
            }
        )
        with atomic_path(paths["parquet"]) as tmp:
            pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    if "specificity" in paths:
        with atomic_path(paths["specificity"]) as tmp:
            scores.specificity.to_csv(tmp, sep="\t", index=False, na_rep="", float_format="%.6g")
    if "figure" in paths:
        plot_scores(scores, paths["figure"], demo=demo)
    if "html" in paths:
        from isoflow.report.tables import write_table

        title, note, frame = report_table(scores)
        write_table(frame, paths["html"], title, note)


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.2f}" if np.isnan(sd) else f"{mean:.2f} ± {sd:.2f}"


def report_table(scores: Scores) -> tuple[str, str, pd.DataFrame]:
    """The report's table: one row per construct (in specificity rank order with targets),
    its specificity and each tissue's mean ± sd; returns ``(title, note, frame)``."""
    mean, sd = scores.mean, scores.sd
    frame = pd.DataFrame({"construct": scores.constructs})
    spec = scores.specificity
    if spec is not None:
        frame["rank"] = spec["rank"].to_numpy()
        frame["specificity"] = [
            _pm(m, s) for m, s in zip(spec["specificity"], spec["specificity_sd"], strict=True)
        ]
    for j, tissue in enumerate(scores.tissues):
        label = f"{tissue} (target)" if tissue in scores.targets else tissue
        frame[label] = [_pm(mean[i, j], sd[i, j]) for i in range(len(scores.constructs))]
    frame["warnings"] = [len(scores.warnings.get(c, [])) for c in scores.constructs]
    if spec is not None:
        frame = frame.sort_values("rank", kind="stable").reset_index(drop=True)
    runs = ", ".join(m["run"] for m in scores.models)
    note = (
        f"Predictions in {scores.units}, mean ± sd over {scores.n_models} model(s): {runs}. "
        + (
            f"Specificity = mean over the target tissues ({', '.join(scores.targets)}) minus "
            "the mean over the other tissues, per model, then mean ± sd over the models. "
            if scores.targets
            else ""
        )
        + "warnings: how many warnings a construct has (scores.tsv's warnings column, e.g. "
        "a cassette cut to the DNA window)."
    )
    return "Construct scores", note, frame


def plot_scores(scores: Scores, path: str | os.PathLike, demo: bool = False) -> None:
    """Heat map of the constructs (rows) x tissues (columns): the ensemble mean, each cell
    annotated ``mean ± sd`` (up to ``ANNOTATE_MAX_CELLS``); beside it the sd over the
    models (with at least two), and the specificity with its sd (with target tissues).
    Target tissues are starred."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from isoflow.report.figures import FONT_SIZE, RUN_COLOR, save_figure

    mean, sd = scores.mean, scores.sd
    n_c, n_t = mean.shape
    has_sd = scores.n_models > 1
    spec = scores.specificity
    cell_w, cell_h = (0.95, 0.5) if has_sd else (0.7, 0.4)
    widths = [max(3.0, cell_w * n_t)]
    if has_sd:
        widths.append(max(2.0, 0.35 * n_t))
    if spec is not None:
        widths.append(2.2)
    height = max(2.5, cell_h * n_c + 2.8)
    fig = Figure(figsize=(sum(widths) + 3.0, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(widths), width_ratios=widths, squeeze=False)[0]
    labels = [f"{t} *" if t in scores.targets else t for t in scores.tissues]

    def grid(ax, values, cmap, title, colorbar):
        image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
        # parse_math=False on every text showing a user's string (construct ids, tissues,
        # run names): a pair of `$` was read as mathtext, drawn as math or a ValueError
        ax.set_xticks(range(n_t), labels, rotation=90, fontsize=FONT_SIZE - 1, parse_math=False)
        ax.set_title(title, fontsize=FONT_SIZE + 1)
        cbar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.01)
        cbar.set_label(colorbar, fontsize=FONT_SIZE - 1)
        return image

    ax = axes[0]
    image = grid(ax, mean, "viridis", f"predicted, {scores.units}", "mean over models")
    ax.set_yticks(range(n_c), scores.constructs, fontsize=FONT_SIZE - 1, parse_math=False)
    if n_c * n_t <= ANNOTATE_MAX_CELLS:
        low, high = image.get_clim()
        for i in range(n_c):
            for j in range(n_t):
                text = _pm(mean[i, j], sd[i, j]).replace(" ± ", "\n±")
                bright = (mean[i, j] - low) / ((high - low) or 1) > 0.6
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=FONT_SIZE - 4,
                    color="black" if bright else "white",
                )
    at = 1
    if has_sd:
        ax = axes[at]
        grid(ax, sd, "Greys", "sd over models", f"sd (n = {scores.n_models})")
        ax.set_yticks(range(n_c), [""] * n_c)
        at += 1
    if spec is not None:
        ax = axes[at]
        values = spec["specificity"].to_numpy()
        errors = spec["specificity_sd"].to_numpy()
        ax.barh(
            range(n_c),
            values,
            xerr=None if not has_sd else errors,
            color=RUN_COLOR,
            capsize=3,
        )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_ylim(n_c - 0.5, -0.5)
        ax.set_yticks(range(n_c), [""] * n_c)
        ax.set_xlabel(f"target - other\n{scores.units}", fontsize=FONT_SIZE - 1)
        ax.set_title("specificity", fontsize=FONT_SIZE + 1)
        ax.spines[["top", "right"]].set_visible(False)
    runs = scores.models[0]["run"] if scores.n_models == 1 else f"{scores.n_models} models"
    target_text = f"; * target: {', '.join(scores.targets)}" if scores.targets else ""
    fig.suptitle(
        f"Constructs scored by {runs}{target_text}", fontsize=FONT_SIZE + 1, parse_math=False
    )
    save_figure(fig, path, demo=demo)


# ---------------------------------------------------------------------------- the command


# config keys in messages, shown as this command's flags (isoflow.commands)
FLAGS = {"target_tissues": "--target-tissue", **CONSTRUCT_FLAGS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        *MODEL_FLAGS,
        action="append",
        required=True,
        metavar="BUNDLE",
        help="a model bundle folder (results/models/RUN); repeat for an ensemble (mean and "
        "sd over the bundles; they must share tissues and DNA window)",
    )
    parser.add_argument(
        *CONSTRUCTS_FLAGS,
        required=True,
        metavar="FILE",
        help="constructs: a TSV (id promoter utr5 cds utr3 [polya upstream downstream]), "
        "a GenBank file or a folder of them (its files named .gb, .gbk, .genbank or starting "
        "with LOCUS; any other file skipped with a warning) (docs/constructs.md)",
    )
    parser.add_argument(
        *OUT_FLAGS,
        required=True,
        metavar="PREFIX",
        help="output prefix (not a file): PREFIX.scores.tsv, PREFIX.scores.parquet, "
        "PREFIX.heatmap.svg, and PREFIX.specificity.tsv with --target-tissue" + REPLACED,
    )
    parser.add_argument(
        "--target-tissue",
        action="append",
        default=[],
        metavar="TISSUE",
        help="a tissue the specificity score is for (repeat for several): mean over the "
        "targets minus mean over the other tissues, in the bundles' units (log(1 + TPM); "
        "a fine-tuned bundle's: its measurement table's)",
    )
    add_construct_arguments(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, metavar="N", help=BATCH_SIZE_HELP
    )
    parser.add_argument("--device", default=None, help=DEVICE_HELP)
    parser.add_argument(
        "--figure-format",
        choices=FIGURE_FORMATS,
        default="svg",
        help="the heatmap's file format (default: %(default)s)",
    )


def score_file(
    constructs_path: str | os.PathLike,
    bundles: Sequence[str | os.PathLike],
    paths: Mapping[str, str | os.PathLike],
    *,
    target_tissues: Iterable[str] | None = None,
    background: str | os.PathLike | None = None,
    fill: str = "N",
    polya_in_rna: bool = False,
    polya_tail: int = 0,
    allow_noncanonical_cds: bool = False,
    aav: bool = False,
    aav_limit: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    demo: bool = False,
    possible: Iterable[str | os.PathLike] = (),
) -> Scores:
    """Read the constructs (:func:`read_with_warnings`) and the background FASTA, score them
    (:func:`score_constructs`) and write ``paths`` (:func:`write_scores`, all or none;
    ``possible``: the command's other files there, removed): what ``isoflow score`` and
    rule ``score_constructs`` run."""
    options: dict[str, Any] = {"allow_noncanonical_cds": allow_noncanonical_cds, "aav": aav}
    if aav_limit is not None:
        options["aav_limit"] = aav_limit
    constructs, warnings = read_with_warnings(constructs_path, **options)
    log.info("%d constructs from %s", len(constructs), constructs_path)
    scores = score_constructs(
        constructs,
        bundles,
        target_tissues=target_tissues,
        batch_size=batch_size,
        fill=fill,
        background=read_background(background) if background else None,
        polya_in_rna=polya_in_rna,
        polya_tail=polya_tail,
        device=device,
        warnings=warnings,
        background_path=background,
    )
    write_scores(scores, paths, demo=demo, possible=possible)
    return scores


def run(args: argparse.Namespace) -> int:
    if aav_limit_ignored(args.constructs, aav=args.aav, aav_limit=args.aav_limit):
        # it was silently ignored: a table's cassettes are checked only with --aav
        raise InputError(
            "--aav-limit",
            None,
            f"needs --aav with a construct table ({args.constructs}): a table's cassettes carry "
            "no ITR annotation, so only --aav checks them against the limit (a GenBank record "
            "with two ITRs is checked without it); add --aav, or drop --aav-limit",
        )
    targets = list(args.target_tissue)
    check_prefix(args.out)
    paths = output_paths(args.out, specificity=bool(targets), figure_format=args.figure_format)
    # every file score may write under the prefix: this run's outputs, and the others,
    # removed when its outputs are put in place (a stale .specificity.tsv or other-format
    # figure)
    possible = [
        path
        for fmt in FIGURE_FORMATS
        for path in output_paths(args.out, specificity=True, figure_format=fmt).values()
    ]
    check_output_files(  # before any work: atomic_path would replace a folder at a path
        dict.fromkeys(possible), inputs=[args.constructs, args.background, *args.model]
    )
    score_file(
        args.constructs,
        args.model,
        paths,
        target_tissues=targets,
        background=args.background,
        fill=args.fill,
        polya_in_rna=args.polya_in_rna,
        polya_tail=args.polya_tail,
        allow_noncanonical_cds=args.allow_noncanonical_cds,
        aav=args.aav,
        aav_limit=args.aav_limit,
        batch_size=args.batch_size,
        device=args.device,
        possible=dict.fromkeys(possible),
    )
    for path in paths.values():
        print(path)
    return 0
