"""isoflow.annotation: GTF/GFF3 -> one row per transcript (DESIGN.md transcripts.parquet)."""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers.paths import SHARED_REAL as REAL
from isoflow import annotation
from isoflow.annotation import SCHEMA, read_annotation, write_transcripts
from isoflow.errors import InputError

needs_real = pytest.mark.needs("shared")


def gtf_line(chrom, feature, start, end, strand, phase, tx, gene="G1.1", **extra):
    attrs = f'gene_id "{gene}"; transcript_id "{tx}"; gene_name "{gene[:2]}NAME"; '
    for key, value in extra.items():
        values = value if isinstance(value, list) else [value]
        attrs += "".join(f'{key} "{v}"; ' for v in values)
    return "\t".join(
        [chrom, "HAVANA", feature, str(start), str(end), ".", strand, phase, attrs.strip()]
    )


def gencode_lines(*, t1_cds_end=370):
    """Hand-made GENCODE-style GTF (CDS excludes the stop codon, as GENCODE GTF does).

    T1 (+): exons 101-200, 301-400; CDS 151-200 + 301-370, stop 371-373 -> UTR5 50,
    CDS 123 (41 codons), UTR3 27; Sec codon 181-183 -> transcript position 80.
    T2 (-): exons 1001-1100, 1201-1300; CDS 1201-1250 + 1061-1100, stop 1058-1060 ->
    UTR5 50, CDS 93, UTR3 57; Sec 1221-1223 -> first base 1223 -> position 77.
    T3: lncRNA with no transcript line (span inferred from its exon).
    T4 (+): cds_start_NF, first CDS phase 2: CDS 3001-3098 + stop 3099-3101 -> 101 nt.
    """
    t1 = {"transcript_type": "protein_coding", "tag": ["basic", "CCDS"]}
    t2 = {"transcript_type": "protein_coding", "tag": "selenoprotein"}
    t4 = {"transcript_type": "protein_coding", "tag": ["mRNA_start_NF", "cds_start_NF"]}
    lines = [
        "##description: hand-made",
        gtf_line("1", "gene", 101, 400, "+", ".", "x", gene="G1.1"),
        gtf_line("1", "transcript", 101, 400, "+", ".", "T1.1", **t1),
        gtf_line("1", "exon", 101, 200, "+", ".", "T1.1", **t1),
        gtf_line("1", "CDS", 151, 200, "+", "0", "T1.1", **t1),
        gtf_line("1", "start_codon", 151, 153, "+", "0", "T1.1", **t1),
        gtf_line("1", "Selenocysteine", 181, 183, "+", ".", "T1.1", **t1),
        gtf_line("1", "exon", 301, 400, "+", ".", "T1.1", **t1),
        gtf_line("1", "CDS", 301, t1_cds_end, "+", "1", "T1.1", **t1),
        gtf_line("1", "stop_codon", t1_cds_end + 1, t1_cds_end + 3, "+", "0", "T1.1", **t1),
        gtf_line("1", "UTR", 101, 150, "+", ".", "T1.1", **t1),
        gtf_line("1", "transcript", 1001, 1300, "-", ".", "T2.3", gene="G2.1", **t2),
        gtf_line("1", "exon", 1201, 1300, "-", ".", "T2.3", gene="G2.1", **t2),
        gtf_line("1", "CDS", 1201, 1250, "-", "0", "T2.3", gene="G2.1", **t2),
        gtf_line("1", "start_codon", 1248, 1250, "-", "0", "T2.3", gene="G2.1", **t2),
        gtf_line("1", "Selenocysteine", 1221, 1223, "-", ".", "T2.3", gene="G2.1", **t2),
        gtf_line("1", "exon", 1001, 1100, "-", ".", "T2.3", gene="G2.1", **t2),
        gtf_line("1", "CDS", 1061, 1100, "-", "1", "T2.3", gene="G2.1", **t2),
        gtf_line("1", "stop_codon", 1058, 1060, "-", "0", "T2.3", gene="G2.1", **t2),
        gtf_line("2", "exon", 2001, 2100, "+", ".", "T3.1", gene="G3.1", transcript_type="lncRNA"),
        gtf_line("2", "transcript", 3001, 3120, "+", ".", "T4.1", gene="G4.1", **t4),
        gtf_line("2", "exon", 3001, 3120, "+", ".", "T4.1", gene="G4.1", **t4),
        gtf_line("2", "CDS", 3001, 3098, "+", "2", "T4.1", gene="G4.1", **t4),
        gtf_line("2", "stop_codon", 3099, 3101, "+", "0", "T4.1", gene="G4.1", **t4),
    ]
    return lines


