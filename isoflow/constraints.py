"""Synthesis and AAV constraints on an expression cassette, as pure functions (numpy and the
standard library; no torch): what ``isoflow design`` checks on every candidate and every
output (docs/constructs.md "Design").

Each check returns a :class:`Check`: its ``name`` (one of ``CONSTRAINTS``), ``ok``, a one-line
``reason`` and its ``violations``: each violation a tuple of ``[start, end)`` cassette spans
that together make it (a direct repeat: every copy; anything else: one span). A violation
can be removed only by editing a base inside one of its spans; one whose spans are all fixed
cannot (:func:`check_feasible` fails early with one line naming the constraint).

The motifs, and why:

* ``polya_signals``: the canonical polyadenylation hexamers AATAAA and ATTAAA (Proudfoot
  2011, Genes Dev 25:1770; Beaudoing et al. 2000, Genome Res 10:1001: the two most used
  signals) in the transcribed region, sense strand: the 5'UTR, CDS and 3'UTR read joined, so
  a signal across the 5'UTR/CDS or CDS/3'UTR junction counts: a cryptic signal there would
  cut the transcript short. The cassette's own signal (:func:`own_polya`) is not counted,
  and a design never edits it.
* ``polya_present``: the cassette's own signal, downstream of the CDS, is there: its
  ``polya`` part; without one, a polyA signal annotated inside the 3'UTR (a GenBank
  feature, :attr:`isoflow.constructs.Construct.polya_site`); without that, every signal
  hexamer lying wholly in the 3'UTR's last ``POLYA_WINDOW`` (40) nt. A 3'UTR runs to the
  mRNA's 3' end, the cleavage site, and cleavage comes 10-30 nt downstream of the hexamer
  (Tian et al. 2005, NAR 33:201; 11-23 nt in Chen, MacDonald & Wilusz 1995, NAR 23:2614):
  a hexamer there is the mRNA's own signal, and any hexamer in that window puts cleavage at
  that end, not upstream of it. A start without one is refused (a design would make an
  unterminated transcript) unless ``polya_present: false``.
* ``aav_size``: ITR to ITR. A cassette that runs between ITRs (annotated in GenBank, or
  flanks that each hold AAV2's ITR stretch ``AAV2_ITR_MOTIF``) is counted whole; any other
  gets ``itrs_nt`` (290: two 145-nt AAV2 ITRs, GenBank NC_001401) added, the ITRs its
  vector genome will carry, and its reason says so. Flanks taken for ITRs by the motif
  alone are counted as ITRs at least ``itrs_nt`` / 2 long each: what a shorter flank (a
  truncated ITR, the bare motif) lacks is added (:func:`itr_shortfall`), so 28-nt motif
  flanks are not counted smaller than no flanks at all.
* ``upstream_atg``: an ATG in the 5'UTR starts an upstream ORF that competes with the CDS's
  start codon (Kozak 1987).
* ``splice_sites``: the mammalian consensus (Shapiro & Senapathy 1987, NAR 15:7155) in the
  transcribed region (5'UTR + CDS + 3'UTR joined, junctions included), sense strand: donor
  ``MAG|GTRAGT`` (exon ``[AC]AG``, intron
  ``GT[AG]AGT``) and acceptor ``Y10 N CAG|G`` (a 10-nt polypyrimidine tract, any base, ``CAG``,
  then the exon's ``G``). Only full matches to these strong consensus forms count: weaker
  sites are not scored.
* ``restriction_sites``: the user's sites (IUPAC letters allowed), both strands, anywhere
  in the cassette.
* ``homopolymers``: a run of one base longer than ``max_homopolymer``; ``repeats``: a
  ``repeat_min``-nt sequence present twice or more (direct repeats, overlapping copies
  included), as DNA synthesis vendors reject.
* These two and ``gc_window`` do not count a violation lying wholly inside the flanks
  (``upstream``, ``downstream``: the AAV ITRs and what lies beyond the promoter...polyA). A
  design never edits the flanks, and the ITRs' hairpins, GC-rich stretches and the 5'/3'
  ITRs' shared direct stretch are a known property of every AAV plasmid that synthesis and
  cloning handle specially. A violation reaching outside them counts whole: a repeat with
  one copy in an ITR and one in the promoter, a window across the ITR/promoter boundary.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isoflow.alphabet import reverse_complement, standard_code, translate_cds
from isoflow.constructs import AAV_LIMIT
from isoflow.errors import InputError, did_you_mean

CONSTRAINTS = (
    "aav_size",
    "gc_overall",
    "gc_window",
    "restriction_sites",
    "polya_signals",
    "polya_present",
    "upstream_atg",
    "splice_sites",
    "homopolymers",
    "repeats",
    "fixed_positions",
    "cds_protein",
)
POLYA_SIGNALS = ("AATAAA", "ATTAAA")
# nt at the 3'UTR's end in which a signal hexamer is the mRNA's own (module docstring)
POLYA_WINDOW = 40
# The 28 nt both AAV2 ITRs hold (flip and flop, each strand: the hairpin holds it both ways
# round); flanks that each hold it (either strand) are taken for the ITRs.
AAV2_ITR_MOTIF = "CTGCGCGCTCGCTCGCTCACTGAGGCCG"
AAV2_ITR_NT = 145  # GenBank NC_001401: 1-145 and 4535-4679
TRANSCRIBED = ("utr5", "cds", "utr3")
# Never edited by a design; the synthesis checks (gc_window, homopolymers, repeats) do not
# count a violation wholly inside them (the ITRs: module docstring).
FLANKS = ("upstream", "downstream")
SPLICE_DONOR = "[AC]AGGT[AG]AGT"  # MAG|GTRAGT
SPLICE_ACCEPTOR = "[CT]{10}[ACGT]CAGG"  # Y10 N CAG|G
_IUPAC = {
    "A": "A",
    "C": "C",
    "G": "G",
    "T": "T",
    "R": "[AG]",
    "Y": "[CT]",
    "S": "[CG]",
    "W": "[AT]",
    "K": "[GT]",
    "M": "[AC]",
    "B": "[CGT]",
    "D": "[AGT]",
    "H": "[ACT]",
    "V": "[ACG]",
    "N": "[ACGT]",
}
MAX_REASON_SPANS = 3  # a reason names at most this many violations
# codon -> every codon of its amino acid (itself included): what an editable CDS codon can be
_BY_AA: dict[str, list[str]] = {}
for _codon, _aa in standard_code().items():
    _BY_AA.setdefault(_aa, []).append(_codon)
SYNONYMS = {c: tuple(_BY_AA[aa]) for c, aa in standard_code().items()}

Span = tuple[int, int]


@dataclass(frozen=True)
class Constraints:
    """The limits a design must keep (config ``design.constraints``; the schema's defaults).

    GC as fractions of A/C/G/T; ``gc_window`` nt windows sliding by one base;
    ``max_homopolymer`` the longest run of one base allowed; ``repeat_min`` the shortest
    direct repeat that fails; ``upstream_atg`` / ``splice_sites`` switch those checks on;
    ``polya_present``: a start without its own polyA signal is refused; ``itrs_nt``: added
    to the size of a cassette without ITRs."""

    aav_limit: int = AAV_LIMIT
    itrs_nt: int = 2 * AAV2_ITR_NT
    gc_min: float = 0.25
    gc_max: float = 0.65
    gc_window: int = 100
    gc_window_min: float = 0.2
    gc_window_max: float = 0.8
    restriction_sites: tuple[str, ...] = ()
    polya_signals: tuple[str, ...] = POLYA_SIGNALS
    polya_present: bool = True
    upstream_atg: bool = True
    splice_sites: bool = True
    max_homopolymer: int = 10
    repeat_min: int = 20

    @classmethod
    def from_config(cls, section: Mapping | None) -> Constraints:
        """From ``design.constraints`` (missing keys: the defaults above)."""
        section = dict(section or {})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            known = cls.__dataclass_fields__
            named = ", ".join(f"{k!r}{did_you_mean(k, known)}" for k in sorted(unknown))
            raise InputError(
                None, "design.constraints", f"unknown key(s) {named}; known: {', '.join(known)}"
            )
        check_bounds(section)
        for key in ("restriction_sites", "polya_signals"):
            if key in section:
                section[key] = tuple(str(s).upper() for s in section[key] or ())
        return cls(**section)


# lower <= upper bound pairs of the section, which the schema checks one key at a time
BOUNDS = (("gc_min", "gc_max"), ("gc_window_min", "gc_window_max"))


def check_bounds(section: Mapping | None, source: str | os.PathLike | None = None) -> None:
    """Each lower GC bound at most its upper one (``BOUNDS``, the defaults for a key not
    given): ``gc_min: 0.9`` with ``gc_max: 0.1`` failed every cassette, found impossible
    only once the design had started. One line naming ``source`` (an ``isoflow design
    --constraints`` file) and the key, or without one the config key."""
    section = section or {}
    for low, high in BOUNDS:
        lo = section.get(low, Constraints.__dataclass_fields__[low].default)
        hi = section.get(high, Constraints.__dataclass_fields__[high].default)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi))
        if numbers and lo > hi:
            raise InputError(
                source,
                low if source is not None else f"design.constraints.{low}",
                f"{lo} is above {high} {hi}: no GC content lies between them; set {low} at "
                f"most {high}",
            )


def check_constraints(section: Any, source: str | os.PathLike) -> None:
    """An ``isoflow design --constraints`` file's mapping checked as the workflow checks
    ``design.constraints`` (the schema's node, ``config/schema.yaml``, where the package
    has it: a checkout or an editable install; then :func:`check_bounds`): one line naming
    the file and the key (``c.yaml:gc_max: '0.7' is not of type 'number'``), not a
    traceback, a scalar split into letters (``restriction_sites: GAATTC``), or a value
    taken for another (``upstream_atg: "no"``, a string, was on)."""
    from isoflow.config import SCHEMA, describe, key_path, load_schema

    if SCHEMA.is_file():
        import jsonschema

        schema = load_schema(str(SCHEMA))
        node = schema["properties"]["design"]["properties"]["constraints"]
        validator = jsonschema.Draft202012Validator(node)
        error = jsonschema.exceptions.best_match(validator.iter_errors(section))
        if error is not None:
            where = key_path(error.absolute_path) if error.absolute_path else None
            raise InputError(source, where, describe(error))
    elif not isinstance(section, Mapping):
        raise InputError(source, None, "a YAML mapping of constraint settings")
    check_bounds(section, source)


@dataclass(frozen=True)
class Check:
    """One constraint's status on one cassette."""

    name: str
    ok: bool
    reason: str
    violations: tuple[tuple[Span, ...], ...] = field(default=(), repr=False)


def _within(spans: Iterable[Span], ignore: Sequence[Span]) -> bool:
    """Whether every span lies wholly inside one of the ``ignore`` spans."""
    return all(any(lo <= a and b <= hi for lo, hi in ignore) for a, b in spans)


def _not_counted(n: int) -> str:
    return f" ({n} wholly inside the flanks not counted)" if n else ""


def _check(name: str, violations: list[tuple[Span, ...]], what: str, fine: str) -> Check:
    if not violations:
        return Check(name, True, fine)
    shown = "; ".join(
        ", ".join(f"{a + 1}-{b}" for a, b in spans) for spans in violations[:MAX_REASON_SPANS]
    )
    more = (
        f" and {len(violations) - MAX_REASON_SPANS} more"
        if len(violations) > MAX_REASON_SPANS
        else ""
    )
    return Check(
        name, False, f"{what} at {shown}{more} (1-based cassette positions)", tuple(violations)
    )


# ---------------------------------------------------------------------------- checkers


def check_size(
    length: int, limit: int, itrs_nt: int = 0, motif_flanks: Sequence[int] | None = None
) -> Check:
    """The vector genome, ITR to ITR inclusive, within the AAV packaging limit: the
    cassette's ``length`` (ITR to ITR when it holds them) plus ``itrs_nt`` for ITRs it does
    not hold, said in the reason. ``motif_flanks``: the lengths of its two flanks when they
    were taken for its ITRs by :func:`itr_flanks` (not annotated): each then gets added what
    it lacks of ``itrs_nt`` / 2 (:func:`itr_shortfall`), so a truncated ITR, or the bare
    28-nt motif, is not counted as a whole one."""
    if motif_flanks is not None:
        added = itr_shortfall(motif_flanks, itrs_nt)
        held = " and ".join(f"{n:,}" for n in motif_flanks)
        what = f"{length:,} nt (flanks of {held} nt holding AAV2's ITR motif, taken for its ITRs)"
        if added:
            what = (
                f"{length:,} nt + {added:,} nt its flanks of {held} nt (taken for its ITRs: "
                f"they hold AAV2's ITR motif) lack of two ITRs of {itrs_nt:,} nt together "
                f"(design.constraints.itrs_nt) = {length + added:,} nt"
            )
    else:
        added = itrs_nt
        what = (
            f"{length:,} nt + {itrs_nt:,} nt for the two ITRs the cassette lacks "
            f"(design.constraints.itrs_nt) = {length + itrs_nt:,} nt"
            if itrs_nt
            else f"{length:,} nt"
        )
    size = length + added
    if size <= limit:
        return Check("aav_size", True, f"{what} <= {limit:,} nt packaging limit")
    return Check(
        "aav_size",
        False,
        f"{what} is above the {limit:,}-nt AAV packaging limit",
        (((0, length),),),
    )


def itr_flanks(parts: Mapping[str, str]) -> bool:
    """Whether both flanks hold AAV2's ITR stretch (``AAV2_ITR_MOTIF``, either strand): the
    cassette then runs ITR to ITR, its flanks counted as ITRs at least ``itrs_nt`` / 2 long
    (:func:`itr_shortfall`)."""
    motifs = (AAV2_ITR_MOTIF, reverse_complement(AAV2_ITR_MOTIF))
    return all(any(m in parts.get(f, "") for m in motifs) for f in FLANKS)


def itr_shortfall(flanks: Sequence[int], itrs_nt: int) -> int:
    """The nt two flanks of these lengths (5', 3') lack of two ITRs ``itrs_nt`` long
    together: the 5' one's share ``itrs_nt`` / 2 rounded up, the 3' one's rounded down. A
    flank at least its share long lacks nothing (it may hold more than the ITR: a spacer,
    an enhancer)."""
    shares = (itrs_nt - itrs_nt // 2, itrs_nt // 2)
    return sum(max(0, share - n) for share, n in zip(shares, flanks, strict=True))


def gc_fraction(seq: str) -> float:
    """(G + C) / (A + C + G + T) of ``seq`` (0 when it has none of them)."""
    s = seq.upper()
    acgt = sum(s.count(b) for b in "ACGT")
    return (s.count("G") + s.count("C")) / acgt if acgt else 0.0


def check_gc(seq: str, lo: float, hi: float) -> Check:
    """Overall GC within ``[lo, hi]``."""
    gc = gc_fraction(seq)
    if lo <= gc <= hi:
        return Check("gc_overall", True, f"GC {gc:.3f} within [{lo}, {hi}]")
    return Check("gc_overall", False, f"GC {gc:.3f} outside [{lo}, {hi}]", (((0, len(seq)),),))


def gc_windows(seq: str, window: int) -> np.ndarray:
    """GC fraction of every ``window``-nt window (sliding by one), by start; the whole
    sequence as one window when it is shorter."""
    codes = np.frombuffer(seq.upper().encode("ascii"), dtype=np.uint8)
    gc = np.isin(codes, (ord("G"), ord("C"))).astype(np.int64)
    acgt = np.isin(codes, tuple(map(ord, "ACGT"))).astype(np.int64)
    window = min(window, len(codes))
    cum_gc = np.concatenate([[0], np.cumsum(gc)])
    cum_n = np.concatenate([[0], np.cumsum(acgt)])
    n = cum_n[window:] - cum_n[:-window]
    return (cum_gc[window:] - cum_gc[:-window]) / np.maximum(n, 1)


def check_gc_windows(
    seq: str, window: int, lo: float, hi: float, ignore: Sequence[Span] = ()
) -> Check:
    """Every ``window``-nt sliding window's GC within ``[lo, hi]``, except windows wholly
    inside one of the ``ignore`` spans (the flanks: not counted, not in the range)."""
    values = gc_windows(seq, window)
    width = min(window, len(seq))
    starts = np.arange(len(values))
    counted = np.ones(len(values), dtype=bool)
    for a, b in ignore:
        counted &= ~((starts >= a) & (starts + width <= b))
    skipped = int((~counted).sum())
    values, starts = values[counted], starts[counted]
    if not len(values):
        return Check("gc_window", True, f"every {window}-nt window lies inside the flanks")
    bad = starts[(values < lo - 1e-12) | (values > hi + 1e-12)]
    violations = [((int(i), int(i) + width),) for i in bad]
    if not violations:
        return Check(
            "gc_window",
            True,
            f"{window}-nt windows' GC {values.min():.2f}-{values.max():.2f} within [{lo}, {hi}]"
            + _not_counted(skipped),
        )
    check = _check(
        "gc_window",
        violations,
        f"{len(bad)} {window}-nt window(s) with GC outside [{lo}, {hi}] "
        f"(range {values.min():.2f}-{values.max():.2f}){_not_counted(skipped)}",
        "",
    )
    return check


def motif_pattern(motif: str) -> str:
    """A regular expression for an IUPAC motif (A C G T R Y S W K M B D H V N)."""
    try:
        return "".join(_IUPAC[c] for c in motif.upper())
    except KeyError as err:
        raise InputError(
            None, "design.constraints", f"motif {motif!r}: {err.args[0]!r} is not an IUPAC base"
        ) from None


def find_motif(seq: str, pattern: str, offset: int = 0) -> list[Span]:
    """Spans of every (overlapping) match of the regular expression ``pattern``."""
    return [
        (offset + m.start(), offset + m.start() + len(m.group(1)))
        for m in re.finditer(f"(?=({pattern}))", seq)
    ]


def check_restriction_sites(seq: str, sites: Sequence[str]) -> Check:
    """None of ``sites`` (IUPAC) on either strand."""
    violations, names = [], []
    for site in sites:
        pattern = motif_pattern(site)
        rc_pattern = motif_pattern(reverse_complement(site))
        found = sorted(set(find_motif(seq, pattern)) | set(find_motif(seq, rc_pattern)))
        if found:
            names.append(site)
            violations += [(span,) for span in found]
    return _check(
        "restriction_sites",
        violations,
        f"site(s) {', '.join(names)}",
        f"none of {', '.join(sites)} on either strand" if sites else "no sites given",
    )


def _region_motifs(
    parts: Mapping[str, str], spans: Mapping[str, Span], names: Iterable[str], patterns
) -> list[tuple[Span, ...]]:
    """Every match of ``patterns`` in the region the parts ``names`` make, searched joined
    (adjacent parts as one sequence, so a motif across a part boundary counts), as cassette
    spans."""
    names = set(names)
    segments: list[list] = []  # [start, text] of each run of adjacent named parts
    for name, seq in parts.items():
        if name not in names:
            continue
        a = spans[name][0]
        if segments and segments[-1][0] + len(segments[-1][1]) == a:
            segments[-1][1] += seq
        else:
            segments.append([a, seq])
    out = []
    for a, text in segments:
        for pattern in patterns:
            out += [(s,) for s in find_motif(text, pattern, a)]
    return sorted(set(out))


@dataclass(frozen=True)
class PolyA:
    """A cassette's own polyadenylation signal (:func:`own_polya`): its cassette ``spans``
    (empty: none) and ``source``, one of ``POLYA_SOURCES``."""

    spans: tuple[Span, ...]
    source: str

    def where(self) -> str:
        shown = ", ".join(f"{a + 1}-{b}" for a, b in self.spans)
        return f"{POLYA_SOURCES[self.source]} at {shown} (1-based cassette positions)"


POLYA_SOURCES = {
    "polya": "the polya part",
    "annotated": "the polyA signal annotated in the 3'UTR",
    "utr3_end": f"the signal in the 3'UTR's last {POLYA_WINDOW} nt",
    "none": "none",
}
NO_POLYA = (
    "no polyA signal downstream of the CDS: no polya part, no polyA signal annotated in the "
    f"3'UTR, no {{signals}} in the 3'UTR's last {POLYA_WINDOW} nt"
)


def own_polya(
    parts: Mapping[str, str],
    signals: Sequence[str] = POLYA_SIGNALS,
    site: tuple[int, int] | None = None,
) -> PolyA:
    """The cassette's own polyadenylation signal (module docstring): its ``polya`` part
    (with an annotated ``site`` reaching into it from the 3'UTR, that too); else ``site``
    (``[start, end)`` in the 3'UTR: :attr:`isoflow.constructs.Construct.polya_site`); else
    every match of ``signals`` (and the canonical ``POLYA_SIGNALS``) lying wholly in the
    3'UTR's last ``POLYA_WINDOW`` nt; else none."""
    spans = part_spans(parts)
    u0 = spans.get("utr3", (0, 0))[0]
    at_site = ((u0 + site[0], u0 + site[1]),) if site else ()
    if parts.get("polya"):
        return PolyA((*at_site, spans["polya"]), "polya")
    if at_site:
        return PolyA(at_site, "annotated")
    utr3 = parts.get("utr3", "")
    lo = max(0, len(utr3) - POLYA_WINDOW)
    found = sorted(
        {
            span
            for motif in dict.fromkeys([*POLYA_SIGNALS, *signals])
            for span in find_motif(utr3[lo:], motif_pattern(motif), u0 + lo)
        }
    )
    return PolyA(tuple(found), "utr3_end") if found else PolyA((), "none")


def check_polya_signals(
    parts: Mapping[str, str],
    spans: Mapping[str, Span],
    signals: Sequence[str],
    own: Sequence[Span] = (),
) -> Check:
    """No polyadenylation signal (sense strand) in the 5'UTR + CDS + 3'UTR read joined (a
    signal across a junction counts), except one lying wholly in the cassette's ``own``
    signal's spans."""
    found = _region_motifs(parts, spans, TRANSCRIBED, [motif_pattern(s) for s in signals])
    violations = [v for v in found if not _within(v, own)]
    skipped = len(found) - len(violations)
    note = f" ({skipped} in the cassette's own polyA signal not counted)" if skipped else ""
    return _check(
        "polya_signals",
        violations,
        f"cryptic polyA signal(s) {'/'.join(signals)} in the UTRs or CDS{note}",
        f"no {'/'.join(signals)} in the UTRs or CDS{note}",
    )


def check_polya_present(
    parts: Mapping[str, str],
    reference: Mapping[str, str],
    polya: PolyA,
    required: bool = True,
    signals: Sequence[str] = POLYA_SIGNALS,
) -> Check:
    """The cassette keeps its own polyA signal downstream of the CDS (``polya``, found on
    the start ``reference``): its polya part, or the start's bases at the signal's spans.
    A start without one fails (passes, the reason saying so, when not ``required``)."""
    if polya.source == "none":
        missing = NO_POLYA.format(signals="/".join(dict.fromkeys([*POLYA_SIGNALS, *signals])))
        if required:
            return Check("polya_present", False, missing)
        return Check("polya_present", True, f"not required (polya_present: false); {missing}")
    seq, ref = "".join(parts.values()), "".join(reference.values())
    changed = [(a, b) for a, b in polya.spans if seq[a:b] != ref[a:b]]
    if changed:
        return Check(
            "polya_present",
            False,
            f"the start's own polyA signal, {polya.where()}, changed",
            (tuple(changed),),
        )
    return Check("polya_present", True, f"{polya.where()}, as in the start")


def check_upstream_atg(parts: Mapping[str, str], spans: Mapping[str, Span]) -> Check:
    """No ATG in the 5'UTR."""
    violations = _region_motifs(parts, spans, ("utr5",), ["ATG"])
    return _check("upstream_atg", violations, "ATG(s) in the 5'UTR", "no ATG in the 5'UTR")


def check_splice_sites(parts: Mapping[str, str], spans: Mapping[str, Span]) -> Check:
    """No consensus splice donor (``MAG|GTRAGT``) or acceptor (``Y10NCAG|G``) in the
    transcribed region (5'UTR + CDS + 3'UTR read joined, sense strand)."""
    violations = _region_motifs(parts, spans, TRANSCRIBED, [SPLICE_DONOR, SPLICE_ACCEPTOR])
    return _check(
        "splice_sites",
        violations,
        "consensus splice site(s) (donor MAGGTRAGT / acceptor Y10NCAGG) in the UTRs or CDS",
        "no consensus splice donor or acceptor in the UTRs or CDS",
    )


def check_homopolymers(seq: str, max_len: int, ignore: Sequence[Span] = ()) -> Check:
    """No run of one base longer than ``max_len`` (one wholly inside an ``ignore`` span, a
    flank, not counted)."""
    runs = [
        ((m.start(), m.end()),)
        for m in re.finditer(r"(A+|C+|G+|T+|N+)", seq)
        if m.end() - m.start() > max_len
    ]
    violations = [v for v in runs if not _within(v, ignore)]
    skipped = _not_counted(len(runs) - len(violations))
    return _check(
        "homopolymers",
        violations,
        f"run(s) of one base longer than {max_len} nt{skipped}",
        f"no run of one base longer than {max_len} nt{skipped}",
    )


def check_repeats(seq: str, min_len: int, ignore: Sequence[Span] = ()) -> Check:
    """No ``min_len``-nt sequence present twice (a violation: all its copies); one whose
    every copy lies wholly inside an ``ignore`` span (the flanks) is not counted, one with a
    copy outside them counts with all its copies."""
    where: dict[str, list[int]] = {}
    for i in range(len(seq) - min_len + 1):
        where.setdefault(seq[i : i + min_len], []).append(i)
    repeats = [
        tuple((i, i + min_len) for i in starts) for starts in where.values() if len(starts) > 1
    ]
    violations = sorted(v for v in repeats if not _within(v, ignore))
    skipped = _not_counted(len(repeats) - len(violations))
    return _check(
        "repeats",
        violations,
        f"{min_len}-nt direct repeat(s){skipped}, copies",
        f"no {min_len}-nt sequence present twice{skipped}",
    )


def check_fixed(seq: str, reference: str, fixed: np.ndarray) -> Check:
    """Every fixed position (``fixed``: bool per cassette position) holds its reference
    base."""
    if len(seq) != len(reference):
        return Check(
            "fixed_positions",
            False,
            f"length {len(seq)} differs from the start's {len(reference)}",
            (((0, len(seq)),),),
        )
    a = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    b = np.frombuffer(reference.encode("ascii"), dtype=np.uint8)
    changed = np.flatnonzero((a != b) & fixed)
    violations = [((int(i), int(i) + 1),) for i in changed]
    return _check(
        "fixed_positions",
        violations,
        "fixed position(s) changed",
        f"all {int(fixed.sum()):,} fixed positions as in the start",
    )


def check_protein(cds: str, protein: str, cds_span: Span) -> Check:
    """The CDS still encodes ``protein`` (synonymous codon changes only)."""
    mine = translate_cds(cds) if cds else ""
    if mine == protein:
        return Check("cds_protein", True, f"CDS encodes the start's {len(protein)}-aa protein")
    first = next(
        (i for i, (x, y) in enumerate(zip(mine, protein, strict=False)) if x != y),
        min(len(mine), len(protein)),
    )
    start = cds_span[0] + 3 * first
    return Check(
        "cds_protein",
        False,
        f"CDS protein differs from the start's at residue {first + 1}",
        (((start, start + 3),),),
    )


# ---------------------------------------------------------------------------- all of them


def part_spans(parts: Mapping[str, str]) -> dict[str, Span]:
    """Part name -> ``[start, end)`` in the joined cassette."""
    out, at = {}, 0
    for name, seq in parts.items():
        out[name] = (at, at + len(seq))
        at += len(seq)
    return out


def check_all(
    parts: Mapping[str, str],
    reference: Mapping[str, str],
    fixed: np.ndarray,
    constraints: Constraints,
    *,
    polya: PolyA | None = None,
    itrs: bool | None = None,
) -> list[Check]:
    """Every constraint (``CONSTRAINTS`` order) on the cassette ``parts`` (part -> sequence,
    cassette order) designed from ``reference`` with ``fixed`` positions. ``polya``: the
    start's own polyA signal (None: :func:`own_polya` of ``reference``, no annotated site);
    ``itrs``: the cassette runs between annotated ITRs, counted whole (False or None: it
    runs ITR to ITR when :func:`itr_flanks` of ``reference``, its flanks counted as ITRs
    at least ``itrs_nt`` / 2 long, else ``itrs_nt`` is added)."""
    seq = "".join(parts.values())
    spans = part_spans(parts)
    flanks = [spans[name] for name in FLANKS if name in spans]
    c = constraints
    if polya is None:
        polya = own_polya(reference, c.polya_signals)
    checks = [
        check_size(len(seq), c.aav_limit, *_itrs(reference, c, itrs)),
        check_gc(seq, c.gc_min, c.gc_max),
        check_gc_windows(seq, c.gc_window, c.gc_window_min, c.gc_window_max, flanks),
        check_restriction_sites(seq, c.restriction_sites),
        check_polya_signals(parts, spans, c.polya_signals, polya.spans),
        check_polya_present(parts, reference, polya, c.polya_present, c.polya_signals),
        check_upstream_atg(parts, spans)
        if c.upstream_atg
        else Check("upstream_atg", True, "not checked (upstream_atg: false)"),
        check_splice_sites(parts, spans)
        if c.splice_sites
        else Check("splice_sites", True, "not checked (splice_sites: false)"),
        check_homopolymers(seq, c.max_homopolymer, flanks),
        check_repeats(seq, c.repeat_min, flanks),
        check_fixed(seq, "".join(reference.values()), fixed),
    ]
    ref_cds = reference.get("cds", "")
    checks.append(
        check_protein(
            parts.get("cds", ""),
            translate_cds(ref_cds) if ref_cds else "",
            spans.get("cds", (0, 0)),
        )
    )
    return checks


def _itrs(
    reference: Mapping[str, str], c: Constraints, itrs: bool | None
) -> tuple[int, tuple[int, int] | None]:
    """``check_size``'s ``itrs_nt`` and ``motif_flanks`` for a start (``itrs``: annotated)."""
    if itrs:
        return 0, None
    if itr_flanks(reference):
        return c.itrs_nt, tuple(len(reference[f]) for f in FLANKS)
    return c.itrs_nt, None


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


# ---------------------------------------------------------------------------- feasibility


def _reachable(n: int, lo: float, hi: float) -> bool:
    """Whether some count k of n makes k / n fall within [lo, hi]."""
    return any(lo - 1e-12 <= k / n <= hi + 1e-12 for k in range(n + 1)) if n else True


def gc_bounds(
    reference: Mapping[str, str], fixed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The GC the cassette's positions can hold: ``(pos_lo, pos_hi, least, most)``. A
    fixed base holds its own (0 or 1); an editable base outside the CDS either. An editable
    CDS codon (its three bases not fixed: ``isoflow.design.make_layout`` fixes a codon with
    a fixed base whole) is one of its synonyms (``SYNONYMS``): per position the least and
    most GC at that position over them, a bound for any stretch (a window). ``least`` /
    ``most``: the whole cassette's fewest and most G + C, each codon taken whole."""
    seq = "".join(reference.values()).upper()
    is_gc = np.isin(np.frombuffer(seq.encode("ascii"), dtype=np.uint8), (ord("G"), ord("C")))
    pos_lo = np.where(fixed, is_gc, 0).astype(np.float64)
    pos_hi = np.where(fixed, is_gc, 1).astype(np.float64)
    least, most = pos_lo.sum(), pos_hi.sum()
    a, b = part_spans(reference).get("cds", (0, 0))
    for i in range(a, b - 2, 3):
        codon = seq[i : i + 3]
        if fixed[i : i + 3].any() or codon not in SYNONYMS:
            continue
        counts = np.array([[x in "GC" for x in syn] for syn in SYNONYMS[codon]], dtype=float)
        least += counts.sum(axis=1).min()  # its free bases were counted 0 above
        most += counts.sum(axis=1).max() - 3  # and 3 (GC) above
        pos_lo[i : i + 3], pos_hi[i : i + 3] = counts.min(axis=0), counts.max(axis=0)
    return pos_lo, pos_hi, int(least), int(most)


def check_feasible(
    reference: Mapping[str, str],
    fixed: np.ndarray,
    constraints: Constraints,
    *,
    polya: PolyA | None = None,
    itrs: bool | None = None,
) -> list[Check]:
    """Raise :class:`InputError` (one line naming ``design.constraints.<name>``) when no
    design can meet a constraint: bounds no sequence can meet (a GC range holding no count
    of the window's or the cassette's bases), a cassette already above the packaging limit
    (designs substitute, never insert or delete), a start without its own polyA signal
    (with ``polya_present``), the GC the cassette or a window the start breaks can reach
    (:func:`gc_bounds`) outside its range, or a
    violation of the start whose spans are all fixed. Returns the start's checks
    (``polya``, ``itrs``: as :func:`check_all`)."""
    c = constraints
    where = "design.constraints"
    seq = "".join(reference.values())

    def fail(name: str, message: str) -> InputError:
        return InputError(None, f"{where}.{name}", f"impossible: {message}")

    for name, lo, hi in (
        ("gc_overall", c.gc_min, c.gc_max),
        ("gc_window", c.gc_window_min, c.gc_window_max),
    ):
        if not 0 <= lo <= hi <= 1:
            raise fail(name, f"GC bounds [{lo}, {hi}] are not 0 <= min <= max <= 1")
    if c.gc_window < 1:
        raise fail("gc_window", f"window of {c.gc_window} nt")
    width = min(c.gc_window, len(seq))
    if not _reachable(width, c.gc_window_min, c.gc_window_max):
        raise fail(
            "gc_window",
            f"no {width}-nt window has a GC fraction within [{c.gc_window_min}, "
            f"{c.gc_window_max}] (GC counts come in steps of 1/{width})",
        )
    if not _reachable(len(seq), c.gc_min, c.gc_max):
        raise fail(
            "gc_overall", f"no {len(seq)}-nt cassette has GC within [{c.gc_min}, {c.gc_max}]"
        )
    if c.max_homopolymer < 1 or c.repeat_min < 2:
        raise fail("homopolymers", "max_homopolymer must be >= 1 and repeat_min >= 2")
    pos_lo, pos_hi, least, most = gc_bounds(reference, fixed)
    n_acgt = max(1, sum(seq.upper().count(b) for b in "ACGT"))
    lo_gc, hi_gc = least / n_acgt, most / n_acgt
    if hi_gc < c.gc_min - 1e-12 or lo_gc > c.gc_max + 1e-12:
        raise fail(
            "gc_overall",
            f"the fixed positions and the synonymous codons an editable CDS can take hold "
            f"the cassette's GC within [{lo_gc:.3f}, {hi_gc:.3f}], outside [{c.gc_min}, "
            f"{c.gc_max}]",
        )
    if c.itrs_nt < 0:
        raise fail("aav_size", f"itrs_nt must be >= 0, not {c.itrs_nt}")
    checks = check_all(reference, reference, fixed, c, polya=polya, itrs=itrs)
    if not checks[0].ok:
        added, motif = _itrs(reference, c, itrs)
        short = itr_shortfall(motif, c.itrs_nt) if motif else added
        hint = (
            ""
            if not short
            else "; if its flanks hold its whole ITRs, set itrs_nt: 0 (or annotate the ITRs "
            "in a GenBank start)"
            if motif
            else "; if its flanks hold its ITRs, set itrs_nt: 0"
        )
        raise fail("aav_size", f"the start is {checks[0].reason}; designs keep its length{hint}")
    present = {ch.name: ch for ch in checks}["polya_present"]
    if not present.ok:
        raise fail(
            "polya_present",
            f"the start has {present.reason}, so every design would lack one; add its "
            "polyA signal (a TSV polya column, or a GenBank polyA_signal feature), or set "
            "design.constraints.polya_present: false to design it without one",
        )
    window = {ch.name: ch for ch in checks}["gc_window"]
    cum_lo = np.concatenate([[0], np.cumsum(pos_lo)])
    cum_hi = np.concatenate([[0], np.cumsum(pos_hi)])
    acgt = np.isin(
        np.frombuffer(seq.upper().encode("ascii"), dtype=np.uint8), tuple(map(ord, "ACGT"))
    )
    cum_n = np.concatenate([[0], np.cumsum(acgt)])
    for ((a, b),) in window.violations:
        n = max(1, cum_n[b] - cum_n[a])
        lo, hi = (cum_lo[b] - cum_lo[a]) / n, (cum_hi[b] - cum_hi[a]) / n
        if hi < c.gc_window_min - 1e-12 or lo > c.gc_window_max + 1e-12:
            raise fail(
                "gc_window",
                f"the start's window at {a + 1}-{b} (1-based cassette positions) can reach GC "
                f"{lo:.3f}-{hi:.3f} at most (its fixed bases and the synonymous codons an "
                f"editable CDS can take), outside [{c.gc_window_min}, {c.gc_window_max}]; "
                "make a part there editable or relax the constraint",
            )
    cum = np.concatenate([[0], np.cumsum(~fixed)])
    for check in checks:
        if check.name in ("aav_size", "gc_overall"):
            continue
        for spans in check.violations:
            if all(cum[b] - cum[a] == 0 for a, b in spans):
                shown = ", ".join(f"{a + 1}-{b}" for a, b in spans)
                raise fail(
                    check.name,
                    f"the start violates it at {shown} (1-based cassette positions), all fixed: "
                    f"{check.reason}; make a part there editable or relax the constraint",
                )
    return checks
