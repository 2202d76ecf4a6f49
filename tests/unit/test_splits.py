"""isoflow.splits: gene, locus and chrom schemes, deterministic from IDs; the TSS leaks."""

from __future__ import annotations

import inspect
import logging
import re
import time

import numpy as np
import pandas as pd
import pytest

from helpers.paths import SHARED_REAL
from isoflow.annotation import read_annotation
from isoflow.errors import InputError
from isoflow.splits import (
    LOCUS_TSS_DISTANCE,
    build_splits,
    gene_key,
    gene_unit,
    locus_units,
    read_splits,
    split_transcripts,
    tss_leaks,
    write_splits,
)
from isoflow.workflow import schema_default


def transcripts(n_genes=4000, seed=0):
    """GENCODE-style IDs: 1-8 isoforms per gene, some PAR_Y copies; each gene its own locus
    (100 kb apart, TSSs within the gene), so the locus scheme is the gene scheme here."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_genes):
        gene = f"ENSG{100000 + g:011d}.{g % 9 + 1}"
        chrom = f"chr{g % 22 + 1}"
        strand = "+-"[g % 2]
        for i in range(rng.integers(1, 9)):
            rows.append((f"ENST{(g * 10 + i):011d}.{i + 1}", gene, chrom, strand, g * 100_000 + i))
        if g % 500 == 0:  # pseudoautosomal copy on chrY, its own gene ID
            rows.append(
                (f"ENST{(g * 10 + 9):011d}.1_PAR_Y", f"{gene}_PAR_Y", "chrY", "+", g * 100_000)
            )
    df = pd.DataFrame(rows, columns=["transcript_id", "gene_id", "chrom", "strand", "tss"])
    df["exon_starts"] = [[t, t + 1000] for t in df["tss"]]
    df["exon_ends"] = [[t + 100, t + 1200] for t in df["tss"]]
    return df


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


# ---- locus scheme and TSS leaks (a reviewer's finding: readthrough genes and bidirectional
# promoters put the same DNA window on both sides of a gene split) -------------------------

MINI_V41 = SHARED_REAL / "genomekit_mini" / "gencode.v41.annotation.gff3"
INO80B, READTHROUGH, WBP1, MOGS = (
    "ENSG00000115274",
    "ENSG00000274049",  # INO80B-WBP1: its own gene ID, INO80B's TSS and first exons
    "ENSG00000239779",
    "ENSG00000115275",
)


def tx(tid, gene, strand, exons, chrom="chr1"):
    """One transcripts.parquet row; the TSS is the 5' end of the exons on ``strand``."""
    tss = exons[0][0] if strand == "+" else exons[-1][1] - 1
    return {
        "transcript_id": tid,
        "gene_id": gene,
        "chrom": chrom,
        "strand": strand,
        "tss": tss,
        "exon_starts": [a for a, _ in exons],
        "exon_ends": [b for _, b in exons],
    }


def loci():
    return pd.DataFrame(
        [
            # G1 and its readthrough G2 share a TSS and a first exon (+)
            tx("t1", "G1.1", "+", [(1000, 1200), (2000, 2300)]),
            tx("t2", "G2.1", "+", [(1000, 1200), (5000, 5400)]),
            # G3 overlaps G2's last exon on the same strand, TSS far from every other
            tx("t3", "G3.1", "+", [(5300, 5600), (7000, 7100)]),
            # G4 overlaps G3's last exon on the minus strand (antisense), its TSS 7,500 is
            # 2,200 bp from G3's: not joined at 1,000 or 2,000
            tx("t4", "G4.1", "-", [(6950, 7050), (7400, 7501)]),
            # G5: TSS at 20,000 (-), G6 head to head at 20,600 (+): a bidirectional promoter
            tx("t5", "G5.1", "-", [(18000, 18500), (19500, 20001)]),
            tx("t6", "G6.1", "+", [(20600, 21000)]),
            # G7: 2,000 bp past G6's TSS: apart at 1,000, joined at 2,000
            tx("t7", "G7.1", "+", [(22600, 22700)]),
            # G8 on another contig at G1's TSS: never joined
            tx("t8", "G8.1", "+", [(1000, 1200)], chrom="chr2"),
            # G9 at G1's TSS on the minus strand: the same position, either strand
            tx("t9", "G9.1", "-", [(500, 600), (900, 1001)]),
        ]
    )


