"""The construct measurement table: each assumption of isoflow.measurements broken once."""

from __future__ import annotations

import numpy as np
import pytest

from isoflow.demo import MEASURED_COLUMNS, write_demo_measurements
from isoflow.errors import InputError
from isoflow.measurements import read_measurements

PROMOTER = "ACGT" * 10
UTR5 = "GCCACC"
CDS = "ATGAAATAA"
UTR3 = "TTTT"


def write(tmp_path, rows, header=("id", "group", "promoter", "utr5", "cds", "utr3", "a", "b")):
    lines = ["\t".join(header)]
    for row in rows:
        lines.append("\t".join(row))
    path = tmp_path / "m.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def row(cid, group="g1", a="1.5", b="2"):
    return [cid, group, PROMOTER, UTR5, CDS, UTR3, a, b]


def good_rows():
    values = [("c1", "g1", "1", "2"), ("c2", "g1", "2", "1"), ("c3", "g2", "3", "0")]
    return [row(*v) for v in [*values, ("c4", "g3", "0", "5")]]


def test_reads_values_groups_and_columns(tmp_path):
    table = read_measurements(write(tmp_path, good_rows()), folds=3)
    assert table.columns == ["a", "b"]
    assert table.ids == ["c1", "c2", "c3", "c4"]
    np.testing.assert_array_equal(table.values[:, 0], [1, 2, 3, 0])
    assert list(table.groups) == ["g1", "g1", "g2", "g3"]
    assert table.n_groups == 3
    only_a = read_measurements(write(tmp_path, good_rows()), columns=["a"])
    assert only_a.columns == ["a"] and only_a.values.shape == (4, 1)


def test_without_a_group_column_each_construct_is_its_own_group(tmp_path):
    header = ("id", "promoter", "utr5", "cds", "utr3", "a")
    rows = [[f"c{i}", PROMOTER, UTR5, CDS, UTR3, str(i)] for i in range(3)]
    table = read_measurements(write(tmp_path, rows, header))
    assert list(table.groups) == ["c0", "c1", "c2"]


@pytest.mark.parametrize("name", ["Group", "GROUP"])
def test_the_group_column_is_read_in_any_case(tmp_path, name):
    # a numeric `Group` (a batch or element number) was read as a measured column: fitted,
    # averaged into metrics.mean, and every construct its own group
    header = ("id", name, "promoter", "utr5", "cds", "utr3", "a")
    rows = [[f"c{i}", str(1 + i % 2), PROMOTER, UTR5, CDS, UTR3, str(i)] for i in range(4)]
    table = read_measurements(write(tmp_path, rows, header), folds=2)
    assert table.columns == ["a"]
    assert list(table.groups) == ["1", "2", "1", "2"] and table.n_groups == 2
    assert table.group_column == name and table.grouping == f"column {name}"
    with pytest.raises(InputError, match=f"'{name}' is the group column"):
        read_measurements(write(tmp_path, rows, header), columns=[name])


def test_two_group_columns_in_different_cases_is_an_error(tmp_path):
    header = ("id", "group", "promoter", "utr5", "cds", "utr3", "Group", "a")
    rows = [[f"c{i}", "g", PROMOTER, UTR5, CDS, UTR3, "1", str(i)] for i in range(3)]
    path = write(tmp_path, rows, header)
    with pytest.raises(InputError, match=rf"^{path}:1: columns group, Group are all the group"):
        read_measurements(path)


