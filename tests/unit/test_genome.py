"""isoflow.genome: tokens, N-padding, reverse complement, contig checks, .fai index."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pysam
import pytest

from helpers.paths import SHARED_REAL as REAL
from isoflow.errors import InputError
from isoflow.genome import GenomeWindows, check_contigs, check_fasta_index, encode, index_fasta

CHR9 = REAL / "bambu_chr9" / "Homo_sapiens.GRCh38.dna_sm.primary_assembly_chr9_1_1000000.fa"
needs_chr9 = pytest.mark.needs("shared")
needs_samtools = pytest.mark.needs("samtools")

# Independent of the module's lookup tables: a plain dict, applied base by base.
TOKEN = {"A": 0, "C": 1, "G": 2, "T": 3}


def by_hand(seq: str) -> np.ndarray:
    return np.array([TOKEN.get(b.upper(), 4) for b in seq], dtype=np.uint8)


@pytest.fixture
def small_fasta(tmp_path: Path) -> Path:
    path = tmp_path / "g.fa"
    path.write_text(">chr1 first\nACGTNacgtnRYKM\nSWB\n>chr2\nTTTTGGGG\n>chrM\nGATC\n")
    pysam.faidx(str(path))
    return path


def test_tokens_fold_case_and_map_iupac_to_n(small_fasta: Path) -> None:
    genome = GenomeWindows(small_fasta)
    assert genome.lengths == {"chr1": 17, "chr2": 8, "chrM": 4}
    tokens = genome.tokens("chr1", 0, 17)
    assert tokens.dtype == np.uint8
    assert tokens.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4] + [4] * 7


def test_n_padding_at_both_ends_and_minus_strand(small_fasta: Path) -> None:
    genome = GenomeWindows(small_fasta)
    assert genome.tokens("chr2", -3, 2).tolist() == [4, 4, 4, 3, 3]
    assert genome.tokens("chr2", 6, 11).tolist() == [2, 2, 4, 4, 4]
    assert genome.tokens("chr2", -2, 10).tolist() == [4, 4] + [3] * 4 + [2] * 4 + [4, 4]
    # chr2 -2..10 reverse-complemented: N N C C C C A A A A N N
    assert genome.tokens("chr2", -2, 10, "-").tolist() == [4, 4] + [1] * 4 + [0] * 4 + [4, 4]
    assert genome.tokens("chr2", 6, 11, "-").tolist() == [4, 4, 4, 1, 1]
    assert genome.tokens("chr2", 20, 23).tolist() == [4, 4, 4]  # wholly outside
    assert genome.tokens("chr2", -9, -7, "-").tolist() == [4, 4]
    assert genome.tokens("chr2", 0, 4).flags.writeable  # torch.from_numpy needs no copy
    assert genome.tokens("chr2", 3, 3).size == 0


def test_bad_window_arguments(small_fasta: Path) -> None:
    genome = GenomeWindows(small_fasta)
    with pytest.raises(InputError, match="chrX: contig is not in the genome FASTA"):
        genome.tokens("chrX", 0, 10)
    with pytest.raises(ValueError, match="strand"):
        genome.tokens("chr2", 0, 4, ".")
    with pytest.raises(ValueError, match="before its start"):
        genome.tokens("chr2", 4, 0)
    with pytest.raises(InputError, match="outside the contig"):
        genome.fetch("chr2", 5, 9)


def test_survives_pickling_for_dataloader_workers(small_fasta: Path) -> None:
    genome = GenomeWindows(small_fasta)
    genome.tokens("chr2", 0, 4)
    clone = pickle.loads(pickle.dumps(genome))
    assert clone.tokens("chr2", 2, 6, "-").tolist() == genome.tokens("chr2", 2, 6, "-").tolist()


@needs_chr9
def test_tokens_equal_a_direct_pysam_fetch_on_real_chr9() -> None:
    genome = GenomeWindows(CHR9)
    fasta = pysam.FastaFile(str(CHR9))
    rng = np.random.default_rng(0)
    seen = set()
    for start in [8_000, *rng.integers(0, 1_000_000 - 5_000, size=20)]:
        start = int(start)
        seq = fasta.fetch("9", start, start + 5_000)
        seen.update(seq)
        np.testing.assert_array_equal(genome.tokens("9", start, start + 5_000), by_hand(seq))
    assert {"a", "A", "n"} <= seen  # soft-masked bases and (soft-masked) gaps both exercised


@needs_chr9
@needs_samtools
def test_minus_strand_equals_samtools_faidx_reverse_complement() -> None:
    genome = GenomeWindows(CHR9)
    regions = [(10_000, 10_600), (123_456, 130_000), (999_000, 1_000_000)]
    for start, end in regions:
        out = subprocess.run(
            ["samtools", "faidx", "-i", str(CHR9), f"9:{start + 1}-{end}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        seq = "".join(out.splitlines()[1:])
        assert len(seq) == end - start
        np.testing.assert_array_equal(genome.tokens("9", start, end, "-"), by_hand(seq))
    # and past the end: the reverse complement of the N-padded window
    padded = genome.tokens("9", 999_900, 1_000_100, "-")
    assert padded[:100].tolist() == [4] * 100
    np.testing.assert_array_equal(padded[100:], genome.tokens("9", 999_900, 1_000_000, "-"))


def test_encode_matches_the_contract_alphabet() -> None:
    assert encode("ACGTNacgtnRYN-").tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4, 4, 4, 4]
    assert encode("AACGTx", "-").tolist() == [4, 0, 1, 2, 3, 3]


def test_check_contigs_passes_when_all_present(small_fasta: Path) -> None:
    check_contigs(["chr1", "chr2", "chr1"], small_fasta, "ann.gtf")


@pytest.mark.parametrize(
    ("contig", "hint"),
    [
        ("1", """the FASTA has 'chr1': set contig_aliases: {"1": "chr1"}"""),
        ("MT", """the FASTA has 'chrM': set contig_aliases: {"MT": "chrM"}"""),
        ("chr2_alt", None),
    ],
)
def test_check_contigs_names_the_missing_contig_with_a_hint(
    small_fasta: Path, contig: str, hint: str | None
) -> None:
    with pytest.raises(InputError) as err:
        check_contigs(["chr2", contig, "chrZ"], small_fasta, "ann.gtf")
    message = str(err.value)
    assert message.startswith(f"ann.gtf:{contig}: contig '{contig}' is not in the genome FASTA")
    assert "(nor are 1 more)" in message
    if hint:
        assert message.endswith(hint)
    else:  # no candidate name: the FASTA's own names and the key that maps onto them
        assert message.endswith(
            "; the FASTA's contigs are 'chr1', 'chr2', 'chrM': map the annotation's names to "
            "the FASTA's with contig_aliases (annotation name: FASTA name, e.g. "
            '{"chr2_alt": "<its name in the FASTA>"})'
        )


def test_check_contigs_lists_ncbi_style_names_when_no_alias_fits(tmp_path: Path) -> None:
    # Before: "contig 'MT' is not in the genome FASTA ..." and nothing more: no name of the
    # FASTA's, no word of contig_aliases.
    fasta = tmp_path / "mt.fa"
    fasta.write_text(">gi|251831106|ref|NC_012920.1| Homo sapiens mitochondrion\nACGT\n")
    with pytest.raises(InputError) as err:
        check_contigs(["MT"], fasta, "Ensembl_MT.gtf")
    assert str(err.value) == (
        f"Ensembl_MT.gtf:MT: contig 'MT' is not in the genome FASTA {fasta}; the FASTA's only "
        "contig is 'gi|251831106|ref|NC_012920.1|': map the annotation's names to the FASTA's "
        'with contig_aliases (annotation name: FASTA name, e.g. {"MT": "<its name in the '
        "FASTA>\"}), or rename the FASTA's NCBI-style headers (the whole first word, "
        "gi|...|ref|ACCESSION|, is the name), e.g. to the annotation's names"
    )
    many = tmp_path / "many.fa"
    many.write_text("".join(f">ctg{i}\nACGT\n" for i in range(8)))
    with pytest.raises(InputError, match=r"'ctg3', 'ctg4' and 3 more: map the annotation's"):
        check_contigs(["chr9"], many, "ann.gtf")


def test_check_contigs_hint_removes_a_chr_prefix(tmp_path: Path) -> None:
    fasta = tmp_path / "ens.fa"
    fasta.write_text(">9\nACGT\n")
    with pytest.raises(InputError, match=r'set contig_aliases: \{"chr9": "9"\}'):
        check_contigs(["chr9"], fasta, "ann.gtf")


@needs_samtools
def test_index_fasta_matches_samtools(small_fasta: Path, tmp_path: Path) -> None:
    ours = tmp_path / "ours.fai"
    index_fasta(small_fasta, ours)
    assert ours.read_text() == Path(f"{small_fasta}.fai").read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_index_fasta_rejects_bad_fasta(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fa"
    bad.write_text("ACGT\n>x\nAC\n")
    with pytest.raises(InputError, match="bad.fa: samtools faidx failed"):
        index_fasta(bad, tmp_path / "bad.fa.fai")
    assert not (tmp_path / "bad.fa.fai").exists()
    with pytest.raises(InputError, match="does not exist"):
        index_fasta(tmp_path / "absent.fa", tmp_path / "absent.fa.fai")
    with pytest.raises(InputError, match="does not exist"):
        GenomeWindows(tmp_path / "absent.fa")


def test_check_contigs_hint_speaks_of_the_annotation_name_behind_an_alias(tmp_path: Path) -> None:
    fasta = tmp_path / "ens.fa"
    fasta.write_text(">9\nACGT\n>MT\nACGT\n")
    with pytest.raises(InputError) as err:
        check_contigs(["chr9"], fasta, "ann.gtf", {"9": "chr9"})
    assert str(err.value) == (
        f"ann.gtf:chr9: contig 'chr9' (annotation '9' via contig_aliases) is not in the genome "
        f"""FASTA {fasta}; the FASTA has '9': remove "9": "chr9" from contig_aliases"""
    )
    with pytest.raises(InputError, match=r'set contig_aliases: \{"M": "MT"\}$'):
        check_contigs(["chrM"], fasta, "ann.gtf", {"M": "chrM"})


def test_check_contigs_accepts_int_alias_keys_as_yaml_reads_them(tmp_path: Path) -> None:
    fasta = tmp_path / "ucsc.fa"
    fasta.write_text(">chr1\nACGT\n")
    with pytest.raises(InputError, match=r"\(annotation '9' via contig_aliases\)"):
        check_contigs(["chr1", "chr9"], fasta, "ann.gtf", {1: "chr1", 9: "chr9"})


# ---- issue 7: a contig listed twice, a .fai that does not match its FASTA ---------------

DUPLICATE = ">c1 first copy\nACGTACGT\nAC\n>c2\nGGGG\n>c1 second copy\nTTTTTTTTTTTT\n"


def test_contig_listed_twice_is_an_error_not_the_first_copy(tmp_path: Path) -> None:
    # Before: htslib indexed only the first c1 (a warning on stderr) and every window of c1
    # came from it.
    fasta = tmp_path / "g.fa"
    fasta.write_text(DUPLICATE)
    with pytest.raises(InputError) as err:
        GenomeWindows(fasta)
    assert str(err.value) == (
        f"{fasta}:c1: contig listed twice: htslib would read only its first copy; "
        "remove or rename the second"
    )


def test_index_fasta_refuses_a_contig_listed_twice(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa"
    fasta.write_text(DUPLICATE)
    with pytest.raises(InputError, match=r":c1: contig listed twice"):
        index_fasta(fasta, tmp_path / "g.fa.fai")
    assert not (tmp_path / "g.fa.fai").exists()


def test_duplicate_name_in_the_fai(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa"
    fasta.write_text(">c1\nACGT\n>c2\nGGGG\n")
    Path(f"{fasta}.fai").write_text("c1\t4\t4\t4\t5\nc2\t4\t13\t4\t5\nc1\t4\t13\t4\t5\n")
    with pytest.raises(InputError, match=r"g\.fa:c1: contig listed twice \(in its \.fai index\)"):
        GenomeWindows(fasta)


def test_stale_fai_is_an_error_not_shifted_bases(tmp_path: Path) -> None:
    # The FASTA was edited after indexing: the old offsets would read the wrong bases.
    fasta = tmp_path / "g.fa"
    fasta.write_text(">c1\nACGT\n>c2\nGGGG\n")
    pysam.faidx(str(fasta))
    fasta.write_text(">c1\nACGTAC\n>c2\nGGGG\n")
    with pytest.raises(InputError, match=r"g\.fa:c2: the index .* does not match the FASTA"):
        GenomeWindows(fasta)


@pytest.mark.parametrize("keep", [-2, -7, -62, 40])
def test_fasta_cut_inside_its_last_record_with_its_old_fai(tmp_path: Path, keep: int) -> None:
    # An interrupted copy after the .fai was copied: only blank bytes were asked for after
    # the last record, and a read past the end of the file is blank, so the genome opened
    # and the sequences rule died on a raw pysam "failure when retrieving sequence".
    fasta = tmp_path / "g.fa"
    text = fasta_text([("a", "ACGT" * 30), ("b", "GGCCAT" * 50)])
    fasta.write_text(text)
    pysam.faidx(str(fasta))
    cut = len(text) + keep if keep < 0 else text.index(">b") + keep  # keep: bytes kept
    fasta.write_text(text[:cut])
    match = (
        rf"^{fasta}:b: the FASTA ends before base 300 of this record, its last, .*"
        r"the index .* does not match the FASTA \(cut short"
    )
    with pytest.raises(InputError, match=match):
        GenomeWindows(fasta)
    with pytest.raises(InputError, match=match):
        check_fasta_index(fasta)


def test_fasta_without_its_last_newline_passes_the_index_check(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa"
    fasta.write_text(fasta_text([("a", "ACGT" * 30), ("b", "GGCCAT" * 50)]).rstrip("\n"))
    pysam.faidx(str(fasta))
    assert GenomeWindows(fasta).fetch("b", 294, 300) == "GGCCAT"


def test_well_formed_fastas_pass_the_index_check(tmp_path: Path, small_fasta: Path) -> None:
    crlf = tmp_path / "crlf.fa"
    crlf.write_bytes(b">a x\r\nACGTA\r\nCG\r\n>b\r\nTT\r\n\r\n")
    for fasta in (small_fasta, crlf):
        genome = GenomeWindows(fasta)
        assert all(length > 0 for length in genome.lengths.values())
    assert GenomeWindows(crlf).fetch("a", 0, 7) == "ACGTACG"


@needs_chr9
def test_real_chr9_passes_the_index_check(tmp_path: Path) -> None:
    copy = tmp_path / "chr9.fa"
    shutil.copy(CHR9, copy)
    index_fasta(copy, tmp_path / "chr9.fa.fai")
    assert GenomeWindows(copy).lengths == {"9": 1_000_000}


def _edit_lines(text: str, longer: int, shorter: int | None) -> str:
    """``text`` with sequence line ``longer`` (0-based, over the whole file) one base longer
    and line ``shorter`` one base shorter (None: line ``longer`` split in two instead)."""
    lines = text.split("\n")
    if shorter is None:
        lines[longer : longer + 1] = [lines[longer][:25], lines[longer][25:]]
    else:
        lines[longer] += "A"
        lines[shorter] = lines[shorter][:-1]
    return "\n".join(lines)


@pytest.mark.parametrize("packed", ["plain", "bgzip"])
@pytest.mark.parametrize("shorter", [6, None], ids=["same-size", "split"])
def test_a_line_edited_under_its_old_fai_is_an_error_not_shifted_bases(
    tmp_path: Path, packed: str, shorter: int | None
) -> None:
    # Before: the records' ends were where the old .fai says (the open check passed), and
    # htslib read the bases after the edited line shifted by one, silently where a read did
    # not reach a misplaced line end.
    seqs = random_records(2, 600, seed=3)
    text = fasta_text(seqs)
    fasta = tmp_path / "g.fa"
    fasta.write_text(text)
    pysam.faidx(str(fasta))
    fasta.write_text(_edit_lines(text, 3, shorter))  # lines 3 and 6 of record c0
    if packed == "bgzip":
        pysam.tabix_compress(str(fasta), f"{fasta}.gz")
        # one bgzip block (1.2 kB): its .gzi lists no block after the first (samtools faidx
        # refuses the edited file: "Different line length")
        Path(f"{fasta}.gz.gzi").write_bytes((0).to_bytes(8, "little"))
        shutil.copy(f"{fasta}.fai", f"{fasta}.gz.fai")  # the old .fai
        fasta = Path(f"{fasta}.gz")
    genome = GenomeWindows(fasta)
    match = (
        rf"^{fasta}:c0: bases 121-181 of c0 are not on lines of 60 bases \(61 bytes "
        rf"with the line end\) as its index {fasta}\.fai says: .* delete {fasta}\.fai"
    )
    with pytest.raises(InputError, match=match):
        genome.fetch("c0", 130, 140)  # within line 3 of c0: a window away from a line end
    with pytest.raises(InputError, match="not on lines of 60 bases"):
        genome.tokens("c0", 100, 400)
    # reads before the edit are right
    assert genome.fetch("c0", 10, 110) == seqs[0][1][10:110]
    if shorter is not None:  # past the shorter line the lines are in place again
        assert genome.fetch("c0", 400, 600) == seqs[0][1][400:600]
        assert genome.fetch("c1", 0, 600) == seqs[1][1]
    else:  # the split's extra line end moves c1 by a byte: its header still passed at open
        with pytest.raises(InputError, match=rf"^{fasta}:c1: bases 1-61 of c1 are not"):
            genome.fetch("c1", 5, 10)


@pytest.mark.parametrize("shorter", [3, None], ids=["same-size", "split"])
def test_a_long_line_edited_under_its_old_fai_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shorter: int | None
) -> None:
    # Lines over LINE_CHECK_MAX are not read whole around a window: their line ends are
    # probed. Before, such a contig was read unchecked and the sequences rule's one-by-one
    # path wrote RNA shifted by one where its batched reader had found the line out of place.
    import isoflow.genome as genome_module

    monkeypatch.setattr(genome_module, "LINE_CHECK_MAX", 50)  # 60-base lines count as long
    seqs = random_records(1, 600, seed=4)
    text = fasta_text(seqs)
    fasta = tmp_path / "g.fa"
    fasta.write_text(text)
    pysam.faidx(str(fasta))
    fasta.write_text(_edit_lines(text, 1, shorter))  # line 1 longer (line 3 shorter)
    genome = GenomeWindows(fasta)
    assert genome._probed_lines == {"c0": 60} and not genome._checked_lines
    with pytest.raises(InputError, match=r"^.*:c0: bases 60-61 of c0 are not on lines of 60"):
        genome.fetch("c0", 70, 80)  # within line 2, shifted by the longer line 1
    if shorter is not None:  # past the shorter line the lines are in place again
        assert genome.fetch("c0", 250, 400) == seqs[0][1][250:400]


@needs_chr9
def test_a_line_edited_in_the_real_chr9_under_its_old_fai(tmp_path: Path) -> None:
    copy = tmp_path / "chr9.fa"
    text = CHR9.read_text()
    copy.write_text(_edit_lines(text, 10_001, 10_006))  # bases 600,001-600,360
    shutil.copy(f"{CHR9}.fai", f"{copy}.fai")
    genome = GenomeWindows(copy)
    with pytest.raises(InputError, match=r":9: bases 600,061-600,121 of 9 are not on"):
        genome.fetch("9", 600_065, 600_100)
    assert genome.fetch("9", 700_000, 700_100) == GenomeWindows(CHR9).fetch("9", 700_000, 700_100)


def test_line_ends_in_place_checks_each_line_a_read_touches(tmp_path: Path) -> None:
    from isoflow.genome import line_ends_in_place

    text = fasta_text([("c0", "ACGT" * 60)], width=10)  # 24 lines of 10 bases
    good = text.encode()
    bad = _edit_lines(text, 5, 7).encode()  # lines 4 and 6 of the record: bases 40-49, 60-69

    def check(data: bytes, start: int, end: int) -> bool:
        one = np.array([1])
        return line_ends_in_place(
            data, one * 4, one * 10, one * 11, one * 240, np.array([start]), np.array([end])
        )

    assert all(check(good, s, s + n) for s in range(0, 230, 7) for n in (1, 9, 25))
    assert check(bad, 10, 30) and check(bad, 75, 200)  # before the edit, after it
    assert not check(bad, 52, 55)  # a line between the longer and the shorter one
    assert not check(bad, 45, 47)  # in the longer line: its end is out of place
    assert not check(bad, 30, 75)  # over both


# ---- bgzip FASTA: htslib leaves a duplicate out of the .fai; a stale .fai or .gzi -------


def fasta_text(records: list[tuple[str, str]], width: int = 60) -> str:
    lines = []
    for name, seq in records:
        lines.append(f">{name}")
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
    return "\n".join(lines) + "\n"


def bgzip(tmp_path: Path, records: list[tuple[str, str]], name: str = "g.fa") -> Path:
    plain = tmp_path / name
    plain.write_text(fasta_text(records))
    out = tmp_path / f"{name}.gz"
    pysam.tabix_compress(str(plain), str(out), force=True)
    plain.unlink()
    return out


def random_records(n: int, length: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(f"c{i}", "".join(rng.choice(list("ACGT"), size=length))) for i in range(n)]


# 4 x 100 kb of random bases: ~100 kB of bgzip, several 64 KiB blocks per contig.
RECORDS = random_records(4, 100_000)


@pytest.mark.parametrize("where", ["middle", "last"])
def test_bgzip_contig_listed_twice_is_an_error(tmp_path: Path, where: str) -> None:
    # Before: htslib left the second c1 out of the .fai it built ("Ignoring duplicate
    # sequence"), the .fai then listed each name once and the check passed; exit 0.
    twice = (
        [*RECORDS[:2], RECORDS[0], *RECORDS[2:]] if where == "middle" else [*RECORDS, RECORDS[1]]
    )
    fasta = bgzip(tmp_path, twice)
    name = "c0" if where == "middle" else "c1"
    with pytest.raises(InputError, match=rf"^{fasta}:{name}: contig listed twice: htslib"):
        index_fasta(fasta, tmp_path / "g.fa.gz.fai")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.fa.gz"]  # no .fai, no .gzi
    with pytest.raises(InputError, match=rf"^{fasta}:{name}: contig listed twice: htslib"):
        GenomeWindows(fasta)


def test_bgzip_fasta_passes_and_reads_as_the_plain_one(tmp_path: Path) -> None:
    fasta = bgzip(tmp_path, RECORDS)
    index_fasta(fasta, tmp_path / "g.fa.gz.fai")
    # the .gzi where readers look for it (rule genome_index declares it), nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.fa.gz", "g.fa.gz.fai", "g.fa.gz.gzi"]
    genome = GenomeWindows(fasta)
    assert genome.lengths == {name: 100_000 for name, _ in RECORDS}
    assert genome.fetch("c3", 99_000, 100_000) == RECORDS[3][1][99_000:]


def test_index_fasta_writes_the_gzi_where_it_is_asked(tmp_path: Path) -> None:
    fasta = bgzip(tmp_path, RECORDS[:2])
    index_fasta(fasta, tmp_path / "idx" / "g.fai", tmp_path / "idx" / "g.gzi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.fa.gz", "idx"]
    check_fasta_index(fasta, tmp_path / "idx" / "g.fai", tmp_path / "idx" / "g.gzi")
    plain = tmp_path / "plain" / "g.fa"
    plain.parent.mkdir()
    plain.write_text(fasta_text(RECORDS[:1]))
    index_fasta(plain, tmp_path / "plain" / "g.fa.fai")
    assert sorted(p.name for p in plain.parent.iterdir()) == ["g.fa", "g.fa.fai"]


def test_stale_fai_and_gzi_on_a_bgzip_fasta(tmp_path: Path) -> None:
    # Before: a bgzip FASTA got only the duplicate-name check; an index of an older FASTA
    # (here, contigs 1 kb longer) read shifted bases.
    fasta = bgzip(tmp_path, [(name, seq[:-1000]) for name, seq in RECORDS])
    pysam.faidx(str(fasta))
    fasta = bgzip(tmp_path, RECORDS)  # rewritten, old .fai and .gzi kept
    with pytest.raises(InputError, match=rf"^{fasta}:c1: the index .* does not match the FASTA"):
        GenomeWindows(fasta)


def test_stale_gzi_alone_on_a_bgzip_fasta(tmp_path: Path) -> None:
    # Same lengths (so the same .fai), other bases: only the block offsets in the .gzi differ.
    fasta = bgzip(tmp_path, [(name, "A" * len(seq)) for name, seq in RECORDS])
    pysam.faidx(str(fasta))
    old_gzi = Path(f"{fasta}.gzi").read_bytes()
    fasta = bgzip(tmp_path, RECORDS)
    pysam.faidx(str(fasta))
    Path(f"{fasta}.gzi").write_bytes(old_gzi)
    with pytest.raises(InputError, match=rf"^{fasta}: the index {fasta}\.gzi does not match"):
        check_fasta_index(fasta)


def test_bgzip_fasta_without_its_gzi(tmp_path: Path) -> None:
    fasta = bgzip(tmp_path, RECORDS[:1])
    pysam.faidx(str(fasta))
    Path(f"{fasta}.gzi").unlink()
    with pytest.raises(InputError, match=r"bgzip FASTA without its g\.fa\.gz\.gzi index"):
        check_fasta_index(fasta)


@needs_chr9
def test_real_chr9_bgzip_passes_the_index_check(tmp_path: Path) -> None:
    fasta = tmp_path / "chr9.fa.gz"
    pysam.tabix_compress(str(CHR9), str(fasta))
    index_fasta(fasta, tmp_path / "chr9.fa.gz.fai")
    genome = GenomeWindows(fasta)
    assert genome.lengths == {"9": 1_000_000}
    with GenomeWindows(CHR9) as plain:
        assert genome.fetch("9", 500_000, 501_000) == plain.fetch("9", 500_000, 501_000)


def test_non_utf8_byte_in_the_fai_names_line_and_column(tmp_path: Path) -> None:
    # Before: a UnicodeDecodeError traceback.
    fasta = tmp_path / "g.fa"
    fasta.write_text(">c1\nACGT\n>c2\nGGGG\n")
    Path(f"{fasta}.fai").write_bytes(b"c1\t4\t4\t4\t5\nc\xe92\t4\t13\t4\t5\n")
    with pytest.raises(
        InputError, match=r"g\.fa:contig 2: name: byte 0xe9 at column 2 is not UTF-8"
    ):
        check_fasta_index(fasta)


@pytest.mark.parametrize("how", ["index_fasta", "GenomeWindows"])
def test_non_utf8_contig_name_names_the_fasta_and_contig(tmp_path: Path, how: str) -> None:
    # Before: index_fasta named its temporary .fai; GenomeWindows gave "cannot open as indexed
    # FASTA: 'utf-8' codec can't decode byte 0xe9 in position 1".
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b">c1\nACGT\n>c\xe92\nGGGG\n")
    with pytest.raises(InputError, match=rf"^{fasta}:contig 2: name: byte 0xe9 at column 2 "):
        if how == "index_fasta":
            index_fasta(fasta, tmp_path / "g.fa.fai")
        else:
            GenomeWindows(fasta)


def test_non_ascii_byte_in_a_sequence_names_contig_and_position(tmp_path: Path) -> None:
    # Before: a UnicodeDecodeError traceback from pysam when the window was read.
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b">c1\nACGTACGTAC\nAC\xe9TA\n")
    index_fasta(fasta, tmp_path / "g.fa.fai")
    genome = GenomeWindows(fasta)
    assert genome.tokens("c1", 0, 10).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    match = rf"^{fasta}:c1: base 13 is not an ASCII letter"
    with pytest.raises(InputError, match=match):
        genome.tokens("c1", 4, 20)
    with pytest.raises(InputError, match=match):
        genome.fetch("c1", 11, 14)
    # the line check reads whole lines: a byte beside the window fails only a read of it
    assert genome.fetch("c1", 10, 12) == "AC"


def test_a_byte_that_is_no_nucleotide_in_a_window_names_contig_and_position(
    tmp_path: Path,
) -> None:
    # Before: '-' (or '*', '.', a digit) was read as N in a window, silently.
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b">c1\nACGTACGTAC\nAC-TArykm\n")
    index_fasta(fasta, tmp_path / "g.fa.fai")
    genome = GenomeWindows(fasta)
    assert genome.tokens("c1", 13, 19).tolist() == [3, 0, 4, 4, 4, 4]  # IUPAC, any case
    match = rf"^{fasta}:c1: base 13 of c1 is '-', not a nucleotide letter"
    with pytest.raises(InputError, match=match):
        genome.tokens("c1", 4, 20, "-")
    with pytest.raises(InputError, match=match):
        genome.fetch("c1", 12, 13)


def test_utf8_character_in_a_sequence_fails_the_index_check(tmp_path: Path) -> None:
    # htslib does not count its two bytes as bases: the record ends where the .fai says not.
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b">c1\nACGTACGTAC\nAC\xc3\xa9TA\n")
    with pytest.raises(InputError, match=r"a sequence line holds a byte outside ASCII"):
        index_fasta(fasta, tmp_path / "g.fa.fai")


# ---- a user's FASTA in a folder the workflow may not write (a shared reference) ---------


def test_index_fasta_in_a_folder_it_cannot_write_is_one_line(tmp_path: Path, monkeypatch) -> None:
    # Before: a PermissionError traceback from the temporary file beside the FASTA. Root
    # writes a 0555 folder anyway, so the refusal is simulated where the file is made.
    import errno

    import isoflow.genome

    fasta = tmp_path / "ref" / "g.fa"
    fasta.parent.mkdir()
    fasta.write_text(">c1\nACGT\n")

    def refused(path):
        raise PermissionError(errno.EACCES, "Permission denied", f"{Path(path).parent}/.x.fai.tmp")

    monkeypatch.setattr(isoflow.genome, "atomic_path", refused)
    with pytest.raises(InputError) as err:
        index_fasta(fasta, f"{fasta}.fai")
    assert str(err.value) == (
        f"{fasta}: cannot write its index (.fai) in {fasta.parent} (Permission denied): run "
        f"`samtools faidx {fasta}` as someone who may write there (an index beside your own "
        "FASTA is then only read, never rewritten), or copy the FASTA to a writable folder "
        "and set genome.fasta to the copy"
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anyway")
def test_index_fasta_in_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    fasta = tmp_path / "ref" / "g.fa"
    fasta.parent.mkdir()
    fasta.write_text(">c1\nACGT\n")
    fasta.parent.chmod(0o555)
    try:
        with pytest.raises(InputError, match=r"cannot write its index \(\.fai\) in .*ref "):
            index_fasta(fasta, f"{fasta}.fai")
    finally:
        fasta.parent.chmod(0o755)
    assert sorted(p.name for p in fasta.parent.iterdir()) == ["g.fa"]
