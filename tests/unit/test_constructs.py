"""isoflow.constructs: construct TSV / GenBank input, its one-line errors, and the three model
inputs (DNA window in the training convention, RNA, protein)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pysam
import pytest
from Bio.Seq import Seq
from Bio.SeqFeature import CompoundLocation, SeqFeature, SimpleLocation
from Bio.SeqIO import write as write_seqio
from Bio.SeqRecord import SeqRecord

from isoflow import demo
from isoflow.alphabet import DNA_LETTERS, reverse_complement
from isoflow.constructs import (
    AAV_LIMIT,
    PARTS,
    Construct,
    ModelInputs,
    construct_inputs,
    read_background,
    read_constructs,
    write_constructs_tsv,
)
from isoflow.errors import InputError
from isoflow.genome import GenomeWindows
from isoflow.sequences import window_bounds

PROMOTER = "GGGCGGGGCCTATAAAAGG"  # 19 nt
UTR5 = "ACCGCCACC"  # 9 nt
CDS = "ATGAAACGTTAA"  # M K R stop
UTR3 = "TTATTTATTTAGC"  # 13 nt
POLYA = "AATAAAGCATTTTTTTCACTGC"
HEADER = "id\tpromoter\tutr5\tcds\tutr3"


def tsv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "c.tsv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row(cid="c1", promoter=PROMOTER, utr5=UTR5, cds=CDS, utr3=UTR3) -> str:
    return "\t".join([cid, promoter, utr5, cds, utr3])


def error(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        read_constructs(path, **kwargs)
    return str(err.value)


def random_dna(rng, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=n))


# --- the construct ----------------------------------------------------------------------


def test_construct_parts_cassette_tss_rna_protein():
    c = Construct("c", {"cds": CDS, "utr3": UTR3, "upstream": "TT", "promoter": PROMOTER})
    c = Construct("c", {**c.parts, "utr5": UTR5.lower(), "polya": POLYA})
    assert list(c.parts) == ["upstream", "promoter", "utr5", "cds", "utr3", "polya"]
    assert c.cassette == "TT" + PROMOTER + UTR5 + CDS + UTR3 + POLYA
    assert c.tss == 2 + len(PROMOTER)
    assert c.cassette[c.tss :].startswith(UTR5)
    assert c.rna == UTR5 + CDS + UTR3
    assert c.protein == "MKR"
    assert c.spans["cds"] == (c.tss + len(UTR5), c.tss + len(UTR5) + len(CDS))
    with pytest.raises(TypeError):
        c.parts["cds"] = "ATG"  # read-only


# --- TSV --------------------------------------------------------------------------------


def test_tsv_reads_parts_optional_columns_and_extra_columns(tmp_path):
    path = tsv(
        tmp_path,
        "\t".join(["c1", PROMOTER.lower(), UTR5, CDS, UTR3, POLYA, "", "1.5"]),
        "\t".join(["c2", PROMOTER, UTR5, CDS, UTR3, "", "GATC", "0.2"]),
        header=HEADER + "\tpolyA\tdownstream\tliver",
    )
    c1, c2 = read_constructs(path)
    assert (c1.id, c1.source, dict(c1.extra)) == ("c1", f"{path}:2", {"liver": "1.5"})
    assert dict(c1.parts) == {
        "promoter": PROMOTER,
        "utr5": UTR5,
        "cds": CDS,
        "utr3": UTR3,
        "polya": POLYA,
    }
    assert list(c2.parts) == ["promoter", "utr5", "cds", "utr3", "downstream"]
    assert c2.cassette.endswith(UTR3 + "GATC") and c2.extra["liver"] == "0.2"


def test_tsv_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    made = [
        Construct(
            f"c{i}",
            {"upstream": random_dna(rng, 30), "promoter": random_dna(rng, 50), "utr5": UTR5}
            | {"cds": CDS, "utr3": UTR3, "polya": POLYA},
            extra={"group": f"g{i % 2}"},
        )
        for i in range(3)
    ]
    path = tmp_path / "out.tsv"
    write_constructs_tsv(made, path, extra=["group"])
    back = read_constructs(path)
    assert [(c.id, dict(c.parts), dict(c.extra)) for c in back] == [
        (c.id, dict(c.parts), dict(c.extra)) for c in made
    ]


def test_error_alphabet_names_letter_and_position(tmp_path):
    path = tsv(tmp_path, row(), row("c2", promoter="ACGTRACG"))
    assert error(path) == (
        f"{path}:3: construct 'c2' part promoter: 'R' at position 5 is not A, C, G, T or N "
        "(case-insensitive); replace it (other IUPAC codes are not read)"
    )


def test_error_cds_length_not_multiple_of_three(tmp_path):
    path = tsv(tmp_path, row(cds="ATGAAACGTTAAA"))
    assert error(path) == (
        f"{path}:2: construct 'c1' part cds: length 13 is not a multiple of 3; fix the CDS "
        "(only scoring takes one as it is: allow_noncanonical_cds)"
    )


def test_error_cds_without_atg(tmp_path):
    path = tsv(tmp_path, row(cds="GTGAAATAA"))
    assert error(path) == (
        f"{path}:2: construct 'c1' part cds: starts with 'GTG', not ATG; fix the CDS (only "
        "scoring takes one as it is: allow_noncanonical_cds)"
    )


def test_error_cds_internal_stop(tmp_path):
    path = tsv(tmp_path, row(cds="ATGTGAAAATAA"))
    assert error(path) == (
        f"{path}:2: construct 'c1' part cds: in-frame stop TGA at codon 2 (position 4) before "
        "the end; a CDS has exactly one stop, its last codon; fix the CDS (only scoring "
        "takes one as it is: allow_noncanonical_cds)"
    )


def test_error_cds_without_terminal_stop(tmp_path):
    path = tsv(tmp_path, row(cds="ATGAAACGT"))
    assert error(path) == (
        f"{path}:2: construct 'c1' part cds: does not end with a stop codon (TAA, TAG, TGA): "
        "last codon CGT; fix the CDS (only scoring takes one as it is: allow_noncanonical_cds)"
    )


def test_allow_noncanonical_cds_reads_each_of_them(tmp_path):
    cdss = ["ATGAAACGTTAAA", "GTGAAATAA", "ATGTGAAAATAA", "ATGAAACGT"]
    path = tsv(tmp_path, *(row(f"c{i}", cds=cds) for i, cds in enumerate(cdss)))
    got = read_constructs(path, allow_noncanonical_cds=True)
    assert [c.protein for c in got] == ["MKR", "VK", "M*K", "MKR"]


def test_error_required_part_empty(tmp_path):
    path = tsv(tmp_path, row(utr5=""))
    assert error(path) == (
        f"{path}:2: construct 'c1' has no utr5: the parts promoter, utr5, cds, utr3 are "
        "required and must not be empty"
    )


def test_error_duplicate_id(tmp_path):
    path = tsv(tmp_path, row("a"), row("b"), "", row("a"))
    assert error(path) == (
        f"{path}:5: construct id 'a' is already used by {path}:2; give each construct its own id"
    )


def test_error_empty_file(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("\n\n")
    assert error(path) == (
        f"{path}: empty file; expected a tab-separated header with id, promoter, utr5, cds, "
        "utr3 (optional polya, upstream, downstream; other columns are kept) and one row per "
        "construct"
    )
    path.write_text(HEADER + "\n")
    assert error(path).startswith(f"{path}: a header but no construct rows; expected ")


def test_error_wrong_header_suggests_the_column(tmp_path):
    path = tsv(tmp_path, row(), header="id\tpromoter\tutr_5\tcds\tutr3")
    assert error(path) == (
        f"{path}:1: header lacks column(s) utr5 (did you mean 'utr_5' for 'utr5'?); expected "
        "a tab-separated header with id, promoter, utr5, cds, utr3 (optional polya, upstream, "
        "downstream; other columns are kept) and one row per construct"
    )


def test_error_row_with_wrong_field_count(tmp_path):
    path = tsv(tmp_path, row(), "c2\tACGT")
    assert error(path) == (
        f"{path}:3: 2 fields, the header has 5; every row needs one (possibly empty) field per "
        "column, tab-separated"
    )


def test_an_unclosed_quote_in_an_id_names_its_line_and_column(tmp_path):
    """A stray leading ``"`` (a quote never closed) was csv's start of a quoted field: the
    rest of the table was read into it and a bare ``_csv.Error`` traceback named no file."""
    rows = [row(f"c{i}") for i in range(400)]
    rows[1] = row('"c1 special')
    path = tsv(tmp_path, *rows)
    message = error(path)
    assert message.startswith(
        f"{path}:3: column 1: '\"c1 special' starts with a quote that does not enclose the "
        "cell (an unclosed quote?)"
    )
    assert "\n" not in message


def test_a_quote_that_does_not_enclose_its_cell_is_an_error_not_another_id(tmp_path):
    # csv read '"AAV9" CAG' as 'AAV9 CAG': an id the file does not hold
    path = tsv(tmp_path, row("c0"), row('"AAV9" CAG'))
    assert error(path).startswith(f"{path}:3: column 1: '\"AAV9\" CAG' starts with a quote")


def test_quoted_cells_read_as_their_text_and_other_quotes_as_written(tmp_path):
    # R's write.table and spreadsheets quote whole cells, a quote inside doubled
    quoted = [f'"{cell}"' for cell in ["id", "promoter", "utr5", "cds", "utr3", "note"]]
    path = tsv(
        tmp_path,
        '"c1"\t' + row()[3:] + '\t"strong, ""ubiquitous"""',
        row('c2 5" end') + '\t5" of the CAG',
        header="\t".join(quoted),
    )
    c1, c2 = read_constructs(path)
    assert (c1.id, c1.parts["promoter"], c1.extra["note"]) == (
        "c1",
        PROMOTER,
        'strong, "ubiquitous"',
    )
    assert (c2.id, c2.extra["note"]) == ('c2 5" end', '5" of the CAG')
    # what write_constructs_tsv writes reads back the same, a cell starting with a quote too
    c3 = Construct("c3", c1.parts, extra={"note": '"quoted" start'})
    write_constructs_tsv([c1, c2, c3], tmp_path / "out.tsv", extra=["note"])
    back = read_constructs(tmp_path / "out.tsv")
    assert [(c.id, dict(c.extra)) for c in back] == [(c.id, dict(c.extra)) for c in (c1, c2, c3)]


