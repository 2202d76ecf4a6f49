"""GTEx v8: sample attributes, the transcript TPM GCT streamed in row blocks, per-tissue targets.

The GTEx v8 transcript matrix (RSEM transcript TPM, ``#1.2`` GCT) has 199,324 rows x 17,382
samples = 3.5 billion values, ~28 GB as float64. It is never held whole: the gzip stream is
read as bytes in blocks of rows; each block becomes one (rows x samples) float64 array, and a
matrix product with a sample -> tissue indicator (samples x tissues) turns it into per-tissue
sums. What is kept is transcripts x tissues.

How a block is parsed (bench/bench_targets.py, docs/benchmarks.md): numpy finds every tab and
newline of the block at once, which gives each field's bounds in the block with those bytes
deleted; the numbers then form one pyarrow string array per row and a single string ->
float64 cast parses them (fast_float, correctly rounded like np.loadtxt, so the same bits):
about half np.loadtxt's CPU per value, which was 72% of the reader's time. A field the cast
rejects (blanks around a number, text) sends the block to np.loadtxt, which has the last
word on what is a number and names a bad one. gzip is decompressed in a second thread (xopen +
isal) and, when the process may use two cores, blocks are parsed in a third while the next
are read (numpy's scans and pyarrow's cast release the GIL).

Why row blocks and not a CSV reader (same benchmark, 20,000 rows x 17,382 samples, one run
before this parser): np.loadtxt on blocks 71 s / 258 MiB peak; pyarrow ``open_csv``
streaming with 64 MiB blocks 84 s / 2.2 GiB (it builds 17,382 arrays per block; in an earlier
run 16 MiB blocks took 170 s / 1.0 GiB, 4 MiB 312 s); polars ``scan_csv`` streaming 262 s /
468 MiB; pandas ``read_csv`` holds the whole matrix (26.6 s / 2.6 GB at 8,000 rows on the
2-core dev box, ~65 GB at GTEx's 199k rows). Row-wise, the cost has no per-column part and
memory does not grow with the matrix length.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from xopen import xopen

from isoflow.annotation import PAR_Y_SUFFIX
from isoflow.errors import InputError, close_matches, non_utf8_error
from isoflow.files import atomic_path
from isoflow.progress import Progress

log = logging.getLogger(__name__)

GCT_VERSION = "#1.2"
ID_COLUMNS = ("transcript_id", "gene_id")
TISSUE_COLUMNS = {"smts": "SMTS", "smtsd": "SMTSD"}
# Rows per parsed block: 128 GTEx rows are ~11 MB of text and 18 MB as float64, so the peak
# stays near 120 MB whatever the matrix length; larger blocks gained nothing measurable.
DEFAULT_BLOCK_ROWS = 128
# TPMs of one sample sum to 10^6, so no single value can be larger.
MAX_TPM = 1e6
TISSUES_METADATA_KEY = b"isoflow.tissues"
# Example IDs of each side of the GTEx <-> annotation overlap in stats.tsv and messages.
OVERLAP_EXAMPLES = 5
# GTEx's cell-line SMTSDs start so: "Cells - EBV-transformed lymphocytes" (SMTS Blood),
# "Cells - Cultured fibroblasts" (SMTS Skin); gtex.cell_lines: drop leaves their samples out.
CELL_LINE_PREFIX = "Cells - "
CELL_LINE_MODES = ("keep", "drop")
_VERSION = re.compile(r"\.\d+(?=(_PAR_Y)?$)")

PathLike = str | os.PathLike


def read_sample_attributes(path: PathLike) -> pd.DataFrame:
    """GTEx SampleAttributesDS (tab-separated, header line) -> DataFrame SAMPID, SMTS, SMTSD (str).

    Only these three columns are kept (the others, 63 in v8, are ignored), but every row's
    field count is checked against the header: free-text columns (SMPTHNTS, ...) are not
    quoted in GTEx, so a stray tab would shift the row and turn its RIN into its tissue.
    Values are stripped of surrounding whitespace; the DataFrame index is the file line.
    """
    text = _read_utf8(path, "sample attributes")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].strip():
        raise InputError(path, 1, "empty file: expected a header line (SAMPID, SMTS, SMTSD, ...)")
    header = lines[0].rstrip("\r").split("\t")
    wanted = ["SAMPID", "SMTS", "SMTSD"]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise InputError(path, 1, f"header lacks column(s) {', '.join(missing)}")
    twice = [c for c in wanted if header.count(c) > 1]
    if twice:
        raise InputError(path, 1, f"column {twice[0]} appears twice in the header")
    n_fields = len(header)
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue  # a blank line holds no sample
        fields = line.split("\t")
        if len(fields) != n_fields:
            raise InputError(
                path, number, _field_count_message(header, fields, lines[1:], n_fields)
            )
        rows.append(fields)
        line_numbers.append(number)
    index = [header.index(c) for c in wanted]
    attrs = pd.DataFrame(
        {c: [row[i].strip() for row in rows] for c, i in zip(wanted, index, strict=True)},
        index=pd.Index(line_numbers, name="line"),
        dtype=object,
    )
    empty = attrs["SAMPID"] == ""
    if empty.any():
        raise InputError(path, int(attrs.index[empty.to_numpy()][0]), "empty SAMPID")
    dup = attrs["SAMPID"].duplicated()
    if dup.any():
        first = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(
            path, int(attrs.index[first]), f"sample {attrs['SAMPID'].iat[first]} listed twice"
        )
    return attrs


def check_tissue_spellings(
    attrs: pd.DataFrame, column: str, in_matrix: set[str], path: PathLike
) -> None:
    """Fail when two tissue names of matrix samples differ only in case or inner whitespace
    (``Brain`` and ``brain``): grouped as they are they would be two tissues, and which is
    meant is unknown. Values are compared as read (stripped), only in the column of the tissue
    set in use and only for samples the TPM matrix holds: the attribute file lists samples of
    other assays too, and a column not used cannot split a tissue."""
    used = attrs[attrs["SAMPID"].isin(in_matrix) & (attrs[column] != "")]
    spellings: dict[str, dict[str, int]] = {}
    for position, value in enumerate(used[column]):
        key = " ".join(value.split()).casefold()
        spellings.setdefault(key, {}).setdefault(value, position)
    for variants in spellings.values():
        if len(variants) > 1:
            (first, i), (second, j) = sorted(variants.items(), key=lambda kv: kv[1])[:2]
            more = f" ({len(variants) - 2} more spellings)" if len(variants) > 2 else ""
            raise InputError(
                path,
                int(used.index[j]),
                f"{column} {second!r} (sample {used['SAMPID'].iat[j]}) and {first!r} "
                f"(sample {used['SAMPID'].iat[i]}, line {int(used.index[i])}) differ only in "
                f"case or whitespace{more}: write one tissue one way",
            )


def _value_kind(value: str) -> str | None:
    """'num', 'text' or None (empty): what a GTEx attribute value looks like."""
    if not value.strip():
        return None
    try:
        float(value)
    except ValueError:
        return "text"
    return "num"


def _field_count_message(
    header: list[str], fields: list[str], body: list[str], n_fields: int
) -> str:
    """``expected N fields, found M`` and, for extra fields, the column that likely holds the
    unquoted tab: the merge of adjacent fields after which every value looks like the other
    rows' values of its column (numbers where they hold numbers, text where they hold text)."""
    message = f"expected {n_fields} fields (as the header), found {len(fields)}"
    if len(fields) < n_fields:
        return message + "; the row is cut short or a tab is missing"
    extra = len(fields) - n_fields
    seen: list[set] = [set() for _ in header]
    for line in body:
        good = line.rstrip("\r").split("\t")
        if len(good) == n_fields:
            for kinds, value in zip(seen, good, strict=True):
                kinds.add(_value_kind(value))
    scores = []
    for k in range(n_fields):
        merged = [*fields[:k], "\t".join(fields[k : k + extra + 1]), *fields[k + extra + 1 :]]
        misfits = sum(
            _value_kind(value) not in kinds
            for j, (kinds, value) in enumerate(zip(seen, merged, strict=True))
            if j != k and kinds
        )
        scores.append((misfits, k))
    best = min(score for score, _ in scores)
    tied = [k for score, k in scores if score == best]
    # A tie (columns that are empty in this row) goes to the columns that hold free text.
    candidates = [header[k] for k in tied if len(tied) == 1 or "text" in seen[k]]
    if len(candidates) == 1:
        message += f"; likely an unquoted tab in column {candidates[0]}"
    elif 1 < len(candidates) <= 3:
        message += f"; likely an unquoted tab in one of columns {', '.join(candidates)}"
    else:
        message += "; likely an unquoted tab in a free-text column"
    return message


