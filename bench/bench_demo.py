"""Where the demo's time goes: every Python process of one demo run accounted for, the
import cost of the libraries each one loaded measured in the same run, and the floor that
the cores set.

Runs the demo's two commands as ``make demo`` does (the DAG with ``--cores N``, then
``--report``) with this checkout's Snakefile, profile, config/demo.yaml and installed
``isoflow``, in a scratch working directory (``-d``; this checkout's ``results/`` is left
alone). A ``sitecustomize`` put first on ``PYTHONPATH`` appends one JSON line per Python
process at its exit: pid, parent, argv, start and end, its own CPU and its reaped children's
(``os.times``), and which of ``LIBRARIES`` it had imported. Snakemake runs each ``script:``
job as a Python process of its own, so each job is one line. The train job's pool workers
end without their exit handlers (the pool terminates them), so they are counted through
their parent's children time.

What each figure is compared against, measured in the same run:

* ``floor``: the run's CPU seconds (every process, as ``os.wait4`` reports the two
  commands) over N cores: no scheduling of the same work on N cores ends sooner.
  ``wall / floor`` is how well the DAG keeps the cores busy.
* ``imports``: for each distinct set of libraries a process had loaded, the CPU seconds of
  importing that set in a fresh interpreter (``python -c "import ..."``, the least of
  ``--repeats``); a process is charged its set's cost, a train worker the set it has
  loaded once it imported isoflow.train (before its first run). What is left of a job's CPU
  is its own work, isoflow's own modules and the interpreter's start included (so an upper
  bound of it).

Prints a Markdown table per rule and the totals; ``--json`` writes the raw records.

    .venv/bin/python bench/bench_demo.py --cores 2 --json /tmp/demo_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# Libraries whose import is a large share of a short job (checked in sys.modules at exit).
LIBRARIES = (
    "torch",
    "pytorch_lightning",
    "transformers",
    "enformer_pytorch",
    "sklearn",
    "scipy",
    "matplotlib",
    "pandas",
    "polars",
    "pyarrow",
    "pysam",
    "snakemake",
)
PHASES = {
    "data": {
        "demo_data",
        "demo_constructs",
        "demo_measurements",
        "annotation",
        "genome_index",
        "sequences",
        "targets",
        "splits",
        "dataset",
        "report_biotypes",
        "report_lengths",
        "report_tissues",
        "report_targets",
        "report_splits",
    },
    "embedding": {"embed", "embed_positional", "embed_shared", "embed_part", "baseline"},
    "training": {"train"},
}
SITECUSTOMIZE = """
import atexit, json, os, sys, time

_start = time.time()


def _ancestors(pid, depth=4):
    found = []
    for _ in range(depth):
        try:
            with open(f"/proc/{pid}/status") as status:
                pid = next(int(l.split()[1]) for l in status if l.startswith("PPid:"))
        except (OSError, StopIteration, ValueError):
            break
        found.append(pid)
    return found


def _account():
    times = os.times()
    record = {
        "pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv[:40],
        "start": _start, "end": time.time(),
        "cpu": times.user + times.system,
        "children_cpu": times.children_user + times.children_system,
        "libraries": [name for name in LIBRARIES if name in sys.modules],
        "ancestors": _ancestors(os.getppid()),
    }
    with open(os.environ["ISOFLOW_BENCH_ACCOUNT"], "a") as out:
        out.write(json.dumps(record) + "\\n")


LIBRARIES = %r
atexit.register(_account)
"""


def run_demo(work: Path, cores: int, account: Path) -> dict[str, float]:
    """The demo's two commands in ``work``; wall and CPU (all processes) of each."""
    site = work / "_site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE % (LIBRARIES,))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "ISOFLOW_BENCH_ACCOUNT": str(account),
    }
    common = [
        str(SNAKEMAKE),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--profile",
        str(REPO / "profiles" / "default"),
        "--configfile",
        str(REPO / "config" / "demo.yaml"),
    ]
    figures = {}
    for name, extra in (
        ("dag", ["--cores", str(cores)]),
        ("report", ["--report", str(work / "results" / "report.html")]),
    ):
        start = time.monotonic()
        with open(work / f"_{name}.log", "w") as log:
            proc = subprocess.Popen(common + extra, cwd=REPO, env=env, stdout=log, stderr=log)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{name} failed: see {work / f'_{name}.log'}")
        figures[f"{name}_wall"] = time.monotonic() - start
        figures[f"{name}_cpu"] = usage.ru_utime + usage.ru_stime
    return figures


