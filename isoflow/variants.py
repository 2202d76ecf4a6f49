"""``isoflow variants``: the predicted effect of sequence variants on transcript expression.

A variant table (TSV ``chrom pos ref alt [id]`` with VCF's 1-based ``pos``, or a VCF, plain
or bgzip) + a model bundle + the genome FASTA + the annotation's ``transcripts.parquet`` ->
one row per (variant, transcript whose DNA window holds a base of the variant, when the
model reads DNA, or one of whose exons it overlaps, when the model reads RNA or protein):
alt - ref per tissue in the model's units (log(1 + TPM); a fine-tuned bundle's table's:
:func:`isoflow.bundle.output_units`), and which of the model's inputs the variant changes
(the DNA window when it lies in it; the RNA when it lies in an exon; the protein when it
changes the CDS translation).

The inputs are built by the code that builds the training data: the DNA window by
``sequences.window_bounds`` + ``GenomeWindows.tokens``, the RNA and protein by the
sequences module's per-transcript reference path (``_records_one_by_one``), reading the
genome through :class:`SubstitutedGenome`, which shows the alt allele at its position.
Only the modalities a variant changes are re-encoded: each transcript's reference
embeddings are computed once per round and reused for its alt inputs (``Model.embed`` /
``Model.head``). Scoring streams: the pairs, transcript-major, go in rounds of ``CHUNK``,
each round's alt inputs (a whole DNA window each) built just before it is scored and
dropped after, a transcript's reference once its last pair is scored, so memory does not
grow with the number of variants (docs/benchmarks.md "variants: streamed scoring").

Substitutions only (SNVs, and MNVs: ref and alt of one length > 1). Indels (ref and alt of
different lengths, Kircher's ``-``), symbolic (``<DEL>``), ``*`` and ``.`` alleles are
skipped and counted in a warning: an indel shifts every coordinate after it, which the
DNA window (fixed length, TSS-centred) and the annotation's exon coordinates would have to
follow. Everything else that is wrong is an :class:`InputError` of one line naming the
variant: a letter outside ACGT, ref equal to alt, a contig the genome lacks (with the
``chr`` / alias hint), a position past the contig, a ref allele that is not the genome's;
and one naming the annotation (``-a``) when it names contigs otherwise than the genome
(:func:`check_annotation_contigs`).

Also here: the effect of substitutions inside an expression construct
(:func:`construct_variant_effects`) and the Kircher et al. 2019 saturation-mutagenesis MPRA
read as constructs (``read_kircher``, ``element_reference``, ``kircher_construct``), which
``bench/bench_kircher.py`` scores; docs/constructs.md "Variant effects".
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isoflow.alphabet import DNA_LETTER_CODES, reverse_complement
from isoflow.commands import (
    ANNOTATION_FLAGS,
    BATCH_SIZE_HELP,
    DEVICE_HELP,
    GENOME_FLAGS,
    MODEL_FLAGS,
    OUT_FLAGS,
    positive_int,
)
from isoflow.constructs import Construct, ModelInputs, construct_inputs, table_rows
from isoflow.errors import InputError, non_utf8_error
from isoflow.experiments import MODALITIES
from isoflow.genome import CONTIG_NAMES_SHOWN, GenomeWindows, _alias_candidates

log = logging.getLogger("isoflow.variants")

HELP = (
    "Predict variant effects: alt - ref per tissue of each substitution on every transcript "
    "whose DNA window (or, for a model reading RNA or protein, an exon) holds it, from a "
    "model bundle, the genome and the annotation."
)
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")
TSV_COLUMNS = ("chrom", "pos", "ref", "alt")
BASES = frozenset("ACGT")
# The columns of an output row before the tissues' (``variant_effects``).
ROW_COLUMNS = (
    "variant_id",
    "chrom",
    "pos",
    "ref",
    "alt",
    "transcript_id",
    "gene_id",
    "gene_name",
    "strand",
    "tss_offset",
    "dna_changed",
    "rna_changed",
    "protein_changed",
    "changed",
    "dna_seen",
    "rna_seen",
    "protein_seen",
    "ref_mean",
    "mean_effect",
)
# the transcripts-table columns a variant's transcripts are found and read by (overlapping,
# transcript_inputs, reference_problem, the row): the dataset table has none of the exons
ANNOTATION_COLUMNS = (
    "transcript_id",
    "gene_id",
    "gene_name",
    "chrom",
    "strand",
    "tss",
    "exon_starts",
    "exon_ends",
    "cds_start",
    "cds_end",
    "cds_phase",
    "selenocysteines",
    "tags",
)
# Pairs (variant, transcript) scored per round: the round's alt inputs, its transcripts'
# references and their embeddings are all that is held (variant_effects builds each round's
# inputs just before it scores them).
CHUNK = 256


@dataclass(frozen=True)
class Variant:
    """A substitution: ``pos`` 1-based (VCF), ``ref``/``alt`` upper case, same length."""

    id: str
    chrom: str
    pos: int
    ref: str
    alt: str
    path: str | None = None  # where it was read, for messages
    record: object = None  # line number (TSV) or record (VCF)

    @property
    def start(self) -> int:
        """0-based position of the first ref base."""
        return self.pos - 1

    @property
    def end(self) -> int:
        return self.pos - 1 + len(self.ref)


@dataclass
class VariantTable:
    variants: list[Variant]
    skipped: Counter = field(default_factory=Counter)  # reason -> count


# --------------------------------------------------------------------------- reading


def _is_vcf(path: Path) -> bool:
    if path.name.lower().endswith(VCF_SUFFIXES):
        return True
    with open(path, "rb") as handle:
        head = handle.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as handle:
        return handle.read(16).startswith(b"##fileformat=VCF")


def _allele_problem(allele: str) -> str | None:
    """Why an allele is skipped (a reason to count) or None for a sequence allele."""
    if allele in ("-", "", "."):
        return "deletion or missing allele"
    if allele == "*" or allele.startswith("<") or "[" in allele or "]" in allele:
        return "symbolic allele"
    return None


def _variant(vid, chrom, pos, ref, alt, path, record, skipped: Counter) -> Variant | None:
    """One checked variant, or None (counted in ``skipped``) for what is not a substitution."""
    ref, alt = ref.strip().upper(), alt.strip().upper()
    name = vid or f"{chrom}:{pos}:{ref}>{alt}"
    for allele in (ref, alt):
        reason = _allele_problem(allele)
        if reason:
            skipped[reason] += 1
            return None
    for label, allele in (("ref", ref), ("alt", alt)):
        bad = set(allele) - BASES
        if bad:
            raise InputError(
                path,
                record,
                f"variant {name}: {label} allele {allele!r} holds {''.join(sorted(bad))!r}; "
                "alleles are A, C, G, T",
            )
    if len(ref) != len(alt):
        skipped["indel"] += 1
        return None
    if ref == alt:
        raise InputError(path, record, f"variant {name}: ref and alt are the same ({ref})")
    try:
        position = int(pos)
    except (TypeError, ValueError):
        raise InputError(path, record, f"variant {name}: pos {pos!r} is not a number") from None
    if position < 1:
        raise InputError(path, record, f"variant {name}: pos {position} (1-based) must be >= 1")
    return Variant(name, str(chrom), position, ref, alt, str(path), record)


def read_variants(path: str | os.PathLike) -> VariantTable:
    """The substitutions of a VCF (plain, bgzip or BCF; one per ALT allele) or of a TSV with
    a header naming ``chrom pos ref alt`` (any order and case, a leading ``#`` allowed; an
    ``id`` column names the variants, else ``chrom:pos:ref>alt``); skipped alleles are
    counted (``VariantTable.skipped``) and logged."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "variant file does not exist")
    table = VariantTable([])
    if _is_vcf(path):
        _read_vcf(path, table)
    else:
        _read_tsv(path, table)
    _number_split_alleles(table.variants)
    first: dict[str, Variant] = {}
    for v in table.variants:  # an id names a variant's rows in the output: one variant each
        if v.id in first:
            other = first[v.id]
            same = (other.chrom, other.pos, other.ref, other.alt) == (v.chrom, v.pos, v.ref, v.alt)
            raise InputError(
                path,
                v.record,
                f"variant id {v.id!r} is already used by "
                + (f"line {other.record}" if isinstance(other.record, int) else str(other.record))
                + (" for the same variant: give it once" if same else ": give each its own id"),
            )
        first[v.id] = v
    if table.skipped:
        log.warning(
            "%s: skipped %d allele(s) that are not substitutions (%s): indels and symbolic "
            "alleles are not scored",
            path,
            sum(table.skipped.values()),
            ", ".join(f"{n} {reason}" for reason, n in table.skipped.most_common()),
        )
    log.info("%s: %d substitution(s)", path, len(table.variants))
    return table