def test_a_part_longer_than_csvs_field_limit_reads(tmp_path):
    # csv stops at 131,072 characters a field: a full cassette, a long promoter, is longer
    rng = np.random.default_rng(0)
    promoter = random_dna(rng, 200_000)
    path = tsv(tmp_path, row(promoter=promoter), row("c2"))
    c1, c2 = read_constructs(path)
    assert c1.parts["promoter"] == promoter and c2.id == "c2"


def test_a_nul_character_names_its_line(tmp_path):
    path = tsv(tmp_path, row(), row("c2", utr3="TTA\0TT"))
    assert error(path).startswith(f"{path}:3: a NUL character: not a text table")


@pytest.mark.parametrize("encoding", ["utf-16", "latin1 of utf-16", "utf-16-le"])
def test_a_utf16_table_is_named_so_not_a_nul_character(tmp_path, encoding):
    # UTF-16 run through the latin1 advice (or without a byte-order mark) decodes as UTF-8
    # and was "a NUL character: not a text table"
    text = (tsv(tmp_path, row(), row("c2"))).read_text()
    data = text.encode(encoding.rpartition(" ")[2])
    if encoding.startswith("latin1"):
        data = data.decode("latin1").encode()
    path = tmp_path / "u.tsv"
    path.write_bytes(data)
    assert error(path).startswith(
        f"{path}: UTF-16 text, not UTF-8: save as UTF-8 (iconv -f utf-16 -t utf-8)"
    )


def test_extra_column_close_to_a_part_name_warns(tmp_path, caplog):
    path = tsv(tmp_path, row() + f"\t{POLYA}", header=HEADER + "\tpoly_a")
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        (c,) = read_constructs(path)
    assert "polya" not in c.parts and c.extra == {"poly_a": POLYA}
    assert f"{path}:1: column 'poly_a' is kept as an extra column, not read as a part" in (
        caplog.text
    )


def test_aav_limit_warns_or_fails(tmp_path, caplog):
    big = "A" * (AAV_LIMIT + 1 - len(PROMOTER + UTR5 + CDS + UTR3))
    path = tsv(tmp_path, row() + "\t" + big, header=HEADER + "\tupstream")
    assert read_constructs(path)  # not an AAV table: no check
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        read_constructs(path, aav=True)
    message = (
        f"{path}:2: construct 'c1' cassette (all parts and flanks, no ITRs annotated) is "
        f"4,701 nt, above the AAV packaging limit of 4,700 nt; shorten it, or raise aav_limit "
        "if your vector packs more"
    )
    assert message in caplog.text
    assert error(path, aav=True, aav_limit_action="error") == message
    assert read_constructs(path, aav=True, aav_limit=5000, aav_limit_action="error")


# --- GenBank ----------------------------------------------------------------------------


def feature(start: int, end: int, kind: str, label: str, strand: int = 1, **quals):
    qualifiers = {"label": [label], **{k: [v] for k, v in quals.items()}}
    return SeqFeature(SimpleLocation(start, end, strand=strand), type=kind, qualifiers=qualifiers)


def cassette_record(name: str, rng, itrs: bool = True, utrs: bool = True) -> tuple:
    """A plasmid-like record: backbone, [ITR], spacer, promoter, 5'UTR, CDS, 3'UTR, polyA,
    spacer, [ITR], backbone with an AmpR CDS; the parts it should read as."""
    pieces = {
        "backbone5": random_dna(rng, 40),
        "itr5": "TTGGCCACTCCCTCTCTGCGCG" if itrs else "",
        "spacer5": random_dna(rng, 15),
        "promoter": random_dna(rng, 60),
        "utr5": UTR5,
        "cds": CDS,
        "utr3": UTR3,
        "polya": POLYA,
        "spacer3": random_dna(rng, 12),
        "itr3": "CGCGCAGAGAGGGAGTGGCCAA" if itrs else "",
        "backbone3": random_dna(rng, 10) + "ATGTTTAAA" + random_dna(rng, 10),
    }
    at, spans = 0, {}
    for key, seq in pieces.items():
        spans[key] = (at, at + len(seq))
        at += len(seq)
    features = [
        feature(*spans["promoter"], "promoter", "CMV promoter"),
        feature(*spans["cds"], "CDS", "EGFP"),
        feature(*spans["polya"], "polyA_signal", "bGH poly(A) signal"),
    ]
    if utrs:
        features += [
            feature(*spans["utr5"], "5'UTR", "leader"),
            feature(*spans["utr3"], "3'UTR", "trailer"),
        ]
    if itrs:
        features += [
            feature(*spans["itr5"], "repeat_region", "AAV2 ITR"),
            feature(*spans["itr3"], "misc_feature", "3' ITR"),
        ]
        b = spans["backbone3"][0] + 10
        features.append(feature(b, b + 9, "CDS", "AmpR"))  # outside the ITRs: ignored
    seq = "".join(pieces.values())
    record = SeqRecord(Seq(seq), id=name, name=name, description="test cassette")
    record.annotations["molecule_type"] = "DNA"
    record.features = features
    parts = {p: pieces[p] for p in ("promoter", "utr5", "cds", "utr3", "polya")}
    if itrs:
        parts["upstream"] = pieces["itr5"] + pieces["spacer5"]
        parts["downstream"] = pieces["spacer3"] + pieces["itr3"]
    return record, parts


def write_gb(path: Path, *records) -> Path:
    write_seqio(list(records), path, "genbank")
    return path


