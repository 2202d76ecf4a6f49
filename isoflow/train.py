"""Training one experiment with Lightning, then scoring its best checkpoint on the test split.

``run_experiment`` writes into ``run_dir``:

- ``checkpoints/`` and ``previous/`` — the checkpoints, kept by what they were trained from
  (``isoflow.checkpoints``). A run finds ``last.ckpt`` (or a newer ``hpc_ckpt_*.ckpt`` that
  Lightning's own SLURM auto-requeue wrote in earlier versions) and continues from it, so a
  killed job that is started again picks up where it stopped. The checkpoints hold the RNG
  states and the per-epoch history too (``isoflow.lightning``), and batches are drawn from a
  sampler seeded by (seed, epoch): a resumed CPU run ends with the same metrics as an
  uninterrupted one. In a SLURM job, a job whose time left (squeue) would not hold another
  epoch stops at an epoch's end, and is requeued to resume from its checkpoints
  (``lightning.RequeueBeforeTimeLimit``).
- ``checkpoints/train.log`` — every attempt's log (``isoflow.attempts``, rank 0): a SLURM
  requeue or a retry runs the job again, and Snakemake deletes the job's log before it does;
  once the outputs are written, the earlier attempts are copied to the end of the job's log.
- ``history.csv`` — one row per epoch (each also a line of the log): epoch, train_loss,
  val_loss, val_r2, val_spearman, val_pearson.
- ``metrics.json`` and ``predictions.parquet`` (transcript_id, gene_id, tissue, observed,
  predicted) for the test split, from the checkpoint with the lowest ``val_loss``; each
  distinct input predicted once, so transcripts sharing one get the same bits (``predict``).

Every output is written atomically. Step-level logs go to ``csv_logs/metrics.csv``; a resumed
run keeps the steps logged before each resume as ``csv_logs/metrics.1.csv``, ``.2``, ...

The workflow calls ``run_experiment`` from ``scripts/train.py`` (rule ``train``). Outside
Snakemake, ``python -m isoflow.train`` (``main``) trains one experiment from a config file
(docs/model.md, "Training one run by hand"); Lightning's DDP launcher starts the other ranks
by running that same command line again, so it is also how ``train.strategy: ddp`` is
tested (tests/unit/test_ddp.py).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m isoflow.train` (and DDP's ranks): before torch loads,
    # its CPU kernels held as a workflow run's, so a run by hand repeats one (isoflow.cpu)
    from isoflow.cpu import pin_for_command

    pin_for_command()

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.environments import LightningEnvironment, SLURMEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from isoflow import cpu
from isoflow.attempts import AttemptLog, attempt_logging
from isoflow.checkpoints import (
    agreed_resume,
    checkpoint_dir,
    launch_key,
    prepare_checkpoints,
    record_tested,
    resume_checkpoint,
    run_fingerprint,
    set_aside_file,
)
from isoflow.commands import GENOME_FLAGS
from isoflow.config import check_cuda_graph
from isoflow.embed import eager_again
from isoflow.errors import InputError
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.files import atomic_path
from isoflow.jobs import log_to
from isoflow.lightning import (
    HISTORY_COLUMNS,
    AtomicCheckpointIO,
    History,
    IsoFormerModule,
    MovableCheckpoint,
    RequeueBeforeTimeLimit,
    RngState,
    StayStopped,
    requeue_job,
)
from isoflow.loader import IsoformDataModule, cache_expectations, raw_cuts
from isoflow.metrics import evaluate, metrics_text, predictions_frame
from isoflow.settings import cached_modalities, train_config

log = logging.getLogger(__name__)

COMPILE_BACKEND = "inductor"  # `train.compile: true`; tests pass "aot_eager"


def compile_model(model: torch.nn.Module, backend: str | None = None) -> None:
    """``train.compile``: ``model``'s forward (and so its backward) through ``torch.compile``
    (``backend``, else ``COMPILE_BACKEND``) from its next call on, in place
    (``nn.Module.compile``: the parameters keep their names, so checkpoints and bundles are
    the same files as an eager run's). Dynamo's caches are reset first: a process that
    trains several runs compiles each run's model afresh. ``bench/gpu.py`` times this."""
    import torch._dynamo

    backend = backend or COMPILE_BACKEND
    torch._dynamo.reset()
    model.compile(backend=backend)
    log.info("train.compile: the model runs through torch.compile (%s)", backend)


def may_skip_parameters(module: IsoFormerModule) -> bool:
    """True when a training step can leave a trained parameter without a gradient: a trained
    protein encoder read raw is not run on a batch in which no transcript has a protein
    (non-coding ones), so its parameters then take no part in that step. Every other trained
    parameter takes part in every step: the encoders' unused heads are removed on load
    (tests/unit/test_ddp.py checks each aggregator)."""
    encoders = module.model.encoders
    return "protein" in encoders and any(p.requires_grad for p in encoders["protein"].parameters())


def _strategy(train: dict, module: IsoFormerModule):
    """``ddp`` looks for unused parameters after each step (a walk of the autograd graph)
    only where a step can leave some out (``may_skip_parameters``); plain DDP would fail or
    wait there. Elsewhere it is plain DDP."""
    if train["strategy"] == "ddp":
        find_unused = may_skip_parameters(module)
        log.info("ddp: find_unused_parameters=%s", find_unused)
        return DDPStrategy(find_unused_parameters=find_unused)
    return train["strategy"]


def cluster_environment(train: dict):
    """Where a SLURM job's DDP ranks come from (None outside SLURM: Lightning's default).

    One task per GPU (``srun`` with as many tasks as ``train.devices``): each task is a rank,
    ``SLURMEnvironment`` reads its rank from srun. Fewer tasks than devices, as when
    snakemake-executor-plugin-slurm runs the train rule as ``srun -n1`` (it does for every job):
    Lightning's own launcher starts the other ranks on this node
    (``LightningEnvironment``); with ``SLURMEnvironment`` there, the job would train as one
    process on one device. ``auto_requeue`` is off: ``RequeueBeforeTimeLimit`` requeues."""
    if not SLURMEnvironment.detect():
        return None
    devices = train["devices"]
    wanted = len(devices) if isinstance(devices, list) else devices
    tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if train["strategy"] == "ddp" and isinstance(wanted, int) and wanted > tasks:
        log.info(
            "SLURM job step of %d task(s), %d devices: Lightning starts the ranks", tasks, wanted
        )
        return LightningEnvironment()
    return SLURMEnvironment(auto_requeue=False)


def _precision(train: dict) -> str:
    if train["precision"]:
        return str(train["precision"])
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


@torch.no_grad()
def predict(module: IsoFormerModule, loader, precision: str) -> np.ndarray:
    """(n, n_tissues) predictions in dataset order, one per distinct input: the row
    predicted for the first transcript of each input (``IsoformDataset.distinct_inputs``)
    is copied to every transcript sharing it. ``loader`` must reach those first
    transcripts: ``IsoformDataModule.distinct_dataloader`` gives only them, each once.

    Transcripts with one input (isoforms sharing a TSS, for a DNA-only model) thus get the
    same bits, so the within-gene metric counts them as tied (``isoflow.metrics``).
    Predicted each in its own place, they came out of different batches, or other positions
    of one batch, up to ~1e-6 apart (a float sum's order depends on both, on the CPU as on a
    GPU), and that noise was ranked as if the model told them apart."""
    module.eval()
    device = module.device
    autocast = device.type == "cuda" and precision.startswith("bf16")
    first, inverse = loader.dataset.distinct_inputs()
    out = np.zeros((len(loader.dataset), len(module.tissues)), dtype=np.float32)
    done = np.zeros(len(loader.dataset), dtype=bool)
    for batch in loader:
        batch = module.transfer_batch_to_device(batch, device, 0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            predicted = module(batch).float()
        index = batch["index"].cpu().numpy()
        out[index] = predicted.cpu().numpy()
        done[index] = True
    if not done[first].all():
        raise RuntimeError(f"predict: the loader left out {int((~done[first]).sum())} inputs")
    return out[first][inverse]


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
    text = metrics_text(metrics)  # strict JSON, or raise here, before anything is written
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
    job_log: str | os.PathLike | None = None,
) -> dict[str, Any] | None:
    """Train (or resume) one experiment and write its outputs; returns the test metrics on
    the global-zero process (None on the others).

    Rank 0 also logs this attempt to the run's attempts log (``isoflow.attempts``); once the
    outputs are written, the earlier attempts are copied to the end of ``job_log`` (the
    rule's ``log:`` file, which Snakemake emptied before this job), when given."""
    with attempt_logging(run_dir, rank_zero_only.rank == 0) as attempt:
        metrics = _train_and_test(
            config, experiment, dataset_path, run_dir, genome_fasta, cache_dirs, attempt
        )
        if attempt is not None:
            attempt.end("finished: test metrics written")
            attempt.copy_earlier_to(job_log)
        return metrics


def _train_and_test(
    config: dict,
    experiment: dict,
    dataset_path: str | os.PathLike,
    run_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike | None,
    cache_dirs: dict[str, str | os.PathLike] | None,
    attempt: AttemptLog | None,
) -> dict[str, Any] | None:
    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    run_dir = Path(run_dir)
    train = train_config(config)
    check_cuda_graph(config, experiments=[experiment])  # also for a run by hand
    on_slurm = SLURMEnvironment.detect()
    requeue = (
        RequeueBeforeTimeLimit(
            train["requeue_factor"], train["requeue_min_s"], poll_s=train["requeue_poll_s"]
        )
        if on_slurm
        else None
    )
    if requeue is not None:
        requeue.install()  # early: before it, a USR1 (sbatch --signal) would end the process
    log.info("%s", cpu.in_effect())  # which CPU kernels made the run's numbers
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
        prefetch_batches=int(train["prefetch_batches"]),
        fraction=float(experiment["fraction"]),
        shuffle_targets=bool(experiment["shuffle_targets"]),
        seed=seed,
        # cut as the run's encoders cut (the spec's max_len / truncate over rna / protein)
        **raw_cuts(config, experiment),
        # each cache checked against the run: its modality, encoder, spec and pooling
        cache_expect=cache_expectations(config, experiment),
    )
    data.setup("fit")
    cached_dims = {m: data.collate.caches[m].dim for m in data.collate.caches}
    module = IsoFormerModule(config, experiment, data.tissues, cached_dims)
    if train["compile"]:
        compile_model(module.model)

    checkpoint = MovableCheckpoint(
        dirpath=checkpoint_dir(run_dir),
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
    )
    # last.ckpt every epoch, from a callback of its own: ModelCheckpoint's save_last writes it
    # only in an epoch that also wrote a best checkpoint (Lightning 2.6), so after val_loss
    # stopped improving a killed or requeued job resumed from an older epoch and repeated the
    # epochs since (the same results, the time lost; a job requeued at each time limit that
    # trained fewer epochs than that per job never got further)
    last = MovableCheckpoint(
        dirpath=checkpoint_dir(run_dir),
        filename="last",
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    history = History()
    callbacks = [
        history,
        RngState(),
        StayStopped(monitor="val_loss", mode="min", patience=int(train["patience"])),
        checkpoint,
        last,
    ]
    if requeue is not None:
        callbacks.append(requeue)
    environment = cluster_environment(train)
    # checkpoints written in their own folder and renamed into place (Lightning's go
    # through $TMPDIR: a copy, across filesystems, that a kill leaves truncated)
    plugins = [AtomicCheckpointIO(), *([environment] if environment is not None else [])]
    precision = _precision(train)
    trainer = pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=int(train["max_epochs"]),
        accelerator=train["accelerator"],
        devices=train["devices"],
        strategy=_strategy(train, module),
        precision=precision,
        deterministic=train["deterministic"],  # True, False or "warn"
        # None: no clipping; train.cuda_graph clips inside the captured step (Lightning
        # refuses a clip value with the manual optimisation it takes)
        gradient_clip_val=None if module.cuda_graph else train["grad_clip"],
        gradient_clip_algorithm="norm",
        callbacks=callbacks,
        logger=CSVLogger(run_dir, name="csv_logs", version=""),
        plugins=plugins,
        enable_progress_bar=bool(train["progress_bar"]),
        log_every_n_steps=int(train["log_every_n_steps"]),
        num_sanity_val_steps=0,  # a sanity pass would draw RNG before the resumed state
    )

    # Before fit no process group exists yet; the rank comes from the launcher's environment.
    # Lightning's own launcher starts the other ranks inside fit, after this ran on rank 0;
    # the tasks of one srun step start together and wait for rank 0's answer.
    def decide() -> Path | None:
        fingerprint = run_fingerprint(config, experiment, dataset_path, cache_dirs, genome_fasta)
        prepare_checkpoints(run_dir, fingerprint)
        # a checkpoint cut short is passed over and moved to previous/unfit/
        return resume_checkpoint(run_dir, set_aside=True)

    key = launch_key() if isinstance(environment, SLURMEnvironment) else None
    resume = agreed_resume(run_dir, decide, rank_zero_only.rank, key)
    if attempt is not None:
        attempt.begin(resume)  # a new attempts log when the run starts from scratch
    if resume is not None:
        log.info("resuming from %s", resume)
        if rank_zero_only.rank == 0:
            keep_step_log(run_dir)
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    if requeue is not None and requeue.pending:
        requeue_job(trainer.global_rank, requeue.reason)  # does not return

    if not trainer.is_global_zero:
        return None
    best = checkpoint.best_model_path or last.best_model_path
    if not best or not Path(best).is_file():
        raise InputError(checkpoint_dir(run_dir), None, "training left no checkpoint")
    for stale in checkpoint.untracked():  # left by a kill; never the one tested
        kept = set_aside_file(run_dir, stale)
        log.warning("%s: a best checkpoint the training does not track; kept as %s", stale, kept)
    log.info("testing %s", best)
    from isoflow.bundle import read_checkpoint

    state = read_checkpoint(best, map_location=module.device)
    module.load_state_dict(state["state_dict"])
    if train["compile"]:
        # the test predictions eager, as the bundle's check and every later reader predict:
        # no eval-mode recompile, and predictions.parquet holds what an exported model gives
        eager_again(module.model)
    predicted = predict(module, data.distinct_dataloader("test"), precision)
    if requeue is not None and requeue.pending:
        # signalled while testing (rank 0 only): the requeued job tests again
        requeue_job(0, requeue.reason)
    record_tested(best)  # the export takes exactly this checkpoint
    metrics = write_outputs(run_dir, data.frames["test"], data.tissues, predicted, history.rows)
    log.info(
        "test mean %s, within-gene spearman %s", metrics["mean"], metrics["within_gene_spearman"]
    )
    return metrics


