"""isoflow.sequences against gffread, Ensembl's and GENCODE's own FASTA files, and by hand."""

from __future__ import annotations

import atexit
import gzip
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml

from helpers.paths import REPO, SNAKEMAKE
from helpers.paths import SHARED_REAL as REAL
from isoflow import sequences
from isoflow.alphabet import genetic_code, standard_code, translate_cds
from isoflow.annotation import read_annotation
from isoflow.errors import InputError
from isoflow.genome import GenomeWindows, encode
from isoflow.sequences import build_sequences, cds_bounds, read_fasta, window_bounds

CHR9 = REAL / "bambu_chr9"
MINI = REAL / "genomekit_mini"
MITO = REAL / "chrM_oracle"
V32 = REAL / "gencode_v32_fasta_format"
RCRS_NAME = "gi|251831106|ref|NC_012920.1|"  # the contig name in rcrs.fasta

_COPIES = Path(tempfile.mkdtemp(prefix="isoflow_real_fasta_"))
atexit.register(shutil.rmtree, _COPIES, True)


def indexed(fasta: Path) -> Path:
    """``fasta`` where its .fai is shipped beside it, else a copy in a temporary folder:
    opening an unindexed FASTA writes its index beside it (pysam, gffread), and the shared
    excerpts must stay as shipped (tests/conftest.py fails a session that writes there)."""
    if not fasta.exists() or Path(f"{fasta}.fai").exists():
        return fasta
    folder = _COPIES / fasta.parent.name
    folder.mkdir(exist_ok=True)
    copy = folder / fasta.name
    if not copy.exists():
        shutil.copyfile(fasta, copy)
    return copy


CASES = {
    "bambu_chr9": (
        CHR9 / "Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf",
        CHR9 / "Homo_sapiens.GRCh38.dna_sm.primary_assembly_chr9_1_1000000.fa",
        {},
    ),
    "genomekit_v29": (MINI / "gencode.v29.annotation.gff3", indexed(MINI / "hg38.p13.mini.fa"), {}),
    "genomekit_v41": (MINI / "gencode.v41.annotation.gff3", indexed(MINI / "hg38.p13.mini.fa"), {}),
    "chrM_oracle": (MITO / "Ensembl_MT.gtf", indexed(MITO / "rcrs.fasta"), {"MT": RCRS_NAME}),
}

needs_real = pytest.mark.needs("shared")
needs_gffread = pytest.mark.needs("gffread")


def unversioned(records: dict[str, str]) -> dict[str, str]:
    return {re.sub(r"\.\d+$", "", name): seq for name, seq in records.items()}


def build(case: str, tmp_path: Path) -> tuple[pd.DataFrame, dict, dict, Path]:
    annotation, fasta, aliases = CASES[case]
    transcripts = read_annotation(annotation, aliases)
    out = tmp_path / "sequences"
    build_sequences(
        transcripts, fasta, 1_000, out / "rna.fa.gz", out / "protein.fa.gz", out / "w.bed"
    )
    rna = read_fasta(out / "rna.fa.gz")
    protein = read_fasta(out / "protein.fa.gz")
    return transcripts, rna, protein, out


def gffread(annotation: Path, fasta: Path, tmp_path: Path) -> tuple[dict, dict]:
    out = tmp_path / "gffread"
    out.mkdir()
    subprocess.run(
        ["gffread", "-w", out / "rna.fa", "-y", out / "protein.fa", "-g", fasta, annotation],
        check=True,
        capture_output=True,
    )
    rna = {k: v.upper() for k, v in read_fasta(out / "rna.fa").items()}
    # gffread marks stop codons with '.'; strip a trailing one (or '*') to compare.
    protein = {k: v.rstrip(".*") for k, v in read_fasta(out / "protein.fa").items()}
    return unversioned(rna), unversioned(protein)


