"""The Lightning side of training: the LightningModule and the callbacks its checkpoints carry.

``IsoFormerModule`` trains ``isoflow.model.isoformer.IsoFormer`` with MSE on per-tissue
log1p(TPM) and AdamW, logs validation R², Spearman and Pearson each epoch, and stops the run
with one line on a non-finite loss (``check_finite``; DESIGN.md, "metrics.json"). ``History``
(the rows of ``history.csv``) and ``RngState`` (Python, NumPy and torch RNG states) ride in
each checkpoint, so a resumed run continues as if never interrupted. ``isoflow.train`` puts
them together into a run; ``isoflow.checkpoints`` says where checkpoints go.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import random
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason
from pytorch_lightning.plugins import TorchCheckpointIO

from isoflow.checkpoints import HPC_CHECKPOINTS, set_aside_command
from isoflow.errors import InputError
from isoflow.experiments import run_name
from isoflow.files import atomic_path
from isoflow.metrics import tissue_means
from isoflow.model.encoders import build_encoder, spec_from_config
from isoflow.model.isoformer import IsoFormer
from isoflow.requeue import requeue_job, slurm_job_id  # noqa: F401 (isoflow.lightning.requeue_job)
from isoflow.settings import encoder_names, model_config, train_config

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_r2", "val_spearman", "val_pearson"]
# Steps between two checks of the losses for NaN/inf (and at each epoch's end): each check
# waits for the device and, under DDP, all-reduces one flag.
CHECK_FINITE_EVERY = 50
# train.cuda_graph captures its steps; False runs the same steps without capture, on any
# device: for tests only (a CPU cannot capture; CI has no GPU)
GRAPH_CAPTURE = True


def last_step_of_epoch(trainer: pl.Trainer) -> bool:
    """Whether the training step under way is the epoch's last: the loader's last batch
    (Lightning fetches one batch ahead, ``limit_train_batches`` counted) or the step that
    reaches ``max_steps``."""
    if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
        return True
    return trainer.max_steps >= 0 and trainer.global_step + 1 >= trainer.max_steps


class EpochMean:
    """The running sum of loss x batch size and the sample count of an epoch's steps, kept as
    Lightning's ``_ResultMetric`` keeps a ``self.log(..., on_epoch=True)`` value (a float32
    tensor plus ``loss * batch_size``, an int64 tensor plus ``batch_size``), so the mean is
    the same float."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count: torch.Tensor | None = None
        self.logged = False

    def add(self, loss: torch.Tensor, batch_size: int) -> None:
        loss = loss.detach()
        if self.total is None:
            # Lightning's dtype for logged values: the default dtype, at least float32
            dtype = torch.get_default_dtype()
            dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
            self.total = torch.tensor(0.0, dtype=dtype, device=loss.device)
            self.count = torch.tensor(0, device=loss.device)
        self.total = self.total + loss * batch_size
        self.count = self.count + batch_size


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
        # (predicted, observed, dataset row index) of each validation step
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._train_loss = EpochMean()
        self._val_loss = EpochMean()
        # (split, epoch, step, loss, batch indices) of the steps since the last finiteness check
        self._unchecked: list[tuple[str, int, int, torch.Tensor, torch.Tensor]] = []
        # train.cuda_graph: the step (forward, backward, clipping, AdamW) replayed from CUDA
        # graphs (isoflow.graph_step.GraphStep), so Lightning does not run the optimiser
        self.cuda_graph = bool(self.train_cfg.get("cuda_graph", False))
        self.automatic_optimization = not self.cuda_graph
        self.graph_capture = GRAPH_CAPTURE
        self._graph_step: Any = None

    def forward(self, batch: dict, counted: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(self.model.tokenize(batch["inputs"], self.device), counted=counted)

    def counted_rows(self, batch_idx: int, rows: int) -> np.ndarray | None:
        """Which rows of the epoch's training batch ``batch_idx`` (of ``rows``) count: None
        when all do, as always in one process. Under DDP the sampler pads the ranks' shards
        with repeated transcripts, a rank's last positions of the epoch
        (``loader.EpochSeededSampler.counted``); a repeat trains nothing and enters neither
        the loss, nor ``train_loss``, nor the standardisers' statistics."""
        loader = getattr(self._trainer, "train_dataloader", None)
        counted = getattr(getattr(loader, "sampler", None), "counted", None)
        if counted is None:
            return None
        start = batch_idx * loader.batch_size
        if start + rows <= counted:
            return None
        return np.arange(start, start + rows) < counted

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        target = batch["target"]
        counted = self.counted_rows(batch_idx, len(target))
        if self.cuda_graph:  # one process (config.check_cuda_graph): every row counts
            loss = self._graph_training_step(batch)
            rows = len(target)
        elif counted is None:
            loss = torch.nn.functional.mse_loss(self(batch).float(), target)
            rows = len(target)
        else:
            # the MSE over the counted rows (0, with every parameter in the graph for DDP's
            # gradient all-reduce, when the batch holds only repeats)
            rows = int(counted.sum())
            keep = torch.from_numpy(counted).to(target.device)
            squared = (self(batch, keep).float() - target) ** 2
            squared = torch.where(keep.unsqueeze(-1), squared, 0.0)
            loss = squared.sum() / (max(rows, 1) * target.shape[1])
        self.record_loss(loss, batch, "train")
        self._train_loss.add(loss, rows)
        trainer = self._trainer  # None when a step is called by hand
        if trainer is not None and last_step_of_epoch(trainer):
            self._log_epoch_loss("train_loss", self._train_loss)
        return loss

    def _graph_training_step(self, batch: dict) -> torch.Tensor:
        """``train.cuda_graph``: one step through ``GraphStep`` (gradients, clipping and the
        AdamW update inside the graph), then the LR schedule's step, which fills the
        optimiser's tensor LR in place between replays. Lightning counts the optimiser step
        through the hooks its own manual ``optimizer.step()`` calls."""
        if self._graph_step is None:
            self._graph_step = self._build_graph_step()
        optimizer = self.optimizers()
        optimizer._on_before_step()
        loss = self._graph_step(self.model.tokenize(batch["inputs"], self.device), batch["target"])
        optimizer._on_after_step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        return loss

    def _build_graph_step(self):
        """The run's ``GraphStep``: the trainer's optimiser (its LR a tensor on this device, as
        a checkpoint may have loaded it elsewhere), clipping at ``train.grad_clip``, bf16
        autocast under ``bf16-mixed``, buckets capped at each modality's widest training
        entry."""
        from isoflow.graph_step import GraphStep

        optimizer = self.optimizers().optimizer
        for group in optimizer.param_groups:
            lr = group["lr"]
            if not isinstance(lr, torch.Tensor) or lr.device != self.device:
                group["lr"] = torch.tensor(float(lr), device=self.device)
        precision = str(self.trainer.precision)
        datamodule = getattr(self.trainer, "datamodule", None)
        train_set = getattr(datamodule, "datasets", {}).get("train")
        max_widths = {
            modality: int(rows.length.max())
            for modality, rows in getattr(train_set, "cache_rows", {}).items()
            if len(rows)
        }
        return GraphStep(
            self.model,
            optimizer,
            self.device,
            rows=int(self.train_cfg["batch_size"]),
            grad_clip=self.train_cfg["grad_clip"],
            autocast_dtype=torch.bfloat16 if precision.startswith("bf16") else None,
            max_widths=max_widths,
            capture=self.graph_capture,
        )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        predicted = self(batch).float()
        loss = torch.nn.functional.mse_loss(predicted, batch["target"])
        self.record_loss(loss, batch, "valid")
        self._val_loss.add(loss, len(batch["target"]))
        self._val_outputs.append((predicted.detach(), batch["target"], batch["index"]))

    def on_train_start(self) -> None:
        if self.cuda_graph and self.graph_capture and self.device.type != "cuda":
            raise InputError(
                "config",
                "train.cuda_graph",
                f"true, but the run trains on {self.device.type}: CUDA graphs need a CUDA "
                "GPU; set train.cuda_graph: false, or train.accelerator: gpu on a GPU node",
            )

    def on_train_epoch_start(self) -> None:
        self._train_loss = EpochMean()

    def on_validation_epoch_start(self) -> None:
        self._val_loss = EpochMean()

    def _log_epoch_loss(self, name: str, loss: EpochMean) -> None:
        """Log the epoch's mean loss once, as one ``self.log(name, loss, on_epoch=True,
        sync_dist=True, batch_size=len(batch))`` per step would (the same float32 sum of
        loss x batch size over the steps and, under DDP, the same mean over the ranks of sum
        and count before the division), without that call's cost at every step (a
        ``_ResultMetric`` moved to the loss's device, in each of 34 steps of a demo epoch).
        Training logs it in the epoch's last step, so ``History``, which Lightning calls
        before the module's ``on_train_epoch_end``, finds it; validation in
        ``on_validation_epoch_end``, in one process only (under DDP the ranks' padded
        shards repeat rows: that hook computes it over each valid row once)."""
        if loss.logged or loss.count is None:
            return
        reduce = self.trainer.strategy.reduce
        # the count as a float: the mean of the ranks' int64 counts is truncated, and the
        # ranks' counts differ where the training sampler's repeats are not counted
        count = loss.count.to(loss.total.dtype)
        mean = reduce(loss.total.clone(), reduce_op="mean") / reduce(count, reduce_op="mean")
        loss.logged = True
        self.log(
            name, mean, on_step=False, on_epoch=True, prog_bar=True, sync_dist=False, batch_size=1
        )

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
                    from isoflow.embed import rebuild_hint

                    folder = getattr(datamodule, "cache_dirs", {}).get(modality)
                    return False, (
                        folder,
                        frame["transcript_id"].iat[rows[row]],
                        f"{where}: non-finite cached {modality} embeddings; {rebuild_hint(folder)}",
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
            raise InputError(
                getattr(self.trainer, "ckpt_path", None),
                None,
                f"checkpoint does not fit this model ({len(differ)} parameters or buffers "
                f"differ, e.g. {differ[0]}; written by another isoflow version?): to keep it "
                f"and train afresh, move the run's checkpoints aside, "
                f"`{set_aside_command(run_dir)}` (and any "
                f"{shlex.quote(str(run_dir))}/{HPC_CHECKPOINTS}), then run it again",
            )

    def on_train_epoch_end(self) -> None:
        self.check_finite()  # before the epoch's checkpoint is written
        self._log_epoch_loss("train_loss", self._train_loss)  # if not logged by its last step

    def on_validation_epoch_end(self) -> None:
        """Log ``val_loss`` and the validation metrics. Under DDP each rank holds its shard of
        the valid split, which Lightning's ``DistributedSampler`` pads to equal lengths by
        repeating rows (equal shards: every rank must run as many steps, ``check_finite``):
        the ranks' rows are gathered and each row counted once, so the loss that picks the
        best checkpoint and drives early stopping, and the metrics, are those of the valid
        set, as one process computes them. One process logs the loss as before
        (``_log_epoch_loss``, bit for bit)."""
        self.check_finite()  # before non-finite predictions reach the metrics
        distributed = self.trainer.world_size > 1
        if not distributed:
            self._log_epoch_loss("val_loss", self._val_loss)
        if not self._val_outputs:
            return
        predicted = torch.cat([p for p, _, _ in self._val_outputs])
        observed = torch.cat([t for _, t, _ in self._val_outputs])
        index = torch.cat([i for _, _, i in self._val_outputs])
        self._val_outputs.clear()
        # every rank gathers everything, so all ranks log the same values
        predicted = self.all_gather(predicted).reshape(-1, len(self.tissues))
        observed = self.all_gather(observed).reshape(-1, len(self.tissues))
        if distributed:
            index = self.all_gather(index).reshape(-1).cpu().numpy()
            unique = torch.from_numpy(np.sort(np.unique(index, return_index=True)[1]))
            unique = unique.to(predicted.device)
            predicted, observed = predicted[unique], observed[unique]
            # the loss's definition (MSE over rows and tissues), over each row once
            loss = torch.nn.functional.mse_loss(predicted, observed)
            self._val_loss.logged = True
            self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=False, batch_size=1)
        predicted = predicted.cpu().numpy()
        observed = observed.cpu().numpy()
        # the means of evaluate() without its within-gene Spearman (not logged; a pandas
        # group-by per tissue, a tenth of a demo epoch's CPU time)
        mean = tissue_means(observed, predicted, self.tissues)[1]
        for key, value in mean.items():
            self.log(f"val_{key}", float("nan") if value is None else value, sync_dist=False)

    def configure_optimizers(self):
        """AdamW over the trained parameters, in one group, or with ``decay_norms_biases:
        false`` in two (``parameter_groups``); with a warmup or ``schedule: cosine``, a
        per-step LR schedule (``lr_factor``) over the run's ``max_epochs``."""
        train = self.train_cfg
        weight_decay = float(train["weight_decay"])
        if train["decay_norms_biases"]:
            groups: Any = [p for p in self.parameters() if p.requires_grad]
        else:
            decay, no_decay = parameter_groups(self)
            groups = [
                {"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ]
        # foreach: one multi-tensor update instead of a Python loop over the parameters
        # (the per-tensor loop is what AdamW picks on CPU); bit-identical weights on CPU
        # (tests/unit/test_train.py)
        if self.cuda_graph:
            # the LR a tensor on the device, which the schedule fills in place between graph
            # replays (a float is baked into the graph); capturable: the update's step count
            # and bias corrections stay on the device (a CPU, tests only, takes a tensor LR
            # on the per-tensor path only)
            cuda = self.device.type == "cuda"
            optimizer = torch.optim.AdamW(
                groups,
                lr=torch.tensor(float(train["lr"]), device=self.device),
                weight_decay=weight_decay,
                capturable=cuda,
                foreach=cuda,
            )
        else:
            optimizer = torch.optim.AdamW(
                groups, lr=float(train["lr"]), weight_decay=weight_decay, foreach=True
            )
        if not train["warmup_steps"] and train["schedule"] == "constant":
            return optimizer  # no scheduler: exactly the optimisation of earlier versions
        total = int(self.trainer.estimated_stepping_batches)
        warmup = warmup_steps(train["warmup_steps"], total)
        schedule = train["schedule"]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup, total, schedule)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }


NORM_LAYERS = (
    torch.nn.LayerNorm,
    torch.nn.GroupNorm,
    torch.nn.RMSNorm,
    torch.nn.LocalResponseNorm,
    torch.nn.modules.batchnorm._NormBase,
)


def parameter_groups(module: torch.nn.Module) -> tuple[list, list]:
    """(decayed, not decayed) trained parameters: biases (any parameter named ``bias``) and
    the parameters of normalisation layers (LayerNorm, BatchNorm, RMSNorm, ...) are not
    decayed; weight decay pulls a LayerNorm gain towards 0, not towards its identity 1."""
    no_decay_ids = set()
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            if name == "bias" or name.endswith("_bias") or isinstance(sub, NORM_LAYERS):
                no_decay_ids.add(id(param))
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (no_decay if id(param) in no_decay_ids else decay).append(param)
    return decay, no_decay


def warmup_steps(setting: int | float, total: int) -> int:
    """``train.warmup_steps`` as a count: a fraction in (0, 1) is of ``total`` steps."""
    if 0 < setting < 1:
        return max(1, round(setting * total))
    return int(setting)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """The LR multiplier at optimizer step ``step`` (0-based): linear warmup (step + 1) /
    (warmup + 1) over the first ``warmup`` steps, then 1 (``constant``) or a half cosine from
    1 down to 0 at step ``total`` (``cosine``)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


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
        if trainer.is_global_zero:  # the run's log: what each attempt trained
            log.info(
                "epoch %d: %s",
                row["epoch"],
                ", ".join(f"{column} {row[column]:.6g}" for column in HISTORY_COLUMNS[1:]),
            )

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


class StayStopped(EarlyStopping):
    """Early stopping whose decision holds when the run is resumed.

    Lightning restores EarlyStopping's counters from a checkpoint but not the trainer's
    ``should_stop``. So a run that had stopped early and was resumed from its ``last.ckpt``
    (its job rerun by Snakemake, or requeued by SLURM after its last epoch) trained one more
    epoch: ``history.csv`` gained a row, and the best checkpoint, hence the metrics, could
    change. The stop is kept in the checkpoint (``stopping_reason``, Lightning's own state; each
    rank sets it from its own ``val_loss``, which isoflow computes from every rank's rows, so every
    rank holds the same); a resumed stopped run trains no further epoch and goes straight to
    its test with the best checkpoint it had (tests/unit/test_train.py)."""

    def _generate_state_key(self, **kwargs: Any) -> str:
        # EarlyStopping's key (its state_key names the class): checkpoints written before
        # this class resume its counters
        return f"{EarlyStopping.__qualname__}{kwargs!r}"

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Lightning skips a callback whose state the checkpoint lacks: the counters would
        # start again from zero, and the resumed run end unlike an uninterrupted one
        if self.state_key not in checkpoint.get("callbacks", {}):
            raise InputError(
                trainer.ckpt_path,
                None,
                f"the checkpoint has no early-stopping state ({self.state_key}), so the "
                "resumed run would not end as an uninterrupted one: to keep it and train "
                f"afresh, `{set_aside_command(trainer.default_root_dir)}` (and any "
                f"{shlex.quote(str(trainer.default_root_dir))}/{HPC_CHECKPOINTS}), then run "
                "it again",
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.stopping_reason is not EarlyStoppingReason.NOT_STOPPED:
            log.info(
                "the run had stopped early at epoch %d (%s): no further epoch",
                self.stopped_epoch,
                self.stopping_reason.value,
            )
            trainer.should_stop = True


class MovableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose bookkeeping follows its folder when the run folder moved.

    Lightning stores the absolute folder (``dirpath``) in each checkpoint and, when a resumed
    run's folder is another one (results copied to other scratch space, a workflow run from
    another working directory), keeps only ``best_model_path`` and drops the best score: the
    first epoch after the resume then counted as the best whatever its ``val_loss``, and a run
    whose best epoch came before the move was tested with a worse checkpoint (its metrics
    silently not those of an uninterrupted run; the old best file left behind). The run
    resumes from a checkpoint inside this folder, so the files moved together: each stored
    path under the old folder is mapped to the same name under this one and the whole state
    restored (tests/unit/test_train.py)."""

    def _generate_state_key(self, **kwargs: Any) -> str:
        # ModelCheckpoint's key (its state_key names the class): checkpoints written before
        # this class restore their state
        return f"{ModelCheckpoint.__qualname__}{kwargs!r}"

    def untracked(self) -> list[Path]:
        """The files in its folder named as this callback names its checkpoints
        (``best-epoch*.ckpt``) that its state does not track: a kill after a new best was
        written but before the old one was removed, or before ``last.ckpt`` (then the
        resumed run's state does not know it), left one behind. Only for a callback with a
        ``monitor`` and a ``filename``; call it once its state is restored (after fit)."""
        if not self.monitor or not self.filename or self.dirpath is None:
            return []
        tracked = {
            os.path.realpath(path)
            for path in [*self.best_k_models, self.best_model_path, self.last_model_path]
            if path
        }
        prefix = glob.escape(self.filename.split("{", 1)[0])
        return sorted(
            path
            for path in Path(self.dirpath).glob(f"{prefix}*{self.FILE_EXTENSION}")
            if path.is_file() and os.path.realpath(path) not in tracked
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old is not None and self.dirpath is not None and old != self.dirpath:
            log.info("checkpoint folder moved from %s to %s: its records follow", old, self.dirpath)

            def moved(path: Any) -> Any:
                if not isinstance(path, str) or not path:
                    return path
                relative = os.path.relpath(path, old)
                if relative == os.pardir or relative.startswith(os.pardir + os.sep):
                    return path  # not under the old folder: left as it was
                return os.path.join(self.dirpath, relative)

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": moved(state_dict.get("best_model_path")),
                "kth_best_model_path": moved(state_dict.get("kth_best_model_path")),
                "last_model_path": moved(state_dict.get("last_model_path")),
                "best_k_models": {
                    moved(path): score
                    for path, score in (state_dict.get("best_k_models") or {}).items()
                },
            }
        super().load_state_dict(state_dict)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written in place atomically: ``torch.save`` into a temporary file in the
    checkpoint's own folder, synced to disk, then renamed over the checkpoint
    (``isoflow.files.atomic_path(fsync=True)``).

    Lightning's own (2.6) writes the bytes to a temporary file from ``tempfile.mkstemp()``,
    in ``$TMPDIR``, and ``shutil.move``s it: where ``$TMPDIR`` is another filesystem than
    ``results/`` (a node-local ``/tmp`` against NFS, the SLURM case; Snakemake sets it to the
    job's ``tmpdir``) that is a copy into ``last.ckpt`` itself, so a job killed during the
    copy left a truncated ``last.ckpt`` that every rerun resumed from and died on. Here the
    checkpoint's path holds the previous checkpoint whole, or the new one whole; and a crash
    of the machine cannot leave it renamed but not written. The temporary a killed write
    left (``.last.ckpt.XXXXXXXX.tmp``, as large as a checkpoint) goes at the next write of
    that checkpoint."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        # what a write killed before left (one process writes a run's checkpoints)
        for left in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):
            left.unlink(missing_ok=True)
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
            # to a file object, as Lightning's to a buffer: the archive's inner folder is
            # "archive", not the temporary's name, so the bytes are Lightning's
            torch.save(checkpoint, handle)


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


def parse_time_left(text: str) -> float | None:
    """squeue's time left (``-o %L``) in seconds: ``D-HH:MM:SS``, ``HH:MM:SS`` or ``MM:SS``;
    ``UNLIMITED``: infinity; ``INVALID`` (the limit passed, in an ``OverTimeLimit``): 0;
    ``NOT_SET``: None (not known). Anything else raises ValueError."""
    text = text.strip()
    if text == "UNLIMITED":
        return math.inf
    if text == "INVALID":
        return 0.0
    if text == "NOT_SET":
        return None
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d\d)", text)
    if match is None or (match[1] is not None and match[2] is None):
        raise ValueError(f"not a SLURM time left: {text!r}")
    days, hours, minutes, secs = (int(part or 0) for part in match.groups())
    if secs >= 60 or (match[2] is not None and minutes >= 60):
        raise ValueError(f"not a SLURM time left: {text!r}")
    return float(((days * 24 + hours) * 60 + minutes) * 60 + secs)


