"""Synthetic demo data with a planted, sequence-determined expression signal.

``make_demo(outdir, seed)`` writes, deterministically from the seed and in seconds:

- ``genome.fa``: a few Mb of random sequence (GC 41 %) on chromosomes ``chr1..chrN``,
  60-column FASTA;
- ``annotation.gtf.gz``: a GENCODE v26-layout GTF (gene / transcript / exon / CDS /
  start_codon / stop_codon / UTR lines, GENCODE attributes) with multi-isoform genes on both
  strands: alternative TSS, alternative 3' ends, exon skipping, retained introns, lincRNA
  genes, incomplete CDSs (``cds_start_NF``/``mRNA_start_NF`` with a non-zero first frame;
  ``cds_end_NF``/``mRNA_end_NF``), and TSSs a few hundred bp from a chromosome end. Every
  CDS is a real ORF of the genome (ATG ... stop, no internal stop);
- ``sample_attributes.tsv``: GTEx SampleAttributesDS layout (the 63 open-access columns),
  real GTEx SMTS/SMTSD names, GTEx-style sample IDs, plus a few non-RNA-seq rows (WGS,
  EXCLUDE) that the expression matrix does not hold, as in the real file;
- ``transcript_tpm.gct.gz``: GTEx v8 transcript-TPM layout (``#1.2``, dimensions line,
  ``transcript_id  gene_id  <SAMPID>...``), plus two all-zero ``_PAR_Y`` rows as GTEx has;
- ``planted_signal.tsv``: the true per-transcript components and the expected target.

The planted signal. For transcript ``t`` and SMTS tissue ``s``::

    d_t = GC fraction of the 1,000 bp upstream of the TSS (transcript strand; clipped at a
          chromosome end)                                   -> DNA window only
    r_t = AU-rich elements: occurrences of ATTTA (AUUUA) in the 3'UTR per 100 nt of
          transcript; in the last exon for a non-coding transcript; 0 for a cds_end_NF
          transcript (no 3'UTR)                             -> RNA only (far from TSS)
    p_t = fraction of K + R residues in the protein (codon choice writes it into the CDS;
          no stop, X for an incomplete codon); 0.10 for a non-coding transcript -> protein
    x   = a_s + wd_s 10 (d_t - 0.5) - wr_s (r_t - 1.8) + wp_s 10 (p_t - 0.15) + e_t
    y_ts = softplus(x) = log(1 + exp(x))                      (expected log1p(mean TPM))
    TPM of sample j of tissue s = expm1(y_ts) * exp(sigma n_j - sigma^2 / 2),  n_j ~ N(0, 1)

with ``e_t ~ N(0, transcript_sd)`` a small unexplained transcript effect, base weights
``a = 2.0, wd = 0.7, wr = 0.7, wp = 0.9`` each multiplied per tissue by ``exp(0.3 N(0,1))``
(``a_s = 2.0 + 0.3 N(0, 1)``), so tissues weigh the three components differently. The
sub-tissues (SMTSD) of one SMTS share its weights. The DNA and RNA terms are built to
survive frozen random-weight encoders with mean pooling (the demo's tiny encoders): each
promoter is drawn with its own GC fraction (uniform 0.30-0.70; the background is 41 % GC),
and each 3'UTR holds one block of tandem ATTTA repeats (a class II ARE cluster) covering a
random 0-40 % of it before the alternative polyA site and another after it; a random
6-mer-token RNA encoder sees the block as a few recurring tokens. Isoforms differ in each
term: an alternative TSS has its own promoter, an alternative polyA site cuts the 3'UTR
(and its AREs), exon skipping removes a coding exon whose own K+R fraction differs from the
gene's. Every component is measured back on the written sequence, so
``planted_signal.tsv`` is the truth.
docs/demo.md describes it for users.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isoflow.alphabet import reverse_complement, standard_code, translate_cds
from isoflow.files import atomic_path

log = logging.getLogger(__name__)

DEMO_FILES = {
    "genome": "genome.fa",
    "annotation": "annotation.gtf.gz",
    "tpm": "transcript_tpm.gct.gz",
    "samples": "sample_attributes.tsv",
    "signal": "planted_signal.tsv",
}

PROTEIN_RESIDUES = "KR"
PROMOTER_LEN = 1000
NONCODING_PROTEIN_VALUE = 0.10
GC = 0.41
# Planted per transcript: the promoter's GC fraction, and the fraction of the 3'UTR covered
# by tandem repeats of the AU-rich element AUUUA.
PROMOTER_GC = (0.30, 0.70)
UTR3_MOTIF = "ATTTA"
UTR3_ARE_COVER = (0.0, 0.4)

# Base weights of the planted signal (see the module docstring).
BASE_LEVEL = 2.0
WEIGHT_DNA = 0.7
WEIGHT_RNA = 0.7
WEIGHT_PROTEIN = 0.9
CENTRE_DNA = 0.5
CENTRE_RNA = 1.8
CENTRE_PROTEIN = 0.15
TISSUE_SD = 0.3

# (SMTS, SMTSD, UBERON) as in GTEx v8 (GTEx portal tissue table).
TISSUES = (
    ("Adipose Tissue", "Adipose - Subcutaneous", "0002190"),
    ("Blood", "Whole Blood", "0013756"),
    ("Brain", "Brain - Cortex", "0001870"),
    ("Brain", "Brain - Frontal Cortex (BA9)", "0009834"),
    ("Colon", "Colon - Transverse", "0001157"),
    ("Heart", "Heart - Left Ventricle", "0006566"),
    ("Liver", "Liver", "0001114"),
    ("Lung", "Lung", "0008952"),
    ("Muscle", "Muscle - Skeletal", "0011907"),
    ("Skin", "Skin - Not Sun Exposed (Suprapubic)", "0036149"),
    ("Skin", "Skin - Sun Exposed (Lower leg)", "0004264"),
    ("Testis", "Testis", "0000473"),
    ("Thyroid", "Thyroid", "0002046"),
)

# The open-access columns of GTEx_Analysis_v8_Annotations_SampleAttributesDS.txt, in order.
SAMPLE_ATTRIBUTE_COLUMNS = (
    "SAMPID SMATSSCR SMCENTER SMPTHNTS SMRIN SMTS SMTSD SMUBRID SMTSISCH SMTSPAX SMNABTCH "
    "SMNABTCHT SMNABTCHD SMGEBTCH SMGEBTCHD SMGEBTCHT SMAFRZE SMGTC SME2MPRT SMCHMPRS "
    "SMNTRART SMNUMGPS SMMAPRT SMEXNCRT SM550NRM SMGNSDTC SMUNMPRT SM350NRM SMRDLGTH "
    "SMMNCPB SME1MMRT SMSFLGTH SMESTLBS SMMPPD SMNTERRT SMRRNANM SMRDTTL SMVQCFL SMMNCV "
    "SMTRSCPT SMMPPDPR SMCGLGTH SMGAPPCT SMUNPDRD SMNTRNRT SMMPUNRT SMEXPEFF SMMPPDUN "
    "SME2MMRT SME2ANTI SMALTALG SME2SNSE SMMFLGTH SME1ANTI SMSPLTRD SMBSMMRT SME1SNSE "
    "SME1PCTS SMRRNART SME1MPRT SMNUM5CD SMDPMPRT SME2PCTS"
).split()

CODON_TABLE = standard_code()
SYNONYMS: dict[str, list[str]] = {}
for _codon, _aa in CODON_TABLE.items():
    SYNONYMS.setdefault(_aa, []).append(_codon)
STOP_CODONS = SYNONYMS.pop("*")
OTHER_RESIDUES = [aa for aa in sorted(SYNONYMS) if aa not in PROTEIN_RESIDUES]


@dataclass(frozen=True)
class DemoParams:
    n_genes: int = 700
    n_chroms: int = 3
    lincrna_fraction: float = 0.15
    samples_per_tissue: tuple[int, int] = (3, 6)
    sample_sd: float = 0.35
    transcript_sd: float = 0.2
    p_alt_tss: float = 0.4
    p_alt_polya: float = 0.5
    p_alt_tss_polya: float = 0.3
    p_exon_skip: float = 0.5
    p_retained_intron: float = 0.15
    p_cds_start_nf: float = 0.03
    p_cds_end_nf: float = 0.03


@dataclass
class _Tx:
    ttype: str
    exons: list[tuple[int, int]]  # locus coordinates (transcript orientation), 5' to 3'
    cds: tuple[int, int] | None = None  # coding bases, stop codon excluded
    cds_offset: int = 0  # reading-frame position of the first coding base (0 = ATG)
    has_start: bool = True
    has_stop: bool = True
    tags: tuple[str, ...] = ("basic",)

    @property
    def tss(self) -> int:
        return self.exons[0][0]


@dataclass
class _Locus:
    gene_type: str
    seq: bytearray  # transcript orientation
    txs: list[_Tx] = field(default_factory=list)


def make_demo(outdir: str | os.PathLike, seed: int = 0, **params) -> dict[str, Path]:
    """Write the demo files (``DEMO_FILES``) into ``outdir``; return their paths by key.

    ``params`` override ``DemoParams`` fields (``n_genes``, ``n_chroms``, ...). Same seed and
    params give identical bytes.
    """
    p = DemoParams(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()})
    rng = np.random.default_rng(seed)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {key: outdir / name for key, name in DEMO_FILES.items()}

    loci = [_make_locus(rng, p, i) for i in range(p.n_genes)]
    chroms, placed = _assemble(rng, p, loci)
    genes = _annotate(placed, chroms)
    tissue_w = _tissue_weights(rng)
    samples = _samples(rng, p)
    signal = _signal(rng, p, genes, tissue_w)

    _write_fasta(chroms, paths["genome"])
    _write_gtf(genes, paths["annotation"], seed)
    _write_samples(samples, paths["samples"])
    _write_gct(rng, p, genes, signal, samples, paths["tpm"])
    _write_signal(genes, signal, tissue_w, paths["signal"], seed)
    n_tx = sum(len(g["transcripts"]) for g in genes)
    log.info(
        "demo: %d genes, %d transcripts, %d bp on %d chromosomes, %d RNA-seq samples",
        len(genes),
        n_tx,
        sum(len(s) for s in chroms.values()),
        len(chroms),
        sum(1 for s in samples if s["SMAFRZE"] == "RNASEQ"),
    )
    return paths


def write_demo(outputs: Mapping[str, str | os.PathLike], seed: int = 0, **params) -> None:
    """Make the demo and move each file to ``outputs[key]`` (keys of ``DEMO_FILES``).

    Used by the demo_data rule, whose output paths come from the config; each file lands
    by an atomic rename, so an interrupted run leaves no partial output.
    """
    missing = set(DEMO_FILES) - set(outputs)
    if missing:
        raise ValueError(f"write_demo: no output path for {sorted(missing)}")
    staging = Path(outputs["genome"]).parent
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".demo.", dir=staging) as tmp:
        made = make_demo(tmp, seed, **params)
        for key, src in made.items():
            with atomic_path(outputs[key]) as dest:
                shutil.move(src, dest)


# --- sequence helpers -------------------------------------------------------------------


def _random_dna(rng: np.random.Generator, n: int, gc_fraction: float = GC) -> bytearray:
    at, gc = (1 - gc_fraction) / 2, gc_fraction / 2
    idx = rng.choice(4, size=n, p=[at, gc, gc, at])
    return bytearray(np.frombuffer(b"ACGT", dtype=np.uint8)[idx].tobytes())


def gc_fraction(seq: str) -> float:
    """Fraction of G + C in ``seq`` (0 for an empty sequence)."""
    return (seq.count("G") + seq.count("C")) / len(seq) if seq else 0.0


def count_motif(seq: str, motif: str) -> int:
    """Occurrences of ``motif`` in ``seq``, overlapping ones included."""
    return len(re.findall(f"(?={motif})", seq))


def translate(cds: str, phase: int = 0) -> str:
    """Standard-code translation skipping ``phase`` bases, stops kept as ``*``; an incomplete
    codon at either end is ``X`` (as in results/sequences/protein.fa.gz)."""
    return translate_cds(cds, phase=phase, keep_stop=True)


def _plant_promoter(rng, seq: bytearray, tss: int) -> None:
    """Rewrite the ``PROMOTER_LEN`` bp upstream of ``tss`` with a random GC fraction."""
    start = max(0, tss - PROMOTER_LEN)
    seq[start:tss] = _random_dna(rng, tss - start, rng.uniform(*PROMOTER_GC))


def _plant_utr3(rng, seq: bytearray, start: int, polya: int, end: int) -> None:
    """Write one block of tandem ``ATTTA`` repeats (an AU-rich element cluster) covering a
    random 0-40 % of the 3'UTR before the alternative polyA site ``polya``, and another
    after it, so the short and the long isoform differ in their ARE density."""
    for a, b in ((start, polya), (polya, end)):
        n = int(rng.uniform(*UTR3_ARE_COVER) * (b - a)) // len(UTR3_MOTIF)
        at = a + int(rng.integers(0, b - a - len(UTR3_MOTIF) * n + 1))
        seq[at : at + len(UTR3_MOTIF) * n] = UTR3_MOTIF.encode() * n


# --- genes ------------------------------------------------------------------------------


def _make_locus(rng: np.random.Generator, p: DemoParams, index: int) -> _Locus:
    if index >= 3 and rng.random() < p.lincrna_fraction:
        return _lincrna_locus(rng, p)
    return _coding_locus(rng, p, force_start_nf=index == 1, force_end_nf=index == 2)


def _coding_locus(rng, p: DemoParams, force_start_nf=False, force_end_nf=False) -> _Locus:
    # Protein: M + residues; each coding exon has its own K+R fraction around the gene's.
    n_aa = int(rng.integers(80, 300))
    k = int(rng.integers(2, 6))  # coding exons
    internal = [3 * int(rng.integers(15, 80)) for _ in range(k - 2)]
    while 3 * n_aa - sum(internal) < 60:
        internal.pop()
    rest = 3 * n_aa - sum(internal)
    first = int(rng.integers(30, rest - 30 + 1))
    pieces = [first, *internal, rest - first]
    k = len(pieces)
    gene_kr = rng.uniform(0.0, 0.3)
    exon_kr = np.clip(gene_kr + rng.normal(0, 0.1, size=len(pieces)), 0.0, 0.6)

    codon_starts = np.arange(3, 3 * n_aa, 3)
    kr = exon_kr[np.searchsorted(np.cumsum(pieces), codon_starts, side="right")]
    is_kr = rng.random(len(codon_starts)) < kr
    pick_kr = rng.integers(len(PROTEIN_RESIDUES), size=len(codon_starts))
    pick_other = rng.integers(len(OTHER_RESIDUES), size=len(codon_starts))
    pick_codon = rng.integers(6, size=len(codon_starts))  # 6 = most synonyms of a residue
    cds = ["ATG"]
    for kr_here, i_kr, i_other, i_codon in zip(is_kr, pick_kr, pick_other, pick_codon, strict=True):
        aa = PROTEIN_RESIDUES[i_kr] if kr_here else OTHER_RESIDUES[i_other]
        cds.append(SYNONYMS[aa][i_codon % len(SYNONYMS[aa])])
    cds.append(STOP_CODONS[int(rng.integers(3))])
    cds_seq = "".join(cds)

    # Layout in transcript orientation.
    alt_tss = rng.random() < p.p_alt_tss
    pos = PROMOTER_LEN
    u1a = (pos, pos + int(rng.integers(60, 250)))
    pos = u1a[1]
    u1b = None
    if alt_tss:
        pos += int(rng.integers(PROMOTER_LEN + 150, PROMOTER_LEN + 500))
        u1b = (pos, pos + int(rng.integers(60, 250)))
        pos = u1b[1]
    pos += int(rng.integers(1100, 1500))  # long first intron: the 3' end lies outside the window
    utr5_tail = int(rng.integers(10, 60))
    coding_exons = []
    for i, piece in enumerate(pieces):
        if i:
            pos += int(rng.integers(150, 600))
        length = piece + (utr5_tail if i == 0 else 0)
        coding_exons.append([pos, pos + length])
        pos += length
    utr3_len = int(rng.integers(300, 1000))
    coding_exons[-1][1] += 3 + utr3_len
    end = coding_exons[-1][1]
    coding_exons = [tuple(e) for e in coding_exons]

    seq = _random_dna(rng, end)
    _plant_promoter(rng, seq, u1a[0])
    if u1b:  # its promoter lies in the first intron of u1a, before the splice sites are set
        _plant_promoter(rng, seq, u1b[0])
    exons_all = [u1a, *([u1b] if u1b else []), *coding_exons]
    for a, b in zip(exons_all, exons_all[1:], strict=False):  # splice sites GT...AG
        seq[a[1] : a[1] + 2] = b"GT"
        seq[b[0] - 2 : b[0]] = b"AG"
    cds_lo = coding_exons[0][0] + utr5_tail
    at = cds_lo
    for (a, _end), piece in zip(coding_exons, pieces, strict=True):
        a = max(a, cds_lo)
        seq[a : a + piece] = cds_seq[at - cds_lo : at - cds_lo + piece].encode()
        at += piece
    # the stop codon follows the last piece
    last_a = coding_exons[-1][0]
    stop_at = last_a + pieces[-1]
    seq[stop_at : stop_at + 3] = cds_seq[-3:].encode()
    cds_hi = stop_at
    utr3_start = stop_at + 3

    polya = utr3_start + int(utr3_len * rng.uniform(0.3, 0.6))
    _plant_utr3(rng, seq, utr3_start, polya, end)

    def coding(first_exon, last_end=end):
        exons = [first_exon, *coding_exons]
        exons[-1] = (exons[-1][0], last_end)
        return _Tx("protein_coding", exons, (cds_lo, cds_hi))

    txs = [coding(u1a)]
    if u1b:
        txs.append(coding(u1b))
    if rng.random() < p.p_alt_polya:
        txs.append(coding(u1a, polya))
        if u1b and rng.random() < p.p_alt_tss_polya:
            txs.append(coding(u1b, polya))
    if k >= 3 and rng.random() < p.p_exon_skip:
        # Skip an internal coding exon (a multiple of 3 long) unless the codon that spans
        # the new junction is a stop.
        for skip in rng.permutation(np.arange(1, k - 1)).tolist():
            tx = coding(u1a)
            del tx.exons[1 + skip]
            cds = "".join(seq[max(a, cds_lo) : min(b, cds_hi)].decode() for a, b in tx.exons)
            if "*" not in translate(cds):
                txs.append(tx)
                break
    if rng.random() < p.p_retained_intron:
        i = int(rng.integers(0, k - 1))
        exons = [u1a, *coding_exons]
        exons[1 + i : 3 + i] = [(exons[1 + i][0], exons[2 + i][1])]
        txs.append(_Tx("retained_intron", exons))
    if force_start_nf or rng.random() < p.p_cds_start_nf:
        # Starts inside the first coding exon, off frame: no 5'UTR, no start codon.
        offset = int(rng.integers(4, pieces[0] - 3))
        offset += offset % 3 == 0
        start = cds_lo + offset
        exons = [(start, coding_exons[0][1]), *coding_exons[1:]]
        tags = ("mRNA_start_NF", "cds_start_NF")
        txs.append(_Tx("protein_coding", exons, (start, cds_hi), offset, False, True, tags))
    if force_end_nf or rng.random() < p.p_cds_end_nf:
        # Ends inside the last coding exon before the stop codon: no stop, no 3'UTR.
        stop = coding_exons[-1][0] + int(rng.integers(1, pieces[-1]))
        exons = [u1a, *coding_exons]
        exons[-1] = (exons[-1][0], stop)
        tags = ("mRNA_end_NF", "cds_end_NF")
        txs.append(_Tx("protein_coding", exons, (cds_lo, stop), 0, True, False, tags))
    return _Locus("protein_coding", seq, txs)


def _lincrna_locus(rng, p: DemoParams) -> _Locus:
    pos = PROMOTER_LEN
    exons = [(pos, pos + int(rng.integers(150, 500)))]
    pos = exons[0][1] + int(rng.integers(1100, 1500))
    if rng.random() < 0.6:
        exons.append((pos, pos + int(rng.integers(80, 300))))
        pos = exons[-1][1] + int(rng.integers(150, 600))
    exons.append((pos, pos + int(rng.integers(300, 1200))))
    seq = _random_dna(rng, exons[-1][1])
    _plant_promoter(rng, seq, exons[0][0])
    last = exons[-1]
    cut = last[0] + int((last[1] - last[0]) * rng.uniform(0.3, 0.6))
    _plant_utr3(rng, seq, last[0], cut, last[1])
    for a, b in zip(exons, exons[1:], strict=False):
        seq[a[1] : a[1] + 2] = b"GT"
        seq[b[0] - 2 : b[0]] = b"AG"
    txs = [_Tx("lincRNA", list(exons))]
    if rng.random() < p.p_alt_polya:
        txs.append(_Tx("lincRNA", [*exons[:-1], (last[0], cut)]))
    if len(exons) == 3 and rng.random() < p.p_exon_skip:
        txs.append(_Tx("lincRNA", [exons[0], exons[2]]))
    return _Locus("lincRNA", seq, txs)


# --- genome assembly and annotation -----------------------------------------------------


def _assemble(rng, p: DemoParams, loci: list[_Locus]):
    """Lay the loci out on chromosomes; return sequences and (chrom, offset, strand, locus)."""
    shares = np.linspace(1.0, 0.5, p.n_chroms)
    counts = np.floor(shares / shares.sum() * len(loci)).astype(int)
    counts[0] += len(loci) - counts.sum()
    chroms: dict[str, str] = {}
    placed = []
    it = iter(loci)
    for c, n in enumerate(counts):
        name = f"chr{c + 1}"
        parts: list[bytes] = []
        pos = 0
        for j in range(n):
            locus = next(it)
            strand = "+" if rng.random() < 0.5 else "-"
            first_edge = c == 0 and j == 0  # TSS 300 bp from the start of chr1
            last_edge = c == len(counts) - 1 and j == n - 1  # TSS 250 bp from the end
            seq = bytes(locus.seq)
            if first_edge:
                strand, seq = "+", seq[PROMOTER_LEN - 300 :]
                _shift(locus, PROMOTER_LEN - 300)
            elif last_edge:
                strand, seq = "-", seq[PROMOTER_LEN - 250 :]
                _shift(locus, PROMOTER_LEN - 250)
            if not first_edge:
                spacer = bytes(_random_dna(rng, int(rng.integers(500, 3000))))
                parts.append(spacer)
                pos += len(spacer)
            if strand == "-":
                seq = reverse_complement(seq)
            locus.seq = bytearray(seq)
            placed.append((name, pos, strand, locus))
            parts.append(seq)
            pos += len(seq)
        if not (c == len(counts) - 1):
            parts.append(bytes(_random_dna(rng, int(rng.integers(500, 3000)))))
        chroms[name] = b"".join(parts).decode()
    return chroms, placed


def _shift(locus: _Locus, by: int) -> None:
    for tx in locus.txs:
        tx.exons = [(a - by, b - by) for a, b in tx.exons]
        if tx.cds:
            tx.cds = (tx.cds[0] - by, tx.cds[1] - by)


def _annotate(placed, chroms: dict[str, str]) -> list[dict]:
    """Genomic features, sequences and measured components of every gene and transcript."""
    genes = []
    n_tx = n_exon = 0
    exon_ids: dict[tuple, str] = {}
    for g, (chrom, off, strand, locus) in enumerate(placed, start=1):
        size = len(locus.seq)
        oriented = locus.seq.decode() if strand == "+" else reverse_complement(locus.seq.decode())

        def genomic(a, b, off=off, size=size, strand=strand):
            return (off + a, off + b) if strand == "+" else (off + size - b, off + size - a)

        gene_name = f"DEMO{g}"
        transcripts = []
        for t, tx in enumerate(sorted(locus.txs, key=lambda x: (x.tss, -x.exons[-1][1])), 1):
            n_tx += 1
            rna = "".join(oriented[a:b] for a, b in tx.exons)
            rec = {
                "transcript_id": f"ENST{n_tx:011d}.1",
                "transcript_name": f"{gene_name}-{200 + t}",
                "transcript_type": tx.ttype,
                "tags": tx.tags,
                "protein_id": f"ENSP{n_tx:011d}.1" if tx.cds else None,
                "exons": [],
                "rna": rna,
            }
            for a, b in tx.exons:
                key = (chrom, *genomic(a, b))
                if key not in exon_ids:
                    n_exon += 1
                    exon_ids[key] = f"ENSE{n_exon:011d}.1"
                rec["exons"].append((*genomic(a, b), exon_ids[key]))
            rec.update(_parts(tx, genomic))
            tss = genomic(tx.tss, tx.tss + 1)[0]
            rec["tss"] = tss
            if strand == "+":
                promoter = chroms[chrom][max(0, tss - PROMOTER_LEN) : tss]
            else:
                promoter = reverse_complement(chroms[chrom][tss + 1 : tss + 1 + PROMOTER_LEN])
            rec["dna_value"] = gc_fraction(promoter)
            if tx.cds:
                cds = "".join(oriented[max(a, tx.cds[0]) : min(b, tx.cds[1])] for a, b in tx.exons)
                protein = translate_cds(cds, phase=(-tx.cds_offset) % 3)
                rec["protein"] = protein
                rec["protein_value"] = sum(protein.count(c) for c in PROTEIN_RESIDUES) / len(
                    protein
                )
                utr3 = "".join(oriented[max(a, tx.cds[1] + 3) : b] for a, b in tx.exons)
                n_are = count_motif(utr3, UTR3_MOTIF) if tx.has_stop else 0
            else:
                rec["protein"] = None
                rec["protein_value"] = NONCODING_PROTEIN_VALUE
                a, b = tx.exons[-1]
                n_are = count_motif(oriented[a:b], UTR3_MOTIF)
            rec["rna_value"] = 100 * n_are / len(rna)
            transcripts.append(rec)
        starts = [e[0] for r in transcripts for e in r["exons"]]
        ends = [e[1] for r in transcripts for e in r["exons"]]
        genes.append(
            {
                "gene_id": f"ENSG{g:011d}.1",
                "gene_name": gene_name,
                "gene_type": locus.gene_type,
                "chrom": chrom,
                "strand": strand,
                "start": min(starts),
                "end": max(ends),
                "transcripts": transcripts,
            }
        )
    return genes


def _parts(tx: _Tx, genomic) -> dict:
    """CDS (with frame), start/stop codon and UTR segments per exon, genomic coordinates."""
    cds, starts, stops, utrs = [], [], [], []
    done = tx.cds_offset
    for i, (a, b) in enumerate(tx.exons, 1):
        if tx.cds is None:
            continue
        lo, hi = max(a, tx.cds[0]), min(b, tx.cds[1])
        if lo < hi:
            cds.append((*genomic(lo, hi), (-done) % 3, i))
            done += hi - lo
        if tx.has_start and a <= tx.cds[0] < b:
            starts.append((*genomic(tx.cds[0], tx.cds[0] + 3), 0, i))
        if tx.has_stop and a <= tx.cds[1] < b:
            stops.append((*genomic(tx.cds[1], tx.cds[1] + 3), 0, i))
        if a < tx.cds[0]:
            utrs.append((*genomic(a, min(b, tx.cds[0])), None, i))
        if b > tx.cds[1]:
            utrs.append((*genomic(max(a, tx.cds[1]), b), None, i))
    return {"cds": cds, "start_codon": starts, "stop_codon": stops, "utr": utrs}


# --- tissues, samples, expression -------------------------------------------------------


def smts_tissues() -> list[str]:
    """The SMTS tissues of the demo, in output order."""
    return list(dict.fromkeys(t[0] for t in TISSUES))


def _tissue_weights(rng) -> dict[str, dict[str, float]]:
    weights = {}
    for smts in smts_tissues():
        n = rng.normal(size=4)
        weights[smts] = {
            "a": BASE_LEVEL + TISSUE_SD * n[0],
            "w_dna": WEIGHT_DNA * math.exp(TISSUE_SD * n[1]),
            "w_rna": WEIGHT_RNA * math.exp(TISSUE_SD * n[2]),
            "w_protein": WEIGHT_PROTEIN * math.exp(TISSUE_SD * n[3]),
        }
    return weights


def _samples(rng, p: DemoParams) -> list[dict]:
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    donors = sorted(
        {"GTEX-" + "".join(rng.choice(alphabet, size=int(rng.integers(4, 6)))) for _ in range(16)}
    )
    rows = []

    def row(donor, smts, smtsd, uberon, freeze):
        aliquot = int(rng.integers(1, 3300))
        code = "".join(rng.choice(alphabet, size=5))
        return {
            "SAMPID": f"{donor}-{aliquot:04d}-SM-{code}",
            "SMATSSCR": str(int(rng.integers(0, 3))),
            "SMCENTER": str(rng.choice(["B1", "C1", "D1"])),
            "SMRIN": f"{rng.uniform(5.5, 9.5):.1f}",
            "SMTS": smts,
            "SMTSD": smtsd,
            "SMUBRID": uberon,
            "SMTSISCH": str(int(rng.integers(60, 1200))),
            "SMNABTCHT": "RNA isolation_PAXgene Tissue miRNA",
            "SMGEBTCHT": "TruSeq.v1",
            "SMAFRZE": freeze,
        }

    for smts, smtsd, uberon in TISSUES:
        n = int(rng.integers(p.samples_per_tissue[0], p.samples_per_tissue[1] + 1))
        for donor in rng.choice(donors, size=n, replace=False):
            rows.append(row(str(donor), smts, smtsd, uberon, "RNASEQ"))
    # Rows the expression matrix lacks, as in the real attributes file.
    for freeze in ("WGS", "WGS", "EXCLUDE"):
        rows.append(row(str(rng.choice(donors)), "Blood", "Whole Blood", "0013756", freeze))
    return sorted(rows, key=lambda r: r["SAMPID"])


def _signal(rng, p: DemoParams, genes, weights) -> dict:
    """Expected log1p(mean TPM) per transcript (rows, GTF order) and SMTS tissue (columns)."""
    txs = [t for g in genes for t in g["transcripts"]]
    d = np.array([t["dna_value"] for t in txs], dtype=float)
    r = np.array([t["rna_value"] for t in txs], dtype=float)
    pv = np.array([t["protein_value"] for t in txs], dtype=float)
    eps = rng.normal(0, p.transcript_sd, size=len(txs))
    expected = np.empty((len(txs), len(weights)))
    for j, w in enumerate(weights.values()):
        x = (
            w["a"]
            + w["w_dna"] * 10 * (d - CENTRE_DNA)
            - w["w_rna"] * (r - CENTRE_RNA)
            + w["w_protein"] * 10 * (pv - CENTRE_PROTEIN)
            + eps
        )
        expected[:, j] = np.logaddexp(0, x)
    return {"epsilon": eps, "expected": expected}


# --- writers ----------------------------------------------------------------------------


def _gzip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(text.encode())
    return buf.getvalue()


def _write_fasta(chroms: dict[str, str], path: Path) -> None:
    out = []
    for name, seq in chroms.items():
        out.append(f">{name}\n")
        out.extend(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(out))


def _write_gtf(genes, path: Path, seed: int) -> None:
    lines = [
        f"##description: isoflow synthetic demo annotation, GENCODE v26 layout (seed {seed})\n",
        "##provider: isoflow\n",
        "##format: gtf\n",
    ]
    order = sorted(genes, key=lambda g: (int(g["chrom"][3:]), g["start"]))
    for g in order:
        source = "HAVANA"
        gene_attrs = (
            f'gene_id "{g["gene_id"]}"; gene_type "{g["gene_type"]}"; '
            f'gene_name "{g["gene_name"]}"; level 2;'
        )
        lead = f"{g['chrom']}\t{source}\t"

        def line(feature, start, end, frame, attrs, g=g, lead=lead):
            f = "." if frame is None else str(frame)
            return f"{lead}{feature}\t{start + 1}\t{end}\t.\t{g['strand']}\t{f}\t{attrs}\n"

        lines.append(line("gene", g["start"], g["end"], None, gene_attrs))
        for t in sorted(g["transcripts"], key=lambda t: min(e[0] for e in t["exons"])):
            base = (
                f'gene_id "{g["gene_id"]}"; transcript_id "{t["transcript_id"]}"; '
                f'gene_type "{g["gene_type"]}"; gene_name "{g["gene_name"]}"; '
                f'transcript_type "{t["transcript_type"]}"; '
                f'transcript_name "{t["transcript_name"]}";'
            )
            tail = " level 2;"
            if t["protein_id"]:
                tail += f' protein_id "{t["protein_id"]}";'
            tail += ' transcript_support_level "1";'
            tail += "".join(f' tag "{tag}";' for tag in t["tags"])
            lo = min(e[0] for e in t["exons"])
            hi = max(e[1] for e in t["exons"])
            lines.append(line("transcript", lo, hi, None, base + tail))
            by_exon: dict[int, list] = {}
            for feature in ("cds", "start_codon", "stop_codon"):
                for start, end, frame, i in t[feature]:
                    name = "CDS" if feature == "cds" else feature
                    by_exon.setdefault(i, []).append((name, start, end, frame))
            for i, (start, end, exon_id) in enumerate(t["exons"], 1):
                attrs = f'{base} exon_number {i}; exon_id "{exon_id}";{tail}'
                lines.append(line("exon", start, end, None, attrs))
                for name, fs, fe, frame in by_exon.get(i, []):
                    lines.append(line(name, fs, fe, frame, attrs))
            for start, end, _, i in t["utr"]:
                exon_id = t["exons"][i - 1][2]
                attrs = f'{base} exon_number {i}; exon_id "{exon_id}";{tail}'
                lines.append(line("UTR", start, end, None, attrs))
    with atomic_path(path) as tmp:
        tmp.write_bytes(_gzip_bytes("".join(lines)))


def _write_samples(samples, path: Path) -> None:
    out = ["\t".join(SAMPLE_ATTRIBUTE_COLUMNS) + "\n"]
    for s in samples:
        out.append("\t".join(s.get(c, "") for c in SAMPLE_ATTRIBUTE_COLUMNS) + "\n")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(out))


def _write_gct(rng, p: DemoParams, genes, signal, samples, path: Path) -> None:
    rna_samples = [s for s in samples if s["SMAFRZE"] == "RNASEQ"]
    tissues = smts_tissues()
    col = np.array([tissues.index(s["SMTS"]) for s in rna_samples])
    expected = signal["expected"][:, col]
    noise = rng.normal(0, p.sample_sd, size=expected.shape)
    tpm = np.expm1(expected) * np.exp(noise - p.sample_sd**2 / 2)
    txs = [(g["gene_id"], t["transcript_id"]) for g in genes for t in g["transcripts"]]
    order = sorted(range(len(txs)), key=lambda i: txs[i][1])
    values = np.char.mod("%.3f", tpm)
    out = [
        "#1.2\n",
        f"{len(txs) + 2}\t{len(rna_samples)}\n",
        "transcript_id\tgene_id\t" + "\t".join(s["SAMPID"] for s in rna_samples) + "\n",
    ]
    for i in order:
        out.append(f"{txs[i][1]}\t{txs[i][0]}\t" + "\t".join(values[i]) + "\n")
    zeros = "\t".join(["0.000"] * len(rna_samples))
    for gene_id, transcript_id in txs[:2]:  # GTEx v8 holds all-zero _PAR_Y copies
        out.append(f"{transcript_id}_PAR_Y\t{gene_id}_PAR_Y\t{zeros}\n")
    with atomic_path(path) as tmp:
        tmp.write_bytes(_gzip_bytes("".join(out)))


def _write_signal(genes, signal, weights, path: Path, seed: int) -> None:
    tissues = list(weights)
    out = [
        f"# isoflow demo planted signal (seed {seed}); formula in isoflow/demo.py, docs/demo.md\n",
        "# x = a + w_dna*10*(dna_value - 0.5) - w_rna*(rna_value - 1.8) "
        "+ w_protein*10*(protein_value - 0.15) + epsilon; expected = log(1 + exp(x))\n",
        "# tissue\ta\tw_dna\tw_rna\tw_protein\n",
    ]
    for tissue, w in weights.items():
        out.append(f"# {tissue}\t" + "\t".join(f"{w[k]:.4f}" for k in w) + "\n")
    out.append(
        "\t".join(
            [
                "transcript_id",
                "gene_id",
                "transcript_type",
                "dna_value",
                "rna_value",
                "protein_value",
                "epsilon",
                *tissues,
            ]
        )
        + "\n"
    )
    i = 0
    for g in genes:
        for t in g["transcripts"]:
            fields = [
                t["transcript_id"],
                g["gene_id"],
                t["transcript_type"],
                f"{t['dna_value']:.6f}",
                f"{t['rna_value']:.6f}",
                f"{t['protein_value']:.6f}",
                f"{signal['epsilon'][i]:.6f}",
                *(f"{v:.6f}" for v in signal["expected"][i]),
            ]
            out.append("\t".join(fields) + "\n")
            i += 1
    with atomic_path(path) as tmp:
        tmp.write_text("".join(out))


# --- demo cassettes ---------------------------------------------------------------------

# A 2 x 2 x 2 design over the planted signal's three components: promoter GC (DNA), an ARE
# block in the 3'UTR (RNA), the K+R fraction of the protein. Factor levels sit at the ends of
# the training ranges (PROMOTER_GC, UTR3_ARE_COVER, the genes' K+R fractions 0-0.3).
CASSETTE_PROMOTER_GC = {"strongP": PROMOTER_GC[1], "weakP": PROMOTER_GC[0]}
CASSETTE_ARE_COVER = {"noARE": 0.0, "ARE": UTR3_ARE_COVER[1]}
CASSETTE_KR = {"highKR": 0.3, "lowKR": 0.0}
CASSETTE_UTR5_LEN = 120
CASSETTE_CDS_AA = 200
CASSETTE_UTR3_LEN = 600
CASSETTE_COLUMNS = ("dna_value", "rna_value", "protein_value", "expected_base")


def write_demo_constructs(
    path: str | os.PathLike,
    seed: int = 0,
    background: str | os.PathLike | None = None,
    background_len: int = 2048,
) -> Path:
    """Write 8 demo cassettes (a construct TSV, docs/constructs.md) that differ only in the
    planted signal's components; return ``path``.

    Every cassette shares one 5'UTR (120 nt, GC 41 %); the factors are the 1,000-nt promoter
    (GC 0.70 ``strongP`` or 0.30 ``weakP``, drawn as the demo's promoters are), the 600-nt
    3'UTR (one sequence, with or without a block of tandem ``ATTTA`` covering 40 % of it:
    ``ARE`` / ``noARE``) and a 200-codon CDS (ATG, then K/R at a fraction 0.3 ``highKR`` or 0
    ``lowKR``, a stop). Extra columns measure each component exactly as ``planted_signal.tsv``
    does (``dna_value``, ``rna_value``, ``protein_value``) and give ``expected_base``: the
    planted target with the base weights, no tissue or transcript effect (softplus of
    ``a + wd 10 (d - 0.5) - wr (r - 1.8) + wp 10 (p - 0.15)``), so a model's ranking of the
    cassettes can be read against it. ``background``: also write a FASTA of
    ``background_len`` random bases at the demo genome's GC (41 %), a DNA background
    (:func:`isoflow.constructs.construct_inputs`) as close to the training windows as the demo
    gets. Deterministic from ``seed``; independent of :func:`make_demo`'s outputs.
    """
    rng = np.random.default_rng([seed, 11])  # its own stream: make_demo's draws are untouched
    promoters = {
        k: _random_dna(rng, PROMOTER_LEN, gc).decode() for k, gc in CASSETTE_PROMOTER_GC.items()
    }
    utr5 = _random_dna(rng, CASSETTE_UTR5_LEN).decode()
    cds = {k: _cassette_cds(rng, kr) for k, kr in CASSETTE_KR.items()}
    plain = _random_dna(rng, CASSETTE_UTR3_LEN)
    utr3 = {}
    for key, cover in CASSETTE_ARE_COVER.items():
        seq = bytearray(plain)
        n = int(cover * CASSETTE_UTR3_LEN) // len(UTR3_MOTIF)
        at = (CASSETTE_UTR3_LEN - n * len(UTR3_MOTIF)) // 2
        seq[at : at + n * len(UTR3_MOTIF)] = UTR3_MOTIF.encode() * n
        utr3[key] = seq.decode()
    lines = ["\t".join(["id", "promoter", "utr5", "cds", "utr3", *CASSETTE_COLUMNS])]
    for p_key, promoter in promoters.items():
        for a_key, tail in utr3.items():
            for k_key, coding in cds.items():
                rna = utr5 + coding + tail
                d = gc_fraction(promoter)
                r = 100 * count_motif(tail, UTR3_MOTIF) / len(rna)
                protein = translate_cds(coding)
                p = sum(protein.count(c) for c in PROTEIN_RESIDUES) / len(protein)
                x = (
                    BASE_LEVEL
                    + WEIGHT_DNA * 10 * (d - CENTRE_DNA)
                    - WEIGHT_RNA * (r - CENTRE_RNA)
                    + WEIGHT_PROTEIN * 10 * (p - CENTRE_PROTEIN)
                )
                values = [d, r, p, float(np.logaddexp(0, x))]
                lines.append(
                    "\t".join(
                        [f"{p_key}_{a_key}_{k_key}", promoter, utr5, coding, tail]
                        + [f"{v:.6f}" for v in values]
                    )
                )
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    if background is not None:
        seq = _random_dna(rng, background_len).decode()
        body = "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60))
        with atomic_path(background) as tmp:
            tmp.write_text(f">demo_background gc={GC} seed={seed}\n{body}")
    return Path(path)


def _cassette_cds(rng: np.random.Generator, kr: float) -> str:
    """ATG, ``CASSETTE_CDS_AA - 1`` codons with K/R at exactly ``round(kr * n)`` places (the
    others from ``OTHER_RESIDUES``; no stop), then a stop codon."""
    n = CASSETTE_CDS_AA - 1
    is_kr = np.zeros(n, dtype=bool)
    is_kr[rng.choice(n, size=round(kr * n), replace=False)] = True
    codons = ["ATG"]
    for here in is_kr:
        residues = PROTEIN_RESIDUES if here else OTHER_RESIDUES
        aa = residues[int(rng.integers(len(residues)))]
        codons.append(SYNONYMS[aa][int(rng.integers(len(SYNONYMS[aa])))])
    codons.append(STOP_CODONS[int(rng.integers(len(STOP_CODONS)))])
    return "".join(codons)


# --- demo measurement table (isoflow finetune) --------------------------------------------

# Families x members of the demo measurement table; each family shares its 5'UTR and CDS.
MEASURED_FAMILIES = 8
MEASURED_PER_FAMILY = 6
MEASURED_PROMOTER_LEN = 400
MEASURED_UTR3_LEN = 240
MEASURED_CDS_AA = 60
MEASURED_COLUMNS = ("cell_A", "cell_B")
MEASURED_NOISE = 0.1


def write_demo_measurements(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the demo's construct measurement table (docs/constructs.md "Measurement
    table"): ``MEASURED_FAMILIES`` families (column ``group``) of ``MEASURED_PER_FAMILY``
    cassettes, each with its own promoter GC (uniform 0.3-0.7) and ARE cover of its 3'UTR
    (uniform 0-0.4); a family shares its 5'UTR and CDS. The planted lab signal differs from
    the GTEx-like one the demo models learn: ``cell_A = 3 (gc - 0.5) + 2 cover`` (an ARE
    *raises* it) and ``cell_B = -3 (gc - 0.5) + 2 cover``, each plus N(0, ``MEASURED_NOISE``),
    so a zero-shot score (high GC, no ARE = high) misranks them and fine-tuning has
    something to learn. Deterministic from ``seed``; own random stream."""
    rng = np.random.default_rng([seed, 12])
    lines = ["\t".join(["id", "group", "promoter", "utr5", "cds", "utr3", *MEASURED_COLUMNS])]
    for family in range(MEASURED_FAMILIES):
        utr5 = _random_dna(rng, CASSETTE_UTR5_LEN // 2).decode()
        kr = float(rng.uniform(0, 0.3))
        coding = _cassette_cds(rng, kr)[: 3 * (MEASURED_CDS_AA - 1)] + "TAA"  # no inner stop
        for member in range(MEASURED_PER_FAMILY):
            gc = float(rng.uniform(0.3, 0.7))
            cover = float(rng.uniform(0.0, 0.4))
            promoter = _random_dna(rng, MEASURED_PROMOTER_LEN, gc).decode()
            tail = bytearray(_random_dna(rng, MEASURED_UTR3_LEN))
            n = int(cover * MEASURED_UTR3_LEN) // len(UTR3_MOTIF)
            at = (MEASURED_UTR3_LEN - n * len(UTR3_MOTIF)) // 2
            tail[at : at + n * len(UTR3_MOTIF)] = UTR3_MOTIF.encode() * n
            d = gc_fraction(promoter) - 0.5
            covered = n * len(UTR3_MOTIF) / MEASURED_UTR3_LEN
            noise = rng.normal(0.0, MEASURED_NOISE, size=2)
            values = [3 * d + 2 * covered + noise[0], -3 * d + 2 * covered + noise[1]]
            lines.append(
                "\t".join(
                    [f"fam{family}_{member}", f"fam{family}", promoter, utr5, coding, tail.decode()]
                    + [f"{v:.6f}" for v in values]
                )
            )
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)
