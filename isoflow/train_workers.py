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
import traceback
from collections.abc import Callable
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


def _guarded(task: tuple) -> tuple[str, Any, dict[str, Any] | None]:
    """``(name, metrics, None)``, or ``(name, None, failure)`` when the run raised: the
    failure as plain text (its type, its line, its traceback, and an InputError's fields),
    which the parent can always unpickle; an exception that failed to unpickle there ended
    multiprocessing's result thread, and the parent then waited forever."""
    worker, *args = task
    try:
        name, metrics = worker(*args)
    except Exception as err:
        from isoflow.errors import InputError

        fields = (err.path, err.record, err.message) if isinstance(err, InputError) else None
        failure = {
            "type": type(err).__name__,
            # the class as text: an isoflow subclass of InputError (DownloadError) comes back
            # as itself (_input_error_class)
            "class": [type(err).__module__, type(err).__qualname__],
            "text": str(err),
            "traceback": traceback.format_exc(),
            "input_error": fields,
        }
        return args[1], None, failure
    return name, metrics, None


def _raise(name: str, failure: dict[str, Any]) -> None:
    """Re-raise a worker's failure in the parent, as one line: an InputError as itself, of
    its own class when that is an isoflow one (:func:`_input_error_class`: a DownloadError
    stays a DownloadError), else a plain InputError (the job then exits 1 with its line,
    ``isoflow.jobs.run_script``); anything else as a RuntimeError naming the run; the
    worker's traceback goes to the log first."""
    from isoflow.errors import _rebuild

    log.error("run %s failed in its worker process:\n%s", name, failure["traceback"].rstrip())
    if failure["input_error"] is not None:
        cls = _input_error_class(failure.get("class"))
        raise _rebuild(cls, *failure["input_error"], {})
    raise RuntimeError(f"run {name}: {failure['type']}: {failure['text']}")


def _input_error_class(name: Any) -> type:
    """The InputError subclass a worker's failure names (``[module, qualname]``), looked up
    among isoflow's modules only; InputError itself for anything else or not found."""
    import importlib

    from isoflow.errors import InputError

    try:
        module, qualname = name
        if module != "isoflow" and not str(module).startswith("isoflow."):
            return InputError
        found: Any = importlib.import_module(module)
        for part in str(qualname).split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, TypeError, ValueError):
        return InputError
    return found if isinstance(found, type) and issubclass(found, InputError) else InputError


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
    *,
    worker: Callable[..., tuple[str, dict[str, Any] | None]] = _run_one,
    initializer: Callable[[], None] | None = _one_thread,
) -> dict[str, dict[str, Any] | None]:
    """Train ``runs`` (as ``isoflow.train.run_experiments`` takes them) in ``processes``
    spawned workers of one torch thread each, which take the runs costliest first
    (:func:`expected_cost`; config order among equals) as each becomes free, so the workers
    end close together; returns each run's test metrics, in ``runs``' order. Each run seeds
    every RNG itself, so the order changes no output.

    A run that raises ends the job at once with its one line (an InputError as itself; the
    other workers are terminated), never a wait: see :func:`_guarded`. ``worker`` and
    ``initializer`` (module-level, so a spawned process can import them) are what each
    process calls: tests pass stand-ins that need no torch."""
    import multiprocessing

    # spawn, not fork: a forked child of a process that has used OpenMP is not safe
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(processes, len(runs)))
    log.info("training %d runs in %d processes of one torch thread each", len(runs), workers)
    order = sorted(runs, key=lambda name: expected_cost(runs[name]), reverse=True)
    tasks = [(worker, config, name, runs[name], dataset_path, genome_fasta) for name in order]
    done: dict[str, dict[str, Any] | None] = {}
    # leaving the with-block terminates the pool: the first failure ends the job at once,
    # not once every other run has trained
    with context.Pool(workers, initializer=initializer, maxtasksperchild=None) as pool:
        for name, metrics, failure in pool.imap_unordered(_guarded, tasks, chunksize=1):
            if failure is not None:
                _raise(name, failure)
            done[name] = metrics
    return {name: done[name] for name in runs}
