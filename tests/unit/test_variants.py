"""isoflow.variants: variant effects on transcripts, their checks, and the Kircher MPRA path."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pandas as pd
import pysam
import pytest

from helpers.bundles import tiny_bundles
from helpers.commands import command_output
from helpers.training import make_dataset
from isoflow.alphabet import reverse_complement, translate_cds
from isoflow.bundle import ModelInput, load_model
from isoflow.errors import InputError
from isoflow.genome import GenomeWindows
from isoflow.variants import (
    KIRCHER_PROMOTERS,
    REPORTER,
    SubstitutedGenome,
    Variant,
    check_variants,
    construct_variant_effects,
    element_reference,
    element_substitutions,
    kircher_construct,
    read_kircher,
    read_variants,
    variant_effects,
    write_table,
)

WINDOW = 512
# plus strand: two exons, CDS 1030-1180 (30 + 30 = 60 nt); minus strand: non-coding;
# both within the 512-bp windows of their TSS
TRANSCRIPTS = [
    {
        "transcript_id": "TP.1",
        "gene_id": "GP.1",
        "gene_name": "GP",
        "chrom": "chr1",
        "strand": "+",
        "tss": 1000,
        "exon_starts": [1000, 1150],
        "exon_ends": [1060, 1300],
        "cds_start": 1030,
        "cds_end": 1180,
        "cds_phase": 0,
    },
    {
        "transcript_id": "TM.1",
        "gene_id": "GM.1",
        "gene_name": "GM",
        "chrom": "chr1",
        "strand": "-",
        "tss": 5599,
        "exon_starts": [5000, 5400],
        "exon_ends": [5200, 5600],
        "cds_start": None,
        "cds_end": None,
        "cds_phase": None,
    },
]


# a VCF's header lines for one contig, chr1
VCF_HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=chr1>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)


def _annotation() -> pd.DataFrame:
    frame = pd.DataFrame(TRANSCRIPTS)
    frame["transcript_type"] = ["protein_coding", "lncRNA"]
    frame["tags"] = [[], []]
    frame["selenocysteines"] = [[], []]
    frame["cds_start"] = frame["cds_start"].astype("Int64")
    frame["cds_end"] = frame["cds_end"].astype("Int64")
    frame["cds_phase"] = frame["cds_phase"].astype("Int8")
    return frame


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    built = tiny_bundles(tmp, window=WINDOW, device="cpu")
    fasta = built["fasta"]
    annotation = tmp / "transcripts.parquet"
    _annotation().to_parquet(annotation, index=False)
    genome = "".join(line.strip() for line in fasta.read_text().splitlines()[1:])
    return {
        "tmp": tmp,
        "path": built["paths"][0],
        "model": load_model(built["paths"][0], device="cpu"),
        "fasta": fasta,
        "genome": genome,
        "annotation": annotation,
    }


def _variant(genome: str, pos0: int, alt: str | None = None, chrom="chr1") -> Variant:
    ref = genome[pos0]
    alt = alt or next(b for b in "ACGT" if b != ref)
    return Variant(f"v{pos0}", chrom, pos0 + 1, ref, alt)


def _by_hand(genome: str, row: dict, pos0: int | None = None, alt: str = "") -> ModelInput:
    """The three inputs of a transcript of TRANSCRIPTS, spliced and windowed here."""
    seq = genome if pos0 is None else genome[:pos0] + alt + genome[pos0 + 1 :]
    exons = list(zip(row["exon_starts"], row["exon_ends"], strict=True))
    rna = "".join(seq[s:e] for s, e in exons)
    tss, half = row["tss"], WINDOW // 2
    if row["strand"] == "+":
        dna = seq[tss - half : tss - half + WINDOW]
        protein = None
        if row["cds_start"] is not None:
            before = sum(max(0, min(e, row["cds_start"]) - s) for s, e in exons)
            inside = sum(
                max(0, min(e, row["cds_end"]) - max(s, row["cds_start"])) for s, e in exons
            )
            protein = translate_cds(rna[before : before + inside])
    else:
        dna = reverse_complement(seq[tss + half + 1 - WINDOW : tss + half + 1])
        rna, protein = reverse_complement(rna), None
    return ModelInput(row["transcript_id"], dna.upper(), rna.upper(), protein)


def _codon_changing_alt(genome: str, pos0: int) -> str:
    row = TRANSCRIPTS[0]
    ref = _by_hand(genome, row).protein
    return next(
        b for b in "ACGT" if b != genome[pos0] and _by_hand(genome, row, pos0, b).protein != ref
    )


@pytest.mark.slow
def test_effect_is_alt_prediction_minus_ref_prediction(bundle):
    model, genome = bundle["model"], bundle["genome"]
    pos0 = 1160  # second exon of TP.1, in its CDS
    alt = _codon_changing_alt(genome, pos0)
    variants = [_variant(genome, pos0, alt), _variant(genome, 5500)]  # TM.1 exon
    with GenomeWindows(bundle["fasta"]) as windows:
        frame = variant_effects(model, variants, _annotation(), windows, batch_size=1)
    assert list(frame["transcript_id"]) == ["TP.1", "TM.1"]
    for (i, row), v, spec in zip(frame.iterrows(), variants, TRANSCRIPTS, strict=True):
        ref = _by_hand(genome, spec)
        alt_in = _by_hand(genome, spec, v.start, v.alt)
        expected = model.predict([alt_in], batch_size=1) - model.predict([ref], batch_size=1)
        got = row[model.tissues].to_numpy(dtype=np.float32)
        np.testing.assert_allclose(got, expected[0], rtol=0, atol=1e-6, err_msg=str(i))
        assert np.abs(expected).max() > 0  # the model does see the change
    assert frame.loc[0, "changed"] == "dna+rna+protein"
    assert frame.loc[1, "changed"] == "dna+rna"
    # along the transcript's strand: TM.1's TSS is 5599, the variant 99 bases downstream
    assert frame.loc[1, "tss_offset"] == 99


@pytest.mark.slow
def test_exonic_intronic_and_utr_variants_change_the_right_inputs(bundle):
    model, genome = bundle["model"], bundle["genome"]
    variants = [
        _variant(genome, 1100),  # TP.1 intron
        _variant(genome, 1010),  # TP.1 5'UTR
        _variant(genome, 900),  # upstream of TP.1, in its window
        _variant(genome, 20000),  # in no window
    ]
    with GenomeWindows(bundle["fasta"]) as windows:
        frame = variant_effects(model, variants, _annotation(), windows)
    changed = dict(zip(frame["variant_id"], frame["changed"], strict=True))
    assert changed == {"v1100": "dna", "v1010": "dna+rna", "v900": "dna"}
    assert frame[["dna_changed", "rna_changed", "protein_changed"]].dtypes.eq(bool).all()
    assert np.isfinite(frame[model.tissues].to_numpy()).all()


def test_substituted_genome_shows_the_alt_allele_on_both_strands(tmp_path):
    _, fasta = make_dataset(tmp_path, n_genes=4)
    with GenomeWindows(fasta) as genome:
        plain = genome.fetch("chr1", 100, 110)
        alt = next(b for b in "ACGT" if b != plain[5].upper())
        patched = SubstitutedGenome(genome, "chr1", 105, alt)
        assert patched.fetch("chr1", 100, 110) == plain[:5] + alt + plain[6:]
        assert patched.fetch("chr1", 106, 110) == plain[6:]
        minus = patched.tokens("chr1", 100, 110, "-")
        expected = genome.tokens("chr1", 100, 110, "-").copy()
        expected[4] = 3 - "ACGT".index(alt)
        np.testing.assert_array_equal(minus, expected)
        assert genome.fetch("chr1", 100, 110) == plain  # the parent is untouched


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_ref_mismatch_and_unknown_contig_are_one_line_errors(tmp_path):
    _, fasta = make_dataset(tmp_path, n_genes=4)
    with GenomeWindows(fasta) as genome:
        base = genome.fetch("chr1", 499, 500).upper()
        wrong = next(b for b in "ACGT" if b != base)
        alt = next(b for b in "ACGT" if b != wrong)
        with pytest.raises(InputError) as err:
            check_variants([Variant("rs1", "chr1", 500, wrong, alt, "v.tsv", 2)], genome)
        text = _one_line(err)
        assert text.startswith("v.tsv:2: variant rs1")
        assert f"ref '{wrong}' does not match the genome's '{base}' at chr1:500" in text
        with pytest.raises(InputError) as err:
            check_variants([Variant("rs2", "1", 500, base, alt, "v.tsv", 3)], genome)
        text = _one_line(err)
        assert "contig '1' is not in the genome" in text and "--contig-alias 1=chr1" in text
        (ok,) = check_variants([Variant("rs2", "1", 500, base, alt)], genome, {"1": "chr1"})
        assert ok.chrom == "chr1"
        # no alias fits (an NCBI accession): the genome's own names, and the option to map
        with pytest.raises(InputError) as err:
            check_variants([Variant("rs4", "NC_000001.11", 500, base, alt, "v.tsv", 4)], genome)
        text = _one_line(err)
        assert text.endswith(
            "is the variant file on another assembly? The genome's contigs are 'chr1' "
            "(--contig-alias NC_000001.11=NAME maps a variant file's contig onto one)"
        )
        with pytest.raises(InputError, match="past the end of the contig"):
            check_variants([Variant("rs3", "chr1", 40_001, "A", "C")], genome)


def test_variant_table_reading(tmp_path):
    table = tmp_path / "v.tsv"
    table.write_text(
        "#CHROM\tPOS\tID\tREF\tALT\n"
        "chr1\t10\trsA\tA\tg\n"
        "chr1\t11\t\tAC\tGT\n"
        "chr1\t12\t\tA\tAT\n"
        "chr1\t13\t\tA\t-\n"
    )
    read = read_variants(table)
    assert [(v.id, v.pos, v.ref, v.alt) for v in read.variants] == [
        ("rsA", 10, "A", "G"),
        ("chr1:11:AC>GT", 11, "AC", "GT"),
    ]
    assert read.skipped == {"indel": 1, "deletion or missing allele": 1}
    bad = tmp_path / "bad.tsv"
    bad.write_text("chrom\tpos\tref\talt\nchr1\t10\tA\tR\n")
    with pytest.raises(InputError) as err:
        read_variants(bad)
    assert _one_line(err).startswith(f"{bad}:2: variant chr1:10:A>R: alt allele 'R'")
    header = tmp_path / "header.tsv"
    header.write_text("chr\tposition\tref\talt\n")
    with pytest.raises(InputError, match="header lacks chrom, pos"):
        read_variants(header)
    same = tmp_path / "same.tsv"
    same.write_text("chrom\tpos\tref\talt\nchr1\t10\tA\ta\n")
    with pytest.raises(InputError, match="ref and alt are the same"):
        read_variants(same)


def test_variant_table_quotes_and_line_endings(tmp_path):
    """csv.reader took a stray quote as the start of a field that swallowed the tabs and
    rows after it: a bare _csv.Error, or variants lost into one id. Quoted cells (R's
    write.table) read as their text, CRLF and gzip as plain."""
    quoted = tmp_path / "quoted.tsv.gz"
    with gzip.open(quoted, "wt") as out:
        out.write('"chrom"\t"pos"\t"id"\t"ref"\t"alt"\r\n"chr1"\t10\t"rs ""A"""\tA\tG\r\n')
        out.write("chr1\t11\t\tC\tT\r\n")
    read = read_variants(quoted)
    assert [(v.id, v.pos, v.ref, v.alt) for v in read.variants] == [
        ('rs "A"', 10, "A", "G"),
        ("chr1:11:C>T", 11, "C", "T"),
    ]
    stray = tmp_path / "stray.tsv"
    stray.write_text('chrom\tpos\tid\tref\talt\nchr1\t10\t"rsA\tA\tG\nchr1\t11\tx\tC\tT\n')
    with pytest.raises(InputError) as err:
        read_variants(stray)
    assert _one_line(err).startswith(f"{stray}:2: column 3: '\"rsA' starts with a quote")


