"""The bundle check over a whole test split: each exported bundle under
``results/models/`` predicts every test transcript of the dataset from its sequences, and
the largest |bundle - results/runs/{run}/predictions.parquet| is printed (the export rule
checks only the first ``bundle.CHECK_N``). Run after ``make demo``:

    .venv/bin/python bench/bench_bundle_check.py --dataset results/dataset/demo.parquet \\
        --genome resources/demo/genome.fa
"""

from __future__ import annotations

import argparse
from pathlib import Path

from isoflow.cpu import pin_for_command

# torch's CPU kernels held as the workflow held them when it built the caches and the runs'
# predictions, before torch is imported: unheld, on an AVX-512 machine the three demo
# bundles missed their runs by 0.064-0.087 over the test split (2e-5 held; docs/bundle.md)
print(pin_for_command())

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from isoflow.bundle import dataset_inputs, load_model  # noqa: E402
from isoflow.dataset import read_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--genome", required=True)
    parser.add_argument("--models", type=Path, default=Path("results/models"))
    parser.add_argument("--runs", type=Path, default=Path("results/runs"))
    args = parser.parse_args()
    frame, _ = read_dataset(args.dataset)
    test = frame[frame["split"] == "test"]
    inputs = dataset_inputs(test, args.genome)
    for bundle in sorted(p for p in args.models.iterdir() if p.is_dir()):
        model = load_model(bundle, device="cpu")
        got = model.predict(inputs)
        table = pd.read_parquet(args.runs / bundle.name / "predictions.parquet")
        wide = table.pivot(index="transcript_id", columns="tissue", values="predicted")
        expected = wide.loc[list(test["transcript_id"]), model.tissues].to_numpy()
        diff = np.abs(got - expected).max()
        print(f"{bundle.name}\t{len(test)} test transcripts\tmax |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
