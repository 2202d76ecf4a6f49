"""The run's own log of its attempts (isoflow.attempts): a SLURM requeue's first attempt is
not lost with the job's log, which Snakemake deletes before each attempt."""

import copy
import json
import logging
import os
import re
import signal

import pandas as pd
import pytest
from lightning_fabric.plugins.environments import LightningEnvironment

import isoflow.lightning
import isoflow.settings
import isoflow.train
from helpers.training import TINY_CONFIG, make_dataset
from isoflow.attempts import attempt_logging, attempts_in, attempts_path, end_attempt
from isoflow.checkpoints import (
    ATTEMPTS_LOG,
    FINGERPRINT_FILE,
    fingerprint_hash,
    prepare_checkpoints,
)
from isoflow.jobs import run_script
from isoflow.lightning import HISTORY_COLUMNS
from isoflow.train import run_experiment, run_experiments

EXPERIMENT = {"modalities": ["rna", "protein"], "seed": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))[0]


def config_with(**train):
    config = copy.deepcopy(TINY_CONFIG)
    config["train"].update(train)
    return config


class Exited(BaseException):
    """os._exit in a test: the process would end here."""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A SLURM job as run_experiment sees it: squeue's time left from ``left`` (a list, read
    in turn; infinity once empty), the executor's train job by its comment, a ``scontrol`` on
    PATH that records its arguments, and requeue_job's os._exit raising ``Exited``."""

    class OnSlurm:
        detect = staticmethod(lambda: True)

        def __new__(cls, **kwargs):
            return LightningEnvironment()

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "scontrol.calls"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {called}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "12345")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    monkeypatch.setattr(isoflow.train, "SLURMEnvironment", OnSlurm)
    # squeue read at every epoch end (train.requeue_poll_s, which the train job passes on)
    monkeypatch.setitem(isoflow.settings.TRAIN_DEFAULTS, "requeue_poll_s", 1e-9)
    left: list[float] = []
    monkeypatch.setattr(
        isoflow.lightning, "squeue_time_left", lambda job: left.pop(0) if left else float("inf")
    )
    monkeypatch.setattr(isoflow.lightning, "slurm_job_comment", lambda job: "rule_train_x")

    def exit_now(code):
        raise Exited(code)

    monkeypatch.setattr(isoflow.lightning.os, "_exit", exit_now)
    monkeypatch.setattr(isoflow.lightning.logging, "shutdown", lambda: None)
    previous = signal.getsignal(signal.SIGUSR1)  # requeue.install() sets a handler
    yield {"left": left, "called": called}
    signal.signal(signal.SIGUSR1, previous)


def one_job(config, run_dir, dataset, job_log):
    """The rule with resources.train_jobs: one (isoflow.train.run_experiments)."""
    run = {"experiment": EXPERIMENT, "run_dir": str(run_dir), "log": str(job_log)}
    run_experiments(config, {"run": run}, dataset)


def per_run(config, run_dir, dataset, job_log):
    """The per-run rule: scripts/train.py's run_experiment under run_script's job log."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        run_script(
            lambda: run_experiment(config, EXPERIMENT, dataset, run_dir, job_log=job_log),
            str(job_log),
            job=None,
        )
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def attempts(text: str) -> list[str]:
    """An attempts log's text split at each attempt's header."""
    return re.split(r"(?m)^(?=.*==== attempt \d+ of )", text)[1:]


def epoch_line(row) -> str:
    """How the log writes one row of history.csv."""
    values = ", ".join(f"{c} {row[c]:.6g}" for c in HISTORY_COLUMNS[1:])
    return f"epoch {int(row['epoch'])}: {values}"


@pytest.mark.slow
@pytest.mark.parametrize("job", [one_job, per_run])
def test_the_job_log_holds_every_attempt_after_a_requeue(dataset, tmp_path, fake_slurm, job):
    """The time left runs short after epoch 1: attempt 1 requeues the job; Snakemake deletes
    the job's log and attempt 2 resumes. The job's log then holds attempt 2 and, copied from
    the run's attempts log, attempt 1: its epochs and why it was requeued."""
    config = config_with(max_epochs=4)
    run_dir, job_log = tmp_path / "run", tmp_path / "logs" / "run.log"
    job_log.parent.mkdir()
    fake_slurm["left"][:] = [10_000.0, 100.0]  # ample after epoch 0, short after epoch 1
    with pytest.raises(Exited):
        job(config, run_dir, dataset, job_log)
    assert fake_slurm["called"].read_text() == "requeue 12345\n"
    first = job_log.read_text()
    assert "requeued: SLURM job 12345" in first.splitlines()[-1]

    job_log.unlink()  # Snakemake, before it runs the requeued job
    os.environ["SLURM_RESTART_COUNT"] = "1"  # (restored by monkeypatch's delenv)
    job(config, run_dir, dataset, job_log)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    lines = [epoch_line(row) for _, row in history.iterrows()]

    own = attempts_path(run_dir).read_text()
    one, two = attempts(own)
    assert "SLURM job 12345, host" in one and "from scratch" in one.splitlines()[0]
    assert "SLURM job 12345 (SLURM_RESTART_COUNT 1)" in two.splitlines()[0]
    assert f"resumed from {run_dir / 'checkpoints' / 'last.ckpt'}" in two.splitlines()[0]
    assert all(line in one for line in lines[:2]) and not any(line in one for line in lines[2:])
    assert all(line in two for line in lines[2:]) and not any(line in two for line in lines[:2])
    last = one.splitlines()[-1]  # why attempt 1 ended
    assert "requeued: SLURM job 12345" in last
    assert "left before the SLURM time limit after epoch 1" in last
    assert two.splitlines()[-1].endswith("==== attempt 2 finished: test metrics written")

    final = job_log.read_text()
    this, _, earlier = final.partition("==== the 1 earlier attempt(s) of this run, copied from")
    assert f"also to {attempts_path(run_dir)}" in this  # where the earlier attempts are
    assert all(line in this for line in lines[2:]) and not any(line in this for line in lines[:2])
    assert all(line in earlier for line in lines[:2])  # attempt 1's epochs
    assert last in earlier  # and its reason
    assert attempts_in(earlier) == 1


