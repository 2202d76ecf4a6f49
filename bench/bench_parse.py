"""Cost of reading the workflow: a dry run's wall time and peak memory, this tree vs an older one.

Every Snakemake start pays it: a dry run, the scheduler of a real run, and each SLURM job
(which runs `snakemake --target-jobs ...` on the node and so reads the Snakefile again).
For each tree, ``snakemake -n -s TREE/Snakefile -d EMPTY --configfile ...`` runs in a fresh
process with ``PYTHONPATH=TREE`` (so the tree's own ``isoflow`` is imported, not an installed
copy), in an empty working directory (every job of the DAG is planned, every input function
runs). Peak RSS is the child's own ``ru_maxrss`` (``os.wait4``). Trees take turns run by run,
so a load change on a shared machine hits them alike. Three workloads:

- ``full+ablations``: config/config.yaml + config/ablations.yaml (14 experiments x 3 seeds);
- ``demo``: config/demo.yaml;
- ``floor``: a one-rule Snakefile that imports nothing (Snakemake's own start, no workflow),
  run once per round: what no change to isoflow can go below;
- with ``--one-job``, ``demo_data job``: a real run of the demo's first job (``snakemake
  --cores 1 resources/demo/genome.fa`` with config/demo.yaml: read the workflow, plan, run
  the ``demo_data`` script), i.e. what starting one job costs end to end.

The older tree is a ``git worktree`` of ``--baseline`` (default: the last commit before the
light parse) in a temporary folder inside ``--scratch``, removed afterwards (the rest of
``--scratch`` is left alone). Both trees must plan the same number
of jobs, or the comparison stops. Prints a Markdown table.

    .venv/bin/python bench/bench_parse.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchcommon import scratch_in

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# The last commit before rules stopped importing isoflow.train/embed/report (torch at parse).
BASELINE = "6efff83552e6fd428fdbb756c9025e323e946bf3"
WORKLOADS = {
    "full+ablations": ["config/config.yaml", "config/ablations.yaml"],
    "demo": ["config/demo.yaml"],
}
ONE_JOB = "resources/demo/genome.fa"  # made by demo_data, the demo's first job (no inputs)
FLOOR_SNAKEFILE = 'rule all:\n    output:\n        "x",\n    shell:\n        "touch {output}"\n'


def dry_run(
    tree: Path, snakefile: Path, configfiles: list[Path], workdir: Path, target: str | None = None
) -> dict:
    """One dry run (with ``target``: a real run of that target) in a fresh process: wall
    seconds, peak RSS (MB), jobs planned."""
    command = [SNAKEMAKE, "-s", snakefile, "-d", workdir]
    command += ["--cores", "1", target] if target else ["-n"]
    if configfiles:
        command += ["--configfile", *configfiles]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if child.returncode != 0 or (not target and "This was a dry-run" not in text):
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{text[-3000:]}")
    total = re.search(r"^total\s+(\d+)", text, re.M)
    return {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "jobs": int(total[1]) if total else 0}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the older tree")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one-job", action="store_true", help="also run the demo_data job")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "bench_parse")
    args = parser.parse_args(argv)

    # a folder of its own inside --scratch, removed at the end: the rest of --scratch stays
    with scratch_in(args.scratch.resolve(), "bench_parse_") as scratch:
        runs, trees = measure(args, scratch)
    report(args, runs, trees)


def measure(args: argparse.Namespace, scratch: Path) -> tuple[dict, dict]:
    """Every workload's dry runs in both trees and the floor's, ``--repeats`` rounds."""
    old = scratch / "baseline"
    subprocess.run(
        ["git", "-C", REPO, "worktree", "add", "--detach", old, args.baseline],
        check=True,
        capture_output=True,
    )
    revision = subprocess.run(
        ["git", "-C", old, "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    floor = scratch / "floor" / "Snakefile"
    floor.parent.mkdir()
    floor.write_text(FLOOR_SNAKEFILE)
    trees = {"this tree": REPO, f"baseline {revision}": old}
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        for i in range(args.repeats):
            for workload, files in WORKLOADS.items():
                for label, tree in trees.items():
                    workdir = Path(tempfile.mkdtemp(dir=scratch))
                    result = dry_run(tree, tree / "Snakefile", [tree / f for f in files], workdir)
                    runs.setdefault((workload, label), []).append(result)
            if args.one_job:
                for label, tree in trees.items():
                    workdir = Path(tempfile.mkdtemp(dir=scratch))
                    demo = [tree / "config" / "demo.yaml"]
                    result = dry_run(tree, tree / "Snakefile", demo, workdir, ONE_JOB)
                    runs.setdefault(("demo_data job", label), []).append(result)
            workdir = Path(tempfile.mkdtemp(dir=scratch))
            runs.setdefault(("floor", "snakemake alone"), []).append(
                dry_run(REPO, floor, [], workdir)
            )
            print(f"round {i + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", old], check=False)
    return runs, trees


def report(args: argparse.Namespace, runs: dict, trees: dict) -> None:
    # A DAG that grew since the baseline plans more jobs: its ratio compares unlike work, so
    # it is left out (this tree's own figures and the floor still stand).
    unlike = set()
    for workload in [*WORKLOADS, *(["demo_data job"] if args.one_job else [])]:
        jobs = {runs[(workload, label)][0]["jobs"] for label in trees}
        if len(jobs) != 1:
            unlike.add(workload)
            print(
                f"{workload}: the trees plan different numbers of jobs ({sorted(jobs)}): no ratio"
            )

    print(f"load average after the runs: {os.getloadavg()}")
    print(
        f"| workload | tree | jobs | median of {args.repeats} (s) | peak RSS median (MB) "
        "| time ratio baseline/this | RSS ratio | all runs (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (workload, label), results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        rss = statistics.median(r["rss_mb"] for r in results)
        ratio_time = ratio_rss = ""
        if label.startswith("baseline") and workload not in unlike:
            this = runs[(workload, "this tree")]
            ratio_time = f"{wall / statistics.median(r['wall'] for r in this):.2f}"
            ratio_rss = f"{rss / statistics.median(r['rss_mb'] for r in this):.2f}"
        all_runs = ", ".join(f"{r['wall']:.2f}" for r in results)
        print(
            f"| {workload} | {label} | {results[0]['jobs']} | {wall:.2f} | {rss:.0f} "
            f"| {ratio_time} | {ratio_rss} | {all_runs} |"
        )


if __name__ == "__main__":
    main()