def test_genbank_round_trip_with_itrs_multi_record_and_folder(tmp_path):
    rng = np.random.default_rng(0)
    (r1, p1), (r2, p2) = cassette_record("pAAV1", rng), cassette_record("pAAV2", rng)
    path = write_gb(tmp_path / "two.gb", r1, r2)
    c1, c2 = read_constructs(path)
    assert (c1.id, c1.source, c1.itrs) == ("pAAV1", f"{path}:pAAV1", True)
    assert dict(c1.parts) == {p: p1[p] for p in PARTS if p in p1}
    assert dict(c2.parts) == {p: p2[p] for p in PARTS if p in p2}
    assert c1.cassette.startswith("TTGGCCACT") and c1.cassette.endswith("GTGGCCAA")
    assert c1.rna == UTR5 + CDS + UTR3 and c1.protein == "MKR"
    folder = tmp_path / "maps"
    folder.mkdir()
    (r3, p3) = cassette_record("pAAV3", rng, itrs=False)
    write_gb(folder / "b.gbk", r3)
    write_gb(folder / "a.gb", r1)
    (folder / "notes.txt").write_text("not read")
    got = read_constructs(folder)
    assert [c.id for c in got] == ["pAAV1", "pAAV3"]
    assert dict(got[1].parts) == p3 and not got[1].itrs


def test_a_folder_reads_each_file_as_a_single_file_is_read_and_names_what_it_skips(
    tmp_path, caplog
):
    """A .gbff in a folder was skipped without a word (only .gb/.gbk/.genbank names were
    read), though the same file given alone is read by its LOCUS line; and a TSV beside the
    maps was dropped silently. Each file is known as a single file is; every other entry
    but a hidden one is a warning naming it."""
    rng = np.random.default_rng(1)
    (r1, _), (r2, p2) = cassette_record("pA", rng), cassette_record("pB", rng, itrs=False)
    folder = tmp_path / "maps"
    folder.mkdir()
    write_gb(folder / "a.gb", r1)
    gbff = write_gb(folder / "b.gbff", r2)
    assert [c.id for c in read_constructs(gbff)] == ["pB"]  # alone: known by its LOCUS line
    table = folder / "c.tsv"
    table.write_text("id\tpromoter\tutr5\tcds\tutr3\nc1\tACGT\tACGT\tATGAAATAA\tACGT\n")
    (folder / ".DS_Store").write_bytes(b"\0\0")
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        got = read_constructs(folder)
    assert [c.id for c in got] == ["pA", "pB"]
    assert dict(got[1].parts) == p2
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == 1
    assert skipped[0].startswith(f"{table}: skipped: not a GenBank file (named .gb, .gbk, ")


def test_genbank_minus_strand_cassette_reads_on_its_sense_strand(tmp_path):
    record, parts = cassette_record("pRev", np.random.default_rng(2))
    flipped = record.reverse_complement(id=True, name=True, description=True, annotations=True)
    assert all(f.location.strand == -1 for f in flipped.features)
    (c,) = read_constructs(write_gb(tmp_path / "rev.gb", flipped))
    assert dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}


@pytest.mark.parametrize("codon_start", [2, 3])
def test_genbank_codon_start_moves_the_cds_start_on_either_strand(tmp_path, codon_start):
    """A CDS feature drawn 1-2 bases early with /codon_start=2 or 3 (the first whole codon):
    was read from its first base, refused as "not a multiple of 3" or, with
    allow_noncanonical_cds, misframed. Its leading bases are the 5'UTR's."""
    record, parts = cassette_record("pCS", np.random.default_rng(4))
    lead = codon_start - 1
    for i, f in enumerate(record.features):
        start, end = int(f.location.start), int(f.location.end)
        if f.type == "CDS" and f.qualifiers["label"] == ["EGFP"]:
            record.features[i] = feature(start - lead, end, "CDS", "EGFP", codon_start=codon_start)
        elif f.type == "5'UTR":
            record.features[i] = feature(start, end - lead, "5'UTR", "leader")
    expected = {p: parts[p] for p in PARTS if p in parts}
    (c,) = read_constructs(write_gb(tmp_path / "fwd.gb", record))
    assert dict(c.parts) == expected and c.protein == "MKR"
    flipped = record.reverse_complement(id=True, name=True, description=True, annotations=True)
    (c,) = read_constructs(write_gb(tmp_path / "rev.gb", flipped))
    assert dict(c.parts) == expected and c.protein == "MKR"


@pytest.mark.parametrize("given", ["4", "0"])
def test_genbank_codon_start_outside_1_to_3_is_refused(tmp_path, given):
    record, _ = cassette_record("pCS", np.random.default_rng(4))
    cds = next(f for f in record.features if f.qualifiers["label"] == ["EGFP"])
    cds.qualifiers["codon_start"] = [given]
    path = write_gb(tmp_path / "bad.gb", record)
    assert error(path) == (
        f"{path}:pCS: construct 'pCS': CDS feature 'EGFP' "
        f"{int(cds.location.start) + 1}..{int(cds.location.end)} has /codon_start={given}; "
        "GenBank allows 1, 2 or 3: fix the qualifier"
    )


def test_genbank_codon_start_past_a_short_cds_features_end_is_refused(tmp_path):
    """A 2-base CDS feature with /codon_start=3 has no base from its first codon on."""
    record, _ = cassette_record("pCS", np.random.default_rng(4))
    for i, f in enumerate(record.features):
        if f.type == "CDS" and f.qualifiers["label"] == ["EGFP"]:
            start = int(f.location.start)
            record.features[i] = feature(start, start + 2, "CDS", "EGFP", codon_start=3)
    path = write_gb(tmp_path / "short.gb", record)
    assert error(path) == (
        f"{path}:pCS: construct 'pCS': CDS feature 'EGFP' {start + 1}..{start + 2} has "
        "/codon_start=3 and no base from there on; fix the feature"
    )


def test_genbank_unannotated_utrs_are_the_gaps_and_regulatory_promoter(tmp_path):
    record, parts = cassette_record("pGap", np.random.default_rng(3), itrs=False, utrs=False)
    promoter = record.features[0]
    record.features[0] = feature(
        int(promoter.location.start),
        int(promoter.location.end),
        "regulatory",
        "CAG",
        regulatory_class="promoter",
    )
    (c,) = read_constructs(write_gb(tmp_path / "gap.gb", record))
    assert dict(c.parts) == parts  # 5'UTR: promoter end -> CDS; 3'UTR: CDS end -> polyA


def test_genbank_aav_size_between_itrs(tmp_path, caplog):
    record, _ = cassette_record("pBig", np.random.default_rng(4))
    size = len(read_constructs(write_gb(tmp_path / "a.gb", record))[0].cassette)
    path = tmp_path / "a.gb"
    assert error(path, aav_limit=size - 1, aav_limit_action="error") == (
        f"{path}:pBig: construct 'pBig' cassette between the ITRs (inclusive) is {size} nt, "
        f"above the AAV packaging limit of {size - 1} nt; shorten it, or raise aav_limit if "
        "your vector packs more"
    )
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        read_constructs(path, aav_limit=size - 1)
    assert "cassette between the ITRs (inclusive)" in caplog.text


def test_genbank_errors_name_record_part_and_fix(tmp_path):
    rng = np.random.default_rng(5)
    record, _ = cassette_record("pBad", rng, itrs=False)
    path = tmp_path / "bad.gb"

    no_promoter = record[:]
    no_promoter.features = [f for f in record.features if f.type != "promoter"]
    write_gb(path, no_promoter)
    assert error(path) == (
        f"{path}:pBad: construct 'pBad' has no promoter: annotate a promoter feature"
    )

    two_cds = record[:]
    two_cds.features = [
        *record.features,
        feature(len(record) - 19, len(record) - 10, "CDS", "AmpR"),
    ]
    write_gb(path, two_cds)
    cds = next(f for f in record.features if f.type == "CDS")
    start, end = int(cds.location.start) + 1, int(cds.location.end)
    assert error(path) == (
        f"{path}:pBad: 2 CDS features ('EGFP' {start}..{end}, 'AmpR' {len(record) - 18}.."
        f"{len(record) - 10}); keep one cassette per record: annotate the two ITRs around it, "
        "or retype the others (e.g. misc_feature)"
    )

    one_itr = record[:]
    one_itr.features = [*record.features, feature(0, 20, "repeat_region", "ITR")]
    write_gb(path, one_itr)
    assert error(path) == (
        f"{path}:pBad: 1 ITR feature(s) ('ITR' 1..20); annotate two (one at each end of the "
        "cassette) or none"
    )

    mixed = record[:]
    mixed.features = [
        feature(int(f.location.start), int(f.location.end), f.type, _lab(f), strand=-1)
        if f.type == "polyA_signal"
        else f
        for f in record.features
    ]
    write_gb(path, mixed)
    assert "polyA_signal feature 'bGH poly(A) signal'" in error(path)
    assert error(path).endswith(
        "is on the other strand than the CDS; a cassette's parts read on one strand"
    )

    path.write_text("")
    assert error(path) == f"{path}: empty file: no GenBank records (LOCUS ... //)"


