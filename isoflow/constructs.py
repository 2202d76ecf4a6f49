"""Expression constructs (cassettes) read from a TSV or GenBank files, checked, and turned
into the three inputs a trained model reads: a TSS-centred DNA window, the RNA, the protein.

Torch-free (numpy through :mod:`isoflow.alphabet`; Biopython only for GenBank files).
docs/constructs.md is the user's page; DESIGN.md ("Constructs") the contract.

A construct is an ordered set of parts, 5'->3' on its sense strand (``PARTS``)::

    upstream | promoter | utr5 | cds | utr3 | polya | downstream
                        ^ TSS: the promoter/5'UTR junction

``promoter``, ``utr5``, ``cds`` and ``utr3`` are required; ``polya`` (the polyadenylation
signal, DNA) and the flanks are optional. The model inputs (:func:`construct_inputs`):

* DNA: ``window`` bases read 5'->3' on the cassette's sense strand with the TSS (first base
  of the 5'UTR) at 0-based index ``window // 2`` -- the training windows' convention
  (:func:`isoflow.sequences.window_bounds`) -- the rest ``N`` or a background sequence;
* RNA: 5'UTR + CDS + 3'UTR (GENCODE transcripts end at the cleavage site, without a tail;
  ``polya_in_rna`` / ``polya_tail`` add the polyA part / a run of A);
* protein: the CDS translated with the standard code (NCBI table 1), the stop dropped.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from isoflow.alphabet import reverse_complement, translate_cds
from isoflow.errors import InputError, close_matches, non_utf8_error, not_text

log = logging.getLogger("isoflow.constructs")

# A warning about one construct carries its id in the log record (``extra``), so a caller
# collecting them (isoflow.score.read_with_warnings: the scores' warnings column) files it
# under that construct whatever its wording.
CONSTRUCT_FIELD = "construct_id"


def warn_construct(cid: str, message: str, *args: Any) -> None:
    """``log.warning(message, *args)`` filed under construct ``cid``."""
    log.warning(message, *args, extra={CONSTRUCT_FIELD: cid})


# Part names in cassette order (5'->3'), the required ones, and the TSV columns.
PARTS = ("upstream", "promoter", "utr5", "cds", "utr3", "polya", "downstream")
REQUIRED_PARTS = ("promoter", "utr5", "cds", "utr3")
ID_COLUMN = "id"
TSV_COLUMNS = (ID_COLUMN, *PARTS)
GENBANK_SUFFIXES = (".gb", ".gbk", ".genbank")

# The AAV packaging limit, ITR to ITR inclusive: the wild-type AAV2 genome (NC_001401,
# 4,679 nt with its ITRs), rounded; packaging falls off above about 5 kb (Wu, Yang &
# Colosi 2010, Mol Ther 18:80).
AAV_LIMIT = 4700
AAV_LIMIT_ACTIONS = ("warn", "error")

STOP_CODONS = ("TAA", "TAG", "TGA")
_NOT_DNA = re.compile(r"[^ACGTNacgtn]")
# "ITR" as a word of its own, ended by anything but a letter -- `_`, a digit, a quote or a
# dash as well as a space (ITR_L, AAV2_ITR, ITR2, 5'ITR, L-ITR) -- with a plural (ITRs),
# one lower-case prefix letter (mITR, dITR), wt/sc/flip/flop/AAV (wtITR, scITR, flipITR,
# AAV2ITR) or a side (LITR, ITRR, ITRleft); not inside a word (ITRAQ, nitrate, citrate).
# Or "inverted terminal repeat" in any case and spacing. Read in /label, /standard_name and
# /rpt_type; in /note only where that makes the pair (a note may merely mention them).
_ITR_LABEL = re.compile(
    r"(?<![A-Za-z])(?:(?:[a-z]|[LR]|wt|sc|flip|flop|AAV\d*)?ITR(?:s|S|[LR]|[Ll]eft|[Rr]ight)?"
    r"|[Ii]trs?)(?![A-Za-z])"
    r"|(?i:inverted[\s_-]*terminal[\s_-]*repeats?)"
)
# How ITR features are recognised, for the warning when a record shows none.
_ITR_LABELS_HELP = (
    "an ITR is a repeat_region or misc_feature whose /label, /standard_name or /rpt_type "
    "holds ITR as a word of its own (ITR, ITRs, ITR_L, AAV2_ITR, 5'ITR, L-ITR, ITR2, mITR, "
    "wtITR, flipITR) or 'inverted terminal repeat' (or whose /note does, where no two are "
    "named so), or, with none such, one of two repeat_regions with /rpt_type=inverted "
    "around the cassette"
)
# GenBank feature type (or regulatory_class of a `regulatory` feature) -> part name.
GENBANK_TYPES = {
    "promoter": "promoter",
    "5'UTR": "utr5",
    "CDS": "cds",
    "3'UTR": "utr3",
    "polyA_signal": "polya",
}
GENBANK_REGULATORY = {"promoter": "promoter", "polyA_signal_sequence": "polya"}
ITR_TYPES = ("repeat_region", "misc_feature")
# A `misc_feature` with /label "upstream" or "downstream" (not an ITR): a flank of a record
# without ITRs (as isoflow design writes a cassette whose flanks end at no annotated ITR).
FLANK_PARTS = ("upstream", "downstream")
_PART_LABELS = {
    "promoter": "promoter",
    "utr5": "5'UTR",
    "cds": "CDS",
    "utr3": "3'UTR",
    "polya": "polyA_signal",
    "upstream": "upstream misc_feature",
    "downstream": "downstream misc_feature",
}


@dataclass(frozen=True)
class ModelInputs:
    """What a model scores: ``dna`` (``window`` letters, 5'->3' on the transcript's strand,
    TSS at index ``window // 2``), ``rna`` (5'->3'), ``protein`` (``""`` when none)."""

    id: str
    dna: str
    rna: str
    protein: str


@dataclass(frozen=True)
class Construct:
    """One cassette: ``parts`` (part name -> upper-case sequence, in ``PARTS`` order, absent
    optional parts left out), ``source`` (``file:line`` or ``file:record``, for messages),
    ``extra`` (a TSV's other columns, as text), ``itrs`` (True when the flanks end at
    annotated AAV ITRs, so the cassette runs from ITR to ITR inclusive), ``polya_site``
    (``[start, end)`` offsets in the 3'UTR of an annotated polyA signal lying in it, e.g. an
    NCBI record's ``polyA_signal`` inside its ``3'UTR``: the cassette's own signal, which
    ``isoflow design`` neither counts as cryptic nor edits; None when none is annotated
    there)."""

    id: str
    parts: Mapping[str, str]
    source: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    itrs: bool = False
    polya_site: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown part(s) {sorted(unknown)}; parts are {PARTS}")
        ordered = {name: self.parts[name].upper() for name in PARTS if self.parts.get(name)}
        object.__setattr__(self, "parts", MappingProxyType(ordered))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        if self.polya_site is not None:
            a, b = map(int, self.polya_site)
            n = len(ordered.get("utr3", ""))
            if not 0 <= a < b <= n:
                raise ValueError(f"polya_site {self.polya_site} is not a span of the {n}-nt 3'UTR")
            if ordered.get("polya") and b < n:
                raise ValueError(
                    "polya_site inside the 3'UTR and a polya part: one polyA signal per "
                    "cassette (a site may only run on into the polya part)"
                )
            object.__setattr__(self, "polya_site", (a, b))

    @property
    def cassette(self) -> str:
        """The parts joined 5'->3'."""
        return "".join(self.parts.values())

    @property
    def spans(self) -> dict[str, tuple[int, int]]:
        """Part name -> ``[start, end)`` offsets in :attr:`cassette`."""
        out, at = {}, 0
        for name, seq in self.parts.items():
            out[name] = (at, at + len(seq))
            at += len(seq)
        return out

    @property
    def tss(self) -> int:
        """Offset in :attr:`cassette` of the first 5'UTR base (the promoter/5'UTR junction)."""
        return len(self.parts.get("upstream", "")) + len(self.parts.get("promoter", ""))

    @property
    def rna(self) -> str:
        """The transcript: 5'UTR + CDS + 3'UTR (no polyA signal part, no tail)."""
        return "".join(self.parts.get(name, "") for name in ("utr5", "cds", "utr3"))

    @property
    def protein(self) -> str:
        """The CDS translated with the standard code (table 1), terminal stop dropped."""
        cds = self.parts.get("cds", "")
        return translate_cds(cds) if cds else ""


# --- the three model inputs -------------------------------------------------------------


def check_placement(
    window: int,
    *,
    fill: str = "N",
    background: str | None = None,
    polya_tail: int = 0,
    background_path: str | os.PathLike | None = None,
) -> None:
    """What :func:`construct_inputs` needs of the placement, checked once before any
    construct is placed: one :class:`InputError` naming the option (``fill``,
    ``polya_tail``; ``isoflow`` commands show the flag) or the background FASTA, not the
    first construct (a short background was blamed on it)."""
    if polya_tail < 0:
        raise InputError("polya_tail", None, f"must be >= 0, not {polya_tail}")
    if background is None:
        if len(fill) != 1 or _NOT_DNA.search(fill):
            raise InputError("fill", None, f"one letter of A, C, G, T, N, not {fill!r}")
        return
    where = background_path if background_path is not None else "background"
    bad = _NOT_DNA.search(background)
    if bad:
        raise InputError(
            where, None, f"{bad.group()!r} at position {bad.start() + 1} is not A, C, G, T or N"
        )
    if len(background) < window:
        raise InputError(
            where,
            None,
            f"the background is {len(background):,} nt, shorter than the model's {window:,}-nt "
            "DNA window; give one at least as long as the window",
        )


def construct_inputs(
    construct: Construct,
    *,
    window: int,
    fill: str = "N",
    background: str | None = None,
    polya_in_rna: bool = False,
    polya_tail: int = 0,
    reads_dna: bool = True,
) -> ModelInputs:
    """The DNA window, RNA and protein of ``construct`` (docs/constructs.md).

    DNA: the cassette as given (its sense strand is the window's 5'->3' strand) with its TSS
    at index ``window // 2``; window positions the cassette does not reach hold ``fill`` (one
    letter, ``N`` by default: the encoders' unknown base) or, with ``background``, that
    sequence: its centre base (index ``len(background) // 2``) sits at the TSS, the cassette
    is pasted over it, so the background must be at least ``window`` long; its own strand is
    the cassette's. A cassette reaching past the window is cut to it (a warning names what
    is kept; not with ``reads_dna`` False: no model that takes the inputs reads DNA). RNA:
    5'UTR + CDS + 3'UTR, then the polyA part with ``polya_in_rna``, then
    ``polya_tail`` A's. Protein: :attr:`Construct.protein`.
    """
    if window < 1:
        raise ValueError(f"window must be a positive number of bases, not {window}")
    if polya_tail < 0:
        raise ValueError(f"polya_tail must be >= 0, not {polya_tail}")
    centre = window // 2
    cassette, tss = construct.cassette, construct.tss
    first = tss - centre  # cassette offset of window index 0
    if background is None:
        if len(fill) != 1 or _NOT_DNA.search(fill):
            raise ValueError(f"fill must be one letter of A, C, G, T, N, not {fill!r}")
        ground = fill.upper() * window
    else:
        bad = _NOT_DNA.search(background)
        if bad:
            raise ValueError(
                f"background: {bad.group()!r} at position {bad.start() + 1} is not A, C, G, T or N"
            )
        if len(background) < window:
            raise ValueError(
                f"background is {len(background):,} nt, shorter than the {window:,}-nt DNA "
                "window; give one at least as long as the window"
            )
        mid = len(background) // 2
        ground = background[mid - centre : mid - centre + window].upper()
    lo, hi = max(0, first), min(len(cassette), first + window)
    if reads_dna and (lo > 0 or hi < len(cassette)):
        warn_construct(
            construct.id,
            "construct %r: the %s-nt cassette runs past the %s-nt DNA window; the window "
            "holds cassette bases %d-%d (1-based, TSS at %d), %s nt upstream of the TSS and "
            "%s from it",
            construct.id,
            f"{len(cassette):,}",
            f"{window:,}",
            lo + 1,
            hi,
            tss + 1,
            f"{tss - lo:,}",
            f"{hi - tss:,}",
        )
    dna = ground[: lo - first] + cassette[lo:hi] + ground[hi - first :]
    rna = construct.rna
    if polya_in_rna:
        rna += construct.parts.get("polya", "")
    rna += "A" * polya_tail
    return ModelInputs(construct.id, dna, rna, construct.protein)


# --- reading ----------------------------------------------------------------------------


def read_constructs(
    path: str | os.PathLike,
    *,
    allow_noncanonical_cds: bool = False,
    aav: bool = False,
    aav_limit: int = AAV_LIMIT,
    aav_limit_action: str = "warn",
) -> list[Construct]:
    """Constructs from a TSV, a GenBank file (one or many records) or a folder of GenBank
    files (:func:`genbank_files`, read in name order), each checked (:func:`check_construct`).

    A bad input raises :class:`InputError` (one line: file, line or record, the part, the
    fix). ``aav``: every construct is an AAV cassette, its whole length checked against
    ``aav_limit`` even without annotated ITRs (a GenBank record with two ITR features is
    always checked, ITR to ITR inclusive); above it, ``aav_limit_action`` ``warn`` logs a
    warning and ``error`` raises.
    """
    if aav_limit_action not in AAV_LIMIT_ACTIONS:
        raise ValueError(
            f"aav_limit_action must be one of {AAV_LIMIT_ACTIONS}, not {aav_limit_action!r}"
        )
    path = Path(path)
    if path.is_dir():
        files = genbank_files(path)
        if not files:
            raise InputError(
                path,
                None,
                f"no GenBank files (named {', '.join(GENBANK_SUFFIXES)} or starting with "
                "LOCUS) in this folder",
            )
        constructs = [c for f in files for c in _read_genbank(f)]
    elif _is_genbank(path):
        constructs = _read_genbank(path)
    else:
        constructs = _read_tsv(path)
    seen: dict[str, str] = {}
    for c in constructs:
        if c.id in seen:
            file, _, record = c.source.rpartition(":")
            raise InputError(
                file,
                record,
                f"construct id {c.id!r} is already used by {seen[c.id]}; give each "
                "construct its own id",
            )
        seen[c.id] = c.source
        check_construct(
            c,
            allow_noncanonical_cds=allow_noncanonical_cds,
            aav=aav,
            aav_limit=aav_limit,
            aav_limit_action=aav_limit_action,
        )
    return constructs


def check_construct(
    construct: Construct,
    *,
    allow_noncanonical_cds: bool = False,
    aav: bool = False,
    aav_limit: int = AAV_LIMIT,
    aav_limit_action: str = "warn",
) -> None:
    """Raise :class:`InputError` for the first rule ``construct`` breaks (required parts,
    alphabet, CDS shape unless ``allow_noncanonical_cds``, AAV size with action ``error``);
    log the AAV size warning with action ``warn``."""
    file, _, record = construct.source.rpartition(":")
    if not file:
        file, record = construct.source or None, None

    def fail(message: str) -> InputError:
        return InputError(file, record, f"construct {construct.id!r} {message}")

    for name in REQUIRED_PARTS:
        if not construct.parts.get(name):
            raise fail(
                f"has no {name}: the parts {', '.join(REQUIRED_PARTS)} are required and must "
                "not be empty"
            )
    for name, seq in construct.parts.items():
        bad = _NOT_DNA.search(seq)
        if bad:
            raise fail(
                f"part {name}: {bad.group()!r} at position {bad.start() + 1} is not A, C, G, T "
                "or N (case-insensitive); replace it (other IUPAC codes are not read)"
            )
    if not allow_noncanonical_cds:
        problem = cds_problem(construct.parts["cds"])
        if problem:
            raise fail(
                f"part cds: {problem}; fix the CDS (only scoring takes one as it is: "
                "allow_noncanonical_cds)"
            )
    if construct.itrs or aav:
        size = len(construct.cassette)
        if size > aav_limit:
            what = (
                "between the ITRs (inclusive)"
                if construct.itrs
                else "(all parts and flanks, no ITRs annotated)"
            )
            message = (
                f"cassette {what} is {size:,} nt, above the AAV packaging limit of "
                f"{aav_limit:,} nt; shorten it, or raise aav_limit if your vector packs more"
            )
            if aav_limit_action == "error":
                raise fail(message)
            warn_construct(construct.id, "%s", fail(message))


def cds_problem(cds: str) -> str | None:
    """What makes ``cds`` not a canonical ORF (ATG ... one terminal stop, length a multiple
    of 3), or None."""
    cds = cds.upper()
    if len(cds) % 3:
        return f"length {len(cds)} is not a multiple of 3"
    if not cds.startswith("ATG"):
        return f"starts with {cds[:3]!r}, not ATG"
    codons = [cds[i : i + 3] for i in range(0, len(cds), 3)]
    for i, codon in enumerate(codons[:-1]):
        if codon in STOP_CODONS:
            return (
                f"in-frame stop {codon} at codon {i + 1} (position {3 * i + 1}) before the "
                "end; a CDS has exactly one stop, its last codon"
            )
    if codons[-1] not in STOP_CODONS:
        return f"does not end with a stop codon ({', '.join(STOP_CODONS)}): last codon {codons[-1]}"
    return None


def read_background(path: str | os.PathLike) -> str:
    """The one sequence of a FASTA file, upper case (a DNA background for
    :func:`construct_inputs`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith(">")]
    if len(headers) != 1 or headers[0] != 0:
        raise InputError(
            path, None, f"a background FASTA holds one record; found {len(headers)} '>' lines"
        )
    seq = "".join(line.strip() for line in lines[1:])
    bad = _NOT_DNA.search(seq)
    if bad:
        raise InputError(
            path,
            lines[0][1:].split()[0] if lines[0][1:].strip() else None,
            f"{bad.group()!r} at position {bad.start() + 1} is not A, C, G, T or N",
        )
    return seq.upper()


def aav_limit_ignored(path: str | os.PathLike, *, aav: bool, aav_limit: int | None) -> bool:
    """Whether ``aav_limit``, given (not None) without ``aav``, would check nothing in the
    constructs at ``path``: a table (TSV) has no ITR annotation, and only ``aav`` checks a
    cassette without it (a GenBank record with two ITRs is checked without ``aav``). What
    ``isoflow score`` and the config check refuse, before any work."""
    if aav_limit is None or aav:
        return False
    path = Path(path)
    return not path.is_dir() and not _is_genbank(path)


def genbank_files(folder: Path) -> list[Path]:
    """The GenBank files of ``folder`` in name order, each known as a single file is
    (:func:`_is_genbank`: a ``GENBANK_SUFFIXES`` name, or a first line starting ``LOCUS``,
    so a ``.gbff`` is read); every other entry but a hidden one (``.name``) is a warning
    naming it. A ``.gbff`` was skipped without a word, though read when given alone."""
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and _is_genbank(entry):
            files.append(entry)
        else:
            log.warning(
                "%s: skipped: not a GenBank file (named %s, or starting with LOCUS); a folder "
                "of constructs is read for its GenBank files only",
                entry,
                ", ".join(GENBANK_SUFFIXES),
            )
    return files


def _is_genbank(path: Path) -> bool:
    if path.suffix.lower() in GENBANK_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(5) == b"LOCUS"
    except OSError:
        return False


# --- TSV --------------------------------------------------------------------------------


def header_columns(
    path: Path, line: int, names: Sequence[str], reserved: Sequence[str]
) -> dict[str, int]:
    """Column -> position of a table's header: the ``reserved`` names read in any case (as
    lower case), every other name as written; an empty name or a name twice is an
    :class:`InputError` naming ``path`` and ``line``."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            raise InputError(path, line, f"column {i + 1} of the header is empty")
        key = name.lower() if name.lower() in reserved else name
        if key in index:
            raise InputError(path, line, f"column {name!r} appears twice in the header")
        index[key] = i
    return index


