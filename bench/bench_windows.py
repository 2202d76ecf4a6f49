"""DNA windows: GenomeWindows.tokens vs `samtools faidx -r` on the same regions, same run.

Builds a synthetic genome (random soft-masked bases with N runs; not committed) in a scratch
folder, draws windows of 196,608 bp (half on the minus strand) and times, on one core:

* isoflow: ``GenomeWindows(fasta).tokens(chrom, start, end, strand)`` for every window
  (pysam fetch + uint8 lookup, minus strand reverse-complemented in token space);
* numpy variant: pysam fetch + ``lookup[np.frombuffer(...)]`` fancy indexing, the
  alternative ``encode`` does not use (2.5x slower on the Intel box of docs/benchmarks.md,
  about even on an AVX-512 AMD EPYC: the gap depends on the CPU);
* reference: ``samtools faidx FASTA -r plus.txt`` plus ``samtools faidx -i FASTA -r minus.txt``
  (text FASTA to /dev/null; no encoding at all, so it is a lower bound on the work).

Usage: python bench/bench_windows.py [--genome-mb 300] [--windows 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam

from isoflow.genome import _COMPLEMENT, _FORWARD, GenomeWindows

WINDOW = 196_608


def make_genome(path: Path, megabases: int, contigs: int, seed: int) -> dict[str, int]:
    """Random ACGT/acgt with a few N runs, 60 columns, then a .fai."""
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTacgt", dtype=np.uint8)
    lengths = {}
    with open(path, "wb") as fasta:
        for i in range(contigs):
            name = f"chr{i + 1}"
            length = megabases * 1_000_000 // contigs + int(rng.integers(0, 60))
            seq = alphabet[rng.integers(0, 8, size=length, dtype=np.uint8)]
            for start in rng.integers(0, length - 50_000, size=20):
                seq[start : start + int(rng.integers(100, 50_000))] = ord("N")
            fasta.write(f">{name}\n".encode())
            full = length // 60 * 60
            lines = np.concatenate(
                [seq[:full].reshape(-1, 60), np.full((full // 60, 1), ord("\n"), np.uint8)],
                axis=1,
            )
            fasta.write(lines.tobytes())
            if length > full:
                fasta.write(seq[full:].tobytes() + b"\n")
            lengths[name] = length
    pysam.faidx(str(path))
    return lengths


def draw_windows(lengths: dict[str, int], n: int, seed: int) -> list[tuple[str, int, int, str]]:
    rng = np.random.default_rng(seed)
    names = list(lengths)
    windows = []
    for i in range(n):
        chrom = names[int(rng.integers(0, len(names)))]
        start = int(rng.integers(0, lengths[chrom] - WINDOW))
        windows.append((chrom, start, start + WINDOW, "-" if i % 2 else "+"))
    return windows


def time_isoflow(fasta: Path, windows: list) -> float:
    genome = GenomeWindows(fasta)
    begin = time.perf_counter()
    total = 0
    for chrom, start, end, strand in windows:
        total += genome.tokens(chrom, start, end, strand).size
    elapsed = time.perf_counter() - begin
    assert total == len(windows) * WINDOW
    return elapsed


def time_numpy_lookup(fasta: Path, windows: list) -> float:
    handle = pysam.FastaFile(str(fasta))
    begin = time.perf_counter()
    total = 0
    for chrom, start, end, strand in windows:
        raw = np.frombuffer(handle.fetch(chrom, start, end).encode("ascii"), dtype=np.uint8)
        tokens = _COMPLEMENT[raw[::-1]] if strand == "-" else _FORWARD[raw]
        total += tokens.size
    elapsed = time.perf_counter() - begin
    assert total == len(windows) * WINDOW
    return elapsed


def time_samtools(fasta: Path, windows: list, scratch: Path) -> float:
    plus = scratch / "plus.txt"
    minus = scratch / "minus.txt"
    for path, strand in ((plus, "+"), (minus, "-")):
        path.write_text("".join(f"{c}:{s + 1}-{e}\n" for c, s, e, st in windows if st == strand))
    begin = time.perf_counter()
    subprocess.run(
        ["samtools", "faidx", str(fasta), "-r", str(plus), "-o", "/dev/null"], check=True
    )
    subprocess.run(
        ["samtools", "faidx", "-i", str(fasta), "-r", str(minus), "-o", "/dev/null"], check=True
    )
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome-mb", type=int, default=300)
    parser.add_argument("--contigs", type=int, default=6)
    parser.add_argument("--windows", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None)
    args = parser.parse_args()

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, for both tools
    if args.scratch is not None:  # `make bench` names a folder under $(BENCH_TMP) not yet made
        args.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.scratch, prefix="bench_windows.") as tmp:
        scratch = Path(tmp)
        fasta = scratch / "genome.fa"
        begin = time.perf_counter()
        lengths = make_genome(fasta, args.genome_mb, args.contigs, seed=0)
        print(
            f"genome: {sum(lengths.values()) / 1e6:.1f} Mb in {len(lengths)} contigs, "
            f"built in {time.perf_counter() - begin:.1f} s",
            file=sys.stderr,
        )
        windows = draw_windows(lengths, args.windows, seed=1)
        time_isoflow(fasta, windows[:200])  # warm the page cache for both
        time_samtools(fasta, windows[:200], scratch)
        ours, lookup, theirs = [], [], []
        for _ in range(args.repeats):
            ours.append(time_isoflow(fasta, windows))
            lookup.append(time_numpy_lookup(fasta, windows))
            theirs.append(time_samtools(fasta, windows, scratch))
    ours_s, lookup_s, theirs_s = (statistics.median(x) for x in (ours, lookup, theirs))
    n = len(windows)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 used")
    print(f"windows: {n} x {WINDOW} bp, half minus strand; median of {args.repeats} runs")
    print(f"isoflow GenomeWindows.tokens: {ours_s:.2f} s = {n / ours_s:,.0f} windows/s")
    print(f"pysam + numpy fancy lookup:   {lookup_s:.2f} s = {n / lookup_s:,.0f} windows/s")
    print(f"samtools faidx -r (+ -i):     {theirs_s:.2f} s = {n / theirs_s:,.0f} windows/s")
    print(f"ratio (isoflow windows/s over samtools): {theirs_s / ours_s:.2f}")
    print(f"all runs, s: isoflow {[round(x, 2) for x in ours]}")
    print(f"all runs, s: numpy lookup {[round(x, 2) for x in lookup]}")
    print(f"all runs, s: samtools {[round(x, 2) for x in theirs]}")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