def _lab(f) -> str:
    return f.qualifiers["label"][0]


def test_genbank_parts_out_of_order(tmp_path):
    record, _ = cassette_record("pOrder", np.random.default_rng(6), itrs=False, utrs=False)
    cds = next(f for f in record.features if f.type == "CDS")
    record.features = [
        f
        if f.type != "promoter"
        else feature(int(cds.location.end), int(cds.location.end) + 5, "promoter", "late")
        for f in record.features
    ]
    path = write_gb(tmp_path / "o.gb", record)
    c0 = int(cds.location.end) + 6
    assert error(path) == (
        f"{path}:pOrder: construct 'pOrder': TSS (5'UTR start, else promoter end) ({c0}) "
        f"comes after CDS start ({int(cds.location.start) + 1}); the parts must follow each "
        "other 5'->3': promoter, 5'UTR, CDS, 3'UTR, polyA"
    )


# --- the three model inputs ---------------------------------------------------------------


@pytest.mark.parametrize("window", [80, 81])
def test_window_puts_tss_at_the_training_offset_with_n_fill(window):
    c = Construct("c", {"promoter": PROMOTER, "utr5": UTR5, "cds": CDS, "utr3": UTR3})
    got = construct_inputs(c, window=window)
    assert isinstance(got, ModelInputs) and len(got.dna) == window
    centre = window // 2
    assert got.dna[centre : centre + len(UTR5)] == UTR5
    assert got.dna[centre - len(PROMOTER) : centre] == PROMOTER
    assert got.dna == (
        "N" * (centre - len(PROMOTER))
        + c.cassette
        + "N" * (window - centre - len(c.cassette) + len(PROMOTER))
    )
    assert (got.id, got.rna, got.protein) == ("c", UTR5 + CDS + UTR3, "MKR")
    assert construct_inputs(c, window=window, fill="a").dna.count("A") >= window - len(c.cassette)


@pytest.mark.parametrize("strand", ["+", "-"])
@pytest.mark.parametrize("window", [200, 201])
def test_window_equals_the_training_window_of_the_same_sequence_in_a_genome(
    tmp_path, strand, window
):
    """Placed in a genome on either strand, the cassette's training window (window_bounds +
    GenomeWindows.tokens, as the loader reads it) is what construct_inputs gives."""
    rng = np.random.default_rng(7)
    c = Construct(
        "c",
        {"upstream": random_dna(rng, 300), "promoter": PROMOTER, "utr5": UTR5}
        | {"cds": CDS, "utr3": UTR3, "downstream": random_dna(rng, 300)},
    )
    left, right = random_dna(rng, 50), random_dna(rng, 70)
    placed = c.cassette if strand == "+" else reverse_complement(c.cassette)
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">chr1\n{left}{placed}{right}\n")
    pysam.faidx(str(fasta))
    tss = len(left) + (c.tss if strand == "+" else len(c.cassette) - 1 - c.tss)
    start, end = window_bounds(tss, strand, window)
    with GenomeWindows(fasta) as genome:
        tokens = genome.tokens("chr1", start, end, strand)
    assert construct_inputs(c, window=window).dna == "".join(DNA_LETTERS[t] for t in tokens)


def test_background_fill_centres_the_background_on_the_tss(tmp_path):
    c = Construct("c", {"promoter": PROMOTER, "utr5": UTR5, "cds": CDS, "utr3": UTR3})
    background = "ac" * 60 + "G" + "TA" * 60  # 241 nt, centre base (index 120) G
    got = construct_inputs(c, window=100, background=background).dna
    ground = background[120 - 50 : 120 + 50].upper()
    assert len(got) == 100 and got[50:59] == UTR5
    start = 50 - len(PROMOTER)
    assert got == ground[:start] + c.cassette + ground[start + len(c.cassette) :]
    exact = construct_inputs(c, window=100, background="T" * 100).dna
    assert exact == "T" * start + c.cassette + "T" * (100 - start - len(c.cassette))
    with pytest.raises(ValueError, match="background is 99 nt, shorter than the 100-nt DNA"):
        construct_inputs(c, window=100, background="C" * 99)
    with pytest.raises(ValueError, match="background: 'R' at position 2"):
        construct_inputs(c, window=100, background="ARC" * 50)
    fasta = tmp_path / "bg.fa"
    fasta.write_text(">bg\nacgt\nACGN\n")
    assert read_background(fasta) == "ACGTACGN"


def test_window_cuts_a_long_cassette_and_says_so(caplog):
    c = Construct("long", {"promoter": "C" * 40, "utr5": UTR5, "cds": CDS, "utr3": "G" * 100})
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        got = construct_inputs(c, window=50)
    assert got.dna == "C" * 25 + c.cassette[40:65]
    assert (
        "construct 'long': the 161-nt cassette runs past the 50-nt DNA window; the window "
        "holds cassette bases 16-65 (1-based, TSS at 41), 25 nt upstream of the TSS and 25 "
        "from it"
    ) in caplog.text


def test_rna_options_polya_part_and_tail():
    c = Construct(
        "c", {"promoter": PROMOTER, "utr5": UTR5, "cds": CDS, "utr3": UTR3, "polya": POLYA}
    )
    assert construct_inputs(c, window=10).rna == UTR5 + CDS + UTR3
    assert construct_inputs(c, window=10, polya_in_rna=True, polya_tail=5).rna == (
        UTR5 + CDS + UTR3 + POLYA + "AAAAA"
    )


# --- demo cassettes -----------------------------------------------------------------------


def test_demo_constructs_carry_the_planted_signal(tmp_path):
    path = demo.write_demo_constructs(tmp_path / "c.tsv", seed=0, background=tmp_path / "bg.fa")
    again = demo.write_demo_constructs(tmp_path / "d.tsv", seed=0)
    assert path.read_bytes() == again.read_bytes()
    constructs = {c.id: c for c in read_constructs(path)}
    assert len(constructs) == 8
    for c in constructs.values():
        d = demo.gc_fraction(c.parts["promoter"])
        r = 100 * demo.count_motif(c.parts["utr3"], demo.UTR3_MOTIF) / len(c.rna)
        p = sum(c.protein.count(x) for x in demo.PROTEIN_RESIDUES) / len(c.protein)
        assert [float(c.extra[k]) for k in ("dna_value", "rna_value", "protein_value")] == (
            pytest.approx([d, r, p], abs=1e-6)
        )
        assert len(c.parts["promoter"]) == demo.PROMOTER_LEN
    hi, lo = constructs["strongP_noARE_highKR"], constructs["weakP_ARE_lowKR"]
    assert float(hi.extra["dna_value"]) > 0.65 and float(lo.extra["dna_value"]) < 0.35
    assert float(lo.extra["rna_value"]) > 3 > float(hi.extra["rna_value"])
    base = {k: float(c.extra["expected_base"]) for k, c in constructs.items()}
    assert max(base, key=base.get) == hi.id and min(base, key=base.get) == lo.id
    background = read_background(tmp_path / "bg.fa")
    assert len(background) == 2048 and 0.36 < demo.gc_fraction(background) < 0.46
    # The whole 1 kb promoter lies in the demo's 2,048-nt window, as in training.
    dna = construct_inputs(hi, window=2048, background=background).dna
    assert dna[1024 - demo.PROMOTER_LEN : 1024] == hi.parts["promoter"]