def _read_utf8(path: PathLike, what: str) -> str:
    """A whole (gzip or plain) text file as str; a non-UTF-8 byte names its line."""
    try:
        with _open_binary(path) as fh:
            data = fh.read()
    except (OSError, EOFError) as err:
        raise InputError(path, None, f"cannot read {what}: {err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise non_utf8_error(path, data) from None


def read_gct_header(gct: PathLike) -> tuple[int, int, list[str]]:
    """The first three lines of a ``#1.2`` GCT -> (n_rows, n_cols, column names)."""
    try:
        with _open_text(gct) as fh:
            lines = [fh.readline() for _ in range(3)]
    except UnicodeDecodeError:
        raise non_utf8_error(gct) from None
    except (OSError, EOFError) as err:
        raise InputError(gct, None, f"cannot read the GCT header: {err}") from None
    version, dims, header = (line.rstrip("\r\n") for line in lines)
    if version != GCT_VERSION:
        raise InputError(
            gct, 1, f"expected '{GCT_VERSION}' (GCT version line), got {version[:40]!r}"
        )
    parts = dims.split("\t")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(gct, 2, f"expected dimensions 'NROWS<TAB>NCOLS', got {dims[:40]!r}")
    n_rows, n_cols = (int(p) for p in parts)
    columns = header.split("\t")
    if tuple(columns[:2]) != ID_COLUMNS:
        raise InputError(
            gct,
            3,
            f"header must start with transcript_id, gene_id (GTEx transcript TPM); "
            f"got {', '.join(columns[:2])}",
        )
    if len(columns) - 2 != n_cols:
        raise InputError(
            gct, 3, f"header has {len(columns) - 2} sample columns, dimensions line says {n_cols}"
        )
    dup = [c for c, n in Counter(columns).items() if n > 1]
    if dup:
        raise InputError(gct, 3, f"column {dup[0]} appears twice in the header")
    return n_rows, n_cols, columns


def _check_no_tissue(
    attrs: pd.DataFrame, column: str, in_matrix: set[str], samples: PathLike, gct: PathLike
) -> None:
    """A matrix sample without a tissue is an error (its column would be dropped from every
    mean without a word); attribute rows without one that the matrix does not hold are
    only counted in a warning (GTEx lists samples of other assays too)."""
    empty = attrs[attrs[column] == ""]
    if empty.empty:
        return
    used = empty[empty["SAMPID"].isin(in_matrix)]
    if len(used):
        more = f" ({len(used) - 1} more)" if len(used) > 1 else ""
        raise InputError(
            samples,
            int(used.index[0]),
            f"sample {used['SAMPID'].iat[0]} is a column of {gct} but has an empty {column}"
            f"{more}: give it a tissue or drop its column",
        )
    log.warning(
        "%s: %d sample(s) with an empty %s, none of them in the TPM matrix, ignored (e.g. %s)",
        samples,
        len(empty),
        column,
        ", ".join(empty["SAMPID"].head(3)),
    )


# How many names a one-line error lists before "... and N more".
MISSING_TISSUES_SHOWN = 10
MATRIX_TISSUES_SHOWN = 60  # GTEx v8: 31 SMTS, 54 SMTSD


def _some(names: list[str], shown: int) -> str:
    more = f", ... and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def select_tissues(
    sample_tissue: dict[str, str],
    tissue_set: str,
    tissues: list[str] | None,
    min_samples: int,
    samples_path: PathLike,
    gct_path: PathLike | None = None,
) -> list[str]:
    """The tissue list: the configured one (checked) or every tissue with >= min_samples, sorted.

    Configured tissues without a sample in the matrix are one error naming the config key
    (``tissues.<tissue_set>``), every such tissue (with near matches) and the tissues the
    matrix's samples do have, with their sample counts."""
    counts = Counter(t for t in sample_tissue.values() if t)
    if tissues is None:
        return sorted(t for t, n in counts.items() if n >= min_samples)
    dup = [t for t, n in Counter(tissues).items() if n > 1]
    if dup:
        raise InputError(
            samples_path,
            dup[0],
            f"tissue listed twice in tissues.{tissue_set} (the config): list each tissue once",
        )
    column = TISSUE_COLUMNS[tissue_set]
    missing = []
    for tissue in tissues:
        if counts.get(tissue, 0) == 0:
            near = close_matches(tissue, counts, n=3, cutoff=0.5)
            missing.append(f"{tissue} (near {' / '.join(near)})" if near else tissue)
    if missing:
        matrix = f"the TPM matrix {gct_path}" if gct_path is not None else "the TPM matrix"
        have = [f"{t} ({n})" for t, n in sorted(counts.items())]
        raise InputError(
            "config",
            f"tissues.{tissue_set}",
            f"{len(missing)} of the {len(tissues)} configured tissues have no sample in "
            f"{matrix} ({column} of its samples in {samples_path}): "
            f"{_some(missing, MISSING_TISSUES_SHOWN)}; its samples are of {len(counts)} "
            f"{column} tissue(s) (samples): {_some(have, MATRIX_TISSUES_SHOWN)}; list only "
            f"those in tissues.{tissue_set}, or set it to null for every tissue with samples",
        )
    short = [f"{t} ({counts[t]})" for t in tissues if counts[t] < min_samples]
    if len(short) == 1:
        tissue = short[0].rsplit(" (", 1)[0]
        raise InputError(
            samples_path,
            tissue,
            f"only {counts[tissue]} sample(s), gtex.min_samples is {min_samples}: drop it from "
            f"tissues.{tissue_set} or lower gtex.min_samples",
        )
    if short:
        raise InputError(
            samples_path,
            None,
            f"{len(short)} of the {len(tissues)} configured tissues have fewer than "
            f"gtex.min_samples ({min_samples}) samples; tissue (samples): "
            f"{_some(short, MISSING_TISSUES_SHOWN)}; drop them from tissues.{tissue_set} or "
            "lower gtex.min_samples",
        )
    return list(tissues)


