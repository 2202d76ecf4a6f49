"""What the paired bootstrap over test genes (isoflow.report.bootstrap) adds to a table
across runs: rule report_ablation's work (isoflow.report.build.build_ablation) on a
results folder's runs, with the bootstrap and without it (``_bootstrap`` returning none:
the tables as before it), alternating, in one process after a warm-up of each.

Reports the CPU time (time.process_time) and wall time of each variant (median over
repeats) and their ratio, plus the bootstrap alone (``bootstrap.bootstrap_runs`` of every
run and the baseline). Outputs go to a temporary folder; the results folder is only read.

Run: .venv/bin/python bench/bench_report_bootstrap.py --results /work/main/results \
    --config config/demo.yaml --factor aggregator --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import yaml
from benchcommon import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="a results/ folder")
    parser.add_argument("--config", type=Path, default=Path("config/demo.yaml"))
    parser.add_argument("--factor", default="aggregator")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from isoflow.experiments import expand_experiments
    from isoflow.report import bootstrap, build

    experiments = expand_experiments(yaml.safe_load(args.config.read_text()))
    paths = [args.results / "runs" / run / "metrics.json" for run in experiments]
    baseline = args.results / "baseline" / "metrics.json"
    baseline = baseline if baseline.exists() else None
    real = build._bootstrap

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)

        def table(with_bootstrap: bool) -> None:
            build._bootstrap = real if with_bootstrap else (lambda *a, **k: None)
            try:
                build.build_ablation(
                    experiments,
                    paths,
                    args.factor,
                    None,
                    out / "a.html",
                    out / "a.svg",
                    baseline_path=baseline,
                    bootstrap_resamples=args.resamples,
                )
            finally:
                build._bootstrap = real

        times: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
        table(False), table(True)  # warm-up: imports, matplotlib's first figure
        for _ in range(args.repeat):
            for name in ("without", "with"):
                times[name].append(timed(lambda name=name: table(name == "with")))
        predictions = {
            run: Path(p).with_name("predictions.parquet")
            for run, p in zip(experiments, paths, strict=True)
        }
        if baseline is not None:
            predictions["baseline"] = baseline.with_name("predictions.parquet")
        alone = [
            timed(lambda: bootstrap.bootstrap_runs(predictions, args.resamples, 0))
            for _ in range(args.repeat)
        ]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; {len(experiments)} runs"
        f"{' + baseline' if baseline else ''}, {args.resamples} resamples, factor {args.factor}"
    )
    for name, values in (*times.items(), ("bootstrap alone", alone)):
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{name:>16}: wall {wall:.2f} s, cpu {cpu:.2f} s (median of {len(values)})")
    ratio = statistics.median(v[1] for v in times["with"]) / statistics.median(
        v[1] for v in times["without"]
    )
    print(f"ratio with / without (cpu): {ratio:.2f}")


if __name__ == "__main__":
    main()