def _squeue(job: str, field: str) -> str:
    """squeue's ``field`` (an ``-o`` format) of SLURM job ``job``, without a header; raises
    OSError when squeue fails."""
    done = subprocess.run(
        ["squeue", "-h", "-j", job, "-o", field], capture_output=True, text=True, timeout=60
    )
    if done.returncode:
        raise OSError(f"squeue -j {job} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def squeue_time_left(job: str) -> float | None:
    """Seconds this job has left before its time limit (squeue ``%L``: it follows a limit
    changed with ``scontrol update``); raises OSError or ValueError when squeue fails or
    answers something else."""
    out = _squeue(job, "%L")
    lines = out.split()
    if len(lines) != 1:
        raise ValueError(f"squeue -j {job} -o %L printed {out.strip()!r}")
    return parse_time_left(lines[0])


# The comment snakemake-executor-plugin-slurm gives the job it submits for one job of rule
# train (``rule_train`` or ``rule_train_wildcards_...``): a SLURM job that holds only this
# training, which a requeue starts again as a whole.
EXECUTOR_TRAIN_COMMENT = "rule_train"


def slurm_job_comment(job: str) -> str:
    """The comment of SLURM job ``job`` (squeue ``%k``); raises OSError when squeue fails."""
    return _squeue(job, "%k").strip()


def executor_train_job() -> bool:
    """Whether this SLURM job is one the Snakemake SLURM executor submitted for rule train
    (its comment, ``EXECUTOR_TRAIN_COMMENT``), so that requeueing it restarts this training
    alone, not a whole allocation running other jobs beside it (``sbatch --wrap
    "snakemake ..."``, an interactive ``salloc``)."""
    return slurm_job_comment(slurm_job_id()).startswith(EXECUTOR_TRAIN_COMMENT)


def time_to_requeue(
    left_s: float, slowest_epoch_s: float, checkpoint_s: float, factor: float, min_s: float
) -> bool:
    """Whether a job with ``left_s`` seconds before its time limit stops at this epoch's end
    rather than train one more: it needs ``factor`` x the slowest epoch so far (validation
    included) plus two checkpoint writes (this epoch's and the next one's; the last write
    measured), and at least ``min_s`` (squeue's answer aging between two reads, the requeue,
    a slower file system)."""
    return left_s < max(min_s, factor * slowest_epoch_s + 2 * checkpoint_s)


class RequeueBeforeTimeLimit(Callback):
    """Before a SLURM job's time limit: finish the epoch under way, write its checkpoints,
    stop, and requeue the job, which then resumes from ``last.ckpt`` as after a kill
    (bit-identical on CPU, tests/unit/test_train.py).

    The time left comes from squeue (``squeue -j $SLURM_JOB_ID -o %L``) at each epoch's end
    (read at most every ``poll_s`` seconds, ``train.requeue_poll_s``, counted down in between),
    on global rank 0; the job stops when it is less than ``time_to_requeue`` wants
    (``train.requeue_factor``, ``train.requeue_min_s``). No signal: the profile used to ask
    SLURM for USR1 before the limit, which every process of the job step gets, and the job's own
    Snakemake process dies of it; where the cluster tracks processes by cgroup
    (proctrack/cgroup) SLURM then kills the training too, mid-epoch (docs/model.md, "On a SLURM
    cluster"). A failing squeue is logged once and the training goes on (the job may then run
    into its limit: Snakemake's retry resumes it from the last epoch).

    USR1 (``install``, in the main thread) still requeues at the epoch's end, for a job whose
    training is the job step's own task (``srun python -m isoflow.train`` in your own batch
    script with ``sbatch --signal=USR1@N``); not through profiles/slurm. A signal after the
    last epoch requeues too, and the requeued job only tests.

    ``pending`` says whether the job is to be requeued (every DDP rank agrees at each
    epoch's end). Not Lightning's own auto-requeue: that writes ``hpc_ckpt_*.ckpt`` wherever
    the signal lands, mid-epoch and even mid-step, and resuming mid-epoch replays batches of
    an epoch that the loader does not remember, so the requeued run would not end as an
    uninterrupted one."""

    POLL_S = 30.0  # train.requeue_poll_s's default

    def __init__(
        self,
        factor: float,
        min_s: float,
        time_left: Any = None,
        clock: Any = time.monotonic,
        signum: int = signal.SIGUSR1,
        own_job: Any = None,
        poll_s: float | None = None,
    ) -> None:
        self.factor, self.min_s = float(factor), float(min_s)
        self.poll_s = self.POLL_S if poll_s is None else float(poll_s)
        self.time_left = time_left or (lambda: squeue_time_left(slurm_job_id()))
        self.own_job = own_job or executor_train_job
        self._own: bool | None = None  # this job is the executor's own train job
        self._own_asked: float | None = None  # clock of the last ask (squeue)
        self._own_failed = False  # a failed ask was logged
        self.clock = clock
        self.signum = signum
        self.received = False  # USR1 came
        self.due = False  # the time left is short
        self.slowest_epoch_s = 0.0
        self.checkpoint_s = 0.0
        self._epoch_start: float | None = None
        self._epoch_end: float | None = None
        self._read: tuple[float, float | None] | None = None  # (clock, seconds left)
        self._failed = False
        self._why = ""  # the time left, when that is what stops the job

    def install(self) -> None:
        signal.signal(self.signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True  # acted on at the epoch's end, never in the handler

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self.clock()
        if self._epoch_end is not None:  # the previous epoch's checkpoint writes came between
            self.checkpoint_s = self._epoch_start - self._epoch_end

    def seconds_left(self, now: float) -> float | None:
        """The job's time left now: read from squeue, or counted down from the last read
        when that is less than ``poll_s`` old; None when not known (a failure logged once)."""
        if self._read is None or now - self._read[0] >= self.poll_s:
            try:
                self._read = (now, self.time_left())
            except Exception as err:  # never the end of the training
                if not self._failed:
                    log.warning(
                        "time left before the SLURM time limit not known (%s): training goes "
                        "on; a job that runs into its limit is retried from its last epoch",
                        err,
                    )
                    self._failed = True
                self._read = (now, None)
        when, left = self._read
        return None if left is None else left - (now - when)

    def is_own_job(self, now: float) -> bool:
        """Whether this job may requeue itself by time: only the SLURM executor's own train
        job (:func:`executor_train_job`); in any other allocation a requeue would start every
        job in it again. Asked until squeue answers, at most every ``poll_s`` seconds: a failing
        squeue counts as not for now (logged once), and is asked again, so that a moment's
        unresponsive slurmctld does not take the requeue from a days-long training."""
        if self._own is not None:
            return self._own
        if self._own_asked is not None and now - self._own_asked < self.poll_s:
            return False
        self._own_asked = now
        try:
            self._own = bool(self.own_job())
        except Exception as err:  # never the end of the training
            if not self._own_failed:
                log.warning(
                    "not requeueing before the SLURM time limit for now: this job's comment "
                    "is not known (%s); asked again at a later epoch's end",
                    err,
                )
                self._own_failed = True
            return False
        if not self._own:
            log.warning(
                "not requeueing before the SLURM time limit: this job is not one the "
                "SLURM executor submitted for rule train (its comment is not the SLURM "
                "executor's rule_train), and requeueing it would restart the whole "
                "allocation; a run that reaches the limit is retried from its last epoch"
            )
        return self._own

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = self.clock()
        if self._epoch_start is not None:
            self.slowest_epoch_s = max(self.slowest_epoch_s, now - self._epoch_start)
        self._epoch_end = now
        # after the last epoch, or one an early stop ends, no epoch is left to make room for:
        # the run tests now, in seconds, rather than wait in the queue for it
        last = trainer.should_stop or (
            trainer.max_epochs is not None
            and trainer.max_epochs >= 0
            and trainer.current_epoch + 1 >= trainer.max_epochs
        )
        if trainer.is_global_zero and not self.due and not last and self.is_own_job(now):
            left = self.seconds_left(now)
            if left is not None and time_to_requeue(
                left, self.slowest_epoch_s, self.checkpoint_s, self.factor, self.min_s
            ):
                self._why = (
                    f"{left:.0f} s left before the SLURM time limit after epoch "
                    f"{trainer.current_epoch}, the slowest epoch took {self.slowest_epoch_s:.0f} s "
                    f"and a checkpoint write {self.checkpoint_s:.0f} s"
                )
                log.warning("%s: stopping at this epoch's end to requeue", self._why)
                self.due = True
        # collective on every rank each epoch: ranks stop together (runs before the
        # checkpoint callbacks, which Lightning calls last: the epoch's checkpoints are written)
        if trainer.strategy.reduce_boolean_decision(self.received or self.due, all=False):
            self.due = True
            trainer.should_stop = True

    @property
    def pending(self) -> bool:
        return self.received or self.due

    @property
    def reason(self) -> str:
        """Why the job is to be requeued, for the last line of its log."""
        if self.received:
            return f"signal {signal.Signals(self.signum).name} received (sbatch --signal)"
        return self._why or "another rank was signalled or saw the time limit ahead"
