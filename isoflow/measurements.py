"""The construct measurement table: constructs and what a lab measured on them.

A TSV read by :func:`isoflow.constructs.read_constructs` (``id``, the parts, other columns
kept as ``Construct.extra``), or with a ``genbank`` column instead of the parts: each row's
construct is the one record of that GenBank file (a path relative to the table; the header
checked as a construct TSV's: no column twice, no empty name, ``id`` and ``genbank`` in any
case, no part column). Of the other columns, the measured ones (``columns``; by default
every column but ``group`` and ``genbank``, logged by name, and a warning when there are
several: a count or p-value column would be fitted and averaged into the headline) must
hold a finite number in every row; ``group`` (optional, read in any case like ``id``:
``Group``, ``GROUP``; e.g. construct family) keeps related constructs on one side of every
cross-validation split: without it, each construct is its own group (``isoflow finetune``
then merges the groups of identical constructs and warns of near-identical ones:
``isoflow.finetune.fold_groups``). docs/constructs.md ("Measurement table") is the user's
page.

Every broken assumption is an :class:`InputError` naming the file, the line and the problem
(tests/unit/test_measurements.py breaks each one). Torch-free.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isoflow.constructs import (
    PARTS,
    TSV_COLUMNS,
    Construct,
    header_columns,
    read_constructs,
    table_id,
    table_rows,
)
from isoflow.errors import InputError, close_matches, non_utf8_error

log = logging.getLogger(__name__)

GROUP_COLUMN = "group"
GENBANK_COLUMN = "genbank"
NOT_MEASURED = (GROUP_COLUMN, GENBANK_COLUMN)
# read in any case, as the construct TSV reader reads id and the parts
RESERVED = (*TSV_COLUMNS, GENBANK_COLUMN)


@dataclass(frozen=True)
class MeasurementTable:
    """``constructs`` in table order, ``values`` ``(n, len(columns))`` float64 (finite),
    ``columns`` (the measured columns), ``groups`` (one label per construct), ``path``,
    ``group_column`` (the column the groups were read from; None: none, each construct's id
    is its group)."""

    constructs: list[Construct]
    values: np.ndarray
    columns: list[str]
    groups: np.ndarray
    path: Path
    group_column: str | None = None

    @property
    def grouping(self) -> str:
        """Where the groups come from, in words (``isoflow.finetune.fold_groups`` records
        it)."""
        return f"column {self.group_column}" if self.group_column else "construct id"

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.constructs]

    @property
    def n_groups(self) -> int:
        return len(set(self.groups.tolist()))


def _line(construct: Construct) -> int | None:
    record = construct.source.rpartition(":")[2]
    return int(record) if record.isdigit() else None


def _genbank_header(path: Path, line: int, header: list[str]) -> dict[str, int]:
    """Column -> position in a ``genbank`` table's header, checked as a construct TSV's
    (``constructs.header_columns``: no empty name, no name twice, ``id``, the parts and
    ``genbank`` read in any case); and no part column (the parts come from each row's
    GenBank record)."""
    index = header_columns(path, line, header, RESERVED)
    if "id" not in index:
        raise InputError(path, line, "header lacks column id")
    parts = [p for p in PARTS if p in index]
    if parts:
        raise InputError(
            path,
            line,
            f"column(s) {', '.join(parts)} beside {GENBANK_COLUMN}: each construct's parts "
            f"come from its GenBank record; drop them (or the {GENBANK_COLUMN} column)",
        )
    return index


def _header(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise non_utf8_error(path) from None
    except OSError as err:
        raise InputError(path, None, f"cannot read the measurement table: {err}") from None
    for _, row in table_rows(path, text)[:1]:
        return [cell.strip() for cell in row]
    raise InputError(path, None, "empty file; expected a tab-separated header and one row each")


def has_genbank_column(path: str | os.PathLike) -> bool:
    """Whether the table's header, read as :func:`read_measurements` reads it, has a
    ``genbank`` column (any case); a header it cannot read: True, so that reader names what
    is wrong."""
    try:
        header = _header(Path(path))
    except InputError:
        return True
    return GENBANK_COLUMN in [cell.lower() for cell in header]


def _genbank_rows(path: Path, header: list[str], **read_kwargs) -> list[Construct]:
    """Constructs of a table whose rows name a GenBank file each (``genbank`` column)."""
    text = path.read_text(encoding="utf-8-sig")
    rows = table_rows(path, text)
    index = _genbank_header(path, rows[0][0], header)
    out = []
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise InputError(
                path, number, f"{len(row)} fields, the header has {len(header)} (tab-separated)"
            )
        cid = table_id(path, number, row[index["id"]])
        file = row[index[GENBANK_COLUMN]].strip()
        if not file:
            raise InputError(path, number, f"construct {cid!r}: empty {GENBANK_COLUMN} path")
        where = (path.parent / file).resolve()
        if not where.is_file():
            raise InputError(path, number, f"construct {cid!r}: GenBank file {file} not found")
        found = read_constructs(where, **read_kwargs)
        if len(found) != 1:
            raise InputError(
                path, number, f"construct {cid!r}: {file} holds {len(found)} records, not one"
            )
        extra = {h: row[i].strip() for h, i in index.items() if h not in ("id", GENBANK_COLUMN)}
        out.append(
            Construct(
                cid, found[0].parts, f"{path}:{number}", extra, found[0].itrs, found[0].polya_site
            )
        )
    seen: dict[str, str] = {}
    for c in out:
        if c.id in seen:
            raise InputError(
                path, _line(c), f"construct id {c.id!r} is already used by {seen[c.id]}"
            )
        seen[c.id] = c.source
    if not out:
        raise InputError(path, None, "a header but no construct rows")
    return out


def read_measurements(
    path: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    group_column: str = GROUP_COLUMN,
    folds: int | None = None,
    **read_kwargs,
) -> MeasurementTable:
    """The measurement table at ``path``, checked (module docstring). ``columns``: the
    measured columns (default: every non-part column but ``group_column`` and ``genbank``);
    ``folds``: the cross-validation folds it will be split into (fewer groups is an error);
    ``read_kwargs`` go to :func:`isoflow.constructs.read_constructs`."""
    path = Path(path)
    header = _header(path)
    if GENBANK_COLUMN in (name.lower() for name in header):
        constructs = _genbank_rows(path, header, **read_kwargs)
    else:
        constructs = read_constructs(path, **read_kwargs)
    extra = list(constructs[0].extra)
    # the group column read in any case, as id and the parts are: a `Group` column read as
    # a measurement was fitted and averaged into the headline, and the folds went ungrouped
    named = [c for c in extra if c.lower() == group_column.lower()]
    if len(named) > 1:
        raise InputError(
            path,
            1,
            f"columns {', '.join(named)} are all the group column ({group_column}, read in any "
            "case): keep one",
        )
    group_column = named[0] if named else group_column
    chosen = columns is None
    if columns is None:
        not_measured = {name.lower() for name in (*NOT_MEASURED, group_column)}
        columns = [c for c in extra if c.lower() not in not_measured]
        if not columns:
            raise InputError(
                path,
                1,
                "no measured column: add one or more numeric columns (e.g. expression per "
                "tissue) beside id and the parts",
            )
    columns = list(columns)
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        raise InputError(
            path, 1, f"measured column(s) {', '.join(twice)} named twice: name each column once"
        )
    for name in columns:
        if name not in extra:
            raise InputError(
                path,
                1,
                f"measured column {name!r} is not in the header (other columns: "
                f"{', '.join(extra) or 'none'})",
            )
        if name == group_column:
            raise InputError(path, 1, f"{name!r} is the group column, not a measurement")
    if chosen and len(columns) > 1:
        log.warning(
            "%s: %d measured columns, taken by default: %s; each is fitted and scored, and "
            "metrics.mean averages them all: if any is not a measurement (counts, p-values, "
            "a batch or replicate number), name the measured ones with --columns "
            "(finetune.columns)",
            path,
            len(columns),
            ", ".join(columns),
        )
    log.info(
        "%s: measured column(s) %s; groups from %s",
        path,
        ", ".join(columns),
        f"column {group_column}" if group_column in extra else "construct id (no group column)",
    )
    values = np.zeros((len(constructs), len(columns)), dtype=np.float64)
    for i, c in enumerate(constructs):
        for j, name in enumerate(columns):
            try:
                values[i, j] = _value(path, c, name)
            except InputError as err:
                if not chosen or "is not a number" not in err.message:
                    raise
                hint = _not_measured_hint(name, constructs, columns, group_column in extra)
                raise InputError(path, err.record, err.message + hint) from None
    if group_column in extra:
        groups = []
        for c in constructs:
            label = c.extra[group_column]
            if not label:
                raise InputError(
                    path,
                    _line(c),
                    f"construct {c.id!r}: {group_column} is empty; give every row a group "
                    "(or drop the column: each construct is then its own group)",
                )
            groups.append(label)
        group_array = np.asarray(groups, dtype=object)
    else:
        group_array = np.asarray([c.id for c in constructs], dtype=object)
    table = MeasurementTable(
        constructs,
        values,
        columns,
        group_array,
        path,
        group_column if group_column in extra else None,
    )
    if folds is not None and table.n_groups < folds:
        raise InputError(
            path,
            None,
            f"{table.n_groups} group(s) for {folds} cross-validation folds: each fold needs a "
            "group of its own; lower finetune.folds or add groups",
        )
    for j, name in enumerate(columns):
        check_varies(path, name, values[:, j], table.groups if folds is not None else None)
    for warning in scale_warnings(columns, values):
        log.warning("%s: %s", path, warning)
    return table


# A measurement: ASCII decimal or scientific notation, sign optional. Python's float() also
# takes other scripts' digits (`１２` -> 12.0) and underscores (`1_000` -> 1000.0): a lab's
# typo read as a number. Spelled out rather than pinned to float().
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# float()'s spellings of NaN and infinity: read, then refused as not finite
NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
# the largest magnitude float32 holds: fine-tuning trains in float32, where a larger value
# (1e300) is inf and failed as "no epoch gave a finite inner-validation MSE; lower lr"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _value(path: Path, construct: Construct, name: str) -> float:
    """Construct ``construct``'s value in column ``name``, checked (:data:`NUMBER`, finite,
    within float32)."""
    text = construct.extra[name]
    where = f"construct {construct.id!r}: {name}"
    if not text:
        raise InputError(path, _line(construct), f"{where} is empty")
    if NUMBER.fullmatch(text.strip()):
        value = float(text)
    elif NOT_FINITE.fullmatch(text.strip()):
        raise InputError(path, _line(construct), f"{where} {text!r} is not finite")
    else:
        raise InputError(
            path,
            _line(construct),
            f"{where} {text!r} is not a number (ASCII digits, '.', an optional sign and "
            "exponent: 12, -0.5, 1.5e3)",
        )
    if not math.isfinite(value):  # 1e999
        raise InputError(path, _line(construct), f"{where} {text!r} is not finite")
    if abs(value) > FLOAT32_MAX:
        raise InputError(
            path,
            _line(construct),
            f"{where} {text!r} is beyond float32 (±{FLOAT32_MAX:.3g}), in which fine-tuning "
            "trains; correct the value (a linear measurement: log-transform the column)",
        )
    return value


def _not_measured_hint(
    name: str, constructs: list[Construct], columns: list[str], has_group: bool
) -> str:
    """For a default measured column holding a non-number: when its name is a likely typo
    of a column that is not measured (``grup``), or no row of it holds a number and its
    values repeat (``units`` = ``log2``: metadata), say so and give the ``--columns`` that
    names the numeric ones."""
    numeric = [
        column
        for column in columns
        if all(NUMBER.fullmatch(c.extra[column].strip()) for c in constructs)
    ]
    fix = f"--columns {' '.join(numeric)}" if numeric else "--columns"
    known = [GENBANK_COLUMN] + ([] if has_group else [GROUP_COLUMN])
    typo = close_matches(name, known, cutoff=0.75)
    if typo:
        return (
            f"; column {name} looks like a misspelt {typo[0]!r} (which is not measured): "
            f"rename it, or name the measured columns with {fix}"
        )
    cells = [c.extra[name].strip() for c in constructs]
    # labels repeat (a unit, a batch name); distinct decorated numbers (49.5%) do not
    if not any(NUMBER.fullmatch(cell) for cell in cells) and len(set(cells)) <= len(cells) / 2:
        return (
            f"; column {name} holds no number in any row, so it looks like metadata, not a "
            f"measurement: name the measured columns with {fix}"
        )
    return ""


# Groups holding a value other than a column's most common one, fewest: a test fold ranks
# (Spearman, Pearson, R²) only what varies in it, so with fewer the values vary in at most
# one fold and the "cross-validated" mean is one fold's number, or none.
MIN_VARYING_GROUPS = 2


def check_varies(
    path: Path, name: str, column: np.ndarray, groups: np.ndarray | None = None
) -> None:
    """Refuse column ``name`` when every construct has the same value; with the ``groups``
    it will be cross-validated by, also when fewer than :data:`MIN_VARYING_GROUPS` groups
    hold a value other than its most common one (47 constructs at 1.0, one at 1.0000001)."""
    found, counts = np.unique(column, return_counts=True)
    if len(found) == 1:
        raise InputError(path, None, f"{name}: every construct has the same value")
    if groups is None:
        return
    common = found[np.argmax(counts)]
    other = column != common
    varying = sorted(set(np.asarray(groups, dtype=object)[other].tolist()), key=str)
    if len(varying) < MIN_VARYING_GROUPS:
        raise InputError(
            path,
            None,
            f"{name}: {int(counts.max())} of {len(column)} constructs hold {common:g} and the "
            f"other {int(other.sum())} lie in {len(varying)} group ({varying[0]}): a value "
            f"other than the most common must lie in at least {MIN_VARYING_GROUPS} groups "
            "for cross-validation to rank anything in more than one fold; measure more "
            "constructs that vary, or leave the column out (--columns)",
        )


# Scale checks: fine-tuning fits the MSE of the values as given, and a linear measurement
# (TPM, counts, fluorescence) spanning decades is fitted on its few largest values.
MAX_DECADES = 3  # an all-positive column with max/min above 10^3 ...
# ... whose largest value is above LINEAR_ABOVE: a log of expression or activity is not (2^100),
# while a log2(x + 1) column with a weak construct near 0 spans 3 decades all the same
# (0.01 to 10.1 warned, in 28 % of 200 such draws of 48 lognormal TPMs)
LINEAR_ABOVE = 100
# strongly right-skewed: skewness above MAX_SKEW and the largest value more than MAX_TAIL
# interquartile ranges above the median. Skewness alone warned of log-scale data: of the
# Kircher et al. 2019 promoters' log2 effects, HNF4A's has skewness 3.9 with its top 15.1
# IQRs out (the most of the ten); mixed_scale (half the rows linear) 90-250 IQRs.
MAX_SKEW = 2.0
MAX_TAIL = 50
COUNT_NAME = re.compile(r"tpm|fpkm|rpkm|cpm|count|reads", re.IGNORECASE)


def scale_warnings(columns: Sequence[str], values: np.ndarray) -> list[str]:
    """Warnings (not errors: a lab may have its reasons) for each column that looks linear,
    not log-scale: all positive, spanning more than :data:`MAX_DECADES` decades and reaching
    above :data:`LINEAR_ABOVE`, or with a
    skewness above :data:`MAX_SKEW`; and for a column named like a count (TPM, counts,
    reads) holding negative values."""
    from scipy.stats import skew

    out = []
    fix = (
        "fine-tuning fits the MSE of the values as given, so the largest dominate; if they "
        "are linear, log-transform the column (e.g. log2(x + 1))"
    )
    for j, name in enumerate(columns):
        column = np.asarray(values[:, j], dtype=np.float64)
        low, high = float(column.min()), float(column.max())
        skewness = float(skew(column)) if np.ptp(column) > 0 else 0.0
        q1, median, q3 = np.percentile(column, [25, 50, 75])
        tail = (high - median) / (q3 - q1) if q3 > q1 else math.inf
        if low > 0 and high / low > 10**MAX_DECADES and high > LINEAR_ABOVE:
            out.append(
                f"{name} is all positive and spans {math.log10(high / low):.2f} decades "
                f"({low:.3g} to {high:.3g}): {fix}"
            )
        elif skewness > MAX_SKEW and tail > MAX_TAIL:
            out.append(
                f"{name} is strongly right-skewed (skewness {skewness:.1f}; its largest, "
                f"{high:.3g}, {tail:.0f} interquartile ranges above the median): {fix}"
            )
        if COUNT_NAME.search(name) and "log" not in name.lower() and low < 0:
            out.append(
                f"{name} is named like a count or TPM but holds {int((column < 0).sum())} "
                f"negative value(s) (lowest {low:.3g}): if it is log-scale, name it so "
                "(e.g. log2_TPM); if not, check the values"
            )
    return out
