"""Benchmark isoflow.annotation.read_annotation against gffutils.create_db on the same GTF.

Each measurement runs in its own child process under ``/usr/bin/time`` (wall seconds and
peak RSS of that child alone). gffutils builds an in-memory database with gene and
transcript inference disabled: the cheapest way to get a queryable annotation out of it,
before any transcript model is assembled, so the ratio flatters gffutils.

    .venv/bin/python bench/make_gencode_scale.py /tmp/ann_bench/full.gtf
    .venv/bin/python bench/make_gencode_scale.py /tmp/ann_bench/tenth.gtf --genes 6000
    .venv/bin/python bench/bench_annotation.py /tmp/ann_bench/full.gtf --repeats 3 \
        --gffutils-on /tmp/ann_bench/tenth.gtf
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

READ = """
import sys
from isoflow.annotation import read_annotation
df = read_annotation(sys.argv[1])
print("transcripts", len(df))
"""

GFFUTILS = """
import sys
import gffutils
db = gffutils.create_db(sys.argv[1], dbfn=":memory:", disable_infer_genes=True,
                        disable_infer_transcripts=True)
print("transcripts", db.count_features_of_type("transcript"))
"""


def measure(code: str, path: Path) -> tuple[float, float, float, str]:
    """(wall s, peak RSS GB, CPU s = user + system, child's stdout) of one child process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
        done = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "%e %M %U %S",
                "-o",
                timing.name,
                sys.executable,
                "-c",
                code,
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall, rss_kb, user, system = timing.read().split()[-4:]
    return float(wall), int(rss_kb) / 1e6, float(user) + float(system), done.stdout.strip()


def file_facts(path: Path) -> str:
    lines = transcripts = exons = 0
    with open(path) as handle:
        for line in handle:
            lines += 1
            kind = line.split("\t", 3)[2] if not line.startswith("#") else ""
            transcripts += kind == "transcript"
            exons += kind == "exon"
    size = path.stat().st_size / 1e9
    return f"{lines:,} lines, {transcripts:,} transcripts, {exons:,} exons, {size:.2f} GB"


def bench(name: str, code: str, path: Path, repeats: int) -> tuple[float, float, float]:
    runs = [measure(code, path) for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    rss = max(r[1] for r in runs)
    cpu = statistics.median(r[2] for r in runs)
    print(
        f"| {name} | {path.name} | {repeats} | {wall:.1f} s | {cpu:.1f} s | {rss:.2f} GB | "
        f"{', '.join(f'{r[0]:.1f}' for r in runs)} | {runs[0][3]} |",
        flush=True,
    )
    return wall, rss, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gtf", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--gffutils-on", type=Path, help="run gffutils on this (smaller) file instead of gtf"
    )
    args = parser.parse_args()
    small = args.gffutils_on or args.gtf
    print(f"{args.gtf.name}: {file_facts(args.gtf)}")
    if small != args.gtf:
        print(f"{small.name}: {file_facts(small)}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| what | file | runs | median wall | median CPU | peak RSS | walls | result |")
    print("|---|---|---|---|---|---|---|---|")
    ours_full = bench("isoflow read_annotation", READ, args.gtf, args.repeats)
    ours_small = (
        ours_full
        if small == args.gtf
        else bench("isoflow read_annotation", READ, small, args.repeats)
    )
    ref = bench("gffutils create_db (:memory:, no inference)", GFFUTILS, small, 1)
    print(f"gffutils / isoflow wall on {small.name}: {ref[0] / ours_small[0]:.1f}x")
    print(f"gffutils / isoflow CPU on {small.name}: {ref[2] / ours_small[2]:.1f}x")
    print(f"gffutils / isoflow peak RSS on {small.name}: {ref[1] / ours_small[1]:.1f}x")
    print(f"isoflow on {args.gtf.name}: {ours_full[0]:.1f} s, {ours_full[1]:.2f} GB")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
