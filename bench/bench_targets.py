"""GTEx target aggregation (isoflow.gtex.aggregate_tpm) against `zcat FILE | wc -l`.

Generates (under --work, default /tmp/isoflow_bench_targets, never committed) a GCT in the exact
GTEx v8 layout with all 17,382 sample columns and --rows rows, gzip, plus matching attributes;
then, in the same run, measures wall time, CPU time (user + system of the child and its
threads, from os.wait4) and peak RSS (ru_maxrss of each child process; a child's figure
includes this small parent's RSS at fork, ~20 MiB, as a floor) of:

* zcat FILE | wc -l                         (the reference: decompress and count lines)
* isoflow.gtex.aggregate_tpm, smts, all tissues (pyarrow cast on blocks of --block-rows lines)
* with --old REV, the same call from the isoflow package of git revision REV (e.g. c40b196,
  np.loadtxt), extracted to a temporary folder: the old code path, side by side
* with --alternatives, the readers it was chosen over: pyarrow open_csv streaming (64 MiB
  blocks, to_tensor @ indicator) and polars scan_csv + mean_horizontal, streaming engine

--cpus 0 runs every case under `taskset -c 0` (one core for zcat and wc, and for isoflow's
reading, decompression and parsing threads alike).

Run: .venv/bin/python bench/bench_targets.py --rows 20000 --repeat 3 [--cpus 0] [--old c40b196]
     [--alternatives]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchcommon import old_tree, tree_prelude

ROOT = Path(__file__).resolve().parents[1]

AGGREGATE = """
import sys
from isoflow import gtex
targets, stats = gtex.aggregate_tpm(sys.argv[1], sys.argv[2], block_rows=int(sys.argv[3]))
print(len(targets), len(stats), gtex.__file__)
"""

ARROW = """
import sys, numpy as np, pyarrow as pa, pyarrow.csv as pacsv
gct, attrs, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
tissue = dict(l.rstrip("\\n").split("\\t")[:2] for l in list(open(attrs))[1:])
import gzip
with gzip.open(gct, "rt") as fh:
    names = [next(fh) for _ in range(3)][2].rstrip("\\n").split("\\t")
tissues = sorted({tissue[s] for s in names[2:]})
ind = np.zeros((len(names) - 2, len(tissues)))
ind[np.arange(len(names) - 2), [tissues.index(tissue[s]) for s in names[2:]]] = 1
types = {c: (pa.string() if i < 2 else pa.float64()) for i, c in enumerate(names)}
reader = pacsv.open_csv(
    pa.input_stream(gct, compression="gzip"),
    pacsv.ReadOptions(skip_rows=3, column_names=names, block_size=block << 20),
    pacsv.ParseOptions(delimiter="\\t", quote_char=False),
    pacsv.ConvertOptions(column_types=types),
)
cols = list(range(2, len(names)))
sums = [np.asarray(b.select(cols).to_tensor(row_major=True)) @ ind for b in reader]
out = np.log1p(np.concatenate(sums) / ind.sum(0))
print(out.shape)
"""

POLARS = """
import sys, polars as pl
gct, attrs = sys.argv[1], sys.argv[2]
tissue = dict(l.rstrip("\\n").split("\\t")[:2] for l in list(open(attrs))[1:])
header = pl.scan_csv(gct, separator="\\t", skip_rows=2, n_rows=0).collect_schema().names()
groups = {}
for s in header[2:]:
    groups.setdefault(tissue[s], []).append(s)
schema = {c: (pl.String if i < 2 else pl.Float64) for i, c in enumerate(header)}
lf = pl.scan_csv(gct, separator="\\t", skip_rows=2, schema=schema)
exprs = [pl.mean_horizontal(cols).log1p().alias(t) for t, cols in sorted(groups.items())]
out = lf.select("transcript_id", "gene_id", *exprs).collect(engine="streaming")
print(out.shape)
"""


def measure(cmd: list[str], cwd: Path = ROOT) -> tuple[float, float, float, str]:
    """Run ``cmd``; return (wall s, CPU s (user + system), peak RSS of the child in MiB, stdout).

    CPU time: os.wait4's rusage covers the child's own threads; for a shell pipeline
    (zcat | wc) it is the shell's, so pipelines are measured through RUSAGE_CHILDREN deltas.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=cwd)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed with {proc.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, usage.ru_maxrss / 1024, out.strip()


def main() -> None:
    with contextlib.ExitStack() as stack:
        _main(stack)