def import_cpu(libraries: tuple[str, ...], repeats: int) -> float:
    """CPU seconds of importing ``libraries`` in a fresh interpreter, net of the
    interpreter's own start: the least of ``repeats`` tries (the same work each time; a
    larger figure is another process's interference)."""

    def once(code: str) -> float:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"import failed: {code}")
        return usage.ru_utime + usage.ru_stime

    code = "; ".join(f"import {name}" for name in libraries) or "pass"
    bare = min(once("pass") for _ in range(repeats))
    return max(0.0, min(once(code) for _ in range(repeats)) - bare)


def rule_of(argv: list[str]) -> str:
    text = " ".join(argv)
    found = re.search(r"tmp[^/ ]*\.(\w+)\.py", text)
    if found:
        return found.group(1)
    if argv and Path(argv[0]).name == "snakemake":
        return "snakemake --report" if "--report" in argv else "snakemake (scheduler)"
    return "other: " + text[-60:]


def phase_of(rule: str) -> str:
    for phase, rules in PHASES.items():
        if rule in rules:
            return phase
    if rule.startswith(("snakemake", "other")):
        return rule.split(":")[0]
    return "after training"


def nearest_recorded(record: dict, pids: set[int]) -> int | None:
    """The pid of the closest ancestor of ``record`` that has a record of its own: its
    parent, or, with a non-Python process in between (a shell that does not exec its last
    command), the first recorded pid in its ``ancestors``."""
    for pid in [record["ppid"], *record.get("ancestors", [])]:
        if pid in pids:
            return pid
    return None