def _number_split_alleles(variants: list[Variant]) -> None:
    """One id on several alleles of one site (a multi-allelic record split one allele per
    line, as ``bcftools norm -m-`` writes it) names them ``id_1``, ``id_2``, ... in file
    order, as the unsplit record's alleles are named; any other repeat of an id is left for
    :func:`read_variants` to refuse."""
    from collections import defaultdict

    groups: dict[str, list[int]] = defaultdict(list)
    for i, v in enumerate(variants):
        groups[v.id].append(i)
    for vid, rows in groups.items():
        if len(rows) < 2:
            continue
        site = {(variants[i].chrom, variants[i].pos, variants[i].ref) for i in rows}
        alts = [variants[i].alt for i in rows]
        if len(site) == 1 and len(set(alts)) == len(alts):
            for k, i in enumerate(rows, start=1):
                variants[i] = dataclasses.replace(variants[i], id=f"{vid}_{k}")


def _read_vcf(path: Path, table: VariantTable) -> None:
    import pysam

    quiet = pysam.set_verbosity(0)  # htslib's own stderr lines: the error below says it
    try:
        vcf = pysam.VariantFile(str(path))
    except (OSError, ValueError) as err:
        pysam.set_verbosity(quiet)
        raise InputError(path, None, f"cannot read as VCF: {err}") from None
    n = 0
    with vcf:
        try:
            for n, rec in enumerate(vcf, start=1):
                where = f"record {n} ({rec.chrom}:{rec.pos})"
                vid = None if rec.id in (None, ".") else rec.id
                if not rec.alts:  # ALT `.`: no alternative allele, nothing to score
                    table.skipped["missing allele"] += 1
                for k, alt in enumerate(rec.alts or ()):
                    name = (
                        vid if vid and len(rec.alts) == 1 else (f"{vid}_{k + 1}" if vid else None)
                    )
                    v = _variant(
                        name, rec.chrom, rec.pos, rec.ref or "", alt, path, where, table.skipped
                    )
                    if v is not None:
                        table.variants.append(v)
        except InputError:
            raise
        except (OSError, ValueError) as err:  # htslib on a cut or damaged record
            raise InputError(
                path,
                f"record {n + 1}",
                f"cannot read ({err}): the file is cut short or damaged; write it again",
            ) from None
        finally:
            pysam.set_verbosity(quiet)


def _read_tsv(path: Path, table: VariantTable) -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    # one line per row, split on tabs, quoted cells unquoted, an unclosed quote one line
    # (csv.reader: a bare _csv.Error, or a quote that swallowed the next lines' variants)
    lines = table_rows(path, text)
    if not lines:
        raise InputError(path, None, "empty: a header `chrom pos ref alt` and one row per variant")
    header_line, header = lines[0]
    names = [c.strip().lstrip("#").strip().lower() for c in header]
    missing = [c for c in TSV_COLUMNS if c not in names]
    if missing:
        raise InputError(
            path,
            header_line,
            f"header lacks {', '.join(missing)}: a variant table's header names chrom, pos "
            "(1-based, as VCF), ref, alt (and optionally id)",
        )
    at = {c: names.index(c) for c in (*TSV_COLUMNS, "id") if c in names}
    for line, row in lines[1:]:
        if len(row) != len(header):
            raise InputError(
                path, line, f"{len(row)} fields, the header has {len(header)} (tab-separated)"
            )
        vid = row[at["id"]].strip() if "id" in at else None
        v = _variant(
            vid or None,
            row[at["chrom"]].strip(),
            row[at["pos"]].strip(),
            row[at["ref"]],
            row[at["alt"]],
            path,
            line,
            table.skipped,
        )
        if v is not None:
            table.variants.append(v)