def table_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """The rows of a tab-separated table's ``text`` that are not blank, each with its line
    number: every line split on its tabs, so a line is a row and a cell has no length limit
    (csv's is 131,072 characters: a full cassette is longer). A cell wholly inside quotes,
    a quote in it doubled (``"c1"``, ``"5"" ITR"``; R's ``write.table``, spreadsheets) is
    read as its text; a cell that starts with a quote that does not close it (``"c1 special``,
    ``"AAV9" CAG``) is an :class:`InputError` naming the line and column: csv read such a
    quote as the start of a field that swallowed the tabs and lines after it (a bare
    ``_csv.Error``, or another id: ``AAV9 CAG``). A quote elsewhere in a cell is a character
    of it (``5" end``). A NUL character is an :class:`InputError` naming the line."""
    what = not_text(text[:64])
    if what:
        raise InputError(path, None, what)
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if "\0" in line:
            raise InputError(
                path, number, "a NUL character: not a text table (a binary or UTF-16 file?)"
            )
        row = [
            _unquoted(path, number, column, cell) for column, cell in enumerate(line.split("\t"), 1)
        ]
        if any(cell.strip() for cell in row):
            rows.append((number, row))
    return rows


def _unquoted(path: Path, line: int, column: int, cell: str) -> str:
    text = cell.strip()
    if not text.startswith('"'):
        return cell
    inner = text[1:-1]
    if len(text) >= 2 and text.endswith('"') and '"' not in inner.replace('""', ""):
        return inner.replace('""', '"')
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise InputError(
        path,
        line,
        f"column {column}: {shown!r} starts with a quote that does not enclose the cell (an "
        'unclosed quote?); a quoted cell is wholly inside "...", a quote in it doubled (""): '
        "remove the quote, or quote the whole cell",
    )