@needs_real
@needs_gffread
@pytest.mark.parametrize("case", list(CASES))
def test_rna_equals_gffread_spliced_exons(case: str, tmp_path: Path) -> None:
    annotation, fasta, _ = CASES[case]
    transcripts, rna, _, _ = build(case, tmp_path)
    if case == "chrM_oracle":  # gffread needs the annotation's contig name in the FASTA
        renamed = tmp_path / "MT.fa"
        body = MITO.joinpath("rcrs.fasta").read_text().split("\n", 1)[1]
        renamed.write_text(">MT\n" + body)
        fasta = renamed
    expected, _ = gffread(annotation, fasta, tmp_path)
    assert len(rna) == len(transcripts) == len(expected)
    assert unversioned(rna) == expected


@needs_real
@needs_gffread
@pytest.mark.parametrize("case", ["bambu_chr9", "genomekit_v29", "genomekit_v41"])
def test_protein_equals_gffread_translation(case: str, tmp_path: Path) -> None:
    annotation, fasta, _ = CASES[case]
    transcripts, _, protein, _ = build(case, tmp_path)
    _, expected = gffread(annotation, fasta, tmp_path)
    protein = unversioned(protein)
    assert set(protein) == set(expected)
    incomplete = {"start": 0, "end": 0}
    for row in transcripts.dropna(subset=["cds_start"]).itertuples():
        tid = re.sub(r"\.\d+$", "", row.transcript_id)
        ours, theirs = protein[tid], expected[tid]
        assert "*" not in ours
        if "cds_start_NF" not in row.tags and "cds_end_NF" not in row.tags:
            assert ours == theirs, tid
            continue
        # gffread skips the phase bases and drops a partial last codon; we write X for each
        if row.cds_phase:
            assert ours.startswith("X"), tid
            ours = ours[1:]
            incomplete["start"] += 1
        if ours == theirs + "X":
            ours = ours[:-1]
            incomplete["end"] += 1
        assert ours == theirs, tid
    assert incomplete["start"] > 0  # the data does exercise both conventions
    assert incomplete["end"] > 0


@needs_real
def test_mt_cyb_with_the_mitochondrial_code_equals_ensembl_peptide(tmp_path: Path) -> None:
    transcripts, rna, protein, _ = build("chrM_oracle", tmp_path)
    peptides = read_fasta(MITO / "human.ensembl.97.patch.pep.fa")
    assert protein["ENST00000361789.2"] == peptides["ENSP00000354554.2"]  # MT-CYB
    # Ensembl's own cDNA (MT-CYB) and ncRNA (MT-RNR1) records are independent oracles too
    cdna = read_fasta(MITO / "human.ensembl.97.patch.cdna.fa")
    ncrna = read_fasta(MITO / "human.ensembl.97.patch.ncrna.fa")
    assert rna["ENST00000361789.2"] == cdna["ENST00000361789.2"]
    assert rna["ENST00000389680.2"] == ncrna["ENST00000389680.2"]
    coding = transcripts.dropna(subset=["cds_start"])
    assert len(coding) == 13
    by_name = dict(zip(transcripts.gene_name, transcripts.transcript_id, strict=True))
    # MT-ND2 starts with ATT: read as M with table 2, as Ensembl does
    assert protein[by_name["MT-ND2"]].startswith("M")
    for tid in coding.transcript_id:  # incomplete TAA stops (T / TA) leave no X
        assert protein[tid].startswith("M") and "X" not in protein[tid] and "*" not in protein[tid]


@needs_real
def test_gencode_pc_translations_conventions() -> None:
    transcripts = read_fasta(V32 / "gencode.v32.pc_transcripts.subsample5.fa")
    translations = {
        name.split("|")[1]: seq
        for name, seq in read_fasta(
            V32 / "gencode.v32.pc_translations.subsample5.randomseed0.fa"
        ).items()
    }
    seen = set()
    for header, seq in transcripts.items():
        fields = header.split("|")
        first, last = (
            int(x) for x in next(f for f in fields if f.startswith("CDS:"))[4:].split("-")
        )
        cds = seq[first - 1 : last]
        expected = translations[fields[0]]
        name = fields[4]
        seen.add(name)
        if name == "HLA-DPA1-243":  # cds_start_NF, phase 1: skip one base, leading X
            assert expected.startswith("X")
            assert translate_cds(cds, phase=1, start_complete=False) == expected
        elif name == "EHF-207":  # cds_end_NF: GENCODE drops the partial codon, we write X
            assert len(cds) % 3 == 1
            assert translate_cds(cds) == expected + "X"
        else:
            assert translate_cds(cds) == expected, name
    assert {"HLA-DPA1-243", "EHF-207", "SLC24A1-201"} <= seen


