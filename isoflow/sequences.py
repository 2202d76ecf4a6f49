"""Spliced transcript sequences, CDS translation and TSS-centred DNA windows.

Conventions (DESIGN.md, ``results/sequences/``):

* RNA: exons joined 5'->3' on the mRNA strand, upper case (as GENCODE's pc_transcripts).
* Protein: the CDS translated with the standard code, or the vertebrate mitochondrial code
  (NCBI table 2) on the mitochondrial contig. No trailing ``*``. A CDS whose 5'-most
  segment has phase ``p > 0`` (an incomplete start, ``cds_start_NF``) skips ``p`` bases and
  starts with ``X``, as GENCODE's pc_translations do (HLA-DPA1-243). An incomplete last
  codon is ``X``, except on the mitochondrion where a trailing ``T``/``TA`` is a stop codon
  completed by polyadenylation (Ensembl and RefSeq end those proteins without ``X``).
  ``Selenocysteine`` positions become ``U``. With table 2 a complete CDS's first codon reads
  ``M`` whatever the alternative initiator (ATT, ATC, ATA, GTG), as Ensembl's peptides do.
  An internal stop is kept as ``*`` (real annotation has a few, e.g. an unannotated
  selenocysteine); their number is logged as a warning.
* DNA window: ``window`` bp with the TSS at 0-based index ``window // 2`` of the window as
  read 5'->3' on the transcript's strand (so after reverse-complementing a minus-strand
  window). ``+``: ``start = tss - window // 2``; ``-``: ``end = tss + window // 2 + 1``.
  Windows are never dropped or clipped: ``start`` may be negative and ``end`` may exceed
  the contig length (:meth:`isoflow.genome.GenomeWindows.tokens` N-pads).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
import pysam
from xopen import xopen

from isoflow.alphabet import genetic_code, reverse_complement, translate_cds
from isoflow.errors import InputError, non_utf8_error
from isoflow.files import atomic_path
from isoflow.genome import GenomeWindows, check_contigs

log = logging.getLogger("isoflow.sequences")

FASTA_WIDTH = 60


def _as_ints(values: object) -> list[int]:
    return [] if values is None else [int(v) for v in values]  # type: ignore[union-attr]


def _as_strs(values: object) -> list[str]:
    return [] if values is None else [str(v) for v in values]  # type: ignore[union-attr]


def _exons(row: pd.Series | object) -> list[tuple[int, int]]:
    """Exons in genomic order; any other order would splice a wrong RNA without a word."""
    starts, ends = _as_ints(row.exon_starts), _as_ints(row.exon_ends)
    if len(starts) != len(ends) or not starts:
        raise ValueError("exon_starts and exon_ends differ in length or are empty")
    exons = list(zip(starts, ends, strict=True))
    for i, (start, end) in enumerate(exons):
        if start >= end:
            raise ValueError(f"exon {start}-{end} is empty or reversed")
        if i and start < exons[i - 1][1]:
            raise ValueError(
                f"exons are not in genomic order or overlap ({exons[i - 1][0]}-"
                f"{exons[i - 1][1]} then {start}-{end})"
            )
    return exons


def _check_cds(exons: Sequence[tuple[int, int]], cds_start: int, cds_end: int) -> None:
    """Both ends of the CDS span are exonic bases (a CDS past the exons would be cut short)."""
    for base in (cds_start, cds_end - 1):
        if cds_start >= cds_end or not any(s <= base < e for s, e in exons):
            raise ValueError(f"CDS {cds_start}-{cds_end} does not start and end inside exons")


def cds_bounds(
    exons: Sequence[tuple[int, int]], strand: str, cds_start: int, cds_end: int
) -> tuple[int, int]:
    """Transcript coordinates ``[first, last)`` of the genomic CDS span ``[cds_start, cds_end)``."""
    before = inside = 0  # exonic bases 5' of the CDS on the genome's + strand, and within it
    for start, end in exons:
        before += max(0, min(end, cds_start) - start)
        inside += max(0, min(end, cds_end) - max(start, cds_start))
    total = sum(end - start for start, end in exons)
    if strand == "-":
        before = total - before - inside
    if inside == 0:
        raise ValueError(f"CDS {cds_start}-{cds_end} does not overlap the exons")
    return before, before + inside


def window_bounds(tss: int, strand: str, window: int) -> tuple[int, int]:
    """``[start, end)`` of the DNA window putting the TSS at index ``window // 2`` 5'->3'."""
    if strand == "-":
        end = tss + window // 2 + 1
        return end - window, end
    start = tss - window // 2
    return start, start + window


@dataclass
class SequenceRecord:
    transcript_id: str
    rna: str
    protein: str | None