def _main(stack: contextlib.ExitStack) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/isoflow_bench_targets"))
    parser.add_argument("--block-rows", type=int, nargs="+", default=[128])
    parser.add_argument(
        "--alternatives", action="store_true", help="also pyarrow open_csv and polars scan_csv"
    )
    parser.add_argument("--reuse", action="store_true", help="reuse an existing generated file")
    parser.add_argument("--cpus", help="run every case under taskset -c CPUS (e.g. 0)")
    parser.add_argument("--old", metavar="REV", help="also the isoflow package of git REV")
    args = parser.parse_args()

    data_dir = args.work / f"rows{args.rows}"
    gct, attrs = data_dir / "transcript_tpm.gct.gz", data_dir / "sample_attributes.tsv"
    if not (args.reuse and gct.exists()):
        t0 = time.perf_counter()
        # In a child process: the measured children inherit this process's peak RSS as their
        # floor (ru_maxrss survives fork + exec), so the parent stays small.
        generator = Path(__file__).resolve().parent / "gtex_layout.py"
        subprocess.run([sys.executable, generator, data_dir, str(args.rows)], check=True)
        print(f"generated {gct} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    size_mb = gct.stat().st_size / 1e6

    pin = ["taskset", "-c", args.cpus] if args.cpus else []
    cases = {"zcat FILE | wc -l": [*pin, "bash", "-c", f"zcat {gct} | wc -l"]}
    cwds: dict[str, Path] = {}  # python -c imports isoflow from its working directory
    for rows in args.block_rows:
        cases[f"isoflow aggregate_tpm ({rows}-row blocks)"] = [
            *pin,
            sys.executable,
            "-c",
            tree_prelude(ROOT) + AGGREGATE,
            str(gct),
            str(attrs),
            str(rows),
        ]
    if args.old:
        old_dir = stack.enter_context(old_tree(args.old))  # deleted at the end
        name = f"isoflow {args.old} aggregate_tpm ({args.block_rows[0]}-row blocks)"
        # benchcommon.tree_prelude: the old tree's modules only, none borrowed from this one
        code = tree_prelude(old_dir) + AGGREGATE
        cases[name] = [*pin, sys.executable, "-c", code, str(gct), str(attrs)]
        cases[name].append(str(args.block_rows[0]))
        cwds[name] = old_dir
    if args.alternatives:
        cases["pyarrow open_csv streaming, 64 MiB blocks, to_tensor @ indicator"] = [
            sys.executable,
            "-c",
            ARROW,
            str(gct),
            str(attrs),
            "64",
        ]
        cases["polars scan_csv streaming, mean_horizontal"] = [
            sys.executable,
            "-c",
            POLARS,
            str(gct),
            str(attrs),
        ]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, cmd in cases.items():  # interleaved, so load drift hits every case alike
            wall, cpu, rss, out = measure(cmd, cwds.get(name, ROOT))
            results[name].append((wall, cpu, rss))
            print(f"{name}: {wall:.1f} s, CPU {cpu:.1f} s, {rss:.0f} MiB ({out})", file=sys.stderr)

    ref = statistics.median(w for w, _, _ in results["zcat FILE | wc -l"])
    ref_cpu = statistics.median(c for _, c, _ in results["zcat FILE | wc -l"])
    summary = {
        "rows": args.rows,
        "samples": 17382,
        "gzip_mb": round(size_mb, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "cpus": args.cpus or "all",
        "load_average": os.getloadavg(),
        "cases": {},
    }
    print(f"\n{args.rows} rows x 17,382 samples, {size_mb:.0f} MB gzip; medians of {args.repeat}")
    print(f"cpus: {args.cpus or 'all'}; load average at the end {os.getloadavg()}")
    print("| what | wall (s) | x zcat | CPU (s) | CPU x zcat | peak RSS (MiB) | walls (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        wall = statistics.median(w for w, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        rss = max(r for _, _, r in runs)
        summary["cases"][name] = {
            "wall_s": wall,
            "ratio": wall / ref,
            "cpu_s": cpu,
            "cpu_ratio": cpu / ref_cpu,
            "peak_rss_mib": rss,
            "walls": [w for w, _, _ in runs],
        }
        walls = ", ".join(f"{w:.1f}" for w, _, _ in runs)
        print(
            f"| {name.replace('|', chr(92) + '|')} | {wall:.1f} | {wall / ref:.2f} | {cpu:.1f} "
            f"| {cpu / ref_cpu:.2f} | {rss:.0f} | {walls} |"
        )
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    tag = ("_alternatives" if args.alternatives else "") + (
        f"_cpus{args.cpus}" if args.cpus else ""
    )
    (out_dir / f"targets_rows{args.rows}{tag}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