def check_variants(
    variants: Sequence[Variant],
    genome: GenomeWindows,
    contig_aliases: dict[str, str] | None = None,
) -> list[Variant]:
    """The variants with their contigs renamed by ``contig_aliases`` (variant name -> genome
    name), each checked against the genome: contig present, inside it, ref = the genome's
    bases (case folded). Each failure is one line naming the variant."""
    aliases = {str(k): str(v) for k, v in (contig_aliases or {}).items()}
    out = []
    for v in variants:
        chrom = aliases.get(v.chrom, v.chrom)
        where = (v.path, v.record)
        if chrom not in genome.lengths:
            hint = next((c for c in _alias_candidates(chrom) if c in genome.lengths), None)
            message = f"variant {v.id}: contig {chrom!r} is not in the genome {genome.path}"
            if hint:
                message += (
                    f"; the genome has {hint!r}: rename the contig in the variant file or "
                    f"pass --contig-alias {chrom}={hint}"
                )
            else:
                names = list(genome.lengths)
                shown = ", ".join(repr(n) for n in names[:CONTIG_NAMES_SHOWN])
                more = len(names) - CONTIG_NAMES_SHOWN
                message += (
                    f"; is the variant file on another assembly? The genome's contigs are "
                    f"{shown}{f' and {more:,} more' if more > 0 else ''} (--contig-alias "
                    f"{chrom}=NAME maps a variant file's contig onto one)"
                )
            raise InputError(where[0], where[1], message)
        length = genome.lengths[chrom]
        if v.end > length:
            raise InputError(
                where[0],
                where[1],
                f"variant {v.id}: {chrom}:{v.pos} lies past the end of the contig ({length:,} bp)",
            )
        found = genome.fetch(chrom, v.start, v.end).upper()
        if found != v.ref:
            raise InputError(
                where[0],
                where[1],
                f"variant {v.id}: ref {v.ref!r} does not match the genome's {found!r} at "
                f"{chrom}:{v.pos} (another assembly, or pos not 1-based?)",
            )
        out.append(v if chrom == v.chrom else dataclasses.replace(v, chrom=chrom))
    return out


def check_annotation_columns(
    transcripts: pd.DataFrame, annotation: str | os.PathLike | None = None
) -> None:
    """The annotation (from ``annotation``) has every ``ANNOTATION_COLUMNS``: one line naming
    the file and the missing columns. The dataset table (``results/dataset/*.parquet``, no
    exons) given as ``-a`` was a pandas KeyError traceback after the model loaded. A
    ``transcript_id`` on two rows is one line naming it: each row would be scored as its own
    transcript under one id."""
    missing = [c for c in ANNOTATION_COLUMNS if c not in transcripts.columns]
    if missing:
        raise InputError(
            annotation,
            None,
            f"lacks the transcripts table's column(s) {', '.join(missing)}: give -a the "
            "annotation's transcripts table (results/annotation/transcripts.parquet), not "
            "the dataset table",
        )
    ids = transcripts["transcript_id"].astype(str)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise InputError(
            annotation,
            repeated.iat[0],
            f"transcript_id on {ids.isin(set(repeated)).sum()} rows ({repeated.nunique()} "
            "id(s) repeated): one row per transcript, as the annotation rule writes it (two "
            "annotations joined? a version suffix dropped?)",
        )


def check_annotation_contigs(
    transcripts: pd.DataFrame,
    variants: Sequence[Variant],
    genome: GenomeWindows,
    annotation: str | os.PathLike | None = None,
) -> None:
    """The annotation (``transcripts.parquet``, from ``annotation``) names contigs as the
    genome does: one line naming it, its contig and the genome's when it shares no contig
    with the genome, or when a variant's contig (the genome's name, after
    :func:`check_variants`) is not in it but another name of it is (``chr`` added or
    removed, another mitochondrial name). Either way the variants there would lie in no
    transcript, and the run wrote a table without their rows, exit 0. A variant whose contig the
    annotation lacks under every name (an annotation of some contigs only) gets no row, as
    any variant outside the transcripts (:func:`variant_effects` warns)."""
    named = list(dict.fromkeys(transcripts["chrom"].astype(str)))
    if not named:
        return
    in_annotation = set(named)
    in_genome = genome.lengths
    fix = (
        "give -g the genome the annotation was built on, or build the annotation for this "
        "genome (config contig_aliases, annotation name: genome name); --contig-alias "
        "renames the variants' contigs, not the annotation's"
    )
    if not in_annotation & set(in_genome):
        shown = ", ".join(repr(c) for c in named[:CONTIG_NAMES_SHOWN])
        more = len(named) - CONTIG_NAMES_SHOWN
        message = (
            f"the annotation's contigs {shown}{f' and {more:,} more' if more > 0 else ''} "
            f"are none of the genome {genome.path}'s"
        )
        hint = next(((c, a) for c in named for a in _alias_candidates(c) if a in in_genome), None)
        if hint:
            message += f": the genome has {hint[1]!r} where the annotation has {hint[0]!r}; {fix}"
        else:
            genome_names = list(in_genome)
            shown = ", ".join(repr(n) for n in genome_names[:CONTIG_NAMES_SHOWN])
            more = len(genome_names) - CONTIG_NAMES_SHOWN
            message += (
                f" ({shown}{f' and {more:,} more' if more > 0 else ''}): is the annotation "
                "on another assembly? Give -g the genome it was built on"
            )
        raise InputError(annotation, None, message)
    for v in variants:
        if v.chrom in in_annotation:
            continue
        other = next((c for c in _alias_candidates(v.chrom) if c in in_annotation), None)
        if other is not None:
            raise InputError(
                annotation,
                None,
                f"the annotation's contig {other!r} is {v.chrom!r} in the genome "
                f"{genome.path} and in variant {v.id} (as the genome names it): no variant "
                f"there would get a row; {fix}",
            )


# --------------------------------------------------------------------------- the genome