@pytest.mark.slow
def test_a_fresh_start_does_not_carry_an_old_history(dataset, tmp_path):
    """Checkpoints of other settings go to previous/<hash>/ with their attempts log; the new
    settings start a log of their own. A run that finds its log but no checkpoint to resume
    starts the log anew."""
    run_dir, job_log = tmp_path / "run", tmp_path / "run.log"
    first = config_with(max_epochs=1)
    run_experiment(first, EXPERIMENT, dataset, run_dir)
    kept = attempts_path(run_dir).read_text()
    assert attempts_in(kept) == 1

    second = config_with(max_epochs=1, lr=1e-2)
    run_experiment(second, EXPERIMENT, dataset, run_dir, job_log=job_log)
    moved = json.loads((run_dir / "previous").glob("*/fingerprint.json").__next__().read_text())
    assert (run_dir / "previous" / fingerprint_hash(moved) / ATTEMPTS_LOG).read_text() == kept
    new = attempts_path(run_dir).read_text()
    assert attempts_in(new) == 1 and "from scratch" in new.splitlines()[0]
    assert kept not in new

    for checkpoint in (run_dir / "checkpoints").glob("*.ckpt"):
        checkpoint.unlink()  # nothing to resume: the run trains from scratch
    with attempts_path(run_dir).open("a") as out:
        out.write("==== attempt 7 of an older run: stale\n")
    job_log.write_text("")
    run_experiment(second, EXPERIMENT, dataset, run_dir, job_log=job_log)
    renewed = attempts_path(run_dir).read_text()
    assert attempts_in(renewed) == 1 and "stale" not in renewed
    assert "==== attempt 1 of" in renewed.splitlines()[0]
    assert "earlier attempts" not in job_log.read_text()  # nothing copied


def test_a_log_without_checkpoints_is_no_trained_model(tmp_path):
    """A run stopped before its first epoch leaves its fingerprint and attempts log: other
    settings remove both rather than keep them in previous/ as a trained model."""
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / FINGERPRINT_FILE).write_text(json.dumps({"lr": 1}))
    (ckpt / ATTEMPTS_LOG).write_text("==== attempt 1 of run: from scratch\n")
    prepare_checkpoints(tmp_path, {"lr": 2})
    assert not (tmp_path / "previous").exists()
    assert sorted(p.name for p in ckpt.iterdir()) == [FINGERPRINT_FILE]


def test_only_rank_0_writes_and_an_error_ends_the_attempt(tmp_path):
    with attempt_logging(tmp_path, writes=False) as attempt:
        logging.getLogger("isoflow").warning("a rank's record")
    assert attempt is None and not attempts_path(tmp_path).exists()

    with pytest.raises(ValueError, match="broken"), attempt_logging(tmp_path, True) as attempt:
        logging.getLogger("isoflow").warning("before the start is known")
        attempt.begin(None)
        raise ValueError("broken")
    lines = attempts_path(tmp_path).read_text().splitlines()
    assert "==== attempt 1 of" in lines[0] and "not a SLURM job" in lines[0]
    assert "before the start is known" in lines[2]  # after the header and "also to"
    assert lines[-1] == "==== attempt 1 failed: ValueError: broken"


def test_another_process_ends_only_an_attempt_begun_since_it_started(tmp_path):
    # train_workers' parent ends the attempt of a run it stopped for a requeue; an attempt
    # from before this job (the run's worker stopped before its own began) is not its own
    import datetime

    with attempt_logging(tmp_path, True) as attempt:
        attempt.begin(None)
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    assert not end_attempt(tmp_path, "stopped: not this job's", after)
    assert "not this job's" not in attempts_path(tmp_path).read_text()
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=2)
    assert end_attempt(tmp_path, "stopped: by the parent", before)
    lines = attempts_path(tmp_path).read_text().splitlines()
    assert lines[-1] == "==== attempt 1 stopped: by the parent"
    assert not end_attempt(tmp_path / "never", "stopped", before)  # no log, nothing written
    # the header's start time has whole seconds: an attempt begun in the same second as the
    # parent (whose start has microseconds) began after it, and is ended
    header = "==== attempt 2 of run: not a SLURM job, host h, started {}, from scratch\n"
    began = datetime.datetime(2024, 5, 1, 10, 0, 0, tzinfo=datetime.UTC)
    attempts_path(tmp_path).write_text(header.format(began.isoformat()))
    assert end_attempt(tmp_path, "stopped: same second", began.replace(microsecond=900_000))
    assert attempts_path(tmp_path).read_text().splitlines()[-1] == (
        "==== attempt 2 stopped: same second"
    )


def test_a_run_resumed_from_checkpoints_older_than_the_log_says_so(tmp_path):
    """Checkpoints trained before this log existed: the attempt is numbered 1 and its
    header says the earlier ones were not logged, rather than claim it is the first."""
    resume = tmp_path / "checkpoints" / "last.ckpt"
    with attempt_logging(tmp_path, True) as attempt:
        attempt.begin(resume)
    header = attempts_path(tmp_path).read_text().splitlines()[0]
    assert f"==== attempt 1 of {tmp_path}: " in header and f"resumed from {resume}" in header
    assert header.endswith("(the attempts before it were not logged here: they predate this log)")