def test_translate_cds_by_hand() -> None:
    assert translate_cds("ATGGCTTAA") == "MA"
    assert translate_cds("ATGGCT") == "MA"
    assert translate_cds("ATGTAAGCTTGA") == "M*A"  # internal stop kept
    assert translate_cds("ATGGCTTG") == "MAX"  # incomplete last codon
    assert translate_cds("ATGNCTGCT") == "MXA"
    assert translate_cds("atggct") == "MA"
    assert translate_cds("CATGGCT", phase=1, start_complete=False) == "XMA"
    assert translate_cds("ATGTGAAAATAA", selenocysteines=[3]) == "MUK"
    with pytest.raises(ValueError, match="not a codon start"):
        translate_cds("ATGTGAAAATAA", selenocysteines=[4])
    with pytest.raises(ValueError, match="table"):
        translate_cds("ATG", table=11)


def test_vertebrate_mitochondrial_code() -> None:
    assert genetic_code("chrM") == genetic_code("MT") == genetic_code(RCRS_NAME) == 2
    assert genetic_code("chr1") == genetic_code("M1") == 1
    # TGA = W, ATA = M, AGA/AGG = stop; alternative initiator ATT reads M
    assert translate_cds("ATTTGAATAAGA", table=2) == "MWM"
    assert translate_cds("ATTTGAATAAGA", table=1) == "I*IR"
    assert translate_cds("ATGAGGCCC", table=2) == "M*P"
    assert translate_cds("ATTCCC", table=2, start_complete=False) == "IP"
    assert translate_cds("ATGCCCTA", table=2) == "MP"  # TA + polyA = TAA
    assert translate_cds("ATGCCCT", table=2) == "MP"
    assert translate_cds("ATGCCCG", table=2) == "MPX"


def test_cds_bounds_both_strands() -> None:
    exons = [(100, 110), (200, 220), (300, 305)]
    assert cds_bounds(exons, "+", 105, 210) == (5, 20)
    # minus strand: transcript 5' end is genomic 305
    assert cds_bounds(exons, "-", 105, 210) == (15, 30)
    with pytest.raises(ValueError, match="does not overlap"):
        cds_bounds(exons, "+", 150, 160)


@pytest.mark.parametrize("window", [8, 9, 196_608])
def test_window_puts_the_tss_at_the_centre_on_both_strands(window: int) -> None:
    start, end = window_bounds(1_000_000, "+", window)
    assert end - start == window and 1_000_000 - start == window // 2
    start, end = window_bounds(1_000_000, "-", window)
    # reading the minus window 5'->3' starts at end - 1; the TSS is window // 2 further on
    assert end - start == window and (end - 1) - 1_000_000 == window // 2


def test_window_bounds_may_run_past_contig_ends() -> None:
    assert window_bounds(3, "+", 8) == (-1, 7)
    assert window_bounds(3, "-", 8) == (0, 8)
    assert window_bounds(0, "-", 9) == (-4, 5)


@needs_real
def test_windows_read_the_transcript_from_their_centre(tmp_path: Path) -> None:
    transcripts, rna, _, out = build("bambu_chr9", tmp_path)
    bed = pd.read_csv(out / "w.bed", sep="\t", header=None, dtype={0: str})
    assert len(bed) == len(transcripts)
    assert (bed[4] == 0).all() and (bed[2] - bed[1] == 1_000).all()
    assert set(bed[5]) == {"+", "-"}
    genome = GenomeWindows(CASES["bambu_chr9"][1])
    for (chrom, start, end, tid, _, strand), row in zip(
        bed.itertuples(index=False), transcripts.itertuples(), strict=True
    ):
        assert tid == row.transcript_id
        first_exon = (
            (row.exon_ends[0] - row.exon_starts[0])
            if strand == "+"
            else (row.exon_ends[-1] - row.exon_starts[-1])
        )
        k = min(first_exon, 500)
        tokens = genome.tokens(chrom, start, end, strand)
        np.testing.assert_array_equal(tokens[500 : 500 + k], encode(rna[tid][:k]), err_msg=tid)


