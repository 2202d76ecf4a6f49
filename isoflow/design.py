"""Design expression cassettes: ``isoflow design`` and rule ``design``.

A starting cassette (:mod:`isoflow.constructs`) is optimised in its editable parts
(``utr5``, ``utr3``, ``promoter``; ``cds`` by synonymous codon moves only; everything else
and any ``fixed`` positions stay as they are) for an objective over the model's tissues,
with one bundle or an ensemble, under the synthesis and AAV constraints of
:mod:`isoflow.constraints`, checked on every candidate and every output.

Objective (per bundle, in its units: log(1 + TPM), a fine-tuned bundle's table's): the
mean over the target tissues minus the max (or the mean, ``others: mean``) over the other
tissues; over the bundles, their mean minus ``k`` times their sd (ddof 1), so a design
cannot win by exploiting one model's noise.

Optimiser: an elitist evolutionary search (docs/constructs.md "Design" says why this one and
not ledidi; bench/bench_design.py measures both). Each generation makes ``population``
children: a crossover of two tournament-picked parents (cut between editable sites, so a
codon is never split) with probability ``crossover``, then 1..``max_mutations`` moves (a base
changed, or a codon swapped for a synonymous one); a child that breaks a constraint is
repaired (a move inside one of the violation's spans, GC moves towards the bound) or, after
``repair_steps`` moves, rejected before any model sees it. Parents and children compete; the
best ``population`` distinct cassettes survive. It stops when the budget of model calls
(one cassette predicted by one bundle) is spent. Deterministic from ``seed``.

Held-out grading: the designs are maxima of the optimising bundles' (noisy) score, so their
own gain overstates what another model would see (a review measured ~35% of a one-bundle
design's gain as selection). ``holdout`` bundles (``--holdout-model``,
``design.holdout_runs``) are never optimised on; they score the start and the designs after
the search, and their gain stands in its own columns of the profiles and the summary.
Without one, the summary says the gain is self-graded.

Importing this module loads no torch; models load in :class:`Scorer`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from isoflow.alphabet import standard_code, translate_cds
from isoflow.commands import (
    CONSTRUCTS_FLAGS,
    DEVICE_HELP,
    MODEL_FLAGS,
    OUT_FLAGS,
    REPLACED,
    add_placement_arguments,
    nonnegative_float,
    nonnegative_int,
    positive_int,
)
from isoflow.constraints import (
    FLANKS,
    Check,
    Constraints,
    PolyA,
    check_all,
    check_constraints,
    check_feasible,
    failed,
    own_polya,
)
from isoflow.constructs import Construct, construct_inputs, read_background, read_constructs
from isoflow.errors import InputError
from isoflow.files import atomic_path, check_output_files, check_prefix, output_set
from isoflow.progress import Progress

log = logging.getLogger("isoflow.design")

HELP = (
    "Design an expression cassette: optimise its editable parts (5'UTR, 3'UTR, promoter; "
    "CDS by synonymous codons) for tissue-specific expression with one or more model "
    "bundles, under synthesis and AAV constraints checked on every candidate"
)
EDITABLE_PARTS = ("promoter", "utr5", "cds", "utr3")
OTHERS = ("max", "mean")
BASES = "ACGT"
_SYNONYMS: dict[str, list[str]] = {}
for _codon, _aa in standard_code().items():
    _SYNONYMS.setdefault(_aa, []).append(_codon)
SYNONYMOUS = {c: [s for s in _SYNONYMS[aa] if s != c] for c, aa in standard_code().items()}
OUTPUT_KEYS = (
    "fasta",
    "genbank",
    "tsv",
    "profiles",
    "profiles_figure",
    "constraints",
    "trajectory",
    "trajectory_figure",
)


# ---------------------------------------------------------------------------- objective


@dataclass(frozen=True)
class Objective:
    """Per bundle: mean over ``targets`` minus the max (``others="max"``) or mean over the
    other tissues; over bundles: mean - ``k`` x sd (ddof 1; 0 with one bundle)."""

    targets: tuple[str, ...]
    others: str = "max"
    k: float = 1.0

    def per_model(self, predictions: np.ndarray, tissues: Sequence[str]) -> np.ndarray:
        """``(M, n)`` from ``(M, n, T)`` predictions."""
        is_target = np.array([t in self.targets for t in tissues])
        values = predictions.astype(np.float64)
        rest = values[..., ~is_target]
        other = rest.max(axis=-1) if self.others == "max" else rest.mean(axis=-1)
        return values[..., is_target].mean(axis=-1) - other

    def score(self, predictions: np.ndarray, tissues: Sequence[str]) -> np.ndarray:
        """``(n,)``: the ensemble's objective."""
        s = self.per_model(predictions, tissues)
        sd = s.std(axis=0, ddof=1) if s.shape[0] > 1 else np.zeros(s.shape[1])
        return s.mean(axis=0) - self.k * sd


def check_objective(objective: Objective, tissues: Sequence[str]) -> None:
    from isoflow.score import check_targets

    if not objective.targets:
        raise InputError(None, "design.target_tissues", "name at least one target tissue")
    check_targets(objective.targets, tissues)
    if objective.others not in OTHERS:
        raise InputError(None, "design.others", f"one of {OTHERS}, not {objective.others!r}")


# ---------------------------------------------------------------------------- layout


@dataclass
class Layout:
    """The starting cassette as one byte array, its parts' spans, what may change: ``sites``
    (cassette offsets a move picks from: each editable non-CDS base, and the first base of
    each editable CDS codon), ``is_codon`` per site; ``polya``: the start's own polyA signal
    (fixed: never edited, never counted as cryptic); ``itrs``: it runs between annotated ITRs
    (flanks that hold AAV2's ITR motif are found by :func:`check_all` itself)."""

    reference: dict[str, str]
    spans: dict[str, tuple[int, int]]
    fixed: np.ndarray
    sites: np.ndarray
    is_codon: np.ndarray
    polya: PolyA | None = None
    itrs: bool = False

    def check(self, parts: Mapping[str, str], constraints: Constraints) -> list[Check]:
        """Every constraint on the candidate ``parts`` (:func:`check_all` with this start)."""
        return check_all(
            parts, self.reference, self.fixed, constraints, polya=self.polya, itrs=self.itrs
        )

    def feasible(self, constraints: Constraints) -> list[Check]:
        """:func:`check_feasible` on this start: the start's checks, or one line."""
        return check_feasible(
            self.reference, self.fixed, constraints, polya=self.polya, itrs=self.itrs
        )

    @property
    def start(self) -> np.ndarray:
        return np.frombuffer(
            "".join(self.reference.values()).encode("ascii"), dtype=np.uint8
        ).copy()

    def parts(self, seq: np.ndarray) -> dict[str, str]:
        text = seq.tobytes().decode("ascii")
        return {name: text[a:b] for name, (a, b) in self.spans.items()}