class SubstitutedGenome(GenomeWindows):
    """``genome`` as if ``alt`` stood at 0-based ``start`` of ``chrom`` (a substitution:
    contig lengths unchanged). Every read of the genome classes goes through ``_fetch``, so
    ``fetch`` and ``tokens`` see the alt allele; the parent's open FASTA is shared."""

    def __init__(self, genome: GenomeWindows, chrom: str, start: int, alt: str):
        self.__dict__.update(genome.__dict__)
        self._parent = genome
        self.variant = (chrom, start, alt)

    def _handle(self):
        return self._parent._handle()

    def close(self) -> None:  # the parent owns the handle
        pass

    def _fetch(self, chrom: str, start: int, end: int) -> str:
        seq = super()._fetch(chrom, start, end)
        v_chrom, v_start, alt = self.variant
        lo, hi = max(start, v_start), min(end, v_start + len(alt))
        if chrom != v_chrom or lo >= hi:
            return seq
        return seq[: lo - start] + alt[lo - v_start : hi - v_start] + seq[hi - start :]


# --------------------------------------------------------------------------- transcripts


def overlapping(
    transcripts: pd.DataFrame,
    variants: Sequence[Variant],
    window: int,
    *,
    dna: bool = True,
    exons: bool = True,
) -> list[tuple[int, int]]:
    """``(variant index, transcript row position)`` of every transcript whose DNA window
    (``window`` bp, ``sequences.window_bounds``) holds a base of the ref allele (with
    ``dna``: a model that reads DNA; an MNV reaching into the window changes it as an SNV at
    that base does) or one of whose exons it overlaps (with ``exons``: a model that reads RNA
    or protein, whichever is farther from the TSS than the window reaches), by variant then
    transcript row."""
    from isoflow.sequences import window_starts

    starts = window_starts(transcripts, window)
    chroms = transcripts["chrom"].astype(str).to_numpy()
    exon_starts = [np.asarray(e, dtype=np.int64) for e in transcripts["exon_starts"]]
    exon_ends = [np.asarray(e, dtype=np.int64) for e in transcripts["exon_ends"]]
    span_lo = np.array([e.min() if len(e) else 0 for e in exon_starts], dtype=np.int64)
    span_hi = np.array([e.max() if len(e) else 0 for e in exon_ends], dtype=np.int64)
    by_chrom = {}
    for chrom in set(chroms.tolist()):
        rows = np.flatnonzero(chroms == chrom)
        by_window = rows[np.argsort(starts[rows], kind="stable")]
        by_span = rows[np.argsort(span_lo[rows], kind="stable")]
        longest = int((span_hi[rows] - span_lo[rows]).max()) if len(rows) else 0
        by_chrom[chrom] = (by_window, starts[by_window], by_span, span_lo[by_span], longest)
    pairs = []
    for i, v in enumerate(variants):
        if v.chrom not in by_chrom:
            continue
        by_window, s, by_span, lo_sorted, longest = by_chrom[v.chrom]
        found: set[int] = set()
        if dna:  # the window overlaps the allele: start < v.end and v.start < start + window
            lo = np.searchsorted(s, v.start - window, side="right")
            hi = np.searchsorted(s, v.end, side="left")
            found.update(int(r) for r in by_window[lo:hi])
        if exons:  # a transcript's span starts within `longest` before the variant's end
            lo = np.searchsorted(lo_sorted, v.end - longest, side="left")
            hi = np.searchsorted(lo_sorted, v.end, side="left")
            for r in by_span[lo:hi].tolist():
                if r in found or span_hi[r] <= v.start:
                    continue
                if np.any((exon_starts[r] < v.end) & (exon_ends[r] > v.start)):
                    found.add(r)
        pairs += [(i, r) for r in sorted(found)]
    return pairs


def _dna_text(tokens: np.ndarray) -> str:
    return DNA_LETTER_CODES[np.minimum(tokens, 4)].tobytes().decode("ascii")


def transcript_inputs(row: Any, genome: GenomeWindows, window: int | None) -> ModelInputs:
    """A transcript (a ``transcripts.parquet`` row) as the model reads it, from ``genome``:
    the sequences module's reference path for RNA and protein, the window as the training
    windows (no DNA when ``window`` is None)."""
    from isoflow.sequences import _records_one_by_one, window_bounds

    frame = pd.DataFrame([row._asdict() if hasattr(row, "_asdict") else dict(row)])
    (record,) = list(_records_one_by_one(frame, genome))
    dna = ""
    if window is not None:
        start, end = window_bounds(int(row.tss), row.strand, window)
        dna = _dna_text(genome.tokens(row.chrom, start, end, row.strand))
    return ModelInputs(str(row.transcript_id), dna, record.rna, record.protein or "")


def reference_problem(row: Any, protein: str) -> str | None:
    """Why a coding transcript's reference protein (from :func:`transcript_inputs`) says the
    genome is not the one its annotation was made on, or None. Each defect counts one: a
    complete start (no ``cds_start_NF`` tag) that is not ``M``, and every internal stop. The
    right assembly has a few transcripts with one (a non-AUG start, an unannotated
    selenocysteine: the sequences step keeps such a ``*``), so two or more are needed; the
    CDS of another assembly's coordinates reads as random codons, a stop every ~21."""
    if pd.isna(row.cds_start) or not protein:
        return None
    from isoflow.sequences import _as_strs

    bad_start = "cds_start_NF" not in set(_as_strs(row.tags)) and not protein.startswith("M")
    stops = protein.count("*")
    if bad_start + stops < 2:
        return None
    defects = [f"starts with {protein[0]!r}, not M"] if bad_start else []
    defects += [f"has {stops} internal stop(s)"] if stops else []
    shown = protein[:16] + ("..." if len(protein) > 16 else "")
    return (
        f"its CDS read from the genome translates to {shown}, which {' and '.join(defects)}: "
        "the annotation (-a) is likely on another assembly than the genome (-g); give the "
        "genome FASTA the annotation was built from"
    )


# --------------------------------------------------------------------------- scoring


def changed_modalities(ref: ModelInputs, alt: ModelInputs) -> tuple[str, ...]:
    """The inputs (``MODALITIES`` order) whose sequence differs between ``ref`` and ``alt``."""
    return tuple(m for m in MODALITIES if getattr(ref, m) != getattr(alt, m))