SEC_GENOME = "CCATGGC" + "GTAAGTTTTTTTTTAG" + "TTGAAAATAAGG"  # mRNA CC ATG GCT TGA AAA TAA GG


def _sec_gtf(path: Path, with_sec: bool = True, contig_plus: str = "chr1") -> Path:
    attrs = 'gene_id "G{n}.1"; transcript_id "T{n}.1"; gene_name "SELX"; gene_type "protein_coding"; transcript_type "protein_coding"; tag "selenoprotein";'  # noqa: E501
    plus = [
        ("transcript", 1, 35),
        ("exon", 1, 7),
        ("exon", 24, 35),
        ("CDS", 3, 7, 0),
        ("CDS", 24, 30, 1),
        ("start_codon", 3, 5, 0),
        ("stop_codon", 31, 33, 0),
    ]
    if with_sec:
        plus.append(("Selenocysteine", 25, 27))
    lines = []
    for n, contig, strand in ((1, contig_plus, "+"), (2, "chr2", "-")):
        for feature in plus:
            kind, a, b = feature[:3]
            phase = str(feature[3]) if len(feature) > 3 else "."
            if strand == "-":
                a, b = 36 - b, 36 - a
            fields = [contig, "TEST", kind, str(a), str(b), ".", strand, phase]
            lines.append("\t".join(fields + [attrs.format(n=n)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _sec_fasta(path: Path) -> Path:
    minus = SEC_GENOME.translate(str.maketrans("ACGT", "TGCA"))[::-1]
    path.write_text(f">chr1\n{SEC_GENOME}\n>chr2\n{minus}\n")
    return path


def test_selenocysteine_reads_u_on_both_strands(tmp_path: Path) -> None:
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    fasta = _sec_fasta(tmp_path / "sec.fa")
    out = tmp_path / "out"
    counts = build_sequences(
        transcripts, fasta, 10, out / "r.fa.gz", out / "p.fa.gz", out / "w.bed"
    )
    assert read_fasta(out / "p.fa.gz") == {"T1.1": "MAUK", "T2.1": "MAUK"}
    rna = "CCATGGCTTGAAAATAAGG"
    assert read_fasta(out / "r.fa.gz") == {"T1.1": rna, "T2.1": rna}
    assert counts["internal_stops"] == 0
    # 10 bp windows: + TSS 0 -> [-5, 5); - TSS 34 -> [30, 40), both past an end
    assert (out / "w.bed").read_text() == "chr1\t-5\t5\tT1.1\t0\t+\nchr2\t30\t40\tT2.1\t0\t-\n"
    assert counts["windows_past_ends"] == 2


def test_unannotated_selenocysteine_is_an_internal_stop_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf", with_sec=False), {})
    out = tmp_path / "out"
    fasta = _sec_fasta(tmp_path / "sec.fa")
    with caplog.at_level(logging.WARNING, logger="isoflow.sequences"):
        counts = build_sequences(
            transcripts, fasta, 10, out / "r.fa.gz", out / "p.fa.gz", out / "w.bed"
        )
    assert read_fasta(out / "p.fa.gz") == {"T1.1": "MA*K", "T2.1": "MA*K"}
    assert counts["internal_stops"] == 2
    assert "2 proteins have an internal stop" in caplog.text


def test_fasta_layout_gzip_60_columns(tmp_path: Path) -> None:
    fasta = tmp_path / "long.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 50 + "\n")
    table = pd.DataFrame(
        {
            "transcript_id": ["T1.1"],
            "chrom": ["chr1"],
            "strand": ["+"],
            "tss": [0],
            "exon_starts": [[0]],
            "exon_ends": [[200]],
            "cds_start": pd.array([None], dtype="Int64"),
            "cds_end": pd.array([None], dtype="Int64"),
            "cds_phase": pd.array([None], dtype="Int8"),
            "selenocysteines": [[]],
            "tags": [[]],
        }
    )
    out = tmp_path / "out"
    build_sequences(table, fasta, 10, out / "r.fa.gz", out / "p.fa.gz", out / "w.bed")
    assert (out / "r.fa.gz").read_bytes()[:2] == b"\x1f\x8b"
    lines = gzip.open(out / "r.fa.gz", "rt").read().splitlines()
    assert lines[0] == ">T1.1" and [len(x) for x in lines[1:]] == [60, 60, 60, 20]
    assert gzip.open(out / "p.fa.gz", "rt").read() == ""
    assert sorted(p.name for p in out.iterdir()) == ["p.fa.gz", "r.fa.gz", "w.bed"]


def test_missing_contig_fails_before_writing_with_a_hint(tmp_path: Path) -> None:
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf", contig_plus="1"), {})
    fasta = _sec_fasta(tmp_path / "sec.fa")
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        build_sequences(
            transcripts, fasta, 10, out / "r.fa.gz", out / "p.fa.gz", out / "w.bed", "ann.gtf"
        )
    assert str(err.value) == (
        f"ann.gtf:1: contig '1' is not in the genome FASTA {fasta}; "
        """the FASTA has 'chr1': set contig_aliases: {"1": "chr1"}"""
    )
    assert not out.exists() or not list(out.iterdir())


def test_exon_past_contig_end_names_the_transcript(tmp_path: Path) -> None:
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts.at[1, "exon_ends"] = [12, 99]
    message = _build_bad(tmp_path, transcripts)  # also: nothing left in the output folder
    assert re.match(r"tx.parquet:T2.1: interval 0-99 lies outside the contig \(0-35\)", message)


def test_misplaced_selenocysteine_names_the_transcript(tmp_path: Path) -> None:
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts.at[0, "selenocysteines"] = [9]
    fasta = _sec_fasta(tmp_path / "sec.fa")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"^tx.parquet:T1.1: selenocysteine at CDS position 7"):
        build_sequences(
            transcripts,
            fasta,
            10,
            out / "r.fa.gz",
            out / "p.fa.gz",
            out / "w.bed",
            transcripts_path="tx.parquet",
        )


OUTPUTS = ("rna.fa.gz", "protein.fa.gz", "dna_windows.bed")


def _run_rule(tmp_path: Path, aliases: dict[str, str]) -> subprocess.CompletedProcess:
    annotation, fasta, _ = CASES["bambu_chr9"]
    (tmp_path / "in").mkdir(exist_ok=True)
    shutil.copy(fasta, tmp_path / "in" / "genome.fa")  # no .fai: genome_index makes it
    shutil.copy(annotation, tmp_path / "in" / "ann.gtf")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["genome"]["fasta"] = "in/genome.fa"
    config["annotation"]["gtf"] = "in/ann.gtf"
    config["contig_aliases"] = aliases
    config["dna"]["window"] = 1_000
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/sequences/{name}" for name in OUTPUTS]
    command = [SNAKEMAKE, *targets, "-s", REPO / "Snakefile", "-d", tmp_path, "--cores", "1"]
    command += ["--configfile", tmp_path / "config.yaml"]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)


@needs_real
@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake missing")
def test_rules_genome_index_and_sequences(tmp_path: Path) -> None:
    done = _run_rule(tmp_path, {})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "in" / "genome.fa.fai").read_text() == "9\t1000000\t3\t60\t61\n"
    _, rna, protein, out = build("bambu_chr9", tmp_path)
    results = tmp_path / "results" / "sequences"
    assert read_fasta(results / "rna.fa.gz") == rna
    assert read_fasta(results / "protein.fa.gz") == protein
    assert (results / "dna_windows.bed").read_text() == (out / "w.bed").read_text()
    assert (tmp_path / "benchmarks" / "sequences" / "sequences.tsv").exists()