def test_several_default_measured_columns_are_a_warning_naming_them(tmp_path, caplog):
    path = write(tmp_path, good_rows())
    with caplog.at_level("INFO", logger="isoflow.measurements"):
        read_measurements(path)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "2 measured columns, taken by default: a, b" in warned[0]
    assert "--columns" in warned[0]
    assert any(
        "measured column(s) a, b; groups from column group" in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level("INFO", logger="isoflow.measurements"):
        read_measurements(path, columns=["a", "b"])  # named: no warning
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row("c2", a=""), "c2': a is empty"),
        (row("c2", a="high"), "a 'high' is not a number"),
        (row("c2", b="nan"), "b 'nan' is not finite"),
        (row("c2", b="inf"), "b 'inf' is not finite"),
        (row("c2", group=""), "group is empty"),
        (row("c1"), "already used"),
    ],
)
def test_a_bad_row_is_one_line_naming_file_and_line(tmp_path, bad, message):
    rows = good_rows()
    rows[1] = bad
    path = write(tmp_path, rows)
    with pytest.raises(InputError, match=message) as err:
        read_measurements(path)
    assert str(err.value).startswith(f"{path}:3:")
    assert "\n" not in str(err.value)


def test_fewer_groups_than_folds(tmp_path):
    with pytest.raises(InputError, match="3 group.s. for 5 cross-validation folds"):
        read_measurements(write(tmp_path, good_rows()), folds=5)


def test_no_measured_column_or_an_unknown_one(tmp_path):
    header = ("id", "group", "promoter", "utr5", "cds", "utr3")
    rows = [r[:6] for r in good_rows()]
    with pytest.raises(InputError, match="no measured column"):
        read_measurements(write(tmp_path, rows, header))
    with pytest.raises(InputError, match="'c' is not in the header"):
        read_measurements(write(tmp_path, good_rows()), columns=["a", "c"])
    with pytest.raises(InputError, match="is the group column"):
        read_measurements(write(tmp_path, good_rows()), columns=["group"])
    # a column named twice would be fitted as two outputs of one measurement
    path = write(tmp_path, good_rows())
    with pytest.raises(InputError, match=rf"^{path}:1: measured column\(s\) a named twice: "):
        read_measurements(path, columns=["a", "b", "a"])


def test_a_constant_column_is_an_error(tmp_path):
    rows = [row(f"c{i}", f"g{i}", a=str(i), b="2") for i in range(3)]
    with pytest.raises(InputError, match="b: every construct has the same value"):
        read_measurements(write(tmp_path, rows))


def test_construct_errors_come_from_the_construct_reader(tmp_path):
    rows = good_rows()
    rows[2][4] = "ATGTAAAAATAA"  # in-frame stop
    with pytest.raises(InputError, match="in-frame stop"):
        read_measurements(write(tmp_path, rows))


def test_genbank_column_reads_one_record_per_row(tmp_path):
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    seq = PROMOTER + UTR5 + CDS + UTR3
    record = SeqRecord(Seq(seq), id="x", name="x", annotations={"molecule_type": "DNA"})
    at = 0
    for kind, part in (("promoter", PROMOTER), ("5'UTR", UTR5), ("CDS", CDS), ("3'UTR", UTR3)):
        record.features.append(SeqFeature(FeatureLocation(at, at + len(part), 1), type=kind))
        at += len(part)
    # a polyA signal annotated inside the 3'UTR: the row's construct keeps where it lies
    record.features.append(SeqFeature(FeatureLocation(at - 3, at, 1), type="polyA_signal"))
    SeqIO.write([record], tmp_path / "x.gb", "genbank")
    header = ("id", "genbank", "group", "a")
    rows = [["c1", "x.gb", "g1", "1"], ["c2", "x.gb", "g2", "2"], ["c3", "missing.gb", "g2", "3"]]
    path = write(tmp_path, rows, header)
    with pytest.raises(InputError, match="missing.gb not found") as err:
        read_measurements(path)
    assert str(err.value).startswith(f"{path}:4:")
    table = read_measurements(write(tmp_path, rows[:2], header))
    assert table.constructs[0].cassette == seq and table.columns == ["a"]
    assert table.constructs[0].polya_site == (len(UTR3) - 3, len(UTR3))


