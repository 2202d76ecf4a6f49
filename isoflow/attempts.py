"""A training run's own log of its attempts: ``checkpoints/train.log`` in the run folder.

Snakemake deletes a job's ``log:`` file before it runs the job (snakemake 9.27.1:
``Job.prepare`` calls ``Job.remove_existing_output``, which removes every log file), and a
SLURM requeue (``lightning.requeue_job``) or a Snakemake retry runs the train job again, so
``logs/train/{run}.log`` used to hold only the last attempt: why a run took three jobs, what
its first epochs did, was gone. Each attempt's rank 0 therefore also appends what it logs to
this file, which no rule declares: a header line per attempt (its number; SLURM job id and
``SLURM_RESTART_COUNT`` where set; host; start time; the checkpoint it resumed from, or from
scratch), then its records; a requeued attempt's last line says why it was requeued, a failed
one's the error. The file lies in the checkpoint folder, so it goes where the checkpoints go
(``previous/<hash>/`` when the settings change, back when they come again); a run that starts
from scratch (no checkpoint to resume) starts the file anew. When the run ends with its test
metrics written, the earlier attempts are copied to the end of the job's log
(:meth:`AttemptLog.copy_earlier_to`), so the job's log holds every attempt.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from isoflow.checkpoints import ATTEMPTS_LOG, checkpoint_dir
from isoflow.jobs import LOG_FORMAT, append_to_log

log = logging.getLogger(__name__)

HEADER = "==== attempt {number} of {run_dir}: "
HEADER_RE = re.compile(r"==== attempt (\d+) of ")
STARTED_RE = re.compile(r", started (\S+), ")  # in a header: where()'s start time


def attempts_path(run_dir: str | os.PathLike) -> Path:
    """The run's own log of its attempts."""
    return checkpoint_dir(run_dir) / ATTEMPTS_LOG


def attempts_in(text: str) -> int:
    """How many attempts' headers ``text`` (an attempts log) holds."""
    return sum(1 for line in text.splitlines() if HEADER_RE.search(line))


def end_attempt(run_dir: str | os.PathLike, line: str, since: datetime.datetime) -> bool:
    """End the run's last attempt with ``==== attempt N {line}`` from another process than
    the attempt's own (``isoflow.train_workers``' parent, once the run's worker has ended:
    a run stopped because another run requeued the job got no last line, and read like a
    node kill), when that attempt began at or after ``since`` (in this job: an attempt that
    never began is not one to end). Returns whether it wrote the line."""
    path = attempts_path(run_dir)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return False
    headers = [found for found in map(HEADER_RE.search, text.splitlines()) if found]
    if not headers:
        return False
    started = STARTED_RE.search(headers[-1].string, headers[-1].end())
    try:
        began = datetime.datetime.fromisoformat(started[1]) if started else None
    except ValueError:
        began = None
    if began is None or began < since.replace(microsecond=0):
        return False
    with open(path, "a") as stream:
        if text and not text.endswith("\n"):
            stream.write("\n")
        stream.write(f"==== attempt {headers[-1][1]} {line}\n")
    return True


def where(resume: Path | None) -> str:
    """The attempt's SLURM job, host, start time and starting point, for its header."""
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        slurm = f"SLURM job {job}" + (f" (SLURM_RESTART_COUNT {restarts})" if restarts else "")
    else:
        slurm = "not a SLURM job"
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    start = f"resumed from {resume}" if resume is not None else "from scratch (no checkpoint)"
    return f"{slurm}, host {socket.gethostname()}, started {started}, {start}"


class AttemptLog(logging.Handler):
    """The handler that writes one attempt into the run's attempts log. Records before
    :meth:`begin` (which knows where the attempt starts from) are held and written after the
    header; if the attempt never begins (an error before its checkpoints were looked at),
    nothing is written."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.run_dir = Path(run_dir)
        self.path = attempts_path(run_dir)
        self.held: list[str] = []
        self.stream = None
        self.number = 0
        self.earlier = ""  # the earlier attempts' text, as the file held it at begin

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self.stream is None:
                self.held.append(line)
            else:
                self.stream.write(line)
                self.stream.flush()
        except Exception:
            self.handleError(record)

    def begin(self, resume: Path | None) -> None:
        """Start this attempt in the file: appended after the earlier ones when the run
        resumes, else in a new file (their history belongs to checkpoints that are gone)."""
        if resume is not None and self.path.is_file():
            self.earlier = self.path.read_text(errors="replace")
        before = attempts_in(self.earlier)
        self.number = before + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(self.path, "a" if resume is not None else "w")  # noqa: SIM115
        note = ""
        if resume is not None and not before:
            note = " (the attempts before it were not logged here: they predate this log)"
        log.info(
            "%s%s%s",
            HEADER.format(number=self.number, run_dir=self.run_dir),
            where(resume),
            note,
        )
        self.stream.writelines(self.held)  # logged before the start was known
        self.stream.flush()
        self.held = []

    def end(self, line: str) -> None:
        """One last line in the attempts log only (the job's log has its own)."""
        if self.stream is not None:
            self.stream.write(f"==== attempt {self.number} {line}\n")
            self.stream.flush()

    def copy_earlier_to(self, job_log: str | os.PathLike | None) -> None:
        """Append the earlier attempts to the job's log (nothing when this is the first)."""
        if job_log is None or not self.earlier:
            return
        count = attempts_in(self.earlier)
        text = self.earlier if self.earlier.endswith("\n") else self.earlier + "\n"
        append_to_log(
            job_log,
            f"==== the {count} earlier attempt(s) of this run, copied from {self.path} ====\n"
            f"{text}==== end of the earlier attempts; this job's attempt is above ====\n",
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.stream is not None:
                self.stream.close()
        self.stream = None
        super().close()


@contextlib.contextmanager
def attempt_logging(run_dir: str | os.PathLike, writes: bool) -> Iterator[AttemptLog | None]:
    """While the block runs, the log records from INFO up also go to the run's attempts log
    (``writes``: rank 0 only; other ranks get None). An exception ends the attempt with a
    line naming it."""
    if not writes:
        yield None
        return
    handler = AttemptLog(run_dir)
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO))
    root.addHandler(handler)
    log.info(
        "this run logs each attempt (SLURM requeue, retry) also to %s; when it succeeds the "
        "earlier attempts are copied to the end of this log",
        handler.path,
    )
    try:
        yield handler
    except Exception as err:
        handler.end(f"failed: {type(err).__name__}: {err}")
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
