"""Entry point helpers shared by rule scripts: logging to snakemake.log, one-line errors, and
the provenance record of a job's inputs (isoflow.provenance)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from isoflow import provenance
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


def run_script(main: Callable[[], None], log_path: str | None = None, job: Any = None) -> None:
    """Run ``main`` with logging sent to ``log_path``; an InputError exits 1 with one line.

    The one line goes both to the log and to stderr, so Snakemake's own error summary
    shows it without opening the log. ``job``: the ``snakemake`` object of the rule script
    (by default the one Snakemake put in the calling script's globals); when ``main``
    succeeds, the content of the job's input files is recorded beside its outputs
    (``isoflow.provenance.record_job``), so a later changed input is noticed even when its
    mtime is older.
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
        provenance.record_job(job.rule, job.input, job.output, before)