@needs_real
@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake missing")
def test_rule_sequences_fails_early_on_a_contig_missing_from_the_fasta(tmp_path: Path) -> None:
    done = _run_rule(tmp_path, {"9": "chr9"})
    assert done.returncode != 0
    assert (
        "isoflow: error: in/ann.gtf:chr9: contig 'chr9' (annotation '9' via contig_aliases) "
        """is not in the genome FASTA in/genome.fa; the FASTA has '9': remove "9": "chr9" from """
        "contig_aliases"
    ) in done.stderr
    assert not any((tmp_path / "results" / "sequences" / name).exists() for name in OUTPUTS)


# ---- issue 7: tables and genomes that used to give wrong sequences without a word -------


def _build_bad(tmp_path: Path, transcripts: pd.DataFrame, fasta: Path | None = None) -> str:
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        build_sequences(
            transcripts,
            fasta or _sec_fasta(tmp_path / "sec.fa"),
            10,
            out / "r.fa.gz",
            out / "p.fa.gz",
            out / "w.bed",
            transcripts_path="tx.parquet",
        )
    assert not out.exists() or not list(out.iterdir())
    return str(err.value)


@pytest.mark.parametrize("letter", ["5", "-", "*", ".", "X"])
@pytest.mark.parametrize("packed", ["plain", "bgzip"])
def test_a_byte_that_is_no_nucleotide_in_an_exon_names_contig_and_base(
    tmp_path: Path, letter: str, packed: str
) -> None:
    # Before: only CR/LF were stripped and ASCII checked, so a gap, a stop or a digit in
    # the genome reached rna.fa.gz as a base of the RNA, silently.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    fasta = _sec_fasta(tmp_path / "sec.fa")
    text = fasta.read_text()
    at = text.index("\n") + 1 + 4  # chr1 base 5, in T1.1's first exon (1-7)
    fasta.write_text(text[:at] + letter + text[at + 1 :])
    if packed == "bgzip":
        pysam.tabix_compress(str(fasta), f"{fasta}.gz")
        fasta = Path(f"{fasta}.gz")
    message = _build_bad(tmp_path, transcripts, fasta)
    assert message == (
        f"tx.parquet:T1.1: base 5 of chr1 is {letter!r}, not a nucleotide letter (IUPAC: "
        f"ACGTURYKMSWBDHVN, either case); fix the genome FASTA {fasta} (a genome "
        "hard-masked with X: mask with N)"
    )


