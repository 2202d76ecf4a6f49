"""DDP on one node: two CPU processes over gloo train one experiment and rank 0 reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from isoflow.dataset import read_dataset

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import TINY_CONFIG, TISSUES, make_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_ddp_two_cpu_processes(tmp_path):
    dataset, _ = make_dataset(tmp_path)
    config = json.loads(json.dumps(TINY_CONFIG))
    config["train"].update({"max_epochs": 2, "accelerator": "cpu", "devices": 2, "strategy": "ddp"})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    # Lightning's DDP launcher starts rank 1 by re-running this command line: a module
    # entry point (python -m) is what it can re-run.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "isoflow.train",
            "--config",
            str(config_path),
            "--experiment",
            json.dumps({"modalities": ["rna", "protein"]}),
            "--dataset",
            str(dataset),
            "--run-dir",
            str(run_dir),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_size: 2" in result.stderr or "distributed_backend=gloo" in result.stderr

    df, _ = read_dataset(dataset)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_test"] == int((df["split"] == "test").sum())
    assert list(metrics["per_tissue"]) == TISSUES
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert history["val_loss"].notna().all()
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(predictions) == metrics["n_test"] * len(TISSUES)
