"""GTEx target aggregation (isoflow.gtex.aggregate_tpm) against `zcat FILE | wc -l`.

Generates (in a folder of its own inside --work, default /tmp/isoflow_bench_targets, removed at
the end with the extracted old tree; the rest of --work is left alone) a GCT in the exact
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

Answers first, every run: the isoflow cases (every block size, the old tree) must give the
same bytes (sha256 of the targets' IDs and float32 values and of the stats table: the
computation is deterministic); their transcripts must number zcat's lines less the GCT's
three header lines; the alternatives' log1p(mean TPM) must match isoflow's within a relative
1e-6 (they sum and divide in float64 and keep float64, isoflow rounds its result to float32,
whose spacing is 1.2e-7 relative). A mismatch stops the bench before any time is reported.

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

import numpy as np
from benchcommon import old_tree, scratch_in, tree_prelude

ROOT = Path(__file__).resolve().parents[1]

AGGREGATE = """
import hashlib, json, sys, numpy as np
from isoflow import gtex
targets, stats = gtex.aggregate_tpm(sys.argv[1], sys.argv[2], block_rows=int(sys.argv[3]))
tissues = [c for c in targets.columns if c not in ("transcript_id", "gene_id")]
values = targets[tissues].to_numpy(np.float32)
np.save(sys.argv[4], values[:, np.argsort(tissues)])  # tissues sorted, as the alternatives
ids = "\\n".join(targets["transcript_id"] + "\\t" + targets["gene_id"]) + "\\n"
head = "\\t".join(targets.columns) + "\\n"
table = hashlib.sha256((head + ids).encode() + np.ascontiguousarray(values).tobytes())
summary = hashlib.sha256(stats.to_csv(index=False, float_format="%.17g").encode())
print(json.dumps({"rows": len(targets), "tissues": len(tissues), "file": gtex.__file__,
                  "targets_sha256": table.hexdigest(), "stats_sha256": summary.hexdigest()}))
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
np.save(sys.argv[4], out)
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
import numpy as np
np.save(sys.argv[3], out.select(sorted(groups)).to_numpy())
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


# the alternatives keep float64; isoflow rounds to float32 (spacing 1.2e-7 relative)
ALTERNATIVE_RTOL = 1e-6


def check_answers(outputs: dict[str, str], answers: dict[str, Path]) -> str:
    """What every case of one run answered, held together: the isoflow cases the same
    sha256 (targets and stats), as many transcripts as zcat counted lines less the three
    header lines, the alternatives' matrices within ALTERNATIVE_RTOL of isoflow's. SystemExit
    on any mismatch (timing disagreeing readers means nothing); else a line saying so."""
    lines = int(outputs["zcat FILE | wc -l"].split()[0])
    ours = {
        n: json.loads(o.splitlines()[-1]) for n, o in outputs.items() if n.startswith("isoflow")
    }
    digests = {(r["targets_sha256"], r["stats_sha256"]) for r in ours.values()}
    if len(digests) != 1:
        raise SystemExit(f"the isoflow cases' targets differ: {ours}")
    first = next(iter(ours))
    rows = ours[first]["rows"]
    if rows != lines - 3:
        raise SystemExit(f"isoflow read {rows} transcripts, zcat counted {lines} lines (3 header)")
    reference = np.load(answers[first]).astype(np.float64)
    worst = 0.0
    for name in outputs:
        if name == first or name not in answers:
            continue
        other = np.load(answers[name])
        if other.shape != reference.shape:
            raise SystemExit(f"{name}: a {other.shape} matrix, isoflow's is {reference.shape}")
        scale = np.maximum(np.abs(reference), np.finfo(np.float64).tiny)
        relative = float(np.max(np.abs(other - reference) / scale, initial=0.0))
        if not relative <= ALTERNATIVE_RTOL:
            raise SystemExit(f"{name}: differs from isoflow's by {relative:.3g} relative")
        worst = max(worst, relative)
    return (
        f"{len(ours)} isoflow case(s) the same bytes ({rows} transcripts = zcat's {lines} lines "
        f"- 3); other readers within {worst:.3g} relative of isoflow's (bound {ALTERNATIVE_RTOL:g})"
    )


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
    parser.add_argument("--cpus", help="run every case under taskset -c CPUS (e.g. 0)")
    parser.add_argument("--old", metavar="REV", help="also the isoflow package of git REV")
    args = parser.parse_args()

    # a folder of its own inside --work (the generated GCT, the old tree, the answers),
    # removed at the end: the rest of --work stays
    work = stack.enter_context(scratch_in(args.work, "bench_targets_"))
    data_dir = work / f"rows{args.rows}"
    gct, attrs = data_dir / "transcript_tpm.gct.gz", data_dir / "sample_attributes.tsv"
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
    answers: dict[str, Path] = {}  # each python case's result matrix (.npy)
    for rows in args.block_rows:
        name = f"isoflow aggregate_tpm ({rows}-row blocks)"
        answers[name] = work / f"answer{len(answers)}.npy"
        code = tree_prelude(ROOT) + AGGREGATE
        cases[name] = [*pin, sys.executable, "-c", code, str(gct), str(attrs), str(rows)]
        cases[name].append(str(answers[name]))
    if args.old:
        old_dir = stack.enter_context(old_tree(args.old, work))
        name = f"isoflow {args.old} aggregate_tpm ({args.block_rows[0]}-row blocks)"
        answers[name] = work / f"answer{len(answers)}.npy"
        # benchcommon.tree_prelude: the old tree's modules only, none borrowed from this one
        code = tree_prelude(old_dir) + AGGREGATE
        cases[name] = [*pin, sys.executable, "-c", code, str(gct), str(attrs)]
        cases[name] += [str(args.block_rows[0]), str(answers[name])]
        cwds[name] = old_dir
    if args.alternatives:
        name = "pyarrow open_csv streaming, 64 MiB blocks, to_tensor @ indicator"
        answers[name] = work / f"answer{len(answers)}.npy"
        cases[name] = [sys.executable, "-c", ARROW, str(gct), str(attrs), "64"]
        cases[name].append(str(answers[name]))
        name = "polars scan_csv streaming, mean_horizontal"
        answers[name] = work / f"answer{len(answers)}.npy"
        cases[name] = [sys.executable, "-c", POLARS, str(gct), str(attrs), str(answers[name])]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        outputs = {}
        for name, cmd in cases.items():  # interleaved, so load drift hits every case alike
            wall, cpu, rss, out = measure(cmd, cwds.get(name, ROOT))
            results[name].append((wall, cpu, rss))
            outputs[name] = out
            print(f"{name}: {wall:.1f} s, CPU {cpu:.1f} s, {rss:.0f} MiB ({out})", file=sys.stderr)
        agreed = check_answers(outputs, answers)
    print(f"answers: {agreed}")

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