@needs_real
def test_a_fasta_line_edited_under_its_old_fai_fails_the_batched_exon_reader(
    tmp_path: Path,
) -> None:
    # Before: the batched reader took each exon's bytes where the old .fai puts them; with
    # one line a base longer and a later one a base shorter (same size: the index check at
    # open passes), the exons between were read shifted by a base into rna.fa.gz, silently.
    transcripts = read_annotation(CHR9 / "Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf", {})
    first = transcripts.sort_values("tx_start").iloc[0]
    line = first.exon_starts[0] // 60 + 1  # the file line (0-based) of its first exon base
    fasta = tmp_path / "chr9.fa"
    genome = CHR9 / "Homo_sapiens.GRCh38.dna_sm.primary_assembly_chr9_1_1000000.fa"
    lines = genome.read_text().split("\n")
    lines[line - 1] += "A"  # the line before: every exon base after it moves by one
    lines[16_000] = lines[16_000][:-1]  # bases 959,941-960,000
    fasta.write_text("\n".join(lines))
    shutil.copy(f"{genome}.fai", f"{fasta}.fai")
    message = _build_bad(tmp_path, transcripts, fasta)
    assert re.match(
        r"tx\.parquet:ENST\d+\.\d+: bases [\d,]+-[\d,]+ of 9 are not on lines of 60 bases",
        message,
    )


def test_the_batched_exon_reader_refuses_bases_an_edited_line_moved(tmp_path: Path) -> None:
    # An exon inside one line, between a line a base longer and one a base shorter: no line
    # end inside its bytes, so the length check passed and the bases were one off.
    seq = "".join(np.random.default_rng(5).choice(list("ACGT"), size=600))
    lines = [">c0", *(seq[i : i + 60] for i in range(0, 600, 60))]
    fasta = tmp_path / "g.fa"
    fasta.write_text("\n".join(lines) + "\n")
    pysam.faidx(str(fasta))
    lines[3] += "A"  # bases 121-180 + 1
    lines[7] = lines[7][:-1]  # bases 361-420 - 1
    fasta.write_text("\n".join(lines) + "\n")
    with sequences._ExonReader(GenomeWindows(fasta)) as reader:

        def read(start: int, end: int) -> bytes | None:
            return reader.read(["c0"], np.array([0]), np.array([start]), np.array([end]))

        assert read(10, 20) == seq[10:20].encode()
        assert read(430, 440) == seq[430:440].encode()
        assert read(190, 200) is None  # before: seq[189:199], silently
        assert read(130, 140) is None  # in the longer line, before its extra base