def test_a_stray_quote_names_its_line_and_quoted_cells_read_as_their_text(tmp_path):
    """A stray ``"`` was csv's start of a quoted field that swallowed the rest of the table
    (a bare ``_csv.Error`` traceback naming no file, also from has_genbank_column's header
    read); whole quoted cells (R's write.table) read as their text."""
    from isoflow.measurements import has_genbank_column

    rows = good_rows()
    rows[1] = row('"c2')
    path = write(tmp_path, rows)
    with pytest.raises(InputError, match="column 1: '\"c2' starts with a quote") as err:
        read_measurements(path)
    assert str(err.value).startswith(f"{path}:3:")
    rows = good_rows()
    rows[2] = row('"c3"', a='"3"')
    assert read_measurements(write(tmp_path, rows)).values[2, 0] == 3
    _one_record_genbank(tmp_path)
    header = ("id", "genbank", "group", "a")
    rows = [["c1", "x.gb", "g1", "1"], ['"c2', "x.gb", "g2", "2"], ["c3", "x.gb", "g3", "3"]]
    path = write(tmp_path, rows, header)
    with pytest.raises(InputError, match="column 1: '\"c2' starts with a quote") as err:
        read_measurements(path)
    assert str(err.value).startswith(f"{path}:3:")
    path.write_text('"id\tgenbank\ta\nc1\tx.gb\t1\n')  # the header's first cell
    assert has_genbank_column(path)  # so that read_measurements names what is wrong
    with pytest.raises(InputError, match=f"^{path}:1: column 1: "):
        read_measurements(path)
    rows[1][0], rows[2][1] = "c2", '"x.gb"'
    assert read_measurements(write(tmp_path, rows, header)).ids == ["c1", "c2", "c3"]


def _one_record_genbank(tmp_path):
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    record = SeqRecord(
        Seq(PROMOTER + UTR5 + CDS + UTR3), id="x", name="x", annotations={"molecule_type": "DNA"}
    )
    at = 0
    for kind, part in (("promoter", PROMOTER), ("5'UTR", UTR5), ("CDS", CDS), ("3'UTR", UTR3)):
        record.features.append(SeqFeature(FeatureLocation(at, at + len(part), 1), type=kind))
        at += len(part)
    SeqIO.write([record], tmp_path / "x.gb", "genbank")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (("id", "genbank", "a", "a"), "column 'a' appears twice in the header"),
        (("id", "genbank", "a", "ID"), "column 'ID' appears twice in the header"),
        (("id", "genbank", "GenBank", "a"), "column 'GenBank' appears twice in the header"),
        (("id", "genbank", "", "a"), "column 3 of the header is empty"),
        (("id", "genbank", "Promoter", "a"), "column(s) promoter beside genbank"),
        (("name", "genbank", "a", "b"), "header lacks column id"),
    ],
)
def test_a_genbank_tables_header_is_checked_as_a_construct_tsvs(tmp_path, header, message):
    """The GenBank-row path checks its header as the plain TSV path does: a column named
    twice would keep only one of them, silently."""
    _one_record_genbank(tmp_path)
    rows = [["c1", "x.gb", "1", "5"], ["c2", "x.gb", "2", "-3"]]
    path = write(tmp_path, rows, header)
    with pytest.raises(InputError) as err:
        read_measurements(path)
    assert str(err.value).startswith(f"{path}:1: ")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_genbank_tables_id_and_genbank_columns_read_in_any_case(tmp_path):
    _one_record_genbank(tmp_path)
    rows = [["c1", "x.gb", "1", "g1"], ["c2", "x.gb", "2", "g2"]]
    table = read_measurements(write(tmp_path, rows, ("ID", "GenBank", "a", "group")))
    assert table.ids == ["c1", "c2"] and table.columns == ["a"]
    assert table.constructs[0].cassette == PROMOTER + UTR5 + CDS + UTR3