def test_unreadable_inputs_are_one_line_errors(tmp_path):
    gb = tmp_path / "bad.gb"
    gb.write_text("LOCUS       x  10 bp DNA\nFEATURES   garbage\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Biopython's parser warnings stay inside the line
        message = error(gb)
    assert message.startswith(f"{gb}: not a GenBank file Biopython can read: ")
    table = tmp_path / "bad.tsv"
    table.write_bytes(b"id\tpromoter\nc\xff\n")
    assert error(table) == (
        f"{table}:2: byte 0xff at column 2 is not UTF-8; re-encode the file as UTF-8 "
        "(e.g. iconv -f latin1 -t utf-8)"
    )
    empty_id = tsv(tmp_path, row(cid=" "))
    assert error(empty_id) == f"{empty_id}:2: empty id; give each construct an id"


def test_module_is_torch_free():
    code = (
        "import sys, isoflow.constructs; "
        "print(sorted(m for m in ('torch', 'Bio', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # Biopython loads only to read GenBank


def test_genbank_flank_misc_features_without_itrs(tmp_path):
    """A record without ITRs reads flanks from `misc_feature`s labelled upstream /
    downstream (as `isoflow design` writes them), reaching the promoter / the polyA end;
    with two ITRs those define the flanks and the labels change nothing."""
    record, parts = cassette_record("pFlank", np.random.default_rng(8), itrs=False)
    promoter, polya = record.features[0], record.features[2]
    up = (5, int(promoter.location.start))
    down = (int(polya.location.end), int(polya.location.end) + 20)
    record.features += [feature(*up, "misc_feature", "upstream", note="enhancer and spacer")]
    record.features += [feature(*down, "misc_feature", "Downstream")]
    (c,) = read_constructs(write_gb(tmp_path / "flank.gb", record))
    seq = str(record.seq)
    assert dict(c.parts) == {
        "upstream": seq[slice(*up)],
        **{p: parts[p] for p in ("promoter", "utr5", "cds", "utr3", "polya")},
        "downstream": seq[slice(*down)],
    }
    assert not c.itrs
    bad = record[:]
    bad.features = [
        *record.features[:-2],
        feature(up[1] + 3, up[1] + 9, "misc_feature", "upstream"),
    ]
    path = write_gb(tmp_path / "bad.gb", bad)
    with pytest.raises(
        InputError, match=r"bad\.gb:pFlank: .*upstream misc_feature .* starts after"
    ):
        read_constructs(path)
    with_itrs, itr_parts = cassette_record("pBoth", np.random.default_rng(9))
    with_itrs.features.append(feature(0, 30, "misc_feature", "upstream"))
    (c,) = read_constructs(write_gb(tmp_path / "both.gb", with_itrs))
    assert c.itrs and dict(c.parts) == {p: itr_parts[p] for p in PARTS if p in itr_parts}


def _moved(record, label, start=None, end=None):
    """``record`` with the feature labelled ``label`` given new 0-based bounds."""
    out = record[:]
    out.annotations = dict(record.annotations)
    out.features = []
    for f in record.features:
        if f.qualifiers.get("label") == [label]:
            loc = f.location
            f = feature(
                loc.start if start is None else start,
                loc.end if end is None else end,
                f.type,
                label,
            )
        out.features.append(f)
    return out


def test_genbank_overlapping_parts_are_refused_and_gaps_follow_the_definitions(tmp_path):
    # parts were cut at feature starts only: an overlap went silently to one part, and a
    # feature past the sequence's end was read short. A gap is no ambiguity: its bases go
    # where docs/constructs.md's definitions put them (a Kozak between 5'UTR and CDS stays
    # in the 5'UTR), as SnapGene/Benchling maps with unannotated bases need
    record, _ = cassette_record("c1", np.random.default_rng(0), itrs=False)
    whole = read_constructs(write_gb(tmp_path / "whole.gb", record))[0].parts
    bounds = {
        label: (int(f.location.start), int(f.location.end))
        for f in record.features
        for label in f.qualifiers["label"]
    }
    cds_start = bounds["EGFP"][0]
    overlap = write_gb(tmp_path / "o.gb", _moved(record, "leader", end=cds_start + 3))
    assert "the 5'UTR feature 'leader'" in error(overlap)
    assert "and the CDS feature 'EGFP'" in error(overlap) and "overlap by 3 nt" in error(overlap)
    assert ":c1:" in error(overlap)
    past = write_gb(tmp_path / "p.gb", _moved(record, "bGH poly(A) signal", end=len(record) + 5))
    assert f"runs past the sequence's end ({len(record)} bp)" in error(past)
    gaps = {
        "promoter|5'UTR": _moved(record, "CMV promoter", end=bounds["CMV promoter"][1] - 12),
        "5'UTR|CDS (a Kozak)": _moved(record, "leader", end=bounds["leader"][1] - 6),
        "CDS|3'UTR": _moved(record, "trailer", start=bounds["trailer"][0] + 9),
    }
    for name, moved in gaps.items():
        parts = read_constructs(write_gb(tmp_path / "gap.gb", moved))[0].parts
        assert parts == whole, name  # the bases go to the part the definitions give
    # as documented: a promoter overlapping the 5'UTR is cut at the TSS
    promoter = write_gb(tmp_path / "ok.gb", _moved(record, "CMV promoter", end=bounds["leader"][1]))
    assert read_constructs(promoter)[0].parts["utr5"] == UTR5


def _ncbi_record(name: str, rng, signal: tuple[int, int], kind: str = "polyA_signal"):
    """An NCBI-style mRNA record: promoter, 5'UTR, CDS, a 3'UTR running to the mRNA's end
    and a polyA signal feature at ``signal`` (offsets in the 3'UTR; may reach past it)."""
    utr3 = random_dna(rng, 50).replace("AATAAA", "AACAAA")
    utr3 = utr3[:30] + "AATAAA" + utr3[36:]
    tail = random_dna(rng, 10)
    seq = PROMOTER + UTR5 + CDS + utr3 + tail
    a = len(PROMOTER + UTR5 + CDS)
    quals = {"regulatory_class": "polyA_signal_sequence"} if kind == "regulatory" else {}
    features = [
        feature(0, len(PROMOTER), "promoter", "p"),
        feature(len(PROMOTER), len(PROMOTER + UTR5), "5'UTR", "leader"),
        feature(len(PROMOTER + UTR5), a, "CDS", "X"),
        feature(a, a + len(utr3), "3'UTR", "trailer"),
        feature(a + signal[0], a + signal[1], kind, "PAS", **quals),
    ]
    record = SeqRecord(Seq(seq), id=name, name=name, description="NCBI-style mRNA")
    record.annotations["molecule_type"] = "DNA"
    record.features = features
    return record, utr3, tail


def test_genbank_polya_signal_inside_the_3utr_keeps_its_position(tmp_path):
    # an NCBI-style record's polyA_signal inside its 3'UTR left no polya part and no trace of
    # where it was, so isoflow design took the cassette's only signal for a cryptic one
    for kind in ("polyA_signal", "regulatory"):
        record, utr3, _ = _ncbi_record("m1", np.random.default_rng(8), (30, 36), kind)
        (c,) = read_constructs(write_gb(tmp_path / f"{kind}.gb", record))
        assert "polya" not in c.parts and c.parts["utr3"] == utr3
        assert c.polya_site == (30, 36), kind
        assert c.parts["utr3"][slice(*c.polya_site)] == "AATAAA"
    # read on the minus strand: the same site
    flipped = record.reverse_complement(id=True, name=True, description=True, annotations=True)
    (c,) = read_constructs(write_gb(tmp_path / "rev.gb", flipped))
    assert c.polya_site == (30, 36)
    # a signal reaching past the 3'UTR: the part past it is the polya part, the rest the site
    record, utr3, tail = _ncbi_record("m2", np.random.default_rng(9), (44, 56))
    (c,) = read_constructs(write_gb(tmp_path / "over.gb", record))
    assert c.polya_site == (44, 50) and c.parts["polya"] == tail[:6]
    # a polyA signal after the 3'UTR (a plasmid map): no site, the polya part as before
    record, _ = cassette_record("pA", np.random.default_rng(10), itrs=False)
    assert read_constructs(write_gb(tmp_path / "pa.gb", record))[0].polya_site is None
    with pytest.raises(ValueError, match="not a span of the 13-nt 3'UTR"):
        Construct("c", {"promoter": "A", "utr5": "C", "cds": CDS, "utr3": UTR3}, polya_site=(5, 20))


def test_genbank_cut_short_or_with_a_byte_order_mark(tmp_path):
    record, parts = cassette_record("c1", np.random.default_rng(1), itrs=False)
    whole = write_gb(tmp_path / "w.gb", record).read_text()
    bom = tmp_path / "bom.gb"
    bom.write_text("\ufeff" + whole, encoding="utf-8")  # read as empty before
    assert read_constructs(bom)[0].parts["cds"] == parts["cds"]
    cut = tmp_path / "cut.gb"
    cut.write_text(whole[: whole.index("ORIGIN") + 200])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Biopython warning leaks out
        message = error(cut)
    assert message.startswith(f"{cut}: Expected sequence length {len(record)}, found ")
    assert message.endswith("the file is cut short or damaged; write it again")


def test_placement_is_checked_once_naming_the_option_or_the_fasta():
    # a short background was blamed on the first construct ("<input>:c1: background is ...")
    from isoflow.constructs import check_placement

    check_placement(100, fill="n")
    with pytest.raises(InputError, match=r"^bg\.fa: the background is 40 nt, shorter than"):
        check_placement(100, background="ACGT" * 10, background_path="bg.fa")
    with pytest.raises(InputError, match=r"^fill: one letter of A, C, G, T, N, not 'Z'$"):
        check_placement(100, fill="Z")
    with pytest.raises(InputError, match=r"^polya_tail: must be >= 0, not -5$"):
        check_placement(100, polya_tail=-5)


# --- ITR labels, split features, the origin -------------------------------------------------


def _relabel_itrs(record, label5: str, label3: str, kind: str | None = None, **quals):
    """``record`` (from :func:`cassette_record` with ITRs) with its two ITR features
    relabelled (``kind``: retyped too; ``quals``: e.g. a ``note``); the other features as
    they were."""
    out = record[:]
    out.annotations = dict(record.annotations)
    itrs = [f for f in record.features if "ITR" in _lab(f)]
    assert len(itrs) == 2
    relabelled = {id(itrs[0]): label5, id(itrs[1]): label3}
    out.features = [
        feature(
            int(f.location.start), int(f.location.end), kind or f.type, relabelled[id(f)], **quals
        )
        if id(f) in relabelled
        else f
        for f in record.features
    ]
    return out


ITR_LABELS = [
    ("ITR_L", "ITR_R"),
    ("AAV2_ITR", "AAV2_ITR"),
    ("ITR2", "ITR2"),
    ("ITRs", "ITRs"),
    ("mITR", "ITR"),
    ("5'ITR", "3'ITR"),
    ("L-ITR", "R-ITR"),
    ("left ITR", "right ITR"),
    ("AAV ITR (left)", "AAV ITR (right)"),
    ("AAV2 ITR", "AAV2 ITR"),
    ("LITR", "RITR"),
    ("5' itr", "3' itr"),
    ("inverted terminal repeat", "Inverted_terminal_repeat"),
    ("ITRS", "ITRS"),
    ("wtITR", "scITR"),
    ("flipITR", "flopITR"),
    ("AAVITR", "AAV2ITR"),
    ("ITRleft", "ITRright"),
]


@pytest.mark.parametrize(("label5", "label3"), ITR_LABELS)
def test_genbank_itr_labels_with_underscores_digits_plurals_and_prefixes(
    label5, label3, tmp_path, caplog
):
    # `\bITR\b` missed ITR_L, AAV2_ITR, ITR2, ITRs, mITR (`_` and digits are word
    # characters): the backbone's AmpR CDS then counted as a second CDS, and a map without
    # an annotated backbone lost its flanks and the AAV size check without a word
    record, parts = cassette_record("pLab", np.random.default_rng(11))
    path = write_gb(tmp_path / "lab.gb", _relabel_itrs(record, label5, label3))
    (c,) = read_constructs(path)
    assert c.itrs and dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}
    size = len(c.cassette)
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        read_constructs(path, aav_limit=size - 1)
    assert f"cassette between the ITRs (inclusive) is {size} nt" in caplog.text


@pytest.mark.parametrize("label", ["ITRAQ tag", "nitrate reductase", "citrate", "UTR", "mitr"])
def test_genbank_words_holding_itr_are_no_itr_and_the_miss_is_logged(label, tmp_path, caplog):
    record, parts = cassette_record("pNot", np.random.default_rng(12))
    record = _relabel_itrs(record, label, label)
    record.features = [f for f in record.features if _lab(f) != "AmpR"]
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        (c,) = read_constructs(write_gb(tmp_path / "not.gb", record))
    assert not c.itrs and "upstream" not in c.parts
    assert c.parts["cds"] == parts["cds"]
    # one repeat_region among them (cassette_record's 5' ITR): the warning names it
    assert f":pNot: construct 'pNot': its repeat_region features ('{label}' " in caplog.text
    assert "are not read as an ITR pair, so it is read without ITRs" in caplog.text
    assert "holds ITR as a word of its own (ITR, ITRs, ITR_L, AAV2_ITR" in caplog.text


@pytest.mark.parametrize("note", ["multiple cloning site between the ITRs", "itr-proximal"])
def test_genbank_a_note_that_mentions_the_itrs_beside_two_named_ones_is_no_third(note, tmp_path):
    # a misc_feature whose /note only mentions the ITRs counted as a third ITR, refusing a
    # map that read before ("3 ITR feature(s) (... 'MCS' ...)")
    record, parts = cassette_record("pMcs", np.random.default_rng(14))
    itr5 = next(f for f in record.features if "ITR" in _lab(f))
    at = int(itr5.location.end) + 2
    record.features.append(feature(at, at + 6, "misc_feature", "MCS", note=note))
    (c,) = read_constructs(write_gb(tmp_path / "mcs.gb", record))
    assert c.itrs and dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}


