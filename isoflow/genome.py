"""Indexed genome FASTA access: DNA windows as uint8 tokens, contig checks, the .fai index.

Tokens follow DESIGN.md: ``A=0, C=1, G=2, T=3, N=4``; lower case (soft-masking) is folded,
every other ASCII byte (IUPAC ambiguity codes, anything else) is 4 (``encode``); a byte
outside ASCII in a window read is an error (pysam decodes bases as UTF-8, so it would crash
or shift the window), and so is one that is no IUPAC nucleotide letter (``BASE_LETTERS``).
A window may run past either end of its contig: the part outside is N-padded, never dropped.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pysam
import pysam.libcbgzf

from isoflow.alphabet import MITO_NAMES
from isoflow.errors import InputError, non_utf8_error
from isoflow.files import atomic_path

log = logging.getLogger("isoflow.genome")

N_TOKEN = 4

# byte -> token; the reverse-complement table maps a base to its complement's token so a
# minus-strand window is one reversed lookup (complement in token space is 3 - t for t < 4).
_FORWARD = np.full(256, N_TOKEN, dtype=np.uint8)
_COMPLEMENT = np.full(256, N_TOKEN, dtype=np.uint8)
for _token, _base in enumerate("ACGT"):
    for _byte in (ord(_base), ord(_base.lower())):
        _FORWARD[_byte] = _token
        _COMPLEMENT[_byte] = 3 - _token

# Names the same contig goes by in UCSC, Ensembl and GenBank-style assemblies.


# The letters a sequence line may hold: IUPAC nucleotide codes, either case (soft-masking).
BASE_LETTERS = b"ACGTURYKMSWBDHVNacgturykmswbdhvn"
_NOT_A_BASE = re.compile(b"[^" + BASE_LETTERS + b"]")


def not_a_base(path: str | os.PathLike, chrom: str, start: int, raw: bytes) -> InputError:
    """The error for the first byte of ``raw`` (bases of ``chrom`` from 0-based ``start``)
    that is not in ``BASE_LETTERS``: a gap, a stop, a digit, a space in the genome FASTA
    reached the RNA (``rna.fa.gz``) or a window as a base."""
    found = _NOT_A_BASE.search(raw)
    if found is None:
        raise ValueError("every byte is a nucleotide letter")
    return InputError(
        path,
        chrom,
        f"base {start + found.start() + 1:,} of {chrom} is {chr(raw[found.start()])!r}, not a "
        "nucleotide letter (IUPAC: ACGTURYKMSWBDHVN, either case); fix the genome FASTA "
        f"{path} (a genome hard-masked with X: mask with N)",
    )


_FORWARD_TABLE = _FORWARD.tobytes()
_COMPLEMENT_TABLE = _COMPLEMENT.tobytes()


def encode(seq: str | bytes, strand: str = "+") -> np.ndarray:
    """Tokens of ``seq`` (5'->3' of the given strand: '-' reverse-complements)."""
    raw = seq.encode("ascii") if isinstance(seq, str) else bytes(seq)
    # bytes.translate is a C loop over a 256-byte table: ~4x faster than numpy fancy
    # indexing on 196 kb windows (bench/bench_windows.py).
    if strand == "-":
        coded = bytearray(raw.translate(_COMPLEMENT_TABLE)[::-1])
    else:
        coded = bytearray(raw.translate(_FORWARD_TABLE))
    return np.frombuffer(coded, dtype=np.uint8)


class GenomeWindows:
    """Windows of an indexed FASTA as token arrays.

    The pysam handle is opened lazily and reopened after a fork, so one instance can be
    handed to PyTorch DataLoader workers.
    """

    def __init__(self, fasta_path: str | os.PathLike):
        self.path = Path(fasta_path)
        if not self.path.exists():
            raise InputError(self.path, None, "genome FASTA does not exist")
        self._fasta: pysam.FastaFile | None = None
        self._pid: int | None = None
        fasta = self._handle()  # builds the .fai when absent
        check_fasta_index(self.path)
        self.lengths: dict[str, int] = dict(zip(fasta.references, fasta.lengths, strict=True))
        # (bases, bytes) per line of each contig, as the .fai says, and the bases per line of
        # those whose lines ``_fetch`` checks (more than one line, not over LINE_CHECK_MAX)
        entries = _fai_entries(self._fai)
        self._lines = {name: (bases, width) for name, _, _, bases, width in entries}
        self._checked_lines = {
            name: bases
            for name, length, _, bases, _ in entries
            if 0 < bases < length and bases <= LINE_CHECK_MAX
        }
        # and of those whose lines are longer: ``_fetch`` probes their line ends
        self._probed_lines = {
            name: bases
            for name, length, _, bases, _ in entries
            if 0 < bases < length and bases > LINE_CHECK_MAX
        }

    @property
    def _fai(self) -> Path:
        return Path(f"{self.path}.fai")

    def _handle(self) -> pysam.FastaFile:
        if self._fasta is None or self._pid != os.getpid():
            try:
                self._fasta = pysam.FastaFile(str(self.path))
            except UnicodeDecodeError:  # a contig name; the .fai is built by now
                check_fasta_index(self.path)
                raise
            except (OSError, ValueError) as err:
                raise InputError(self.path, None, f"cannot open as indexed FASTA: {err}") from err
            self._pid = os.getpid()
        return self._fasta

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fasta"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        if self._fasta is not None:
            self._fasta.close()
            self._fasta = None

    def __enter__(self) -> GenomeWindows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _length(self, chrom: str) -> int:
        try:
            return self.lengths[chrom]
        except KeyError:
            raise InputError(self.path, chrom, "contig is not in the genome FASTA") from None

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` of ``chrom`` as stored (case kept); must lie inside it."""
        length = self._length(chrom)
        if start < 0 or end > length or start > end:
            raise InputError(
                self.path, chrom, f"interval {start}-{end} lies outside the contig (0-{length})"
            )
        return self._fetch(chrom, start, end)

    def _fetch(self, chrom: str, start: int, end: int) -> str:
        """pysam's fetch, with a byte outside ASCII an error naming its contig position: pysam
        decodes bases as UTF-8, so such a byte raised a traceback or, as a valid UTF-8
        character of 2-4 bytes, made the window shorter than asked. An ASCII byte that is no
        nucleotide letter (``-``, ``*``, ``.``, a digit) is an error too (``not_a_base``).

        The lines read are checked against the .fai: htslib finds a base by
        the bases and bytes per line the .fai gives, so a line made longer or shorter after
        the index was built (same file size, or the records' ends still where the .fai
        says: ``check_fasta_index`` passes) shifted every base after it, silently where a
        read did not reach the misplaced line end. Read over whole lines, a line end out of
        place is a line-end byte among the bases (or, with an htslib that drops such bytes,
        fewer bases than asked): an error naming the contig, the bases and the fix."""
        if chrom in self._probed_lines and end > start:
            self._probe_line_ends(chrom, start, end)
        # [lo, hi): the whole lines [start, end) touches and the first base of the next
        bases = self._checked_lines.get(chrom)
        if bases and end > start:
            lo, hi = (
                start // bases * bases,
                min(self.lengths[chrom], (end - 1) // bases * bases + bases + 1),
            )
        else:
            lo, hi = start, end
        try:
            seq = self._handle().fetch(chrom, lo, hi)
        except UnicodeDecodeError as err:
            position = lo + err.start  # the bytes before it are ASCII
        else:
            if seq.isascii():
                raw = seq.encode("ascii")
                if len(raw) != hi - lo or b"\n" in raw or b"\r" in raw:
                    raise self._lines_error(chrom, lo, hi)
                if raw.translate(None, BASE_LETTERS):  # the lines around are not asked for
                    raw = raw[start - lo : end - lo]
                    if raw.translate(None, BASE_LETTERS):
                        raise not_a_base(self.path, chrom, start, raw)
                return seq if lo == start and hi == end else seq[start - lo : end - lo]
            position = lo + next(i for i, c in enumerate(seq) if not c.isascii())
        if not start <= position < end:  # in the lines around: read the window alone
            return self._fetch_window(chrom, start, end)
        raise self._not_ascii(chrom, position)

    def _probe_line_ends(self, chrom: str, start: int, end: int) -> None:
        """The line ends around ``[start, end)`` of a contig whose lines are longer than
        LINE_CHECK_MAX, where reading whole lines would cost too much: the two bases either
        side of each (from the start of the first line the read touches to the end of its
        last) must be two bases, no line-end byte among them. A line one base longer or
        shorter than the .fai says puts its line end on one of them (``_fetch``'s check)."""
        bases, length = self._probed_lines[chrom], self.lengths[chrom]
        first, last = max(start // bases, 1), min((end - 1) // bases + 1, (length - 1) // bases)
        fasta = self._handle()
        for boundary in range(first * bases, last * bases + 1, bases):
            try:
                probe = fasta.fetch(chrom, boundary - 1, boundary + 1)
            except UnicodeDecodeError:
                continue  # a byte outside ASCII: the read of it names it
            if len(probe) != 2 or "\n" in probe or "\r" in probe:
                raise self._lines_error(chrom, boundary - 1, boundary + 1)

    def _fetch_window(self, chrom: str, start: int, end: int) -> str:
        """``_fetch`` without the line check, where the lines around the window hold a byte
        outside ASCII (which pysam cannot decode): such a byte fails only a read of it."""
        try:
            seq = self._handle().fetch(chrom, start, end)
        except UnicodeDecodeError as err:
            raise self._not_ascii(chrom, start + err.start) from None
        if not seq.isascii():
            raise self._not_ascii(
                chrom, start + next(i for i, c in enumerate(seq) if not c.isascii())
            )
        raw = seq.encode("ascii")
        if raw.translate(None, BASE_LETTERS):
            raise not_a_base(self.path, chrom, start, raw)
        return seq

    def _not_ascii(self, chrom: str, position: int) -> InputError:
        return InputError(
            self.path,
            chrom,
            f"base {position + 1} is not an ASCII letter (a byte of a non-ASCII character); "
            "the FASTA's sequence lines must be ASCII",
        )

    def _lines_error(self, chrom: str, lo: int, hi: int) -> InputError:
        bases, width = self._lines[chrom]
        return InputError(
            self.path,
            chrom,
            f"bases {lo + 1:,}-{hi:,} of {chrom} are not on lines of {bases} bases "
            f"({width} bytes with the line end) as its index {self._fai} says: a line there "
            "or before it was made longer or shorter after the index was built, and every "
            f"base after it would be read shifted; delete {self._fai} (or run samtools faidx "
            f"{self.path}) to rebuild it, and if samtools then finds lines of different "
            "lengths, fetch the FASTA again",
        )

    def tokens(self, chrom: str, start: int, end: int, strand: str = "+") -> np.ndarray:
        """Tokens of ``chrom:[start, end)`` read 5'->3' on ``strand``, N-padded past contig ends."""
        if end < start:
            raise ValueError(f"window end {end} is before its start {start}")
        if strand not in ("+", "-"):
            raise ValueError(f"strand must be '+' or '-', not {strand!r}")
        length = self._length(chrom)
        lo, hi = max(start, 0), min(end, length)
        seq = self._fetch(chrom, lo, hi) if hi > lo else ""
        if lo != start or hi != end:  # past a contig end: pad with N
            left = min(lo, end) - start
            seq = "N" * left + seq + "N" * (end - start - left - len(seq))
        return encode(seq, strand)


_GZIP_MAGIC = b"\x1f\x8b"


class _BgzfText:
    """Seek by offset in the uncompressed text of a bgzip file, through its ``.gzi`` index.

    The ``.gzi`` (htslib) lists (compressed, uncompressed) offsets of BGZF blocks after the
    first; an uncompressed offset becomes the virtual offset ``block << 16 | within`` that
    pysam's BGZFile seeks to. A stale ``.gzi`` points into the middle of a block: the read
    fails or returns other bytes, and the header check below reports a mismatch.
    """

    def __init__(self, path: Path, gzi: Path):
        raw = gzi.read_bytes()
        count = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
        if count < 0 or len(raw) != 8 + 16 * count:
            raise InputError(gzi, None, "not a .gzi index (bgzip block offsets); rebuild it")
        pairs = np.frombuffer(raw, dtype="<u8", offset=8).reshape(count, 2)
        self.compressed = np.concatenate([[0], pairs[:, 0]]).astype(np.int64)
        self.uncompressed = np.concatenate([[0], pairs[:, 1]]).astype(np.int64)
        self.handle = pysam.libcbgzf.BGZFile(str(path), "rb")
        self.path, self.gzi = path, gzi

    def read_at(self, offset: int, size: int) -> bytes:
        block = int(np.searchsorted(self.uncompressed, offset, side="right")) - 1
        within = offset - int(self.uncompressed[block])
        if within >= 1 << 16:  # past the last block's end: offset is past the text
            return b""
        try:
            self.handle.seek(int(self.compressed[block]) << 16 | within)
            return self.handle.read(size)
        except (OSError, ValueError):
            raise InputError(
                self.path,
                None,
                f"the index {self.gzi} does not match the FASTA (no bgzip block at byte "
                f"{int(self.compressed[block])}); rebuild it (samtools faidx)",
            ) from None

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass  # htslib reports the failed read again on close


# Bases per line above which ``GenomeWindows`` reads without checking the lines against the
# .fai: it reads whole lines, and a contig on one line (checked whole at open) has none.
LINE_CHECK_MAX = 1 << 16


def _fai_entries(fai: Path) -> list[tuple[str, int, int, int, int]]:
    """``(name, length, offset, bases per line, bytes per line)`` of each .fai line."""
    entries = []
    with open(fai, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            try:
                name, length, offset, bases, width = fields[0], *map(int, fields[1:5])
            except ValueError:
                raise InputError(
                    fai, number, "not a .fai line (name, length, offset, ...)"
                ) from None
            entries.append((name, length, offset, bases, width))
    return entries


def line_ends_in_place(
    buffer,
    offset: np.ndarray,
    bases: np.ndarray,
    width: np.ndarray,
    length: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> bool:
    """Whether the line ends around each read ``[starts, ends)`` (one per row; the
    record's .fai ``offset``, ``bases``, ``width``, ``length`` per row) are where the .fai
    says, in ``buffer`` (the FASTA's bytes): the end of the line before each read's first
    line (the header's for the first) and of each line through its last, but the record's
    last line (its end is checked at open, ``check_fasta_index``). A line made longer or
    shorter after indexing moves them; the bases read by the .fai would be shifted."""
    if not len(starts):
        return True
    bases = np.maximum(bases, 1)
    first, last = starts // bases, (ends - 1) // bases
    count = last - first + 2
    line = np.repeat(first - 1, count) + (
        np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    )
    bases, width, length = (np.repeat(a, count) for a in (bases, width, length))
    inner = (line + 1) * bases < length
    at = np.repeat(offset, count)[inner] + (line[inner] + 1) * width[inner] - 1
    data = np.frombuffer(buffer, dtype=np.uint8)
    try:
        return bool(((at < len(data)) & (at >= 0)).all() and (data[at] == ord("\n")).all())
    finally:
        del data


def check_fasta_index(
    fasta_path: str | os.PathLike,
    fai_path: str | os.PathLike | None = None,
    gzi_path: str | os.PathLike | None = None,
) -> None:
    """Fail when the .fai does not describe every record of the FASTA exactly once.

    htslib skips a second record of the same name with a warning on stderr (the first copy
    silently wins, and for bgzip it is left out of the .fai), and a .fai (or .gzi) left from
    an older FASTA points at the wrong bytes. Both show where one record's sequence ends: the
    next bytes must be the header of the next indexed record, and after the last one, the
    end of the file, with the last record's last base in it (a FASTA cut short inside its
    last record, its old index kept). One seek and a short read per contig, whatever the
    genome's size; a bgzip FASTA is read through its ``.gzi`` (offsets in the .fai are of
    the uncompressed text), so a stale .gzi fails the same way.
    """
    fasta_path = Path(fasta_path)
    fai = Path(fai_path) if fai_path is not None else Path(f"{fasta_path}.fai")
    gzi = Path(gzi_path) if gzi_path is not None else Path(f"{fasta_path}.gzi")
    try:
        entries = _fai_entries(fai)
    except UnicodeDecodeError:
        # htslib copies header names as bytes: line k of the .fai is the k-th contig
        bad = non_utf8_error(fai)
        raise InputError(fasta_path, f"contig {bad.record}", f"name: {bad.message}") from None
    seen: dict[str, int] = {}
    for number, (name, *_) in enumerate(entries, start=1):
        if name in seen:
            raise InputError(fasta_path, name, "contig listed twice (in its .fai index)")
        seen[name] = number
    with open(fasta_path, "rb") as fasta:
        bgzip = fasta.read(2) == _GZIP_MAGIC
    if bgzip:
        if not gzi.exists():
            raise InputError(
                fasta_path, None, f"bgzip FASTA without its {gzi.name} index: run samtools faidx"
            )
        text = _BgzfText(fasta_path, gzi)
        read_at, close, size = text.read_at, text.close, None
    else:
        plain = open(fasta_path, "rb")  # noqa: SIM115 (closed in the finally below)
        size = os.fstat(plain.fileno()).st_size

        def read_at(offset: int, count: int) -> bytes:
            plain.seek(min(offset, size))
            return plain.read(count)

        close = plain.close
    try:
        _check_record_ends(fasta_path, fai, gzi if bgzip else None, entries, seen, read_at)
    finally:
        close()


def _check_record_ends(fasta_path, fai, gzi, entries, seen, read_at) -> None:
    index = f"{fai} (or {gzi})" if gzi else str(fai)
    ends = [0]  # where the header of each indexed record should start
    for _, length, offset, bases, width in entries:
        full, rest = divmod(length, bases) if bases else (0, 0)
        ends.append(offset + full * width + (rest + width - bases if rest else 0))
    for i, start in enumerate(ends):
        chunk = read_at(start, 4096).lstrip(b"\r\n")
        header = chunk.split(b"\n", 1)[0]
        found = header[1:].split(None, 1)[0].decode(errors="replace") if header[1:] else ""
        if i == len(entries):
            if not chunk.strip() and _last_base_is_there(entries, read_at):
                return
            if not chunk.strip():  # the file ends inside its last record
                raise InputError(
                    fasta_path,
                    entries[-1][0],
                    f"the FASTA ends before base {entries[-1][1]:,} of this record, its "
                    f"last, which the index {index} says is there: the index does not match "
                    "the FASTA (cut short by an interrupted copy or download?); copy the "
                    "FASTA again, or rebuild the index (samtools faidx) if it was cut on "
                    "purpose",
                )
        elif header.startswith(b">") and found == entries[i][0]:
            continue
        if header.startswith(b">") and found in seen:
            raise InputError(
                fasta_path,
                found,
                "contig listed twice: htslib would read only its first copy; "
                "remove or rename the second",
            )
        raise InputError(
            fasta_path,
            entries[i][0] if i < len(entries) else None,
            f"the index {index} does not match the FASTA (record at byte {start} is "
            f"{header[:40].decode(errors='replace')!r}); rebuild it (samtools faidx). "
            "If a fresh index fails too, a sequence line holds a byte outside ASCII, "
            "which htslib does not count as a base",
        )


def _last_base_is_there(entries, read_at) -> bool:
    """Whether the byte of the last record's last base is in the file: after the last
    record only blank bytes are asked for, and a read past the end of the file is blank
    too, so a FASTA cut inside its last record (its old index kept) would pass."""
    if not entries:
        return True
    _, length, offset, bases, width = entries[-1]
    if length <= 0 or bases <= 0:
        return True
    last = length - 1
    return read_at(offset + last // bases * width + last % bases, 1).strip() != b""


def fasta_contigs(fasta_path: str | os.PathLike) -> list[str]:
    """Contig names of a FASTA, from its .fai when present (no full read)."""
    fai = Path(f"{fasta_path}.fai")
    if fai.exists():
        try:
            with open(fai, encoding="utf-8") as handle:
                return [line.split("\t", 1)[0] for line in handle if line.strip()]
        except UnicodeDecodeError:
            raise non_utf8_error(fai) from None
    return list(GenomeWindows(fasta_path).lengths)


def _alias_candidates(contig: str) -> list[str]:
    candidates = [contig[3:] if contig.startswith("chr") else f"chr{contig}"]
    if contig in MITO_NAMES:
        candidates += [name for name in MITO_NAMES if name != contig]
    return candidates


def check_contigs(
    annotation_contigs: Iterable[str],
    fasta_path: str | os.PathLike,
    annotation_path: str | os.PathLike | None,
    contig_aliases: dict[str, str] | None = None,
) -> None:
    """Fail on the first annotation contig the FASTA lacks, hinting at a contig_aliases fix.

    ``annotation_contigs`` are names after ``contig_aliases`` (annotation name -> genome
    name) were applied; the hint is written in terms of the annotation's own name.
    """
    names = fasta_contigs(fasta_path)
    in_fasta = set(names)
    missing = list(dict.fromkeys(c for c in annotation_contigs if c not in in_fasta))
    if not missing:
        return
    first = missing[0]
    # YAML reads `{1: chr1}` with an int key: compare names as strings
    reverse = {str(genome): str(ann) for ann, genome in (contig_aliases or {}).items()}
    original = reverse.get(first, first)
    message = f"contig {first!r}"
    if original != first:
        message += f" (annotation {original!r} via contig_aliases)"
    message += f" is not in the genome FASTA {fasta_path}"
    if len(missing) > 1:
        message += f" (nor are {len(missing) - 1} more)"
    candidates = [original, *_alias_candidates(original)]
    match = next((c for c in candidates if c != first and c in in_fasta), None)
    if match == original:
        message += f'; the FASTA has {match!r}: remove "{original}": "{first}" from contig_aliases'
    elif match is not None:
        message += f'; the FASTA has {match!r}: set contig_aliases: {{"{original}": "{match}"}}'
    else:
        message += _contig_names_hint(names, original)
    raise InputError(annotation_path, first, message)


# How many of the FASTA's contig names a missing-contig error shows.
CONTIG_NAMES_SHOWN = 5


def _contig_names_hint(names: list[str], original: str) -> str:
    """No alias candidate is in the FASTA: show some of its names, and the config key that
    maps the annotation's names onto them (NCBI-style headers, ``gi|…|ref|NC_012920.1|``,
    are a name of their own: the whole first word of the header)."""
    if not names:
        return "; the FASTA has no contigs"
    shown = ", ".join(repr(name) for name in names[:CONTIG_NAMES_SHOWN])
    if len(names) == 1:
        hint = f"; the FASTA's only contig is {shown}"
    else:
        more = len(names) - CONTIG_NAMES_SHOWN
        hint = f"; the FASTA's contigs are {shown}" + (f" and {more:,} more" if more > 0 else "")
    hint += (
        ": map the annotation's names to the FASTA's with contig_aliases (annotation name: "
        f'FASTA name, e.g. {{"{original}": "<its name in the FASTA>"}})'
    )
    if any("|" in name for name in names):
        hint += (
            ", or rename the FASTA's NCBI-style headers (the whole first word, gi|...|ref|"
            "ACCESSION|, is the name), e.g. to the annotation's names"
        )
    return hint


# errno of a folder that may not be written: permission (a shared reference), read-only mount
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _unwritable_index(fasta_path: str | os.PathLike, err: OSError) -> InputError:
    folder = Path(err.filename).parent if err.filename else Path(fasta_path).parent
    return InputError(
        fasta_path,
        None,
        f"cannot write its index (.fai) in {folder} ({os.strerror(err.errno)}): run "
        f"`samtools faidx {fasta_path}` as someone who may write there (an index beside your "
        "own FASTA is then only read, never rewritten), or copy the FASTA to a writable "
        "folder and set genome.fasta to the copy",
    )


def index_fasta(
    fasta_path: str | os.PathLike,
    fai_path: str | os.PathLike,
    gzi_path: str | os.PathLike | None = None,
) -> None:
    """Write the samtools .fai index of ``fasta_path`` to ``fai_path`` atomically, and for a
    bgzip FASTA its .gzi to ``gzi_path`` (default ``<fasta>.gzi``, where readers look for it)
    too: samtools alone writes that one in place, beside the FASTA, also when the check of
    the new index then fails. Both are put in place only once the .fai has been checked."""
    if not Path(fasta_path).exists():
        raise InputError(fasta_path, None, "genome FASTA does not exist")
    with open(fasta_path, "rb") as fasta:
        bgzip = fasta.read(2) == _GZIP_MAGIC
    gzi_path = gzi_path if gzi_path is not None else f"{fasta_path}.gzi"
    with contextlib.ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_path(fai_path))
            gzi = stack.enter_context(atomic_path(gzi_path)) if bgzip else None
        except OSError as err:
            if err.errno not in _NOT_WRITABLE:
                raise
            raise _unwritable_index(fasta_path, err) from None
        args = ["--fai-idx", str(tmp)]
        if gzi is not None:
            args += ["--gzi-idx", str(gzi)]
        try:
            pysam.faidx(str(fasta_path), *args)
        except pysam.SamtoolsError as err:
            raise InputError(fasta_path, None, f"samtools faidx failed: {err}") from err
        check_fasta_index(fasta_path, tmp, gzi)
        contigs = sum(1 for line in open(tmp) if line.strip())
    log.info("%s: indexed %d contigs", fasta_path, contigs)
