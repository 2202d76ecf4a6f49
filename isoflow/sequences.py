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
  Windows are never clipped: with ``dna.edge: pad`` (the default) ``start`` may be
  negative and ``end`` may exceed the contig length
  (:meth:`isoflow.genome.GenomeWindows.tokens` N-pads); with ``drop`` (IsoFormer's loader)
  such a window leaves the BED and is listed in a ``# dropped`` comment line instead, so the
  dataset leaves its transcript out, counted (``DROPPED_PREFIX``).
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pysam
from xopen import xopen

from isoflow.alphabet import genetic_code, reverse_complement, translate_cds
from isoflow.errors import InputError, non_utf8_error
from isoflow.files import atomic_path
from isoflow.genome import BASE_LETTERS, GenomeWindows, check_contigs, line_ends_in_place
from isoflow.progress import Progress

log = logging.getLogger("isoflow.sequences")

FASTA_WIDTH = 60
# dna.edge: pad (N-padded when loaded) or drop (the transcript leaves the dataset).
EDGE_MODES = ("pad", "drop")
# dna_windows.bed comment line of a window dropped by dna.edge: drop (then its BED6 fields).
DROPPED_PREFIX = "# dropped\t"


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


def _window_start(tss, minus, window: int):
    """Start of the DNA window putting the TSS at index ``window // 2`` read 5'->3' (scalars
    or arrays): ``tss - window // 2`` on ``+``; on ``-`` the window ends at
    ``tss + window // 2 + 1``."""
    return np.where(minus, tss + window // 2 + 1 - window, tss - window // 2)


def window_bounds(tss: int, strand: str, window: int) -> tuple[int, int]:
    """``[start, end)`` of the DNA window putting the TSS at index ``window // 2`` 5'->3'."""
    start = int(_window_start(tss, strand == "-", window))
    return start, start + window


@dataclass
class SequenceRecord:
    transcript_id: str
    rna: str
    protein: str | None


# Transcripts assembled per batch: the exon bytes of one batch are gathered at once.
_BATCH = 4096
_GZIP_MAGIC = b"\x1f\x8b"


def sequence_records(
    transcripts: pd.DataFrame,
    genome: GenomeWindows,
    source: str | os.PathLike | None = None,
) -> Iterator[SequenceRecord]:
    """Spliced RNA and protein (None if non-coding) of each transcript, in table order.

    ``source`` names the table in errors (an exon past its contig, a misplaced CDS).
    Only exon bases are read: the table is checked with array operations, and a batch of
    transcripts that passes has its exons gathered in one go (``_ExonReader``); a batch
    holding a transcript that breaks a check goes through ``_records_one_by_one``, which
    raises the error naming the first such transcript, as the table is read in order.
    """
    for batch in _record_batches(transcripts, genome, source):
        yield from batch


def _record_batches(
    transcripts: pd.DataFrame, genome: GenomeWindows, source: str | os.PathLike | None
) -> Iterator[list[SequenceRecord]]:
    table = _Columns(transcripts, genome)
    with _ExonReader(genome) as reader:
        for lo in range(0, table.n, _BATCH):
            hi = min(lo + _BATCH, table.n)
            raw = None if table.suspect[lo:hi].any() else table.exon_bytes(reader, lo, hi)
            if raw is None:
                yield list(_records_one_by_one(transcripts.iloc[lo:hi], genome, source))
            else:
                yield list(table.records(raw, lo, hi, source))


class _Columns:
    """The table's columns as arrays (exons flattened, ``offsets`` per transcript), and a
    ``suspect`` mark on each transcript that breaks a check of ``_records_one_by_one``."""

    def __init__(self, transcripts: pd.DataFrame, genome: GenomeWindows):
        self.n = n = len(transcripts)
        self.ids = [str(t) for t in transcripts["transcript_id"].tolist()]
        self.chroms = [str(c) for c in transcripts["chrom"].tolist()]
        self.strands = transcripts["strand"].tolist()
        starts = [_as_array(v) for v in transcripts["exon_starts"].tolist()]
        ends = [_as_array(v) for v in transcripts["exon_ends"].tolist()]
        paired = np.array([len(a) == len(b) for a, b in zip(starts, ends, strict=True)], bool)
        counts = np.array([len(a) if ok else 0 for a, ok in zip(starts, paired, strict=True)])
        self.offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        keep = [i for i in range(n) if paired[i]]
        self.starts = _flat([starts[i] for i in keep])
        self.ends = _flat([ends[i] for i in keep])
        tx = np.repeat(np.arange(n), counts)
        first, last = self.offsets[:-1], self.offsets[1:] - 1
        minus = np.array([s == "-" for s in self.strands], dtype=bool)
        self.minus = minus
        suspect = ~paired | (counts == 0)
        suspect |= np.array([s not in ("+", "-") for s in self.strands], dtype=bool)
        # exons non-empty, in genomic order, not overlapping
        bad = self.starts >= self.ends
        bad[1:] |= (tx[1:] == tx[:-1]) & (self.starts[1:] < self.ends[:-1])
        suspect |= np.bincount(tx, weights=bad, minlength=n) > 0
        safe_first, safe_last = np.minimum(first, len(tx) - 1), np.maximum(last, 0)
        if len(tx):
            lengths = genome.lengths
            contig_length = np.array([lengths.get(c, -1) for c in self.chroms], dtype=np.int64)
            suspect |= (contig_length < 0) | (self.starts[safe_first] < 0)
            suspect |= self.ends[safe_last] > contig_length
            first_base = np.where(minus, self.ends[safe_last] - 1, self.starts[safe_first])
            tss = transcripts["tss"].to_numpy(dtype=np.int64, na_value=-1)
            suspect |= transcripts["tss"].isna().to_numpy() | (tss != first_base)
        # a CDS starts and ends on exon bases
        cds_start, cds_end = transcripts["cds_start"], transcripts["cds_end"]
        self.coding = ~cds_start.isna().to_numpy()
        suspect |= self.coding & cds_end.isna().to_numpy()
        self.cds_start = cds_start.to_numpy(dtype=np.int64, na_value=0)
        self.cds_end = cds_end.to_numpy(dtype=np.int64, na_value=0)
        suspect |= self.coding & (self.cds_start >= self.cds_end)
        on_start = (self.starts <= self.cds_start[tx]) & (self.cds_start[tx] < self.ends)
        on_end = (self.starts <= self.cds_end[tx] - 1) & (self.cds_end[tx] - 1 < self.ends)
        starts_in = np.bincount(tx, weights=on_start, minlength=n) > 0
        ends_in = np.bincount(tx, weights=on_end, minlength=n) > 0
        suspect |= self.coding & ~(starts_in & ends_in)
        self.suspect = suspect
        self.tx = tx
        self.phase = transcripts["cds_phase"].tolist()
        self.tags = transcripts["tags"].tolist()
        self.selenocysteines = transcripts["selenocysteines"].tolist()

    def exon_bytes(self, reader: _ExonReader, lo: int, hi: int) -> bytes | None:
        """Upper-case bases of the exons of transcripts ``[lo, hi)``, in table and genomic
        order; None when they cannot be read as ASCII (``_records_one_by_one`` says why)."""
        a, b = self.offsets[lo], self.offsets[hi]
        raw = reader.read(self.chroms, self.tx[a:b], self.starts[a:b], self.ends[a:b])
        return None if raw is None else raw.upper()

    def records(
        self, raw: bytes, lo: int, hi: int, source: str | os.PathLike | None
    ) -> Iterator[SequenceRecord]:
        """Records of transcripts ``[lo, hi)`` from their exon bases ``raw``."""
        a, b = self.offsets[lo], self.offsets[hi]
        tx, starts, ends = self.tx[a:b], self.starts[a:b], self.ends[a:b]
        exon_len = ends - starts
        bounds = np.zeros(hi - lo + 1, dtype=np.int64)
        np.cumsum(np.bincount(tx - lo, weights=exon_len, minlength=hi - lo), out=bounds[1:])
        # CDS in transcript coordinates (cds_bounds, for the whole batch at once)
        cs, ce = self.cds_start[tx], self.cds_end[tx]
        before_piece = np.clip(np.minimum(ends, cs) - starts, 0, None)
        inside_piece = np.clip(np.minimum(ends, ce) - np.maximum(starts, cs), 0, None)
        before = np.bincount(tx - lo, weights=before_piece, minlength=hi - lo).astype(np.int64)
        inside = np.bincount(tx - lo, weights=inside_piece, minlength=hi - lo).astype(np.int64)
        total = np.diff(bounds)
        minus = self.minus[lo:hi]
        before = np.where(minus, total - before - inside, before)
        bounds_list, before_list, inside_list = bounds.tolist(), before.tolist(), inside.tolist()
        for i in range(lo, hi):
            j = i - lo
            seq = raw[bounds_list[j] : bounds_list[j + 1]]
            rna = (reverse_complement(seq) if self.minus[i] else seq).decode("ascii")
            protein = None
            if self.coding[i]:
                first = before_list[j]
                last = first + inside_list[j]
                phase = self.phase[i]
                tags = self.tags[i]
                try:
                    protein = translate_cds(
                        rna[first:last],
                        table=genetic_code(self.chroms[i]),
                        phase=0 if pd.isna(phase) else int(phase),
                        start_complete="cds_start_NF" not in set(_as_strs(tags)),
                        selenocysteines=[p - first for p in _as_ints(self.selenocysteines[i])],
                    )
                except ValueError as err:
                    raise InputError(source, self.ids[i], str(err)) from err
            yield SequenceRecord(self.ids[i], rna, protein)


def _as_array(values: object) -> np.ndarray:
    """Coordinates as int64 (as ``_as_ints``); an int64 array, as parquet gives, as it is."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    return np.asarray(_as_ints(values), dtype=np.int64) if values is not None else _EMPTY


_EMPTY = np.zeros(0, dtype=np.int64)


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64, copy=False) if arrays else _EMPTY


class _ExonReader:
    """Exon bases of an indexed FASTA, many exons per call.

    A plain FASTA is memory-mapped and each exon's bytes located from the ``.fai`` (offset,
    bases and bytes per line); a bgzip one is read through pysam, exon by exon. Either way
    only exon bases are read, never the introns between them.
    """

    def __init__(self, genome: GenomeWindows):
        self.genome = genome
        self._file = self._map = None
        self.layout: dict[str, tuple[int, int, int, int]] = {}
        with open(genome.path, "rb") as handle:
            if handle.read(2) == _GZIP_MAGIC:
                return
        with open(f"{genome.path}.fai", encoding="utf-8") as fai:
            for line in fai:
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) >= 5:
                    self.layout[fields[0]] = (*map(int, fields[2:5]), int(fields[1]))
        self._file = open(genome.path, "rb")  # noqa: SIM115 (closed in close())
        if os.fstat(self._file.fileno()).st_size:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def __enter__(self) -> _ExonReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._map is not None:
            self._map.close()
        if self._file is not None:
            self._file.close()

    def read(
        self, chroms: list[str], tx: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> bytes | None:
        """Bases of exons ``[starts, ends)`` on ``chroms[tx]``, concatenated, case as stored;
        None when a byte is not a nucleotide letter (``genome.BASE_LETTERS``: not ASCII, a
        gap, a digit) or the file's lines do not match its ``.fai``."""
        if self._map is None:
            return self._read_pysam(chroms, tx, starts, ends)
        names = [chroms[t] for t in tx.tolist()]
        layout = np.array([self.layout[name] for name in names], dtype=np.int64).reshape(-1, 4)
        offset, bases, width = layout[:, 0], np.maximum(layout[:, 1], 1), layout[:, 2]
        last = ends - 1
        lo = offset + starts // bases * width + starts % bases
        hi = offset + last // bases * width + last % bases + 1
        mapped = self._map
        raw = b"".join([mapped[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])
        if hasattr(mmap, "MADV_DONTNEED"):  # unmap the pages read: they stay in the page
            mapped.madvise(mmap.MADV_DONTNEED)  # cache, but leave this process's RSS
        raw = raw.translate(None, b"\r\n")
        if len(raw) != int((ends - starts).sum()) or raw.translate(None, BASE_LETTERS):
            return None  # the one-by-one path names the transcript, contig and base
        # a line made longer or shorter after indexing shifts the bases read by the .fai
        if not line_ends_in_place(mapped, offset, bases, width, layout[:, 3], starts, ends):
            return None
        return raw

    def _read_pysam(self, chroms, tx, starts, ends) -> bytes | None:
        try:
            text = "".join(
                self.genome.fetch(chroms[t], s, e)
                for t, s, e in zip(tx.tolist(), starts.tolist(), ends.tolist(), strict=True)
            )
        except InputError:
            return None
        return text.encode("ascii")


def _records_one_by_one(
    transcripts: pd.DataFrame,
    genome: GenomeWindows,
    source: str | os.PathLike | None = None,
) -> Iterator[SequenceRecord]:
    """``sequence_records`` one transcript at a time, each check in turn: the reference the
    batched path must agree with, and the one that names what is wrong."""
    for row in transcripts.itertuples(index=False):
        tid = row.transcript_id
        try:
            if row.strand not in ("+", "-"):
                raise ValueError(f"strand {row.strand!r} is not + or -")
            exons = _exons(row)
            lo, hi = exons[0][0], exons[-1][1]
            if lo < 0 or hi > genome.lengths.get(row.chrom, -1):
                genome.fetch(row.chrom, lo, hi)  # raises, naming the contig and the span
            first_base = exons[0][0] if row.strand == "+" else exons[-1][1] - 1
            if int(row.tss) != first_base:
                raise ValueError(
                    f"tss {row.tss} is not the first transcribed base ({first_base}); "
                    "the DNA window would be centred elsewhere"
                )
            rna = "".join(genome.fetch(row.chrom, start, end) for start, end in exons).upper()
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


def _fasta_records(names: list[str], seqs: list[str]) -> list[str]:
    """One FASTA record per sequence, ``>name`` + lines of ``FASTA_WIDTH``, made for many
    records at once: the line breaks go into the joined sequences in one numpy call.

    One string per record, written one by one, so the text layer hands the gzip writer the
    same chunks as ever and the compressed files stay byte for byte the same."""
    body = np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    starts = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    lines = -(-lengths // FASTA_WIDTH)  # an empty sequence has no line
    record = np.repeat(np.arange(len(seqs)), lines)
    line_starts = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lines, out=line_starts[1:])
    k = np.arange(len(record)) - line_starts[record] + 1  # the k-th line of its record
    breaks = starts[record] + np.minimum(k * FASTA_WIDTH, lengths[record])
    wrapped = np.insert(body, breaks, ord("\n")).tobytes().decode("ascii")
    bounds = (starts + line_starts).tolist()
    return [
        f">{name}\n{wrapped[begin:end]}"
        for name, begin, end in zip(names, bounds[:-1], bounds[1:], strict=True)
    ]


def window_starts(transcripts: pd.DataFrame, window: int) -> np.ndarray:
    """``window_bounds(tss, strand, window)[0]`` of every transcript (the end is + window)."""
    tss = transcripts["tss"].to_numpy(dtype=np.int64)
    minus = (transcripts["strand"] == "-").to_numpy(dtype=bool)
    return _window_start(tss, minus, window)


def write_windows_bed(
    transcripts: pd.DataFrame,
    window: int,
    path: str | os.PathLike,
    dropped: np.ndarray | None = None,
) -> int:
    """BED6 ``chrom start end transcript_id 0 strand`` of every transcript; returns rows.

    ``dropped`` (bool per transcript, ``dna.edge: drop``): those windows are written first
    as ``# dropped`` comment lines (``DROPPED_PREFIX`` + their BED6 fields), not as rows.
    """
    starts = window_starts(transcripts, window)
    columns = zip(
        transcripts["chrom"].tolist(),
        starts.tolist(),
        (starts + window).tolist(),
        transcripts["transcript_id"].tolist(),
        transcripts["strand"].tolist(),
        strict=True,
    )
    lines = [f"{c}\t{s}\t{e}\t{t}\t0\t{st}\n" for c, s, e, t, st in columns]
    if dropped is not None:
        gone = dropped.tolist()
        lines = [DROPPED_PREFIX + line for line, out in zip(lines, gone, strict=True) if out] + [
            line for line, out in zip(lines, gone, strict=True) if not out
        ]
    with atomic_path(path) as tmp, open(tmp, "w") as bed:
        bed.write("".join(lines))
    return len(transcripts) - (int(dropped.sum()) if dropped is not None else 0)


def read_dropped_windows(path: str | os.PathLike) -> list[str]:
    """The transcript IDs of the ``# dropped`` lines of a windows BED (``dna.edge: drop``)."""
    ids = []
    with open(path, encoding="utf-8", errors="replace") as bed:
        for line in bed:
            if not line.startswith("#"):
                break  # the dropped lines come first
            if line.startswith(DROPPED_PREFIX):
                fields = line[len(DROPPED_PREFIX) :].rstrip("\n").split("\t")
                if len(fields) >= 4:
                    ids.append(fields[3])
    return ids


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
    edge: str = "pad",
) -> dict[str, int]:
    """Write rna.fa.gz, protein.fa.gz and dna_windows.bed; return counts for the log.

    Fails before writing anything when an annotation contig is missing from the FASTA
    (``contig_aliases``, as applied to the annotation, only shape the error's hint).
    ``edge`` is ``dna.edge``: ``drop`` writes the windows that run past a contig end as
    ``# dropped`` lines of the BED (``write_windows_bed``), ``pad`` as rows.
    """
    if edge not in EDGE_MODES:
        raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
    dup = transcripts["transcript_id"].duplicated()
    if dup.any():
        tid = transcripts["transcript_id"][dup].iloc[0]
        raise InputError(transcripts_path, tid, "transcript listed twice")
    # The index is checked against the FASTA first (a user's .fai is read as it is, never
    # remade by the workflow): a stale one lacking a contig is named as stale, not as a
    # contig missing from the FASTA.
    genome = GenomeWindows(fasta)
    try:
        check_contigs(
            transcripts["chrom"].unique(),
            fasta,
            annotation_path or transcripts_path,
            contig_aliases,
        )
    except BaseException:
        genome.close()
        raise
    counts = {"transcripts": 0, "proteins": 0, "internal_stops": 0, "windows_past_ends": 0}
    with_stops: list[str] = []
    with (
        genome,
        atomic_path(rna_path) as rna_tmp,
        atomic_path(protein_path) as protein_tmp,
        xopen(rna_tmp, "wt", format="gz", threads=0) as rna_out,
        xopen(protein_tmp, "wt", format="gz", threads=0) as protein_out,
    ):
        progress = Progress("sequences", len(transcripts), "transcripts", logger=log)
        for batch in _record_batches(transcripts, genome, transcripts_path):
            progress.update(len(batch))
            counts["transcripts"] += len(batch)
            names = [r.transcript_id for r in batch]
            rna_out.writelines(_fasta_records(names, [r.rna for r in batch]))
            coding = [r for r in batch if r.protein is not None]
            counts["proteins"] += len(coding)
            with_stops += [r.transcript_id for r in coding if "*" in r.protein]
            names = [r.transcript_id for r in coding]
            protein_out.writelines(_fasta_records(names, [r.protein for r in coding]))
        progress.finish()
        starts = window_starts(transcripts, window)
        contig_length = transcripts["chrom"].map(genome.lengths).to_numpy(dtype=np.int64)
        past_ends = (starts < 0) | (starts + window > contig_length)
        counts["windows_past_ends"] = int(past_ends.sum())
        write_windows_bed(transcripts, window, bed_path, past_ends if edge == "drop" else None)
    counts["internal_stops"] = len(with_stops)
    if with_stops:
        log.warning(
            "%d proteins have an internal stop, kept as '*' (first: %s)",
            len(with_stops),
            ", ".join(with_stops[:5]),
        )
    fate = (
        "dropped (dna.edge: drop; listed as '# dropped' lines of the windows BED)"
        if edge == "drop"
        else "N-padded when loaded"
    )
    log.info(
        "%d transcripts, %d proteins, %d windows run past a contig end (%s)",
        counts["transcripts"],
        counts["proteins"],
        counts["windows_past_ends"],
        fate,
    )
    return counts


# Records read between two progress updates of read_fasta (one clock read per update).
_PROGRESS_RECORDS = 1024


def read_fasta(path: str | os.PathLike, progress: Progress | None = None) -> dict[str, str]:
    """A (gzip) FASTA as ``{first word of header: sequence}`` (pysam); the one FASTA-records
    reader of the package. A name listed twice or an unreadable file is an InputError.
    ``progress`` is told of the records read (every ``_PROGRESS_RECORDS``) and finished."""
    records: dict[str, str] = {}
    try:
        with pysam.FastxFile(str(path)) as fasta:
            for record in fasta:
                if record.name in records:
                    raise InputError(path, record.name, "sequence listed twice")
                records[record.name] = record.sequence or ""
                if progress is not None and len(records) % _PROGRESS_RECORDS == 0:
                    progress.update(_PROGRESS_RECORDS)
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except OSError as err:
        raise InputError(path, None, f"cannot read FASTA: {err}") from None
    if progress is not None:
        progress.update(len(records) % _PROGRESS_RECORDS)
        progress.finish()
    return records