def test_genbank_three_features_noting_an_itr_and_none_named_are_refused(tmp_path):
    # with no ITR named, notes that name one count as before: three are refused, not read
    # as a cassette without ITRs without a word
    record, _ = cassette_record("pThree", np.random.default_rng(16))
    at = int(next(f for f in record.features if "ITR" in _lab(f)).location.end) + 2
    record = _relabel_itrs(record, "x", "x", "misc_feature", note="ITR")
    record.features.append(feature(at, at + 6, "misc_feature", "MCS", note="near the ITR"))
    with pytest.raises(InputError, match=r"3 ITR feature\(s\)"):
        read_constructs(write_gb(tmp_path / "three.gb", record))


def test_genbank_itrs_named_in_notes_alone_are_the_pair(tmp_path):
    # what isoflow design writes: flanks labelled upstream/downstream, their notes naming the
    # ITRs; two such notes (and nothing named ITR) make the pair
    record, parts = cassette_record("pNoted", np.random.default_rng(15))
    record = _relabel_itrs(record, "flank", "flank", "misc_feature", note="AAV ITR")
    (c,) = read_constructs(write_gb(tmp_path / "noted.gb", record))
    assert c.itrs and dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}


def test_genbank_circular_map_without_itrs_says_so(tmp_path, caplog):
    record, _ = cassette_record("pCirc", np.random.default_rng(13), itrs=False)
    path = write_gb(tmp_path / "c.gb", record)
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        read_constructs(path)
    assert "ITR" not in caplog.text  # a linear map without repeats: nothing to say
    record.annotations["topology"] = "circular"
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        (c,) = read_constructs(write_gb(path, record))
    assert not c.itrs
    assert (
        f"{path}:pCirc: construct 'pCirc': no feature of this circular map is read as an ITR "
        "pair, so it is read without ITRs (no flanks; no AAV size check unless aav is set); "
        "an ITR is a repeat_region"
    ) in caplog.text