def keep_step_log(run_dir: str | os.PathLike) -> Path | None:
    """Before a resume: ``csv_logs/metrics.csv`` (the steps logged so far) renamed to the
    first free ``csv_logs/metrics.N.csv``, which it returns. Lightning's CSVLogger deletes
    that file when it starts in a folder that has one, so a resumed run's step log held only
    the steps after its last resume (``history.csv`` has every epoch either way)."""
    current = Path(run_dir) / "csv_logs" / "metrics.csv"
    if not current.is_file():
        return None
    n = 1
    while (kept := current.with_name(f"metrics.{n}.csv")).exists():
        n += 1
    current.rename(kept)
    log.info("the step log so far kept as %s", kept)
    return kept


def run_experiments(
    config: dict,
    runs: dict[str, dict[str, Any]],
    dataset_path: str | os.PathLike,
    genome_fasta: str | os.PathLike | None = None,
    processes: int = 1,
) -> dict[str, dict[str, Any] | None]:
    """Train several runs one after another in this process, each as ``run_experiment``
    alone would (it seeds every RNG first: a run's outputs are byte-identical to those of its
    own process, tests/unit/test_train.py), so torch and Lightning are imported once.

    ``runs``: run name -> ``{"experiment", "run_dir", "cache_dirs", "log"}``
    (``isoflow.workflow.grouped_train_runs``); ``log``, when given, receives that run's log
    records, including the error that stops it. Returns each run's test metrics.

    ``processes`` > 1: that many worker processes (spawned, one torch thread each) take the
    runs costliest first as each becomes free, so the runs of a CPU job train side by side
    (``resources.train_processes``; ``isoflow.train_workers.run_in_processes``: a run that
    fails, or a worker that dies, ends the job at once with one line). A run's outputs are
    then byte-identical to those of the same run trained alone with one torch thread (test);
    a run trained with more threads can differ in the last bits of float sums."""
    if processes > 1 and len(runs) > 1:
        from isoflow.train_workers import run_in_processes

        return run_in_processes(config, runs, dataset_path, genome_fasta, processes)
    metrics = {}
    for i, (name, run) in enumerate(runs.items(), 1):
        with log_to(run.get("log")):
            log.info("run %s (%d of %d in this job)", name, i, len(runs))
            try:
                metrics[name] = run_experiment(
                    config,
                    run["experiment"],
                    dataset_path,
                    run["run_dir"],
                    genome_fasta,
                    cache_dirs=run.get("cache_dirs"),
                    job_log=run.get("log"),
                )
            except Exception:
                log.exception("run %s failed", name)
                raise
    return metrics


