"""isoflow.splits: gene and chrom schemes, deterministic from IDs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from isoflow.errors import InputError
from isoflow.splits import (
    build_splits,
    gene_key,
    gene_unit,
    read_splits,
    split_transcripts,
    write_splits,
)


def transcripts(n_genes=4000, seed=0):
    """GENCODE-style IDs: 1-8 isoforms per gene, some PAR_Y copies."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_genes):
        gene = f"ENSG{100000 + g:011d}.{g % 9 + 1}"
        chrom = f"chr{g % 22 + 1}"
        for i in range(rng.integers(1, 9)):
            rows.append((f"ENST{(g * 10 + i):011d}.{i + 1}", gene, chrom))
        if g % 500 == 0:  # pseudoautosomal copy on chrY, its own gene ID
            rows.append((f"ENST{(g * 10 + 9):011d}.1_PAR_Y", f"{gene}_PAR_Y", "chrY"))
    return pd.DataFrame(rows, columns=["transcript_id", "gene_id", "chrom"])


def test_gene_key():
    assert gene_key("ENSG00000182378.13_PAR_Y") == "ENSG00000182378"
    assert gene_key("ENSG00000182378.13") == "ENSG00000182378"
    assert gene_key("ENSG00000182378") == "ENSG00000182378"


def test_gene_unit_is_the_package_id_hash_of_salt_and_gene_key():
    # The value test_alphabet pins for id_unit("isoflow\tENSG00000182378"): the splits files of
    # earlier runs stay valid only while this holds.
    assert gene_unit("ENSG00000182378.13_PAR_Y", "isoflow") == 0.5284814099692784


def test_gene_scheme_groups_fractions_and_order():
    df = transcripts()
    out = split_transcripts(df, "gene", valid_fraction=0.1, test_fraction=0.2, salt="s")
    assert list(out.columns) == ["transcript_id", "gene_id", "split"]
    assert len(out) == len(df) and set(out["split"]) == {"train", "valid", "test"}
    # No gene (unversioned, PAR copies included) on two sides.
    sides = out.groupby(out["gene_id"].map(gene_key))["split"].nunique()
    assert (sides == 1).all()
    # Fractions of genes near the configured ones (4,000 genes: sd of a fraction ~0.006).
    per_gene = out.groupby(out["gene_id"].map(gene_key))["split"].first()
    frac = per_gene.value_counts(normalize=True)
    assert abs(frac["valid"] - 0.1) < 0.025
    assert abs(frac["test"] - 0.2) < 0.025
    # Shuffled input gives the same table, row for row.
    shuffled = df.sample(frac=1, random_state=3).reset_index(drop=True)
    again = split_transcripts(shuffled, "gene", valid_fraction=0.1, test_fraction=0.2, salt="s")
    pd.testing.assert_frame_equal(out, again)
    # Another salt gives another split.
    other = split_transcripts(df, "gene", valid_fraction=0.1, test_fraction=0.2, salt="t")
    assert (other["split"] != out["split"]).mean() > 0.1


def test_gene_scheme_edges():
    df = transcripts(200)
    assert set(split_transcripts(df, "gene", 0, 0)["split"]) == {"train"}
    assert set(split_transcripts(df, "gene", 0, 1)["split"]) == {"test"}
    with pytest.raises(ValueError, match="sum to <= 1"):
        split_transcripts(df, "gene", 0.6, 0.6)


@pytest.mark.parametrize(("valid", "test"), [(-0.1, 0.5), (0.5, -0.1), (-0.3, 1.2)])
def test_gene_scheme_refuses_a_negative_fraction(valid, test):
    # each sums to <= 1, so only the ">= 0" half of the check stops them: a negative valid
    # fraction would leave the valid split empty, a negative test one the test split
    message = rf"must be >= 0 .*: valid {valid}, test {test}$"
    with pytest.raises(ValueError, match=message):
        split_transcripts(transcripts(50), "gene", valid, test)


def test_chrom_scheme():
    df = transcripts(300)
    out = split_transcripts(df, "chrom", valid_chroms=["chr8"], test_chroms=["chr9", "chrY"])
    chrom = df.set_index("transcript_id")["chrom"].loc[out["transcript_id"]].to_numpy()
    assert (out["split"].to_numpy()[chrom == "chr8"] == "valid").all()
    assert (out["split"].to_numpy()[np.isin(chrom, ["chr9", "chrY"])] == "test").all()
    assert (out["split"].to_numpy()[~np.isin(chrom, ["chr8", "chr9", "chrY"])] == "train").all()
    with pytest.raises(InputError, match=r"^t.parquet:8: held-out chromosome has no transcript"):
        split_transcripts(df, "chrom", valid_chroms=["8"], test_chroms=[], source="t.parquet")
    with pytest.raises(ValueError, match="chr8"):
        split_transcripts(df, "chrom", valid_chroms=["chr8"], test_chroms=["chr8"])