def _joined(pieces, kind: str, label: str, strand: int = 1) -> SeqFeature:
    """A feature in several pieces (0-based half-open), listed 5'->3' on ``strand``."""
    location = CompoundLocation([SimpleLocation(a, b, strand=strand) for a, b in pieces])
    return SeqFeature(location, type=kind, qualifiers={"label": [label]})


def test_genbank_split_backbone_feature_outside_the_itrs_is_ignored(tmp_path):
    # an AmpR CDS across the origin of a circular map blocked the whole record, though the
    # cassette between the ITRs was intact, and its location was printed as its hull
    # (`'AmpR' 1..N`) as if it were one span
    record, parts = cassette_record("pOri", np.random.default_rng(14))
    n = len(record)
    record.annotations["topology"] = "circular"
    record.features = [f for f in record.features if _lab(f) != "AmpR"]
    record.features.append(_joined([(0, 30), (n - 8, n)], "CDS", "AmpR", strand=-1))
    path = write_gb(tmp_path / "ori.gb", record)
    assert f"complement(join({n - 7}..{n},1..30))" in path.read_text()
    (c,) = read_constructs(path)
    assert c.itrs and dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}
    # without the ITRs the reader keeps it: refused, its pieces named as the file has them
    no_itrs = record[:]
    no_itrs.annotations = dict(record.annotations)
    no_itrs.features = [f for f in record.features if "ITR" not in _lab(f)]
    assert error(write_gb(tmp_path / "no_itrs.gb", no_itrs)).startswith(
        f"{tmp_path / 'no_itrs.gb'}:pOri: CDS feature 'AmpR' join({n - 7}..{n},1..30) is split"
    )
    # a split feature the cassette reads is still refused, its pieces named
    cds = next(f for f in record.features if _lab(f) == "EGFP")
    a, b = int(cds.location.start), int(cds.location.end)
    record.features = [
        _joined([(a, a + 6), (a + 9, b)], "CDS", "EGFP") if f is cds else f for f in record.features
    ]
    write_gb(path, record)
    assert error(path) == (
        f"{path}:pOri: CDS feature 'EGFP' join({a + 1}..{a + 6},{a + 10}..{b}) is split (a "
        "join, or across the origin of a circular map); give each part as one span (rotate a "
        "circular map so the cassette does not cross position 1)"
    )


def test_genbank_split_feature_of_a_map_without_itrs_names_its_pieces(tmp_path):
    record, _ = cassette_record("pNoItr", np.random.default_rng(15), itrs=False)
    n = len(record)
    record.annotations["topology"] = "circular"
    record.features.append(_joined([(n - 8, n), (0, 5)], "misc_feature", "ori"))  # not a part
    promoter = next(f for f in record.features if f.type == "promoter")
    p0, p1 = int(promoter.location.start), int(promoter.location.end)
    ok = write_gb(tmp_path / "ok.gb", record)
    assert read_constructs(ok)[0].parts["promoter"] == str(record.seq[p0:p1])
    record.features = [
        _joined([(p0, p1), (n - 4, n), (0, 3)], "promoter", "CMV promoter") if f is promoter else f
        for f in record.features
    ]
    path = write_gb(tmp_path / "split.gb", record)
    assert error(path).startswith(
        f"{path}:pNoItr: promoter feature 'CMV promoter' join({p0 + 1}..{p1},{n - 3}..{n},1..3) "
        "is split"
    )


def _rotated(record, k: int):
    """A circular ``record`` whose position 1 is its base ``k`` (0-based); a feature over the
    new origin becomes a join across it, as SnapGene writes one."""
    n = len(record)
    out = record[k:] + record[:k]  # features crossing k are dropped here: put back below
    out.id, out.name, out.description = record.id, record.name, record.description
    out.annotations = {**record.annotations, "topology": "circular"}
    out.features = []
    for f in record.features:
        (a, b), strand = (int(f.location.start), int(f.location.end)), f.location.strand
        a = (a - k) % n
        b = a + (b - int(f.location.start))
        if b <= n:
            location = SimpleLocation(a, b, strand=strand)
        else:
            pieces = [SimpleLocation(a, n, strand=strand), SimpleLocation(0, b - n, strand=strand)]
            location = CompoundLocation(pieces[::-1] if strand == -1 else pieces)
        out.features.append(SeqFeature(location, type=f.type, qualifiers=dict(f.qualifiers)))
    return out


@pytest.mark.parametrize("origin", ["cds", "utr3", "inside cds", "inside itr5"])
@pytest.mark.parametrize("strand", [1, -1])
def test_genbank_cassette_across_the_origin_of_a_circular_map_is_read_whole(
    origin, strand, tmp_path, caplog
):
    # the ITR span was min(start)..max(end), computed linearly: on a map whose origin lies in
    # the cassette it selected the backbone ("has no utr3", or the backbone's promoters)
    record, parts = cassette_record("pWrap", np.random.default_rng(16))
    record.annotations["topology"] = "circular"
    bounds = {_lab(f): (int(f.location.start), int(f.location.end)) for f in record.features}
    k = {
        "cds": bounds["EGFP"][0],
        "utr3": bounds["trailer"][0],
        "inside cds": bounds["EGFP"][0] + 4,
        "inside itr5": bounds["AAV2 ITR"][0] + 5,
    }[origin]
    wrapped = _rotated(record, k)
    if strand == -1:
        wrapped = wrapped.reverse_complement(id=True, name=True, description=True, annotations=True)
    path = write_gb(tmp_path / "wrap.gb", wrapped)
    if origin == "inside cds":
        assert "join(" in path.read_text()  # the CDS itself crosses position 1
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        (c,) = read_constructs(path)
    assert c.itrs and dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}
    # what is left out is said: here the backbone's AmpR; a cassette missing its 3' end
    # beside a whole one in the backbone would be read so too
    (amp,) = [f for f in wrapped.features if _lab(f) == "AmpR"]
    amp_at = f"{int(amp.location.start) + 1}..{int(amp.location.end)}"
    assert ":pWrap: the cassette is read across the origin of the circular map, between " in (
        caplog.text
    )
    assert caplog.text.rstrip().endswith(
        "holds no whole cassette (one promoter, one CDS, a 3'UTR or polyA signal) and is left "
        f"out ('AmpR' {amp_at})"
    )
    # the same sequence as a linear map: nothing to read across, an error as before
    wrapped.annotations["topology"] = "linear"
    assert "pWrap" in error(write_gb(path, wrapped))


def test_a_records_notes_reach_its_warnings_column_whatever_their_wording(tmp_path):
    """The reader's notes on a record are logged as ``path:id: ...``; read_with_warnings kept
    only messages holding ``construct '<id>'``, so the arc left out of a circular map never
    reached the scores' warnings column. Another record's notes stay its own; a /translation
    that disagrees with the CDS's bases reaches its record's column too."""
    from isoflow.score import read_with_warnings

    record, _ = cassette_record("pWrap", np.random.default_rng(16))
    record.annotations["topology"] = "circular"
    start = next(int(f.location.start) for f in record.features if _lab(f) == "EGFP")
    plain, _ = cassette_record("pPlain", np.random.default_rng(3))
    edited, _ = cassette_record("pTr", np.random.default_rng(4))
    next(f for f in edited.features if _lab(f) == "EGFP").qualifiers["translation"] = ["MKW"]
    path = write_gb(tmp_path / "two.gb", _rotated(record, start), plain, edited)
    constructs, warnings = read_with_warnings(path)
    assert [c.id for c in constructs] == ["pWrap", "pPlain", "pTr"]
    assert list(warnings) == ["pWrap", "pTr"]
    (differs,) = warnings["pTr"]
    assert differs.startswith(f"{path}:pTr: construct 'pTr': CDS feature 'EGFP' ")
    assert "its /translation differs from the translation of its bases from residue 3" in differs
    (left_out,) = [w for w in warnings["pWrap"] if "holds no whole cassette" in w]
    assert left_out.startswith(f"{path}:pWrap: the cassette is read across the origin")
    assert "construct 'pWrap'" not in left_out  # filed by the record, not by its wording