def parse_fixed(spec: str, spans: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """``part:A-B`` (1-based inclusive within the part) or ``A-B`` (cassette) -> ``[start,
    end)`` cassette offsets."""
    part, _, rng = spec.rpartition(":")
    try:
        a, _, b = rng.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise InputError(
            None, "design.fixed", f"{spec!r}: write part:A-B or A-B (1-based)"
        ) from None
    if part and part not in spans:
        hint = f" (part names are lower case: {part.lower()!r})" if part.lower() in spans else ""
        raise InputError(
            None,
            "design.fixed",
            f"{spec!r}: no part {part!r}{hint}; parts: {', '.join(spans)}",
        )
    lo, hi = spans[part] if part else (0, max(e for _, e in spans.values()))
    if first > last:
        raise InputError(
            None,
            "design.fixed",
            f"{spec!r}: {first} comes after {last}; write the first position first (A-B, A <= B)",
        )
    if not 1 <= first <= last <= hi - lo:
        raise InputError(
            None,
            "design.fixed",
            f"{spec!r}: positions must lie within 1-{hi - lo} of {part or 'the cassette'}",
        )
    return lo + first - 1, lo + last


def check_bases(construct: Construct) -> None:
    """Refuse a start with an ``N`` outside the flanks, one line naming the part and the
    first position: a design is synthesis-ready sequence, and an unknown base would reach
    it (kept where fixed, turned into an arbitrary base where edited), hide the motifs the
    constraints look for (an ``NTG`` upstream ATG, a restriction site, a polyA hexamer)
    and the protein (``NNN`` translates to X on both sides), and make the start the model
    grades every gain against one that is not the cassette. ``N`` in a flank (never
    edited) is a warning: the restriction sites there are not checked."""
    unknown = {n: s.count("N") for n, s in construct.parts.items() if "N" in s}
    inside = {n: k for n, k in unknown.items() if n not in FLANKS}
    if inside:
        name = next(iter(inside))
        counts = ", ".join(f"{k} in {n}" for n, k in inside.items())
        raise InputError(
            construct.source or None,
            construct.id,
            f"part {name}: N at position {construct.parts[name].index('N') + 1} ({counts}): "
            "a design is synthesis-ready sequence and cannot keep, guess or check through an "
            "unknown base; give the cassette's bases there",
        )
    for name, k in unknown.items():
        log.warning(
            "%s",
            InputError(
                construct.source or None,
                construct.id,
                f"{k} N in the {name} flank (never edited): restriction sites across them "
                "are not checked",
            ),
        )


def make_layout(
    construct: Construct,
    editable: Sequence[str],
    fixed: Sequence[str] = (),
    constraints: Constraints | None = None,
) -> Layout:
    """The start's layout: its editable sites, with the ``fixed`` positions and its own
    polyA signal (:func:`isoflow.constraints.own_polya`: the polya part, an annotated
    ``polya_site``, or the signal at the 3'UTR's end; ``constraints.polya_signals``) kept."""
    check_bases(construct)
    reference = dict(construct.parts)
    signals = (constraints or Constraints()).polya_signals
    polya = own_polya(reference, signals, construct.polya_site)
    spans = {k: tuple(v) for k, v in construct.spans.items()}
    editable = list(editable)
    for part in editable:
        if part not in EDITABLE_PARTS:
            raise InputError(
                None,
                "design.editable",
                f"{part!r} cannot be edited; editable parts: {', '.join(EDITABLE_PARTS)}",
            )
        if part not in reference:
            raise InputError(None, "design.editable", f"construct {construct.id!r} has no {part}")
    if not editable:
        raise InputError(None, "design.editable", "name at least one editable part")
    mask = np.ones(len(construct.cassette), dtype=bool)
    for part in editable:
        a, b = spans[part]
        mask[a:b] = False
    if "cds" in editable:  # the start and stop codons stay
        a, b = spans["cds"]
        mask[a : a + 3] = mask[b - 3 : b] = True
    for spec in fixed:
        a, b = parse_fixed(spec, spans)
        mask[a:b] = True
    for a, b in polya.spans:  # the cassette's own polyA signal is never edited
        mask[a:b] = True
    sites, is_codon = [], []
    cds = spans.get("cds")
    for i in np.flatnonzero(~mask):
        if cds and cds[0] <= i < cds[1]:
            if (i - cds[0]) % 3 == 0 and not mask[i : i + 3].any():
                sites.append(i)
                is_codon.append(True)
        else:
            sites.append(i)
            is_codon.append(False)
    if cds and "cds" in editable:  # a codon with a fixed base is fixed whole
        a, b = cds
        for c in range(a, b, 3):
            if mask[c : c + 3].any():
                mask[c : c + 3] = True
    if not sites:
        raise InputError(
            None, "design.fixed", "every editable position is fixed: nothing to design"
        )
    return Layout(
        reference,
        spans,
        mask,
        np.array(sites),
        np.array(is_codon, dtype=bool),
        polya,
        construct.itrs,
    )


# ---------------------------------------------------------------------------- moves


def _gc(codon: str) -> int:
    return sum(b in "GC" for b in codon)


def _move(
    seq: np.ndarray,
    layout: Layout,
    k: int,
    rng: np.random.Generator,
    bases: str = BASES,
    toward: int = 0,
) -> None:
    """Change site ``k`` of ``seq`` in place: a base to another (from ``bases``), a codon to
    a synonymous one (when it has one; ``toward`` +1 / -1: one with more / less GC, when
    there is one)."""
    at = int(layout.sites[k])
    if layout.is_codon[k]:
        codon = seq[at : at + 3].tobytes().decode()
        options = SYNONYMOUS.get(codon, [])
        if toward:
            options = [o for o in options if toward * (_gc(o) - _gc(codon)) > 0] or options
        if options:
            seq[at : at + 3] = np.frombuffer(options[rng.integers(len(options))].encode(), np.uint8)
        return
    current = chr(seq[at])
    options = [b for b in bases if b != current] or [b for b in BASES if b != current]
    seq[at] = ord(options[rng.integers(len(options))])


def _moves_gc(seq: np.ndarray, layout: Layout, k: int, toward: int) -> bool:
    """Whether site ``k`` can move the GC ``toward`` +1 (more) / -1 (less): a base of the
    other kind, a codon with a synonym holding more / less GC."""
    at = int(layout.sites[k])
    if layout.is_codon[k]:
        codon = seq[at : at + 3].tobytes().decode()
        return any(toward * (_gc(o) - _gc(codon)) > 0 for o in SYNONYMOUS.get(codon, []))
    return (chr(seq[at]) in "GC") == (toward < 0)


def mutate(seq: np.ndarray, layout: Layout, rng: np.random.Generator, n: int) -> np.ndarray:
    child = seq.copy()
    for k in rng.integers(len(layout.sites), size=n):
        _move(child, layout, int(k), rng)
    return child


def crossover(a: np.ndarray, b: np.ndarray, layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """``a`` up to a cut between two sites, ``b`` after it (fixed positions agree)."""
    cut = int(layout.sites[rng.integers(1, len(layout.sites))]) if len(layout.sites) > 1 else 0
    child = a.copy()
    child[cut:] = b[cut:]
    return child


def _sites_in(layout: Layout, spans) -> np.ndarray:
    ends = layout.sites + np.where(layout.is_codon, 3, 1)
    hit = np.zeros(len(layout.sites), dtype=bool)
    for a, b in spans:
        hit |= (layout.sites < b) & (ends > a)
    return np.flatnonzero(hit)


def repair(
    seq: np.ndarray, layout: Layout, constraints: Constraints, rng: np.random.Generator, steps: int
) -> tuple[np.ndarray | None, list[Check]]:
    """Moves inside the failing constraints' spans until every check passes (the fixed
    positions and the protein never fail: moves keep them); ``None`` after ``steps``."""
    seq = seq.copy()
    for _ in range(steps + 1):
        checks = layout.check(layout.parts(seq), constraints)
        bad = failed(checks)
        if not bad:
            return seq, checks
        check = bad[rng.integers(len(bad))]
        spans = check.violations[rng.integers(len(check.violations))]
        where = _sites_in(layout, spans)
        if not len(where):
            return None, checks
        bases, toward = BASES, 0
        if check.name in ("gc_overall", "gc_window"):
            a, b = spans[0]
            window = seq[a:b]
            gc = np.isin(window, (ord("G"), ord("C"))).mean()
            low = constraints.gc_min if check.name == "gc_overall" else constraints.gc_window_min
            toward = 1 if gc < low else -1
            bases = "GC" if toward > 0 else "AT"
            # only a base of the other kind, or a codon with a synonym of more (less) GC,
            # can move GC the right way
            useful = where[[_moves_gc(seq, layout, int(k), toward) for k in where]]
            where = useful if len(useful) else where
        _move(seq, layout, int(where[rng.integers(len(where))]), rng, bases, toward)
    return None, checks


# ---------------------------------------------------------------------------- scoring


def unread_sites(
    layout: Layout,
    tss: int,
    *,
    modalities: Sequence[str],
    window: int,
    rna_cut: tuple[int | None, str],
    polya_in_rna: bool = False,
) -> np.ndarray:
    """The editable sites (``layout.sites``; a codon site by any of its three bases) that no
    input of a model reading ``modalities`` holds, so no edit there can change its
    prediction: outside the DNA window (``window`` nt, the TSS at ``window // 2``, as
    :func:`~isoflow.constructs.construct_inputs` places it) and outside the RNA's cut
    (``rna_cut``: letters and truncate mode, what its encoder reads; the RNA starts at the
    ``tss``, 5'UTR + CDS + 3'UTR, then the polyA part with ``polya_in_rna``). The protein
    reads no edit: CDS moves are synonymous. An upper bound of what is read: an encoder that
    crops the DNA window further (NT) reads less."""
    n = len(layout.fixed)
    read = np.zeros(n, dtype=bool)
    if "dna" in modalities:
        first = tss - window // 2
        read[max(0, first) : max(0, min(n, first + window))] = True
    if "rna" in modalities:
        spans = layout.spans
        parts = ("utr5", "cds", "utr3") + (("polya",) if polya_in_rna else ())
        length = sum(b - a for name, (a, b) in spans.items() if name in parts)
        letters, mode = rna_cut
        a, b = 0, length
        if letters is not None and length > letters:
            a, b = (0, letters) if mode == "keep_5prime" else (length - letters, length)
        read[tss + a : tss + b] = True  # a polya_tail lies past the cassette's transcript
    sites = np.asarray(layout.sites, dtype=int)
    width = np.where(layout.is_codon, 3, 1)
    hit = np.array([read[i : i + w].any() for i, w in zip(sites, width, strict=True)], dtype=bool)
    return sites[~hit] if len(sites) else sites


def _where(sites: np.ndarray, layout: Layout) -> str:
    """Runs of the bases of these editable ``sites`` (a codon site: its three bases), as
    ``part a-b`` (1-based cassette positions)."""
    width = dict(zip(layout.sites.tolist(), np.where(layout.is_codon, 3, 1).tolist(), strict=True))
    bases = sorted({j for i in sites.tolist() for j in range(i, i + width[i])})
    runs: list[list[int]] = []
    for j in bases:
        if runs and j == runs[-1][1] + 1:
            runs[-1][1] = j
        else:
            runs.append([j, j])
    part = lambda j: next(n for n, (a, b) in layout.spans.items() if a <= j < b)  # noqa: E731
    return ", ".join(
        f"{part(x)} {x + 1}-{y + 1}" if y > x else f"{part(x)} {x + 1}" for x, y in runs
    )


class Scorer:
    """Predicts cassettes with every bundle; ``calls`` counts cassette x bundle predictions.
    Only the modalities an edit can change are re-encoded (the protein only when the CDS is
    editable; the start's embedding otherwise)."""

    def __init__(
        self,
        bundles: Sequence[str | os.PathLike],
        start: Construct,
        layout: Layout,
        *,
        placement: Mapping[str, Any] | None = None,
        device: str | None = None,
        batch_size: int | None = None,
    ):
        from isoflow.bundle import load_model
        from isoflow.score import check_bundles, read_cut

        manifests = check_bundles(bundles)
        self.tissues = list(manifests[0]["tissues"])
        self.window = int(manifests[0]["dna"]["window"])
        self.placement = dict(placement or {})
        self.start = start
        self.batch_size = batch_size
        self.models = [load_model(p, device=device) for p in bundles]
        self.runs = [str(m["run"]) for m in manifests]
        cds = "cds" in [p for p, (a, b) in layout.spans.items() if not layout.fixed[a:b].all()]
        self.changed = ("dna", "rna", "protein") if cds else ("dna", "rna")
        ref = self.inputs([dict(start.parts)])
        self.reference = [m.embed(ref) for m in self.models]
        self.calls = 0
        for run, manifest in zip(self.runs, manifests, strict=True):
            unread = unread_sites(
                layout,
                start.tss,
                modalities=tuple(manifest["modalities"]),
                window=self.window,
                rna_cut=read_cut(manifest, "rna"),
                polya_in_rna=bool(self.placement.get("polya_in_rna", False)),
            )
            if len(unread):
                log.warning(
                    "bundle %r: %d of %d editable sites lie outside every input it reads "
                    "(its DNA window, its RNA cut; the protein reads no synonymous edit), so "
                    "edits there cannot change its predictions and drift freely: %s "
                    "(1-based cassette positions); make them fixed (design.fixed) or use a "
                    "bundle that reads them",
                    run,
                    len(unread),
                    len(layout.sites),
                    _where(unread, layout),
                )

    def inputs(self, candidates: Sequence[Mapping[str, str]]) -> list:
        """The model inputs of each candidate, placed as the start (whose cut-to-the-window
        warning, the same for every candidate of its length, is logged once)."""
        out = []
        logger = logging.getLogger("isoflow.constructs")
        quiet = self.__dict__.get("reference") is not None
        level = logger.level
        if quiet:
            logger.setLevel(logging.ERROR)
        try:
            for i, parts in enumerate(candidates):
                c = Construct(f"{self.start.id}_{i}", parts, self.start.source)
                out.append(construct_inputs(c, window=self.window, **self.placement))
        except ValueError as err:
            raise InputError(None, self.start.id, str(err)) from None
        finally:
            logger.setLevel(level)
        return out

    def __call__(self, candidates: Sequence[Mapping[str, str]]) -> np.ndarray:
        """``(M, n, T)`` float32 predictions."""
        inputs = self.inputs(candidates)
        out = np.zeros((len(self.models), len(inputs), len(self.tissues)), dtype=np.float32)
        for k, model in enumerate(self.models):
            changed = [m for m in self.changed if m in model.modalities]
            emb = model.embed(inputs, changed, batch_size=self.batch_size) if changed else {}
            for m in model.modalities:
                if m not in emb:
                    emb[m] = [self.reference[k][m][0]] * len(inputs)
            out[k] = model.head(emb, batch_size=self.batch_size)
        self.calls += len(inputs) * len(self.models)
        return out


# ---------------------------------------------------------------------------- search


@dataclass
class Settings:
    budget: int = 400  # model calls (cassette x bundle)
    population: int = 16
    crossover: float = 0.5
    max_mutations: int = 3
    repair_steps: int = 50
    tournament: int = 3
    seed: int = 0
    designs: int = 3


SETTINGS_KEYS = tuple(Settings.__dataclass_fields__)


@dataclass
class Result:
    """What :func:`evolve` returns: ``designs`` (parts dicts, best first) with their
    ``predictions`` ``(M, n, T)``, ``objective`` and ``checks``; the start's likewise;
    ``trajectory`` (one row per generation); counts."""

    designs: list[dict[str, str]]
    predictions: np.ndarray
    objective: np.ndarray
    checks: list[list[Check]]
    start: dict[str, str]
    start_predictions: np.ndarray
    start_objective: float
    start_checks: list[Check]
    repaired_start: dict[str, str]
    trajectory: pd.DataFrame
    tissues: list[str]
    runs: list[str]
    calls: int
    rejected: int
    extra: dict[str, Any] = field(default_factory=dict)
    # the held-out bundles' predictions ``(H, n, T)`` of the designs and ``(H, 1, T)`` of the
    # start (never optimised on; ``H`` 0 without held-out bundles)
    holdout_predictions: np.ndarray | None = None
    holdout_start_predictions: np.ndarray | None = None
    holdout_runs: list[str] = field(default_factory=list)

    def gains(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Each design's gain over the start: the mean over bundles of the per-bundle
        objective's change, by the optimising bundles and by the held-out ones (None
        without any)."""
        objective = self.extra["objective"]

        def gain(pred, start):
            design = objective.per_model(pred, self.tissues)
            return (design - objective.per_model(start, self.tissues)).mean(axis=0)

        own = gain(self.predictions, self.start_predictions)
        if not self.holdout_runs:
            return own, None
        return own, gain(self.holdout_predictions, self.holdout_start_predictions)


def _tournament(pop: list, scores: np.ndarray, size: int, rng: np.random.Generator):
    k = rng.integers(len(pop), size=min(size, len(pop)))
    return pop[int(k[np.argmax(scores[k])])]


def check_budget(settings: Settings, calls_per_candidate: int) -> None:
    """A budget that pays for the start, its repaired copy and one candidate (one cassette
    costs ``calls_per_candidate``, a call per bundle): less returned the start as the only
    design, without a word."""
    need = 3 * calls_per_candidate
    if settings.budget < need:
        raise InputError(
            None,
            "design.budget",
            f"{settings.budget} model call(s) cannot pay for the start and its repaired copy "
            f"({2 * calls_per_candidate}: 2 cassettes x {calls_per_candidate} bundle(s)) and "
            f"one candidate ({calls_per_candidate}); set at least {need}",
        )


def repair_start(
    layout: Layout, constraints: Constraints, settings: Settings
) -> tuple[list[Check], np.ndarray, np.random.Generator]:
    """The start's checks (:func:`check_feasible`: impossible constraints one line), the
    start with its editable violations repaired (the search's first member) and the
    search's random generator, as :func:`evolve` goes on with it. No model is needed:
    :func:`design` runs it before any loads, so a start that cannot be repaired fails
    first."""
    rng = np.random.default_rng(settings.seed)
    start_checks = layout.feasible(constraints)
    steps = 20 * settings.repair_steps
    seed_seq, checks = repair(layout.start, layout, constraints, rng, steps)
    if seed_seq is None:
        bad = failed(checks) or failed(start_checks)
        raise InputError(
            None,
            f"design.constraints.{bad[0].name}",
            f"could not repair the start in {steps} moves: {bad[0].reason}",
        )
    return start_checks, seed_seq, rng


def evolve(
    scorer: Callable[[Sequence[Mapping[str, str]]], np.ndarray],
    tissues: Sequence[str],
    layout: Layout,
    objective: Objective,
    constraints: Constraints,
    settings: Settings,
    *,
    calls_per_candidate: int = 1,
    progress_every_s: float | None = None,
    prepared: tuple[list[Check], np.ndarray, np.random.Generator] | None = None,
) -> dict[str, Any]:
    """The evolutionary search (module docstring) from the layout's start; returns the
    final population (``seqs`` best first, ``predictions``, ``objective``), the start's
    (repaired) sequence and scores, the trajectory and counts. ``prepared``: what
    :func:`repair_start` returned for this layout and settings (None: it runs here)."""
    check_budget(settings, calls_per_candidate)
    start_checks, seed_seq, rng = prepared or repair_start(layout, constraints, settings)
    start = layout.start
    t0 = time.monotonic()
    first = scorer([layout.parts(start), layout.parts(seed_seq)])
    start_pred, seed_pred = first[:, :1], first[:, 1:]
    spent = 2 * calls_per_candidate
    pop = [seed_seq]
    pop_pred = seed_pred
    pop_obj = objective.score(seed_pred, tissues)
    rows = [(0, spent, float(pop_obj.max()), float(pop_obj.mean()), 0, 0.0)]
    rejected = 0
    progress = Progress(
        "design", total=settings.budget, unit="model calls", every_s=progress_every_s, logger=log
    )
    progress.update(min(spent, settings.budget))
    generation = 0
    seen = {seed_seq.tobytes(), start.tobytes()}
    while spent + calls_per_candidate <= settings.budget:
        generation += 1
        n = min(settings.population, (settings.budget - spent) // calls_per_candidate)
        children = []
        tries = 0
        while len(children) < n and tries < 20 * n:
            tries += 1

            child = _tournament(pop, pop_obj, settings.tournament, rng)
            if len(pop) > 1 and rng.random() < settings.crossover:
                other = _tournament(pop, pop_obj, settings.tournament, rng)
                child = crossover(child, other, layout, rng)
            child = mutate(child, layout, rng, int(rng.integers(1, settings.max_mutations + 1)))
            if child.tobytes() in seen:
                continue
            fixed_child, _ = repair(child, layout, constraints, rng, settings.repair_steps)
            if fixed_child is None or fixed_child.tobytes() in seen:
                rejected += 1
                continue
            seen.add(fixed_child.tobytes())
            children.append(fixed_child)
        if not children:
            log.warning(
                "generation %d: no new valid candidate in %d tries; stopping", generation, tries
            )
            break
        pred = scorer([layout.parts(c) for c in children])
        spent += len(children) * calls_per_candidate
        progress.update(len(children) * calls_per_candidate)
        obj = objective.score(pred, tissues)
        pop = pop + children
        pop_pred = np.concatenate([pop_pred, pred], axis=1)
        pop_obj = np.concatenate([pop_obj, obj])
        keep = np.argsort(-pop_obj, kind="stable")[: settings.population]
        pop = [pop[i] for i in keep]
        pop_pred, pop_obj = pop_pred[:, keep], pop_obj[keep]
        rows.append(
            (
                generation,
                spent,
                float(pop_obj.max()),
                float(pop_obj.mean()),
                rejected,
                time.monotonic() - t0,
            )
        )
        log.info(
            "generation %d: %d model calls, best objective %.4f, population mean %.4f, %d rejected",
            generation,
            spent,
            pop_obj[0],
            pop_obj.mean(),
            rejected,
        )
    progress.finish()
    trajectory = pd.DataFrame(
        rows,
        columns=["generation", "model_calls", "best", "population_mean", "rejected", "seconds"],
    )
    return {
        "seqs": pop,
        "predictions": pop_pred,
        "objective": pop_obj,
        "start": start,
        "start_predictions": start_pred,
        "seed": seed_seq,
        "trajectory": trajectory,
        "calls": spent,
        "rejected": rejected,
        "start_checks": start_checks,
    }


def design(
    start: Construct,
    bundles: Sequence[str | os.PathLike],
    *,
    objective: Objective,
    editable: Sequence[str] = ("utr5", "utr3"),
    fixed: Sequence[str] = (),
    constraints: Constraints | None = None,
    settings: Settings | None = None,
    placement: Mapping[str, Any] | None = None,
    device: str | None = None,
    progress_every_s: float | None = None,
    holdout: Sequence[str | os.PathLike] = (),
    background_path: str | os.PathLike | None = None,
) -> Result:
    """Design from ``start`` with ``bundles`` (one ensemble); every design is checked again
    against every constraint before it is returned. ``holdout``: bundles never optimised
    on that score the start and the designs afterwards (the held-out gain).
    ``background_path``: the FASTA of ``placement``'s background, for messages."""
    constraints = constraints or Constraints()
    settings = settings or Settings()
    layout = make_layout(start, editable, fixed, constraints)
    check_budget(settings, len(bundles))
    # before any model loads: impossible constraints, a start that cannot be repaired
    prepared = repair_start(layout, constraints, settings)
    from isoflow.bundle import output_units
    from isoflow.score import check_bundles, check_finetuned_placement

    holdout = list(holdout)
    # the held-out bundles with the optimising ones: the same tissues and window, and no
    # copy of an optimising bundle's weights (it would grade its own maxima)
    manifests = check_bundles([*bundles, *holdout])
    # a fine-tuned bundle scores candidates only as its constructs were placed (isoflow score)
    keys = ("fill", "background", "polya_in_rna", "polya_tail")
    given = {k: v for k, v in (placement or {}).items() if k in keys and v is not None}
    check_finetuned_placement(
        [*bundles, *holdout],
        manifests,
        **given,
        background_path=background_path,
        action="design",
    )
    check_objective(objective, manifests[0]["tissues"])
    if not holdout and len(bundles) == 1:
        log.warning(
            "one bundle optimises and grades the designs: their gain is a maximum of its own "
            "noisy score and overstates what another model would see; add a held-out bundle "
            "(--holdout-model, design.holdout_runs) or more bundles"
        )
    scorer = Scorer(bundles, start, layout, placement=placement, device=device)
    out = evolve(
        scorer,
        scorer.tissues,
        layout,
        objective,
        constraints,
        settings,
        calls_per_candidate=len(scorer.models),
        progress_every_s=progress_every_s,
        prepared=prepared,
    )
    n = min(settings.designs, len(out["seqs"]))
    designs = [layout.parts(s) for s in out["seqs"][:n]]
    checks = [layout.check(d, constraints) for d in designs]
    for d, cs in enumerate(checks):
        if failed(cs):  # the search only keeps checked candidates: this is a bug
            raise AssertionError(f"design {d + 1} fails {[c.name for c in failed(cs)]}")
    start_obj = float(objective.score(out["start_predictions"], scorer.tissues)[0])
    tissues, runs = scorer.tissues, scorer.runs
    held, held_start, held_runs = None, None, []
    if holdout:
        del scorer  # the optimisers' models go before the held-out ones load
        grader = Scorer(holdout, start, layout, placement=placement, device=device)
        both = grader([dict(start.parts), *designs])
        held_start, held, held_runs = both[:, :1], both[:, 1:], grader.runs
    return Result(
        designs=designs,
        predictions=out["predictions"][:, :n],
        objective=out["objective"][:n],
        checks=checks,
        start=dict(start.parts),
        start_predictions=out["start_predictions"],
        start_objective=start_obj,
        start_checks=out["start_checks"],
        repaired_start=layout.parts(out["seed"]),
        trajectory=out["trajectory"],
        tissues=tissues,
        runs=runs,
        calls=out["calls"],
        rejected=out["rejected"],
        extra={
            "id": start.id,
            "itrs": start.itrs,
            "polya_site": start.polya_site,
            "objective": objective,
            "edits": [int((s != out["start"]).sum()) for s in out["seqs"][:n]],
            # what the predictions are in, for every label (a fine-tuned bundle: its table's)
            "units": output_units(manifests[0]),
        },
        holdout_predictions=held,
        holdout_start_predictions=held_start,
        holdout_runs=held_runs,
    )


# ---------------------------------------------------------------------------- outputs


def output_paths(prefix: str | os.PathLike) -> dict[str, str]:
    """The files ``isoflow design --out PREFIX`` writes."""
    p = str(prefix)
    return {
        "fasta": f"{p}.designs.fa",
        "genbank": f"{p}.designs.gb",
        "tsv": f"{p}.designs.tsv",
        "profiles": f"{p}.profiles.tsv",
        "profiles_figure": f"{p}.profiles.png",
        "constraints": f"{p}.constraints.tsv",
        "trajectory": f"{p}.trajectory.tsv",
        "trajectory_figure": f"{p}.trajectory.png",
        "html": f"{p}.summary.html",
    }


def design_ids(result: Result) -> list[str]:
    """Each design's id in every output: the start's id, whitespace runs as ``_`` (the id
    is also the design's GenBank LOCUS name, which holds none), and its number."""
    start = re.sub(r"\s+", "_", str(result.extra["id"]).strip())
    return [f"{start}_design{i + 1}" for i in range(len(result.designs))]


def _sd(values: np.ndarray) -> np.ndarray:
    return values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.full(values.shape[1:], np.nan)


def profiles_table(result: Result, targets: Sequence[str]) -> pd.DataFrame:
    """One row per design x tissue: mean, sd over the bundles, the start's, the change; the
    held-out bundles' mean, their start's and their change (``holdout_*``: NaN and
    ``n_holdout`` 0 without held-out bundles)."""
    rows = []
    s_mean, s_sd = result.start_predictions.mean(axis=0)[0], _sd(result.start_predictions)[0]
    mean, sd = result.predictions.mean(axis=0), _sd(result.predictions)
    n_designs = len(result.designs)
    if result.holdout_runs:
        h_mean = result.holdout_predictions.mean(axis=0)
        h_start = result.holdout_start_predictions.mean(axis=0)[0]
    else:
        h_mean = np.full((n_designs, len(result.tissues)), np.nan)
        h_start = np.full(len(result.tissues), np.nan)
    for d, cid in enumerate(design_ids(result)):
        for t, tissue in enumerate(result.tissues):
            rows.append(
                (
                    cid,
                    tissue,
                    tissue in targets,
                    float(mean[d, t]),
                    float(sd[d, t]),
                    float(s_mean[t]),
                    float(s_sd[t]),
                    float(mean[d, t] - s_mean[t]),
                    len(result.runs),
                    float(h_mean[d, t]),
                    float(h_start[t]),
                    float(h_mean[d, t] - h_start[t]),
                    len(result.holdout_runs),
                )
            )
    return pd.DataFrame(
        rows,
        columns=[
            "construct_id",
            "tissue",
            "target",
            "mean",
            "sd",
            "start_mean",
            "start_sd",
            "change",
            "n_models",
            "holdout_mean",
            "holdout_start_mean",
            "holdout_change",
            "n_holdout",
        ],
    )


def constraints_table(result: Result) -> pd.DataFrame:
    """Every constraint's status on the start and on each design."""
    rows = [
        (result.extra["id"], "start", c.name, "pass" if c.ok else "fail", c.reason)
        for c in result.start_checks
    ]
    for cid, checks in zip(design_ids(result), result.checks, strict=True):
        rows += [(cid, "design", c.name, "pass" if c.ok else "fail", c.reason) for c in checks]
    return pd.DataFrame(rows, columns=["construct_id", "role", "constraint", "status", "reason"])


def mean_sd_text(per_model: np.ndarray) -> str:
    """``mean ± sd`` (ddof 1) of one value per bundle for the summary; the mean alone from
    one bundle, which has no sd (it showed ``0.916 ± nan``)."""
    if len(per_model) < 2:
        return f"{per_model.mean():.3f}"
    return f"{per_model.mean():.3f} ± {per_model.std(ddof=1):.3f}"


def summary_table(result: Result, targets: Sequence[str]) -> tuple[str, str, pd.DataFrame]:
    """The report's table: the start and each design with its objective, edits, target and
    other tissues' ensemble means (± sd over the bundles, from two on) and its constraints."""
    is_target = np.array([t in targets for t in result.tissues])

    def pm(pred: np.ndarray, cols: np.ndarray, agg) -> str:
        return mean_sd_text(agg(pred[:, cols], axis=-1))

    def constraints_text(checks: list[Check]) -> str:
        bad = [c.name for c in checks if not c.ok]
        return f"{len(checks) - len(bad)}/{len(checks)} pass" + (
            f" (fails: {', '.join(bad)})" if bad else ""
        )

    others = result.extra["objective"].others
    agg = np.max if others == "max" else np.mean
    own, held = result.gains()
    rows = [
        (
            result.extra["id"],
            "start",
            round(result.start_objective, 4),
            0.0,
            0.0 if held is not None else float("nan"),
            0,
            pm(result.start_predictions[:, 0], is_target, np.mean),
            pm(result.start_predictions[:, 0], ~is_target, agg),
            constraints_text(result.start_checks),
        )
    ]
    for i, cid in enumerate(design_ids(result)):
        rows.append(
            (
                cid,
                "design",
                round(float(result.objective[i]), 4),
                round(float(own[i]), 4),
                round(float(held[i]), 4) if held is not None else float("nan"),
                result.extra["edits"][i],
                pm(result.predictions[:, i], is_target, np.mean),
                pm(result.predictions[:, i], ~is_target, agg),
                constraints_text(result.checks[i]),
            )
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "construct",
            "role",
            "objective",
            "gain (optimised on)",
            "gain (held-out)",
            "edits",
            "target mean",
            f"other tissues ({others})",
            "constraints",
        ],
    )
    k = result.extra["objective"].k
    title = f"Designed cassettes (targets: {', '.join(targets)})"
    note = (
        f"Objective per bundle: mean over the targets minus the {others} over the other "
        f"tissues, in {_units(result)}; over the {len(result.runs)} bundle(s): "
        f"mean - {k:g} x sd. "
        f"{result.calls} model calls, {result.rejected} candidates rejected by the "
        "constraints. The start may fail constraints the search repaired first. Gain: the "
        "change of the per-bundle objective from the start, mean over bundles. "
        + (
            f"Held-out: by {', '.join(result.holdout_runs)}, never optimised on; the gain "
            "by the bundles optimised on is a maximum of their noisy score and overstates it."
            if result.holdout_runs
            else "The gain is self-graded: the bundle(s) that optimised the designs also grade "
            "them, so it overstates what another model would see; a held-out bundle "
            "(--holdout-model, design.holdout_runs) grades it fairly."
        )
    )
    if held is None:
        frame = frame.drop(columns="gain (held-out)")
    return title, note, frame


def _units(result: Result) -> str:
    """What the result's predictions are in (:func:`isoflow.bundle.output_units` of its
    bundles, kept by :func:`design`; log(1 + TPM) for a result made without it)."""
    from isoflow.bundle import GTEX_UNITS

    return str(result.extra.get("units", GTEX_UNITS))


def genbank_records(result: Result) -> list:
    """Biopython records, one per design, named (LOCUS) by its id as every other output
    names it (``design_ids``: the start's id and the design's number, so the records of two
    starts' designs never share a name): the parts as features (readable by
    :func:`isoflow.constructs.read_constructs`, which reads back the same parts), the CDS
    with its translation. The flanks are ``misc_feature`` s labelled ``upstream`` /
    ``downstream``; when the start's flanks end at its ITRs (``result.extra["itrs"]``) their
    note names the ITR, so the reader takes them as the two ITR features and the cassette as
    ITR to ITR inclusive (the AAV size check runs as on the start). A start whose polyA
    signal was annotated inside its 3'UTR (``result.extra["polya_site"]``) gets that
    ``polyA_signal`` feature there (run on through the polya part when it reaches it), so
    the reader finds the same own signal."""
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    types = {
        "promoter": "promoter",
        "utr5": "5'UTR",
        "cds": "CDS",
        "utr3": "3'UTR",
        "polya": "polyA_signal",
    }
    itrs = bool(result.extra.get("itrs", False))
    if itrs:  # the reader takes these as the two ITR features: flanks ITR to ITR inclusive
        notes = {
            "upstream": "5' ITR to promoter (the start's flank, AAV ITR to ITR inclusive)",
            "downstream": "polyA (or 3'UTR) end to 3' ITR (the start's flank, AAV ITR to ITR "
            "inclusive)",
        }
    else:  # no ITR named: the reader takes them as flanks of a record without ITRs
        notes = {
            "upstream": "the start's bases 5' of the promoter",
            "downstream": "the start's bases 3' of the polyA (or 3'UTR)",
        }
    records = []
    for i, (cid, parts) in enumerate(zip(design_ids(result), result.designs, strict=True)):
        if itrs and not all(parts.get(f) for f in notes):
            raise ValueError(
                f"{cid}: a cassette between ITRs needs both flanks (upstream and downstream)"
            )
        seq = "".join(parts.values())
        record = SeqRecord(  # LOCUS = the design's id, as in designs.fa/.tsv/profiles.tsv
            Seq(seq),
            id=cid,
            name=cid,
            description=f"{cid} objective={result.objective[i]:.4f}",
        )
        record.annotations["molecule_type"] = "DNA"
        record.annotations["topology"] = "linear"
        site = result.extra.get("polya_site")
        merged = bool(site) and bool(parts.get("polya"))  # one feature: the site + polya
        at = 0
        for name, part in parts.items():
            if name == "utr3" and site:
                end = at + site[1] + (len(parts["polya"]) if merged else 0)
                record.features.append(
                    SeqFeature(
                        FeatureLocation(at + site[0], end, strand=1),
                        type="polyA_signal",
                        qualifiers={"label": ["polya"], "note": ["the start's own polyA signal"]},
                    )
                )
            if name == "polya" and merged:
                at += len(part)
                continue
            if part and (name in types or name in notes):
                q = {"label": [name]}
                if name == "cds":
                    q["translation"] = [translate_cds(part)]
                if name in notes:
                    q["note"] = [notes[name]]
                record.features.append(
                    SeqFeature(
                        FeatureLocation(at, at + len(part), strand=1),
                        type=types.get(name, "misc_feature"),
                        qualifiers=q,
                    )
                )
            at += len(part)
        records.append(record)
    return records


def write_design(
    result: Result,
    paths: Mapping[str, str | os.PathLike],
    *,
    targets: Sequence[str],
    demo: bool = False,
) -> None:
    """Write the outputs named in ``paths`` (keys of :func:`output_paths`), all or none
    (:func:`isoflow.files.output_set`)."""
    with output_set(paths, what="design") as tmp:
        _write_design(result, tmp, targets=targets, demo=demo)


def _write_design(
    result: Result, paths: Mapping[str, str | os.PathLike], *, targets: Sequence[str], demo: bool
) -> None:
    from Bio import SeqIO

    from isoflow.constructs import write_constructs_tsv

    ids = design_ids(result)
    if "fasta" in paths:
        lines = []
        for i, (cid, parts) in enumerate(zip(ids, result.designs, strict=True)):
            seq = "".join(parts.values())
            lines.append(
                f">{cid} objective={result.objective[i]:.4f} edits={result.extra['edits'][i]}"
            )
            lines += [seq[j : j + 60] for j in range(0, len(seq), 60)]
        with atomic_path(paths["fasta"]) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    if "genbank" in paths:
        with atomic_path(paths["genbank"]) as tmp, open(tmp, "w") as handle:
            SeqIO.write(genbank_records(result), handle, "genbank")
    if "tsv" in paths:
        constructs = [
            Construct(
                cid,
                parts,
                extra={
                    "objective": f"{result.objective[i]:.6f}",
                    "edits": str(result.extra["edits"][i]),
                },
            )
            for i, (cid, parts) in enumerate(zip(ids, result.designs, strict=True))
        ]
        write_constructs_tsv(constructs, paths["tsv"], extra=["objective", "edits"])
    if "profiles" in paths:
        with atomic_path(paths["profiles"]) as tmp:
            profiles_table(result, targets).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    if "constraints" in paths:
        with atomic_path(paths["constraints"]) as tmp:
            constraints_table(result).to_csv(tmp, sep="\t", index=False)
    if "trajectory" in paths:
        with atomic_path(paths["trajectory"]) as tmp:
            result.trajectory.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    if "html" in paths:
        from isoflow.report.tables import write_table

        title, note, frame = summary_table(result, targets)
        write_table(frame, paths["html"], title, note)
    if "profiles_figure" in paths:
        plot_profiles(result, targets, paths["profiles_figure"], demo=demo)
    if "trajectory_figure" in paths:
        plot_trajectory(result, paths["trajectory_figure"], demo=demo)


def plot_profiles(result: Result, targets: Sequence[str], path, demo: bool = False) -> None:
    """Per tissue: the start's and the best design's predicted mean with the sd over the
    bundles as error bars; target tissues starred."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from isoflow.report.figures import FONT_SIZE, RUN_COLOR, SECOND_COLOR, save_figure

    table = profiles_table(result, targets)
    best = table[table["construct_id"] == design_ids(result)[0]]
    n = len(best)
    fig = Figure(figsize=(max(6.0, 0.5 * n + 3), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(n)
    err = lambda v: np.nan_to_num(v.to_numpy())  # noqa: E731
    ax.bar(
        x - 0.2,
        best["start_mean"],
        0.4,
        yerr=err(best["start_sd"]),
        color=SECOND_COLOR,
        label=f"start {result.extra['id']} (objective {result.start_objective:.3f})",
        capsize=2,
    )
    ax.bar(
        x + 0.2,
        best["mean"],
        0.4,
        yerr=err(best["sd"]),
        color=RUN_COLOR,
        label=f"best design (objective {result.objective[0]:.3f})",
        capsize=2,
    )
    labels = [f"{t} *" if t in targets else t for t in best["tissue"]]
    # parse_math=False on the texts showing the start's id and the tissues: a `$` pair in
    # them is text, not mathtext (drawn as math, or a ValueError after the whole search)
    ax.set_xticks(x, labels, rotation=90, fontsize=FONT_SIZE - 1, parse_math=False)
    ax.set_ylabel(f"predicted, {_units(result)}\nmean ± sd over bundles", fontsize=FONT_SIZE)
    for text in ax.legend(fontsize=FONT_SIZE - 2, loc="lower left").get_texts():
        text.set_parse_math(False)
    ax.spines[["top", "right"]].set_visible(False)
    # the profiles drawn are the optimising bundles' own grades: say so (held-out: the table)
    held = len(getattr(result, "holdout_runs", None) or [])
    graded = f"held-out grades in profiles.tsv ({held})" if held else "no held-out bundle"
    fig.suptitle(
        f"Design: {len(result.runs)} bundle(s), graded by the bundles it optimised on "
        f"({graded}); * target: {', '.join(targets)}",
        fontsize=FONT_SIZE + 1,
        parse_math=False,
    )
    save_figure(fig, path, demo=demo)


def plot_trajectory(result: Result, path, demo: bool = False) -> None:
    """The best and the population's mean objective against model calls spent."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from isoflow.report.figures import FONT_SIZE, RUN_COLOR, SECOND_COLOR, save_figure

    t = result.trajectory
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(t["model_calls"], t["best"], marker="o", color=RUN_COLOR, label="best")
    ax.plot(
        t["model_calls"],
        t["population_mean"],
        marker=".",
        color=SECOND_COLOR,
        label="population mean",
    )
    ax.axhline(
        result.start_objective, color="#718096", linestyle="--", label="start cassette (as given)"
    )
    ax.set_xlabel("model calls (cassette × bundle)", fontsize=FONT_SIZE)
    ax.set_ylabel("objective (ensemble mean − k·sd)", fontsize=FONT_SIZE)
    ax.legend(fontsize=FONT_SIZE - 2)
    ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(
        f"Design trajectory: {result.calls} model calls, {result.rejected} candidates rejected",
        fontsize=FONT_SIZE + 1,
    )
    save_figure(fig, path, demo=demo)


# ---------------------------------------------------------------------------- the command


def _site(text: str) -> str:
    """argparse ``type`` of ``--restriction-site``: IUPAC letters, at least one (an empty
    site was accepted)."""
    import re

    if not re.fullmatch(r"[ACGTRYSWKMBDHVNacgtryswkmbdhvn]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a site of IUPAC DNA letters")
    return text


# config keys in messages, shown as this command's flags (isoflow.commands)
FLAGS = {
    "design.fixed": "--fixed",
    "design.id": "--id",
    "design.budget": "--budget",
    "design.constraints.restriction_sites": "--restriction-site",
    # the rest of the section: keys of the --constraints YAML ("--constraints key gc_max")
    "design.constraints.": "--constraints key ",
    "design.constraints": "--constraints",
    "target_tissues": "--target-tissue",
    "polya_in_rna": "--polya-in-rna",
    "polya_tail": "--polya-tail",
    "fill": "--fill",
    # a non-canonical CDS: only isoflow score reads one as it is (design has no such flag)
    "allow_noncanonical_cds": "isoflow score --allow-noncanonical-cds; isoflow design reads "
    "a canonical CDS only",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        *MODEL_FLAGS,
        action="append",
        required=True,
        metavar="BUNDLE",
        help="a model bundle folder; repeat for an ensemble (objective: mean - k sd over them)",
    )
    parser.add_argument(
        "--holdout-model",
        action="append",
        default=[],
        metavar="BUNDLE",
        help="a bundle that grades the designs but is never optimised on (repeat): the "
        "held-out gain in .profiles.tsv and the summary",
    )
    parser.add_argument(
        *CONSTRUCTS_FLAGS,
        required=True,
        metavar="FILE",
        help="the starting cassette's file: a construct TSV or GenBank (docs/constructs.md)",
    )
    parser.add_argument(
        "--id",
        default=None,
        help="the starting construct's id (default: the file's only construct)",
    )
    parser.add_argument(
        *OUT_FLAGS,
        required=True,
        metavar="PREFIX",
        help="output prefix (not a file): PREFIX.designs.fa/.gb/.tsv, .profiles.tsv/.png, "
        ".constraints.tsv, .trajectory.tsv/.png, .summary.html" + REPLACED,
    )
    parser.add_argument(
        "--target-tissue",
        action="append",
        required=True,
        metavar="TISSUE",
        help="a target tissue (repeat)",
    )
    parser.add_argument(
        "--others",
        choices=OTHERS,
        default="max",
        help="aggregate the other tissues by max or mean (default: %(default)s)",
    )
    parser.add_argument(
        "--k",
        type=nonnegative_float,
        default=1.0,
        help="objective = ensemble mean - k x sd (default: %(default)s)",
    )
    parser.add_argument(
        "--editable",
        action="append",
        choices=EDITABLE_PARTS,
        default=None,
        help="an editable part (repeat; default utr5 and utr3; cds: synonymous codons only)",
    )
    parser.add_argument(
        "--fixed",
        action="append",
        default=[],
        metavar="PART:A-B",
        help="positions kept as they are (1-based inclusive, within a part or the cassette)",
    )
    parser.add_argument(
        "--constraints",
        metavar="YAML",
        help="a YAML mapping of constraint settings (config design.constraints keys)",
    )
    parser.add_argument(
        "--restriction-site",
        action="append",
        type=_site,
        default=[],
        metavar="SITE",
        help="a forbidden site, both strands (repeat)",
    )
    parser.add_argument(
        "--budget",
        type=positive_int,
        default=Settings.budget,
        help="model calls (cassette x bundle) the search may spend (default: %(default)s)",
    )
    parser.add_argument(
        "--population",
        type=positive_int,
        default=Settings.population,
        help="cassettes kept from one generation to the next (default: %(default)s)",
    )
    parser.add_argument(
        "--designs",
        type=positive_int,
        default=Settings.designs,
        help="designs written, best first (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=nonnegative_int,
        default=Settings.seed,
        help="random seed of the search (default: %(default)s)",
    )
    add_placement_arguments(parser)  # the cassette placed as isoflow score places it
    parser.add_argument("--device", default=None, help=DEVICE_HELP)


def pick_construct(path: str | os.PathLike, cid: str | None) -> Construct:
    constructs = read_constructs(path, allow_noncanonical_cds=False)
    if cid is None:
        if len(constructs) != 1:
            raise InputError(
                path, None, f"{len(constructs)} constructs: name the start with its id (design.id)"
            )
        return constructs[0]
    for c in constructs:
        if c.id == cid:
            return c
    raise InputError(
        path, None, f"no construct {cid!r}; ids: {', '.join(c.id for c in constructs)}"
    )


def design_job(
    construct_path: str | os.PathLike,
    bundles: Sequence[str | os.PathLike],
    paths: Mapping[str, str | os.PathLike],
    *,
    construct_id: str | None,
    target_tissues: Sequence[str],
    others: str = "max",
    k: float = 1.0,
    editable: Sequence[str] = ("utr5", "utr3"),
    fixed: Sequence[str] = (),
    constraints: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    background: str | os.PathLike | None = None,
    fill: str = "N",
    polya_in_rna: bool = False,
    polya_tail: int = 0,
    device: str | None = None,
    demo: bool = False,
    holdout: Sequence[str | os.PathLike] = (),
) -> Result:
    """What ``isoflow design`` and rule ``design`` run (``holdout``: bundles that grade the
    designs, never optimised on)."""
    start = pick_construct(construct_path, construct_id)
    result = design(
        start,
        bundles,
        objective=Objective(tuple(target_tissues), others, float(k)),
        editable=editable,
        fixed=fixed,
        constraints=Constraints.from_config(constraints),
        settings=Settings(**(settings or {})),
        placement={
            "fill": fill,
            "background": read_background(background) if background else None,
            "polya_in_rna": polya_in_rna,
            "polya_tail": polya_tail,
        },
        device=device,
        holdout=holdout,
        background_path=background,
    )
    own, held = result.gains()
    log.info(
        "best design's gain %+.4f by the bundles optimised on, %s",
        own[0],
        "self-graded" if held is None else f"{held[0]:+.4f} held-out",
    )
    log.info(
        "start %r objective %.4f; best design %.4f (%d edits); %d model calls, %d rejected",
        start.id,
        result.start_objective,
        result.objective[0],
        result.extra["edits"][0],
        result.calls,
        result.rejected,
    )
    write_design(result, paths, targets=target_tissues, demo=demo)
    return result


def run(args: argparse.Namespace) -> int:
    constraints: dict[str, Any] = {}
    if args.constraints:
        import yaml

        with open(args.constraints, encoding="utf-8") as handle:
            constraints = yaml.safe_load(handle)
        if constraints is None:
            constraints = {}
        check_constraints(constraints, args.constraints)
    if args.restriction_site:
        constraints["restriction_sites"] = [
            *constraints.get("restriction_sites", []),
            *args.restriction_site,
        ]
    check_prefix(args.out)
    paths = output_paths(args.out)
    check_output_files(  # before any work: atomic_path would replace a folder at a path
        paths.values(),
        inputs=[
            args.constructs,
            args.constraints,
            args.background,
            *args.model,
            *args.holdout_model,
        ],
    )
    design_job(
        args.constructs,
        args.model,
        paths,
        construct_id=args.id,
        target_tissues=args.target_tissue,
        others=args.others,
        k=args.k,
        editable=args.editable or ["utr5", "utr3"],
        fixed=args.fixed,
        constraints=constraints,
        settings={
            "budget": args.budget,
            "population": args.population,
            "designs": args.designs,
            "seed": args.seed,
        },
        background=args.background,
        fill=args.fill,
        polya_in_rna=args.polya_in_rna,
        polya_tail=args.polya_tail,
        device=args.device,
        holdout=args.holdout_model,
    )
    for path in paths.values():
        print(path)
    return 0