def test_locus_units_join_shared_tss_exon_overlap_and_near_tss():
    units = locus_units(loci(), tss_distance=1000)
    assert units["G1"] == units["G2"] == units["G3"] == units["G9"] == "G1"  # TSS, exons
    assert units["G4"] == "G4"  # antisense overlap, TSS 2,200 bp from G3's: apart
    assert units["G5"] == units["G6"] == "G5"  # head to head, 600 bp
    assert units["G7"] == "G7" and units["G8"] == "G8"
    # 0: only the same position (either strand) and exon overlap join
    units = locus_units(loci(), tss_distance=0)
    assert units["G1"] == units["G2"] == units["G3"] == units["G9"] == "G1"
    assert units["G5"] == "G5" and units["G6"] == "G6"
    # 2,000: G7 joins G5 and G6 through G6 (transitively), G4 (TSS 7,500, G3's 5,300) not
    units = locus_units(loci(), tss_distance=2000)
    assert units["G5"] == units["G6"] == units["G7"] == "G5"
    assert units["G4"] == "G4"
    # exons that touch (half-open) do not overlap: G10's starts where G1's second one ends
    touching = pd.concat(
        [loci().iloc[[0]], pd.DataFrame([tx("t10", "G10.1", "+", [(2300, 2400)])])]
    )
    assert locus_units(touching, 0)["G10"] == "G10"
    with pytest.raises(ValueError, match="locus_tss_distance must be >= 0"):
        locus_units(loci(), -1)


def test_locus_scheme_keeps_a_unit_on_one_side_and_single_genes_where_gene_puts_them():
    df = loci()
    units = locus_units(df, 1000)
    for salt in map(str, range(30)):
        out = split_transcripts(df, "locus", 0.3, 0.3, salt=salt)
        side = dict(zip(out["gene_id"].map(gene_key), out["split"], strict=True))
        for unit in set(units):
            assert len({side[g] for g in units.index[units == unit]}) == 1
        # a gene alone in its unit falls where the gene scheme puts it
        gene = split_transcripts(df, "gene", 0.3, 0.3, salt=salt).set_index("transcript_id")
        for tid, gene_id in (("t4", "G4"), ("t7", "G7"), ("t8", "G8")):
            assert side[gene_id] == gene.at[tid, "split"]
        # nothing held out shares a TSS with, or lies within 1 kb of, a train TSS
        leaks = tss_leaks(df, out)
        assert leaks[["same_tss", "near_tss"]].to_numpy().sum() == 0


def test_locus_scheme_equals_the_gene_scheme_without_shared_loci():
    df = transcripts(600)
    pd.testing.assert_frame_equal(
        split_transcripts(df, "locus", 0.1, 0.2, salt="s"),
        split_transcripts(df, "gene", 0.1, 0.2, salt="s"),
    )


def test_locus_scheme_wants_its_columns():
    columns = loci().drop(columns=["exon_starts", "exon_ends"])
    with pytest.raises(InputError, match=r"^x.parquet: missing column\(s\) exon_starts, exon_ends"):
        split_transcripts(columns, "locus", source="x.parquet")
    nulls = loci()
    nulls["exon_ends"] = nulls["exon_ends"].astype(object)
    nulls.at[2, "exon_ends"] = None
    with pytest.raises(InputError, match=r"^x.parquet:t3: exon_ends is null or empty$"):
        split_transcripts(nulls, "locus", source="x.parquet")
    nulls = loci()
    nulls.at[3, "strand"] = None
    with pytest.raises(InputError, match=r"^x.parquet:t4: strand is null or empty$"):
        split_transcripts(nulls, "locus", source="x.parquet")


def test_tss_leaks_counts_same_and_near_tss_of_other_genes():
    df = loci()
    # G1 train; G2 (same TSS, +), G9 (same position, -) and G6 (far from G1) test
    splits = pd.DataFrame(
        {
            "transcript_id": df["transcript_id"],
            "split": ["train", "test", "valid", "train", "train", "test", "train", "train", "test"],
        }
    )
    leaks = tss_leaks(df, splits).set_index("split")
    # test: t2 = G1's TSS on +; t9 on - at the same position (near only); t6: G5 (train)
    # 600 bp away on the other strand (near only)
    assert leaks.loc["test"].to_dict() == {"transcripts": 3, "same_tss": 1, "near_tss": 3}
    # valid: t3 (G3, TSS 5,300) is 4,300 bp from G1's and 2,200 from G4's train TSS: none
    assert leaks.loc["valid"].to_dict() == {"transcripts": 1, "same_tss": 0, "near_tss": 0}
    # a transcript of the same gene in train is no leak
    own = pd.DataFrame([tx("a", "G1.1", "+", [(100, 200)]), tx("b", "G1.2", "+", [(100, 200)])])
    split_own = pd.DataFrame({"transcript_id": ["a", "b"], "split": ["train", "test"]})
    assert tss_leaks(own, split_own).set_index("split").loc["test", "near_tss"] == 0
    assert tss_leaks(df, splits, distance=0).set_index("split").loc["test", "near_tss"] == 2
    with pytest.raises(InputError, match=r"^t.parquet:zz: transcript of the splits not in this"):
        tss_leaks(
            df, pd.DataFrame({"transcript_id": ["zz"], "split": ["test"]}), source="t.parquet"
        )