def test_demo_table_has_its_planted_signal(tmp_path):
    table = read_measurements(write_demo_measurements(tmp_path / "d.tsv"), folds=5)
    assert table.columns == list(MEASURED_COLUMNS)
    assert table.n_groups == 8
    gc = np.array([sum(map(c.parts["promoter"].count, "GC")) / 400 for c in table.constructs])
    assert np.corrcoef(gc, table.values[:, 0])[0, 1] > 0.5
    assert np.corrcoef(gc, table.values[:, 1])[0, 1] < -0.5


def test_a_column_varying_in_one_group_only_is_an_error(tmp_path):
    # 47 x 1.0 and one 1.0000001 trained with rc 0, its Spearman from 1 of 4 folds and the
    # shuffled control equal to fine-tuning: a fold ranks only what varies in it
    rows = [row(f"c{i}", f"g{i // 2}", a="1.0", b=str(i)) for i in range(8)]
    rows[3][6] = "1.0000001"
    path = write(tmp_path, rows)
    with pytest.raises(InputError) as err:
        read_measurements(path, folds=4)
    assert str(err.value).startswith(f"{path}: a: 7 of 8 constructs hold 1 and the other 1 ")
    assert "lie in 1 group (g1)" in str(err.value) and "--columns" in str(err.value)
    rows[4][6] = "2"  # a second group varies: two test folds can rank it
    read_measurements(write(tmp_path, rows), folds=4)


@pytest.mark.parametrize("text", ["１２", "1_000", "٣", "0x10", "1e", "--1", "1.2.3"])
def test_only_ascii_decimal_notation_is_a_number(tmp_path, text):
    # float() reads full-width and other scripts' digits and underscores: `１２` -> 12.0
    rows = good_rows()
    rows[1] = row("c2", a=text)
    path = write(tmp_path, rows)
    with pytest.raises(InputError) as err:
        read_measurements(path)
    assert str(err.value) == (
        f"{path}:3: construct 'c2': a {text!r} is not a number (ASCII digits, '.', an "
        "optional sign and exponent: 12, -0.5, 1.5e3)"
    )


@pytest.mark.parametrize(("text", "value"), [("+1.5", 1.5), ("-.5", -0.5), ("2.", 2), ("3E2", 300)])
def test_ascii_numbers_in_any_notation_are_read(tmp_path, text, value):
    rows = good_rows()
    rows[1] = row("c2", a=text)
    assert read_measurements(write(tmp_path, rows)).values[1, 0] == value


@pytest.mark.parametrize("text", ["1e300", "-4e38", "1e999"])
def test_a_value_beyond_float32_is_an_error_at_read_time(tmp_path, text):
    # 1e300 failed after embedding as "no epoch gave a finite inner-validation MSE; lower lr"
    rows = good_rows()
    rows[1] = row("c2", a=text)
    path = write(tmp_path, rows)
    with pytest.raises(
        InputError, match=rf"^{path}:3: construct 'c2': a '{text}' is (beyond float32|not finite)"
    ):
        read_measurements(path)


def scale_rows(values, name="a"):
    rows = [row(f"c{i}", f"g{i}", a=f"{v:g}") for i, v in enumerate(values)]
    return rows, ("id", "group", "promoter", "utr5", "cds", "utr3", name, "b")


@pytest.mark.parametrize(
    ("values", "name", "warned"),
    [
        (2.0 ** (10 * np.linspace(-0.6, 1.1, 20)), "a", "spans 5.12 decades"),
        (np.r_[np.linspace(-0.5, 1, 19), 1500.0], "a", "right-skewed"),
        (np.linspace(-50, 100, 20), "liver_TPM", "named like a count or TPM but holds"),
    ],
)
def test_a_column_that_looks_linear_is_a_warning(tmp_path, caplog, values, name, warned):
    rows, header = scale_rows(values, name)
    path = write(tmp_path, rows, header)
    with caplog.at_level("WARNING", logger="isoflow.measurements"):
        read_measurements(path, columns=[name])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith(f"{path}: {name} ")
    assert warned in messages[0]
    if "count" not in warned:
        assert "log-transform the column (e.g. log2(x + 1))" in messages[0]


