"""The report's paired bootstrap over test genes (isoflow.report.bootstrap) at GENCODE scale, on
synthetic predictions (docs/benchmarks.md, "The report's bootstrap at GENCODE scale").

Writes ``--runs`` predictions.parquet files of one synthetic test set (``--transcripts`` test
transcripts in genes of ``--per-gene`` transcripts on average, ``--tissues`` tissues, a
``--zeros`` share of observed values exactly 0 as GTEx's unexpressed isoforms are; predictions
the observed values plus noise, in float32 as the models write them) and times, in one process
after a warm-up at a tenth of the resamples:

- ``in the table job`` (the reference, the code before the per-run rule): what each table
  across runs did for every run, ``bootstrap.bootstrap_runs`` over all ``--runs`` runs;
- ``per-run job``: what rule ``report_bootstrap`` does for one run,
  ``bootstrap.write_run`` (read, resample, write its ``.npz``), the median over the runs;
- ``read in the table job``: what each table does now, ``bootstrap.read_runs`` of the runs'
  ``.npz`` files (checks included).

Checks that the ``.npz`` values equal ``bootstrap_runs``' byte for byte, and prints the CPU
(time.process_time) and wall seconds of each, per run, and their totals for ``--grid`` runs and
``--tables`` tables across runs (the full config with the ablation grid: 45 runs and the
baseline; report_experiments, four report_ablation and report_scaling): a product of the
measured per-run figures, not a measurement of the grid. Files go to a temporary folder.

Run: .venv/bin/python bench/bench_bootstrap_scale.py --transcripts 9000 --runs 3

``--results DIR`` instead times rule report_bootstraps' work on a workflow's own runs (every
``DIR/runs/*/predictions.parquet`` and ``DIR/baseline/predictions.parquet``; the demo's:
``--results /work/main/results``), the files into a temporary folder, in this process after
the import of isoflow.report.bootstrap, which it times too (numpy and pandas already imported
by this bench; the job's interpreter start not timed): ``write_runs`` of them all (the job
now: what the runs of one test set share taken once) against the reference ``write_run`` of
each in turn (the job before), alternating ``--repeat`` times; checks the two made the same
files byte for byte.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from benchcommon import timed


def synthetic(
    root: Path,
    runs: int,
    transcripts: int,
    per_gene: float,
    tissues: int,
    zeros: float,
    seed: int = 0,
) -> dict[str, Path]:
    """``runs`` predictions.parquet files (PREDICTION_COLUMNS) of one test set under ``root``."""
    rng = np.random.default_rng(seed)
    genes = max(1, round(transcripts / per_gene))
    gene_of = np.sort(rng.integers(0, genes, transcripts))
    ids = [f"ENST{i:011d}.1" for i in range(transcripts)]
    names = [f"ENSG{g:011d}.1" for g in gene_of]
    level = rng.gamma(1.5, 1.2, size=(transcripts, 1))
    observed = np.log1p(rng.gamma(1.0, 1.0, size=(transcripts, tissues)) * np.expm1(level))
    observed[rng.random((transcripts, tissues)) < zeros] = 0.0
    observed = observed.astype(np.float32).astype(np.float64)
    tissue = [f"Tissue_{t:02d}" for t in range(tissues)]
    paths = {}
    for r in range(runs):
        noise = rng.normal(0, 0.5 + 0.1 * r, size=observed.shape)
        predicted = (observed + noise).astype(np.float32)
        frame = pd.DataFrame(
            {
                "transcript_id": np.repeat(ids, tissues),
                "gene_id": np.repeat(names, tissues),
                "tissue": np.tile(tissue, transcripts),
                "observed": observed.astype(np.float32).ravel(),
                "predicted": predicted.ravel(),
            }
        )
        path = root / f"run{r}" / "predictions.parquet"
        path.parent.mkdir(parents=True)
        frame.to_parquet(path, index=False)
        paths[f"run{r}"] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=int, default=9000)
    parser.add_argument("--per-gene", type=float, default=4.66, help="transcripts per gene")
    parser.add_argument("--tissues", type=int, default=30)
    parser.add_argument("--zeros", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=3, help="runs written and timed")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=46, help="runs of the grid, for the totals")
    parser.add_argument("--tables", type=int, default=6, help="tables across runs")
    parser.add_argument("--results", type=Path, help="time write_runs on these runs instead")
    parser.add_argument("--repeat", type=int, default=1, help="with --results: alternations")
    args = parser.parse_args()

    imported = timed(lambda: __import__("isoflow.report.bootstrap"))
    from isoflow.report import bootstrap

    if args.results is not None:
        found = sorted(glob.glob(str(args.results / "runs" / "*" / "predictions.parquet")))
        found += sorted(glob.glob(str(args.results / "baseline" / "predictions.parquet")))
        times: dict[str, list[tuple[float, float]]] = {"write_run each": [], "write_runs": []}
        with tempfile.TemporaryDirectory() as scratch:
            each = [Path(scratch) / f"each{i}.npz" for i in range(len(found))]
            runs = [Path(scratch) / f"runs{i}.npz" for i in range(len(found))]
            for _ in range(args.repeat):
                times["write_run each"].append(
                    timed(
                        lambda: [
                            bootstrap.write_run(p, f, args.resamples, 0)
                            for p, f in zip(found, each, strict=True)
                        ]
                    )
                )
                times["write_runs"].append(
                    timed(
                        lambda: bootstrap.write_runs(
                            list(zip(found, runs, strict=True)), args.resamples, 0
                        )
                    )
                )
            same = all(a.read_bytes() == b.read_bytes() for a, b in zip(each, runs, strict=True))
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, load "
            f"{os.getloadavg()[0]:.1f}; {len(found)} predictions under {args.results}, "
            f"{args.resamples:,} resamples: import wall {imported[0]:.2f} s, cpu "
            f"{imported[1]:.2f} s; files byte for byte the same: {same}"
        )
        for name, values in times.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(f"{name:>15}: wall {wall:.2f} s, cpu {cpu:.2f} s (median of {len(values)})")
        if not same:
            raise SystemExit("write_runs and write_run made different files")
        return

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        made = time.perf_counter()
        paths = synthetic(
            root, args.runs, args.transcripts, args.per_gene, args.tissues, args.zeros
        )
        made = time.perf_counter() - made
        npz = {run: path.with_name("bootstrap.npz") for run, path in paths.items()}
        warm = max(1, args.resamples // 10)
        bootstrap.bootstrap_runs(dict(list(paths.items())[:1]), warm, 0)  # warm-up
        before: dict = {}
        table = timed(lambda: before.update(bootstrap.bootstrap_runs(paths, args.resamples, 0)))
        per_run = [
            timed(lambda run=run: bootstrap.write_run(paths[run], npz[run], args.resamples, 0))
            for run in paths
        ]
        after: dict = {}
        read = timed(lambda: after.update(bootstrap.read_runs(npz, args.resamples, 0)))
        for run in paths:
            for label in bootstrap.LABELS:
                if before[run][label].tobytes() != after[run][label].tobytes():
                    raise SystemExit(f"{run} {label}: the per-run values differ")

    genes = round(args.transcripts / args.per_gene)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; {args.runs} runs of {args.transcripts:,} test transcripts "
        f"(~{genes:,} genes) x {args.tissues} tissues, {args.resamples:,} resamples "
        f"(inputs written in {made:.0f} s); values byte-identical"
    )
    n = args.runs
    rows = {
        "in the table job (reference)": (table[0] / n, table[1] / n),
        "per-run job": (
            statistics.median(t[0] for t in per_run),
            statistics.median(t[1] for t in per_run),
        ),
        "read in the table job": (read[0] / n, read[1] / n),
    }
    for name, (wall, cpu) in rows.items():
        print(f"{name:>30}: per run wall {wall:.2f} s, cpu {cpu:.2f} s")
    g, t = args.grid, args.tables
    old = rows["in the table job (reference)"][1] * g
    new = rows["per-run job"][1] * g + rows["read in the table job"][1] * g * t
    print(
        f"for {g} runs and {t} tables (products of the above): before {old:.0f} CPU-s per "
        f"table, {old * t:.0f} in all; after {new:.0f} CPU-s in all "
        f"({rows['read in the table job'][1] * g:.1f} per table)"
    )


if __name__ == "__main__":
    main()