def test_duplicate_transcript_is_an_error():
    df = transcripts(10)
    df.loc[3, "transcript_id"] = df.loc[2, "transcript_id"]
    with pytest.raises(InputError, match=f"^x.parquet:{df.loc[2, 'transcript_id']}: "):
        split_transcripts(df, "gene", source="x.parquet")


def test_build_and_read(tmp_path):
    df = transcripts(300)
    parquet = tmp_path / "transcripts.parquet"
    df.sample(frac=1, random_state=1).to_parquet(parquet)
    out = tmp_path / "splits" / "gene.tsv"
    built = build_splits(parquet, out, "gene", valid_fraction=0.1, test_fraction=0.1, salt="x")
    assert out.read_text().splitlines()[0] == "transcript_id\tgene_id\tsplit"
    pd.testing.assert_frame_equal(read_splits(out), built.astype(str))
    # Rebuilding from a differently ordered file gives the identical file.
    first = out.read_bytes()
    df.to_parquet(parquet)
    build_splits(parquet, out, "gene", valid_fraction=0.1, test_fraction=0.1, salt="x")
    assert out.read_bytes() == first


def test_read_splits_rejects_bad_split(tmp_path):
    path = tmp_path / "s.tsv"
    write_splits(
        pd.DataFrame(
            {"transcript_id": ["a", "b"], "gene_id": ["g", "g"], "split": ["train", "tset"]}
        ),
        path,
    )
    with pytest.raises(InputError, match=rf"^{path}:3: split 'tset' is not train/valid/test$"):
        read_splits(path)


@pytest.mark.parametrize(
    "header",
    [
        "gene_id\ttranscript_id\tsplit",  # reordered
        "transcript_id\tgene_id\tsplit\tsplit",  # a second split column (read as split.1)
        "transcript_id\tgene_id\tsplit\tchrom",  # an extra column
    ],
    ids=["reordered", "split-twice", "extra-column"],
)
def test_read_splits_wants_exactly_its_three_columns(tmp_path, header):
    path = tmp_path / "s.tsv"
    width = header.count("\t") + 1
    path.write_text(header + "\n" + "\t".join(["a", "g", "train", "test"][:width]) + "\n")
    got = ", ".join(pd.read_csv(path, sep="\t", nrows=0).columns)
    with pytest.raises(InputError) as err:
        read_splits(path)
    assert str(err.value) == (
        f"{path}:1: expected header transcript_id, gene_id, split; got {got}: "
        "rebuild it (rule splits)"
    )


# ---- issue 7 ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_missing_gene_id_is_an_error(value):
    # Before: a null gene_id crashed gene_key with an AttributeError traceback.
    df = transcripts(10)
    df["gene_id"] = df["gene_id"].astype(object)
    df.loc[4, "gene_id"] = value
    tid = df.loc[4, "transcript_id"]
    with pytest.raises(InputError, match=rf"^x.parquet:{tid}: gene_id is null or empty$"):
        split_transcripts(df, "gene", source="x.parquet")


def test_gene_on_two_sides_of_a_chrom_split():
    # Before: a gene ID on chr1 and chr2 put its isoforms in train and test.
    df = transcripts(10)
    gene = df.loc[0, "gene_id"]
    df.loc[1, "chrom"] = "chr2"  # transcript 1 belongs to gene 0, on chr1
    assert df.loc[1, "gene_id"] == gene
    with pytest.raises(
        InputError, match=rf"^x.parquet:{gene}: gene on contigs chr1, chr2 falls on two sides"
    ):
        split_transcripts(df, "chrom", test_chroms=["chr2"], source="x.parquet")


def test_read_splits_duplicate_and_empty(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("transcript_id\tgene_id\tsplit\na\tg\ttrain\nb\tg\ttest\na\tg\ttrain\n")
    with pytest.raises(InputError, match=rf"^{path}:4: transcript a listed twice$"):
        read_splits(path)
    path.write_text("")
    with pytest.raises(InputError, match=rf"^{path}: not a splits TSV"):
        read_splits(path)


def test_read_splits_non_utf8_byte_names_line_and_column(tmp_path):
    # Before: a UnicodeDecodeError traceback from pandas.
    path = tmp_path / "s.tsv"
    path.write_bytes(b"transcript_id\tgene_id\tsplit\na\tg\ttrain\nb\tg\xe9\ttest\n")
    with pytest.raises(InputError, match=rf"^{path}:3: byte 0xe9 at column 4 is not UTF-8; "):
        read_splits(path)