def _quoted(cell: str) -> str:
    """A cell as :func:`table_rows` reads it back: one that starts with a quote, quoted."""
    return '"' + cell.replace('"', '""') + '"' if cell.strip().startswith('"') else cell


def table_id(path: Path, line: int, cell: str) -> str:
    """A construct id from a table's cell: stripped, not empty."""
    cid = cell.strip()
    if not cid:
        raise InputError(path, line, "empty id; give each construct an id")
    return cid


def _read_tsv(path: Path) -> list[Construct]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Excel's byte order mark
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except OSError as err:
        raise InputError(path, None, f"cannot read the construct table: {err}") from None
    expected = (
        f"a tab-separated header with {', '.join(TSV_COLUMNS[:1] + REQUIRED_PARTS)} "
        "(optional polya, upstream, downstream; other columns are kept) and one row per "
        "construct"
    )
    rows = table_rows(path, text)
    if not rows:
        raise InputError(path, None, f"empty file; expected {expected}")
    header_line, header = rows[0]
    names = [cell.strip() for cell in header]
    named = header_columns(path, header_line, names, TSV_COLUMNS)
    columns = {key: i for key, i in named.items() if key in TSV_COLUMNS}
    extra = {key: i for key, i in named.items() if key not in TSV_COLUMNS}
    missing = [c for c in (ID_COLUMN, *REQUIRED_PARTS) if c not in columns]
    if missing:
        hints = []
        for name in missing:
            close = close_matches(name, extra, cutoff=0.6)
            if close:
                hints.append(f"{close[0]!r} for {name!r}?")
        hint = f" (did you mean {', '.join(hints)})" if hints else ""
        raise InputError(
            path,
            header_line,
            f"header lacks column(s) {', '.join(missing)}{hint}; expected {expected}",
        )
    for name in extra:
        close = close_matches(name, PARTS, cutoff=0.75)
        if close and close[0] not in columns:
            log.warning(
                "%s:%d: column %r is kept as an extra column, not read as a part; rename it "
                "%r if it holds that part",
                path,
                header_line,
                name,
                close[0],
            )
    constructs = []
    for number, row in rows[1:]:
        if len(row) != len(names):
            raise InputError(
                path,
                number,
                f"{len(row)} fields, the header has {len(names)}; every row needs one "
                "(possibly empty) field per column, tab-separated",
            )
        cid = table_id(path, number, row[columns[ID_COLUMN]])
        parts = {p: row[i].strip().upper() for p, i in columns.items() if p != ID_COLUMN}
        constructs.append(
            Construct(
                cid,
                {p: s for p, s in parts.items() if s},
                f"{path}:{number}",
                {name: row[i].strip() for name, i in extra.items()},
            )
        )
    if not constructs:
        raise InputError(path, None, f"a header but no construct rows; expected {expected}")
    return constructs


