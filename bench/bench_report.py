"""The per-run report views (rule report_run: isoflow.report.build.build_run) of N runs,
this worktree's isoflow against the isoflow package of git revision --old (default 6be51eb,
before save_figure skipped savefig's measuring draw and reused text and tick measures;
520d868: before fit_texts skipped figures with nothing to fit), extracted to a temporary
folder: the old code path, side by side, in the same run.

Each variant and repeat is one child process (old and new alternate) that builds the views
of the N runs (``results/runs/<run>/``, read-only) into a scratch folder, as
scripts/report_run.py does, and reports its CPU time (time.process_time):

* import   the interpreter and the imports of isoflow.report.build and isoflow.jobs, as the
           script pays them once per job
* first    the first run's views (pays matplotlib's first-figure costs: font cache, ...)
* later    the mean of the other runs' views: the figure work of one more run in a process
* child    user + system CPU of the whole child (os.wait4)

A report_run job pays import + first (+ Snakemake's script start); ``later`` is what one run
would cost if one job built several. The outputs of the last repeat are then compared,
old against new: SVG text with the date and matplotlib's random ids normalised (largest
difference of any number, in points), PNG pixels, HTML bytes.

Run: .venv/bin/python bench/bench_report.py --results /work/main/results --runs 5 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from benchcommon import tree_prelude

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
from pathlib import Path
from isoflow.jobs import run_script  # noqa: F401  (scripts/report_run.py imports it)
from isoflow.report.build import build_run
imported = time.process_time()
results, out, runs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
seconds = []
for run in runs:
    src, dst = results / "runs" / run, out / run
    dst.mkdir(parents=True, exist_ok=True)
    t = time.process_time()
    build_run(
        run, src / "metrics.json", src / "history.csv", src / "predictions.parquet",
        curves=dst / "curves.svg", tissue_table=dst / "per_tissue.html",
        tissue_figure=dst / "per_tissue.svg", scatter=dst / "scatter.png",
        within_gene=dst / "within_gene.svg", n_scatter=4, max_points=5000,
        transcripts_path=results / "annotation/transcripts.parquet",
        errors=dst / "errors.svg", demo=True,
    )
    seconds.append(time.process_time() - t)
print(json.dumps({"import": imported, "runs": seconds}))
"""

NUMBER = re.compile(r"-?\d+\.?\d*(?:e-?\d+)?")


def child(package_root: Path, results: Path, out: Path, runs: list[str]) -> dict:
    """One child process: its own report and its user + system CPU (os.wait4)."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    # benchcommon.tree_prelude: the tree's own modules only, none borrowed from this checkout
    cmd = [sys.executable, "-c", tree_prelude(package_root) + CHILD, str(results), str(out)]
    cmd += runs
    proc = subprocess.Popen(cmd, cwd=package_root, env=env, stdout=subprocess.PIPE)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{package_root}: child failed ({status})")
    report = json.loads(stdout)
    report["child"] = usage.ru_utime + usage.ru_stime
    return report


def normalised_svg(path: Path) -> str:
    """The SVG text without its date and with matplotlib's random ids numbered in order."""
    text = re.sub(r"<dc:date>[^<]*</dc:date>", "", path.read_text())
    ids: dict[str, str] = {}
    return re.sub(
        r"\b[a-z][0-9a-f]{10}\b", lambda m: ids.setdefault(m.group(0), f"id{len(ids)}"), text
    )


def compare(old: Path, new: Path) -> dict[str, list[str]]:
    """Per file name: 'same' or how the new file differs from the old one."""
    from PIL import Image

    found: dict[str, list[str]] = {}
    for path in sorted(old.rglob("*.*")):
        other = new / path.relative_to(old)
        if path.suffix == ".svg":
            a, b = normalised_svg(path), normalised_svg(other)
            if a == b:
                verdict = "same"
            elif NUMBER.sub("#", a) != NUMBER.sub("#", b):
                verdict = "DIFFERENT ELEMENTS"
            else:
                x = np.array([float(v) for v in NUMBER.findall(a)])
                y = np.array([float(v) for v in NUMBER.findall(b)])
                verdict = f"coordinates moved, max {np.abs(x - y).max():.3f} pt"
        elif path.suffix == ".png":
            a = np.asarray(Image.open(path)).astype(int)
            b = np.asarray(Image.open(other)).astype(int)
            if a.shape != b.shape:
                verdict = f"DIFFERENT SIZE {a.shape} vs {b.shape}"
            else:
                moved = int((a != b).any(axis=-1).sum())
                verdict = "same" if not moved else f"{moved / a[..., 0].size:.2%} pixels differ"
        else:
            verdict = "same" if path.read_bytes() == other.read_bytes() else "DIFFERENT"
        found.setdefault(path.name, []).append(verdict)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--runs", type=int, default=6, help="the first N runs, by name")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--old", default="6be51eb", metavar="REV")
    args = parser.parse_args()

    runs = sorted(p.name for p in (args.results / "runs").iterdir())[: args.runs]
    work = Path(tempfile.mkdtemp(prefix="isoflow_bench_report_"))
    old_root = work / "old"
    old_root.mkdir()
    archive = subprocess.run(
        ["git", "archive", args.old, "isoflow"], cwd=ROOT, check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", old_root], input=archive.stdout, check=True)
    variants = {f"isoflow {args.old}": old_root, "this worktree": ROOT}
    reports: dict[str, list[dict]] = {name: [] for name in variants}
    for repeat in range(args.repeat):
        for i, (name, root) in enumerate(variants.items()):
            out = work / f"out{i}"
            reports[name].append(child(root, args.results, out, runs))
            print(f"repeat {repeat + 1}: {name} done", file=sys.stderr)

    print(f"{len(runs)} runs of {args.results}, {args.repeat} repeats; {platform.node()}")
    print("CPU seconds (time.process_time; child: os.wait4), median over repeats")
    rows = {}
    for name, done in reports.items():
        row = {
            "import": statistics.median(r["import"] for r in done),
            "first": statistics.median(r["runs"][0] for r in done),
            "later": statistics.median(statistics.mean(r["runs"][1:] or r["runs"]) for r in done),
            "per run": statistics.median(statistics.mean(r["runs"]) for r in done),
            "child": statistics.median(r["child"] for r in done),
        }
        rows[name] = row
        print(f"  {name:20s} " + "  ".join(f"{k} {v:6.2f}" for k, v in row.items()))
    old, new = rows.values()
    print("  new / old           " + "  ".join(f"{k} {new[k] / old[k]:6.2f}" for k in old))
    print("outputs, new against old (last repeat):")
    for name, verdicts in compare(work / "out0", work / "out1").items():
        counts = {v: verdicts.count(v) for v in sorted(set(verdicts))}
        print(f"  {name:16s} " + "; ".join(f"{n}x {v}" for v, n in counts.items()))
    print(f"(outputs kept under {work})")


if __name__ == "__main__":
    main()