def encoder_input(model, modality: str, item: Any) -> tuple:
    """What ``model``'s encoder of ``modality`` reads of ``item`` (``.dna``, ``.rna``,
    ``.protein``): its token IDs after every cut the model makes (``Model._sequence``: a raw
    RNA or protein to what its encoder reads, ``Model.raw_cuts``; then the encoder's own
    ``tokenize``: Nucleotide Transformer's DNA crop and token budget, ESM-2's ``max_len``).
    The one place that says what an encoder sees, so it follows any change to those cuts:
    two inputs with equal views get equal embeddings, and a change outside the view is one
    the model cannot see."""
    from isoflow.bundle import ModelInput

    if not isinstance(item, ModelInput):
        item = _as_model_input(item, model.modalities)
    seq = model._sequence(item, modality)
    if modality in model.frozen:
        encoder = model.frozen[modality][0]
    else:
        encoder = model.network.encoders[modality]
    tokens = encoder.tokenize([seq])
    return tuple((k, tuple(v.shape), v.cpu().numpy().tobytes()) for k, v in sorted(tokens.items()))


def seen_changes(model, ref: Any, alt: Any, changed: Sequence[str], views=None) -> tuple:
    """The modalities of ``changed`` that ``model`` reads and whose change lies where its
    encoder reads (:func:`encoder_input` differs between ``ref`` and ``alt``); ``views``: a
    dict caching ``ref``'s views by modality."""
    views = {} if views is None else views
    seen = []
    for m in changed:
        if m not in model.modalities:
            continue
        if m not in views:
            views[m] = encoder_input(model, m, ref)
        if encoder_input(model, m, alt) != views[m]:
            seen.append(m)
    return tuple(seen)


def _as_model_input(item: ModelInputs, modalities: Sequence[str]):
    from isoflow.bundle import ModelInput

    return ModelInput(
        item.id,
        dna=item.dna if "dna" in modalities else None,
        rna=item.rna,
        protein=item.protein or None,
    )


def effects(
    model,
    refs: dict[str, ModelInputs],
    alts: Sequence[tuple[str, ModelInputs]],
    *,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ref predictions (n, tissues), alt - ref (n, tissues))`` for ``alts``: pairs of (key
    of ``refs``, alt inputs). A pair's unchanged modalities reuse its reference's embeddings;
    only the changed ones are encoded again. Rounds of ``CHUNK`` pairs, in the given order
    (:func:`score_round`)."""
    n, t = len(alts), len(model.tissues)
    ref_out = np.zeros((n, t), dtype=np.float32)
    effect = np.zeros((n, t), dtype=np.float32)
    for lo in range(0, n, CHUNK):
        chunk = alts[lo : lo + CHUNK]
        ref_out[lo : lo + len(chunk)], effect[lo : lo + len(chunk)] = score_round(
            model, refs, chunk, batch_size=batch_size
        )
        log.info("scored %d / %d variant-transcript pairs", lo + len(chunk), n)
    return ref_out, effect


def score_round(
    model,
    refs: dict[str, ModelInputs],
    chunk: Sequence[tuple[str, ModelInputs]],
    *,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One round of :func:`effects`: ``(ref predictions, alt - ref)`` of the pairs of
    ``chunk`` (at most ``CHUNK``); the references of its keys are embedded once, and each
    alt's modalities that differ from its reference's are embedded again, together. A
    caller that builds its pairs round by round (:func:`variant_effects`) gets the bytes
    :func:`effects` gives when it cuts the same rounds."""
    used = model.modalities
    keys = list(dict.fromkeys(k for k, _ in chunk))
    ref_inputs = [_as_model_input(refs[k], used) for k in keys]
    ref_emb = model.embed(ref_inputs, batch_size=batch_size)
    ref_pred = model.head(ref_emb, batch_size=batch_size)
    at = {k: i for i, k in enumerate(keys)}
    alt_emb = {m: [ref_emb[m][at[k]] for k, _ in chunk] for m in used}
    for m in used:
        redo = [j for j, (k, alt) in enumerate(chunk) if getattr(alt, m) != getattr(refs[k], m)]
        if redo:
            items = [_as_model_input(chunk[j][1], used) for j in redo]
            new = model.embed(items, [m], batch_size=batch_size)[m]
            for j, tensor in zip(redo, new, strict=True):
                alt_emb[m][j] = tensor
    alt_pred = model.head(alt_emb, batch_size=batch_size)
    rows = [at[k] for k, _ in chunk]
    return ref_pred[rows], alt_pred - ref_pred[rows]


def tss_offset(variant: Variant, strand: str, tss: int) -> int:
    """Where ``variant`` starts relative to a transcript's TSS (0-based, its first
    transcribed base), along the transcript's strand: its 5'-most base on that strand minus
    the TSS, negative upstream. On the minus strand that base is the variant's last (highest)
    coordinate, so a multi-base substitution that reaches upstream of the TSS is negative
    there too (it was counted from its first coordinate, and read 0 or positive)."""
    if strand == "+":
        return variant.start - tss
    return tss - (variant.end - 1)