# --- GenBank ----------------------------------------------------------------------------


def _read_genbank(path: Path) -> list[Construct]:
    import warnings

    from Bio import BiopythonParserWarning, SeqIO  # Biopython: only GenBank needs it

    try:
        # -sig: a byte order mark (a Windows editor's) made the first LOCUS line unseen
        with (
            open(path, encoding="utf-8-sig") as handle,
            warnings.catch_warnings(record=True) as seen,
        ):
            warnings.simplefilter("always", BiopythonParserWarning)
            records = list(SeqIO.parse(handle, "genbank"))
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except (ValueError, AssertionError) as err:
        raise InputError(path, None, f"not a GenBank file Biopython can read: {err}") from None
    texts = [str(w.message) for w in seen if issubclass(w.category, BiopythonParserWarning)]
    # a truncated file: Biopython warns and reads the sequence it found, which cut parts
    # would then be blamed on (e.g. "has no utr5"); an error naming the cause instead
    cut = [t for t in texts if t.startswith("Expected sequence length")]
    cut = cut or [t for t in texts if t.startswith("Premature end")]
    if cut:
        raise InputError(
            path, None, f"{cut[0].rstrip('.')}: the file is cut short or damaged; write it again"
        )
    for text in texts:
        log.warning("%s: %s", path, text)
    for w in seen:  # anything else Biopython or others warned of, as before
        if not issubclass(w.category, BiopythonParserWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not records:
        raise InputError(path, None, "empty file: no GenBank records (LOCUS ... //)")
    out = []
    for index, record in enumerate(records):
        name = record.name if record.name not in ("", ".", "<unknown name>") else None
        cid = name or (path.stem if len(records) == 1 else f"{path.stem}_{index + 1}")
        out.append(_genbank_construct(record, cid, path))
    return out


def _label(feature) -> str:
    for key in ("label", "gene", "product", "note", "standard_name"):
        if feature.qualifiers.get(key):
            return str(feature.qualifiers[key][0])
    return feature.type


def _genbank_part(feature) -> str | None:
    if feature.type in GENBANK_TYPES:
        return GENBANK_TYPES[feature.type]
    if feature.type == "regulatory":
        for cls in feature.qualifiers.get("regulatory_class", []):
            if cls in GENBANK_REGULATORY:
                return GENBANK_REGULATORY[cls]
    if feature.type in ITR_TYPES:

        def says_itr(*keys: str) -> bool:
            text = " ".join(str(v) for k in keys for v in feature.qualifiers.get(k, []))
            return bool(_ITR_LABEL.search(text))

        if says_itr("label", "standard_name", "rpt_type"):
            return "itr"
        if says_itr("note"):  # a note that names the ITRs may only mention them
            return "itr_note"
        rpt_types = [str(v).strip().lower() for v in feature.qualifiers.get("rpt_type", [])]
        if feature.type == "repeat_region" and "inverted" in rpt_types:
            return "inverted"  # an ITR when it is one of two around the cassette
    if feature.type == "misc_feature":
        label = str((feature.qualifiers.get("label") or [""])[0]).strip().lower()
        if label in FLANK_PARTS:
            return label
    return None


def _location(feature) -> str:
    """A feature's location 1-based, as the file writes it: ``850..1569``, or for a compound
    one ``join(2616..2915,1..306)`` (its pieces in file order), not its hull."""
    location = feature.location
    pieces = list(location.parts)
    if len(pieces) == 1:
        return f"{int(location.start) + 1}..{int(location.end)}"
    if location.strand == -1:  # Biopython lists a complement(join(...))'s pieces 3'->5'
        pieces.reverse()
    return "join(" + ",".join(f"{int(p.start) + 1}..{int(p.end)}" for p in pieces) + ")"


def _where(feature) -> str:
    return f"{_label(feature)!r} {_location(feature)}"


@dataclass(frozen=True)
class _Map:
    """How a record is read: its length, whether it is circular, and whether on its minus
    strand (``flip``: coordinates are the reverse complement's, the cassette's sense strand,
    while messages name the file's)."""

    length: int
    circular: bool
    flip: bool = False

    def base(self, x: int) -> int:
        """The file's 1-based position of the base the reader has at ``x`` (0-based; past
        the length across the origin)."""
        x %= self.length
        return self.length - x if self.flip else x + 1

    def span(self, lo: int, hi: int) -> str:
        """The file's ``a..b`` of the reader's ``[lo, hi)``."""
        a, b = self.base(lo), self.base(hi - 1)
        return f"{b}..{a}" if self.flip else f"{a}..{b}"


class _Placed(NamedTuple):
    """A feature the reader cuts a part at, as the reader sees it (:class:`_Map`): bounds
    0-based, half-open, on the cassette's sense strand; on a circular map read across its
    origin, past the sequence's length (the sequence read twice). ``pieces``: its spans,
    an origin crossing joined (> 1: a join); ``crossing``: one span across the origin."""

    feature: Any
    start: int
    end: int
    strand: int | None
    pieces: int
    crossing: bool


def _placed(feature, where: _Map) -> _Placed:
    length = where.length
    spans = [(int(p.start), int(p.end)) for p in feature.location.parts]
    strand = feature.location.strand
    if where.flip:
        spans = [(length - e, length - s) for s, e in spans]
        strand = -strand if strand else strand
    spans.sort()
    crossing = False
    if where.circular and len(spans) > 1 and spans[0][0] == 0 and spans[-1][1] == length:
        # a piece ending at the last base and one starting at the first: one span
        spans = [*spans[1:-1], (spans[-1][0], length + spans[0][1])]
        crossing = len(spans) == 1
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return _Placed(feature, start, end, strand, len(spans), crossing)


def _genbank_features(record, where: _Map) -> dict[str, list[_Placed]]:
    """Part (or ``itr``, ``inverted``: an unlabelled inverted repeat) -> its features, each
    at its hull (a split one's pieces are checked where it is kept: :func:`_refuse_split`)."""
    found: dict[str, list[_Placed]] = {}
    for feature in record.features:
        part = _genbank_part(feature)
        if part is not None:
            found.setdefault(part, []).append(_placed(feature, where))
    return found


def _refuse_split(kept, cid: str, path: Path, across: bool) -> None:
    """A feature the cassette reads, in more than one piece (a join; across the origin of
    a circular map unless the cassette is read across it, ``across``), is an error; one the
    reader leaves out (a backbone's AmpR across the origin, outside the ITRs) is not."""
    for part, placed in kept:
        if placed.pieces > 1 or (placed.crossing and not across):
            raise InputError(
                path,
                cid,
                f"{_PART_LABELS.get(part, 'ITR')} feature {_where(placed.feature)} is split (a "
                "join, or across the origin of a circular map); give each part as one span "
                "(rotate a circular map so the cassette does not cross position 1)",
            )


def _between(found, lo: int, hi: int, where: _Map) -> dict[str, list[_Placed]]:
    """The features of ``found`` inside ``[lo, hi)``, re-placed there: on a circular map a
    feature before ``lo`` is reached across the origin (its bounds + the length)."""
    kept: dict[str, list[_Placed]] = {}
    for part, feats in found.items():
        for placed in feats:
            start, end = placed.start, placed.end
            if where.circular and start < lo:
                start, end = start + where.length, end + where.length
            if lo <= start and end <= hi:
                kept.setdefault(part, []).append(placed._replace(start=start, end=end))
    return kept


def _holds_cassette(kept: Mapping[str, list]) -> bool:
    """One promoter, one CDS and a 3' end (a 3'UTR or a polyA signal)."""
    return (
        len(kept.get("promoter", ())) == 1
        and len(kept.get("cds", ())) == 1
        and bool(kept.get("utr3") or kept.get("polya"))
    )


def _arc(itrs, found, where: _Map) -> tuple[tuple[int, int], dict, str | None]:
    """The ITR-to-ITR span the cassette lies in, its features, and a note or None.

    On a linear map, first ITR start to last ITR end. A circular map has two arcs between its
    ITRs, that span and the other one across the origin: the cassette is the one holding a
    cassette (:func:`_holds_cassette`); when both do, the span not across the origin (the
    map's convention, as before), with a note naming the other's promoter and CDS; when the
    one across the origin is read, a note names the promoter and CDS the other holds, left
    out (a cassette missing its 3' end beside a whole one in the backbone reads so too)."""
    (s1, e1), (s2, e2) = sorted((f.start, f.end) for f in itrs)
    inside = (s1, max(e1, e2))
    kept = _between(found, *inside, where)
    if not where.circular:
        return inside, kept, None
    across = (s2, e1 + where.length)
    other = _between(found, *across, where)
    if not _holds_cassette(other):
        return inside, kept, None

    def named(feats: Mapping[str, list]) -> str:
        return ", ".join(_where(f.feature) for p in ("promoter", "cds") for f in feats.get(p, ()))

    if not _holds_cassette(kept):
        note = (
            "the cassette is read across the origin of the circular map, between the ITRs at "
            f"{where.span(*across)}; the arc between them at {where.span(*inside)} holds no "
            "whole cassette (one promoter, one CDS, a 3'UTR or polyA signal) and is left out "
            f"({named(kept)})"
        )
        return across, other, note if named(kept) else None
    return (
        inside,
        kept,
        f"the cassette is read between the ITRs at {where.span(*inside)}, not across the "
        f"origin, where the other arc between them holds a cassette too ({named(other)}); if "
        "that is the cassette, rotate the map so it does not cross position 1",
    )


def _genbank_parts(
    record, cid: str, path: Path, where: _Map
) -> tuple[dict[str, _Placed], tuple[int, int] | None, list[str]]:
    """The one feature of each part (those between the ITRs when two are annotated), the
    ITR-to-ITR span or None (bounds as :class:`_Placed`'s), and notes to log."""
    found = _genbank_features(record, where)
    itrs = found.pop("itr", [])
    noted = found.pop("itr_note", [])
    if len(itrs) + len(noted) == 2 or (not itrs and noted):
        # a feature whose note alone names an ITR is one when that makes the pair (isoflow
        # design's flanks), or when none is named so (one or three: refused below, as
        # before); beside named ones its note may merely mention them ("MCS between the ITRs")
        itrs = sorted(itrs + noted, key=lambda f: f.start)
    inverted = found.pop("inverted", [])
    _refuse_split([("itr", f) for f in itrs], cid, path, where.circular)
    if len(itrs) not in (0, 2):
        raise InputError(
            path,
            cid,
            f"{len(itrs)} ITR feature(s) ({', '.join(_where(f.feature) for f in itrs)}); "
            "annotate two (one at each end of the cassette) or none",
        )
    span, notes = None, []
    if itrs:
        span, found, note = _arc(itrs, found, where)
        notes += [note] if note else []
    elif len(inverted) == 2 and all(f.pieces == 1 for f in inverted):
        # no labelled ITR: two unlabelled inverted repeats are the ITRs when a cassette lies
        # between them (one promoter, one CDS, a 3' end), else they are left alone
        arc, kept, note = _arc(inverted, found, where)
        if _holds_cassette(kept):
            itrs, span, found, notes = inverted, arc, kept, [note] if note else []
    kept = [(part, f) for part, feats in found.items() for f in feats]
    _refuse_split(kept, cid, path, span is not None)
    for part, feats in found.items():
        if len(feats) > 1:
            raise InputError(
                path,
                cid,
                f"{len(feats)} {_PART_LABELS[part]} features "
                f"({', '.join(_where(f.feature) for f in feats)}); keep one cassette per record: "
                "annotate the two ITRs around it, or retype the others (e.g. misc_feature)",
            )
    one = {part: feats[0] for part, feats in found.items() if feats}
    for part in ("promoter", "cds"):
        if part not in one:
            raise InputError(
                path,
                cid,
                f"construct {cid!r} has no {part}: annotate a {_PART_LABELS[part]} feature"
                + (" between the ITRs" if itrs else ""),
            )
    repeats = [f for f in record.features if f.type == "repeat_region"]
    if span is None and (where.circular or repeats):
        # an AAV map whose ITR labels were not recognised silently lost its flanks and its
        # AAV size check: say so, and how labels are matched
        seen = (
            f"its repeat_region features ({', '.join(map(_where, repeats))}) are not"
            if repeats
            else "no feature of this circular map is"
        )
        notes.append(
            f"construct {cid!r}: {seen} read as an ITR pair, so it is read without ITRs (no "
            f"flanks; no AAV size check unless aav is set); {_ITR_LABELS_HELP}: relabel the "
            "two ITRs if this is an AAV vector"
        )
    return one, span, notes


def _genbank_construct(record, cid: str, path: Path) -> Construct:
    try:
        str(record.seq[:1])
    except Exception:  # Bio.Seq.UndefinedSequenceError: no ORIGIN section
        raise InputError(path, cid, "record has no sequence (ORIGIN section)") from None
    circular = str(record.annotations.get("topology", "")).lower() == "circular"
    length = len(record.seq)
    where = _Map(length, circular)
    one, span, notes = _genbank_parts(record, cid, path, where)
    if one["cds"].strand == -1:
        # Read the cassette on its sense strand: coordinates flip with the sequence (the
        # features stay the file's, so messages name the file's coordinates)
        where = _Map(length, circular, flip=True)
        one, span, notes = _genbank_parts(record, cid, path, where)
    for note in notes:
        warn_construct(cid, "%s", InputError(path, cid, note))
    for part, placed in one.items():
        if placed.strand == -1:
            raise InputError(
                path,
                cid,
                f"{_PART_LABELS[part]} feature {_where(placed.feature)} is on the other strand "
                "than the CDS; a cassette's parts read on one strand",
            )
    for part, placed in one.items():
        if int(placed.feature.location.end) > length:
            raise InputError(
                path,
                cid,
                f"construct {cid!r}: {_PART_LABELS[part]} feature {_where(placed.feature)} runs "
                f"past the sequence's end ({length} bp); fix the feature or the sequence",
            )
    start = {p: f.start for p, f in one.items()}
    end = {p: f.end for p, f in one.items()}
    # Overlapping annotated neighbours are refused: the definitions below would give the
    # shared bases to one of them without a word. Kept, as documented: a promoter
    # overlapping the 5'UTR (cut at the TSS) and a polyA signal inside or overlapping the
    # 3'UTR. A gap between neighbours is not an overlap: its bases go where the definitions
    # put them (promoter|5'UTR: promoter, up to the TSS; 5'UTR|CDS: 5'UTR, e.g. a Kozak
    # sequence left unannotated; CDS|3'UTR: 3'UTR; 3'UTR|polyA: polyA).
    chain = [p for p in ("promoter", "utr5", "cds", "utr3", "polya") if p in one]
    for a_part, b_part in zip(chain, chain[1:], strict=False):
        a_end, b_start = end[a_part], start[b_part]
        if a_end <= b_start or b_start < start[a_part]:
            continue  # abutting or a gap; out of order: the order check below names it
        if (a_part, b_part) in (("promoter", "utr5"), ("utr3", "polya")):
            continue
        raise InputError(
            path,
            cid,
            f"construct {cid!r}: the {_PART_LABELS[a_part]} feature "
            f"{_where(one[a_part].feature)} and the {_PART_LABELS[b_part]} feature "
            f"{_where(one[b_part].feature)} overlap by "
            f"{a_end - b_start} nt, whose bases one part would take: fix the features' "
            "coordinates",
        )
    # /codon_start=2 or 3: the feature's first 1-2 bases are no codon's (a partial CDS, or a
    # feature drawn from the Kozak): the CDS part starts at the first codon and those bases
    # go to the 5'UTR part, so the frame is the file's. On the sense strand's coordinates,
    # so the same for a complement() feature (its 5' end is its start there).
    codon_start = _codon_start(one["cds"].feature, path, cid)
    if codon_start > 1:
        start["cds"] += codon_start - 1
        if start["cds"] >= end["cds"]:
            raise InputError(
                path,
                cid,
                f"construct {cid!r}: CDS feature {_where(one['cds'].feature)} has "
                f"/codon_start={codon_start} and no base from there on; fix the feature",
            )
    tss = start["utr5"] if "utr5" in one else end["promoter"]
    if "utr3" in one:
        utr3_end = end["utr3"]
    elif "polya" in one:
        utr3_end = start["polya"]
    else:
        raise InputError(
            path,
            cid,
            f"construct {cid!r} has no utr3: annotate a 3'UTR feature, or a polyA_signal "
            "feature (the bases between the CDS and it are then the 3'UTR)",
        )
    bounds = [
        ("promoter start", start["promoter"]),
        ("TSS (5'UTR start, else promoter end)", tss),
        ("CDS start", start["cds"]),
        ("CDS end", end["cds"]),
        ("3'UTR end (else polyA_signal start)", utr3_end),
    ]
    for (a_name, a), (b_name, b) in zip(bounds, bounds[1:], strict=False):
        if a > b:
            hint = " (the cassette reads on the minus strand: right to left)" if where.flip else ""
            if circular and span is None:
                hint += (
                    " (on a circular map without ITRs: rotate it so the cassette does not "
                    "cross position 1)"
                )
            raise InputError(
                path,
                cid,
                f"construct {cid!r}: {a_name} ({where.base(a)}) comes after {b_name} "
                f"({where.base(b)}); the parts must follow each other 5'->3': promoter, 5'UTR, "
                f"CDS, 3'UTR, polyA{hint}",
            )
    last = max(utr3_end, end.get("polya", utr3_end))
    seq = str(record.seq)
    if where.flip:
        seq = reverse_complement(seq)
    if max([last, *end.values(), *(span or ())]) > length:
        seq += seq  # a cassette read across the origin of a circular map
    parts = {
        "promoter": seq[start["promoter"] : tss],
        "utr5": seq[tss : start["cds"]],
        "cds": seq[start["cds"] : end["cds"]],
        "utr3": seq[end["cds"] : utr3_end],
        "polya": seq[utr3_end:last],
    }
    if span is not None:
        parts["upstream"] = seq[span[0] : start["promoter"]]
        parts["downstream"] = seq[last : span[1]]
    else:  # flanks only as `upstream` / `downstream` misc_features reaching the cassette
        if "upstream" in one:
            if start["upstream"] > start["promoter"]:
                raise InputError(
                    path,
                    cid,
                    f"construct {cid!r}: the upstream misc_feature "
                    f"{_where(one['upstream'].feature)} "
                    f"starts after the promoter start ({where.base(start['promoter'])}); the "
                    "upstream "
                    "flank runs from its start to the promoter",
                )
            parts["upstream"] = seq[start["upstream"] : start["promoter"]]
        if "downstream" in one:
            if end["downstream"] < last:
                raise InputError(
                    path,
                    cid,
                    f"construct {cid!r}: the downstream misc_feature "
                    f"{_where(one['downstream'].feature)} "
                    f"ends before the polyA (or 3'UTR) end ({where.base(last - 1)}); the "
                    "downstream flank runs "
                    "from there to its end",
                )
            parts["downstream"] = seq[last : end["downstream"]]
    note = _translation_differs(one["cds"].feature, parts["cds"].upper())
    if note:
        warn_construct(cid, "%s", InputError(path, cid, f"construct {cid!r}: {note}"))
    # A polyA signal annotated inside (or reaching into) the 3'UTR leaves no polya part, or
    # only its tail past the 3'UTR: keep where it lies, the cassette's own signal.
    site = None
    if "polya" in one and "utr3" in one:
        a, b = max(start["polya"], end["cds"]), min(end["polya"], utr3_end)
        site = (a - end["cds"], b - end["cds"]) if a < b else None
    return Construct(
        cid,
        {k: v.upper() for k, v in parts.items()},
        f"{path}:{cid}",
        itrs=span is not None,
        polya_site=site,
    )


def _codon_start(feature, path: Path, cid: str) -> int:
    """The CDS feature's ``/codon_start`` (1, 2 or 3; 1 when not given): the first base of
    its first whole codon, counted from the feature's 5' end."""
    given = (feature.qualifiers.get("codon_start") or ["1"])[0]
    if str(given).strip() not in ("1", "2", "3"):
        raise InputError(
            path,
            cid,
            f"construct {cid!r}: CDS feature {_where(feature)} has /codon_start={given}; "
            "GenBank allows 1, 2 or 3: fix the qualifier",
        )
    return int(str(given).strip())


def _translation_differs(feature, cds: str) -> str | None:
    """How the CDS feature's ``/translation`` differs from the translation of the bases the
    reader takes (the first differing residue), or None (the same, or none given). The
    sequence is what the model reads; a difference usually means wrong CDS coordinates or
    an edited sequence. A first residue ``M`` matches any start codon (NCBI writes an
    alternative start as M)."""
    given = "".join(str((feature.qualifiers.get("translation") or [""])[0]).split()).upper()
    given = given.removesuffix("*")
    if not given:
        return None
    own = translate_cds(cds)
    first = next(
        (
            i
            for i, (a, b) in enumerate(zip(given, own, strict=False))
            if a != b and not (i == 0 and a == "M")
        ),
        min(len(given), len(own)),
    )
    if first == len(given) == len(own):
        return None

    def residue(protein: str) -> str:
        return protein[first] if first < len(protein) else "its end"

    return (
        f"CDS feature {_where(feature)}: its /translation differs from the translation of its "
        f"bases from residue {first + 1} on ({residue(given)} in /translation, "
        f"{residue(own)} from the sequence; {len(given)} and {len(own)} residues); the "
        "sequence is used: check the CDS coordinates, or whether the sequence was edited"
    )


def write_constructs_tsv(
    constructs: Iterable[Construct], path: str | os.PathLike, extra: Iterable[str] = ()
) -> None:
    """Write ``constructs`` as a construct TSV (every part column, then ``extra`` columns
    from each construct's ``extra``), readable by :func:`read_constructs`."""
    from isoflow.files import atomic_path

    extra = list(extra)
    lines = ["\t".join([*TSV_COLUMNS, *extra])]
    for c in constructs:
        cells = [c.id, *(c.parts.get(p, "") for p in PARTS), *(c.extra.get(e, "") for e in extra)]
        if any("\t" in cell or "\n" in cell for cell in cells):
            raise ValueError(f"construct {c.id!r}: a tab or newline in a field")
        lines.append("\t".join(map(_quoted, cells)))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
