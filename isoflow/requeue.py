"""Requeueing this SLURM job (``scontrol requeue``), without torch or Lightning.

``lightning.RequeueBeforeTimeLimit`` decides when; :func:`requeue_job` does it once the
checkpoints are written. In a worker process of ``resources.train_processes``
(``isoflow.train_workers``, which marks it with :data:`WORKER_ENV`) a requeue is the job's,
not the run's: :func:`requeue_job` raises :class:`Requeued` there, and the job's parent
process, which imports neither torch nor Lightning, stops the other workers and requeues
the job once (:func:`scontrol_requeue`). Before, each worker requeued the job itself and
ended, and the parent reported a worker that exited without its run: the job failed, and
with two runs at the limit ``scontrol requeue`` ran twice.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from typing import NoReturn

from isoflow.errors import InputError

log = logging.getLogger(__name__)

WORKER_ENV = "ISOFLOW_TRAIN_WORKER"  # set in each worker process of run_in_processes


class Requeued(BaseException):
    """A run in a train worker process stopped to requeue the job (its checkpoints written):
    the parent requeues it. A BaseException, as the ``os._exit`` it stands for: no ``except
    Exception`` on its way out of the run catches it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def slurm_job_id() -> str:
    """This SLURM job's id as squeue and scontrol take it (``<array job>_<task>`` for an array
    task); raises when the environment holds none."""
    job = os.environ.get("SLURM_JOB_ID", "")
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not re.fullmatch(r"[0-9_]+", job):
        raise InputError("SLURM_JOB_ID", None, f"not a SLURM job id: {job!r}; cannot requeue")
    return job


def scontrol_requeue(job: str, reason: str) -> None:
    """``scontrol requeue job``; raises when it fails, else logs that the job is requeued and
    why (``reason``): the last line of this attempt's log."""
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode:
        raise InputError(
            "scontrol requeue",
            job,
            f"failed ({done.stderr.strip()}); the checkpoints are written, run the job "
            "again to resume (does the cluster allow requeueing? profiles/slurm asks "
            "sbatch --requeue for train jobs)",
        )
    log.warning(
        "requeued: SLURM job %s, %s; the next attempt resumes from the checkpoints",
        job,
        reason or "at an epoch's end",
    )


def exit_requeued() -> NoReturn:
    """End this process at once, its log flushed: the job is requeued whatever it does now."""
    logging.shutdown()  # flush the run's log
    os._exit(0)


def requeue_job(rank: int = 0, reason: str = "") -> None:
    """``scontrol requeue`` this SLURM job (on global rank 0: Lightning's rank, as ranks that
    Lightning started in one SLURM task share its SLURM_PROCID), then end this process:
    the requeued job starts the rule again and resumes from the checkpoints. Raises when the
    requeue fails. Once requeued, the last line logged says so with ``reason``: the last
    line of this attempt in the run's attempts log (``isoflow.attempts``).

    In a worker process of ``resources.train_processes`` (:data:`WORKER_ENV`) it raises
    :class:`Requeued` instead: the parent stops the other workers, requeues the job once and
    ends (``isoflow.train_workers.run_in_processes``).

    Ending at once rather than waiting for SLURM to end the job: after a USR1 to the job
    step the job's Snakemake process is dead, and a process tracker that follows parent
    processes (proctrack/linuxproc, the test cluster's) then no longer finds this orphan, so
    the job would wait for it, COMPLETING, instead of starting again."""
    job = slurm_job_id()
    if os.environ.get(WORKER_ENV):
        log.warning(
            "stopping to requeue: SLURM job %s, %s; checkpoints written, the train job's "
            "parent process requeues the job, the next attempt resumes from the checkpoints",
            job,
            reason or "at an epoch's end",
        )
        raise Requeued(reason or "at an epoch's end")
    if rank == 0:
        log.warning("SLURM time limit ahead: checkpoints written, requeueing job %s", job)
        scontrol_requeue(job, reason)
    exit_requeued()