def variant_effects(
    model,
    variants: Sequence[Variant],
    transcripts: pd.DataFrame,
    genome: GenomeWindows,
    *,
    batch_size: int | None = None,
    annotation: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """One row per (variant, transcript whose DNA window holds it, or one of whose exons
    it overlaps; :func:`overlapping`, by the modalities the model reads): the variant, the
    transcript, ``tss_offset`` (variant start - TSS, along the transcript's strand),
    ``dna_changed`` / ``rna_changed`` / ``protein_changed`` and ``changed`` (the inputs the
    variant alters, joined by ``+``), ``dna_seen`` / ``rna_seen`` / ``protein_seen`` (the
    alteration lies where the model's encoder of that input reads, :func:`encoder_input`:
    not past Nucleotide Transformer's central DNA crop, nor the RNA / protein cut;
    the effects are NaN where none is seen), ``ref_mean`` (mean over tissues of the reference
    prediction), ``mean_effect``, then alt - ref per tissue (columns named by tissue), all in
    the model's units (:func:`isoflow.bundle.output_units`: log(1 + TPM), a fine-tuned
    bundle's table's). Variants are checked against the genome first (:func:`check_variants`:
    contig, bounds, the ref allele); pass them through it yourself to rename contigs. Then
    the annotation's contig names (:func:`check_annotation_contigs`). A
    coding transcript whose reference protein reads as another assembly's
    (:func:`reference_problem`) is an :class:`InputError` naming it (and ``annotation``,
    the file it came from)."""
    variants = check_variants(variants, genome)
    check_annotation_columns(transcripts, annotation)
    check_annotation_contigs(transcripts, variants, genome, annotation)
    window = model.dna_window
    transcripts = transcripts.reset_index(drop=True)
    reads_dna = "dna" in model.modalities
    reads_exons = bool({"rna", "protein"} & set(model.modalities))
    pairs = overlapping(transcripts, variants, window, dna=reads_dna, exons=reads_exons)
    outside = len(variants) - len({i for i, _ in pairs})
    if outside:
        where = " or ".join(
            ([f"DNA window ({window:,} bp)"] if reads_dna else [])
            + (["exon"] if reads_exons else [])
        )
        log.warning(
            "%d of %d variant(s) lie in no transcript's %s: no row for them",
            outside,
            len(variants),
            where,
        )
    pairs.sort(key=lambda p: (p[1], p[0]))  # transcript-major: its reference is reused
    rows = list(transcripts.itertuples(index=False))
    check_references(rows, pairs, genome, annotation)
    n = len(pairs)
    if not n:  # the columns of a table with rows, so a reader of either finds them
        return pd.DataFrame(columns=[*ROW_COLUMNS, *model.tissues])
    ref_pred = np.zeros((n, len(model.tissues)), dtype=np.float32)
    effect = np.zeros_like(ref_pred)
    meta: list[dict] = []
    # Streamed: a round's alt inputs (each a whole DNA window, 196,608 letters for Enformer)
    # are built, scored and dropped before the next round's; a transcript's reference and
    # its encoder views are dropped once its last pair is scored (pairs are transcript-major).
    # The rounds are effects' (CHUNK pairs in this order), so the bytes are the same.
    refs: dict[str, ModelInputs] = {}
    views: dict[str, dict] = {}  # transcript -> modality -> its reference's encoder_input
    for lo in range(0, n, CHUNK):
        chunk = []
        for i, r in pairs[lo : lo + CHUNK]:
            key, alt, row_meta = pair_inputs(model, variants[i], rows[r], genome, refs, views)
            chunk.append((key, alt))
            meta.append({**row_meta, "_order": (i, r)})
        hi = lo + len(chunk)
        ref_pred[lo:hi], effect[lo:hi] = score_round(model, refs, chunk, batch_size=batch_size)
        log.info("scored %d / %d variant-transcript pairs", hi, n)
        last = chunk[-1][0]  # its next pairs may open the next round
        for key in [k for k in refs if k != last]:
            del refs[key]
            views.pop(key, None)
    blind = np.array([not (m["dna_seen"] or m["rna_seen"] or m["protein_seen"]) for m in meta])
    effect[blind] = np.nan  # the model reads no changed base: no prediction
    frame = pd.DataFrame(meta)
    frame["ref_mean"] = ref_pred.mean(axis=1)
    frame["mean_effect"] = effect.mean(axis=1)
    frame = pd.concat([frame, pd.DataFrame(effect, columns=model.tissues)], axis=1)
    frame = frame.sort_values("_order", kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def check_references(
    rows: Sequence[Any],
    pairs: Sequence[tuple[int, int]],
    genome: GenomeWindows,
    annotation: str | os.PathLike | None = None,
) -> None:
    """Every coding transcript of ``pairs`` (``(variant, row position)``, in scoring order)
    reads as the genome's (:func:`reference_problem`), before any is scored: an
    :class:`InputError` naming the first that does not (and ``annotation``). Its protein
    is built again when it is scored (no DNA read here): holding every reference until then
    would grow with the transcripts."""
    for r in dict.fromkeys(r for _, r in pairs):
        row = rows[r]
        if pd.isna(row.cds_start):
            continue
        problem = reference_problem(row, transcript_inputs(row, genome, None).protein)
        if problem:
            raise InputError(annotation, str(row.transcript_id), problem)


def pair_inputs(
    model,
    variant: Variant,
    row: Any,
    genome: GenomeWindows,
    refs: dict[str, ModelInputs],
    views: dict[str, dict],
) -> tuple[str, ModelInputs, dict]:
    """``(transcript key, alt inputs, the row's columns before the effects)`` of one
    (variant, transcript) pair of :func:`variant_effects`; the transcript's reference is
    built into ``refs`` (and its encoder views into ``views``) on its first pair."""
    key = str(row.transcript_id)
    if key not in refs:
        refs[key] = transcript_inputs(row, genome, model.dna_window)
    v = variant
    alt = transcript_inputs(
        row, SubstitutedGenome(genome, v.chrom, v.start, v.alt), model.dna_window
    )
    changed = changed_modalities(refs[key], alt)
    seen = seen_changes(model, refs[key], alt, changed, views.setdefault(key, {}))
    # what the model does not read (or reads of the reference only) is the reference's:
    # nothing to encode again for it
    alt = ModelInputs(alt.id, *(getattr(alt if m in seen else refs[key], m) for m in MODALITIES))
    meta = {
        "variant_id": v.id,
        "chrom": v.chrom,
        "pos": v.pos,
        "ref": v.ref,
        "alt": v.alt,
        "transcript_id": key,
        "gene_id": str(row.gene_id),
        "gene_name": str(row.gene_name),
        "strand": row.strand,
        "tss_offset": tss_offset(v, row.strand, int(row.tss)),
        "dna_changed": "dna" in changed,
        "rna_changed": "rna" in changed,
        "protein_changed": "protein" in changed,
        "changed": "+".join(changed),
        "dna_seen": "dna" in seen,
        "rna_seen": "rna" in seen,
        "protein_seen": "protein" in seen,
    }
    return key, alt, meta


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Parquet (``.parquet``) or TSV (anything else), compressed as ``path``'s suffix says
    (``.gz``, ``.bz2``, ``.xz``, ``.zst``, ``.zip``: pandas' inference), suffixes in any case,
    atomically. The compression is inferred from ``path``, not from the temporary file
    (``….tmp``), which named none: ``-o effects.tsv.gz`` was plain text."""
    from pandas.io.common import infer_compression

    from isoflow.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            compression = infer_compression(str(path), "infer")
            # the member (zip, tar) or the name in the gzip header is the table's, not the
            # temporary's (`gunzip -N` restores that name)
            inner = path.name[: -len(path.suffix)] if path.suffix else path.name
            if compression in ("zip", "tar"):
                compression = {"method": compression, "archive_name": inner}
            elif compression == "gzip":
                compression = {"method": "gzip", "filename": inner}
            with open(tmp, "wb") as handle:  # a handle: pandas names no file to gzip then
                frame.to_csv(
                    handle, sep="\t", index=False, float_format="%.6g", compression=compression
                )


# --------------------------------------------------------------------------- constructs


def substitute(seq: str, index: int, ref: str, alt: str) -> str:
    """``seq`` with ``alt`` at 0-based ``index``, where ``ref`` must stand."""
    if seq[index : index + len(ref)].upper() != ref:
        raise ValueError(f"{seq[index : index + len(ref)]!r} at {index}, not {ref!r}")
    return seq[:index] + alt + seq[index + len(ref) :]


def construct_variant_effects(
    model,
    construct: Construct,
    substitutions: Sequence[tuple[str, int, str, str]],
    *,
    part: str = "promoter",
    batch_size: int | None = None,
    **inputs_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ref prediction (tissues,), alt - ref (n, tissues))`` of substitutions ``(name,
    0-based index in the part, ref, alt)`` of one ``part`` of ``construct`` (sense strand).
    The construct's inputs are :func:`isoflow.constructs.construct_inputs` (``inputs_kwargs``
    go there, ``window`` defaults to the model's); unchanged modalities are encoded once."""
    inputs_kwargs.setdefault("window", model.dna_window)
    ref = construct_inputs(construct, **inputs_kwargs)
    alts = []
    parts = dict(construct.parts)
    for name, index, r, a in substitutions:
        changed = dict(parts)
        changed[part] = substitute(parts[part], index, r, a)
        alt_construct = Construct(name, changed, construct.source, {}, construct.itrs)
        alts.append((construct.id, construct_inputs(alt_construct, **inputs_kwargs)))
    ref_pred, effect = effects(model, {construct.id: ref}, alts, batch_size=batch_size)
    return (ref_pred[0] if len(alts) else np.zeros(len(model.tissues))), effect


# --------------------------------------------------------------------------- Kircher MPRA

# Kircher et al. 2019 (Nat Commun 10:3583) promoter elements: the element as named in the
# paper's table (elements_table.md) -> (its name in elements.tsv.gz, the strand of the gene
# on GRCh38, the RefSeq transcript the table gives). Where the data holds only conditions
# (PKLR, TERT), the one matching the table's cell line / transfection time: PKLR 48 h,
# TERT HEK293T. The data names GP1BB's element `GP1BA` (its GRCh38 coordinates are GP1BB's,
# chr22). Strands: the RefSeq transcripts' strands on GRCh38 (NCBI Gene), written here
# without a network check; the benchmark scores both orientations, so an entry that is
# wrong shows as the opposite orientation doing better.
KIRCHER_PROMOTERS = {
    "F9": ("F9", "+", "NM_000133.3"),
    "FOXE1": ("FOXE1", "+", "NM_004473.3"),
    "GP1BB": ("GP1BA", "+", "NM_000407.4"),
    "HBB": ("HBB", "-", "NM_000518.4"),
    "HBG1": ("HBG1", "-", "NM_000559.2"),
    "HNF4A (P2)": ("HNF4A", "+", "NM_175914.4"),
    "LDLR": ("LDLR", "+", "NM_000527.4"),
    "MSMB": ("MSMB", "-", "NM_002443.3"),
    "PKLR": ("PKLR-48h", "-", "NM_000298.5"),
    "TERT": ("TERT-HEK", "-", "NM_198253.2"),
}
# The fixed reporter transcript every element drives: a short synthetic one, not the MPRA's
# luc2 reporter (whose sequence the data does not hold). Drawn once from numpy's
# default_rng(2019): a 40-nt 5'UTR ending in a Kozak GCCACC, a 100-codon ORF (ATG, 98
# codons without a stop, TAA), a 200-nt 3'UTR. Ref and alt share it, so it only sets the
# context in which the element's DNA is read.
REPORTER = {
    "utr5": "CACCGCCTGAACACTGCGGGTTATGCCGTGTTTTGCCACC",
    "cds": (
        "ATGATGCTGCTTGACGTCAGTTCGCAAAATTGTCGGGGACTCTGCCCGAGGCGGCCAGGACATGAAACTCAGGCGTTGG"
        "TACCGACCCTGTGCGAAGTGAATGATTATTCAAAAATACTTAGAAGGAACTCACATACCTACGAGAAATGTAGAGGTTC"
        "GGGGCATACGAGGATGCATAGAAACTGGCTTTTTACTAAATACCTGCTGATCAGCGTCCTCCGTCGAGGGGGGATCATC"
        "CATTCCTGCTCACCTAAAAGTCAACTGCGCGCCAGGCAGATTTCAGGTTTCGTCCGCTGCTAA"
    ),
    "utr3": (
        "GCGCCCCGTTGGTTATCCGGTACTGTTAGTAGGCCCTGCATGGTCGAGGATCTGCGCACAAGCCGTGATTTTGAATCAA"
        "CCGCATCCCCTCTAAGCTACCATCCGACCCAGATTAGTCAGATGTAAGCCCGGGTGGGTAGGTTGGTGCGCATCCACTC"
        "GCAGCTGTGATGCAGTTTAGAGTATGCCCGACGGGCTCAATA"
    ),
}
KIRCHER_COLUMNS = ("Chrom", "Pos", "Ref", "Alt", "Coefficient", "Element", "Release")


def read_kircher(path: str | os.PathLike, release: str = "GRCh38") -> tuple[pd.DataFrame, int]:
    """The rows of ``elements.tsv.gz`` of one ``release`` with coordinates (``Pos`` int), and
    the number of rows of that release without (``NA``)."""
    frame = pd.read_csv(path, sep="\t", dtype={"Chrom": str}, na_values=["NA"])
    missing = [c for c in KIRCHER_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(path, 1, f"not the Kircher elements table: no {', '.join(missing)}")
    frame = frame[frame["Release"] == release]
    no_position = int(frame["Pos"].isna().sum())
    frame = frame[frame["Pos"].notna()].copy()
    frame["Pos"] = frame["Pos"].astype(np.int64)
    return frame.reset_index(drop=True), no_position


@dataclass(frozen=True)
class Element:
    """An element's reference: ``seq`` (+ strand of the genome) covering ``chrom:start-end``
    (1-based, inclusive), ``gaps``: positions inside without a row."""

    name: str
    chrom: str
    start: int
    end: int
    seq: str
    gaps: tuple[int, ...]


def element_reference(rows: pd.DataFrame, name: str) -> Element:
    """The reference sequence of one element rebuilt from its rows' ``Ref`` column; positions
    must agree on one base each; a position without a row is a gap (``N``)."""
    chroms = rows["Chrom"].unique()
    if len(chroms) != 1:
        raise InputError(None, name, f"rows on {len(chroms)} contigs")
    refs = rows.groupby("Pos")["Ref"].agg(lambda s: set(s.str.upper()))
    conflict = refs[refs.map(len) != 1]
    if len(conflict):
        raise InputError(None, name, f"position {conflict.index[0]} has Ref {conflict.iloc[0]}")
    start, end = int(refs.index.min()), int(refs.index.max())
    bases = {int(p): next(iter(r)) for p, r in refs.items()}
    gaps = tuple(p for p in range(start, end + 1) if p not in bases)
    seq = "".join(bases.get(p, "N") for p in range(start, end + 1))
    return Element(name, str(chroms[0]), start, end, seq, gaps)


def kircher_construct(element: Element, strand: str) -> Construct:
    """The element as the promoter of :data:`REPORTER`, read on ``strand``: its sense strand
    is the element reverse-complemented for ``-``; the TSS is the base after its 3' end in
    that orientation (the element's last base is the promoter's last)."""
    promoter = element.seq if strand == "+" else reverse_complement(element.seq)
    return Construct(f"{element.name}({strand})", {"promoter": promoter, **REPORTER})


def element_substitutions(
    rows: pd.DataFrame, element: Element, strand: str
) -> tuple[list[tuple[str, int, str, str]], np.ndarray, int]:
    """The SNVs of ``rows`` as ``(name, index in the oriented promoter, ref, alt)`` (alleles
    on that strand), their measured ``Coefficient``, and the count of 1-bp deletions (``-``)
    skipped."""
    deletion = rows["Alt"] == "-"
    snv = rows[~deletion]
    length = len(element.seq)
    subs, measured = [], []
    for row in snv.itertuples(index=False):
        i = int(row.Pos) - element.start
        ref, alt = str(row.Ref).upper(), str(row.Alt).upper()
        name = f"{row.Chrom}:{row.Pos}:{ref}>{alt}"
        if strand == "-":
            i, ref, alt = length - 1 - i, reverse_complement(ref), reverse_complement(alt)
        subs.append((name, i, ref, alt))
        measured.append(float(row.Coefficient))
    return subs, np.asarray(measured, dtype=np.float64), int(deletion.sum())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def permutation_null(
    predicted: np.ndarray, measured: np.ndarray, n: int = 1000, seed: int = 0
) -> np.ndarray:
    """Spearman of ``predicted`` against ``n`` shuffles of ``measured``."""
    from scipy import stats

    rp = stats.rankdata(predicted)
    rm = stats.rankdata(measured)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(rm) for _ in range(n)])
    rp = (rp - rp.mean()) / (rp.std() or 1.0)
    shuffled = (shuffled - shuffled.mean(axis=1, keepdims=True)) / shuffled.std(
        axis=1, keepdims=True
    )
    return (shuffled @ rp) / len(rp)


# --------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("variants", help="variant table: TSV `chrom pos ref alt [id]` or VCF")
    parser.add_argument(*MODEL_FLAGS, required=True, metavar="BUNDLE", help="model bundle folder")
    parser.add_argument(*GENOME_FLAGS, required=True, help="genome FASTA (indexed)")
    parser.add_argument(
        *ANNOTATION_FLAGS,
        required=True,
        help="transcripts table (results/annotation/transcripts.parquet)",
    )
    parser.add_argument(
        *OUT_FLAGS,
        required=True,
        metavar="FILE",
        help="output table, one file (not a prefix): .parquet, else TSV (compressed by "
        "suffix: .gz, .bz2, .xz, .zip)",
    )
    parser.add_argument(
        "--contig-alias",
        action="append",
        default=[],
        metavar="VARIANT=GENOME",
        help="read a variant contig under the genome's name (repeatable), e.g. chr1=1",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, metavar="N", help=BATCH_SIZE_HELP
    )
    parser.add_argument("--device", default=None, help=DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    from isoflow.bundle import load_model, output_units, warn_genomic_inputs
    from isoflow.files import check_output_files, check_prefix

    check_prefix(args.out, "-o")
    check_output_files(  # before any work: atomic_path would replace a folder at -o
        [args.out], inputs=[args.variants, args.model, args.genome, args.annotation], option="-o"
    )

    aliases = {}
    for item in args.contig_alias:
        name, sep, target = item.partition("=")
        if not sep or not name or not target:
            raise InputError(None, "--contig-alias", f"{item!r} is not VARIANT=GENOME")
        aliases[name] = target
    table = read_variants(args.variants)
    genome = GenomeWindows(args.genome)
    variants = check_variants(table.variants, genome, aliases)
    transcripts = pd.read_parquet(args.annotation)
    # before the model loads: a table without exons (the dataset's) cannot be read, and an
    # annotation naming contigs otherwise gives no row
    check_annotation_columns(transcripts, args.annotation)
    check_annotation_contigs(transcripts, variants, genome, args.annotation)
    model = load_model(args.model, device=args.device)
    warn_genomic_inputs(args.model, model.card, "isoflow variants")
    frame = variant_effects(
        model,
        variants,
        transcripts,
        genome,
        batch_size=args.batch_size,
        annotation=args.annotation,
    )
    write_table(frame, args.out)
    log.info(
        "%s: %d row(s) for %d variant(s) (%d skipped as not substitutions); effects in %s",
        args.out,
        len(frame),
        frame["variant_id"].nunique() if len(frame) else 0,
        sum(table.skipped.values()),
        output_units(model.card),
    )
    return 0
