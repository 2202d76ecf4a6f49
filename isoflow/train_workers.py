"""The worker processes of ``resources.train_processes``, started without importing torch.

A job that trains its runs in N spawned processes (``isoflow.train.run_experiments`` with
``processes`` > 1, the demo's one ``train`` job) needs torch and Lightning only in the
workers: importing ``pytorch_lightning`` costs ~10 CPU-s on the demo's machine (it imports
torchmetrics, which imports transformers and scipy.signal), and the parent paid it once more,
before the first worker started, for nothing (docs/benchmarks.md). This module imports
neither; each worker imports ``isoflow.train`` when it takes its first run.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _run_one(
    config: dict,
    name: str,
    run: dict[str, Any],
    dataset_path: str | os.PathLike,
    genome_fasta: str | os.PathLike | None,
) -> tuple[str, dict[str, Any] | None]:
    from isoflow.train import run_experiments

    return name, run_experiments(config, {name: run}, dataset_path, genome_fasta)[name]


def run_in_processes(
    config: dict,
    runs: dict[str, dict[str, Any]],
    dataset_path: str | os.PathLike,
    genome_fasta: str | os.PathLike | None,
    processes: int,
) -> dict[str, dict[str, Any] | None]:
    """Train ``runs`` (as ``isoflow.train.run_experiments`` takes them) in ``processes``
    spawned workers of one torch thread each, which take the runs in config order as each
    becomes free; returns each run's test metrics, in ``runs``' order."""
    import multiprocessing

    # spawn, not fork: a forked child of a process that has used OpenMP is not safe
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(processes, len(runs)))
    log.info("training %d runs in %d processes of one torch thread each", len(runs), workers)
    tasks = [(config, name, run, dataset_path, genome_fasta) for name, run in runs.items()]
    with context.Pool(workers, initializer=_one_thread, maxtasksperchild=None) as pool:
        done = dict(pool.starmap(_run_one, tasks, chunksize=1))
    return {name: done[name] for name in runs}