def test_vcf_plain_and_bgzip(tmp_path):
    text = (
        VCF_HEADER + "chr1\t5\trs9\tC\tA,T\t.\t.\t.\n"
        "chr1\t8\t.\tG\t<DEL>\t.\t.\t.\n"
        "chr1\t9\t.\tGA\tG\t.\t.\t.\n"
    )
    plain = tmp_path / "v.vcf"
    plain.write_text(text)
    pysam.tabix_compress(str(plain), str(tmp_path / "v.vcf.gz"))
    for path in (plain, tmp_path / "v.vcf.gz"):
        read = read_variants(path)
        assert [(v.id, v.pos, v.alt) for v in read.variants] == [
            ("rs9_1", 5, "A"),
            ("rs9_2", 5, "T"),
        ]
        assert read.skipped == {"symbolic allele": 1, "indel": 1}


@pytest.mark.slow
def test_command_writes_a_table(bundle, tmp_path):
    from isoflow.commands import main

    genome = bundle["genome"]
    table = tmp_path / "v.tsv"
    table.write_text(
        f"chrom\tpos\tref\talt\nchr1\t1011\t{genome[1010]}\t{'A' if genome[1010] != 'A' else 'C'}\n"
    )
    out = tmp_path / "effects.parquet"
    argv = ["variants", str(table), "-m", str(bundle["path"]), "-g", str(bundle["fasta"])]
    argv += ["-a", str(bundle["annotation"]), "-o", str(out), "--device", "cpu"]
    assert main(argv) == 0
    frame = pd.read_parquet(out)
    assert list(frame["transcript_id"]) == ["TP.1"]
    assert set(bundle["model"].tissues) <= set(frame.columns)
    bad = tmp_path / "bad.tsv"
    bad.write_text("chrom\tpos\tref\talt\nchrZ\t5\tA\tC\n")
    argv[1] = str(bad)
    assert main(argv) == 1