def test_iupac_codes_and_soft_masking_in_an_exon_are_read(tmp_path: Path) -> None:
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    fasta = _sec_fasta(tmp_path / "sec.fa")
    text = fasta.read_text()
    at = text.index("\n") + 1
    fasta.write_text(text[:at] + "ccRyGGC" + text[at + 7 :])
    out = tmp_path / "out"
    build_sequences(transcripts, fasta, 10, out / "r.fa.gz", out / "p.fa.gz", out / "w.bed")
    assert read_fasta(out / "r.fa.gz")["T1.1"] == "CCRYGGCTTGAAAATAAGG"


def test_exons_out_of_genomic_order_name_the_transcript(tmp_path: Path) -> None:
    # Before: the exons were joined in the order given, a wrong RNA and protein.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts.at[0, "exon_starts"] = [23, 0]
    transcripts.at[0, "exon_ends"] = [35, 7]
    assert _build_bad(tmp_path, transcripts) == (
        "tx.parquet:T1.1: exons are not in genomic order or overlap (23-35 then 0-7)"
    )


def test_strand_other_than_plus_minus(tmp_path: Path) -> None:
    # Before: any strand but '-' was read as '+'.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts.at[1, "strand"] = "."
    assert _build_bad(tmp_path, transcripts) == "tx.parquet:T2.1: strand '.' is not + or -"


def test_cds_past_the_exons(tmp_path: Path) -> None:
    # Before: the CDS was cut at the last exon and translated as if complete.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts.at[0, "cds_end"] = 40
    assert _build_bad(tmp_path, transcripts) == (
        "tx.parquet:T1.1: CDS 2-40 does not start and end inside exons"
    )


def test_transcript_listed_twice(tmp_path: Path) -> None:
    # Before: two records of one ID in rna.fa.gz; the dataset rule failed two rules later.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts = pd.concat([transcripts, transcripts.iloc[[0]]], ignore_index=True)
    assert _build_bad(tmp_path, transcripts) == "tx.parquet:T1.1: transcript listed twice"


def test_contig_listed_twice_in_the_genome(tmp_path: Path) -> None:
    # Before: the windows and RNA of chr1 came from its first copy.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    fasta = _sec_fasta(tmp_path / "sec.fa")
    fasta.write_text(fasta.read_text() + ">chr1\nACGT\n")
    assert "chr1: contig listed twice" in _build_bad(tmp_path, transcripts, fasta)


def test_a_stale_index_lacking_a_contig_is_named_stale_not_the_contig_missing(
    tmp_path: Path,
) -> None:
    # A user's .fai is read as it stands (the workflow never remakes it): one made before
    # chr2 was added to the FASTA used to be reported as "contig 'chr2' is not in the genome
    # FASTA", which it is.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    fasta = _sec_fasta(tmp_path / "sec.fa")
    chr2 = fasta.read_text().split(">chr2")[1]
    fasta.write_text(fasta.read_text().split(">chr2")[0])
    pysam.faidx(str(fasta))
    fasta.write_text(fasta.read_text() + ">chr2" + chr2)
    message = _build_bad(tmp_path, transcripts, fasta)
    assert message.startswith(f"{fasta}: the index {fasta}.fai does not match the FASTA")


def test_tss_that_is_not_the_first_transcribed_base(tmp_path: Path) -> None:
    # Before: the window was centred on whatever tss the table said.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts.at[1, "tss"] = 30  # T2.1 is on '-': its first base is 34
    assert _build_bad(tmp_path, transcripts) == (
        "tx.parquet:T2.1: tss 30 is not the first transcribed base (34); the DNA window would "
        "be centred elsewhere"
    )


