"""CPU seconds per cache-mode training epoch of one demo run: this checkout against a reference
commit, in the same invocation, and whether the run's outputs are byte-identical: per file,
metrics.json compared on the keys both sides record (the keys only one side has are named).

Each side trains the run afresh from the demo's embedding caches in a process of its own
(one torch thread, as the demo's train workers), ``isoflow.train.run_experiment`` with the
settings and experiment stored in the run's checkpoint (the workflow's ``params.settings``),
and records the process CPU time from each epoch's start to the next (training steps,
validation, checkpoints). The sides alternate ``--repeats`` times; the reference's package is
``git archive``'d from ``--reference`` into a temporary folder. Needs the demo's results:

    .venv/bin/python bench/bench_train_epoch.py --results results \\
        --run dna+rna+protein_enformer_cross_attention_s2 --reference 520d868 --repeats 2
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("metrics.json", "predictions.parquet", "history.csv")


def worker(results: Path, run: str, out: Path, report: Path) -> None:
    """Train ``run`` into ``out`` with the ``isoflow`` on sys.path; epoch CPU times to
    ``report`` (JSON)."""
    from benchcommon import hold_to_tree  # this script's folder: bench/

    # isoflow from PYTHONPATH's tree only: the editable install's finder would otherwise
    # supply any module the reference tree lacks from this checkout
    hold_to_tree(os.environ["PYTHONPATH"])
    import pytorch_lightning as pl
    import torch

    torch.set_num_threads(1)
    from isoflow.train import run_experiment

    starts: list[float] = []

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            starts.append(time.process_time())

        def on_train_end(self, trainer, module) -> None:
            starts.append(time.process_time())

    original = pl.Trainer.__init__

    def with_timer(self, *args, **kwargs) -> None:
        kwargs["callbacks"] = [EpochTimer(), *kwargs.get("callbacks", [])]
        original(self, *args, **kwargs)

    pl.Trainer.__init__ = with_timer
    saved = torch.load(results / "runs" / run / "checkpoints" / "last.ckpt", weights_only=False)
    config, experiment = (
        saved["hyper_parameters"]["config"],
        saved["hyper_parameters"]["experiment"],
    )
    suffix = "-positional" if experiment.get("pooling") == "positional" else ""
    names = {
        "dna": experiment.get("dna_encoder", "enformer"),
        "rna": config["model"]["rna_encoder"],
        "protein": config["model"]["protein_encoder"],
    }
    caches = {
        m: str(results / "embeddings" / f"{names[m]}{suffix}") for m in experiment["modalities"]
    }
    cpu = time.process_time()
    run_experiment(config, experiment, results / "dataset" / "demo.parquet", out, cache_dirs=caches)
    total = time.process_time() - cpu
    epochs = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    report.write_text(json.dumps({"epochs": epochs, "run_cpu": total}))


def compare_outputs(first: Path, other: Path) -> dict[str, str]:
    """Per output file: how ``other``'s compares with ``first``'s. metrics.json is compared on
    the keys both have (a side may record keys the other predates), naming the rest."""
    verdicts = {}
    for name in OUTPUTS:
        a, b = first / name, other / name
        if not (a.exists() and b.exists()):
            verdicts[name] = f"missing in {a.parent if not a.exists() else b.parent}"
        elif filecmp.cmp(a, b, shallow=False):
            verdicts[name] = "identical"
        elif name == "metrics.json":
            left, right = json.loads(a.read_text()), json.loads(b.read_text())
            shared = sorted(set(left) & set(right))
            differ = [k for k in shared if left[k] != right[k]]
            verdict = (
                f"differs on {differ}" if differ else f"identical on the {len(shared)} shared keys"
            )
            for side, keys in (
                (first.name, set(left) - set(right)),
                (other.name, set(right) - set(left)),
            ):
                if keys:
                    verdict += f"; only {side} has {sorted(keys)}"
            verdicts[name] = verdict
        else:
            verdicts[name] = "DIFFERENT"
    return verdicts


def side(name: str, pythonpath: Path, args, scratch: Path, repeat: int) -> dict:
    out = scratch / f"{name}{repeat}"
    report = scratch / f"{name}{repeat}.json"
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_WAIT_POLICY": "PASSIVE"}
    command = [sys.executable, __file__, "--worker", "--results", str(args.results)]
    command += ["--run", args.run, "--out", str(out), "--report", str(report)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {name} side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(report.read_text()), "out": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--run", default="dna+rna+protein_enformer_cross_attention_s2")
    parser.add_argument("--reference", default="520d868", help="commit of the old code path")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.results = args.results.resolve()
    if args.worker:
        worker(args.results, args.run, args.out, args.report)
        return
    with tempfile.TemporaryDirectory(prefix="bench_train_epoch_") as tmp:
        scratch = Path(tmp)
        archive = subprocess.run(
            ["git", "archive", args.reference, "isoflow"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        (scratch / "ref.tar").write_bytes(archive)
        with tarfile.open(scratch / "ref.tar") as tar:
            tar.extractall(scratch / "reference", filter="data")
        sides = {"reference": scratch / "reference", "current": ROOT}
        timed: dict[str, list[dict]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name, path in sides.items():
                timed[name].append(side(name, path, args, scratch, repeat))
        print(f"run {args.run}, reference {args.reference}, {args.repeats} repeats, 1 thread")
        medians = {}
        for name, runs in timed.items():
            epochs = [e for r in runs for e in r["epochs"]]
            medians[name] = statistics.median(epochs)
            print(
                f"{name:9s}: {len(runs[0]['epochs'])} epochs, CPU-s per epoch median "
                f"{medians[name]:.3f} (min {min(epochs):.3f}), whole run CPU-s "
                + ", ".join(f"{r['run_cpu']:.2f}" for r in runs)
            )
        print(
            "ratio current / reference (median epoch): "
            f"{medians['current'] / medians['reference']:.2f}"
        )
        first = timed["reference"][0]["out"]
        for name, runs in timed.items():
            for r in runs:
                verdicts = compare_outputs(first, r["out"])
                print(
                    f"{name} {r['out'].name} against reference0: "
                    + "; ".join(f"{f} {v}" for f, v in verdicts.items())
                )


if __name__ == "__main__":
    main()