def account(
    records: list[dict],
    costs: dict[tuple[str, ...], float],
    workers: int = 0,
    worker_cost: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Per rule: jobs, summed wall, CPU and import CPU. Each record gets ``rule``, ``cpu_total``
    (its own CPU plus that of reaped children without a record: a process's children time
    less what its recorded descendants account for themselves, so nothing counts twice) and
    ``imports`` (its library set's cost; the train job also ``workers`` x ``worker_cost`` for
    its pool workers, which end without a record)."""
    pids = {r["pid"] for r in records}
    reported: dict[int, float] = defaultdict(float)
    for r in records:
        parent = nearest_recorded(r, pids)
        if parent is not None:
            reported[parent] += r["cpu"] + r["children_cpu"]
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in records:
        rule = rule_of(r["argv"])
        unrecorded = max(0.0, r["children_cpu"] - reported[r["pid"]])
        imports = costs[tuple(r["libraries"])]
        if rule == "train":
            imports += workers * worker_cost
        r["rule"], r["cpu_total"], r["imports"] = rule, r["cpu"] + unrecorded, imports
        row = rows[rule]
        row["jobs"] += 1
        row["wall"] += r["end"] - r["start"]
        row["cpu"] += r["cpu_total"]
        row["imports"] += imports
    return rows


def train_worker_libraries() -> tuple[str, ...]:
    """Which of ``LIBRARIES`` a train worker has loaded when its first run starts (it imports
    isoflow.train): what each worker is charged, as every other process its own set."""
    code = (
        "import json, sys; import isoflow.train; "
        f"print(json.dumps([n for n in {LIBRARIES!r} if n in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return tuple(json.loads(out.splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="import timings per set")
    parser.add_argument("--scratch", type=Path, default=None, help="parent of the workdir")
    parser.add_argument("--keep", action="store_true", help="keep the scratch workdir")
    parser.add_argument("--json", type=Path, default=None, help="write the raw records here")
    args = parser.parse_args(argv)

    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="isoflow-demo-bench-", dir=args.scratch))
    account_file = work / "_account.jsonl"
    try:
        figures = run_demo(work, args.cores, account_file)
        records = [json.loads(line) for line in account_file.read_text().splitlines()]
        workers = 0  # the train job logs how many workers it started (isoflow.train_workers)
        for log in [work / "_dag.log", *sorted((work / "logs").rglob("*.log"))]:
            found = re.search(r"training \d+ runs in (\d+) processes", log.read_text())
            if found:
                workers = int(found.group(1))
                break
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    costs: dict[tuple[str, ...], float] = {}
    for r in records:
        key = tuple(r["libraries"])
        if key not in costs:
            costs[key] = import_cpu(key, args.repeats)
    worker_set = train_worker_libraries() if workers else ()
    worker_cost = import_cpu(worker_set, args.repeats) if workers else 0.0
    rows = account(records, costs, workers, worker_cost)

    t0 = min(r["start"] for r in records)
    phases: dict[str, list[float]] = {}
    for r in records:
        span = phases.setdefault(phase_of(r["rule"]), [r["start"], r["end"]])
        span[0], span[1] = min(span[0], r["start"]), max(span[1], r["end"])
    wall = figures["dag_wall"] + figures["report_wall"]
    cpu = figures["dag_cpu"] + figures["report_cpu"]
    accounted = sum(row["cpu"] for row in rows.values())
    print(f"demo: {wall:.1f} s wall, {cpu:.1f} CPU-s on {args.cores} cores")
    floor = cpu / args.cores
    print(f"floor (CPU / cores): {floor:.1f} s; wall / floor {wall / floor:.2f}")
    print(f"accounted per process: {accounted:.1f} CPU-s of {cpu:.1f}\n")
    if abs(accounted - cpu) > 0.05 * cpu:
        print(
            f"WARNING: the per-process accounting misses or double-counts "
            f"{cpu - accounted:+.1f} CPU-s (more than 5 %); the rows below are not reliable\n"
        )
    print("| rule | jobs | wall (s, summed) | CPU-s | of which imports | own work |")
    print("|---|---|---|---|---|---|")
    for rule, row in sorted(rows.items(), key=lambda item: -item[1]["cpu"]):
        print(
            f"| {rule} | {int(row['jobs'])} | {row['wall']:.1f} | {row['cpu']:.1f} | "
            f"{row['imports']:.1f} | {row['cpu'] - row['imports']:.1f} |"
        )
    total_imports = sum(row["imports"] for row in rows.values())
    print(
        f"| **all** | | | {accounted:.1f} | {total_imports:.1f} | {accounted - total_imports:.1f} |"
    )
    print("\n| phase | from (s) | to (s) | wall (s) | CPU-s |")
    print("|---|---|---|---|---|")
    for phase, (start, end) in sorted(phases.items(), key=lambda item: item[1][0]):
        phase_cpu = sum(r["cpu_total"] for r in records if phase_of(r["rule"]) == phase)
        print(
            f"| {phase} | {start - t0:.1f} | {end - t0:.1f} | {end - start:.1f} | {phase_cpu:.1f} |"
        )
    print("\n| libraries loaded | processes | import CPU-s each |")
    print("|---|---|---|")
    for key, cost in sorted(costs.items(), key=lambda item: -item[1]):
        count = sum(1 for r in records if tuple(r["libraries"]) == key)
        print(f"| {', '.join(key) or '(none)'} | {count} | {cost:.2f} |")
    if workers:
        print(f"| {', '.join(worker_set)} (each train worker) | {workers} | {worker_cost:.2f} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "figures": figures,
                    "records": records,
                    "import_costs": {", ".join(k): v for k, v in costs.items()},
                    "worker_libraries": worker_set,
                    "worker_import": worker_cost,
                    "workers": workers,
                    "cores": args.cores,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