def test_a_missing_annotation_is_one_line(bundle, tmp_path, capsys):
    """`-a nope.parquet` was a 20-line traceback (pyarrow's FileNotFoundError names no
    filename); it is one line naming the option and the file, exit 1, nothing written."""
    from isoflow.commands import main

    table = tmp_path / "v.tsv"
    ref = bundle["genome"][1010]
    table.write_text(f"chrom\tpos\tref\talt\nchr1\t1011\t{ref}\t{'A' if ref != 'A' else 'C'}\n")
    missing = tmp_path / "nope.parquet"
    out = tmp_path / "effects.parquet"
    argv = ["variants", str(table), "-m", str(bundle["path"]), "-g", str(bundle["fasta"])]
    argv += ["-a", str(missing), "-o", str(out), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"isoflow variants: error: --annotation {missing}: No such file or directory"
    assert not out.exists()


def test_the_dataset_table_as_annotation_is_one_line_before_the_model(
    bundle, tmp_path, capsys, monkeypatch
):
    """`-a results/dataset/demo.parquet` (no exons) was a pandas KeyError 'exon_starts'
    traceback after the model loaded; it is one line naming the file, the missing columns
    and the table to give, before the model loads, nothing written."""
    import isoflow.bundle
    from isoflow.commands import main

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the annotation was checked")

    monkeypatch.setattr(isoflow.bundle, "load_model", no_model)
    dataset = tmp_path / "demo.parquet"
    columns = ["transcript_id", "gene_id", "gene_name", "transcript_type", "chrom", "strand"]
    _annotation()[[*columns, "tss"]].to_parquet(dataset, index=False)
    table = tmp_path / "v.tsv"
    ref = bundle["genome"][1010]
    table.write_text(f"chrom\tpos\tref\talt\nchr1\t1011\t{ref}\t{'A' if ref != 'A' else 'C'}\n")
    out = tmp_path / "effects.tsv"
    argv = ["variants", str(table), "-m", str(bundle["path"]), "-g", str(bundle["fasta"])]
    argv += ["-a", str(dataset), "-o", str(out), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"isoflow variants: error: {dataset}: lacks the transcripts table's column(s) "
        "exon_starts, exon_ends, cds_start, cds_end, cds_phase, selenocysteines, tags: give -a "
        "the annotation's transcripts table (results/annotation/transcripts.parquet), not the "
        "dataset table"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "magic"),
    [
        ("effects.tsv.gz", b"\x1f\x8b"),
        ("effects.TSV.GZ", b"\x1f\x8b"),
        ("effects.tsv.bz2", b"BZh"),
        ("effects.PARQUET", b"PAR1"),
        ("effects.tsv", b"variant_id\t"),
    ],
)
def test_the_table_is_written_as_its_final_name_says(tmp_path, name, magic):
    """`-o effects.tsv.gz` wrote plain text under a .gz name (pandas inferred the
    compression from the temporary file's .tmp) and `-o x.PARQUET` wrote TSV: the format
    and compression follow the final name, suffixes in any case, and the table reads back."""
    frame = pd.DataFrame({"variant_id": ["v1", "v2"], "Liver": [0.5, -0.25]})
    out = tmp_path / name
    write_table(frame, out)
    assert out.read_bytes().startswith(magic)
    if magic == b"\x1f\x8b":  # the gzip header's file name (FNAME, flag 8) is the table's
        header = out.read_bytes()
        assert header[3] & 8 and header[10:].split(b"\0")[0] == name[:-3].encode()
    if name.lower().endswith(".parquet"):
        back = pd.read_parquet(out)
    else:
        back = pd.read_csv(out, sep="\t")  # pandas infers the compression, in any case
    pd.testing.assert_frame_equal(back, frame)
    assert [p.name for p in tmp_path.iterdir()] == [name]


# ------------------------------------------------------------------ Kircher et al. 2019


def _table_spans(shared_real) -> dict[str, tuple[str, int, int]]:
    """GRCh38 coordinates of the promoters from the authors' elements_table.md."""
    text = (shared_real / "kircher_mpra" / "elements_table.md").read_text()
    spans = {}
    for line in text.split("### Enhancers")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[0] in KIRCHER_PROMOTERS:
            m = re.fullmatch(r"chr(\w+):([\d,]+)-([\d,]+)", cells[2])
            spans[cells[0]] = (m[1], int(m[2].replace(",", "")), int(m[3].replace(",", "")))
    return spans


@pytest.mark.needs("shared")
def test_kircher_references_rebuild_each_promoter_contiguously(shared_real):
    rows, no_position = read_kircher(shared_real / "kircher_mpra" / "elements.tsv.gz")
    assert no_position == 11
    spans = _table_spans(shared_real)
    assert set(spans) == set(KIRCHER_PROMOTERS)
    for element, (data_name, _strand, _tx) in KIRCHER_PROMOTERS.items():
        ref = element_reference(rows[rows["Element"] == data_name], data_name)
        assert ref.gaps == (), element
        assert set(ref.seq) <= set("ACGT")
        chrom, start, end = spans[element]
        # every position of the authors' GRCh38 span has a row, and no position outside it
        assert (ref.chrom, ref.start, ref.end) == (chrom, start, end), element
        assert len(ref.seq) == ref.end - ref.start + 1