# ---- issue 14: only exon bases are read, a batch of transcripts at a time ---------------


def _records(transcripts: pd.DataFrame, fasta: Path, one_by_one: bool = False) -> list:
    with GenomeWindows(fasta) as genome:
        if one_by_one:
            return list(sequences._records_one_by_one(transcripts, genome))
        return list(sequences.sequence_records(transcripts, genome))


@needs_real
@pytest.mark.parametrize("case", list(CASES))
def test_batches_equal_the_one_by_one_reference(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Several batches, every one through the batched path (the reference would be used on
    # any transcript that breaks a check: make it fail to see that none does).
    annotation, fasta, aliases = CASES[case]
    transcripts = read_annotation(annotation, aliases)
    expected = _records(transcripts, fasta, one_by_one=True)
    monkeypatch.setattr(sequences, "_BATCH", 7)
    monkeypatch.setattr(sequences, "_records_one_by_one", None)
    assert _records(transcripts, fasta) == expected
    assert any(r.protein for r in expected)


@needs_real
def test_bgzip_and_crlf_genomes_give_the_same_records(tmp_path: Path) -> None:
    annotation, fasta, _ = CASES["bambu_chr9"]
    transcripts = read_annotation(annotation)
    expected = _records(transcripts, fasta, one_by_one=True)
    crlf = tmp_path / "crlf.fa"
    crlf.write_bytes(fasta.read_bytes().replace(b"\n", b"\r\n"))
    bgzip = tmp_path / "genome.fa.gz"
    pysam.tabix_compress(str(fasta), str(bgzip))
    for path in (crlf, bgzip):
        pysam.faidx(str(path))
        assert _records(transcripts, path) == expected, path.name


def test_a_bad_transcript_is_named_from_any_batch(tmp_path: Path, monkeypatch) -> None:
    # T1.1 goes through the batched path, T2.1 (its batch) through the reference.
    transcripts = read_annotation(_sec_gtf(tmp_path / "sec.gtf"), {})
    transcripts.at[1, "tss"] = 30
    monkeypatch.setattr(sequences, "_BATCH", 1)
    assert _build_bad(tmp_path, transcripts).startswith("tx.parquet:T2.1: tss 30 is not")


@needs_gffread
def test_codons_touching_an_n_are_x_where_gffread_resolves_fourfold_ones(
    tmp_path: Path,
) -> None:
    # The one convention that differs from gffread -y: any codon with an N is X here;
    # gffread reads one whose first two bases fix the amino acid (GCN -> A) as that.
    cds = "ATG" + "GCN" + "ACN" + "TTN" + "CGN" + "GGN" + "CAN" + "TAA"
    fasta = tmp_path / "n.fa"
    fasta.write_text(f">c1\n{cds}\n")
    attrs = 'gene_id "G1"; transcript_id "T1";'
    rows = [("transcript", 1, 24, "."), ("exon", 1, 24, "."), ("CDS", 1, 21, "0")]
    rows += [("start_codon", 1, 3, "0"), ("stop_codon", 22, 24, "0")]
    gtf = tmp_path / "n.gtf"
    gtf.write_text("".join(f"c1\tT\t{k}\t{a}\t{b}\t.\t+\t{p}\t{attrs}\n" for k, a, b, p in rows))
    out = tmp_path / "out"
    build_sequences(
        read_annotation(gtf), fasta, 10, out / "r.fa.gz", out / "p.fa.gz", out / "w.bed"
    )
    ours = read_fasta(out / "p.fa.gz")["T1"]
    _, theirs = gffread(gtf, fasta, tmp_path)
    assert ours == "MXXXXXX" and theirs["T1"] == "MATXRGX"
    code = standard_code()
    for i, (a, b) in enumerate(zip(ours, theirs["T1"], strict=True)):
        codon = cds[3 * i : 3 * i + 3]
        fourfold = {code[codon[:2] + x] for x in "ACGT"}
        assert a == b or (a == "X" and "N" in codon and fourfold == {b}), codon