def test_log_scale_tables_are_not_warned(tmp_path, caplog):
    # the demo's table, and a log2 TPM column with negative values
    path = write_demo_measurements(tmp_path / "demo.tsv")
    rows, header = scale_rows(np.linspace(-5, 10, 20), "liver_log2TPM")
    with caplog.at_level("WARNING", logger="isoflow.measurements"):
        read_measurements(path, columns=list(MEASURED_COLUMNS))
        read_measurements(write(tmp_path, rows, header), columns=["liver_log2TPM"])
    assert not caplog.records


def test_a_log2_tpm_column_with_a_value_near_0_is_not_warned(tmp_path, caplog):
    # log2(TPM + 1) of 48 lognormal TPMs, a weak construct at TPM 0.007: 0.01 to 10.1 spans
    # 3 decades, and the log-transform advice went to values already log-transformed
    tpm = np.random.default_rng(7).lognormal(1.0, 1.5, 48)
    tpm[0] = 0.007
    tpm[1] = 1100.0
    rows, header = scale_rows(np.log2(tpm + 1), "cell_A")
    assert np.log2(tpm + 1).max() / np.log2(tpm + 1).min() > 1000
    with caplog.at_level("WARNING", logger="isoflow.measurements"):
        read_measurements(write(tmp_path, rows, header), columns=["cell_A"])
    assert not caplog.records


@pytest.mark.needs("shared")
def test_the_kircher_mpra_coefficients_are_not_warned(shared_real):
    # log2 effects, as bench/bench_kircher_finetune.py fine-tunes on them: each promoter
    # element's SNVs, and all ten together
    from isoflow.measurements import scale_warnings
    from isoflow.variants import (
        KIRCHER_PROMOTERS,
        element_reference,
        element_substitutions,
        read_kircher,
    )

    rows, _ = read_kircher(shared_real / "kircher_mpra" / "elements.tsv.gz")
    every = []
    for data_name, strand, _tx in KIRCHER_PROMOTERS.values():
        mine = rows[rows["Element"] == data_name]
        element = element_reference(mine, data_name)
        measured = np.asarray(element_substitutions(mine, element, strand)[1], dtype=float)
        assert scale_warnings([data_name], measured[:, None]) == []
        every.append(measured)
    assert scale_warnings(["Coefficient"], np.concatenate(every)[:, None]) == []


@pytest.mark.parametrize(
    ("name", "cells", "hint"),
    [
        ("grup", ["fam0", "fam1"], "column grup looks like a misspelt 'group' (which is not "),
        ("units", ["log2", "log2"], "column units holds no number in any row, so it looks like "),
        ("pct", ["49.5%", "51%"], None),  # a decorated measurement: no metadata guess
    ],
)
def test_a_non_numeric_metadata_column_taken_by_default_says_so(tmp_path, name, cells, hint):
    # `units 'log2' is not a number` and `grup 'fam0' is not a number` said nothing of why
    header = ("id", "promoter", "utr5", "cds", "utr3", "a", name)
    rows = [
        [f"c{i}", PROMOTER, UTR5, CDS, UTR3, str(i), cells[i % 2 if name != "pct" else i]]
        for i in range(4 if name != "pct" else 2)
    ]
    path = write(tmp_path, rows, header)
    with pytest.raises(InputError) as err:
        read_measurements(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: construct 'c0': {name} {cells[0]!r} is not a number")
    if hint is None:
        assert "--columns" not in message
    else:
        assert hint in message and message.endswith("the measured columns with --columns a")
    with pytest.raises(InputError) as err:  # columns named: nothing to suggest
        read_measurements(path, columns=["a", name])
    assert "--columns" not in str(err.value)
