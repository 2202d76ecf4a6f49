"""Write a synthetic GTF in GENCODE v26 layout and size, for benchmarking annotation readers.

Default: 60,000 genes, ~200k transcripts, ~1.2 M exons, ~2.6 M lines (~1.1 GB), 42 % coding
transcripts with CDS/start_codon/stop_codon/UTR lines, attributes as GENCODE writes them.
Not committed: write it under /tmp.

    .venv/bin/python bench/make_gencode_scale.py /tmp/ann_bench/gencode_scale.gtf

``--genome PATH`` also writes a random-base FASTA (60 columns, upper case, a 1 % run of
``N`` per Mb) whose chromosomes end 10 kb past their last transcript, for the sequences
step; ``--spacing`` (bp between gene starts, default 120,000: 7.2 Gb of chromosomes) packs
the loci closer, so genes overlap and the genome stays small (12,000: 0.72 Gb) while the
transcripts, exons and their lengths stay as they are.

``--grch38`` (the full-scale rehearsal, bench/rehearsal.py) places the genes on GRCh38's
primary-assembly chromosomes instead, in proportion to their lengths (``GRCH38`` below; chrM
gets none), and ``--genome`` then writes contigs of exactly those lengths (times
``--length-scale``, for a quick small-scale run); ``--ids`` writes each transcript's
``transcript_id`` and ``gene_id`` (tab-separated, GTF order) for the GTEx-layout matrix.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CHROMS = [f"chr{c}" for c in [*range(1, 23), "X", "Y"]]

# GRCh38 primary-assembly chromosome lengths (GCA_000001405.15; UCSC hg38 chromInfo.txt and the
# GENCODE GRCh38.primary_assembly.genome.fa.fai list the same). The real-data excerpts beside
# the checkout hold no GRCh38 .fai (only chr9:1-1,000,000 and chrM, whose 16,569 bp match).
GRCH38 = {
    "chr1": 248_956_422,
    "chr2": 242_193_529,
    "chr3": 198_295_559,
    "chr4": 190_214_555,
    "chr5": 181_538_259,
    "chr6": 170_805_979,
    "chr7": 159_345_973,
    "chr8": 145_138_636,
    "chr9": 138_394_717,
    "chr10": 133_797_422,
    "chr11": 135_086_622,
    "chr12": 133_275_309,
    "chr13": 114_364_328,
    "chr14": 107_043_718,
    "chr15": 101_991_189,
    "chr16": 90_338_345,
    "chr17": 83_257_441,
    "chr18": 80_373_285,
    "chr19": 58_617_616,
    "chr20": 64_444_167,
    "chr21": 46_709_983,
    "chr22": 50_818_468,
    "chrX": 156_040_895,
    "chrY": 57_227_415,
    "chrM": 16_569,
}
END_MARGIN = 200_000  # bp kept free at a chromosome's end: no transcript spans that far


def grch38_layout(genes: int, scale: float = 1.0) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """(contig lengths, (chrom, start) per gene): genes spread over the GRCh38 chromosomes
    (chrM excepted) in proportion to their lengths, evenly spaced on each."""
    lengths = {c: max(1, round(n * scale)) for c, n in GRCH38.items()}
    nuclear = {c: n for c, n in lengths.items() if c != "chrM"}
    total = sum(nuclear.values())
    bounds = np.round(np.cumsum([0, *nuclear.values()]) / total * genes).astype(int)
    starts = []
    for chrom, lo, hi in zip(nuclear, bounds[:-1], bounds[1:], strict=True):
        spacing = (nuclear[chrom] - 10_000 - END_MARGIN) // max(1, hi - lo)
        if spacing < 1:
            raise SystemExit(f"{chrom}: too short for {hi - lo} genes at this --length-scale")
        starts += [(chrom, 10_000 + i * spacing) for i in range(hi - lo)]
    return lengths, starts


def attrs(gene: int, tx: int | None, gtype: str, ttype: str | None, exon: int | None) -> str:
    gid = f"ENSG{gene:011d}.{gene % 9 + 1}"
    text = f'gene_id "{gid}"; '
    if tx is not None:
        text += f'transcript_id "ENST{tx:011d}.{tx % 7 + 1}"; '
    text += f'gene_type "{gtype}"; gene_name "GENE{gene}"; '
    if tx is not None:
        text += f'transcript_type "{ttype}"; transcript_name "GENE{gene}-{tx % 1000 + 201}"; '
    if exon is not None:
        text += f'exon_number {exon}; exon_id "ENSE{tx * 40 + exon:011d}.1"; '
    text += "level 2; "
    if tx is not None:
        text += f'transcript_support_level "{tx % 5 + 1}"; tag "basic"; '
        if tx % 3 == 0:
            text += 'tag "CCDS"; ccdsid "CCDS{tx}.1"; '
    text += f'havana_gene "OTTHUMG{gene:011d}.2";'
    return text


def line(chrom, feature, start, end, strand, phase, attributes) -> str:
    return f"{chrom}\tHAVANA\t{feature}\t{start}\t{end}\t.\t{strand}\t{phase}\t{attributes}\n"


def transcript_lines(rng, chrom, strand, gene, tx, gtype, start) -> tuple[list[str], int]:
    coding = gtype == "protein_coding" and rng.random() < 0.62
    ttype = "protein_coding" if coding else "processed_transcript"
    n_exons = max(1, int(rng.poisson(8.3 if coding else 3.4)) + (2 if coding else 1))
    lengths = rng.integers(60, 320, n_exons)
    introns = rng.integers(200, 6000, n_exons)
    exons, pos = [], start
    for length, intron in zip(lengths, introns, strict=True):
        exons.append((pos, pos + int(length) - 1))
        pos += int(length) + int(intron)
    tx_start, tx_end = exons[0][0], exons[-1][1]
    out = [
        line(
            chrom, "transcript", tx_start, tx_end, strand, ".", attrs(gene, tx, gtype, ttype, None)
        )
    ]
    order = exons if strand == "+" else exons[::-1]  # transcript order, as GENCODE lists them
    if not coding:
        for number, (s, e) in enumerate(order, start=1):
            out.append(
                line(chrom, "exon", s, e, strand, ".", attrs(gene, tx, gtype, ttype, number))
            )
        return out, tx_end
    # CDS from 30 nt into the first exon to 40 nt before the end of the last, whole codons.
    spliced = int(lengths.sum())
    cds_len = (spliced - 70) // 3 * 3
    utr5 = 30
    done, phase = 0, 0
    cds_lines, utr_lines = [], []
    for number, (s, e) in enumerate(order, start=1):
        a = attrs(gene, tx, gtype, ttype, number)
        out.append(line(chrom, "exon", s, e, strand, ".", a))
        length = e - s + 1
        lo, hi = max(done, utr5), min(done + length, utr5 + cds_len - 3)
        if lo < hi:  # part of this exon is CDS (stop codon excluded, as GENCODE GTF)
            off_lo, off_hi = lo - done, hi - done
            if strand == "+":
                cs, ce = s + off_lo, s + off_hi - 1
            else:
                cs, ce = e - off_hi + 1, e - off_lo
            out.append(line(chrom, "CDS", cs, ce, strand, str(phase), a))
            if lo == utr5:
                codon = (cs, cs + 2) if strand == "+" else (ce - 2, ce)
                out.append(line(chrom, "start_codon", *codon, strand, "0", a))
            phase = (3 - ((hi - lo) - phase) % 3) % 3
            cds_lines.append((cs, ce))
        if done < utr5 or done + length > utr5 + cds_len:
            utr_lines.append(line(chrom, "UTR", s, e, strand, ".", a))
        done += length
    last = order[-1]
    stop = utr5 + cds_len - 3 - (done - (last[1] - last[0] + 1))
    if strand == "+":
        codon = (last[0] + stop, last[0] + stop + 2)
    else:
        codon = (last[1] - stop - 2, last[1] - stop)
    out.append(
        line(chrom, "stop_codon", *codon, strand, "0", attrs(gene, tx, gtype, ttype, len(order)))
    )
    return out + utr_lines, tx_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--genes", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spacing", type=int, default=120_000, help="bp between gene starts")
    parser.add_argument("--genome", type=Path, help="also write a random genome FASTA here")
    parser.add_argument("--grch38", action="store_true", help="GRCh38 contig names and lengths")
    parser.add_argument("--length-scale", type=float, default=1.0, help="with --grch38")
    parser.add_argument("--ids", type=Path, help="write transcript_id<TAB>gene_id lines here")
    args = parser.parse_args()
    layout = grch38_layout(args.genes, args.length_scale) if args.grch38 else None
    ids = open(args.ids, "w") if args.ids else None
    rng = np.random.default_rng(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    counts = {"genes": 0, "transcripts": 0, "lines": 5}
    clock = time.perf_counter()
    tx = 0
    chrom_end = dict.fromkeys(CHROMS, 0)
    with open(args.out, "w") as handle:
        handle.write(
            "##description: synthetic, GENCODE v26 layout (isoflow bench)\n##provider: isoflow\n"
            "##contact: -\n##format: gtf\n##date: 2026-11-22\n"
        )
        per_chrom = args.genes // len(CHROMS) + 1
        for gene in range(args.genes):
            if layout:
                chrom, start = layout[1][gene]
            else:
                chrom = CHROMS[gene // per_chrom]
                start = 10_000 + (gene % per_chrom) * args.spacing
            strand = "+" if rng.random() < 0.5 else "-"
            gtype = "protein_coding" if rng.random() < 0.35 else "lncRNA"
            n_tx = 1 + int(rng.poisson(4.2 if gtype == "protein_coding" else 1.3))
            body, gene_end = [], start
            for _ in range(n_tx):
                tx += 1
                lines, end = transcript_lines(
                    rng, chrom, strand, gene + 1, tx, gtype, start + int(rng.integers(0, 2000))
                )
                body += lines
                gene_end = max(gene_end, end)
                if ids:
                    ids.write(
                        f"ENST{tx:011d}.{tx % 7 + 1}\tENSG{gene + 1:011d}.{(gene + 1) % 9 + 1}\n"
                    )
            gene_start = min(int(b.split("\t")[3]) for b in body if "\ttranscript\t" in b)
            handle.write(
                line(
                    chrom,
                    "gene",
                    gene_start,
                    gene_end,
                    strand,
                    ".",
                    attrs(gene + 1, None, gtype, None, None),
                )
            )
            handle.writelines(body)
            chrom_end[chrom] = max(chrom_end[chrom], gene_end)
            if layout and gene_end > layout[0][chrom] - 10_000:
                raise SystemExit(f"{chrom}: gene {gene + 1} ends at {gene_end}, past the contig")
            counts["genes"] += 1
            counts["transcripts"] += n_tx
            counts["lines"] += 1 + len(body)
    if ids:
        ids.close()
    counts["gtf_s"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    if args.genome and layout:
        write_genome(args.genome, layout[0], rng)
        counts["genome_bp"] = sum(layout[0].values())
    elif args.genome:
        write_genome(args.genome, {c: end + 10_000 for c, end in chrom_end.items() if end}, rng)
        counts["genome_bp"] = sum(end + 10_000 for end in chrom_end.values() if end)
    if args.genome:
        counts["genome_s"] = round(time.perf_counter() - clock, 1)
    print(counts)


def write_genome(path: Path, lengths: dict[str, int], rng: np.random.Generator) -> None:
    """Random ACGT, 60 bases a line, with a 10 kb run of N at each Mb (gaps, as assemblies)."""
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for chrom, length in lengths.items():
            handle.write(f">{chrom}\n".encode())
            for lo in range(0, length, 6_000_000):  # 100,000 lines at a time
                bases = letters[rng.integers(0, 4, min(6_000_000, length - lo), dtype=np.uint8)]
                for gap in range(-(-lo // 1_000_000) * 1_000_000, lo + len(bases), 1_000_000):
                    bases[gap - lo : gap - lo + 10_000] = ord("N")
                rows = len(bases) // 60
                body = np.full((rows, 61), ord("\n"), dtype=np.uint8)
                body[:, :60] = bases[: rows * 60].reshape(rows, 60)
                handle.write(body.tobytes())
                if len(bases) % 60:
                    handle.write(bases[rows * 60 :].tobytes() + b"\n")


if __name__ == "__main__":
    main()