def aggregate_tpm(
    gct: PathLike,
    samples: PathLike,
    tissue_set: str = "smts",
    tissues: list[str] | None = None,
    min_samples: int = 1,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    cell_lines: str = "keep",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stream a GTEx transcript TPM GCT into per-tissue log1p(mean TPM).

    Returns ``(targets, stats)``: targets has transcript_id, gene_id and one float32 column per
    tissue (in ``tissues`` order); stats has tissue, n_samples, mean, sd (mean and sd of that
    tissue's target column over transcripts). ``cell_lines`` is ``gtex.cell_lines``: ``drop``
    leaves out the matrix samples whose SMTSD starts with ``CELL_LINE_PREFIX``, counted per
    SMTSD in the log and in ``stats.attrs["cell_line_samples"]``. Raises InputError on any
    malformed input.
    """
    if tissue_set not in TISSUE_COLUMNS:
        raise ValueError(f"tissue_set must be one of {sorted(TISSUE_COLUMNS)}, got {tissue_set!r}")
    if cell_lines not in CELL_LINE_MODES:
        raise ValueError(f"cell_lines must be one of {CELL_LINE_MODES}, got {cell_lines!r}")
    attrs = read_sample_attributes(samples)
    n_rows, _, columns = read_gct_header(gct)
    sample_ids = columns[2:]
    column = TISSUE_COLUMNS[tissue_set]
    tissue_of = dict(zip(attrs["SAMPID"], attrs[column], strict=True))
    unknown = [s for s in sample_ids if s not in tissue_of]
    if unknown:
        more = f" ({len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise InputError(gct, unknown[0], f"sample column is not in {samples}{more}")
    _check_no_tissue(attrs, column, set(sample_ids), samples, gct)
    check_tissue_spellings(attrs, column, set(sample_ids), samples)
    sample_tissue = {s: tissue_of[s] for s in sample_ids}
    dropped_cells: dict[str, int] = {}
    if cell_lines == "drop":
        dropped_cells = _drop_cell_lines(attrs, sample_tissue, tissue_set, tissues, samples)
    tissues = select_tissues(sample_tissue, tissue_set, tissues, min_samples, samples, gct)
    if not tissues:
        raise InputError(samples, None, f"no tissue has >= {min_samples} samples in {gct}")

    # Every sample column is parsed and checked, also those of tissues not selected: a corrupt
    # matrix fails whatever the tissue list. Unselected samples get an all-zero indicator row.
    column_of = {t: i for i, t in enumerate(tissues)}
    indicator = np.zeros((len(sample_ids), len(tissues)), dtype=np.float64)
    for i, s in enumerate(sample_ids):
        if sample_tissue[s] in column_of:
            indicator[i, column_of[sample_tissue[s]]] = 1.0
    n_samples = indicator.sum(axis=0)
    # values @ (indicator / n) is the mean directly: no sum that could overflow float64
    # (every term is at most MAX_TPM / n), at the cost of the same product.
    weights = indicator / n_samples
    log.info(
        "%s: %d rows x %d samples; %d samples in %d tissues (%s)",
        gct,
        n_rows,
        len(sample_ids),
        int(n_samples.sum()),
        len(tissues),
        tissue_set,
    )

    ids: list[str] = []
    genes: list[str] = []
    means: list[np.ndarray] = []
    seen: dict[str, int] = {}
    progress = Progress("targets: GCT", n_rows, "rows", logger=log)
    for first_line, block_ids, block_genes, values in _row_blocks(gct, columns, block_rows):
        progress.update(len(block_ids))
        for offset, tid in enumerate(block_ids):
            if not tid.strip() or not block_genes[offset].strip():
                raise InputError(gct, first_line + offset, "empty transcript_id or gene_id")
            if tid in seen:
                raise InputError(
                    gct, first_line + offset, f"transcript {tid} already on line {seen[tid]}"
                )
            seen[tid] = first_line + offset
        # min/max first: one pass each, the element-wise search only when something is off
        # (NaN makes both comparisons False).
        if not (values.size == 0 or (values.min() >= 0 and values.max() <= MAX_TPM)):
            row, col = np.argwhere(~(values >= 0) | ~(values <= MAX_TPM))[0]
            raise InputError(
                gct,
                first_line + int(row),
                f"transcript {block_ids[row]}, sample {sample_ids[col]}: TPM "
                f"{float(values[row, col])!r} is not a number in [0, {MAX_TPM:.0f}] "
                "(a sample's TPMs sum to one million)",
            )
        means.append(values @ weights)
        ids.extend(block_ids)
        genes.extend(block_genes)
    progress.finish()
    if len(ids) != n_rows:
        raise InputError(gct, 2, f"dimensions line says {n_rows} rows, the body has {len(ids)}")
    if not ids:
        raise InputError(gct, 4, "no transcript rows")

    mean_tpm = np.concatenate(means) if means else np.zeros((len(ids), len(tissues)))
    # Finite by construction: every TPM was checked to lie in [0, MAX_TPM] and every selected
    # tissue has >= 1 sample, so each mean is in [0, MAX_TPM] and log1p of it <= 13.9.
    values = np.log1p(mean_tpm).astype(np.float32)
    targets = pd.DataFrame({"transcript_id": ids, "gene_id": genes})
    targets = pd.concat(
        [targets, pd.DataFrame(values, columns=tissues, index=targets.index)], axis=1
    )
    stats = pd.DataFrame(
        {
            "tissue": tissues,
            "n_samples": n_samples.astype(np.int64),
            "mean": values.mean(axis=0, dtype=np.float64),
            "sd": values.std(axis=0, ddof=1, dtype=np.float64) if len(ids) > 1 else np.nan,
        }
    )
    if cell_lines == "drop":
        stats.attrs["cell_line_samples"] = dropped_cells
    return targets, stats


def _drop_cell_lines(
    attrs: pd.DataFrame,
    sample_tissue: dict[str, str],
    tissue_set: str,
    tissues: list[str] | None,
    samples: PathLike,
) -> dict[str, int]:
    """Take the matrix samples of cell-line SMTSDs out of ``sample_tissue`` (their tissue
    becomes empty: in no tissue's mean); returns the samples left out per SMTSD. Under
    ``smtsd`` a configured cell-line tissue is an error (it would have no sample left)."""
    smtsd_of = dict(zip(attrs["SAMPID"], attrs["SMTSD"], strict=True))
    if tissue_set == "smtsd":
        named = [t for t in tissues or [] if t.startswith(CELL_LINE_PREFIX)]
        if named:
            raise InputError(
                samples,
                named[0],
                "tissues.smtsd names a cell line while gtex.cell_lines is drop: remove it from "
                "tissues.smtsd or set gtex.cell_lines: keep",
            )
    dropped: dict[str, int] = {}
    for sample in sample_tissue:
        smtsd = smtsd_of[sample]
        if smtsd.startswith(CELL_LINE_PREFIX):
            dropped[smtsd] = dropped.get(smtsd, 0) + 1
            sample_tissue[sample] = ""
    log.info(
        "%s: %d cell-line samples left out of their tissue (gtex.cell_lines: drop): %s",
        samples,
        sum(dropped.values()),
        ", ".join(f"{name} {n}" for name, n in sorted(dropped.items())) or "none",
    )
    return dict(sorted(dropped.items()))


def overlap_counts(gtex_ids, annotation_ids) -> dict[str, int]:
    """Transcripts in GTEx only / annotation only / both (versioned IDs, compared as is), and
    GENCODE's ``_PAR_Y`` copies on each side (``par_y_gtex``, ``par_y_annotation``)."""
    gtex, annotation = set(gtex_ids), set(annotation_ids)
    return {
        "gtex_only": len(gtex - annotation),
        "annotation_only": len(annotation - gtex),
        "both": len(gtex & annotation),
        "par_y_gtex": sum(tid.endswith(PAR_Y_SUFFIX) for tid in gtex),
        "par_y_annotation": sum(tid.endswith(PAR_Y_SUFFIX) for tid in annotation),
    }


def overlap_examples(gtex_ids, annotation_ids, n: int = OVERLAP_EXAMPLES) -> dict[str, list[str]]:
    """Up to ``n`` IDs (sorted) of the GTEx-only and of the annotation-only transcripts."""
    gtex, annotation = set(gtex_ids), set(annotation_ids)
    return {
        "gtex_only": sorted(gtex - annotation)[:n],
        "annotation_only": sorted(annotation - gtex)[:n],
    }


def _unversioned(tid: str) -> str:
    """``ENST00000456328.2`` -> ``ENST00000456328`` (``_PAR_Y`` kept)."""
    return _VERSION.sub("", tid)


def check_overlap(
    gtex_ids,
    annotation_ids,
    gct: PathLike,
    transcripts: PathLike,
    warn_below: float | None,
    fail_below: float | None,
) -> float | None:
    """The share of annotation transcripts that are rows of the matrix; below ``fail_below``
    an InputError (one line: the matrix, five annotation IDs it lacks, the likely cause),
    below ``warn_below`` the same line as a warning. None (no check) for an empty annotation.
    """
    gtex, annotation = set(gtex_ids), set(annotation_ids)
    if not annotation:
        return None
    share = len(annotation & gtex) / len(annotation)
    failing = fail_below is not None and share < fail_below
    if not failing and (warn_below is None or share >= warn_below):
        return share
    missing = sorted(annotation - gtex)
    examples = ", ".join(missing[:OVERLAP_EXAMPLES])
    gtex_bases: dict[str, str] = {}
    for tid in gtex - annotation:
        gtex_bases.setdefault(_unversioned(tid), tid)
    versioned = [(a, g) for a, g in ((t, gtex_bases.get(_unversioned(t))) for t in missing) if g]
    # Which side lacks the suffix: none (another release), the matrix, or the annotation.
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for a, g in versioned:
        kind = "matrix" if g == _unversioned(g) else "annotation" if a == _unversioned(a) else ""
        by_kind.setdefault(kind or "release", []).append((a, g))
    kind = max(by_kind, key=lambda k: len(by_kind[k])) if by_kind else None
    pairs = by_kind.get(kind, [])
    here, there = pairs[0] if pairs else ("", "")
    if kind == "release":
        cause = (
            f"{len(pairs):,} of them differ only in the version suffix ({here} in the "
            f"annotation, {there} in the matrix): the annotation is another GENCODE release "
            "than the matrix's (GTEx v8: GENCODE v26)"
        )
    elif kind == "matrix":
        unversioned = sum(tid == _unversioned(tid) for tid in gtex)
        which = "none of its" if unversioned == len(gtex) else f"{len(gtex) - unversioned:,} of"
        cause = (
            f"{len(pairs):,} of them are in the matrix without their version suffix ({here} "
            f"in the annotation, {there} in the matrix; {which} {len(gtex):,} IDs carry one): "
            "this is not GTEx v8's transcript TPM file, whose IDs are versioned (GENCODE v26) "
            "as the annotation's are; use that file, or give the matrix's IDs the version "
            "suffixes of the annotation release it was quantified with"
        )
    elif kind == "annotation":
        cause = (
            f"{len(pairs):,} of them are in the matrix only with a version suffix the "
            f"annotation's IDs lack ({here} in the annotation, {there} in the matrix): use an "
            "annotation whose IDs carry versions, GENCODE v26's for GTEx v8 (an Ensembl GTF "
            "or GFF3 with transcript_version / version attributes is read with them)"
        )
    else:
        cause = (
            "their IDs are not the matrix's, not even without version suffixes: another "
            "GENCODE release than the matrix's (GTEx v8: GENCODE v26) or another annotation "
            "(Ensembl, RefSeq, UCSC IDs)"
        )
    key = "gtex.overlap_fail_below" if failing else "gtex.overlap_warn_below"
    limit = fail_below if failing else warn_below
    message = (
        f"only {share:.1%} of the {len(annotation):,} transcripts of {transcripts} are rows "
        f"of this matrix ({key}: {limit:.0%}); {len(missing):,} are not, e.g. {examples}; "
        f"likely cause: {cause}"
    )
    if failing:
        raise InputError(gct, None, message)
    log.warning("%s: %s", gct, message)
    return share


def write_targets(
    targets: pd.DataFrame,
    stats: pd.DataFrame,
    tissues: list[str],
    parquet_path: PathLike,
    stats_path: PathLike,
    overlap: dict[str, int] | None = None,
    examples: dict[str, list[str]] | None = None,
    comments: dict[str, str] | None = None,
) -> None:
    """Write the targets parquet (metadata isoflow.tissues) and stats.tsv, both atomically:
    ``overlap`` counts as ``# transcripts_{key}`` lines, ``examples`` as ``# examples_{key}``
    lines (comma-separated IDs), ``comments`` as ``# {key}`` lines last."""
    fields = [pa.field("transcript_id", pa.string()), pa.field("gene_id", pa.string())]
    fields += [pa.field(t, pa.float32()) for t in tissues]
    schema = pa.schema(fields, metadata={TISSUES_METADATA_KEY: json.dumps(tissues).encode()})
    table = pa.Table.from_pandas(
        targets[["transcript_id", "gene_id", *tissues]], schema=schema, preserve_index=False
    )
    with atomic_path(parquet_path) as tmp_parquet, atomic_path(stats_path) as tmp_stats:
        pq.write_table(table, tmp_parquet)
        with open(tmp_stats, "w") as out:
            stats.to_csv(out, sep="\t", index=False, float_format="%.6g")
            for key, value in (overlap or {}).items():
                out.write(f"# transcripts_{key}\t{value}\n")
            for key, ids in (examples or {}).items():
                out.write(f"# examples_{key}\t{','.join(ids)}\n")
            for key, value in (comments or {}).items():
                out.write(f"# {key}\t{value}\n")


def read_targets(path: PathLike) -> tuple[pd.DataFrame, list[str]]:
    """targets parquet -> (DataFrame, tissues in order)."""
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if TISSUES_METADATA_KEY not in meta:
        raise InputError(path, None, "no isoflow.tissues schema metadata (not a targets table)")
    tissues = json.loads(meta[TISSUES_METADATA_KEY])
    absent = [t for t in ["transcript_id", "gene_id", *tissues] if t not in table.column_names]
    if absent:
        raise InputError(path, None, f"column {absent[0]!r} named in isoflow.tissues is absent")
    return table.to_pandas(), tissues


def _compression(path: PathLike) -> str | None:
    with open(path, "rb") as fh:
        return "gzip" if fh.read(2) == b"\x1f\x8b" else None


def _open_text(path: PathLike, threads: int = 0):
    # xopen: isal's igzip when installed (several times zlib's speed); threads=1 decompresses
    # in a second thread, beside the parsing. UTF-8 whatever the locale says.
    if _compression(path):
        return xopen(path, "rt", threads=threads, encoding="utf-8")
    return open(path, encoding="utf-8")


def _open_binary(path: PathLike, threads: int = 0):
    # threads=1: decompressed in a second thread (isal's igzip), beside the parsing.
    return xopen(path, "rb", threads=threads) if _compression(path) else open(path, "rb")


def _parse_workers() -> int:
    """Threads that parse blocks beside the reading one: 1 when this process may use two or
    more cores (the heavy steps, numpy's scans and pyarrow's cast, release the GIL), else 0."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 1 if cores > 1 else 0


def _row_blocks(gct: PathLike, columns: list[str], block_rows: int, workers: int | None = None):
    """Yield (first line number, transcript IDs, gene IDs, values (rows x samples) float64).

    The stream is read as bytes (decompressed in a second thread by xopen + isal); with
    ``workers`` > 0 (default: ``_parse_workers()``) blocks are parsed in that many threads
    while the next ones are read, and yielded in file order. A read error (truncated gzip)
    is raised only after the blocks read before it, so errors come in file order either way.
    """
    workers = _parse_workers() if workers is None else workers
    lineno = 3  # the header lines, read again here
    pending: collections.deque = collections.deque()
    with contextlib.ExitStack() as stack:
        pool = (
            stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="gct-parse"))
            if workers
            else None
        )
        try:
            fh = stack.enter_context(_open_binary(gct, threads=1))
            for _ in range(3):
                next(fh)
            while True:
                lines = list(itertools.islice(fh, block_rows))
                if not lines:
                    break
                first_line = lineno + 1
                lineno += len(lines)
                if pool is None:
                    yield first_line, *_parse_block(gct, columns, lines, first_line)
                    continue
                pending.append(
                    (first_line, pool.submit(_parse_block, gct, columns, lines, first_line))
                )
                if len(pending) > workers:
                    first, future = pending.popleft()
                    yield first, *future.result()
        except (EOFError, OSError) as err:
            error = InputError(
                gct, None, f"truncated or corrupt gzip stream ({lineno} lines read before): {err}"
            )
        else:
            error = None
        while pending:
            first, future = pending.popleft()
            yield first, *future.result()
        if error is not None:
            raise error


def _parse_block(
    gct: PathLike, columns: list[str], lines: list[bytes], first_line: int
) -> tuple[list[str], list[str], np.ndarray]:
    """One block of GCT lines -> (transcript IDs, gene IDs, values (rows x samples) float64).

    Every field of the block is located at once: the tab and newline positions (numpy) give
    each field's bounds in the block with those bytes deleted, so the numbers of each row form
    one pyarrow string array and one string -> float64 cast parses them all (fast_float,
    correctly rounded like np.loadtxt: about half np.loadtxt's time per value, see
    docs/benchmarks.md). A field pyarrow does not read as a number sends the block to
    np.loadtxt, which decides what is a number and names a bad one.
    """
    data = b"".join(lines)
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = first_line + data.count(b"\n", 0, err.start)
            error = non_utf8_error(gct, data[data.rfind(b"\n", 0, err.start) + 1 :])
            raise InputError(gct, line, error.message) from None
    if b"\r" in data:
        if data.count(b"\r") != data.count(b"\r\n"):
            position = data.replace(b"\r\n", b"\n\n").find(b"\r")
            raise InputError(
                gct,
                first_line + data.count(b"\n", 0, position),
                "carriage return (CR) inside a row: only LF or CRLF line ends are read",
            )
        lines = [line.replace(b"\r\n", b"\n") for line in lines]
        data = b"".join(lines)
    n_fields = len(columns)
    n_rows = len(lines)
    raw = np.frombuffer(data, dtype=np.uint8)
    separators = np.flatnonzero((raw == 9) | (raw == 10))
    # Each row must hold n_fields - 1 tabs and end in a newline (the last row may lack it).
    line_ends = np.cumsum([len(line) for line in lines])
    per_line = np.diff(np.searchsorted(separators, line_ends), prepend=0)
    complete = per_line == n_fields
    if not lines[-1].endswith(b"\n"):
        complete[-1] = per_line[-1] == n_fields - 1
    if not complete.all():
        offset = int(np.flatnonzero(~complete)[0])
        found = lines[offset].count(b"\t") + 1
        raise InputError(
            gct,
            first_line + offset,
            f"expected {n_fields} fields (as the header), found {found}",
        )
    n_total = n_rows * n_fields
    text = data.translate(None, b"\t\n")
    # field k starts after k deleted separators and ends where separator k stood
    offsets = np.empty(n_total + 1, dtype=np.int64)
    offsets[0] = 0
    np.subtract(separators[: n_total - 1], np.arange(n_total - 1), out=offsets[1:n_total])
    offsets[n_total] = len(text)
    heads = offsets[np.arange(n_rows)[:, None] * n_fields + np.arange(3)].tolist()
    ids = [text[a:b].decode() for a, b, _ in heads]
    genes = [text[b:c].decode() for _, b, c in heads]
    offsets_buffer, text_buffer = pa.py_buffer(offsets), pa.py_buffer(text)
    rows = [
        pa.LargeStringArray.from_buffers(
            n_fields - 2, offsets_buffer, text_buffer, offset=row * n_fields + 2
        )
        for row in range(n_rows)
    ]
    try:
        parsed = pc.cast(pa.chunked_array(rows, pa.large_string()), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return ids, genes, _parse_values_loadtxt(gct, columns, lines, first_line)
    return ids, genes, parsed.to_numpy().reshape(n_rows, n_fields - 2)


def _parse_values_loadtxt(gct, columns, lines: list[bytes], first_line: int) -> np.ndarray:
    """np.loadtxt on a block's lines: the reference parser, and the one that names a value
    that is not a number."""
    text = [line.decode("utf-8") for line in lines]
    try:
        return np.loadtxt(
            text,
            delimiter="\t",
            usecols=range(2, len(columns)),
            dtype=np.float64,
            comments=None,
            ndmin=2,
        )
    except ValueError:
        raise _bad_value(gct, columns, text, first_line) from None


def _loadtxt_parses(lines: list[str], first: int) -> bool:
    """Whether np.loadtxt, as ``_parse_values_loadtxt`` calls it, reads the tab-separated
    fields of ``lines`` from field ``first`` on as float64. Python's ``float`` (and
    ``np.float64``) accept more (``1_0``), so they cannot find the value it rejected."""
    try:
        np.loadtxt(
            lines,
            delimiter="\t",
            usecols=range(first, lines[0].count("\t") + 1),
            dtype=np.float64,
            comments=None,
            ndmin=2,
        )
    except ValueError:
        return False
    return True


def _first_failing(count: int, parses) -> int:
    """The least ``k`` in ``[0, count)`` with ``parses(k, k + 1)`` false, given some is:
    bisection on the items ``[lo, mid)`` still in doubt, each read at most about twice."""
    lo, hi = 0, count  # the first item that fails is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if parses(lo, mid) else (lo, mid)
    return lo


def _bad_value(gct, columns, lines, first_line) -> InputError:
    """Name the line and sample of the first value np.loadtxt could not parse, by its own
    parser (error path only: halves of the block's lines, then of the line's values)."""
    text = [line.rstrip("\r\n") for line in lines]
    if _loadtxt_parses(text, 2):
        return InputError(gct, first_line, "a value in this block of lines could not be parsed")
    offset = _first_failing(len(text), lambda a, b: _loadtxt_parses(text[a:b], 2))
    fields = text[offset].split("\t")
    values = fields[2:]
    # after a field loadtxt does not read: "" alone would be a blank line, not a value
    k = _first_failing(
        len(values), lambda a, b: _loadtxt_parses(["\t".join(["-", *values[a:b]])], 1)
    )
    return InputError(
        gct,
        first_line + offset,
        f"transcript {fields[0]}, sample {columns[2 + k]}: TPM {values[k][:20]!r} is not a number",
    )


def build_targets(
    gct: PathLike,
    samples: PathLike,
    transcripts: PathLike | None,
    tissue_set: str,
    tissues: list[str] | None,
    min_samples: int,
    out_parquet: PathLike,
    out_stats: PathLike,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    overlap_warn_below: float | None = None,
    overlap_fail_below: float | None = None,
    cell_lines: str = "keep",
) -> None:
    """The `targets` rule: aggregate, count overlap with the annotation, write both outputs.

    ``cell_lines`` (``gtex.cell_lines``): ``drop`` leaves the cell-line samples out, and
    stats.tsv gets a ``# cell_line_samples_dropped`` line (their number) and a
    ``# cell_lines_dropped`` line (``SMTSD:count``, comma-separated).

    ``overlap_warn_below`` / ``overlap_fail_below`` (``gtex.overlap_*``; None: no check): the
    share of annotation transcripts that are rows of the matrix below which a warning is
    logged / the rule fails (``check_overlap``). Nothing is written unless the whole matrix
    was read and checked.
    """
    targets, stats = aggregate_tpm(
        gct, samples, tissue_set, tissues, min_samples, block_rows, cell_lines=cell_lines
    )
    tissues = list(stats["tissue"])
    comments = None
    if "cell_line_samples" in stats.attrs:
        dropped = stats.attrs["cell_line_samples"]
        comments = {
            "cell_line_samples_dropped": str(sum(dropped.values())),
            "cell_lines_dropped": ",".join(f"{name}:{n}" for name, n in dropped.items()),
        }
    overlap = examples = None
    if transcripts is not None:
        annotation_ids = pq.read_table(transcripts, columns=["transcript_id"]).column(0)
        annotation_ids = annotation_ids.to_pylist()
        gtex_ids = targets["transcript_id"].tolist()
        overlap = overlap_counts(gtex_ids, annotation_ids)
        examples = overlap_examples(gtex_ids, annotation_ids)
        log.info("transcripts: %s", overlap)
        check_overlap(
            gtex_ids, annotation_ids, gct, transcripts, overlap_warn_below, overlap_fail_below
        )
    write_targets(targets, stats, tissues, out_parquet, out_stats, overlap, examples, comments)
