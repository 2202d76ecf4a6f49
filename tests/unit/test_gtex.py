"""isoflow.gtex on GCTs in the exact GTEx v8 layout, with sample attributes in GTEx v8's layout:
a generated stand-in for the real attributes excerpt (its 63 columns, 175 rows, one tissue and
GTEx-shaped sample IDs; checked against the excerpt where ../shared is present), so the guards
are tested on any machine, and the excerpt itself in the tests marked needs("shared")."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.paths import SHARED_REAL as REAL
from isoflow.demo import SAMPLE_ATTRIBUTE_COLUMNS
from isoflow.errors import InputError
from isoflow.gtex import aggregate_tpm, build_targets, read_sample_attributes

ATTRS = REAL / "gtex_v8_sample_attrs" / "BrainFrontalCortex_v8_SampleAttributes_subset.tsv"

# The excerpt's columns empty in all its rows, and those with one value in all of them.
EMPTY_COLUMNS = (
    "SMATSSCR SMPTHNTS SMTSPAX SMGTC SMNUMGPS SM550NRM SM350NRM SMMNCPB SMMNCV SMCGLGTH "
    "SMGAPPCT SMNUM5CD"
).split()
ONE_VALUE = {
    "SMTS": "Brain",
    "SMTSD": "Brain - Frontal Cortex (BA9)",
    "SMUBRID": "0009834",
    "SMNABTCHT": "RNA isolation_PAXgene Tissue miRNA",
    "SMGEBTCHT": "TruSeq.v1",
    "SMAFRZE": "RNASEQ",
    "SMUNMPRT": "1",
    "SMRDLGTH": "76",
    "SMESTLBS": "0",
    "SMUNPDRD": "0",
    "SMDPMPRT": "0",
}


def generated_attrs(n: int = 175) -> pd.DataFrame:
    """A stand-in for the real excerpt (``ATTRS``), all strings as read with ``dtype=str``:
    GTEx v8's 63 columns in order (``isoflow.demo.SAMPLE_ATTRIBUTE_COLUMNS``), its 175 rows, all
    Brain / Brain - Frontal Cortex (BA9), distinct GTEx-shaped sample IDs, free text with
    blanks and commas, numbers, and the columns the excerpt leaves empty empty
    (``test_generated_attributes_are_shaped_as_the_real_excerpt`` compares the two)."""
    rng = np.random.default_rng(8)
    alphabet = list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    ids: set[str] = set()
    while len(ids) < n:
        donor, code = ("".join(rng.choice(alphabet, k)) for k in (rng.integers(4, 6), 5))
        ids.add(f"GTEX-{donor}-0011-R10{rng.choice(list('abAB'))}-SM-{code}")

    def value(column: str) -> str:
        if column in EMPTY_COLUMNS:
            return ""
        if column in ONE_VALUE:
            return ONE_VALUE[column]
        if column == "SMCENTER":
            return str(rng.choice(["B1, A1", "C1, A1", "B1", "C1"]))
        if column == "SMRIN":
            return f"{rng.uniform(5.5, 9.5):.1f}"
        if column in ("SMNABTCH", "SMGEBTCH"):
            return f"{'BP' if column == 'SMNABTCH' else 'LCSET'}-{rng.integers(10000, 50000)}"
        if column in ("SMNABTCHD", "SMGEBTCHD"):
            return f"{rng.integers(1, 13):02d}/{rng.integers(1, 29):02d}/{rng.integers(2012, 2018)}"
        return f"{rng.lognormal(0, 4):.6g}"

    rows = [[sid, *(value(c) for c in SAMPLE_ATTRIBUTE_COLUMNS[1:])] for sid in sorted(ids)]
    return pd.DataFrame(rows, columns=SAMPLE_ATTRIBUTE_COLUMNS)


def real_attrs() -> pd.DataFrame:
    return pd.read_csv(ATTRS, sep="\t", dtype=str, keep_default_na=False, quoting=3)


def write_attrs(path, attrs):
    """As GTEx writes it: tab-separated, nothing quoted (pandas will not write a raw tab)."""
    lines = ["\t".join(attrs.columns), *("\t".join(row) for row in attrs.itertuples(index=False))]
    path.write_text("\n".join(lines) + "\n")
    return path


# The rows are all Brain - Frontal Cortex; the tests relabel some to get three tissues while
# keeping the IDs and the 63-column layout.
RELABEL = [(0, 30, "Liver", "Liver"), (30, 50, "Heart", "Heart - Left Ventricle")]


def relabelled(path, attrs):
    for start, end, smts, smtsd in RELABEL:
        attrs.loc[start : end - 1, "SMTS"] = smts
        attrs.loc[start : end - 1, "SMTSD"] = smtsd
    return write_attrs(path, attrs)


@pytest.fixture
def attrs_path(tmp_path):
    return relabelled(tmp_path / "SampleAttributesDS.txt", generated_attrs())


@pytest.fixture
def plain_attrs(tmp_path):
    """The stand-in as written, not relabelled."""
    return write_attrs(tmp_path / "SampleAttributesDS.txt", generated_attrs())


def sample_ids(path, n=None):
    ids = pd.read_csv(path, sep="\t", usecols=["SAMPID"], dtype=str)["SAMPID"].tolist()
    # Every 3rd sample: the matrix holds a subset of the attributes file, as in GTEx.
    return ids[::3][:n] if n else ids[::3]


def write_gct(path, samples, rows, dims=None, gz=True):
    """rows: list of (transcript_id, gene_id, list of value strings)."""
    n_rows, n_cols = dims or (len(rows), len(samples))
    lines = ["#1.2", f"{n_rows}\t{n_cols}", "\t".join(["transcript_id", "gene_id", *samples])]
    lines += ["\t".join([tid, gid, *vals]) for tid, gid, vals in rows]
    data = ("\n".join(lines) + "\n").encode()
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def random_rows(n_rows, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    tpm = rng.lognormal(0, 2, size=(n_rows, n_samples)) * (rng.random((n_rows, n_samples)) > 0.3)
    return [
        (
            f"ENST{100000 + i:011d}.{i % 7 + 1}",
            f"ENSG{200000 + i // 3:011d}.1",
            [f"{v:.2f}" for v in r],
        )
        for i, r in enumerate(tpm)
    ]


def expected_targets(gct, attrs_path, column):
    """log1p(mean TPM) per tissue, computed directly with pandas."""
    matrix = pd.read_csv(gct, sep="\t", skiprows=2, index_col=0).drop(columns="gene_id")
    attrs = pd.read_csv(attrs_path, sep="\t", dtype=str, quoting=3).set_index("SAMPID")
    tissue = attrs.loc[matrix.columns, column]
    return np.log1p(matrix.T.groupby(tissue.to_numpy()).mean().T)


@pytest.mark.parametrize("gz", [True, False])
def test_matches_pandas_smts_configured_order(tmp_path, attrs_path, gz):
    matches_pandas(tmp_path, attrs_path, gz)


@pytest.mark.needs("shared")
def test_real_attributes_excerpt_matches_pandas(tmp_path):
    # the same oracle on the real GTEx v8 sample IDs and attributes
    matches_pandas(tmp_path, relabelled(tmp_path / "SampleAttributesDS.txt", real_attrs()), True)


def matches_pandas(tmp_path, attrs_path, gz):
    samples = sample_ids(attrs_path)
    name = "tpm.gct.gz" if gz else "tpm.gct"
    gct = write_gct(tmp_path / name, samples, random_rows(120, len(samples)), gz=gz)
    tissues = ["Liver", "Brain", "Heart"]
    # A tiny block size forces many row blocks.
    targets, stats = aggregate_tpm(gct, attrs_path, "smts", tissues, block_rows=7)
    expected = expected_targets(gct, attrs_path, "SMTS")
    assert list(targets.columns) == ["transcript_id", "gene_id", *tissues]
    assert targets["transcript_id"].tolist() == expected.index.tolist()
    for t in tissues:
        assert targets[t].dtype == np.float32
        np.testing.assert_allclose(targets[t], expected[t], rtol=1e-6, atol=1e-7)
    assert stats["tissue"].tolist() == tissues
    assert stats["n_samples"].tolist() == [10, 42, 7]
    np.testing.assert_allclose(stats["mean"], targets[tissues].mean().to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats["sd"], targets[tissues].std().to_numpy(), rtol=1e-5)


def test_smtsd_all_tissues_sorted_and_min_samples(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(30, len(samples), seed=1))
    targets, stats = aggregate_tpm(gct, attrs_path, "smtsd", None)
    tissues = ["Brain - Frontal Cortex (BA9)", "Heart - Left Ventricle", "Liver"]
    assert stats["tissue"].tolist() == tissues
    expected = expected_targets(gct, attrs_path, "SMTSD")
    for t in tissues:
        np.testing.assert_allclose(targets[t], expected[t], rtol=1e-6, atol=1e-7)
    # min_samples drops tissues with fewer samples when the list comes from the data ...
    _, stats = aggregate_tpm(gct, attrs_path, "smtsd", None, min_samples=8)
    assert stats["tissue"].tolist() == ["Brain - Frontal Cortex (BA9)", "Liver"]
    # ... and is an error for a configured tissue.
    with pytest.raises(InputError, match=r"Heart - Left Ventricle: only 7 sample\(s\)"):
        aggregate_tpm(gct, attrs_path, "smtsd", ["Heart - Left Ventricle"], min_samples=8)
    # Every configured tissue under the bound is named in one line, with its count.
    with pytest.raises(InputError, match=r"2 of the 3 configured tissues have fewer than") as e:
        aggregate_tpm(gct, attrs_path, "smtsd", tissues, min_samples=11)
    listed = "samples; tissue (samples): Heart - Left Ventricle (7), Liver (10); drop them"
    assert listed in str(e.value)


@pytest.mark.needs("shared")
def test_real_attributes_columns():
    attrs = read_sample_attributes(ATTRS)
    assert list(attrs.columns) == ["SAMPID", "SMTS", "SMTSD"]
    assert len(attrs) == 175
    assert set(attrs["SMTS"]) == {"Brain"}
    assert set(attrs["SMTSD"]) == {"Brain - Frontal Cortex (BA9)"}
    assert attrs["SAMPID"].str.match(r"^GTEX-[0-9A-Z]+-\d{4}-").all()


@pytest.mark.needs("shared")
def test_generated_attributes_are_shaped_as_the_real_excerpt():
    # what the tests on the stand-in rely on: the header, the row count, one tissue, unique
    # GTEx-shaped IDs, and which columns are empty or of one value
    real, generated = real_attrs(), generated_attrs()
    assert list(generated.columns) == list(real.columns)
    assert generated.shape == real.shape
    pattern = r"GTEX-[0-9A-Z]{4,5}-\d{4}-R10[abAB]-SM-[0-9A-Z]{5}"
    for attrs in (real, generated):
        assert attrs["SAMPID"].str.fullmatch(pattern).all() and attrs["SAMPID"].is_unique
    for column in real.columns:
        assert (real[column] == "").all() == (column in EMPTY_COLUMNS), column
        assert (generated[column] == "").all() == (column in EMPTY_COLUMNS), column
        if column in ONE_VALUE:
            assert set(real[column]) == set(generated[column]) == {ONE_VALUE[column]}, column


def test_build_targets_outputs(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(20, len(samples), seed=2)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    annotation = tmp_path / "transcripts.parquet"
    ann_ids = [r[0] for r in rows[:15]] + ["ENST99999999999.1", "ENST99999999998.1"]
    pq.write_table(pa.table({"transcript_id": ann_ids}), annotation)
    out, stats_out = tmp_path / "t" / "smts.parquet", tmp_path / "t" / "smts.stats.tsv"
    build_targets(gct, attrs_path, annotation, "smts", ["Brain", "Liver"], 1, out, stats_out)

    table = pq.read_table(out)
    assert table.schema.names == ["transcript_id", "gene_id", "Brain", "Liver"]
    assert table.schema.field("Brain").type == pa.float32()
    assert json.loads(table.schema.metadata[b"isoflow.tissues"]) == ["Brain", "Liver"]
    assert table.num_rows == 20
    text = stats_out.read_text().splitlines()
    assert text[0] == "tissue\tn_samples\tmean\tsd"
    assert [line.split("\t")[:2] for line in text[1:3]] == [["Brain", "42"], ["Liver", "10"]]
    assert text[3:] == [
        "# transcripts_gtex_only\t5",
        "# transcripts_annotation_only\t2",
        "# transcripts_both\t15",
        "# transcripts_par_y_gtex\t0",
        "# transcripts_par_y_annotation\t0",
        "# examples_gtex_only\t" + ",".join(sorted(r[0] for r in rows[15:])),
        "# examples_annotation_only\tENST99999999998.1,ENST99999999999.1",
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["smts.parquet", "smts.stats.tsv"]


# --- bad input: one line naming file, record and what is wrong; no output left behind ------


def run_bad(tmp_path, attrs_path, gct, tissues=("Brain",)):
    out, stats_out = tmp_path / "out" / "smts.parquet", tmp_path / "out" / "smts.stats.tsv"
    with pytest.raises(InputError) as info:
        build_targets(gct, attrs_path, None, "smts", list(tissues), 1, out, stats_out, 7)
    assert "\n" not in str(info.value)
    assert not out.exists() and not stats_out.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    return str(info.value)


def test_truncated_gzip(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(200, len(samples)))
    data = gct.read_bytes()
    gct.write_bytes(data[: int(len(data) * 0.6)])
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg.startswith(f"{gct}:") and "truncated" in msg


def test_truncated_gzip_trailer_only(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(20, len(samples)))
    gct.write_bytes(gct.read_bytes()[:-4])  # all rows present, gzip trailer missing
    assert "truncated" in run_bad(tmp_path, attrs_path, gct)


@pytest.mark.parametrize("declared", [19, 21])
def test_dimension_rows_disagree(tmp_path, attrs_path, declared):
    samples = sample_ids(attrs_path)
    rows = random_rows(20, len(samples))
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows, dims=(declared, len(samples)))
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg == f"{gct}:2: dimensions line says {declared} rows, the body has 20"


def test_dimension_columns_disagree(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(5, len(samples))
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows, dims=(5, len(samples) + 1))
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg == f"{gct}:3: header has {len(samples)} sample columns, dimensions line says 60"


def test_row_with_missing_field(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(50, len(samples))
    rows[41] = (rows[41][0], rows[41][1], rows[41][2][:-1])
    msg = run_bad(tmp_path, attrs_path, write_gct(tmp_path / "t.gct.gz", samples, rows))
    assert msg == (
        f"{tmp_path / 't.gct.gz'}:45: expected {len(samples) + 2} fields (as the header), "
        f"found {len(samples) + 1}"
    )


def test_sample_missing_from_attributes(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    samples[7] = "GTEX-ZZZZZ-0011-R10a-SM-ZZZZZ"
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg == f"{gct}:GTEX-ZZZZZ-0011-R10a-SM-ZZZZZ: sample column is not in {attrs_path}"


def test_configured_tissue_without_samples(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    # Before: one tissue at a time, blaming the samples file, no list, no config key.
    counts = Counter(
        pd.read_csv(attrs_path, sep="\t", dtype=str).set_index("SAMPID").loc[samples, "SMTS"]
    )
    have = ", ".join(f"{t} ({n})" for t, n in sorted(counts.items()))
    configured = ["Brain", "Hearts", "Adipose Tissue", "Kidney"]
    msg = run_bad(tmp_path, attrs_path, gct, tissues=configured)
    assert msg == (
        f"config:tissues.smts: 3 of the 4 configured tissues have no sample in the TPM matrix "
        f"{gct} (SMTS of its samples in {attrs_path}): Hearts (near Heart), Adipose Tissue, "
        f"Kidney; its samples are of {len(counts)} SMTS tissue(s) (samples): {have}; list only "
        "those in tissues.smts, or set it to null for every tissue with samples"
    )


def test_many_missing_tissues_are_listed_in_one_line_cut_short(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    configured = ["Brain", *(f"Tissue {i:02d}" for i in range(15))]
    msg = run_bad(tmp_path, attrs_path, gct, tissues=configured)
    assert msg.startswith("config:tissues.smts: 15 of the 16 configured tissues have no sample")
    listed = ", ".join(f"Tissue {i:02d}" for i in range(10))
    assert f"): {listed}, ... and 5 more; its samples are of " in msg


def test_a_tissue_configured_twice_is_one_line(tmp_path, attrs_path):
    # config/schema.yaml does not forbid it: without the check, two Liver columns
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    msg = run_bad(tmp_path, attrs_path, gct, tissues=["Liver", "Brain", "Liver"])
    assert msg == (
        f"{attrs_path}:Liver: tissue listed twice in tissues.smts (the config): "
        "list each tissue once"
    )


@pytest.mark.parametrize("value", ["abc", "", "1,5", "nan", "-0.5", "1_0"])
def test_non_numeric_tpm(tmp_path, attrs_path, value):
    samples = sample_ids(attrs_path)
    rows = random_rows(300, len(samples))
    col = 13  # a Brain sample (index 13 of every-3rd real ID is past the relabelled rows)
    rows[250][2][col] = value
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg.startswith(f"{gct}:254: transcript {rows[250][0]}, sample {samples[col]}: TPM ")


def test_the_first_of_several_bad_tpms_is_named(tmp_path, attrs_path):
    # two bad values in one line and a third in a later one: the first in file order
    samples = sample_ids(attrs_path)
    rows = random_rows(300, len(samples))
    rows[250][2][13], rows[250][2][20], rows[260][2][5] = "1_0", "abc", "x"
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    msg = run_bad(tmp_path, attrs_path, gct)
    assert (
        msg
        == f"{gct}:254: transcript {rows[250][0]}, sample {samples[13]}: TPM '1_0' is not a number"
    )


def test_duplicate_transcript(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(300, len(samples))
    rows[280] = (rows[3][0], rows[280][1], rows[280][2])
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg == f"{gct}:284: transcript {rows[3][0]} already on line 7"


def test_wrong_header(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(3, len(samples)))
    text = (
        gzip.decompress(gct.read_bytes())
        .decode()
        .replace("transcript_id\tgene_id", "Name\tDescription")
    )
    gct.write_bytes(gzip.compress(text.encode()))
    assert "header must start with transcript_id, gene_id" in run_bad(tmp_path, attrs_path, gct)


def test_attributes_without_tissue_column(tmp_path):
    path = write_attrs(tmp_path / "attrs.tsv", generated_attrs().drop(columns="SMTSD"))
    with pytest.raises(InputError, match=rf"^{path}:1: header lacks column\(s\) SMTSD$"):
        read_sample_attributes(path)


def test_attributes_duplicate_sample(tmp_path):
    attrs = generated_attrs()
    attrs = pd.concat([attrs, attrs.iloc[[5]]])
    path = write_attrs(tmp_path / "attrs.tsv", attrs)
    sid = attrs["SAMPID"].iat[5]
    with pytest.raises(InputError, match=rf"^{path}:177: sample {sid} listed twice$"):
        read_sample_attributes(path)


def test_unused_tissue_columns_are_still_checked(tmp_path, attrs_path):
    # A bad value in a sample of a tissue that is not selected still fails: a corrupt matrix
    # fails whatever the tissue list.
    samples = sample_ids(attrs_path)
    rows = random_rows(10, len(samples))
    rows[4][2][0] = "x"  # sample 0 is relabelled Liver; only Brain is selected
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    assert run_bad(tmp_path, attrs_path, gct, tissues=["Brain"]).startswith(
        f"{gct}:8: transcript {rows[4][0]}, sample {samples[0]}: TPM 'x' is not a number"
    )


# --- issue 7: runs that used to succeed with wrong data --------------------------------------


def test_unquoted_tab_in_free_text_names_line_and_column(tmp_path):
    # Before: pandas' usecols skipped the field-count check, the row shifted by one and its
    # SMRIN (8.7) became its SMTS: a new "tissue", exit 0.
    attrs = generated_attrs()
    attrs.loc[10, "SMPTHNTS"] = "2 pieces\tno autolysis"
    path = write_attrs(tmp_path / "attrs.tsv", attrs)
    with pytest.raises(InputError) as info:
        read_sample_attributes(path)
    assert str(info.value) == (
        f"{path}:12: expected 63 fields (as the header), found 64; likely an unquoted tab in "
        "column SMPTHNTS"
    )


def test_unquoted_tab_fails_the_targets_too(tmp_path):
    attrs = generated_attrs()
    attrs.loc[4, "SMPTHNTS"] = "a\tb"
    path = write_attrs(tmp_path / "attrs.tsv", attrs)
    samples = sample_ids(path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    assert ":6: expected 63 fields" in run_bad(tmp_path, path, gct)


def test_attributes_row_cut_short(tmp_path, plain_attrs):
    path = tmp_path / "attrs.tsv"
    lines = plain_attrs.read_text().splitlines()
    lines[20] = "\t".join(lines[20].split("\t")[:40])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"^{path}:21: expected 63 fields .*found 40; the row"):
        read_sample_attributes(path)


def test_attributes_crlf_and_blank_last_line_read_as_plain(tmp_path, plain_attrs):
    path = tmp_path / "attrs.tsv"
    path.write_bytes(plain_attrs.read_bytes().replace(b"\n", b"\r\n") + b"\r\n")
    crlf = read_sample_attributes(path)
    plain = read_sample_attributes(plain_attrs)
    assert crlf.reset_index(drop=True).equals(plain.reset_index(drop=True))
    assert crlf.index[0] == 2  # the index is the file line


@pytest.mark.parametrize("where", ["attributes", "gct"])
def test_non_utf8_byte_names_file_and_line(tmp_path, attrs_path, where):
    samples = sample_ids(attrs_path)
    rows = random_rows(300, len(samples))
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    if where == "attributes":
        data = attrs_path.read_bytes().split(b"\n")
        data[80] = data[80].replace(b"\tBrain\t", b"\tBrain\t\xe9", 1)
        attrs_path.write_bytes(b"\n".join(data))
        bad, line = attrs_path, 81
    else:
        data = gzip.decompress(gct.read_bytes()).split(b"\n")
        data[250] = data[250].replace(b"ENSG", b"ENSG\xe9", 1)
        gct.write_bytes(gzip.compress(b"\n".join(data)))
        bad, line = gct, 251
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg.startswith(f"{bad}:{line}: byte 0xe9 at column ")
    assert "is not UTF-8" in msg


def test_huge_tpm_is_an_error_not_an_infinite_target(tmp_path, attrs_path):
    # Before: 1e308 in two samples of one tissue summed to inf; the target was inf, exit 0.
    samples = sample_ids(attrs_path)
    rows = random_rows(20, len(samples))
    rows[9][2][13] = rows[9][2][14] = "1e308"  # two Brain samples
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg == (
        f"{gct}:13: transcript {rows[9][0]}, sample {samples[13]}: TPM 1e+308 is not a number "
        "in [0, 1000000] (a sample's TPMs sum to one million)"
    )


def test_largest_tpm_gives_its_exact_target(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(3, len(samples))
    rows[1] = (rows[1][0], rows[1][1], ["1000000"] * len(samples))
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    targets, _ = aggregate_tpm(gct, attrs_path, "smts", ["Brain", "Liver"])
    np.testing.assert_allclose(targets.loc[1, ["Brain", "Liver"]].astype(float), np.log1p(1e6))


def relabel(attrs_path, column, changes):
    """Set ``column`` of attribute rows {row: value}; return the attributes as written."""
    attrs = pd.read_csv(attrs_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    for row, value in changes.items():
        attrs.loc[row, column] = value
    write_attrs(attrs_path, attrs)
    return attrs


# Rows 0-49 are relabelled Liver/Heart; the matrix holds every 3rd row (sample_ids), so row 51
# is the first Brain sample in the matrix and row 100 is a Brain sample outside it.
@pytest.mark.parametrize("spelling", ["brain", "BRAIN"])
def test_tissue_spellings_differing_in_case_or_space(tmp_path, attrs_path, spelling):
    # Before: "Brain" and "brain" were two tissues (a 4th output column), exit 0.
    attrs = relabel(attrs_path, "SMTS", {102: spelling})
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg == (
        f"{attrs_path}:104: SMTS {spelling!r} (sample {attrs['SAMPID'].iat[102]}) and 'Brain' "
        f"(sample {attrs['SAMPID'].iat[51]}, line 53) differ only in case or whitespace: "
        "write one tissue one way"
    )


def test_smtsd_spellings_differing_in_case_are_checked_for_smtsd(tmp_path, attrs_path):
    attrs = relabel(attrs_path, "SMTSD", {102: "brain - frontal cortex (BA9)"})
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    with pytest.raises(InputError, match=rf"^{attrs_path}:104: SMTSD 'brain - frontal") as info:
        aggregate_tpm(gct, attrs_path, "smtsd", None)
    assert f"(sample {attrs['SAMPID'].iat[51]}, line 53)" in str(info.value)


@pytest.mark.parametrize("blank", ["Brain ", " Brain", "Brain  "])
def test_blanks_around_a_tissue_name_do_not_block_the_run(tmp_path, attrs_path, blank):
    # Before: "Brain " stopped the run as a second spelling, although stripped it is "Brain".
    relabel(attrs_path, "SMTS", {102: blank, 105: blank})
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    _, stats = aggregate_tpm(gct, attrs_path, "smts", ["Brain", "Liver"])
    assert stats["n_samples"].tolist() == [42, 10]


def test_spellings_are_checked_only_in_the_tissue_set_and_samples_in_use(tmp_path, attrs_path):
    # Before: a case variant outside the matrix (GTEx lists samples of other assays), or in
    # SMTS while SMTSD is used, stopped the run although no tissue of the run was split.
    relabel(attrs_path, "SMTS", {100: "brain"})  # row 100 is not a matrix column
    samples = sample_ids(attrs_path)
    assert read_sample_attributes(attrs_path)["SAMPID"].iat[100] not in samples
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    _, stats = aggregate_tpm(gct, attrs_path, "smts", ["Brain"])
    assert stats["n_samples"].tolist() == [42]
    relabel(attrs_path, "SMTS", {100: "Brain", 102: "brain"})  # in the matrix, SMTS unused
    _, stats = aggregate_tpm(gct, attrs_path, "smtsd", None)
    assert stats["n_samples"].tolist() == [42, 7, 10]


def test_matrix_sample_without_tissue_is_an_error(tmp_path, attrs_path):
    # Before: the sample's column was left out of every mean without a word.
    attrs = pd.read_csv(attrs_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    samples = sample_ids(attrs_path)
    row = attrs.index[attrs["SAMPID"] == samples[20]][0]
    attrs.loc[row, "SMTS"] = ""
    write_attrs(attrs_path, attrs)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg == (
        f"{attrs_path}:{row + 2}: sample {samples[20]} is a column of {gct} but has an empty "
        "SMTS: give it a tissue or drop its column"
    )


def test_attribute_rows_without_tissue_outside_the_matrix_are_counted(tmp_path, attrs_path, caplog):
    attrs = pd.read_csv(attrs_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    samples = sample_ids(attrs_path)
    outside = [s for s in attrs["SAMPID"] if s not in samples][:4]
    attrs.loc[attrs["SAMPID"].isin(outside), "SMTS"] = ""
    write_attrs(attrs_path, attrs)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    with caplog.at_level("WARNING", logger="isoflow.gtex"):
        aggregate_tpm(gct, attrs_path, "smts", ["Brain"])
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        f"{attrs_path}: 4 sample(s) with an empty SMTS, none of them in the TPM matrix, "
        f"ignored (e.g. {', '.join(outside[:3])})"
    ]


def test_gct_row_with_an_extra_field(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(10, len(samples))
    rows[6] = (rows[6][0], rows[6][1], [*rows[6][2], "0.5"])
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    assert run_bad(tmp_path, attrs_path, gct) == (
        f"{gct}:10: expected {len(samples) + 2} fields (as the header), found {len(samples) + 3}"
    )


@pytest.mark.parametrize("field", [0, 1])
def test_gct_empty_id(tmp_path, attrs_path, field):
    samples = sample_ids(attrs_path)
    rows = random_rows(10, len(samples))
    row = list(rows[2])
    row[field] = ""
    rows[2] = tuple(row)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    assert run_bad(tmp_path, attrs_path, gct) == f"{gct}:6: empty transcript_id or gene_id"


def test_attributes_empty_sample_id(tmp_path):
    attrs = generated_attrs()
    attrs.loc[7, "SAMPID"] = ""
    path = write_attrs(tmp_path / "attrs.tsv", attrs)
    with pytest.raises(InputError, match=rf"^{path}:9: empty SAMPID$"):
        read_sample_attributes(path)


def test_attributes_empty_file(tmp_path):
    path = tmp_path / "attrs.tsv"
    path.write_text("")
    with pytest.raises(InputError, match=rf"^{path}:1: empty file"):
        read_sample_attributes(path)


@pytest.mark.parametrize(
    ("line", "text", "message"),
    [
        (0, "#1.3", "1: expected '#1.2' (GCT version line), got '#1.3'"),
        (1, "20 60", "2: expected dimensions 'NROWS<TAB>NCOLS', got '20 60'"),
    ],
)
def test_gct_version_and_dimensions_lines(tmp_path, attrs_path, line, text, message):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(20, len(samples)))
    lines = gzip.decompress(gct.read_bytes()).decode().split("\n")
    lines[line] = text
    gct.write_bytes(gzip.compress("\n".join(lines).encode()))
    assert run_bad(tmp_path, attrs_path, gct) == f"{gct}:{message}"


def test_gct_with_crlf_line_ends_reads_as_lf(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(30, len(samples))
    lf = write_gct(tmp_path / "lf.gct.gz", samples, rows)
    crlf = tmp_path / "crlf.gct.gz"
    crlf.write_bytes(gzip.compress(gzip.decompress(lf.read_bytes()).replace(b"\n", b"\r\n")))
    a, _ = aggregate_tpm(lf, attrs_path, "smts", ["Brain", "Liver"])
    b, _ = aggregate_tpm(crlf, attrs_path, "smts", ["Brain", "Liver"])
    pd.testing.assert_frame_equal(a, b)


def _blocks(gct, workers, block_rows=7):
    from isoflow.gtex import _row_blocks, read_gct_header

    _, _, columns = read_gct_header(gct)
    return list(_row_blocks(gct, columns, block_rows, workers=workers))


def test_fast_parser_reads_every_number_as_loadtxt(tmp_path, attrs_path):
    # pyarrow's cast reads most blocks; a field it rejects (blanks around a number) sends the
    # block to np.loadtxt; either way the float64 values are np.loadtxt's, bit for bit.
    samples = sample_ids(attrs_path)
    rows = random_rows(30, len(samples))
    rows[2][2][:6] = ["1e3", "+1.5", ".5", "5.", "00012.5000", "1E-300"]
    rows[3][2][:3] = ["0.1000000000000000055511151231257827", "123456789012345678901", "-0"]
    rows[20][2][4] = " 1.5"  # np.loadtxt strips blanks, pyarrow does not
    gct = write_gct(tmp_path / "tpm.gct", samples, rows, gz=False)
    text = [line.split("\t", 2)[2] for line in gct.read_text().splitlines()[3:]]
    expected = np.loadtxt(text, delimiter="\t", dtype=np.float64, comments=None, ndmin=2)
    for workers in (0, 1, 2):
        blocks = _blocks(gct, workers)
        assert [b[0] for b in blocks] == list(range(4, 34, 7))
        values = np.concatenate([b[3] for b in blocks])
        assert values.tobytes() == expected.tobytes()
        assert sum((b[1] for b in blocks), []) == [r[0] for r in rows]
        assert sum((b[2] for b in blocks), []) == [r[1] for r in rows]


@pytest.mark.parametrize("workers", [0, 2])
def test_errors_in_file_order_with_parse_threads(tmp_path, attrs_path, monkeypatch, workers):
    # A bad value in an early block is reported before a short row in a later one, whether
    # blocks are parsed in threads (several at once, read ahead) or not.
    monkeypatch.setattr("isoflow.gtex._parse_workers", lambda: workers)
    samples = sample_ids(attrs_path)
    rows = random_rows(600, len(samples))
    rows[140][2][5] = "abc"
    rows[590] = (rows[590][0], rows[590][1], rows[590][2][:-1])
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    msg = run_bad(tmp_path, attrs_path, gct)
    assert msg.startswith(f"{gct}:144: transcript {rows[140][0]}, sample {samples[5]}: TPM 'abc'")


def test_lone_carriage_return_in_a_row(tmp_path, attrs_path):
    samples = sample_ids(attrs_path)
    rows = random_rows(10, len(samples))
    rows[4][2][7] = "1.5\r"
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    assert run_bad(tmp_path, attrs_path, gct) == (
        f"{gct}:8: carriage return (CR) inside a row: only LF or CRLF line ends are read"
    )


# --- GTEx matrix <-> annotation overlap ----------------------------------------------------


def bump_version(tid):
    base, version = tid.rsplit(".", 1)
    return f"{base}.{int(version) + 1}"


def overlap_run(tmp_path, attrs_path, annotation_ids, rows):
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, rows)
    annotation = tmp_path / "transcripts.parquet"
    pq.write_table(pa.table({"transcript_id": annotation_ids}), annotation)
    out, stats_out = tmp_path / "t" / "smts.parquet", tmp_path / "t" / "smts.stats.tsv"
    build_targets(
        gct, attrs_path, annotation, "smts", ["Brain"], 1, out, stats_out,
        overlap_warn_below=0.95, overlap_fail_below=0.5,
    )  # fmt: skip
    return gct, annotation, out, stats_out


def test_sixty_percent_other_versions_fail_with_one_line(tmp_path, attrs_path):
    rows = random_rows(20, len(sample_ids(attrs_path)), seed=3)
    ids = [r[0] for r in rows]
    annotation_ids = [bump_version(t) for t in ids[:12]] + ids[12:]  # 60 % on another version
    with pytest.raises(InputError) as info:
        overlap_run(tmp_path, attrs_path, annotation_ids, rows)
    message = str(info.value)
    assert "\n" not in message
    gct = tmp_path / "tpm.gct.gz"
    other = sorted(annotation_ids[:12])
    matrix_id = ids[annotation_ids.index(other[0])]
    assert message == (
        f"{gct}: only 40.0% of the 20 transcripts of {tmp_path / 'transcripts.parquet'} are "
        f"rows of this matrix (gtex.overlap_fail_below: 50%); 12 are not, e.g. "
        f"{', '.join(other[:5])}; likely cause: 12 of them differ only in the version suffix "
        f"({other[0]} in the annotation, {matrix_id} in the matrix): the annotation is another "
        "GENCODE release than the matrix's (GTEx v8: GENCODE v26)"
    )
    assert not (tmp_path / "t").exists() or not list((tmp_path / "t").iterdir())


def test_ids_of_another_annotation_name_the_release_cause(tmp_path, attrs_path):
    rows = random_rows(10, len(sample_ids(attrs_path)), seed=4)
    annotation_ids = [f"NM_{i:06d}.1" for i in range(8)] + [r[0] for r in rows[:2]]
    with pytest.raises(InputError, match=r"only 20\.0% .* not even without version suffixes"):
        overlap_run(tmp_path, attrs_path, annotation_ids, rows)


def test_a_matrix_without_version_suffixes_is_named_as_such(tmp_path, attrs_path):
    # Before: "105 of them differ only in the version suffix (...): the annotation is another
    # GENCODE release", the wrong cause and fix when the matrix carries no versions at all.
    rows = random_rows(10, len(sample_ids(attrs_path)), seed=6)
    annotation_ids = [r[0] for r in rows]
    rows = [(tid.rsplit(".", 1)[0], gene, values) for tid, gene, values in rows]
    with pytest.raises(InputError) as info:
        overlap_run(tmp_path, attrs_path, annotation_ids, rows)
    first = sorted(annotation_ids)[0]
    assert str(info.value).endswith(
        f"likely cause: 10 of them are in the matrix without their version suffix ({first} in "
        f"the annotation, {first.rsplit('.', 1)[0]} in the matrix; none of its 10 IDs carry "
        "one): this is not GTEx v8's transcript TPM file, whose IDs are versioned (GENCODE "
        "v26) as the annotation's are; use that file, or give the matrix's IDs the version "
        "suffixes of the annotation release it was quantified with"
    )
    # a few versioned IDs among them are counted as such
    rows[0] = (annotation_ids[0], *rows[0][1:])
    with pytest.raises(InputError, match=r"; 1 of 10 IDs carry one\): this is not GTEx v8's"):
        overlap_run(tmp_path, attrs_path, annotation_ids, rows)


def test_an_annotation_without_version_suffixes_is_named_as_such(tmp_path, attrs_path):
    rows = random_rows(10, len(sample_ids(attrs_path)), seed=7)
    annotation_ids = [r[0].rsplit(".", 1)[0] for r in rows]
    with pytest.raises(InputError) as info:
        overlap_run(tmp_path, attrs_path, annotation_ids, rows)
    first = sorted(annotation_ids)[0]
    matrix_id = next(r[0] for r in rows if r[0].startswith(first + "."))
    assert str(info.value).endswith(
        f"likely cause: 10 of them are in the matrix only with a version suffix the "
        f"annotation's IDs lack ({first} in the annotation, {matrix_id} in the matrix): use an "
        "annotation whose IDs carry versions, GENCODE v26's for GTEx v8 (an Ensembl GTF or "
        "GFF3 with transcript_version / version attributes is read with them)"
    )


def test_ninety_percent_overlap_warns_and_writes_examples(tmp_path, attrs_path, caplog):
    rows = random_rows(20, len(sample_ids(attrs_path)), seed=5)
    rows += [("ENST00000999999.1_PAR_Y", "ENSG00000999999.1_PAR_Y", rows[0][2])]
    ids = [r[0] for r in rows[:20]]
    annotation_ids = [bump_version(t) for t in ids[:2]] + ids[2:]  # 90 % found
    with caplog.at_level("WARNING", logger="isoflow.gtex"):
        _, _, out, stats_out = overlap_run(tmp_path, attrs_path, annotation_ids, rows)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "only 90.0% of the 20 transcripts" in warnings[0].getMessage()
    assert "gtex.overlap_warn_below: 95%" in warnings[0].getMessage()
    assert out.exists()
    lines = stats_out.read_text().splitlines()[2:]
    gtex_only = sorted([*ids[:2], "ENST00000999999.1_PAR_Y"])
    assert lines == [
        "# transcripts_gtex_only\t3",
        "# transcripts_annotation_only\t2",
        "# transcripts_both\t18",
        "# transcripts_par_y_gtex\t1",
        "# transcripts_par_y_annotation\t0",
        f"# examples_gtex_only\t{','.join(gtex_only)}",
        f"# examples_annotation_only\t{','.join(sorted(annotation_ids[:2]))}",
    ]


def test_full_overlap_is_silent(tmp_path, attrs_path, caplog):
    rows = random_rows(10, len(sample_ids(attrs_path)), seed=6)
    with caplog.at_level("WARNING", logger="isoflow.gtex"):
        overlap_run(tmp_path, attrs_path, [r[0] for r in rows], rows)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# --- gtex.cell_lines (issue 9) ------------------------------------------------------------------

CELL_LINE_RELABEL = [
    (0, 20, "Blood", "Whole Blood"),
    (20, 35, "Blood", "Cells - EBV-transformed lymphocytes"),
    (35, 55, "Skin", "Skin - Sun Exposed (Lower leg)"),
    (55, 70, "Skin", "Cells - Cultured fibroblasts"),
    (70, 110, "Liver", "Liver"),
    (110, 125, "Bone Marrow", "Cells - Leukemia cell line (CML)"),
]


@pytest.fixture
def cell_line_attrs(tmp_path):
    attrs = generated_attrs()
    for start, end, smts, smtsd in CELL_LINE_RELABEL:
        attrs.loc[start : end - 1, "SMTS"] = smts
        attrs.loc[start : end - 1, "SMTSD"] = smtsd
    return write_attrs(tmp_path / "SampleAttributesDS.txt", attrs)


def test_cell_line_exclusion_changes_only_blood_and_skin(tmp_path, cell_line_attrs):
    samples = sample_ids(cell_line_attrs)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(40, len(samples)))
    tissues = ["Blood", "Liver", "Skin"]
    keep, keep_stats = aggregate_tpm(gct, cell_line_attrs, "smts", tissues)
    drop, drop_stats = aggregate_tpm(gct, cell_line_attrs, "smts", tissues, cell_lines="drop")
    assert keep_stats["tissue"].tolist() == drop_stats["tissue"].tolist() == tissues
    np.testing.assert_array_equal(keep["Liver"], drop["Liver"])
    for tissue in ("Blood", "Skin"):
        assert not np.array_equal(keep[tissue], drop[tissue])
    # drop = the mean over the non-cell-line samples only, computed with pandas
    matrix = pd.read_csv(gct, sep="\t", skiprows=2, index_col=0).drop(columns="gene_id")
    attrs = generated_attrs().set_index("SAMPID")
    for start, end, smts, smtsd in CELL_LINE_RELABEL:
        attrs.iloc[start:end, attrs.columns.get_loc("SMTS")] = smts
        attrs.iloc[start:end, attrs.columns.get_loc("SMTSD")] = smtsd
    cells = attrs.loc[matrix.columns, "SMTSD"].str.startswith("Cells - ").to_numpy()
    tissue = attrs.loc[matrix.columns, "SMTS"].where(~cells).to_numpy()
    expected = np.log1p(matrix.T.groupby(tissue).mean().T)
    for tissue in tissues:
        np.testing.assert_allclose(drop[tissue], expected[tissue].to_numpy(), rtol=1e-6)
    n_keep = dict(zip(keep_stats["tissue"], keep_stats["n_samples"], strict=True))
    n_drop = dict(zip(drop_stats["tissue"], drop_stats["n_samples"], strict=True))
    assert n_drop["Liver"] == n_keep["Liver"]
    assert n_drop["Blood"] < n_keep["Blood"] and n_drop["Skin"] < n_keep["Skin"]
    # with every tissue: Bone Marrow (only a cell line) is gone, nothing else changes
    every_keep = aggregate_tpm(gct, cell_line_attrs, "smts")[1]["tissue"].tolist()
    every_drop = aggregate_tpm(gct, cell_line_attrs, "smts", cell_lines="drop")[1]
    assert set(every_keep) - set(every_drop["tissue"]) == {"Bone Marrow"}


def test_cell_lines_counted_in_the_stats(tmp_path, cell_line_attrs):
    samples = sample_ids(cell_line_attrs)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(5, len(samples)))
    out = {name: tmp_path / name for name in ("t.parquet", "t.stats.tsv")}
    build_targets(gct, cell_line_attrs, None, "smts", ["Blood", "Skin"], 1, *out.values(),
                  cell_lines="drop")  # fmt: skip
    lines = out["t.stats.tsv"].read_text().splitlines()
    in_matrix = set(samples)
    attrs = generated_attrs()
    counts = {}
    for start, end, _, smtsd in CELL_LINE_RELABEL:
        n = len(set(attrs["SAMPID"][start:end]) & in_matrix)
        if smtsd.startswith("Cells - ") and n:
            counts[smtsd] = counts.get(smtsd, 0) + n
    assert f"# cell_line_samples_dropped\t{sum(counts.values())}" in lines
    listed = ",".join(f"{name}:{n}" for name, n in sorted(counts.items()))
    assert f"# cell_lines_dropped\t{listed}" in lines
    # keep (the default) writes no such line: stats.tsv as before the key existed
    build_targets(gct, cell_line_attrs, None, "smts", ["Blood", "Skin"], 1, *out.values())
    assert "cell_line" not in out["t.stats.tsv"].read_text()


def test_a_configured_cell_line_tissue_with_drop_is_one_line(tmp_path, cell_line_attrs):
    samples = sample_ids(cell_line_attrs)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(3, len(samples)))
    with pytest.raises(
        InputError,
        match=r"Cells - Cultured fibroblasts: tissues\.smtsd names a cell line while "
        r"gtex\.cell_lines is drop",
    ):
        aggregate_tpm(gct, cell_line_attrs, "smtsd", ["Liver", "Cells - Cultured fibroblasts"],
                      cell_lines="drop")  # fmt: skip


def test_a_configured_tissue_with_exactly_min_samples_is_kept(tmp_path, attrs_path):
    """gtex.min_samples is the fewest samples a tissue may have: a configured tissue with
    exactly that many is kept (Liver has 10 samples here), one fewer refused."""
    samples = sample_ids(attrs_path)
    gct = write_gct(tmp_path / "tpm.gct.gz", samples, random_rows(30, len(samples), seed=1))
    _, stats = aggregate_tpm(gct, attrs_path, "smtsd", ["Liver"], min_samples=10)
    assert stats["tissue"].tolist() == ["Liver"]
    with pytest.raises(InputError, match=r"Liver: only 10 sample\(s\), gtex.min_samples is 11"):
        aggregate_tpm(gct, attrs_path, "smtsd", ["Liver"], min_samples=11)