@pytest.mark.slow
@pytest.mark.needs("shared")
def test_kircher_path_end_to_end_on_a_subset(shared_real, bundle):
    model = bundle["model"]
    rows, _ = read_kircher(shared_real / "kircher_mpra" / "elements.tsv.gz")
    for data_name, strand in (("HBB", "-"), ("LDLR", "+")):
        mine = rows[rows["Element"] == data_name]
        element = element_reference(mine, data_name)
        construct = kircher_construct(element, strand)
        assert construct.parts["utr5"] == REPORTER["utr5"]
        # the element's 3' end in this orientation is the last promoter base, before the TSS
        assert construct.tss == len(element.seq)
        subset = mine[mine["Pos"] >= element.end - 40]  # the 40 bp next to the TSS
        subs, measured, deletions = element_substitutions(subset, element, strand)
        assert deletions == int((subset["Alt"] == "-").sum()) and len(subs) == len(measured)
        ref, effect = construct_variant_effects(model, construct, subs)
        assert ref.shape == (len(model.tissues),) and effect.shape == (len(subs), 3)
        assert np.isfinite(effect).all() and np.abs(effect).max() > 0
        # one by hand: alt - ref of the first substitution
        from isoflow.constructs import Construct, construct_inputs

        name, index, r, a = subs[0]
        promoter = construct.parts["promoter"]
        assert promoter[index] == r
        alt = Construct(
            "x", {**construct.parts, "promoter": promoter[:index] + a + promoter[index + 1 :]}
        )
        inputs = [construct_inputs(c, window=model.dna_window) for c in (construct, alt)]
        pred = model.predict(
            [ModelInput(i.id, i.dna, i.rna, i.protein) for i in inputs], batch_size=1
        )
        np.testing.assert_allclose(effect[0], pred[1] - pred[0], atol=1e-5)


def test_help_works_without_torch():
    out, torch_loaded = command_output(["variants", "--help"])
    assert not torch_loaded
    assert "usage: isoflow variants" in out


def test_vcf_errors_name_the_record(tmp_path):
    _, fasta = make_dataset(tmp_path, n_genes=4)
    vcf = tmp_path / "v.vcf"
    vcf.write_text(VCF_HEADER + "chr1\t5\trs9\tN\tA\t.\t.\t.\n")
    with pytest.raises(InputError) as err:
        read_variants(vcf)
    assert _one_line(err).startswith(f"{vcf}:record 1 (chr1:5): variant rs9: ref allele 'N'")


def test_tss_offset_counts_from_the_variants_5_end_on_either_strand():
    from isoflow.variants import Variant, tss_offset

    # TSS at 0-based 1000; a two-base substitution covering 1000 and 1001
    mnv = Variant("v", "chr1", 1001, "AC", "GT")
    assert tss_offset(mnv, "+", 1000) == 0  # starts at the TSS, runs downstream
    assert tss_offset(mnv, "-", 1000) == -1  # on the minus strand 1001 is upstream
    assert tss_offset(mnv, "-", 1001) == 0
    snv = Variant("s", "chr1", 990, "A", "G")  # 0-based 989
    assert tss_offset(snv, "+", 1000) == -11
    assert tss_offset(snv, "-", 1000) == 11  # the same for one base as before


def test_one_id_names_one_variant(tmp_path):
    # two different variants under one id wrote colliding rows with exit 0
    table = tmp_path / "v.tsv"
    table.write_text("chrom\tpos\tref\talt\tid\nchr1\t5\tC\tA\tv0\nchr1\t9\tG\tT\tv0\n")
    with pytest.raises(InputError) as err:
        read_variants(table)
    assert (
        _one_line(err)
        == f"{table}:3: variant id 'v0' is already used by line 2: give each its own id"
    )
    table.write_text("chrom\tpos\tref\talt\tid\nchr1\t5\tC\tA\tv0\nchr1\t5\tC\tA\tv0\n")
    with pytest.raises(InputError, match="for the same variant: give it once"):
        read_variants(table)


def test_a_split_multiallelic_site_numbers_its_alleles_as_the_unsplit_record_does(tmp_path):
    # bcftools norm -m- writes one line per allele under the record's id: refused as a
    # repeated id for a while; its alleles are named as the unsplit record's are (id_k)
    header = VCF_HEADER
    split = tmp_path / "split.vcf"
    split.write_text(header + "chr1\t5\trs9\tG\tA\t.\t.\t.\nchr1\t5\trs9\tG\tT\t.\t.\t.\n")
    whole = tmp_path / "whole.vcf"
    whole.write_text(header + "chr1\t5\trs9\tG\tA,T\t.\t.\t.\n")
    named = [(v.id, v.alt) for v in read_variants(split).variants]
    assert named == [(v.id, v.alt) for v in read_variants(whole).variants]
    assert named == [("rs9_1", "A"), ("rs9_2", "T")]
    # the same id at another site is still two variants under one name
    other = tmp_path / "other.vcf"
    other.write_text(header + "chr1\t5\trs9\tG\tA\t.\t.\t.\nchr1\t7\trs9\tG\tT\t.\t.\t.\n")
    with pytest.raises(InputError, match="variant id 'rs9' is already used by record 1"):
        read_variants(other)


def test_a_vcf_cut_short_is_one_line(tmp_path, capfd):
    text = VCF_HEADER + "chr1\t5\trs9\tC\tA\t.\t.\t.\nch"
    path = tmp_path / "cut.vcf"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_variants(path)
    assert _one_line(err).startswith(f"{path}:record 2: cannot read (")
    assert "cut short or damaged" in str(err.value) and "vcf_parse" not in capfd.readouterr().err


def test_a_vcf_record_without_alt_is_counted_not_lost(tmp_path):
    path = tmp_path / "v.vcf"
    path.write_text(VCF_HEADER + "chr1\t5\trs1\tC\t.\t.\t.\t.\nchr1\t6\trs2\tA\tG\t.\t.\t.\n")
    read = read_variants(path)
    assert [v.id for v in read.variants] == ["rs2"]
    assert read.skipped == {"missing allele": 1}


