"""Cost of the provenance check (isoflow.provenance): hashing at real sizes, and parse time.

1. Hashing: a file of each real input size is written under --scratch (GENCODE GTF .gz
   40 MB, GENCODE GTF plain 1.1 GB, GTEx transcript GCT .gz 1.5 GB, GRCh38 FASTA 3.1 GB) and
   hashed with each hashlib algorithm through ``hashlib.file_digest`` (what the check uses),
   after one untimed read so every algorithm sees a warm page cache; the reference is
   ``sha256sum`` (coreutils) on the same file.
2. Cold page cache (``--cold``, root only): a 1 GB file hashed by ``hashlib.file_digest``
   after ``sync; echo 3 > /proc/sys/vm/drop_caches`` (what a job reading a genome that
   another job or node read earlier pays), against the same file warm, in the same run; and
   ``cached_digest`` once that version is in ``.isoflow/digests/`` (what every later job pays).
3. Parse time: N provenance records of K inputs each (small files) are written, then
   ``check_records`` runs with every stat unchanged (the cost of every ``snakemake`` start),
   against the reference of ``os.stat`` alone on the same files.

Prints Markdown tables.

    .venv/bin/python bench/bench_provenance.py --scratch /tmp/bench_provenance --repeats 3
    sudo .venv/bin/python bench/bench_provenance.py --scratch /tmp/bench_provenance \
        --skip-hashing --skip-parse --cold
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import time
from pathlib import Path

from benchcommon import scratch_in

from isoflow import provenance

SIZES = {
    "GENCODE GTF .gz (40 MB)": 40 << 20,
    "GENCODE GTF plain (1.1 GB)": 1100 << 20,
    "GTEx GCT .gz (1.5 GB)": 1500 << 20,
    "GRCh38 FASTA (3.1 GB)": 3100 << 20,
}
ALGORITHMS = ("sha256", "sha1", "blake2b", "md5")


def write_file(path: Path, size: int) -> None:
    block = os.urandom(16 << 20)
    with open(path, "wb") as out:
        left = size
        while left > 0:
            out.write(block[:left])
            left -= len(block)


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def hashing(scratch: Path, repeats: int, only: list[str] | None) -> None:
    print("| file | size (MB) | tool | median (s) | MB/s | ratio to sha256sum | all runs (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, size in SIZES.items():
        if only and not any(word in name for word in only):
            continue
        path = scratch / "payload.bin"
        write_file(path, size)
        digest(path, "md5")  # warm the page cache
        command = ["sha256sum", str(path)]
        tools = {
            "sha256sum (coreutils)": lambda c=command: subprocess.run(
                c, check=True, capture_output=True
            )
        }
        for algorithm in ALGORITHMS:
            tools[f"hashlib {algorithm}"] = lambda a=algorithm, p=path: digest(p, a)
        times = {tool: [timed(run) for _ in range(repeats)] for tool, run in tools.items()}
        ref = statistics.median(times["sha256sum (coreutils)"])
        for tool, runs in times.items():
            med = statistics.median(runs)
            all_runs = ", ".join(f"{t:.2f}" for t in runs)
            print(
                f"| {name} | {size >> 20} | {tool} | {med:.2f} | {(size >> 20) / med:.0f} | "
                f"{med / ref:.2f} | {all_runs} |"
            )
        path.unlink()


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def cold_vs_warm(scratch: Path, repeats: int, size: int = 1 << 30) -> None:
    print()
    print("| 1 GB file | median (s) | MB/s | all runs (s) |")
    print("|---|---|---|---|")
    path = scratch / "payload.bin"
    write_file(path, size)
    cold = []
    for _ in range(repeats):
        drop_caches()
        cold.append(timed(lambda: digest(path, "sha256")))
    digest(path, "sha256")  # warm
    warm = [timed(lambda: digest(path, "sha256")) for _ in range(repeats)]
    os.chdir(scratch)
    provenance.cached_digest(path.name)  # the first job hashes and caches
    hits = []
    for _ in range(repeats):
        drop_caches()  # the cache entry is read cold too
        hits.append(timed(lambda: provenance.cached_digest(path.name)))
    rows = {
        "hashlib sha256, cold page cache": cold,
        "hashlib sha256, warm page cache": warm,
        "cached_digest, digest cached (cold page cache)": hits,
    }
    for name, runs in rows.items():
        med = statistics.median(runs)
        all_runs = ", ".join(f"{t:.4f}" if t < 0.1 else f"{t:.2f}" for t in runs)
        shown = f"{med:.4f}" if med < 0.1 else f"{med:.2f}"
        print(f"| {name} | {shown} | {(size >> 20) / med:.0f} | {all_runs} |")
    path.unlink()
    os.chdir("/")


def parse_time(scratch: Path, repeats: int, inputs_per_record: int) -> None:
    print()
    print(
        "| records | inputs each | check_records, unchanged (ms) | os.stat of the same files "
        "(ms) | ratio | all runs (ms) |"
    )
    print("|---|---|---|---|---|---|")
    for n in (10, 100, 1000):
        work = scratch / f"records{n}"
        work.mkdir()
        os.chdir(work)
        files = []
        for i in range(n):
            inputs = [f"in_{i}_{k}.txt" for k in range(inputs_per_record)]
            for path in [*inputs, f"out_{i}.txt"]:
                Path(path).write_text(path)
            provenance.record_job(f"rule{i}", inputs, [f"out_{i}.txt"])
            files += [*inputs, f"out_{i}.txt"]
        provenance.check_records()  # warm
        runs = [timed(provenance.check_records) * 1e3 for _ in range(repeats)]
        stats = [timed(lambda f=files: [os.stat(x) for x in f]) * 1e3 for _ in range(repeats)]
        med, ref = statistics.median(runs), statistics.median(stats)
        all_runs = ", ".join(f"{t:.1f}" for t in runs)
        row = f"| {n} | {inputs_per_record} | {med:.1f} | {ref:.1f} | {med / ref:.1f} |"
        print(f"{row} {all_runs} |")
        os.chdir(scratch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inputs-per-record", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="hash only the sizes whose name has a word")
    parser.add_argument("--skip-hashing", action="store_true")
    parser.add_argument("--skip-parse", action="store_true")
    parser.add_argument("--cold", action="store_true", help="cold vs warm page cache (root)")
    args = parser.parse_args()
    # a folder of its own inside --scratch, removed at the end: the rest of --scratch stays
    with scratch_in(args.scratch.resolve(), "bench_provenance_") as scratch:
        try:
            if not args.skip_hashing:
                hashing(scratch, args.repeats, args.only)
            if args.cold:
                cold_vs_warm(scratch, args.repeats)
            if not args.skip_parse:
                parse_time(scratch, args.repeats, args.inputs_per_record)
        finally:
            os.chdir("/")


if __name__ == "__main__":
    main()