@pytest.mark.needs("shared")
def test_readthrough_gene_leaks_under_the_gene_scheme_not_under_locus():
    """GENCODE v41: INO80B-WBP1 (ENSG00000274049) starts at INO80B's TSS and shares its first
    exons (ENST00000441673.2 and ENST00000494986.5 both start at 126 here), then WBP1's
    exons. The gene scheme puts them on opposite sides for some salts; locus never."""
    df = read_annotation(MINI_V41)
    units = locus_units(df, 0)
    assert units[INO80B] == units[READTHROUGH] == units[WBP1] == INO80B
    assert units[MOGS] == MOGS
    tss = df.set_index("transcript_id")["tss"]
    assert tss["ENST00000441673.2"] == tss["ENST00000494986.5"]
    leaked = 0
    for salt in map(str, range(40)):
        gene = split_transcripts(df, "gene", 0.3, 0.3, salt=salt)
        leaked += int(tss_leaks(df, gene)["same_tss"].sum())
        locus = split_transcripts(df, "locus", 0.3, 0.3, salt=salt)
        sides = locus.groupby(locus["gene_id"].map(gene_key))["split"].first()
        assert sides[INO80B] == sides[READTHROUGH] == sides[WBP1]
        assert tss_leaks(df, locus)[["same_tss", "near_tss"]].to_numpy().sum() == 0
    assert leaked > 0


def test_build_splits_logs_the_leaks(tmp_path, caplog):
    parquet = tmp_path / "transcripts.parquet"
    df = loci()
    df.to_parquet(parquet)
    fractions = {"valid_fraction": 0.3, "test_fraction": 0.3, "salt": "1"}
    with caplog.at_level(logging.INFO, logger="isoflow.splits"):
        build_splits(parquet, tmp_path / "locus.tsv", "locus", **fractions)
    text = caplog.text
    assert "locus units: 9 genes in 5 units (locus_tss_distance 1,000 bp)" in text
    assert "the largest holds 4 (G1, G2, G3, G9)" in text
    assert re.search(r"test: [\d,]+ transcripts; 0 \([^)]*\) share their TSS", text)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="isoflow.splits"):
        build_splits(parquet, tmp_path / "gene.tsv", "gene", **fractions)
    assert "locus units" not in caplog.text
    caplog.clear()
    transcripts(50).to_parquet(parquet)
    with caplog.at_level(logging.INFO, logger="isoflow.splits"):
        build_splits(parquet, tmp_path / "locus.tsv", "locus", **fractions)
    assert "50 genes in 50 units (locus_tss_distance 1,000 bp); no two genes share" in caplog.text
    assert "within 1,000 bp on either strand" in caplog.text


def test_locus_tss_distance_default_is_the_schema_s():
    assert schema_default("split", "locus_tss_distance") == LOCUS_TSS_DISTANCE
    signature = inspect.signature(split_transcripts)
    assert signature.parameters["locus_tss_distance"].default == LOCUS_TSS_DISTANCE
    assert inspect.signature(locus_units).parameters["tss_distance"].default == LOCUS_TSS_DISTANCE


def test_locus_units_at_gencode_scale_in_seconds():
    """~200k transcripts in ~60k genes (GENCODE's size), loci packed so that genes overlap and
    chain: one pass, no per-gene Python loop."""
    rng = np.random.default_rng(0)
    n = 200_000
    gene = rng.integers(0, 60_000, n)
    start = gene * 40_000 + rng.integers(0, 30_000, n)
    df = pd.DataFrame(
        {
            "gene_id": [f"G{g}" for g in gene],
            "chrom": [f"chr{g % 23 + 1}" for g in gene],
            "strand": np.where(gene % 2, "+", "-"),
            "tss": start,
            "exon_starts": [[s, s + 5_000] for s in start],
            "exon_ends": [[s + 200, s + 5_300] for s in start],
        }
    )
    began = time.perf_counter()
    units = locus_units(df, 1000)
    assert time.perf_counter() - began < 20
    assert len(units) == df["gene_id"].nunique()