@pytest.mark.slow
def test_no_row_is_a_table_with_every_column(bundle):
    from isoflow.variants import ROW_COLUMNS

    model, genome = bundle["model"], bundle["genome"]
    with GenomeWindows(bundle["fasta"]) as windows:
        empty = variant_effects(model, [_variant(genome, 20000)], _annotation(), windows)
        one = variant_effects(model, [_variant(genome, 900)], _annotation(), windows)
    assert len(empty) == 0 and len(one) == 1
    assert list(empty.columns) == list(one.columns) == [*ROW_COLUMNS, *model.tissues]


@pytest.mark.slow
def test_an_exon_far_from_the_tss_is_scored_and_a_change_the_encoder_cannot_read_is_nan(
    bundle, monkeypatch
):
    # a non-coding transcript whose second exon (1400-1500) lies outside its 512-bp window
    # (744-1256): the model reads a variant there through the RNA only (RNA position 70 of
    # 150, inside the tiny config's rna.max_nt of 120)
    model, genome = bundle["model"], bundle["genome"]
    spec = {
        **TRANSCRIPTS[1],
        "transcript_id": "TL.1",
        "strand": "+",
        "tss": 1000,
        "exon_starts": [1000, 1400],
        "exon_ends": [1050, 1500],
    }
    annotation = _annotation().iloc[[1]].assign(**{k: [spec[k]] for k in spec})
    v = _variant(genome, 1420)
    with GenomeWindows(bundle["fasta"]) as windows:
        frame = variant_effects(model, [v], annotation, windows, batch_size=1)
        assert list(frame["transcript_id"]) == ["TL.1"]
        row = frame.iloc[0]
        assert row["changed"] == "rna" and bool(row["rna_seen"]) and not row["dna_seen"]
        ref, alt = _by_hand(genome, spec), _by_hand(genome, spec, v.start, v.alt)
        expected = model.predict([alt], batch_size=1) - model.predict([ref], batch_size=1)
        got = row[model.tissues].to_numpy(dtype=np.float32)
        np.testing.assert_allclose(got, expected[0], rtol=0, atol=1e-6)
        assert np.abs(expected).max() > 0
        # an RNA encoder that reads only the first 24 nt (4 tokens): the variant is not
        # seen, and its effect is no number
        encoder = model.frozen["rna"][0] if "rna" in model.frozen else model.network.encoders["rna"]
        monkeypatch.setattr(encoder, "max_len", 5)
        monkeypatch.setattr(encoder, "truncate", "keep_5prime")
        blind = variant_effects(model, [v], annotation, windows, batch_size=1).iloc[0]
    assert bool(blind["rna_changed"]) and not blind["rna_seen"]
    assert blind[[*model.tissues, "mean_effect"]].isna().all()
    assert np.isfinite(blind["ref_mean"])


def test_reference_problem_needs_two_defects_and_knows_an_incomplete_start():
    from isoflow.variants import reference_problem

    row = pd.Series({"cds_start": 10, "tags": []})
    assert reference_problem(row, "MKLV*TR") is None  # one internal stop: real ones exist
    assert reference_problem(row, "LKLVTR") is None  # one non-AUG start
    assert "2 internal stop" in reference_problem(row, "MK*LV*TR")
    assert "not M" in reference_problem(row, "LK*LV")
    assert reference_problem(row.copy().replace({"tags": []}), "") is None
    incomplete = pd.Series({"cds_start": 10, "tags": ["cds_start_NF"]})
    assert reference_problem(incomplete, "XK*LV") is None
    assert reference_problem(pd.Series({"cds_start": pd.NA, "tags": []}), "L**") is None


@pytest.mark.slow
def test_an_annotation_repeating_a_transcript_id_is_one_line():
    """Two annotations joined (or version suffixes dropped) put one transcript_id on several
    rows; each row was scored as its own transcript under that id, two rows of effects that
    look like one transcript's. One line naming the file and the id."""
    from isoflow.variants import check_annotation_columns

    frame = _annotation()
    check_annotation_columns(frame, "transcripts.parquet")
    twice = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    with pytest.raises(InputError) as err:
        check_annotation_columns(twice, "transcripts.parquet")
    line = _one_line(err)
    first = frame["transcript_id"].iat[0]
    assert line.startswith(f"transcripts.parquet:{first}: transcript_id on 2 rows (1 id(s)")
    assert "one row per transcript" in line


def test_an_annotation_on_another_assembly_is_one_line_naming_the_transcript(
    shared_real, bundle, tmp_path
):
    from isoflow.annotation import read_annotation
    from isoflow.variants import reference_problem, transcript_inputs

    folder = shared_real / "bambu_chr9"
    fasta = folder / "Homo_sapiens.GRCh38.dna_sm.primary_assembly_chr9_1_1000000.fa"
    annotation = read_annotation(folder / "Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf")
    coding = annotation[annotation["cds_start"].notna()]
    with GenomeWindows(fasta) as windows:  # the right genome: every reference is clean
        for row in coding.itertuples(index=False):
            protein = transcript_inputs(row, windows, None).protein
            assert reference_problem(row, protein) is None, row.transcript_id
    # the same contig with 5 kb in front: every coordinate reads another base
    seq = pysam.FastaFile(str(fasta)).fetch("9")
    shifted = "".join(np.random.default_rng(0).choice(list("ACGT"), 5000)) + seq
    moved = tmp_path / "shifted.fa"
    moved.write_text(">9\n" + "\n".join(shifted[i : i + 60] for i in range(0, len(shifted), 60)))
    pysam.faidx(str(moved))
    cbwd1 = annotation[annotation["transcript_id"] == "ENST00000356521.8"]
    tss = int(cbwd1["tss"].iloc[0])
    ref = shifted[tss].upper()
    v = Variant("v", "9", tss + 1, ref, "A" if ref != "A" else "C")
    with GenomeWindows(moved) as windows, pytest.raises(InputError) as err:
        variant_effects(bundle["model"], [v], cbwd1, windows, annotation="tx.parquet")
    line = _one_line(err)
    assert line.startswith("tx.parquet:ENST00000356521.8: ") and "another assembly" in line


