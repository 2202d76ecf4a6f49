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


def expected_cost(run: dict[str, Any]) -> tuple:
    """A sort key for how long a run trains, largest first being the costliest: more
    modalities, cross-attention over concatenation, real over shuffled targets (a shuffled
    run stops early). On the demo a three-modality cross-attention run took ~15 s, a
    one-modality run 3-5 s (logs/train/*.log)."""
    experiment = run.get("experiment") or {}
    return (
        len(experiment.get("modalities") or ()),
        experiment.get("aggregator", "cross_attention") == "cross_attention",
        not experiment.get("shuffle_targets", False),
    )


def run_in_processes(
    config: dict,
    runs: dict[str, dict[str, Any]],
    dataset_path: str | os.PathLike,
    genome_fasta: str | os.PathLike | None,
    processes: int,
) -> dict[str, dict[str, Any] | None]:
    """Train ``runs`` (as ``isoflow.train.run_experiments`` takes them) in ``processes``
    spawned workers of one torch thread each, which take the runs costliest first
    (:func:`expected_cost`; config order among equals) as each becomes free, so the workers
    end close together; returns each run's test metrics, in ``runs``' order. Each run seeds
    every RNG itself, so the order changes no output."""
    import multiprocessing

    # spawn, not fork: a forked child of a process that has used OpenMP is not safe
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(processes, len(runs)))
    log.info("training %d runs in %d processes of one torch thread each", len(runs), workers)
    order = sorted(runs, key=lambda name: expected_cost(runs[name]), reverse=True)
    tasks = [(config, name, runs[name], dataset_path, genome_fasta) for name in order]
    with context.Pool(workers, initializer=_one_thread, maxtasksperchild=None) as pool:
        done = dict(pool.starmap(_run_one, tasks, chunksize=1))
    return {name: done[name] for name in runs}
