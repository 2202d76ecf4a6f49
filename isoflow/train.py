"""Training one experiment with Lightning, then scoring its best checkpoint on the test split.

``run_experiment`` writes into ``run_dir``:

- ``checkpoints/`` — ``last.ckpt`` every epoch plus the best by ``val_loss``, and
  ``fingerprint.json``: what they were trained from (``run_fingerprint``). A run finds
  ``last.ckpt`` (or a newer SLURM ``hpc_ckpt_*.ckpt`` from Lightning's auto-requeue) and
  continues from it, so a killed job that is started again picks up where it stopped. The
  checkpoints hold the RNG states and the per-epoch history too, and batches are drawn
  from a sampler seeded by (seed, epoch): a resumed CPU run ends with the same metrics
  as an uninterrupted one.
- ``previous/<hash>/`` — checkpoints trained with other settings or data, moved aside whole
  (never deleted) when the fingerprint changes; ``<hash>`` is ``fingerprint_hash`` of their
  ``fingerprint.json``. Going back to those settings moves them back and resumes them.
- ``history.csv`` — one row per epoch: epoch, train_loss, val_loss, val_r2, val_spearman,
  val_pearson.
- ``metrics.json`` and ``predictions.parquet`` (transcript_id, gene_id, tissue, observed,
  predicted) for the test split, from the checkpoint with the lowest ``val_loss``.

Every output is written atomically. Step-level logs go to ``csv_logs/metrics.csv``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from isoflow import provenance
from isoflow.data import IsoformDataModule
from isoflow.errors import InputError, atomic_path
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.experiments import run_name
from isoflow.metrics import evaluate, predictions_frame
from isoflow.model.encoders import build_encoder, spec_from_config
from isoflow.model.isoformer import IsoFormer
from isoflow.settings import encoder_names, model_config, train_config

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_r2", "val_spearman", "val_pearson"]


# Train keys that cannot change the trained weights: left out of the run's fingerprint, so
# changing them (e.g. on the cluster) resumes the trained model instead of setting it aside.
# eval_batch_size: the validation and test loaders draw the same RNG whatever their batch
# size, so the weights are bit-identical (measured: DESIGN.md, train); only the logged val_loss
# moves by float rounding (~1e-7 relative). Not num_workers: with workers the loader's seed
# is drawn from the global RNG once (persistent workers), not once per epoch, so dropout
# masks, hence the weights, differ from epoch 1 on (measured).
NOT_IN_FINGERPRINT = ("progress_bar", "log_every_n_steps", "eval_batch_size")
FINGERPRINT_FILE = "fingerprint.json"
# Steps between two checks of the losses for NaN/inf (and at each epoch's end): each check
# waits for the device and, under DDP, all-reduces one flag.
CHECK_FINITE_EVERY = 50


class IsoFormerModule(pl.LightningModule):
    """IsoFormer trained with MSE on per-tissue log1p(TPM); AdamW."""

    def __init__(
        self,
        config: dict,
        experiment: dict,
        tissues: list[str],
        cached_dims: dict[str, int] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.tissues = list(tissues)
        model = model_config(config)
        self.train_cfg = train_config(config)
        cached_dims = dict(cached_dims or {})
        encoders = {
            modality: build_encoder(name, spec_from_config(config, name))
            for modality, name in encoder_names(config, experiment).items()
            if modality not in cached_dims
        }
        self.model = IsoFormer(
            n_tissues=len(tissues),
            encoders=encoders,
            dims=cached_dims,
            aggregator=experiment["aggregator"],
            d_model=model["d_model"],
            depth=model["depth"],
            heads=model["heads"],
            dropout=model["dropout"],
            n_latents=model["n_latents"],
        )
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        # (split, epoch, step, loss, batch indices) of the steps since the last finiteness check
        self._unchecked: list[tuple[str, int, int, torch.Tensor, torch.Tensor]] = []

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(self.model.tokenize(batch["inputs"], self.device))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self(batch).float(), batch["target"])
        self.record_loss(loss, batch, "train")
        self.log(
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(batch["target"]),
        )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        predicted = self(batch).float()
        loss = torch.nn.functional.mse_loss(predicted, batch["target"])
        self.record_loss(loss, batch, "valid")
        self.log(
            "val_loss",
            loss,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=len(batch["target"]),
        )
        self._val_outputs.append((predicted.detach(), batch["target"]))

    def record_loss(self, loss: torch.Tensor, batch: dict, split: str) -> None:
        """Keep the step's loss on its device for ``check_finite``, which runs every
        ``CHECK_FINITE_EVERY`` steps and at the end of each validation and training epoch:
        testing each loss at once would make the host wait for the device at every step."""
        record = (split, self.current_epoch, self.global_step, loss.detach(), batch["index"])
        self._unchecked.append(record)
        if len(self._unchecked) >= CHECK_FINITE_EVERY:
            self.check_finite()

    def check_finite(self) -> None:
        """Stop with one line when a loss since the last check is NaN or infinite, naming the
        run, the epoch and step, and the likely cause: a non-finite target (named by
        transcript and tissue), a non-finite cached input, or, when both are finite,
        diverging optimisation.

        Collective: every rank calls it at the same step (ranks run equally many steps), the
        verdict is reduced over ranks, and all raise the same line, so a rank whose batches
        were finite stops too instead of waiting in the next all-reduce."""
        records, self._unchecked = self._unchecked, []
        bad = ~torch.isfinite(torch.stack([r[3] for r in records])) if records else None
        local = bool(bad.any()) if bad is not None else False
        if not self.trainer.strategy.reduce_boolean_decision(local, all=False):
            return
        first = records[int(bad.nonzero()[0, 0])] if local else None
        # (epoch, step, diverged, rank, error): the earliest step over the ranks, a named cause
        # before divergence (a rank's inf target makes every rank's weights NaN after the step)
        found = None
        if local:
            diverged, error = self._non_finite_error(first)
            found = (first[1], first[2], diverged, self.global_rank, error)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, found)
            found = min(f for f in gathered if f is not None)
        raise InputError(*found[4])

    def _non_finite_error(self, record: tuple) -> tuple[bool, tuple[Any, Any, str]]:
        """(diverged, (path, record, message) of the InputError) for a step with a non-finite
        loss; the batch is rebuilt from the datamodule by its row indices to find the cause,
        and ``diverged`` is True when none was found."""
        split, epoch, step, loss, index = record
        where = (
            f"run {run_name(self.hparams.experiment)}: {split} loss is {loss.item()} "
            f"at epoch {epoch}, step {step}"
        )
        datamodule = getattr(self.trainer, "datamodule", None)
        frame = getattr(datamodule, "frames", {}).get(split)
        dataset = getattr(datamodule, "datasets", {}).get(split)
        if frame is not None and dataset is not None:
            rows = index.cpu().numpy()
            batch = datamodule.collate([dataset[int(i)] for i in rows])
            target = batch["target"].numpy()
            bad = np.argwhere(~np.isfinite(target))
            if len(bad):
                row, column = bad[0]
                return False, (
                    getattr(datamodule, "dataset_path", None),
                    frame["transcript_id"].iat[rows[row]],
                    f"{where}: {len(bad)} non-finite targets in the batch, first "
                    f"{self.tissues[column]} = {target[row, column]}; the dataset's targets "
                    "must be finite log1p(TPM) (an overflowing TPM in the expression matrix?)",
                )
            for modality, value in batch["inputs"].items():
                if not isinstance(value, tuple):
                    continue  # raw sequences: tokens are integers
                emb, mask = value
                finite = torch.isfinite(emb).all(dim=-1) | ~mask.bool()
                if not finite.all():
                    row = int(torch.nonzero(~finite.all(dim=1))[0, 0])
                    return False, (
                        getattr(datamodule, "cache_dirs", {}).get(modality),
                        frame["transcript_id"].iat[rows[row]],
                        f"{where}: non-finite cached {modality} embeddings; rebuild the cache "
                        "(rule embed)",
                    )
        return True, (
            self.trainer.default_root_dir,
            None,
            f"{where}: targets and cached inputs of the batch are finite, so the training "
            f"diverged (or an encoder overflowed); lower train.lr "
            f"(now {self.train_cfg['lr']}) or use 32-bit precision",
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint from another version of the model (e.g. before the aggregators kept
        feature statistics) stops the resume with one line instead of a state-dict dump."""
        expected = set(self.state_dict())
        found = set(checkpoint.get("state_dict", {}))
        if found != expected:
            differ = sorted(expected - found) + sorted(found - expected)
            run_dir = Path(self.trainer.default_root_dir)
            aside = shlex.quote(str(run_dir / "previous" / "unfit"))
            raise InputError(
                getattr(self.trainer, "ckpt_path", None),
                None,
                f"checkpoint does not fit this model ({len(differ)} parameters or buffers "
                f"differ, e.g. {differ[0]}; written by another isoflow version?): to keep it "
                f"and train afresh, move the run's checkpoints aside, `mkdir -p {aside} && mv "
                f"{shlex.quote(str(run_dir / 'checkpoints'))} {aside}/` (and any "
                f"{shlex.quote(str(run_dir))}/hpc_ckpt_*.ckpt), then run it again",
            )

    def on_train_epoch_end(self) -> None:
        self.check_finite()  # before the epoch's checkpoint is written

    def on_validation_epoch_end(self) -> None:
        self.check_finite()  # before non-finite predictions reach the metrics
        if not self._val_outputs:
            return
        predicted = torch.cat([p for p, _ in self._val_outputs])
        observed = torch.cat([t for _, t in self._val_outputs])
        self._val_outputs.clear()
        # every rank gathers everything, so all ranks log the same values
        predicted = self.all_gather(predicted).reshape(-1, len(self.tissues)).cpu().numpy()
        observed = self.all_gather(observed).reshape(-1, len(self.tissues)).cpu().numpy()
        genes = np.arange(len(observed)).astype(str)  # within-gene ranking not needed here
        mean = evaluate(genes, observed, predicted, self.tissues)["mean"]
        for key, value in mean.items():
            self.log(f"val_{key}", float("nan") if value is None else value, sync_dist=False)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            params,
            lr=float(self.train_cfg["lr"]),
            weight_decay=float(self.train_cfg["weight_decay"]),
        )