def sequence_records(
    transcripts: pd.DataFrame,
    genome: GenomeWindows,
    source: str | os.PathLike | None = None,
) -> Iterator[SequenceRecord]:
    """Spliced RNA and protein (None if non-coding) of each transcript, in table order.

    ``source`` names the table in errors (an exon past its contig, a misplaced CDS).
    """
    for row in transcripts.itertuples(index=False):
        tid = row.transcript_id
        try:
            if row.strand not in ("+", "-"):
                raise ValueError(f"strand {row.strand!r} is not + or -")
            exons = _exons(row)
            # one fetch of the whole span, then slices: ~10x fewer pysam calls than per exon
            lo, hi = min(s for s, _ in exons), max(e for _, e in exons)
            span = genome.fetch(row.chrom, lo, hi)
            first_base = exons[0][0] if row.strand == "+" else exons[-1][1] - 1
            if int(row.tss) != first_base:
                raise ValueError(
                    f"tss {row.tss} is not the first transcribed base ({first_base}); "
                    "the DNA window would be centred elsewhere"
                )
            rna = "".join(span[start - lo : end - lo] for start, end in exons).upper()
            if row.strand == "-":
                rna = reverse_complement(rna)
            protein = None
            if not pd.isna(row.cds_start):
                _check_cds(exons, int(row.cds_start), int(row.cds_end))
                first, last = cds_bounds(exons, row.strand, int(row.cds_start), int(row.cds_end))
                phase = 0 if pd.isna(row.cds_phase) else int(row.cds_phase)
                tags = set(_as_strs(row.tags))
                protein = translate_cds(
                    rna[first:last],
                    table=genetic_code(row.chrom),
                    phase=phase,
                    start_complete="cds_start_NF" not in tags,
                    selenocysteines=[p - first for p in _as_ints(row.selenocysteines)],
                )
        except InputError as err:
            raise InputError(source, tid, err.message) from err
        except ValueError as err:
            raise InputError(source, tid, str(err)) from err
        yield SequenceRecord(tid, rna, protein)


def transcript_sequences(
    transcripts: pd.DataFrame, fasta: str | os.PathLike
) -> Iterator[tuple[str, str]]:
    """``(transcript_id, spliced RNA)`` for each transcript, 5'->3' on the mRNA strand."""
    with GenomeWindows(fasta) as genome:
        for record in sequence_records(transcripts, genome):
            yield record.transcript_id, record.rna


def _fasta_record(name: str, seq: str) -> str:
    lines = [seq[i : i + FASTA_WIDTH] for i in range(0, len(seq), FASTA_WIDTH)]
    return f">{name}\n" + "".join(f"{line}\n" for line in lines)


def write_windows_bed(transcripts: pd.DataFrame, window: int, path: str | os.PathLike) -> int:
    """BED6 ``chrom start end transcript_id 0 strand`` of every transcript; returns rows."""
    with atomic_path(path) as tmp, open(tmp, "w") as bed:
        for row in transcripts.itertuples(index=False):
            start, end = window_bounds(int(row.tss), row.strand, window)
            bed.write(f"{row.chrom}\t{start}\t{end}\t{row.transcript_id}\t0\t{row.strand}\n")
    return len(transcripts)


def build_sequences(
    transcripts: pd.DataFrame,
    fasta: str | os.PathLike,
    window: int,
    rna_path: str | os.PathLike,
    protein_path: str | os.PathLike,
    bed_path: str | os.PathLike,
    annotation_path: str | os.PathLike | None = None,
    transcripts_path: str | os.PathLike | None = None,
    contig_aliases: dict[str, str] | None = None,
) -> dict[str, int]:
    """Write rna.fa.gz, protein.fa.gz and dna_windows.bed; return counts for the log.

    Fails before writing anything when an annotation contig is missing from the FASTA
    (``contig_aliases``, as applied to the annotation, only shape the error's hint).
    """
    dup = transcripts["transcript_id"].duplicated()
    if dup.any():
        tid = transcripts["transcript_id"][dup].iloc[0]
        raise InputError(transcripts_path, tid, "transcript listed twice")
    check_contigs(
        transcripts["chrom"].unique(),
        fasta,
        annotation_path or transcripts_path,
        contig_aliases,
    )
    counts = {"transcripts": 0, "proteins": 0, "internal_stops": 0, "windows_past_ends": 0}
    with_stops: list[str] = []
    with (
        GenomeWindows(fasta) as genome,
        atomic_path(rna_path) as rna_tmp,
        atomic_path(protein_path) as protein_tmp,
        xopen(rna_tmp, "wt", format="gz", threads=0) as rna_out,
        xopen(protein_tmp, "wt", format="gz", threads=0) as protein_out,
    ):
        for record in sequence_records(transcripts, genome, transcripts_path):
            counts["transcripts"] += 1
            rna_out.write(_fasta_record(record.transcript_id, record.rna))
            if record.protein is not None:
                counts["proteins"] += 1
                if "*" in record.protein:
                    with_stops.append(record.transcript_id)
                protein_out.write(_fasta_record(record.transcript_id, record.protein))
        write_windows_bed(transcripts, window, bed_path)
        for row in transcripts.itertuples(index=False):
            start, end = window_bounds(int(row.tss), row.strand, window)
            counts["windows_past_ends"] += start < 0 or end > genome.lengths[row.chrom]
    counts["internal_stops"] = len(with_stops)
    if with_stops:
        log.warning(
            "%d proteins have an internal stop, kept as '*' (first: %s)",
            len(with_stops),
            ", ".join(with_stops[:5]),
        )
    log.info(
        "%(transcripts)d transcripts, %(proteins)d proteins, %(windows_past_ends)d windows "
        "run past a contig end (N-padded when loaded)",
        counts,
    )
    return counts


def read_fasta(path: str | os.PathLike) -> dict[str, str]:
    """A (gzip) FASTA as ``{first word of header: sequence}`` (pysam); the one FASTA-records
    reader of the package. A name listed twice or an unreadable file is an InputError."""
    records: dict[str, str] = {}
    try:
        with pysam.FastxFile(str(path)) as fasta:
            for record in fasta:
                if record.name in records:
                    raise InputError(path, record.name, "sequence listed twice")
                records[record.name] = record.sequence or ""
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except OSError as err:
        raise InputError(path, None, f"cannot read FASTA: {err}") from None
    return records