def test_overlapping_finds_an_exon_by_its_exact_bounds_whatever_the_transcripts_lengths():
    """``overlapping`` for a model reading RNA alone: a variant in an exon far from the TSS
    (beyond the window) has a row, one a base outside an exon has none, on either strand and
    beside a shorter transcript, whose span must not narrow the search."""
    from isoflow.variants import overlapping

    base = {"gene_id": "G", "gene_name": "G", "chrom": "chr1"}
    frame = pd.DataFrame(
        [
            # long: its second exon 4 kb from the TSS
            {**base, "transcript_id": "A", "strand": "+", "tss": 1000,
             "exon_starts": [1000, 5000], "exon_ends": [1050, 5100]},
            # short, starting after A: the chromosome's shortest span
            {**base, "transcript_id": "B", "strand": "+", "tss": 3000,
             "exon_starts": [3000], "exon_ends": [3040]},
            # minus strand: its 3' end (the span's lowest base, 6000) far from its TSS
            {**base, "transcript_id": "C", "strand": "-", "tss": 9000,
             "exon_starts": [6000, 8950], "exon_ends": [6050, 9001]},
        ]
    )  # fmt: skip

    def hits(pos0: int, **reads) -> list[str]:
        v = Variant(f"v{pos0}", "chr1", pos0 + 1, "A", "C")
        return [frame["transcript_id"][r] for _, r in overlapping(frame, [v], 512, **reads)]

    only_rna = {"dna": False, "exons": True}
    assert hits(5050, **only_rna) == ["A"]  # 4 kb past A's TSS, beside the short B
    assert hits(5000, **only_rna) == ["A"] and hits(5099, **only_rna) == ["A"]  # exon's ends
    assert hits(4999, **only_rna) == [] and hits(5100, **only_rna) == []  # intron, 3' flank
    assert hits(6000, **only_rna) == ["C"]  # the minus-strand transcript's last base
    assert hits(5999, **only_rna) == []
    # the DNA window alone (512 bp around A's TSS: 744-1256) does not reach A's far exon
    assert hits(5050, dna=True, exons=False) == [] and hits(1200, dna=True, exons=False) == ["A"]
    assert hits(1200, **only_rna) == []  # A's first intron: no exon, no RNA row


def _real_chr9(shared_real):
    """The real chr9 excerpt (Ensembl names: contig ``9``) and its annotation."""
    from isoflow.annotation import read_annotation

    folder = shared_real / "bambu_chr9"
    fasta = folder / "Homo_sapiens.GRCh38.dna_sm.primary_assembly_chr9_1_1000000.fa"
    return fasta, read_annotation(folder / "Homo_sapiens.GRCh38.91_chr9_1_1000000.gtf")


def test_an_annotation_naming_the_contig_otherwise_than_the_genome_is_one_line(shared_real):
    """An annotation naming chr9 (UCSC) with a genome naming it 9 (Ensembl) was checked
    against nothing: CBWD1's stop codon, 9:121467 T>A, lay in no transcript and the run
    wrote a table without rows, exit 0."""
    from isoflow.variants import check_annotation_contigs

    fasta, annotation = _real_chr9(shared_real)
    v = Variant("stop", "9", 121467, "T", "A")
    with GenomeWindows(fasta) as windows:
        (checked,) = check_variants([v], windows)
        check_annotation_contigs(annotation, [checked], windows, "tx.parquet")  # as built
        ucsc = annotation.assign(chrom="chr9")
        with pytest.raises(InputError) as err:
            check_annotation_contigs(ucsc, [checked], windows, "tx.parquet")
    line = _one_line(err)
    assert line.startswith(
        f"tx.parquet: the annotation's contigs 'chr9' are none of the genome {fasta}'s: the "
        "genome has '9' where the annotation has 'chr9'; give -g the genome the annotation"
    )
    assert "--contig-alias renames the variants' contigs, not the annotation's" in line


def test_a_variant_contig_the_annotation_names_otherwise_is_one_line(tmp_path):
    """The annotation shares a contig with the genome but names the variant's otherwise
    (chrM where the genome and the variant have MT): that variant would get no row."""
    from isoflow.variants import check_annotation_contigs

    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 50 + "\n>MT\n" + "GATC" * 50 + "\n")
    pysam.faidx(str(fasta))
    annotation = pd.DataFrame({"chrom": ["chr1", "chrM"], "transcript_id": ["T1", "T2"]})
    with GenomeWindows(fasta) as windows:
        on_mt = check_variants([Variant("m1", "MT", 3, "T", "A")], windows)
        on_chr1 = check_variants([Variant("c1", "chr1", 3, "G", "A")], windows)
        check_annotation_contigs(annotation, on_chr1, windows, "tx.parquet")
        # a contig the annotation lacks under every name: no row, no error
        check_annotation_contigs(annotation.iloc[[0]], on_mt, windows, "tx.parquet")
        with pytest.raises(InputError) as err:
            check_annotation_contigs(annotation, on_mt, windows, "tx.parquet")
    assert _one_line(err).startswith(
        f"tx.parquet: the annotation's contig 'chrM' is 'MT' in the genome {fasta} and in "
        "variant m1 (as the genome names it): no variant there would get a row; give -g"
    )


