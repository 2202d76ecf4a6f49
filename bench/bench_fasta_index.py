"""The bgzip FASTA index check: isoflow.genome.index_fasta vs samtools faidx alone, same run.

Writes a synthetic genome (random bases, 60 per line; not committed) to a scratch folder,
bgzips it (pysam.tabix_compress), then times, each ``--repeats`` times:

* reference: ``pysam.faidx`` (samtools faidx: builds the .fai and .gzi, reads the whole file);
* isoflow: ``index_fasta`` = the same faidx plus ``check_fasta_index`` (one seek through the
  .gzi and a 4 KiB read per contig);
* the check alone, on the index just built;
* the alternative the review proposed: counting ``>`` lines in the whole gzip-decoded stream.

Usage: python bench/bench_fasta_index.py [--genome-mb 400] [--contigs 25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam
from xopen import xopen

from isoflow.genome import check_fasta_index, index_fasta


def write_genome(path: Path, megabases: int, contigs: int) -> None:
    rng = np.random.default_rng(0)
    per = megabases * 1_000_000 // contigs
    with open(path, "wb") as out:
        for i in range(contigs):
            out.write(f">chr{i + 1}\n".encode())
            bases = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, per)]
            lines = np.full((-(-per // 60), 61), ord("\n"), dtype=np.uint8)
            flat = lines[:, :60].reshape(-1)
            flat[:per] = bases
            lines[:, :60] = flat.reshape(-1, 60)
            text = lines.tobytes()
            rest = per % 60
            if rest:  # the last line is short: drop its padding
                text = text[:-61] + text[-61 : -61 + rest] + b"\n"
            out.write(text)


def count_headers(path: Path) -> int:
    with xopen(path, "rb", threads=0) as handle:
        return sum(line.startswith(b">") for line in handle)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--genome-mb", type=int, default=400)
    parser.add_argument("--contigs", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "genome.fa"
        write_genome(plain, args.genome_mb, args.contigs)
        fasta = Path(scratch) / "genome.fa.gz"
        pysam.tabix_compress(str(plain), str(fasta))
        plain.unlink()
        fai = Path(f"{fasta}.fai")
        size = fasta.stat().st_size / 1e6
        print(f"{size:.0f} MB bgzip, {args.genome_mb} Mb, {args.contigs} contigs")
        results: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name, function in (
                ("samtools faidx", lambda: pysam.faidx(str(fasta))),
                ("index_fasta", lambda: index_fasta(fasta, fai)),
                ("check_fasta_index", lambda: check_fasta_index(fasta)),
                ("count '>' lines", lambda: count_headers(fasta)),
            ):
                results.setdefault(name, []).append(timed(function))
        for name, times in results.items():
            runs = ", ".join(f"{t:.3f}" for t in times)
            print(f"{name:18s} median {statistics.median(times):.3f} s ({runs})")


if __name__ == "__main__":
    main()