class History(Callback):
    """Per-epoch losses and validation metrics, kept in the checkpoint so that a resumed
    run's history has every epoch exactly once."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        for column in HISTORY_COLUMNS[1:]:
            value = metrics.get(column)
            row[column] = float(value) if value is not None else float("nan")
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


class RngState(Callback):
    """Python, NumPy and torch RNG states saved with each checkpoint and restored on resume
    (Lightning does not), so dropout and loader seeds continue as if never interrupted."""

    # Plain ints, lists and tensors only: Lightning loads checkpoints with weights_only=True.
    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        name, keys, pos, has_gauss, cached = np.random.get_state()
        return {
            "python": [version, list(internal), gauss],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if torch.cuda.is_available() and state_dict["cuda"]:
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def run_fingerprint(
    config: dict,
    experiment: dict,
    dataset_path,
    cache_dirs: dict[str, str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """What a checkpoint was trained from: every setting that shapes training with its
    default filled in (so a changed default counts as a change), the specs of the encoders
    the experiment uses, the dataset by the sha256 of its content (a dataset rebuilt
    identically keeps its checkpoints; the digest a provenance record holds for the file's
    current size, mtime and ctime is reused rather than the file read again), and each
    embedding cache the run reads by the size and modification time of its files (caches are
    large; a rebuilt cache counts as new)."""
    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    train = {k: v for k, v in train_config(config).items() if k not in NOT_IN_FINGERPRINT}
    dataset_sha256 = provenance.cached_digest(dataset_path)
    caches = {
        modality: {
            f.name: [f.stat().st_size, f.stat().st_mtime_ns]
            for f in sorted(Path(folder).iterdir())
            if f.is_file()
        }
        for modality, folder in sorted((cache_dirs or {}).items())
    }
    settings = {
        "version": 3,  # 3: aggregators standardise features (checkpoints of 2 cannot load)
        "model": model_config(config),
        "train": train,
        "encoders": {
            name: spec_from_config(config, name)
            for name in sorted(set(encoder_names(config, experiment).values()))
        },
        "rna": config.get("rna"),
        "protein": config.get("protein"),
        "experiment": experiment,
        "dataset": {"sha256": dataset_sha256},
        "caches": caches,
    }
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def fingerprint_hash(fingerprint: dict[str, Any] | None) -> str:
    """12 hex digits naming a fingerprint (the folder under ``previous/``)."""
    if fingerprint is None:
        return "unrecorded"  # checkpoints from before fingerprints were written
    text = json.dumps(fingerprint, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _read_fingerprint(ckpt_dir: Path) -> dict[str, Any] | None:
    """The recorded fingerprint; None when there is none or it is not JSON (then the
    checkpoints count as trained for other settings and are kept aside, not trusted)."""
    record = ckpt_dir / FINGERPRINT_FILE
    try:
        fingerprint = json.loads(record.read_text()) if record.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is not JSON: its checkpoints count as unrecorded", record)
        return None
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("train"), dict):
        # keys left out since the record was written (eval_batch_size) still match
        for key in NOT_IN_FINGERPRINT:
            fingerprint["train"].pop(key, None)
    return fingerprint


def prepare_checkpoints(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Make ``checkpoints/`` hold the checkpoints of exactly this fingerprint, deleting none.

    Checkpoints written for other settings or data are moved, with the run's SLURM
    ``hpc_ckpt_*.ckpt``, to ``previous/<fingerprint_hash>/``; checkpoints kept there for this
    fingerprint (trained before with the same settings) are moved back, to resume from.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    previous = run_dir / "previous"
    if ckpt_dir.exists():
        recorded = _read_fingerprint(ckpt_dir)
        if recorded == fingerprint:
            return
        hpc = list(run_dir.glob("hpc_ckpt_*.ckpt"))
        if hpc or any(p.name != FINGERPRINT_FILE for p in ckpt_dir.iterdir()):
            name = fingerprint_hash(recorded)
            dest, n = previous / name, 1
            while dest.exists():
                dest, n = previous / f"{name}-{n}", n + 1
            for path in hpc:
                path.rename(ckpt_dir / path.name)
            previous.mkdir(parents=True, exist_ok=True)
            ckpt_dir.rename(dest)
            log.warning("%s was trained with other settings or data: kept in %s", ckpt_dir, dest)
        else:  # only a fingerprint: nothing was trained (a run stopped before its first epoch)
            (ckpt_dir / FINGERPRINT_FILE).unlink(missing_ok=True)
            ckpt_dir.rmdir()
    kept = previous / fingerprint_hash(fingerprint)
    if kept.is_dir() and _read_fingerprint(kept) == fingerprint:
        kept.rename(ckpt_dir)
        for path in ckpt_dir.glob("hpc_ckpt_*.ckpt"):
            path.rename(run_dir / path.name)
        log.info("%s: checkpoints of these settings restored from %s", ckpt_dir, kept)
        return
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(ckpt_dir / FINGERPRINT_FILE) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=2) + "\n")


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest of ``checkpoints/last.ckpt`` and SLURM auto-requeue ``hpc_ckpt_*.ckpt``."""
    candidates = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def _strategy(train: dict):
    """``ddp`` finds unused parameters: the encoders keep heads (ESM-2's LM and contact
    heads, NT's pooler) that the embeddings never use, which plain DDP rejects."""
    if train["strategy"] == "ddp":
        return DDPStrategy(find_unused_parameters=True)
    return train["strategy"]


