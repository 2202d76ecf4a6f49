"""Training time per batch: encoders run on raw sequences (frozen or fine-tuned) vs the cache.

Same dataset, same experiment (DNA + RNA + protein, cross-attention), same batches; the
reference is the raw-sequence run in the same process. Prints one line per mode and the
ratio. Needs the demo dataset and its three caches:

    .venv/bin/snakemake --cores 2 --configfile config/demo.yaml -- \\
        results/embeddings/enformer results/embeddings/nucleotide_transformer \\
        results/embeddings/esm2
    .venv/bin/python bench/bench_train_cache.py --config config/demo.yaml --batches 8
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

# as the workflow sets it for every job (rules/common.smk), before torch loads OpenMP: with
# set_num_threads(2) on a loaded machine, spinning threads inflated the cache steps several
# fold and so shrank the ratio this bench reports (a value set by the user wins)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from isoflow.lightning import IsoFormerModule  # noqa: E402
from isoflow.loader import IsoformDataModule  # noqa: E402
from isoflow.settings import encoder_names, model_config, train_config  # noqa: E402


class BatchTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._start)


def time_mode(
    config: dict, experiment: dict, dataset: Path, cached: bool, batches: int, finetune: bool
):
    config = copy.deepcopy(config)
    names = encoder_names(config, experiment)
    for name in names.values():
        config["encoders"][name]["finetune_last"] = -1 if finetune else 0
    cache_dirs = {m: f"results/embeddings/{n}" for m, n in names.items()} if cached else {}
    train = train_config(config)
    pl.seed_everything(0)
    data = IsoformDataModule(
        dataset,
        experiment["modalities"],
        cache_dirs=cache_dirs,
        batch_size=int(train["batch_size"]),
        rna_max_nt=config["rna"]["max_nt"],
        protein_max_aa=config["protein"]["max_aa"],
    )
    data.setup()
    dims = {m: c.dim for m, c in data.collate.caches.items()}
    module = IsoFormerModule(config, experiment, data.tissues, dims)
    timer = BatchTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=batches + 1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=data)
    steady = timer.times[1:]  # the first batch pays one-off costs
    n_batches = len(data.train_dataloader())
    return statistics.median(steady), n_batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="config/demo.yaml")
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    torch.set_num_threads(2)
    dataset = Path(f"results/dataset/{config['dataset']['name']}.parquet")
    experiment = {
        "modalities": ["dna", "rna", "protein"],
        "dna_encoder": "enformer",
        "aggregator": "cross_attention",
    }
    print(f"model {model_config(config)}")
    results = {}
    modes = {
        "raw, frozen encoders": (False, False),
        "raw, encoders fine-tuned end to end": (False, True),
        "cache": (True, False),
    }
    for label, (cached, finetune) in modes.items():
        per_batch, n_batches = time_mode(
            config, experiment, dataset, cached, args.batches, finetune
        )
        results[label] = per_batch
        print(
            f"{label}: {per_batch:.4f} s/batch (median of {args.batches}), "
            f"{n_batches} batches/epoch -> {per_batch * n_batches:.1f} s/epoch"
        )
    for label in list(modes)[:2]:
        print(f"{label} / cache = {results[label] / results['cache']:.1f}x")


if __name__ == "__main__":
    main()