def _cache_dir(text: str) -> tuple[str, str]:
    """``MODALITY=DIR`` of ``--cache``."""
    modality, sep, folder = text.partition("=")
    if not sep or not modality or not folder:
        raise argparse.ArgumentTypeError(f"expected MODALITY=DIR, got {text!r}")
    return modality, folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m isoflow.train`` (spelled as the isoflow commands spell the
    same concept: ``-g/--genome``, isoflow.commands)."""
    parser.add_argument("--config", required=True, help="YAML config (model/train/encoders)")
    parser.add_argument("--experiment", required=True, help="experiment as JSON")
    parser.add_argument("--dataset", required=True, help="results/dataset/{name}.parquet")
    parser.add_argument("--run-dir", required=True, help="where the run's outputs go")
    parser.add_argument(*GENOME_FLAGS, default=None, help="genome FASTA, when DNA is read raw")
    parser.add_argument(
        "--cache",
        action="append",
        type=_cache_dir,
        default=[],
        metavar="MODALITY=DIR",
        help="an embedding cache (results/embeddings/{encoder}) for a modality listed in "
        "model.cached_modalities; repeat for each",
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m isoflow.train``: one experiment from a YAML config, as rule ``train`` runs
    it (docs/model.md)."""
    parser = argparse.ArgumentParser(
        prog="python -m isoflow.train", description="Train one isoflow experiment."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    experiment = {**EXPERIMENT_DEFAULTS, **json.loads(args.experiment)}
    missing = set(cached_modalities(config, experiment)) - {m for m, _ in args.cache}
    if missing:
        parser.error(
            f"model.cached_modalities reads {', '.join(sorted(missing))} from an embedding "
            "cache: give --cache MODALITY=DIR for each"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_experiment(
        config,
        experiment,
        args.dataset,
        args.run_dir,
        args.genome,
        cache_dirs=dict(args.cache),
    )


if __name__ == "__main__":
    main()