def _precision(train: dict) -> str:
    if train["precision"]:
        return str(train["precision"])
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


@torch.no_grad()
def predict(module: IsoFormerModule, loader, precision: str) -> np.ndarray:
    """(n, n_tissues) predictions in dataset order."""
    module.eval()
    device = module.device
    autocast = device.type == "cuda" and precision.startswith("bf16")
    out = np.zeros((len(loader.dataset), len(module.tissues)), dtype=np.float32)
    for batch in loader:
        batch = module.transfer_batch_to_device(batch, device, 0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            predicted = module(batch).float()
        out[batch["index"].cpu().numpy()] = predicted.cpu().numpy()
    return out


def write_outputs(
    run_dir: Path,
    frame: pd.DataFrame,
    tissues: list[str],
    predicted: np.ndarray,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """Write predictions, history and metrics of the test split; non-finite observed or
    predicted values are an error before anything is written."""
    observed = frame[tissues].to_numpy(dtype=np.float64)
    for name, values in (("observed target", observed), ("prediction", predicted)):
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            row, column = bad[0]
            raise InputError(
                run_dir,
                frame["transcript_id"].iat[row],
                f"test {name} for {tissues[column]} is {values[row, column]} "
                f"({len(bad)} non-finite values); no metrics written",
            )
    metrics = evaluate(frame["gene_id"].to_numpy(), observed, predicted, tissues)
    text = json.dumps(metrics, indent=2, allow_nan=False) + "\n"  # strict JSON, or raise here
    predictions = predictions_frame(frame, tissues, predicted)
    with atomic_path(run_dir / "predictions.parquet") as tmp:
        predictions.to_parquet(tmp, index=False)
    with atomic_path(run_dir / "history.csv") as tmp:
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(text)
    return metrics


def run_experiment(
    config: dict,
    experiment: dict,
    dataset_path: str | os.PathLike,
    run_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike | None = None,
    cache_dirs: dict[str, str | os.PathLike] | None = None,
) -> dict[str, Any] | None:
    """Train (or resume) one experiment and write its outputs; returns the test metrics on
    the global-zero process (None on the others)."""
    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    run_dir = Path(run_dir)
    train = train_config(config)
    seed = int(experiment["seed"])
    pl.seed_everything(seed, workers=True)

    cache_dirs = dict(cache_dirs or {})
    data = IsoformDataModule(
        dataset_path,
        experiment["modalities"],
        genome_fasta=genome_fasta,
        cache_dirs=cache_dirs,
        batch_size=int(train["batch_size"]),
        eval_batch_size=train["eval_batch_size"],
        num_workers=int(train["num_workers"]),
        fraction=float(experiment["fraction"]),
        shuffle_targets=bool(experiment["shuffle_targets"]),
        seed=seed,
        rna_max_nt=(config.get("rna") or {}).get("max_nt"),
        rna_truncate=(config.get("rna") or {}).get("truncate", "keep_5prime"),
        protein_max_aa=(config.get("protein") or {}).get("max_aa"),
    )
    data.setup("fit")
    cached_dims = {m: data.collate.caches[m].dim for m in data.collate.caches}
    module = IsoFormerModule(config, experiment, data.tissues, cached_dims)

    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
    )
    history = History()
    callbacks = [
        history,
        RngState(),
        EarlyStopping(monitor="val_loss", mode="min", patience=int(train["patience"])),
        checkpoint,
    ]
    plugins = [SLURMEnvironment(auto_requeue=True)] if SLURMEnvironment.detect() else None
    precision = _precision(train)
    trainer = pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=int(train["max_epochs"]),
        accelerator=train["accelerator"],
        devices=train["devices"],
        strategy=_strategy(train),
        precision=precision,
        deterministic=train["deterministic"],  # True, False or "warn"
        callbacks=callbacks,
        logger=CSVLogger(run_dir, name="csv_logs", version=""),
        plugins=plugins,
        enable_progress_bar=bool(train["progress_bar"]),
        log_every_n_steps=int(train["log_every_n_steps"]),
        num_sanity_val_steps=0,  # a sanity pass would draw RNG before the resumed state
    )
    # Before fit no process group exists yet; the rank comes from the launcher's environment
    # (DDP children are started inside fit, after this ran on rank 0).
    if rank_zero_only.rank == 0:
        fingerprint = run_fingerprint(config, experiment, dataset_path, cache_dirs)
        prepare_checkpoints(run_dir, fingerprint)
    resume = resume_checkpoint(run_dir)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer.fit(module, datamodule=data, ckpt_path=resume)

    if not trainer.is_global_zero:
        return None
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if not best or not Path(best).is_file():
        raise InputError(run_dir / "checkpoints", None, "training left no checkpoint")
    log.info("testing %s", best)
    state = torch.load(best, map_location=module.device, weights_only=False)
    module.load_state_dict(state["state_dict"])
    predicted = predict(module, data.test_dataloader(), precision)
    metrics = write_outputs(run_dir, data.frames["test"], data.tissues, predicted, history.rows)
    log.info(
        "test mean %s, within-gene spearman %s", metrics["mean"], metrics["within_gene_spearman"]
    )
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train one isoflow experiment.")
    parser.add_argument("--config", required=True, help="YAML config (model/train/encoders)")
    parser.add_argument("--experiment", required=True, help="experiment as JSON")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--genome", default=None)
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_experiment(config, json.loads(args.experiment), args.dataset, args.run_dir, args.genome)


if __name__ == "__main__":
    main()
