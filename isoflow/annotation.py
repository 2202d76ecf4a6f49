"""Read a GTF/GFF3 annotation into one row per transcript (results/annotation/transcripts.parquet).

One reader for GENCODE GTF, Ensembl GTF (unversioned IDs + ``transcript_version``) and
GENCODE GFF3, plain or gzipped. The file is read in blocks of whole lines (``_BLOCK_BYTES``),
each parsed with polars one line per row, so every record keeps its 1-based file line number
for error messages; per block, the feature types the transcript model needs are kept, the
attributes it needs are pulled out with vectorised regular expressions and the attribute
text is dropped before the next block is read (the whole file is never held as text). The
transcript model is then assembled with group-bys. Coordinates are converted once, on
reading, to 0-based half-open.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from xopen import xopen

from isoflow.alphabet import is_mitochondrial
from isoflow.errors import InputError, non_utf8_error
from isoflow.files import atomic_path

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("transcript_id", pa.string()),
        ("gene_id", pa.string()),
        ("gene_name", pa.string()),
        ("transcript_type", pa.string()),
        ("chrom", pa.string()),
        ("strand", pa.string()),
        ("tx_start", pa.int64()),
        ("tx_end", pa.int64()),
        ("tss", pa.int64()),
        ("exon_starts", pa.list_(pa.int64())),
        ("exon_ends", pa.list_(pa.int64())),
        ("cds_start", pa.int64()),
        ("cds_end", pa.int64()),
        ("cds_phase", pa.int8()),
        ("utr5_len", pa.int64()),
        ("cds_len", pa.int64()),
        ("utr3_len", pa.int64()),
        ("selenocysteines", pa.list_(pa.int64())),
        ("tags", pa.list_(pa.string())),
    ]
)
COLUMNS = SCHEMA.names
# The gene's own type (GENCODE gene_type, Ensembl gene_biotype): carried through the reader
# for ``gene_types`` and dropped before the table is returned (not a column of the parquet).
GENE_TYPE = "gene_type"

# Feature types the transcript model needs; everything else (gene, UTR, ...) is skipped.
EXON = "exon"
CDS = "CDS"
START_CODON = "start_codon"
STOP_CODON = "stop_codon"
# GENCODE GTF writes "Selenocysteine"; GENCODE GFF3 "stop_codon_redefined_as_selenocysteine".
SELENOCYSTEINE_TYPES = ("Selenocysteine", "stop_codon_redefined_as_selenocysteine")
PART_TYPES = (EXON, CDS, START_CODON, STOP_CODON, *SELENOCYSTEINE_TYPES)

# GENCODE gives each transcript of chrY's pseudoautosomal regions (PAR) a copy of its chrX
# transcript under the ID ``{X ID}_PAR_Y``. ``annotation.par_y`` (config/schema.yaml, default
# ``drop``) says whether they stay in the table: on an N-masked chrY (GENCODE's FASTA) they
# have an all-N RNA, on an unmasked one (UCSC hg38) the X copy's sequences under another
# target: contradictory labels on identical inputs.
PAR_Y_SUFFIX = "_PAR_Y"
PAR_Y_MODES = ("drop", "keep")
# Contig names of the sex chromosomes as annotations write them (before contig_aliases).
X_CONTIGS = ("chrX", "X")
Y_CONTIGS = ("chrY", "Y")

_READ_CHUNK = 1 << 16
# Text parsed at a time: its rows and their attribute text are dropped before the next.
_BLOCK_BYTES = 32 << 20
# gzip, bzip2, xz, zstd
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")
_GTF_COLUMNS = (
    "chrom",
    "source",
    "type",
    "start_text",
    "end_text",
    "score",
    "strand",
    "phase_text",
    "attrs",
)


def read_annotation(
    path: str | os.PathLike,
    contig_aliases: dict[str, str] | None = None,
    transcript_types: Iterable[str] | None = None,
    par_y: str | None = None,
    gene_types: Iterable[str] | None = None,
    exclude_contigs: Iterable[str] | None = None,
) -> pd.DataFrame:
    """One row per transcript, columns and types as ``SCHEMA`` (DESIGN.md), sorted.

    ``contig_aliases`` maps annotation contig names to genome names; ``transcript_types``
    keeps only those transcript types and ``gene_types`` only transcripts of genes of those
    types (GENCODE ``gene_type``, Ensembl ``gene_biotype``; None keeps all);
    ``exclude_contigs`` leaves out transcripts on those contigs (``contig_matches``), counted
    in the log; ``par_y`` is ``annotation.par_y``:
    ``drop`` leaves GENCODE's ``_PAR_Y`` copies out, ``keep`` (or None, a library call's
    plain read) keeps them; either way they are counted in the log. Raises InputError on bad
    input, among it a transcript ID on both chrX and chrY (a PAR copy under the X ID).
    """
    if par_y not in (None, *PAR_Y_MODES):
        raise ValueError(f"par_y must be one of {PAR_Y_MODES} or None, got {par_y!r}")
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "gtf":
        transcripts, parts = _gtf_records(*_read_rows(path, _gtf_block, quoted=True), path)
    else:
        transcripts, parts = _gff3_records(_read_rows(path, _gff3_block)[0], path)
    table = _assemble(transcripts, parts, path)
    if exclude_contigs:
        table = _exclude_contigs(table, list(exclude_contigs), contig_aliases or {}, path)
    if contig_aliases:
        table = table.with_columns(pl.col("chrom").replace(contig_aliases))
    table = _par_y_copies(table, par_y, path)
    if transcript_types is not None:
        table = _keep_types(table, "transcript_type", transcript_types, path)
    if gene_types is not None:
        table = _keep_types(table, GENE_TYPE, gene_types, path)
    table = table.drop(GENE_TYPE).sort(["chrom", "tx_start", "transcript_id"])
    log.info("%s: %d transcripts (%s)", path, table.height, fmt)
    return _to_pandas(table)


# The config key of each type filter, for its messages.
_TYPE_KEYS = {"transcript_type": "annotation.transcript_types", GENE_TYPE: "annotation.gene_types"}


def _keep_types(table: pl.DataFrame, column: str, types: Iterable[str], path: Path):
    """The rows whose ``column`` is one of ``types``, the rest counted in the log; none left
    is an error naming the key and the types present."""
    types = list(types)
    key = _TYPE_KEYS[column]
    kept = table.filter(pl.col(column).is_in(types))
    if not kept.height:
        present = sorted(table[column].drop_nulls().unique())[:10]
        attribute = "gene_type / gene_biotype" if column == GENE_TYPE else "transcript_type"
        hint = (
            f"types present include {present}"
            if present
            else f"the file has no {attribute} attribute; set {key}: null"
        )
        what = "types" if column == "transcript_type" else "gene types"
        raise InputError(path, None, f"no transcript of {what} {types} ({key}); {hint}")
    log.info(
        "%s: %d of %d transcripts kept by %s %s, %d left out",
        path,
        kept.height,
        table.height,
        key,
        types,
        table.height - kept.height,
    )
    return kept


def contig_matches(contig: str, entry: str, contig_aliases: dict[str, str] | None = None) -> bool:
    """Whether ``annotation.exclude_contigs`` entry ``entry`` names ``contig`` (as the
    annotation writes it): its own name or its ``contig_aliases`` name, each with or without
    a leading ``chr`` (``chrX`` names Ensembl's ``X``), and any mitochondrial name
    (``alphabet.MITO_NAMES``: chrM, MT, M, chrMT, or a RefSeq NC_012920 name) names every
    other."""
    names = {contig, (contig_aliases or {}).get(contig, contig)}
    if is_mitochondrial(entry) and any(is_mitochondrial(name) for name in names):
        return True
    bare = entry.removeprefix("chr")
    return any(name == entry or name.removeprefix("chr") == bare for name in names)


def _exclude_contigs(
    table: pl.DataFrame, exclude: list[str], contig_aliases: dict[str, str], path: Path
) -> pl.DataFrame:
    """Leave out the transcripts on the contigs ``exclude`` names (``contig_matches``),
    counted per contig in the log; an entry that names no contig of the file is logged too
    (an excerpt may lack chrY), not an error."""
    contigs = table["chrom"].unique().to_list()
    dropped = sorted(
        c for c in contigs if any(contig_matches(c, e, contig_aliases) for e in exclude)
    )
    unused = [e for e in exclude if not any(contig_matches(c, e, contig_aliases) for c in contigs)]
    if unused:
        log.info("%s: annotation.exclude_contigs %s name no contig of this file", path, unused)
    if not dropped:
        return table
    counts = table.filter(pl.col("chrom").is_in(dropped))["chrom"].value_counts(sort=False)
    per_contig = dict(zip(counts["chrom"].to_list(), counts["count"].to_list(), strict=True))
    log.info(
        "%s: %d transcripts on %s left out (annotation.exclude_contigs %s)",
        path,
        sum(per_contig.values()),
        ", ".join(f"{c} {per_contig[c]}" for c in dropped),
        exclude,
    )
    return table.filter(~pl.col("chrom").is_in(dropped))


def _par_y_copies(table: pl.DataFrame, par_y: str | None, path: Path) -> pl.DataFrame:
    """Count GENCODE's ``_PAR_Y`` copies in the log; leave them out when ``par_y`` is drop."""
    copies = pl.col("transcript_id").str.ends_with(PAR_Y_SUFFIX)
    n_copies = table.select(copies.sum()).item()
    if not n_copies:
        return table
    if par_y == "drop":
        log.info(
            "%s: %d %s copies (chrY pseudoautosomal copies of chrX transcripts) left out "
            "(annotation.par_y: drop; `keep` keeps them)",
            path,
            n_copies,
            PAR_Y_SUFFIX,
        )
        return table.filter(~copies)
    log.info(
        "%s: %d %s copies (chrY pseudoautosomal copies of chrX transcripts) kept "
        "(annotation.par_y: keep)",
        path,
        n_copies,
        PAR_Y_SUFFIX,
    )
    return table


def _check_par_duplicates(rows: pl.DataFrame, id_col: str, path: Path) -> None:
    """A transcript ID on chrX and again on chrY is a PAR copy under the X copy's ID (UCSC
    knownGene style): one line naming the ID, the cause and the fix, before the generic
    duplicate-ID errors. Only the rows on a Y contig are looked at (a few thousand)."""
    on_y = rows.filter(pl.col("chrom").is_in(Y_CONTIGS) & pl.col(id_col).is_not_null())
    if not on_y.height:
        return
    on_x = rows.filter(
        pl.col("chrom").is_in(X_CONTIGS) & pl.col(id_col).is_in(on_y[id_col].unique().implode())
    )
    if not on_x.height:
        return
    x_first = on_x.sort("line").row(0, named=True)
    y_first = on_y.filter(pl.col(id_col) == x_first[id_col]).sort("line").row(0, named=True)
    tid = x_first[id_col]
    raise InputError(
        path,
        y_first["line"],
        f"transcript ID {tid} is on {x_first['chrom']} (line {x_first['line']}) and again on "
        f"{y_first['chrom']}: a chrY pseudoautosomal (PAR) copy under the chrX copy's ID "
        "(UCSC style), and a transcript ID must be unique; use the GENCODE annotation, which "
        f"names these copies {tid}{PAR_Y_SUFFIX} (left out by annotation.par_y: drop), or "
        f"remove this file's {y_first['chrom']} PAR lines",
    )


def write_transcripts(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the transcript table as parquet with the pyarrow types of ``SCHEMA``, atomically."""
    table = pa.Table.from_pandas(df[COLUMNS], schema=SCHEMA, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def detect_format(path: str | os.PathLike) -> str:
    """``"gtf"`` or ``"gff3"``, from the content: a ``##gff-version 3`` header or the
    attribute syntax of the first feature line (``key "value";`` vs ``key=value``)."""
    if not Path(path).is_file():
        raise InputError(path, None, "no such file")
    number = 0
    try:
        with xopen(path, "rt", threads=0) as handle:
            for number, line in enumerate(handle, start=1):
                if line.startswith("##gff-version"):
                    if line.split()[1:2] and line.split()[1].startswith("3"):
                        return "gff3"
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 9 or any(f.strip() for f in fields[9:]):
                    raise InputError(path, number, f"{len(fields)} tab-separated columns, need 9")
                first_attr = fields[8].strip().split(";")[0]
                if '"' in first_attr:
                    return "gtf"
                if "=" in first_attr:
                    return "gff3"
                raise InputError(path, number, "attributes are neither GTF nor GFF3 style")
    except (EOFError, OSError) as err:
        if _is_compressed(path):
            for _ in _blocks(Path(path)):  # raises, naming the line where the data stops
                pass
        raise InputError(path, number + 1, f"unreadable file ({err})") from err
    except UnicodeDecodeError as err:
        raise non_utf8_error(path) from err
    raise InputError(path, None, "no feature lines: not a GTF/GFF3 file")


def _read_rows(
    path: Path, reduce_block, quoted: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The feature lines the transcript model needs, block by block, as
    ``reduce_block(rows) -> (rows, heads)`` leaves them (attribute text dropped), concatenated
    in file order.

    Each check of ``_parse_columns`` keeps the first offending line it sees; they are raised
    after the last block, in the order of the checks, so a file breaking several of them gets
    the same one-line error as when it was read whole. A truncated compressed file fails
    first, then a non-UTF-8 byte, as before, then a file cut inside its last line
    (``_cut_last_line``; ``quoted``: GTF, whose attribute values are quoted).
    ``reduce_block`` may add a failure of its own (``_ATTRS_CHECK``), raised after those.
    """
    if Path(path).stat().st_size == 0:
        raise InputError(path, None, "empty file")
    failures: dict[int, tuple[int, str]] = {}
    rows: list[pl.DataFrame] = []
    heads: list[pl.DataFrame] = []
    not_utf8 = in_fasta = False
    cut = None
    for first_line, block in _blocks(path):
        if not in_fasta:  # only the file's last block can end without a newline
            cut = _cut_last_line(block, first_line, quoted)
        if not_utf8:
            continue  # read on only to find a truncated stream, which fails first
        try:
            lines = _parse_block(block, first_line)
        except pl.exceptions.ComputeError as err:
            if "utf-8" not in str(err).lower():
                raise
            not_utf8 = True
            continue
        if in_fasta:
            continue
        fasta_start = lines.filter(pl.col("chrom").str.starts_with("##FASTA"))["line"]
        if len(fasta_start):  # GFF3: everything after ##FASTA is sequence, not features
            lines = lines.filter(pl.col("line") < fasta_start.min())
            in_fasta = True
        block_rows = _parse_columns(lines, failures)
        if not failures:
            kept, kept_heads = reduce_block(block_rows, failures)
            rows.append(kept)
            if kept_heads is not None:
                heads.append(kept_heads)
    if not_utf8:
        raise non_utf8_error(path)
    if cut is not None and not in_fasta:
        raise InputError(path, *cut)
    if failures:
        line, message = failures[min(failures)]
        raise InputError(path, line, message)
    if not rows:
        raise InputError(path, None, "no feature lines: not a GTF/GFF3 file")
    return pl.concat(rows), (pl.concat(heads) if heads else None)


def _cut_last_line(block: bytes, first_line: int, quoted: bool) -> tuple[int, str] | None:
    """``(line, message)`` when ``block`` ends inside a feature line cut short: no newline
    after it, and fewer than 9 tab-separated columns or (GTF) an opening quote never
    closed. An interrupted download or copy of a plain file ends so, and the attribute
    reader took ``transcript_id "ENST00`` for the ID ``ENST00``: a made-up transcript."""
    if not block or block.endswith(b"\n"):
        return None
    start = block.rfind(b"\n") + 1
    last = bytes(block[start:]).rstrip(b"\r")
    if not last.strip() or last.startswith(b"#"):
        return None
    if last.count(b"\t") < 8:
        why = "it has fewer than 9 tab-separated columns"
    elif quoted and last.count(b'"') % 2:
        why = "a quote in its attributes is never closed"
    else:
        return None
    line = first_line + block.count(b"\n", 0, start)
    return line, (
        f"the file ends inside this line (no newline after it, and {why}): cut short by an "
        "interrupted download or copy? Fetch the file again"
    )


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number of its first line, whole lines)``, about ``_BLOCK_BYTES`` at a time.

    A compressed file is decompressed as it is read, never held whole; a truncated stream
    names the line where it stops (lines counted over every piece read before the error).
    """
    if not _is_compressed(path):
        yield from _plain_blocks(path)
        return
    pending: list[bytes] = []
    size = lines = 0  # bytes pending; newlines read (compressed only, for a truncation)
    done = 0  # newlines in the blocks yielded so far
    try:
        with xopen(path, "rb", threads=0) as handle:
            while piece := handle.read(_READ_CHUNK):
                pending.append(piece)
                size += len(piece)
                lines += piece.count(b"\n")  # piece by piece, for the line of a truncation
                if size < _BLOCK_BYTES:
                    continue
                data = b"".join(pending) if len(pending) > 1 else pending[0]
                cut = data.rfind(b"\n") + 1
                if not cut:  # one line longer than a block: read on
                    pending = [data]
                    continue
                pending, size = [data[cut:]], len(data) - cut
                block = data[:cut]
                yield done + 1, block
                done += block.count(b"\n")
    except (EOFError, OSError) as err:
        # xopen (isal for gzip) raises EOFError when the end-of-stream marker is missing.
        raise InputError(
            path, lines + 1, f"compressed data ends here or soon after, file truncated? ({err})"
        ) from err
    if size:
        yield done + 1, b"".join(pending)


def _plain_blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """``_blocks`` of an uncompressed file: slices of a memory map, each page let go of once
    its block is cut (it stays in the page cache, not in this process's RSS)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if not size:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            pos = done = 0
            while pos < size:
                end = size
                if pos + _BLOCK_BYTES < size:
                    # the last newline in the block, or past a line longer than a block
                    end = mapped.rfind(b"\n", pos, pos + _BLOCK_BYTES) + 1
                    end = end or mapped.find(b"\n", pos + _BLOCK_BYTES) + 1 or size
                block = mapped[pos:end]
                if hasattr(mmap, "MADV_DONTNEED"):
                    mapped.madvise(mmap.MADV_DONTNEED)
                yield done + 1, block
                done += block.count(b"\n")
                pos = end


def _parse_block(block: bytes, first_line: int) -> pl.DataFrame:
    """The GTF columns of whole lines as strings, with the 1-based file ``line`` of each row."""
    # Nine string columns; short lines get nulls (missing_columns="insert"), blank lines
    # stay as all-null rows, so the row index is the file line number. A tenth, "beyond",
    # holds what a longer line has after its ninth tab (a tab inside the attributes would
    # otherwise cut them there silently: the tags GENCODE writes last first).
    lines = pl.read_csv(
        block,
        separator="\t",
        has_header=False,
        quote_char=None,
        schema={**dict.fromkeys(_GTF_COLUMNS, pl.String), "beyond": pl.String},
        columns=[0, 2, 3, 4, 6, 7, 8, 9],
        truncate_ragged_lines=True,
        missing_columns="insert",
    )
    return lines.with_row_index("line", offset=first_line).with_columns(
        pl.col("line").cast(pl.Int64)
    )


def _is_compressed(path: str | os.PathLike) -> bool:
    with open(path, "rb") as handle:
        return handle.read(6).startswith(_COMPRESSED_MAGIC)


def _first_bad(frame: pl.DataFrame, condition: pl.Expr) -> dict | None:
    """The offending row with the lowest file line (joins do not keep file order)."""
    bad = frame.filter(condition)
    return bad.sort("line").row(0, named=True) if bad.height else None


def _parse_columns(lines: pl.DataFrame, failures: dict[int, tuple[int, str]]) -> pl.DataFrame:
    """Drop comments and blank lines, convert coordinates to 0-based half-open.

    The first offending line of each check (keyed by the check's place in the order) goes to
    ``failures`` unless an earlier block already gave one; ``_read_rows`` raises them.
    """
    rows = lines.filter(
        pl.col("chrom").is_not_null()
        & ~pl.col("chrom").str.starts_with("#")
        & (pl.col("attrs").is_not_null() | (pl.col("chrom").str.strip_chars() != ""))
    ).with_columns(
        (pl.col("start_text").cast(pl.Int64, strict=False) - 1).alias("start"),
        pl.col("end_text").cast(pl.Int64, strict=False).alias("end"),
    )
    checks = (
        (pl.col("attrs").is_null(), lambda bad: "fewer than 9 tab-separated columns"),
        (
            pl.col("beyond").is_not_null() & (pl.col("beyond").str.strip_chars() != ""),
            lambda bad: (
                "more than 9 tab-separated columns (a tab inside the attributes? "
                "everything after it would be lost)"
            ),
        ),
        (
            pl.col("start").is_null() | pl.col("end").is_null(),
            lambda bad: f"coordinates {bad['start_text']!r}, {bad['end_text']!r}: not integers",
        ),
        (pl.col("start") < 0, lambda bad: f"start {bad['start_text']} < 1"),
        (
            pl.col("start") >= pl.col("end"),
            lambda bad: f"start {bad['start_text']} > end {bad['end_text']}",
        ),
    )
    for number, (condition, message) in enumerate(checks):
        if number not in failures and (bad := _first_bad(rows, condition)):
            failures[number] = (bad["line"], message(bad))
    return rows.drop("start_text", "end_text", "beyond")


# The key in ``failures`` of a GTF attribute that cannot be read (``_gtf_block``): after
# the column checks of ``_parse_columns``.
_ATTRS_CHECK = 100


# A GTF attribute: a key, white space, and a value in quotes (no quote inside) or bare (no
# space, quote or ";"), attributes separated by ";" (an empty one, ";;", as in Ensembl's
# VEP test GTF, is let be). An unclosed quote, a quote inside a value or a key without a
# value fail the whole-column match. The attribute reader took such a value up to the next
# quote or ";" (`"SA"MD11"` read as "SA", an unclosed one ran on into the next attribute)
# or left the attribute out; ``_gtf_attr`` now reads only a value so delimited, and
# ``_gtf_block`` checks the lines it takes more from, or a value it could not read. A
# comment after the attributes, "#" to the end of the line (GTF2.2's [comments]), is let be.
_GTF_ATTR = r'[^ \t\r";]+[ \t]+(?:"[^"]*"|[^ \t\r";]+)'
_GTF_ATTRS_OK = rf"^[ \t\r]*(?:{_GTF_ATTR}[ \t\r]*)?(?:;[ \t\r]*(?:{_GTF_ATTR}[ \t\r]*)?)*(?:#.*)?$"
_GTF_ATTR_ITEM = re.compile(rf"\s*(?:{_GTF_ATTR}\s*)?(?:;|$)")


def _gtf_attr_syntax(attrs: str) -> str:
    """What is wrong with a GTF attribute column that fails ``_GTF_ATTRS_OK``, naming the
    first attribute at fault (one line for ``InputError``)."""
    pos = 0
    while (found := _GTF_ATTR_ITEM.match(attrs, pos)) and found.end() > pos:
        pos = found.end()
    rest = attrs[pos:].strip()
    key = re.match(r'[^\s";]*', rest).group()
    value = rest[len(key) :].lstrip()
    upto = value.split(";", 1)[0]  # where a value read without its quotes stops
    shown = rest if len(rest) <= 60 else rest[:57] + "..."
    if not key:
        what = f"the attributes (column 9) hold {shown!r} where an attribute name should be"
    elif not upto.strip():
        what = f"attribute {key!r} has no value"
    elif upto.startswith('"') and upto.count('"') == 1:
        what = f"attribute {key!r}: its quote is never closed before the next ';' ({shown!r})"
    elif upto.startswith('"'):
        what = f"attribute {key!r}: a quote inside its value ({shown!r})"
    else:
        what = f"attribute {key!r}: a value neither quoted nor one word ({shown!r})"
    return (
        f'{what}; GTF attributes are key "value"; items: a broken line? Fix it or fetch the '
        "file again"
    )


def _check_parts(parts: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Strand and phase checks on the features that make up transcripts."""
    bad = _first_bad(parts, ~pl.col("strand").is_in(["+", "-"]))
    if bad:
        raise InputError(path, bad["line"], f"strand {bad['strand']!r} is not + or -")
    parts = parts.with_columns(
        pl.when(pl.col("phase_text") == ".")
        .then(None)
        .otherwise(pl.col("phase_text").cast(pl.Int8, strict=False))
        .alias("phase")
    )
    # GTF and GFF3 require a CDS line's phase: read as 0, a missing one puts every protein of
    # a cds_start_NF transcript in whatever frame its first codon happens to start
    bad = _first_bad(
        parts,
        (pl.col("type") == CDS) & (pl.col("phase").is_null() | ~pl.col("phase").is_in([0, 1, 2])),
    )
    if bad:
        raise InputError(
            path,
            bad["line"],
            f"CDS phase {bad['phase_text']!r} is not 0, 1 or 2 (column 8; GTF and GFF3 require "
            "it on CDS lines)",
        )
    return parts.drop("phase_text")


def _gtf_attr(key: str) -> pl.Expr:
    """The value of attribute ``key``: in quotes (a ";" inside kept) or one bare word, then
    ";", a GTF2.2 comment ("#") or the end of the column; null where it is missing or not so
    delimited (a stray or unclosed quote, no value: ``_gtf_block`` tells them apart by
    ``_GTF_ATTRS_OK``). As fast as the loose reader it replaced, which ran on to the next
    quote or ";"."""
    # \b: "transcript_id" must not match inside "havana_transcript_id" ("_" is a word char).
    value = rf'\b{key}[ \t]+("[^"]*"|[^\s";]+)[ \t\r]*(?:;|#|$)'
    return pl.col("attrs").str.extract(value, 1).str.strip_chars('"')


def _gtf_versioned(id_col: str, version_key: str) -> pl.Expr:
    """Ensembl GTF: ``ENST…`` + ``transcript_version "2"`` → ``ENST….2``; GENCODE IDs carry it."""
    version = pl.col(f"a_{version_key}")
    return (
        pl.when(version.is_null() | pl.col(id_col).str.ends_with(pl.lit(".") + version))
        .then(pl.col(id_col))
        .otherwise(pl.col(id_col) + "." + version)
    )


# Attributes of a GTF transcript line (or of the first exon of a transcript without one).
_GTF_HEAD_ATTRS = (
    "transcript_version",
    "gene_version",
    "gene_name",
    "transcript_type",
    "transcript_biotype",
    "gene_type",
    "gene_biotype",
)


def _gtf_block(
    rows: pl.DataFrame, failures: dict[int, tuple[int, str]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One block of GTF rows without their attribute text: the transcript and part lines
    with ``tx_key`` and ``gene_key``, and the attributes a transcript takes (``a_*``, tags) of
    its transcript line, or of the first exon of a transcript without one in this block.

    The attribute column of a line is checked (``_GTF_ATTRS_OK``; the first failing line
    goes to ``failures``) where a transcript takes its attributes from it, and where its
    transcript_id or gene_id could not be read: the other lines give only those two, and
    an attribute broken elsewhere on them changes nothing read."""
    rows = rows.filter(pl.col("type").is_in(["transcript", *PART_TYPES]))
    rows = rows.with_columns(
        _gtf_attr("transcript_id").alias("tx_key"), _gtf_attr("gene_id").alias("gene_key")
    )
    unread = rows.filter(pl.col("tx_key").is_null() | pl.col("gene_key").is_null())
    if rows["tx_key"].str.contains(",", literal=True).any():
        # A feature shared by transcripts, written transcript_id "A,B" (seen in Ensembl VEP
        # test data): one row per transcript, as GFF3's Parent=A,B.
        rows = rows.with_columns(
            pl.when(pl.col("type") == "transcript")
            .then(pl.concat_list("tx_key"))
            .otherwise(pl.col("tx_key").str.split(","))
            .alias("tx_key")
        ).explode("tx_key")
    tx_rows = rows.filter(pl.col("type") == "transcript")
    lone_exons = rows.filter(
        (pl.col("type") == EXON) & ~pl.col("tx_key").is_in(tx_rows["tx_key"].implode())
    ).unique("tx_key", keep="first", maintain_order=True)
    if _ATTRS_CHECK not in failures:
        checked = pl.concat([unread, tx_rows, lone_exons], how="diagonal_relaxed")
        bad = _first_bad(checked, ~pl.col("attrs").str.contains(_GTF_ATTRS_OK))
        if bad:
            failures[_ATTRS_CHECK] = (bad["line"], _gtf_attr_syntax(bad["attrs"]))
    heads = pl.concat([tx_rows, lone_exons]).select(
        "line",
        "tx_key",
        *(_gtf_attr(key).alias(f"a_{key}") for key in _GTF_HEAD_ATTRS),
        pl.col("attrs")
        .str.extract_all(r'(?:^|;)\s*tag\s+"[^"]*"')
        .list.eval(pl.element().str.extract(r'"([^"]*)"', 1))
        .alias("tags"),
    )
    return rows.drop("attrs"), heads


def _gtf_records(
    rows: pl.DataFrame, heads: pl.DataFrame, path: Path
) -> tuple[pl.DataFrame, pl.DataFrame]:
    bad = _first_bad(rows, pl.col("tx_key").is_null() | (pl.col("tx_key") == ""))
    if bad:
        raise InputError(path, bad["line"], f"{bad['type']} without a transcript_id attribute")
    _check_par_duplicates(rows, "tx_key", path)
    # Same transcript ID under two genes: two transcripts sharing one ID.
    first_gene = pl.col("gene_key").first().over("tx_key")
    bad = _first_bad(
        rows.with_columns(first_gene.alias("first_gene")),
        pl.col("gene_key") != pl.col("first_gene"),
    )
    if bad:
        raise InputError(
            path,
            bad["line"],
            f"transcript {bad['tx_key']} appears in two genes "
            f"({bad['first_gene']} and {bad['gene_key']}): duplicate transcript ID",
        )
    tx_rows = rows.filter(pl.col("type") == "transcript")
    dup = tx_rows.filter(pl.col("tx_key").is_duplicated())
    if dup.height:
        second = dup.sort("line").row(1, named=True)
        raise InputError(path, second["line"], f"duplicate transcript ID {second['tx_key']}")
    parts = _check_parts(rows.filter(pl.col("type") != "transcript"), path)
    # A transcript without its own line (some GTF writers) takes its attributes and line
    # number from its first exon; its span is then the span of its exons.
    orphans = (
        parts.filter(
            (pl.col("type") == EXON) & ~pl.col("tx_key").is_in(tx_rows["tx_key"].implode())
        )
        .sort("line")
        .unique("tx_key", keep="first")
        .with_columns(pl.lit(None, pl.Int64).alias("start"), pl.lit(None, pl.Int64).alias("end"))
    )
    heads = pl.concat(
        [tx_rows.drop("phase_text"), orphans.select(tx_rows.drop("phase_text").columns)]
    ).join(heads, on=["line", "tx_key"], how="left", maintain_order="left")
    transcripts = heads.select(
        "tx_key",
        "line",
        "chrom",
        "strand",
        "start",
        "end",
        _gtf_versioned("tx_key", "transcript_version").alias("transcript_id"),
        _gtf_versioned("gene_key", "gene_version").alias("gene_id"),
        pl.col("a_gene_name").alias("gene_name"),
        pl.coalesce(
            "a_transcript_type", "a_transcript_biotype", "a_gene_type", "a_gene_biotype"
        ).alias("transcript_type"),
        pl.coalesce("a_gene_type", "a_gene_biotype").alias(GENE_TYPE),
        "tags",
    )
    return transcripts, parts.select(
        "tx_key", "line", "type", "chrom", "strand", "start", "end", "phase"
    )


def _gff3_attr(key: str) -> pl.Expr:
    return pl.col("attrs").str.extract(rf"(?:^|;)\s*{key}=([^;]*)", 1)


# GFF3 escapes these in attribute values (spec, "Column 9"); %25 ("%") goes last.
_GFF3_ESCAPES = {
    "%3B": ";",
    "%3b": ";",
    "%3D": "=",
    "%3d": "=",
    "%26": "&",
    "%2C": ",",
    "%2c": ",",
    "%09": "\t",
    "%25": "%",
}


def _gff3_unescape(value: pl.Expr) -> pl.Expr:
    for escaped, plain in _GFF3_ESCAPES.items():
        value = value.str.replace_all(escaped, plain, literal=True)
    return value


# Attributes of a GFF3 transcript or gene line.
_GFF3_HEAD_ATTRS = (
    "transcript_id",
    "version",
    "gene_id",
    "gene_name",
    "Name",
    "transcript_type",
    "transcript_biotype",
    "biotype",
    "gene_type",
    "gene_biotype",
    "tag",
)


def _gff3_block(rows: pl.DataFrame, failures: dict) -> tuple[pl.DataFrame, None]:
    """One block of GFF3 rows without their attribute text: ``id`` and ``parent`` of every
    line, and the attributes a transcript or gene takes (``a_*``) of lines that are not
    exons, CDS or codons (null there)."""
    rows = rows.with_columns(_gff3_attr("ID").alias("id"), _gff3_attr("Parent").alias("parent"))
    part = pl.col("type").is_in(PART_TYPES)
    parts, others = rows.filter(part), rows.filter(~part)
    others = others.with_columns(_gff3_attr(key).alias(f"a_{key}") for key in _GFF3_HEAD_ATTRS)
    return pl.concat([parts, others], how="diagonal").sort("line").drop("attrs"), None


def _gff3_records(rows: pl.DataFrame, path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    parts = rows.filter(pl.col("type").is_in(PART_TYPES))
    bad = _first_bad(parts, pl.col("parent").is_null())
    if bad:
        raise InputError(path, bad["line"], f"{bad['type']} without a Parent attribute")
    # One feature may belong to several transcripts (Parent=a,b).
    parts = parts.with_columns(pl.col("parent").str.split(",").alias("tx_key")).explode("tx_key")
    parts = _check_parts(parts, path)
    exon_parents = parts.filter(pl.col("type") == EXON)["tx_key"].unique()
    # A transcript is whatever its exons name as Parent (transcript, mRNA, lnc_RNA, ...).
    tx_rows = rows.filter(
        pl.col("id").is_in(exon_parents.implode()) & ~pl.col("type").is_in(PART_TYPES)
    )
    lone = rows.filter(
        pl.col("type").is_in(["transcript", "mRNA"]) & ~pl.col("id").is_in(exon_parents.implode())
    )
    if lone.height:
        log.warning(
            "%s: %d transcript lines without exons skipped (file cut short?), e.g. %s",
            path,
            lone.height,
            ", ".join(lone["id"].head(5)),
        )
    _check_par_duplicates(tx_rows, "id", path)
    dup = tx_rows.filter(pl.col("id").is_duplicated())
    if dup.height:
        second = dup.sort("line").row(1, named=True)
        raise InputError(path, second["line"], f"duplicate transcript ID {second['id']}")
    bad = _first_bad(parts, ~pl.col("tx_key").is_in(tx_rows["id"].implode()))
    if bad:
        raise InputError(
            path, bad["line"], f"{bad['type']} names Parent {bad['tx_key']}, no such transcript"
        )
    genes = (
        rows.filter(pl.col("id").is_in(tx_rows["parent"].implode()))
        .select(
            pl.col("id").alias("parent"),
            pl.coalesce("a_gene_name", "a_Name").alias("parent_gene_name"),
            pl.coalesce("a_gene_id", pl.col("id").str.strip_prefix("gene:")).alias(
                "parent_gene_id"
            ),
            # The gene line's own type: GENCODE gene_type, Ensembl biotype.
            pl.coalesce("a_gene_type", "a_gene_biotype", "a_biotype").alias("parent_gene_type"),
        )
        .unique("parent", keep="first")
    )
    tx_id = pl.coalesce(pl.col("a_transcript_id"), pl.col("id").str.strip_prefix("transcript:"))
    version = pl.col("a_version")
    transcripts = tx_rows.join(genes, on="parent", how="left").select(
        pl.col("id").alias("tx_key"),
        "line",
        "chrom",
        "strand",
        "start",
        "end",
        _gff3_unescape(
            pl.when(version.is_null() | tx_id.str.ends_with(pl.lit(".") + version))
            .then(tx_id)
            .otherwise(tx_id + "." + version)
        ).alias("transcript_id"),
        _gff3_unescape(
            pl.coalesce("a_gene_id", "parent_gene_id", pl.col("parent").str.strip_prefix("gene:"))
        ).alias("gene_id"),
        _gff3_unescape(pl.coalesce("a_gene_name", "parent_gene_name")).alias("gene_name"),
        _gff3_unescape(
            pl.coalesce(
                "a_transcript_type",
                "a_transcript_biotype",
                "a_biotype",
                "a_gene_type",
                "a_gene_biotype",
            )
        ).alias("transcript_type"),
        _gff3_unescape(pl.coalesce("a_gene_type", "a_gene_biotype", "parent_gene_type")).alias(
            GENE_TYPE
        ),
        # Split on the separator commas first, then decode escaped commas inside a tag.
        pl.coalesce(pl.col("a_tag").str.split(","), pl.lit([], pl.List(pl.String)))
        .list.eval(_gff3_unescape(pl.element()))
        .alias("tags"),
    )
    return transcripts, parts.select(
        "tx_key", "line", "type", "chrom", "strand", "start", "end", "phase"
    )


def _assemble(transcripts: pl.DataFrame, parts: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Exons, CDS span/phase, UTR lengths and selenocysteines per transcript; checks."""
    transcripts = _required_ids(transcripts, path)
    dup = transcripts.filter(pl.col("transcript_id").is_duplicated())
    if dup.height:
        second = dup.sort("line").row(1, named=True)
        raise InputError(path, second["line"], f"duplicate transcript ID {second['transcript_id']}")
    parts = parts.join(
        transcripts.select(
            "tx_key",
            pl.col("chrom").alias("tx_chrom"),
            pl.col("strand").alias("tx_strand"),
            pl.col("start").alias("tx_start"),
            pl.col("end").alias("tx_end"),
        ),
        on="tx_key",
        how="left",
    )
    bad = _first_bad(
        parts, (pl.col("chrom") != pl.col("tx_chrom")) | (pl.col("strand") != pl.col("tx_strand"))
    )
    if bad:
        raise InputError(
            path,
            bad["line"],
            f"{bad['type']} of {bad['tx_key']} is on {bad['chrom']}{bad['strand']}, "
            f"its transcript on {bad['tx_chrom']}{bad['tx_strand']}",
        )
    bad = _first_bad(
        parts, (pl.col("start") < pl.col("tx_start")) | (pl.col("end") > pl.col("tx_end"))
    )
    if bad:
        raise InputError(
            path,
            bad["line"],
            f"{bad['type']} of {bad['tx_key']} ({bad['start'] + 1}-{bad['end']}) lies outside "
            f"its transcript ({bad['tx_start'] + 1}-{bad['tx_end']})",
        )

    exons = parts.filter(pl.col("type") == EXON).sort("tx_key", "start")
    bad = _first_bad(exons, pl.col("start") < pl.col("end").shift(1).over("tx_key"))
    if bad:
        raise InputError(
            path, bad["line"], f"exon of {bad['tx_key']} overlaps another of its exons"
        )
    _check_inside_exons(parts, exons, path)
    exon_table = exons.group_by("tx_key").agg(
        pl.col("start").alias("exon_starts"),
        pl.col("end").alias("exon_ends"),
        pl.col("start").min().alias("exon_min"),
        pl.col("end").max().alias("exon_max"),
    )

    coding = parts.filter(pl.col("type").is_in([CDS, STOP_CODON]))
    cds_only = parts.filter(pl.col("type") == CDS)
    five_prime = (
        cds_only.with_columns(
            pl.when(pl.col("strand") == "+")
            .then(pl.col("start"))
            .otherwise(-pl.col("end"))
            .alias("order")
        )
        .sort("tx_key", "order")
        .unique("tx_key", keep="first")
        .select("tx_key", pl.col("phase").alias("cds_phase"), pl.col("line").alias("cds_line"))
    )
    cds_table = (
        coding.group_by("tx_key")
        .agg(
            pl.col("start").min().alias("cds_start"),
            pl.col("end").max().alias("cds_end"),
            (pl.col("type") == STOP_CODON).any().alias("has_stop"),
        )
        .join(five_prime, on="tx_key", how="left")
    )
    starts = parts.filter(pl.col("type") == START_CODON).select("tx_key").unique()
    # A start/stop codon line alone would make a 3-nt "CDS" and an empty protein.
    bad = _first_bad(
        parts.filter(pl.col("type").is_in([START_CODON, STOP_CODON])),
        ~pl.col("tx_key").is_in(cds_only["tx_key"].implode()),
    )
    if bad:
        raise InputError(
            path,
            bad["line"],
            f"{bad['type']} of {bad['tx_key']} but no CDS line: codon lines need CDS lines",
        )

    table = (
        transcripts.join(exon_table, on="tx_key", how="left")
        .join(cds_table, on="tx_key", how="left")
        .with_columns(
            pl.col("tx_key").is_in(starts["tx_key"].implode()).alias("has_start"),
            pl.col("has_stop").fill_null(False),
        )
    )
    no_exons = table.filter(pl.col("exon_starts").is_null())
    if no_exons.height:
        log.warning(
            "%s: %d transcripts without exons dropped (file cut short?), e.g. %s",
            path,
            no_exons.height,
            ", ".join(no_exons["transcript_id"].head(5)),
        )
    table = table.filter(pl.col("exon_starts").is_not_null())
    cut = table.filter(
        pl.col("start").is_not_null()
        & ((pl.col("exon_min") != pl.col("start")) | (pl.col("exon_max") != pl.col("end")))
    )
    if cut.height:
        log.warning(
            "%s: %d transcripts whose exons do not reach both ends of their transcript line "
            "dropped (file cut short?), e.g. %s",
            path,
            cut.height,
            ", ".join(cut["transcript_id"].head(5)),
        )
        table = table.join(cut.select("tx_key"), on="tx_key", how="anti")
    table = table.with_columns(
        pl.col("exon_min").alias("tx_start"), pl.col("exon_max").alias("tx_end")
    )

    # Lengths in transcript coordinates: each exon splits into the part left of the CDS,
    # inside it and right of it (genomic order); 5'/3' swap on the minus strand.
    pieces = (
        table.select("tx_key", "strand", "cds_start", "cds_end", "exon_starts", "exon_ends")
        .explode("exon_starts", "exon_ends")
        .rename({"exon_starts": "s", "exon_ends": "e"})
        .with_columns(
            pl.coalesce("cds_start", "e").alias("a"), pl.coalesce("cds_end", "e").alias("b")
        )
        .group_by("tx_key")
        .agg(
            (pl.min_horizontal("e", "a") - pl.col("s")).clip(lower_bound=0).sum().alias("left"),
            (pl.min_horizontal("e", "b") - pl.max_horizontal("s", "a"))
            .clip(lower_bound=0)
            .sum()
            .alias("cds_len"),
            (pl.col("e") - pl.max_horizontal("s", "b")).clip(lower_bound=0).sum().alias("right"),
        )
    )
    plus = pl.col("strand") == "+"
    table = table.join(pieces, on="tx_key", how="left").with_columns(
        pl.when(pl.col("cds_start").is_null())
        .then(0)
        .otherwise(pl.when(plus).then(pl.col("left")).otherwise(pl.col("right")))
        .alias("utr5_len"),
        pl.when(pl.col("cds_start").is_null())
        .then(0)
        .otherwise(pl.when(plus).then(pl.col("right")).otherwise(pl.col("left")))
        .alias("utr3_len"),
        pl.when(plus).then(pl.col("tx_start")).otherwise(pl.col("tx_end") - 1).alias("tss"),
    )
    _check_phase(table, path)
    table = table.join(_selenocysteines(parts, table, path), on="tx_key", how="left")
    return table.with_columns(
        pl.col("selenocysteines").fill_null(pl.lit([], pl.List(pl.Int64))),
        pl.col("tags").fill_null(pl.lit([], pl.List(pl.String))),
    ).select(*COLUMNS, GENE_TYPE)


# transcript_type when neither the transcript nor its gene says (DESIGN.md).
UNKNOWN_TYPE = "unknown"


def _required_ids(transcripts: pl.DataFrame, path: Path) -> pl.DataFrame:
    """transcript_id and gene_id are required; gene_name falls back to the gene ID and
    transcript_type to ``unknown`` (each counted in a warning), so no null reaches the
    parquet."""
    missing = pl.col("gene_id").is_null() | (pl.col("gene_id").str.strip_chars() == "")
    bad = _first_bad(transcripts, missing)
    if bad:
        raise InputError(path, bad["line"], f"transcript {bad['tx_key']} has no gene_id (required)")
    for column, fallback, what in (
        ("gene_name", pl.col("gene_id"), "the gene ID"),
        ("transcript_type", pl.lit(UNKNOWN_TYPE), repr(UNKNOWN_TYPE)),
    ):
        empty = pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")
        lacking = transcripts.filter(empty)
        if lacking.height:
            log.warning(
                "%s: %d transcripts have no %s, set to %s (e.g. %s)",
                path,
                lacking.height,
                "transcript type" if column == "transcript_type" else column,
                what,
                ", ".join(lacking["transcript_id"].head(3)),
            )
            transcripts = transcripts.with_columns(
                pl.when(empty).then(fallback).otherwise(pl.col(column)).alias(column)
            )
    return transcripts


def _check_inside_exons(parts: pl.DataFrame, exons: pl.DataFrame, path: Path) -> None:
    """Every CDS, codon and selenocysteine line lies inside one exon of its transcript."""
    coding = parts.filter(pl.col("type") != EXON).sort("start")
    if not coding.height:
        return
    nearest = coding.join_asof(
        exons.select(
            "tx_key", pl.col("start").alias("exon_start"), pl.col("end").alias("exon_end")
        ).sort("exon_start"),
        left_on="start",
        right_on="exon_start",
        by="tx_key",
        strategy="backward",
        check_sortedness=False,  # sorted by start overall, hence within each tx_key
    )
    # Codons may be split by an intron (two lines); each line still lies inside an exon.
    bad = _first_bad(nearest, pl.col("exon_end").is_null() | (pl.col("end") > pl.col("exon_end")))
    if bad:
        raise InputError(
            path,
            bad["line"],
            f"{bad['type']} of {bad['tx_key']} ({bad['start'] + 1}-{bad['end']}) is not inside "
            "one of its exons",
        )


def _check_phase(table: pl.DataFrame, path: Path) -> None:
    """A CDS whose 3' end is complete (a stop codon line, no ``cds_end_NF`` tag) must satisfy
    (length - phase) % 3 == 0, whether or not its start is (``cds_start_NF``): the stop fixes
    the frame, so the phase of an incomplete start is checked too, where it is the only thing
    that sets the protein's frame (a converter that swaps phases 1 and 2 gave such proteins in
    the wrong frame, seen only as internal stops).

    GENCODE's ``ribosomal_slippage`` tag marks real CDSs with a programmed frameshift
    (e.g. PEG10, PAZ1 antizymes): their length is legitimately not a whole number of
    codons, so they are exempt.
    """
    complete = table.filter(
        pl.col("has_stop")
        & ~pl.col("tags").list.contains("cds_end_NF")
        & ~pl.col("tags").list.contains("ribosomal_slippage")
    )
    bad = _first_bad(
        complete, (pl.col("cds_len") - pl.col("cds_phase").fill_null(0).cast(pl.Int64)) % 3 != 0
    )
    if bad:
        raise InputError(
            path,
            bad["cds_line"],
            f"CDS of {bad['transcript_id']} is {bad['cds_len']} nt with phase "
            f"{bad['cds_phase']}: (length - phase) is not a multiple of 3 (check the phase "
            "column: genePred's exonFrames number frames the other way, 1 and 2 swapped)",
        )


def _selenocysteines(parts: pl.DataFrame, table: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Transcript-coordinate position of each selenocysteine codon's first base."""
    sec = parts.filter(pl.col("type").is_in(SELENOCYSTEINE_TYPES)).with_columns(
        pl.when(pl.col("strand") == "+")
        .then(pl.col("start"))
        .otherwise(pl.col("end") - 1)
        .alias("pos")
    )
    if not sec.height:
        return pl.DataFrame(schema={"tx_key": pl.String, "selenocysteines": pl.List(pl.Int64)})
    exons = (
        table.filter(pl.col("tx_key").is_in(sec["tx_key"].implode()))
        .select("tx_key", "exon_starts", "exon_ends")
        .explode("exon_starts", "exon_ends")
        .rename({"exon_starts": "s", "exon_ends": "e"})
        .with_columns(
            ((pl.col("e") - pl.col("s")).cum_sum() - (pl.col("e") - pl.col("s")))
            .over("tx_key")
            .alias("before"),
            (pl.col("e") - pl.col("s")).sum().over("tx_key").alias("total"),
        )
    )
    hits = sec.join(exons, on="tx_key", how="left").filter(
        (pl.col("pos") >= pl.col("s")) & (pl.col("pos") < pl.col("e"))
    )
    lost = sec.join(hits.select("line"), on="line", how="anti")
    bad = _first_bad(lost, pl.col("tx_key").is_in(table["tx_key"].implode()))
    if bad:
        raise InputError(path, bad["line"], f"selenocysteine of {bad['tx_key']} is not in an exon")
    genomic_offset = pl.col("before") + pl.col("pos") - pl.col("s")
    return (
        hits.with_columns(
            pl.when(pl.col("strand") == "+")
            .then(genomic_offset)
            .otherwise(pl.col("total") - 1 - genomic_offset)
            .alias("tx_pos")
        )
        .sort("tx_key", "tx_pos")
        .group_by("tx_key", maintain_order=True)
        .agg(pl.col("tx_pos").alias("selenocysteines"))
    )


def _to_pandas(table: pl.DataFrame) -> pd.DataFrame:
    arrow = table.to_arrow().cast(SCHEMA)
    frame = arrow.to_pandas()
    for column, dtype in (("cds_start", "Int64"), ("cds_end", "Int64"), ("cds_phase", "Int8")):
        frame[column] = pd.array(arrow[column].to_pylist(), dtype=dtype)
    return frame