@pytest.mark.slow
def test_the_command_refuses_an_annotation_naming_contigs_otherwise_before_the_model(
    shared_real, bundle, tmp_path, capsys
):
    """Variants named as the annotation (chr9) and read as the genome's 9 through
    --contig-alias: the annotation still says chr9, which the alias does not rename. The
    run exited 0 with a table without rows; it is one line naming the annotation, exit 1,
    nothing written."""
    from isoflow.commands import main

    fasta, annotation = _real_chr9(shared_real)
    ucsc = tmp_path / "transcripts.parquet"
    annotation.assign(chrom="chr9").to_parquet(ucsc, index=False)
    table = tmp_path / "v.tsv"
    table.write_text("chrom\tpos\tref\talt\nchr9\t121467\tT\tA\n")
    out = tmp_path / "effects.tsv"
    argv = ["variants", str(table), "-m", str(bundle["path"]), "-g", str(fasta), "-a", str(ucsc)]
    argv += ["-o", str(out), "--device", "cpu", "--contig-alias", "chr9=9"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow variants: error: {ucsc}: the annotation's contigs 'chr9'")
    assert "the genome has '9' where the annotation has 'chr9'" in err
    assert not out.exists()


def test_an_mnv_reaching_into_a_dna_window_is_scored_as_the_snv_at_that_base(bundle):
    """``overlapping`` wanted the whole ref allele inside the DNA window: an MNV reaching one
    base into it had no row where the SNV at that base had one (FOXD4's 9:118460 CG>AA).
    Its in-window base changes the window as that SNV does, at either edge of a minus-strand
    window (TM.1: 5344-5856) and of a plus-strand one (TP.1: 744-1256)."""
    from isoflow.variants import overlapping, transcript_inputs

    model, genome = bundle["model"], bundle["genome"]
    frame = _annotation()
    rows = list(frame.itertuples(index=False))

    def mnv(pos0: int, alt: str) -> Variant:
        return Variant(f"m{pos0}", "chr1", pos0 + 1, genome[pos0 : pos0 + 2], alt)

    def other(base: str) -> str:
        return next(b for b in "ACGT" if b != base)

    # (first base of the MNV, its base in the window, the transcript whose window it is)
    edges = [(5855, 5855, 1), (5343, 5344, 1), (743, 744, 0), (1255, 1255, 0)]
    with GenomeWindows(bundle["fasta"]) as windows:
        for start, inside, r in edges:
            alt = "".join(other(genome[p]) for p in (start, start + 1))
            v, snv = mnv(start, alt), _variant(genome, inside, alt[inside - start])
            where = f"MNV at {start} ({rows[r].strand})"
            assert overlapping(frame, [v], WINDOW, dna=True, exons=False) == [(0, r)], where
            ref = transcript_inputs(rows[r], windows, WINDOW).dna
            got = transcript_inputs(rows[r], SubstitutedGenome(windows, "chr1", start, alt), WINDOW)
            single = SubstitutedGenome(windows, "chr1", snv.start, snv.alt)
            assert got.dna == transcript_inputs(rows[r], single, WINDOW).dna != ref, where
        # one base further out: the window holds none of it
        assert overlapping(frame, [mnv(5856, "AA")], WINDOW, dna=True, exons=False) == []
        assert overlapping(frame, [mnv(742, "AA")], WINDOW, dna=True, exons=False) == []
        start, inside = edges[0][:2]
        alt = "".join(other(genome[p]) for p in (start, start + 1))
        pair = [mnv(start, alt), _variant(genome, inside, alt[0])]
        table = variant_effects(model, pair, frame, windows, batch_size=1)
    assert list(table["transcript_id"]) == ["TM.1", "TM.1"]
    assert table["dna_changed"].all() and table["changed"].eq("dna").all()
    effects = table[model.tissues].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(effects[0], effects[1], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_finetuned_bundles_effects_are_said_in_its_tables_units(bundle, tmp_path, caplog):
    """The command's last line names the units of its effects: a fine-tuned bundle's are
    its table's (bundle.output_units), not log(1 + TPM)."""
    from helpers.bundles import as_finetuned
    from isoflow.commands import main

    tuned = as_finetuned(bundle["path"], tmp_path / "tuned", table="lab.tsv")
    ref = bundle["genome"][1010]
    table = tmp_path / "v.tsv"
    table.write_text(f"chrom\tpos\tref\talt\nchr1\t1011\t{ref}\t{'A' if ref != 'A' else 'C'}\n")
    argv = ["variants", str(table), "-m", str(tuned), "-g", str(bundle["fasta"])]
    argv += ["-a", str(bundle["annotation"]), "-o", str(tmp_path / "e.tsv"), "--device", "cpu"]
    with caplog.at_level("INFO", logger="isoflow.variants"):
        assert main(argv) == 0
    done = [r.getMessage() for r in caplog.records if "row(s) for" in r.getMessage()]
    assert len(done) == 1 and done[0].endswith("effects in the table's units (lab.tsv)")


@pytest.mark.slow
def test_a_finetuned_bundle_on_genomic_variants_is_one_warning(bundle, tmp_path, caplog):
    """A fine-tuned bundle learned from constructs placed with N fill; scoring genomic
    variants with it was silent: one warning naming the bundle, its placement and that
    genomic inputs were never in its fine-tuning (a GTEx bundle: none)."""
    from helpers.bundles import as_finetuned
    from isoflow.commands import main

    tuned = as_finetuned(bundle["path"], tmp_path / "tuned", table="lab.tsv")
    ref = bundle["genome"][1010]
    table = tmp_path / "v.tsv"
    table.write_text(f"chrom\tpos\tref\talt\nchr1\t1011\t{ref}\t{'A' if ref != 'A' else 'C'}\n")
    for path, warned in ((tuned, 1), (bundle["path"], 0)):
        argv = ["variants", str(table), "-m", str(path), "-g", str(bundle["fasta"])]
        argv += ["-a", str(bundle["annotation"]), "-o", str(tmp_path / f"{path.name}.tsv")]
        caplog.clear()
        with caplog.at_level("WARNING", logger="isoflow.bundle"):
            assert main([*argv, "--device", "cpu"]) == 0
        lines = [r.getMessage() for r in caplog.records if "fine-tuned bundle" in r.getMessage()]
        assert len(lines) == warned
        if warned:
            assert lines[0].startswith(f"{tuned / 'manifest.json'}: a fine-tuned bundle")
            assert "placed with N fill around the cassette" in lines[0]
            assert "isoflow variants gives it genomic DNA windows" in lines[0]


def _streaming_case(bundle, monkeypatch):
    """Four transcripts (TP.1 and TL.1 share a TSS, so their windows' variants are pairs of
    both; TL.1's second exon lies outside its window, read through the RNA only) and
    variants in every window and in that exon; the RNA encoder cut to 60 nt, so a change
    past it is seen by no input (a NaN row); rounds of 16 pairs."""
    import isoflow.variants as variants_module

    genome = bundle["genome"]
    far = {
        **TRANSCRIPTS[1],
        "transcript_id": "TL.1",
        "gene_id": "GL.1",
        "strand": "+",
        "tss": 1000,
        "exon_starts": [1000, 1400],
        "exon_ends": [1050, 1500],
    }
    near = {
        **TRANSCRIPTS[1],
        "transcript_id": "TQ.1",
        "gene_id": "GQ.1",
        "tss": 5649,
        "exon_ends": [5200, 5650],
    }
    annotation = pd.DataFrame([*TRANSCRIPTS, far, near])
    annotation["transcript_type"] = ["protein_coding", "lncRNA", "lncRNA", "lncRNA"]
    annotation["tags"] = annotation["selenocysteines"] = [[]] * 4
    for column, dtype in (("cds_start", "Int64"), ("cds_end", "Int64"), ("cds_phase", "Int8")):
        annotation[column] = annotation[column].astype(dtype)
    positions = [*range(750, 1250, 4), *range(1400, 1500, 3), *range(5350, 5850, 9)]
    variants = [_variant(genome, p) for p in positions]
    model = bundle["model"]
    encoder = model.frozen["rna"][0] if "rna" in model.frozen else model.network.encoders["rna"]
    monkeypatch.setattr(encoder, "max_len", 10)
    monkeypatch.setattr(encoder, "truncate", "keep_5prime")
    monkeypatch.setattr(variants_module, "CHUNK", 16)
    return model, variants, annotation


def _all_at_once(model, variants, annotation, genome) -> pd.DataFrame:
    """The table as ``variant_effects`` made it before it streamed: every pair's alt inputs
    and every reference built first, then ``effects`` over all of them."""
    from isoflow.variants import ROW_COLUMNS, effects, overlapping, pair_inputs

    annotation = annotation.reset_index(drop=True)
    rows = list(annotation.itertuples(index=False))
    pairs = overlapping(annotation, variants, model.dna_window)
    pairs.sort(key=lambda p: (p[1], p[0]))
    refs, views, alts, meta = {}, {}, [], []
    for i, r in pairs:
        key, alt, row_meta = pair_inputs(model, variants[i], rows[r], genome, refs, views)
        alts.append((key, alt))
        meta.append({**row_meta, "_order": (i, r)})
    ref_pred, effect = effects(model, refs, alts)
    blind = [not (m["dna_seen"] or m["rna_seen"] or m["protein_seen"]) for m in meta]
    effect[np.asarray(blind)] = np.nan
    frame = pd.DataFrame(meta)
    frame["ref_mean"] = ref_pred.mean(axis=1)
    frame["mean_effect"] = effect.mean(axis=1)
    frame = pd.concat([frame, pd.DataFrame(effect, columns=model.tissues)], axis=1)
    frame = frame.sort_values("_order", kind="stable").drop(columns="_order")
    frame = frame.reset_index(drop=True)
    assert list(frame.columns) == [*ROW_COLUMNS, *model.tissues]
    return frame


@pytest.mark.slow
def test_streamed_scoring_writes_the_bytes_of_the_all_at_once_path(
    bundle, monkeypatch, tmp_path, caplog
):
    model, variants, annotation = _streaming_case(bundle, monkeypatch)
    with GenomeWindows(bundle["fasta"]) as windows:
        with caplog.at_level("INFO", logger="isoflow.variants"):
            streamed = variant_effects(model, variants, annotation, windows)
        expected = _all_at_once(model, variants, annotation, windows)
    assert len(streamed) > 300
    assert streamed["transcript_id"].nunique() == 4
    assert (streamed.groupby("variant_id")["transcript_id"].nunique() > 1).sum() > 50
    blind = streamed[model.tissues].isna().all(axis=1)
    assert 0 < blind.sum() < len(streamed)
    pd.testing.assert_frame_equal(streamed, expected, check_exact=True)
    for name in ("streamed.tsv", "expected.tsv"):
        write_table(streamed if name == "streamed.tsv" else expected, tmp_path / name)
    assert (tmp_path / "streamed.tsv").read_bytes() == (tmp_path / "expected.tsv").read_bytes()
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scored")]
    assert progress[0] == f"scored 16 / {len(streamed)} variant-transcript pairs"
    assert progress[-1] == f"scored {len(streamed)} / {len(streamed)} variant-transcript pairs"


@pytest.mark.slow
def test_streamed_scoring_holds_one_round_of_inputs_whatever_the_number_of_variants(
    bundle, monkeypatch
):
    """Every alt input (a whole DNA window each: 196,608 letters for Enformer) was built and
    every reference kept before the first was scored: 100k pairs held ~20 GB. The inputs
    alive while the model runs are a round's alts and its transcripts' references."""
    import weakref

    import isoflow.variants as variants_module

    model, variants, annotation = _streaming_case(bundle, monkeypatch)
    alive, peaks = [0], []

    class Counted(variants_module.ModelInputs):
        def __new__(cls, *args, **kwargs):
            item = super().__new__(cls)
            alive[0] += 1
            weakref.finalize(item, lambda: alive.__setitem__(0, alive[0] - 1))
            return item

    head = model.head

    def counting_head(*args, **kwargs):
        peaks.append(alive[0])
        return head(*args, **kwargs)

    monkeypatch.setattr(variants_module, "ModelInputs", Counted)
    monkeypatch.setattr(model, "head", counting_head)
    with GenomeWindows(bundle["fasta"]) as windows:
        for n in (len(variants) // 4, len(variants)):
            peaks.clear()
            frame = variant_effects(model, variants[:n], annotation, windows)
            assert len(frame) > 3 * variants_module.CHUNK
            # a round's pairs, and the references of its transcripts and of the one before
            assert max(peaks) <= variants_module.CHUNK + len(annotation), (n, max(peaks))


@pytest.mark.slow
def test_a_reference_from_another_assembly_stops_the_run_before_any_round_is_scored(
    bundle, monkeypatch
):
    """Streamed, a transcript's reference is built when its first round comes: the check
    that it reads as this genome's (``reference_problem``) still runs for every coding
    transcript before the model scores anything, as when all were built first."""
    import isoflow.variants as variants_module

    model, genome = bundle["model"], bundle["genome"]
    annotation = _annotation().iloc[[1, 0]]  # TM.1's pairs come first, TP.1's after
    monkeypatch.setattr(variants_module, "CHUNK", 1)
    monkeypatch.setattr(
        variants_module,
        "reference_problem",
        lambda row, protein: "another assembly" if row.transcript_id == "TP.1" else None,
    )
    monkeypatch.setattr(model, "embed", lambda *a, **k: pytest.fail("scored before the check"))
    variants = [_variant(genome, 5500), _variant(genome, 1010)]
    with GenomeWindows(bundle["fasta"]) as windows, pytest.raises(InputError) as err:
        variant_effects(model, variants, annotation, windows, annotation="tx.parquet")
    assert _one_line(err) == "tx.parquet:TP.1: another assembly"