def write(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def spliced_length(row) -> int:
    return int(sum(e - s for s, e in zip(row.exon_starts, row.exon_ends, strict=True)))


def check_invariants(df) -> None:
    assert df["transcript_id"].is_unique
    for row in df.itertuples():
        assert row.utr5_len + row.cds_len + row.utr3_len == (
            spliced_length(row) if row.cds_len else 0
        ), row.transcript_id
        assert row.tss == (row.tx_start if row.strand == "+" else row.tx_end - 1)
        assert row.tx_start == row.exon_starts[0] and row.tx_end == row.exon_ends[-1]
        assert list(row.exon_starts) == sorted(row.exon_starts)
    keys = list(zip(df.chrom, df.tx_start, df.transcript_id, strict=True))
    assert keys == sorted(keys)


# ---- hand-made GENCODE GTF -------------------------------------------------------------


def test_gencode_gtf_transcript_model(tmp_path):
    df = read_annotation(write(tmp_path / "a.gtf", gencode_lines())).set_index("transcript_id")
    assert list(df.index) == ["T1.1", "T2.3", "T3.1", "T4.1"]
    t1 = df.loc["T1.1"]
    assert (t1.tx_start, t1.tx_end, t1.tss) == (100, 400, 100)
    assert list(t1.exon_starts) == [100, 300] and list(t1.exon_ends) == [200, 400]
    # GTF CDS excludes the stop codon: the span is extended by the stop_codon line.
    assert (t1.cds_start, t1.cds_end, t1.cds_phase) == (150, 373, 0)
    assert (t1.utr5_len, t1.cds_len, t1.utr3_len) == (50, 123, 27)
    assert list(t1.selenocysteines) == [80]
    assert list(t1.tags) == ["basic", "CCDS"]
    assert (t1.gene_id, t1.gene_name, t1.transcript_type) == ("G1.1", "G1NAME", "protein_coding")
    t2 = df.loc["T2.3"]
    assert (t2.strand, t2.tx_start, t2.tx_end, t2.tss) == ("-", 1000, 1300, 1299)
    assert (t2.cds_start, t2.cds_end, t2.cds_phase) == (1057, 1250, 0)
    assert (t2.utr5_len, t2.cds_len, t2.utr3_len) == (50, 93, 57)
    assert list(t2.selenocysteines) == [77]
    t3 = df.loc["T3.1"]
    assert (t3.chrom, t3.tx_start, t3.tx_end, t3.transcript_type) == ("2", 2000, 2100, "lncRNA")
    assert pd.isna(t3.cds_start) and pd.isna(t3.cds_phase)
    assert (t3.utr5_len, t3.cds_len, t3.utr3_len) == (0, 0, 0)
    assert list(t3.selenocysteines) == [] and list(t3.tags) == []
    check_invariants(df.reset_index())


def test_cds_start_nf_keeps_nonzero_phase(tmp_path):
    df = read_annotation(write(tmp_path / "a.gtf", gencode_lines())).set_index("transcript_id")
    t4 = df.loc["T4.1"]
    assert t4.cds_phase == 2 and t4.cds_len == 101
    assert (t4.utr5_len, t4.utr3_len) == (0, 19)
    assert "cds_start_NF" in list(t4.tags)


def test_aliases_type_filter_gzip_and_content_detection(tmp_path):
    path = write(tmp_path / "annotation.txt.gz", gencode_lines())
    df = read_annotation(path, contig_aliases={"1": "chr1"}, transcript_types=["lncRNA"])
    assert list(df.transcript_id) == ["T3.1"] and list(df.chrom) == ["2"]
    df = read_annotation(path, contig_aliases={"1": "chr1", "2": "chr2"})
    assert sorted(set(df.chrom)) == ["chr1", "chr2"]


def test_transcript_types_matching_nothing(tmp_path):
    path = write(tmp_path / "a.gtf", gencode_lines())
    with pytest.raises(InputError, match=r"a\.gtf: no transcript of types \['mRNA'\]"):
        read_annotation(path, transcript_types=["mRNA"])


def test_gff3_detected_by_content(tmp_path, caplog):
    lines = [
        "##gff-version 3",
        "c1\tX\tgene\t1\t100\t.\t+\t.\tID=gene:G9;Name=AB%3BC%25;gene_id=G9",
        "c1\tX\tmRNA\t1\t100\t.\t+\t.\tID=transcript:T9;Parent=gene:G9;version=4;"
        "biotype=protein_coding;tag=basic,MANE_Select,a%2Cb",
        "c1\tX\texon\t1\t100\t.\t+\t.\tParent=transcript:T9",
        "c1\tX\tCDS\t11\t100\t.\t+\t0\tID=CDS:T9;Parent=transcript:T9",
        "###",
        "c1\tX\tmRNA\t1\t100\t.\t+\t.\tID=transcript:T8;Parent=gene:G9",
    ]
    df = read_annotation(write(tmp_path / "weird_name.gtf", lines))
    assert len(df) == 1 and "transcript:T8" in caplog.text  # no exon: skipped, warned
    row = df.iloc[0]
    assert (row.transcript_id, row.gene_id, row.gene_name) == ("T9.4", "G9", "AB;C%")
    assert (row.transcript_type, list(row.tags)) == (
        "protein_coding",
        ["basic", "MANE_Select", "a,b"],
    )
    assert (row.utr5_len, row.cds_len, row.utr3_len, row.cds_start) == (10, 90, 0, 10)


def test_write_transcripts_types(tmp_path):
    df = read_annotation(write(tmp_path / "a.gtf", gencode_lines()))
    out = tmp_path / "results" / "transcripts.parquet"
    write_transcripts(df, out)
    table = pq.read_table(out)
    assert table.schema.remove_metadata().equals(SCHEMA)
    assert table.column("cds_start").null_count == 1
    assert table.column("selenocysteines").to_pylist()[:2] == [[80], [77]]
    assert [p.name for p in out.parent.iterdir()] == ["transcripts.parquet"]


def test_write_transcripts_is_atomic(tmp_path):
    df = read_annotation(write(tmp_path / "a.gtf", gencode_lines()))
    out = tmp_path / "transcripts.parquet"
    with pytest.raises((KeyError, pa.ArrowInvalid, pa.ArrowTypeError)):
        write_transcripts(df.assign(tx_start="not a number"), out)
    assert list(tmp_path.iterdir()) == [tmp_path / "a.gtf"]


# ---- bad input: one line naming file and line, nothing written -------------------------


def fails(tmp_path, path, pattern):
    out = tmp_path / "out" / "transcripts.parquet"
    with pytest.raises(InputError) as err:
        write_transcripts(read_annotation(path), out)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:"), message
    assert re.search(pattern, message), message
    assert not out.parent.exists()
    return message


def test_truncated_gzip(tmp_path):
    data = gzip.compress(("\n".join(gencode_lines()) + "\n").encode())
    path = tmp_path / "cut.gtf.gz"
    path.write_bytes(data[: len(data) // 2])
    fails(tmp_path, path, r"cut\.gtf\.gz:\d+: compressed data ends .*truncated")


def test_truncated_gzip_deep_in_the_file(tmp_path):
    genes = [
        gtf_line("3", "gene", i, i + 10, "+", ".", "x", gene=f"G{i}.1") for i in range(1, 60_000)
    ]
    data = gzip.compress(("\n".join(gencode_lines() + genes) + "\n").encode())
    path = tmp_path / "cut.gtf.gz"
    path.write_bytes(data[: len(data) // 2])
    message = fails(tmp_path, path, r"cut\.gtf\.gz:\d+: compressed data ends")
    assert int(message.split(":")[1]) > 10_000


def cut_inside_last_line(path: Path, lines: list[str], keep_through: str) -> Path:
    """``lines`` written without their last newline, the last line cut just after the last
    ``keep_through`` in it (an interrupted download or copy of a plain file)."""
    text = "\n".join(lines)
    text = text[: text.rindex(keep_through) + len(keep_through)]
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))  # gzipped once already cut
    else:
        path.write_text(text)
    return path


T5 = gtf_line("2", "exon", 5001, 5100, "+", ".", "T5.1", gene="G5.1", transcript_type="lncRNA")


@pytest.mark.parametrize(
    ("name", "keep_through", "why"),
    [
        # before: a transcript "T5" (type unknown) from the attribute reader, a warning only
        ("cut.gtf", 'transcript_id "T5', "a quote in its attributes is never closed"),
        ("cut.gtf.gz", 'gene_name "G5', "a quote in its attributes is never closed"),
        ("cut.gtf", "\t+\t", "fewer than 9 tab-separated columns"),
    ],
)
def test_plain_gtf_cut_inside_its_last_line(tmp_path, name, keep_through, why):
    path = cut_inside_last_line(tmp_path / name, [*gencode_lines(), T5], keep_through)
    line = len(gencode_lines()) + 1
    fails(tmp_path, path, rf":{line}: the file ends inside this line .*{why}.*cut short")


def test_gff3_cut_inside_its_last_line(tmp_path):
    lines = [
        "##gff-version 3",
        "c1\tX\tmRNA\t1\t100\t.\t+\t.\tID=T9;Parent=G9;gene_id=G9",
        "c1\tX\texon\t1\t100\t.\t+\t.\tParent=T9",
        "c1\tX\texon\t1\t100\t.\t+\t.\tParent=T9",
    ]
    path = cut_inside_last_line(tmp_path / "cut.gff3", lines, "\t100")
    fails(tmp_path, path, r":4: the file ends inside this line .*fewer than 9 .*cut short")


def test_a_complete_last_line_without_its_newline_reads(tmp_path):
    lines = [*gencode_lines(), T5]
    path = tmp_path / "a.gtf"
    path.write_text("\n".join(lines))
    assert read_annotation(path).transcript_id.tolist()[-1] == "T5.1"
    # a quoted value may hold an odd number of quotes only in a GTF cut short; GFF3 is
    # not quoted, so a quote in its attributes is text
    gff = tmp_path / "a.gff3"
    gff.write_text(
        "##gff-version 3\nc1\tX\tmRNA\t1\t100\t.\t+\t.\tID=T9;Parent=G9;gene_id=G9\n"
        'c1\tX\texon\t1\t100\t.\t+\t.\tParent=T9;Note=5" end'
    )
    assert read_annotation(gff).transcript_id.tolist() == ["T9"]
    # nor is a last comment line without its newline
    (tmp_path / "b.gtf").write_text("\n".join([*lines, "#end of file"]))
    assert read_annotation(tmp_path / "b.gtf").transcript_id.tolist()[-1] == "T5.1"


def test_missing_and_empty_files(tmp_path):
    fails(tmp_path, tmp_path / "absent.gtf", r"absent\.gtf: no such file")
    fails(tmp_path, write(tmp_path / "empty.gtf", ["#only a comment"]), r"empty\.gtf: no feature")


def test_too_few_columns(tmp_path):
    lines = gencode_lines()
    lines[5] = "\t".join(lines[5].split("\t")[:8])
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:6: .*9")


@pytest.mark.parametrize(
    ("start", "end", "pattern"),
    [
        ("1x1", "200", "not integers"),
        ("300", "200", "start 300 > end 200"),
        ("201", "200", "start 201 > end 200"),  # empty once 0-based: [200, 200)
        ("0", "200", "< 1"),
    ],
)
def test_bad_coordinates(tmp_path, start, end, pattern):
    lines = gencode_lines()
    fields = lines[3].split("\t")
    fields[3], fields[4] = start, end
    lines[3] = "\t".join(fields)
    fails(tmp_path, write(tmp_path / "a.gtf", lines), rf"a\.gtf:4: .*{pattern}")


def test_exon_outside_transcript(tmp_path):
    lines = gencode_lines()
    lines[7] = lines[7].replace("\t301\t400\t", "\t301\t450\t")
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:8: exon of T1\.1 .*outside")


def test_cds_in_an_intron(tmp_path):
    lines = gencode_lines()
    lines[4] = lines[4].replace("\t151\t200\t", "\t151\t210\t")  # exon 1 ends at 200
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:5: CDS of T1\.1 \(151-210\) is not")


def test_exons_overlap(tmp_path):
    lines = gencode_lines()
    lines[7] = lines[7].replace("\t301\t400\t", "\t151\t400\t")
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:8: exon of T1\.1 overlaps")


def test_exon_on_other_strand_than_transcript(tmp_path):
    lines = gencode_lines()
    lines[7] = lines[7].replace("\t+\t.\t", "\t-\t.\t")
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:8: exon of T1\.1 is on 1-")


def test_bad_strand_and_phase(tmp_path):
    lines = gencode_lines()
    lines[3] = lines[3].replace("\t+\t.\t", "\t.\t.\t")
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:4: strand '\.'")
    lines = gencode_lines()
    lines[4] = lines[4].replace("\t+\t0\t", "\t+\t3\t")
    fails(tmp_path, write(tmp_path / "b.gtf", lines), r"b\.gtf:5: CDS phase '3'")


def test_gff3_exon_parent_unknown(tmp_path):
    lines = [
        "##gff-version 3",
        "c1\tX\ttranscript\t1\t100\t.\t+\t.\tID=T1;Parent=G1",
        "c1\tX\texon\t1\t100\t.\t+\t.\tParent=T1",
        "c1\tX\tCDS\t1\t99\t.\t+\t0\tParent=T2",
    ]
    fails(tmp_path, write(tmp_path / "a.gff3", lines), r"a\.gff3:4: CDS names Parent T2")


def test_duplicate_transcript_line(tmp_path):
    lines = [*gencode_lines(), gtf_line("3", "transcript", 5, 50, "+", ".", "T2.3", gene="G2.1")]
    fails(tmp_path, write(tmp_path / "a.gtf", lines), rf"a\.gtf:{len(lines)}: duplicate .*T2\.3")


def test_duplicate_transcript_id_in_two_genes(tmp_path):
    lines = [*gencode_lines(), gtf_line("3", "exon", 5, 50, "+", ".", "T1.1", gene="G7.1")]
    fails(tmp_path, write(tmp_path / "a.gtf", lines), rf"a\.gtf:{len(lines)}: .*T1\.1.*two genes")


def test_cds_length_inconsistent_with_phase(tmp_path):
    path = write(tmp_path / "a.gtf", gencode_lines(t1_cds_end=369))
    fails(tmp_path, path, r"a\.gtf:5: CDS of T1\.1 is 122 nt with phase 0")


def test_an_incomplete_start_is_frame_checked_against_its_stop(tmp_path):
    # T4 is cds_start_NF with a stop: the stop fixes the frame, so its phase is checked too.
    # Phases 1 and 2 swapped (genePred exonFrames read as GTF frames) put its protein in
    # another frame, which passed with a warning about internal stops
    lines = gencode_lines()
    assert lines[22].startswith("2\tHAVANA\tCDS\t3001")
    lines[22] = lines[22].replace("\t+\t2\t", "\t+\t1\t")
    message = r"a\.gtf:23: CDS of T4\.1 is 101 nt with phase 1: .* 1 and 2 swapped\)$"
    fails(tmp_path, write(tmp_path / "a.gtf", lines), message)
    # a missing phase ('.', read as 0 before) is an error on any CDS line
    lines = gencode_lines()
    lines[22] = lines[22].replace("\t+\t2\t", "\t+\t.\t")
    fails(tmp_path, write(tmp_path / "b.gtf", lines), r"b\.gtf:23: CDS phase '\.' is not 0, 1 or 2")
    # without a stop (cds_end_NF too) the frame is not fixed: not checked
    t4_open = [
        line + ' tag "cds_end_NF";' if 'transcript_id "T4.1"' in line else line
        for line in gencode_lines()
        if "stop_codon\t3099" not in line
    ]
    t4_open[22] = t4_open[22].replace("\t+\t2\t", "\t+\t1\t")
    assert (
        read_annotation(write(tmp_path / "c.gtf", t4_open))
        .set_index("transcript_id")
        .loc["T4.1"]
        .cds_phase
        == 1
    )


def test_a_line_with_more_than_nine_columns_is_one_line_error(tmp_path):
    # a tab inside the attributes cut them there silently (GENCODE's tags, written last, first)
    lines = gencode_lines()
    lines[23] = lines[23].replace(' tag "mRNA_start_NF"', '\ttag "mRNA_start_NF"')
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:24: more than 9 tab-separated")
    # as the first line it stopped polars with a traceback
    lines = gencode_lines()[1:]
    lines[0] += "\textra"
    fails(tmp_path, write(tmp_path / "b.gtf", lines), r"b\.gtf:1: 10 tab-separated columns, need 9")
    # a trailing tab (an empty tenth field) is harmless
    lines = gencode_lines()
    lines[23] += "\t"
    read_annotation(write(tmp_path / "c.gtf", lines))


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        # before: read, the value running to the next ";" (here by luck the right ID)
        ('"T1.1";', '"T1.1;', r"'transcript_id': its quote is never closed before the next ';'"),
        # before: gene_name "SA" (the value cut at the stray quote), silently
        ('gene_name "G1NAME"', 'gene_name "G1"NAME"', r"'gene_name': a quote inside its value"),
        ('"T1.1";', '"T1"1";', r"'transcript_id': a quote inside its value"),
        # before: the transcript type left out, silently (a key with no value)
        ('transcript_type "protein_coding"', "transcript_type", r"'transcript_type' has no value"),
        ('transcript_type "protein_coding"', "transcript_type ", r"'transcript_type' has no value"),
    ],
)
def test_a_broken_attribute_mid_file_names_line_and_attribute(tmp_path, old, new, pattern):
    lines = gencode_lines()
    lines[2] = lines[2].replace(old, new, 1)  # the T1.1 transcript line, not the last
    assert lines[2] != gencode_lines()[2]
    fails(tmp_path, write(tmp_path / "a.gtf", lines), rf"a\.gtf:3: attribute {pattern}")


def test_an_exon_line_is_checked_where_its_ids_are_broken(tmp_path):
    lines = gencode_lines()
    lines[6] = lines[6].replace('"T1.1";', '"T1"1";', 1)  # an exon of T1.1
    # before: an exon of a transcript "T1" with no transcript line, made a transcript
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:7: attribute 'transcript_id': a q")
    lines = gencode_lines()
    lines[6] = lines[6].replace('gene_id "G1.1"', 'gene_id "G1.1', 1)
    fails(tmp_path, write(tmp_path / "b.gtf", lines), r"b\.gtf:7: attribute 'gene_id': its quote")
    # an attribute the reader does not take from an exon line changes nothing read
    lines = gencode_lines()
    lines[6] = lines[6].replace('tag "CCDS"', 'tag "CC"DS"', 1)
    assert read_annotation(write(tmp_path / "c.gtf", lines)).equals(
        read_annotation(write(tmp_path / "d.gtf", gencode_lines()))
    )


def test_gtf_attribute_forms_that_stay_valid(tmp_path):
    # bare values (GENCODE's level 2), a ";" inside a quoted value, ";;" (Ensembl's VEP
    # test GTF), no ";" after the last attribute, CRLF line ends
    lines = gencode_lines()
    lines[2] = lines[2].replace('gene_name "G1NAME";', 'gene_name "G1NAME"; level 2; note "a;b";;')
    lines[3] = lines[3].rstrip("; ")
    path = tmp_path / "a.gtf"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    assert len(read_annotation(path)) == 4
    # a comment after the attributes (GTF2.2's [comments]) reads as the line without it
    lines = gencode_lines()
    # (also after a last attribute without its ";": it was read as missing)
    commented = [
        line + ' # a comment; with "quotes' if "\ttranscript\t" in line else line for line in lines
    ]
    assert read_annotation(write(tmp_path / "c.gtf", commented)).equals(
        read_annotation(write(tmp_path / "d.gtf", lines))
    )
    untagged = [line.replace(' tag "basic"; tag "CCDS";', "") for line in lines]
    bare = [  # transcript_type last, without its ";"
        line.rstrip("; ") + " # note" if "\ttranscript\t" in line else line for line in untagged
    ]
    assert read_annotation(write(tmp_path / "e.gtf", bare)).equals(
        read_annotation(write(tmp_path / "f.gtf", untagged))
    )
    # a line the reader takes no attribute from (gene, UTR) is not checked
    lines = gencode_lines()
    lines[1] = lines[1].replace('"G1.1";', '"G1.1;')
    assert len(read_annotation(write(tmp_path / "b.gtf", lines))) == 4


@needs_real
@pytest.mark.parametrize("new", ['"ENST00000341065.8;', '"ENST00000"341065.8";'])
def test_a_broken_attribute_in_a_real_gencode_excerpt(tmp_path, new):
    # a mid-file transcript line of GENCODE v29 (SAMD11-201) with an unclosed or a stray
    # quote in its transcript_id: before, read as ENST00000341065.8 or made ENST00000
    text = gzip.decompress(
        (REAL / "gtf_only" / "pyranges_gencode_v29_chr1_head5000.gtf.gz").read_bytes()
    )
    lines = text.decode().split("\n")
    number = next(
        i
        for i, line in enumerate(lines)
        if "\ttranscript\t" in line and "ENST00000341065.8" in line
    )
    lines[number] = lines[number].replace('"ENST00000341065.8";', new, 1)
    path = tmp_path / "gencode.gtf"
    path.write_text("\n".join(lines))
    fails(tmp_path, path, rf"gencode\.gtf:{number + 1}: attribute 'transcript_id': ")


def test_ribosomal_slippage_cds_is_not_a_phase_error(tmp_path):
    lines = [
        line + ' tag "ribosomal_slippage";' if 'transcript_id "T1.1"' in line else line
        for line in gencode_lines(t1_cds_end=369)
    ]
    table = read_annotation(write(tmp_path / "a.gtf", lines))
    t1 = table.set_index("transcript_id").loc["T1.1"]
    assert t1.cds_len == 122 and "ribosomal_slippage" in list(t1.tags)


# ---- issue 7: runs that used to pass with wrong data or crash rules later --------------


def without_attr(line: str, key: str) -> str:
    return re.sub(rf' ?\b{key} "[^"]*";', "", line)


def test_codon_lines_without_cds_lines(tmp_path):
    # Before: the stop_codon line alone made a 3-nt "CDS" and an empty protein.
    lines = [
        *gencode_lines(),
        gtf_line("3", "transcript", 101, 400, "+", ".", "T5.1", gene="G5.1"),
        gtf_line("3", "exon", 101, 400, "+", ".", "T5.1", gene="G5.1"),
        gtf_line("3", "start_codon", 151, 153, "+", "0", "T5.1", gene="G5.1"),
        gtf_line("3", "stop_codon", 371, 373, "+", "0", "T5.1", gene="G5.1"),
    ]
    fails(
        tmp_path,
        write(tmp_path / "a.gtf", lines),
        rf"a\.gtf:{len(lines) - 1}: start_codon of T5\.1 but no CDS line: codon lines need "
        "CDS lines",
    )


def test_transcript_without_gene_id(tmp_path):
    # Before: gene_id null in the parquet; the splits rule crashed on it with a traceback.
    lines = gencode_lines()
    lines[11] = without_attr(lines[11], "gene_id")  # the T2.3 transcript line
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:12: transcript T2\.3 has no gene_id")


def test_gff3_transcript_without_gene(tmp_path):
    lines = [
        "##gff-version 3",
        "c1\tX\ttranscript\t1\t100\t.\t+\t.\tID=T1;transcript_type=lncRNA",
        "c1\tX\texon\t1\t100\t.\t+\t.\tParent=T1",
    ]
    fails(tmp_path, write(tmp_path / "a.gff3", lines), r"a\.gff3:2: transcript T1 has no gene_id")


def test_gene_name_missing_falls_back_to_gene_id(tmp_path):
    # Ensembl has genes without gene_name (novel genes): before, a null gene_name.
    lines = [
        without_attr(line, "gene_name") if '"G2.1"' in line else line for line in gencode_lines()
    ]
    df = read_annotation(write(tmp_path / "a.gtf", lines)).set_index("transcript_id")
    assert df.loc["T2.3", "gene_name"] == "G2.1"
    assert df.loc["T1.1", "gene_name"] == "G1NAME"
    assert df["gene_name"].notna().all()


def test_transcript_type_falls_back_to_gene_type_then_unknown(tmp_path, caplog):
    lines = gencode_lines()
    lines = [without_attr(line, "transcript_type") if '"T1.1"' in line else line for line in lines]
    lines = [
        line + ' gene_biotype "protein_coding";' if '"T2.3"' in line else line for line in lines
    ]
    lines = [without_attr(line, "transcript_type") if '"T2.3"' in line else line for line in lines]
    df = read_annotation(write(tmp_path / "a.gtf", lines)).set_index("transcript_id")
    assert df.loc["T2.3", "transcript_type"] == "protein_coding"  # from gene_biotype
    assert df.loc["T1.1", "transcript_type"] == "unknown"
    assert df["transcript_type"].notna().all()
    assert "1 transcripts have no transcript type" in caplog.text
    write_transcripts(df.reset_index(), tmp_path / "t.parquet")  # no null in the parquet
    assert pq.read_table(tmp_path / "t.parquet").column("transcript_type").null_count == 0


@pytest.mark.parametrize("name", ["a.gtf", "a.gtf.gz"])
def test_non_utf8_byte_names_the_line(tmp_path, name):
    lines = gencode_lines()
    path = write(tmp_path / name, lines)
    data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    data = data.replace(b'gene_name "G2NAME"', b'gene_name "G2\xe9"', 1)
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    fails(tmp_path, path, rf"{name}:12: byte 0xe9 at column \d+ is not UTF-8")


# ---- real data -------------------------------------------------------------------------


@needs_real
def test_bambu_ensembl_gtf():
    df = read_annotation(REAL / "bambu_chr9" / "Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf")
    check_invariants(df)
    assert len(df) == 105 and set(df.chrom) == {"9"}
    cbwd1 = df[df.gene_name == "CBWD1"]
    assert len(cbwd1) == 29 and set(cbwd1.strand) == {"-"}
    assert set(cbwd1.gene_id) == {"ENSG00000172785.18"}  # gene_version "18"
    # Checked by hand against the file: transcript_version "8", 15 exons, CDS lines sum to
    # 1185 nt plus the 3-nt stop_codon line; five_prime_utr 178970-179058, three_prime_utr
    # 121038-121466.
    t = df.set_index("transcript_id").loc["ENST00000356521.8"]
    assert (t.tx_start, t.tx_end, t.tss, len(t.exon_starts)) == (121037, 179058, 179057, 15)
    assert (t.cds_start, t.cds_end, t.cds_phase) == (121466, 178969, 0)
    assert (t.utr5_len, t.cds_len, t.utr3_len) == (89, 1188, 429)
    assert (t.transcript_type, list(t.tags)) == ("protein_coding", ["CCDS", "basic"])
    assert df.transcript_id.str.fullmatch(r"ENST\d{11}\.\d+").all()
    assert (df.cds_len > 0).sum() == 41


@needs_real
@pytest.mark.parametrize(("release", "count"), [("v29", 45), ("v41", 46)])
def test_genomekit_gencode_gff3(release, count):
    df = read_annotation(REAL / "genomekit_mini" / f"gencode.{release}.annotation.gff3")
    check_invariants(df)
    assert len(df) == count and set(df.chrom) == {"chr2"}
    assert set(df.gene_name) == {"INO80B", "INO80B-WBP1", "MOGS", "WBP1"}
    by_id = df.assign(base=df.transcript_id.str.split(".").str[0]).set_index("base")
    # GENCODE GFF3 CDS lines already include the stop codon (CDS 2361-2891, stop 2889-2891).
    ino = by_id.loc["ENST00000233331"]
    assert (ino.cds_start, ino.cds_end, ino.cds_len) == (143, 2891, 1071)
    if release == "v29":
        assert (ino.utr5_len, ino.utr3_len) == (94, 96)
        # MOGS, minus strand, cds_start_NF: 5'-most CDS (9923-10189) has phase 2.
        mogs = by_id.loc["ENST00000649854"]
        assert (mogs.strand, mogs.cds_phase, mogs.cds_len, mogs.utr3_len) == ("-", 2, 2147, 157)
        assert "cds_start_NF" in list(mogs.tags)


@needs_real
def test_chrm_ensembl_gtf():
    df = read_annotation(REAL / "chrM_oracle" / "Ensembl_MT.gtf", contig_aliases={"MT": "chrM"})
    check_invariants(df)
    assert len(df) == 37 and set(df.chrom) == {"chrM"}
    coding = df[df.cds_len > 0].set_index("gene_name")
    assert len(coding) == 13
    # 6 coding genes have no stop_codon line (stop completed by polyadenylation): their CDS
    # is not a whole number of codons and is still read.
    assert (coding.cds_len % 3 != 0).sum() == 6
    assert coding.loc["MT-ND6"].strand == "-"
    assert coding.loc["MT-CYB"].cds_len == 380 * 3 + 1  # ENSP00000354554.2 is 380 aa


@needs_real
def test_patch_gtf_against_ensembl_cdna_and_peptide():
    df = read_annotation(REAL / "chrM_oracle" / "human.ensembl.97.patch.gtf")
    check_invariants(df)
    t = df.set_index("transcript_id").loc["ENST00000644858.1"]
    # Ensembl 97 cDNA ENST00000644858.1 is 9,891 nt; its peptide ENSP00000495604.1 959 aa.
    assert t.utr5_len + t.cds_len + t.utr3_len == 9891
    assert t.cds_len == 959 * 3 + 3


@needs_real
def test_gencode_gtf_cut_mid_file(caplog):
    df = read_annotation(REAL / "gtf_only" / "pyranges_gencode_v29_chr1_head5000.gtf.gz")
    check_invariants(df)
    # The excerpt stops inside ENST00000378756.7 (ATAD3A): its exons do not reach the end
    # of its transcript line, so it is dropped with a warning, not read half-made.
    assert "ENST00000378756.7" not in set(df.transcript_id)
    assert "ENST00000378756.7" in caplog.text
    assert len(df) == 469
    assert df.transcript_id.str.fullmatch(r"ENST\d{11}\.\d+").all()


@needs_real
def test_vep_ensembl84_gtf():
    df = read_annotation(REAL / "gtf_only" / "vep_ensembl84_chr21_test.gtf.gz")
    check_invariants(df)
    assert len(df) == 103 and set(df.chrom) == {"21"}
    # Rows written transcript_id "ENST00000419219,ENST00000419219_1" belong to both.
    pair = df[df.transcript_id.isin(["ENST00000419219.1", "ENST00000419219_1.1"])]
    assert len(pair) == 2 and pair.cds_len.tolist() == [891, 891]


# ---- independent oracle: gffread (CI installs it from Debian) -------------------------

GFFREAD_FILES = [
    "bambu_chr9/Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf",
    "genomekit_mini/gencode.v29.annotation.gff3",
    "genomekit_mini/gencode.v41.annotation.gff3",
    "chrM_oracle/Ensembl_MT.gtf",
    "chrM_oracle/human.ensembl.97.patch.gtf",
    "gtf_only/pyranges_gencode_v29_chr1_head5000.gtf.gz",
]


def gffread_table(path: Path) -> dict[str, tuple]:
    """id -> (exons 0-based half-open, CDS span or None, spliced length, CDS length)."""
    fields = "@id,@chr,@start,@end,@strand,@exons,@cds,@covlen,@cdslen"
    text = subprocess.run(
        ["gffread", "--table", fields, str(path)], capture_output=True, text=True, check=True
    ).stdout
    table = {}
    for line in text.splitlines():
        tid, _, _, _, _, exons, cds, covlen, cdslen = line.split("\t")
        pairs = [tuple(map(int, part.split("-"))) for part in exons.split(",")]
        cds_pairs = [tuple(map(int, part.split("-"))) for part in cds.split(",") if part != "."]
        span = (
            (min(s for s, _ in cds_pairs) - 1, max(e for _, e in cds_pairs)) if cds_pairs else None
        )
        table[tid] = ([(s - 1, e) for s, e in pairs], span, int(covlen), int(cdslen))
    return table


@needs_real
@pytest.mark.needs("gffread")
@pytest.mark.parametrize("name", GFFREAD_FILES)
def test_agrees_with_gffread(tmp_path, name):
    source = REAL / name
    if source.suffix == ".gz":  # gffread reads plain text only
        source = tmp_path / source.stem
        source.write_bytes(gzip.decompress((REAL / name).read_bytes()))
    ours = read_annotation(source)
    theirs = gffread_table(source)
    compared = 0
    for row in ours.itertuples():
        key = (
            row.transcript_id
            if row.transcript_id in theirs
            else row.transcript_id.rsplit(".", 1)[0]
        )
        exons, span, covlen, cdslen = theirs[key]
        assert list(zip(row.exon_starts, row.exon_ends, strict=True)) == exons, key
        assert spliced_length(row) == covlen, key
        assert (None if pd.isna(row.cds_start) else (row.cds_start, row.cds_end)) == span, key
        assert row.cds_len == cdslen, key
        compared += 1
    # Only transcripts this reader drops on purpose (cut short by the excerpt) are missing.
    assert len(theirs) - compared == (1 if "head5000" in name else 0)


def test_part_without_transcript_id(tmp_path):
    lines = gencode_lines()
    lines[7] = without_attr(lines[7], "transcript_id")  # an exon of T1.1
    fails(tmp_path, write(tmp_path / "a.gtf", lines), r"a\.gtf:8: exon without a transcript_id")


def test_gff3_fasta_section_is_not_read_as_features(tmp_path):
    # GFF3 may end with ##FASTA and sequences: before, ">c1" failed as a short feature line.
    lines = [
        "##gff-version 3",
        "c1\tX\ttranscript\t1\t100\t.\t+\t.\tID=T1;gene_id=G1;transcript_type=lncRNA",
        "c1\tX\texon\t1\t100\t.\t+\t.\tParent=T1",
        "##FASTA",
        ">c1",
        "ACGT",
    ]
    df = read_annotation(write(tmp_path / "a.gff3", lines))
    assert df["transcript_id"].tolist() == ["T1"] and df["gene_id"].tolist() == ["G1"]
    # its last sequence line without a newline is no feature line cut short
    (tmp_path / "b.gff3").write_text("\n".join(lines))
    assert read_annotation(tmp_path / "b.gff3")["transcript_id"].tolist() == ["T1"]


# ---- issue 14: the file is read in blocks, attribute text dropped block by block --------


def _small_blocks(monkeypatch, size):
    monkeypatch.setattr(annotation, "_BLOCK_BYTES", size)
    monkeypatch.setattr(annotation, "_READ_CHUNK", min(size, 1 << 16))


@pytest.mark.parametrize("name", ["a.gtf", "a.gtf.gz"])
def test_blocks_of_any_size_give_the_same_table(tmp_path, monkeypatch, name):
    # T3.1 has no transcript line (attributes from its first exon), T1/T2 span blocks.
    path = write(tmp_path / name, gencode_lines())
    whole = read_annotation(path)
    for size in (150, 700):
        _small_blocks(monkeypatch, size)
        pd.testing.assert_frame_equal(read_annotation(path), whole)


@needs_real
def test_gff3_in_blocks_gives_the_same_table(monkeypatch):
    path = REAL / "genomekit_mini" / "gencode.v41.annotation.gff3"
    whole = read_annotation(path)
    _small_blocks(monkeypatch, 20_000)
    pd.testing.assert_frame_equal(read_annotation(path), whole)


@pytest.mark.parametrize("size", [300, 1 << 25])
def test_gzip_errors_name_the_line_in_blocks(tmp_path, monkeypatch, size):
    # Line numbers of a decompressed file, in one block or many (pieces of 64 KiB or less).
    lines = gencode_lines()
    lines[21] = "\t".join(lines[21].split("\t")[:8])
    path = write(tmp_path / "a.gtf.gz", lines)
    monkeypatch.setattr(annotation, "_BLOCK_BYTES", size)
    fails(tmp_path, path, r"a\.gtf\.gz:22: fewer than 9")


def test_a_cut_last_line_is_named_by_its_line_in_the_file_in_blocks(tmp_path, monkeypatch):
    # the last block starts past line 1: the lines of the blocks before it count too
    path = cut_inside_last_line(tmp_path / "cut.gtf", [*gencode_lines(), T5], 'transcript_id "T5')
    _small_blocks(monkeypatch, 300)
    line = len(gencode_lines()) + 1
    fails(tmp_path, path, rf"cut\.gtf:{line}: the file ends inside this line")


def test_first_failing_check_wins_across_blocks(tmp_path, monkeypatch):
    # Line 4 has start > end (a later check), line 20 too few columns (the first check):
    # read whole, the column check fires first; it must still when line 4 is read first.
    lines = gencode_lines()
    fields = lines[3].split("\t")
    fields[3], fields[4] = "300", "200"
    lines[3] = "\t".join(fields)
    lines[19] = "\t".join(lines[19].split("\t")[:8])
    path = write(tmp_path / "a.gtf", lines)
    whole = fails(tmp_path, path, r"a\.gtf:20: fewer than 9")
    _small_blocks(monkeypatch, 300)
    assert fails(tmp_path, path, r"a\.gtf:20: fewer than 9") == whole


def test_truncated_gzip_names_the_same_line_in_blocks(tmp_path, monkeypatch):
    genes = [
        gtf_line("3", "gene", i, i + 10, "+", ".", "x", gene=f"G{i}.1") for i in range(1, 30_000)
    ]
    data = gzip.compress(("\n".join(gencode_lines() + genes) + "\n").encode())
    path = tmp_path / "cut.gtf.gz"
    path.write_bytes(data[: len(data) // 2])
    whole = fails(tmp_path, path, r"cut\.gtf\.gz:\d+: compressed data ends")
    monkeypatch.setattr(annotation, "_BLOCK_BYTES", 100_000)  # blocks parsed before the end
    assert fails(tmp_path, path, r"cut\.gtf\.gz:\d+: compressed data ends") == whole


# --- chrY pseudoautosomal (PAR) copies -------------------------------------------------------


def schema_default(section, key):
    from isoflow.config import SCHEMA as CONFIG_SCHEMA
    from isoflow.config import load_schema

    return load_schema(CONFIG_SCHEMA)["properties"][section]["properties"][key]["default"]


def par_lines(y_id="TX.1_PAR_Y", y_gene="GX.1_PAR_Y", x_chrom="chrX", y_chrom="chrY"):
    """A chrX PAR transcript and its chrY copy: GENCODE names the copy ``{ID}_PAR_Y``, UCSC
    knownGene reuses the X ID (``y_id="TX.1"``)."""
    lines = []
    for chrom, tx, gene in ((x_chrom, "TX.1", "GX.1"), (y_chrom, y_id, y_gene)):
        extra = {"transcript_type": "protein_coding", "tag": "PAR"}
        lines += [
            gtf_line(chrom, "transcript", 101, 400, "+", ".", tx, gene=gene, **extra),
            gtf_line(chrom, "exon", 101, 200, "+", ".", tx, gene=gene, **extra),
            gtf_line(chrom, "exon", 301, 400, "+", ".", tx, gene=gene, **extra),
        ]
    return lines


def test_par_y_copies_are_dropped_by_default_and_counted(tmp_path, caplog):
    path = write(tmp_path / "a.gtf", par_lines())
    assert schema_default("annotation", "par_y") == "drop"
    with caplog.at_level("INFO", logger="isoflow.annotation"):
        dropped = read_annotation(path, par_y=schema_default("annotation", "par_y"))
    assert dropped["transcript_id"].tolist() == ["TX.1"]
    assert "1 _PAR_Y copies (chrY pseudoautosomal copies of chrX transcripts) left out" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level("INFO", logger="isoflow.annotation"):
        kept = read_annotation(path, par_y="keep")
    assert kept["transcript_id"].tolist() == ["TX.1", "TX.1_PAR_Y"]
    assert "1 _PAR_Y copies" in caplog.text and "kept" in caplog.text
    # A library call without the key reads the file as it is.
    assert read_annotation(path)["transcript_id"].tolist() == ["TX.1", "TX.1_PAR_Y"]
    with pytest.raises(ValueError, match="par_y"):
        read_annotation(path, par_y="remove")


@pytest.mark.parametrize(
    ("x_chrom", "y_chrom", "transcript_lines"),
    [("chrX", "chrY", True), ("X", "Y", True), ("chrX", "chrY", False)],
)
def test_x_id_reused_on_chry_names_the_par_cause(tmp_path, x_chrom, y_chrom, transcript_lines):
    lines = par_lines(y_id="TX.1", y_gene="GX.1", x_chrom=x_chrom, y_chrom=y_chrom)
    if not transcript_lines:
        lines = [line for line in lines if "\ttranscript\t" not in line]
    path = write(tmp_path / "knownGene.gtf", lines)
    with pytest.raises(InputError) as info:
        read_annotation(path, par_y="drop")
    message = str(info.value)
    assert "\n" not in message
    y_line = 4 if transcript_lines else 3
    assert message.startswith(f"{path}:{y_line}: transcript ID TX.1 is on {x_chrom} (line 1)")
    assert f"and again on {y_chrom}: a chrY pseudoautosomal (PAR) copy" in message
    assert "TX.1_PAR_Y (left out by annotation.par_y: drop)" in message


def test_gff3_x_id_reused_on_chry_names_the_par_cause(tmp_path):
    lines = ["##gff-version 3"]
    for chrom in ("chrX", "chrY"):
        lines += [
            f"{chrom}\tU\tgene\t101\t400\t.\t+\t.\tID=G1;gene_id=G1",
            f"{chrom}\tU\ttranscript\t101\t400\t.\t+\t.\tID=T1;Parent=G1;transcript_id=T1.1",
            f"{chrom}\tU\texon\t101\t400\t.\t+\t.\tParent=T1",
        ]
    path = write(tmp_path / "a.gff3", lines)
    with pytest.raises(InputError, match=r"a\.gff3:6: transcript ID T1 is on chrX .*\(PAR\)"):
        read_annotation(path)


def test_blank_lines_at_a_block_start_keep_the_line_numbers():
    """A block cut just before blank lines: polars must not drop them (the row index is the
    file line), or every error after them in the block would name a line too low."""
    exon = b'chr1\tsrc\texon\t1\t2\t.\t+\t.\tgene_id "g";\n'
    rows = annotation._parse_block(b"\n\r\n" + exon + b"\n" + exon, 10)
    assert rows["line"].to_list() == [10, 11, 12, 13, 14]
    assert rows.filter(rows["chrom"] == "chr1")["line"].to_list() == [12, 14]


# --- gene_types and exclude_contigs (issue 9, the IsoFormer preset) --------------------------


def typed_lines():
    """Three genes on 1, X and MT: a coding gene with a coding and a retained-intron
    transcript, a lncRNA gene, a coding gene on chrX, one on MT."""
    pc = {"gene_type": "protein_coding"}
    return [
        gtf_line(
            "1",
            "transcript",
            101,
            200,
            "+",
            ".",
            "TA.1",
            "GA.1",
            transcript_type="protein_coding",
            **pc,
        ),  # noqa: E501
        gtf_line(
            "1", "exon", 101, 200, "+", ".", "TA.1", "GA.1", transcript_type="protein_coding", **pc
        ),  # noqa: E501
        gtf_line(
            "1",
            "transcript",
            101,
            300,
            "+",
            ".",
            "TB.1",
            "GA.1",
            transcript_type="retained_intron",
            **pc,
        ),  # noqa: E501
        gtf_line(
            "1", "exon", 101, 300, "+", ".", "TB.1", "GA.1", transcript_type="retained_intron", **pc
        ),  # noqa: E501
        gtf_line(
            "1",
            "transcript",
            501,
            600,
            "-",
            ".",
            "TC.1",
            "GC.1",
            transcript_type="lncRNA",
            gene_type="lncRNA",
        ),  # noqa: E501
        gtf_line(
            "1",
            "exon",
            501,
            600,
            "-",
            ".",
            "TC.1",
            "GC.1",
            transcript_type="lncRNA",
            gene_type="lncRNA",
        ),  # noqa: E501
        gtf_line(
            "X",
            "transcript",
            101,
            200,
            "+",
            ".",
            "TD.1",
            "GD.1",
            transcript_type="protein_coding",
            **pc,
        ),  # noqa: E501
        gtf_line(
            "X", "exon", 101, 200, "+", ".", "TD.1", "GD.1", transcript_type="protein_coding", **pc
        ),  # noqa: E501
        gtf_line(
            "MT",
            "transcript",
            101,
            200,
            "+",
            ".",
            "TE.1",
            "GE.1",
            transcript_type="protein_coding",
            **pc,
        ),  # noqa: E501
        gtf_line(
            "MT", "exon", 101, 200, "+", ".", "TE.1", "GE.1", transcript_type="protein_coding", **pc
        ),  # noqa: E501
    ]


def test_gene_types_keep_every_transcript_of_the_genes(tmp_path):
    path = write(tmp_path / "a.gtf", typed_lines())
    df = read_annotation(path, gene_types=["protein_coding"])
    assert sorted(df["transcript_id"]) == ["TA.1", "TB.1", "TD.1", "TE.1"]
    assert "gene_type" not in df.columns  # not a column of transcripts.parquet
    both = read_annotation(path, gene_types=["protein_coding"], transcript_types=["protein_coding"])
    assert sorted(both["transcript_id"]) == ["TA.1", "TD.1", "TE.1"]


def test_gene_types_matching_nothing_names_the_key(tmp_path):
    path = write(tmp_path / "a.gtf", typed_lines())
    with pytest.raises(
        InputError,
        match=r"no transcript of gene types \['pc'\] \(annotation\.gene_types\); "
        r"types present include \['lncRNA', 'protein_coding'\]",
    ):
        read_annotation(path, gene_types=["pc"])


def test_gene_types_on_a_file_without_gene_types(tmp_path):
    lines = [re.sub(r'gene_type "[^"]*";\s*', "", line) for line in typed_lines()]
    path = write(tmp_path / "a.gtf", lines)
    with pytest.raises(
        InputError,
        match=r"has no gene_type / gene_biotype attribute; set annotation\.gene_types: null",
    ):
        read_annotation(path, gene_types=["protein_coding"])


def test_gene_type_of_an_ensembl_gff3_comes_from_the_gene_line(tmp_path):
    lines = [
        "##gff-version 3",
        "c1\tX\tgene\t1\t100\t.\t+\t.\tID=gene:G1;biotype=protein_coding;gene_id=G1",
        "c1\tX\tmRNA\t1\t100\t.\t+\t.\tID=transcript:T1;Parent=gene:G1;biotype=protein_coding",
        "c1\tX\texon\t1\t100\t.\t+\t.\tParent=transcript:T1",
        "c1\tX\tlnc_RNA\t1\t90\t.\t+\t.\tID=transcript:T2;Parent=gene:G1;biotype=retained_intron",
        "c1\tX\texon\t1\t90\t.\t+\t.\tParent=transcript:T2",
        "c1\tX\tgene\t201\t300\t.\t+\t.\tID=gene:G2;biotype=lncRNA;gene_id=G2",
        "c1\tX\tlnc_RNA\t201\t300\t.\t+\t.\tID=transcript:T3;Parent=gene:G2;biotype=lncRNA",
        "c1\tX\texon\t201\t300\t.\t+\t.\tParent=transcript:T3",
    ]
    path = write(tmp_path / "a.gff3", lines)
    df = read_annotation(path, gene_types=["protein_coding"])
    assert sorted(df["transcript_id"]) == ["T1", "T2"]


@pytest.mark.parametrize(
    ("exclude", "aliases", "left"),
    [
        (["chrM", "chrX", "chrY"], {}, ["TA.1", "TB.1", "TC.1"]),  # chrX names X, chrM names MT
        (["chrM"], {"MT": "chrM", "X": "chrX", "1": "chr1"}, ["TA.1", "TB.1", "TC.1", "TD.1"]),
        (["X"], {"X": "chrX"}, ["TA.1", "TB.1", "TC.1", "TE.1"]),
        (["chrY"], {}, ["TA.1", "TB.1", "TC.1", "TD.1", "TE.1"]),  # names nothing: logged
    ],
)
def test_exclude_contigs(tmp_path, caplog, exclude, aliases, left):
    path = write(tmp_path / "a.gtf", typed_lines())
    with caplog.at_level("INFO"):
        df = read_annotation(path, contig_aliases=aliases, exclude_contigs=exclude)
    assert sorted(df["transcript_id"]) == left
    if len(left) < 5:
        assert "left out (annotation.exclude_contigs" in caplog.text
    else:
        assert "name no contig of this file" in caplog.text


def test_contig_matches():
    from isoflow.annotation import contig_matches

    assert contig_matches("MT", "chrM") and contig_matches("chrMT", "M")
    assert contig_matches("X", "chrX") and contig_matches("chrX", "X")
    assert contig_matches("NC_000023.11", "chrX", {"NC_000023.11": "chrX"})
    assert not contig_matches("chrX", "chrY") and not contig_matches("chr1", "chr10")
    assert not contig_matches("chr1", "chrM")


@pytest.mark.needs("shared")
@pytest.mark.parametrize(
    "relative",
    [
        "bambu_chr9/Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf",  # Ensembl: gene_biotype
        "genomekit_mini/gencode.v41.annotation.gff3",  # GENCODE GFF3: gene_type
        "chrM_oracle/Ensembl_MT.gtf",  # MT: every transcript on an excluded contig
    ],
)
def test_preset_filters_on_real_excerpts(relative):
    """config/isoformer.yaml's annotation filters on real GENCODE / Ensembl files: the kept
    transcripts are exactly those whose own and gene's types are protein_coding, read from
    the file's transcript lines by a regular expression (an independent reading), off the
    excluded contigs."""
    import yaml

    preset = yaml.safe_load((Path(__file__).parents[2] / "config" / "isoformer.yaml").read_text())
    keys = preset["annotation"]
    path = REAL / relative
    expected = set()
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if line.startswith("#") or len(fields) < 9 or fields[2] not in ("transcript", "mRNA"):
            continue
        attrs = fields[8]

        def attr(*names, attrs=attrs):
            for name in names:
                found = re.search(rf'(?:^|[; ]){name}[ =]"?([^";]+)', attrs)
                if found:
                    return found[1]
            return None

        tx_type = attr("transcript_type", "transcript_biotype", "biotype")
        gene_type = attr("gene_type", "gene_biotype")
        if gene_type is None and fields[2] == "mRNA":  # Ensembl GFF3 has it on the gene line
            gene_type = tx_type
        if tx_type == gene_type == "protein_coding" and fields[0] not in ("MT", "chrM", "X", "Y"):
            tid = attr("transcript_id") or attr("ID").removeprefix("transcript:")
            version = attr("transcript_version")
            expected.add(f"{tid}.{version}" if version and not tid.endswith(f".{version}") else tid)
    if relative.startswith("chrM"):
        with pytest.raises(InputError, match="no transcript of types"):
            read_annotation(path, **keys)
        return
    df = read_annotation(path, **keys)
    assert set(df["transcript_id"]) == expected and expected
    assert not df["chrom"].isin(["MT", "chrM", "X", "Y", "chrX", "chrY"]).any()
