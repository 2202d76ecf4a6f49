"""Entry point helpers shared by rule scripts: logging to snakemake.log, one-line errors, and
the provenance record of a job's inputs (isoflow.provenance)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from isoflow import cpu, provenance
from isoflow.errors import InputError

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Also send the log records, from INFO up as in a job's log, to ``path`` (overwritten)
    while the block runs: the per-run logs of a job that trains several runs
    (``isoflow.train.run_experiments``)."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO))
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def append_to_log(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to the log file ``path``: through the root logger's handler that
    writes it, when there is one (a handler opened with mode "w" writes at its own offset,
    over anything appended beside it), else to the file."""
    target = os.path.abspath(path)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
            handler.acquire()
            try:
                if handler.stream is not None:  # (reopening a mode "w" one would empty it)
                    handler.stream.flush()
                    handler.stream.write(text)
                    handler.stream.flush()
                    return
            finally:
                handler.release()
    with open(target, "a") as out:
        out.write(text)


def run_script(
    main: Callable[[], None],
    log_path: str | None = None,
    job: Any = None,
    *,
    exit_when_done: bool = False,
) -> None:
    """Run ``main`` with logging sent to ``log_path``; an InputError exits 1 with one line.

    The one line goes both to the log and to stderr, so Snakemake's own error summary
    shows it without opening the log. ``job``: the ``snakemake`` object of the rule script
    (by default the one Snakemake put in the calling script's globals); when ``main``
    succeeds, the content of the job's input files is recorded beside its outputs
    (``isoflow.provenance.record_job``), so a later changed input is noticed even when its
    mtime is older.

    ``exit_when_done``: once ``main`` succeeded and the job is recorded, the process ends
    at once (:func:`exit_now`) instead of returning: for the rule scripts of jobs that
    loaded torch and the encoder libraries, whose module teardown at interpreter exit
    costs about a second of CPU per job for nothing (docs/benchmarks.md).
    """
    if job is None:
        job = sys._getframe(1).f_globals.get("snakemake")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format=LOG_FORMAT,
        handlers=handlers,
        force=True,
    )
    if "torch" in sys.modules:  # which CPU kernels made the job's numbers (isoflow.cpu)
        logging.getLogger("isoflow").info("%s", cpu.in_effect())
    before = provenance.stat_files(job.input) if job is not None else None
    try:
        main()
    except InputError as err:
        logging.getLogger("isoflow").error("%s", err)
        # one write of the whole line: print() writes the text and the newline apart, and
        # with PYTHONUNBUFFERED (as on CI) another DDP rank's output then lands mid-line
        sys.stderr.write(f"isoflow: error: {err}\n")
        sys.stderr.flush()
        sys.exit(1)
    if job is not None:
        provenance.record_job(
            job.rule,
            job.input,
            job.output,
            before,
            origin=provenance.job_origin(dict(getattr(job, "params", {}).items())),
        )
    if exit_when_done:
        exit_now()


def exit_now(code: int = 0) -> None:
    """End the process with ``code`` without the interpreter's teardown of its modules: the
    ``atexit`` handlers run (logging's flushes and closes the log files), stdout and stderr
    are flushed, then ``os._exit``. Skipped (returns) while another non-daemon thread
    runs, which a normal exit would wait for."""
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