def test_genbank_both_arcs_between_the_itrs_holding_a_cassette_read_the_inner_one(tmp_path, caplog):
    record, parts = cassette_record("pTwo", np.random.default_rng(17))
    record.annotations["topology"] = "circular"
    n = len(record)
    record.features = [f for f in record.features if _lab(f) != "AmpR"]
    record.features += [  # a eukaryotic selection cassette in the backbone, over the origin
        feature(n - 9, n - 3, "promoter", "SV40 promoter"),
        _joined([(n - 3, n), (0, 6)], "CDS", "NeoR"),
        feature(8, 14, "polyA_signal", "SV40 poly(A) signal"),
    ]
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        (c,) = read_constructs(write_gb(tmp_path / "two.gb", record))
    assert c.itrs and dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}
    s, e = int(record.features[5].location.start), int(record.features[6].location.end)
    assert (
        f":pTwo: the cassette is read between the ITRs at {s + 1}..{e}, not across the origin, "
        f"where the other arc between them holds a cassette too ('SV40 promoter' {n - 8}..{n - 3}, "
        f"'NeoR' join({n - 2}..{n},1..6)); if that is the cassette, rotate the map so it does "
        "not cross position 1"
    ) in caplog.text


def test_genbank_circular_map_without_itrs_across_the_origin_says_rotate(tmp_path):
    record, _ = cassette_record("pNoItr", np.random.default_rng(18), itrs=False)
    cds = next(f for f in record.features if f.type == "CDS")
    wrapped = _rotated(record, int(cds.location.start))
    message = error(write_gb(tmp_path / "w.gb", wrapped))
    assert "comes after" in message
    assert message.endswith(
        "(on a circular map without ITRs: rotate it so the cassette does not cross position 1)"
    )


def test_genbank_minus_strand_messages_name_the_files_coordinates(tmp_path):
    # a cassette on the minus strand was read from Biopython's reverse complement of the
    # record, so every message after it named the flipped record's coordinates
    record, _ = cassette_record("pMinus", np.random.default_rng(19), itrs=False)
    flipped = record.reverse_complement(id=True, name=True, description=True, annotations=True)
    polya = next(f for f in flipped.features if f.type == "polyA_signal")
    a, b = int(polya.location.start), int(polya.location.end)
    base = list(flipped.features)
    flipped.features = [
        feature(a, b, "polyA_signal", _lab(f), strand=1) if f is polya else f
        for f in flipped.features
    ]
    path = write_gb(tmp_path / "minus.gb", flipped)
    assert error(path) == (
        f"{path}:pMinus: polyA_signal feature 'bGH poly(A) signal' {a + 1}..{b} is on the "
        "other strand than the CDS; a cassette's parts read on one strand"
    )
    flipped.features = base
    cds = next(f for f in flipped.features if f.type == "CDS")
    utr5 = next(f for f in flipped.features if f.type == "5'UTR")
    c0, c1 = int(cds.location.start), int(cds.location.end)
    flipped.features = [  # the 5'UTR drawn 3' of the CDS on the minus strand: before it in the file
        feature(c0 - 9, c0 - 2, "5'UTR", "leader", strand=-1) if f is utr5 else f
        for f in flipped.features
    ]
    write_gb(path, flipped)
    assert error(path) == (
        f"{path}:pMinus: construct 'pMinus': TSS (5'UTR start, else promoter end) ({c0 - 2}) "
        f"comes after CDS start ({c1}); the parts must follow each other 5'->3': promoter, "
        "5'UTR, CDS, 3'UTR, polyA (the cassette reads on the minus strand: right to left)"
    )


def test_genbank_two_inverted_repeat_regions_around_the_cassette_are_its_itrs(tmp_path, caplog):
    record, parts = cassette_record("pInv", np.random.default_rng(20))
    itrs = [f for f in record.features if "ITR" in _lab(f)]
    others = [f for f in record.features if f not in itrs]
    inverted = [
        feature(int(f.location.start), int(f.location.end), "repeat_region", "hairpin", **q)
        for f, q in zip(itrs, [{"rpt_type": "inverted"}, {"rpt_type": "INVERTED"}], strict=True)
    ]
    record.features = others + inverted
    (c,) = read_constructs(write_gb(tmp_path / "inv.gb", record))
    assert c.itrs and dict(c.parts) == {p: parts[p] for p in PARTS if p in parts}
    # two inverted repeats with no cassette between them (around the CDS): not ITRs
    cds = next(f for f in others if f.type == "CDS")
    c0, c1 = int(cds.location.start), int(cds.location.end)
    record.features = [f for f in others if _lab(f) != "AmpR"] + [
        feature(c0 + 1, c0 + 3, "repeat_region", "stem", rpt_type="inverted"),
        feature(c1 - 3, c1 - 1, "repeat_region", "stem", rpt_type="inverted"),
    ]
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        (c,) = read_constructs(write_gb(tmp_path / "inv.gb", record))
    assert not c.itrs and c.parts["cds"] == parts["cds"]
    assert f"its repeat_region features ('stem' {c0 + 2}..{c0 + 3}, 'stem' " in caplog.text
    assert "or, with none such, one of two repeat_regions with /rpt_type=inverted" in caplog.text


def test_genbank_translation_qualifier_that_differs_is_logged_and_the_sequence_used(
    tmp_path, caplog
):
    # a /translation that disagreed with the CDS's bases (wrong coordinates, an edited
    # sequence) was ignored without a word
    record, parts = cassette_record("pTr", np.random.default_rng(21), itrs=False)
    cds = next(f for f in record.features if f.type == "CDS")
    where = f"'EGFP' {int(cds.location.start) + 1}..{int(cds.location.end)}"
    path = tmp_path / "tr.gb"
    for given, said in [
        ("MKR", None),  # CDS = ATG AAA CGT TAA: M K R
        ("MKR*", None),  # a terminal stop written out
        ("mk r", None),  # case and spaces
        ("MKW", "from residue 3 on (W in /translation, R from the sequence; 3 and 3 residues)"),
        ("MK", "from residue 3 on (its end in /translation, R from the sequence; 2 and 3 "),
        ("MKRLL", "from residue 4 on (L in /translation, its end from the sequence; 5 and 3 "),
    ]:
        cds.qualifiers["translation"] = [given]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
            (c,) = read_constructs(write_gb(path, record))
        assert c.parts["cds"] == parts["cds"] and c.protein == "MKR", given
        if said is None:
            assert caplog.text == "", given
        else:
            assert (
                f"{path}:pTr: construct 'pTr': CDS feature {where}: its /translation differs "
                f"from the translation of its bases {said}"
            ) in caplog.text, given
            assert caplog.text.rstrip().endswith(
                "the sequence is used: check the CDS coordinates, or whether the sequence was "
                "edited"
            )
    # an alternative start codon: NCBI writes M, the sequence's translation has V
    cds.qualifiers["translation"] = ["MKR"]
    gtg = record[:]
    gtg.annotations = dict(record.annotations)
    start = int(cds.location.start)
    gtg.seq = record.seq[:start] + "GTG" + record.seq[start + 3 :]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="isoflow.constructs"):
        (c,) = read_constructs(write_gb(path, gtg), allow_noncanonical_cds=True)
    assert c.protein == "VKR" and caplog.text == ""


def test_a_cell_of_one_quote_is_an_unclosed_quote_not_an_empty_cell(tmp_path):
    """A lone ``"`` opens a quote that nothing closes: one line naming the line and column,
    not a cell read as empty (its opening quote taken for its closing one too)."""
    from isoflow.constructs import table_rows

    path = tmp_path / "t.tsv"
    assert table_rows(path, 'id\tseq\nc1\t""\n') == [(1, ["id", "seq"]), (2, ["c1", ""])]
    with pytest.raises(InputError, match=r"t.tsv:2: column 2: '\"' starts with a quote"):
        table_rows(path, 'id\tseq\nc1\t"\n')
