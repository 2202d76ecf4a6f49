"""The worker processes of ``resources.train_processes``, started without importing torch.

A job that trains its runs in N spawned processes (``isoflow.train.run_experiments`` with
``processes`` > 1, the demo's one ``train`` job) needs torch and Lightning only in the
workers: importing ``pytorch_lightning`` costs ~10 CPU-s on the demo's machine (it imports
torchmetrics, which imports transformers and scipy.signal), and the parent paid it once more,
before the first worker started, for nothing (docs/benchmarks.md). This module imports
neither; each worker imports ``isoflow.train`` when it takes its first run.
"""

from __future__ import annotations

import datetime
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
    which the parent can always unpickle; under the multiprocessing.Pool used before, an
    exception that failed to unpickle there ended the pool's result thread, and the parent
    then waited forever."""
    from isoflow.requeue import Requeued

    worker, *args = task
    try:
        name, metrics = worker(*args)
    except Requeued as requeue:  # its checkpoints written: the parent requeues the job
        return args[1], None, {"requeued": requeue.reason}
    except SystemExit as stop:
        # Lightning's SIGTERMException, a SystemExit without a code, raised at the next step
        # after a SIGTERM: past ``except Exception`` the worker exited 0 and the job said only
        # "exited with code 0", naming no signal
        code = "" if stop.code is None else f" {stop.code}"
        return (
            args[1],
            None,
            {
                "type": type(stop).__name__,
                "class": [type(stop).__module__, type(stop).__qualname__],
                "text": f"stopped ({type(stop).__name__}{code}; Lightning raises "
                "SIGTERMException at the next step after a SIGTERM to the worker): stopped by "
                "SIGTERM, from an out-of-memory watchdog? raise resources.train_mem_mb or "
                "lower resources.train_processes",
                "traceback": traceback.format_exc(),
                "input_error": None,
                "stopped": True,
            },
        )
    except Exception as err:
        from isoflow.errors import InputError

        fields = (err.path, err.record, err.message) if isinstance(err, InputError) else None
        if fields is not None:
            import pickle

            try:
                pickle.dumps(fields)
            except Exception:  # a record that does not pickle (a lock) killed the worker
                fields = (str(err.path), repr(err.record), str(err.message))
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


def _serve(conn: Any, initializer: Callable[[], None] | None) -> None:
    """A worker process: ``initializer`` once, then each task the parent sends, its outcome
    sent back (:func:`_guarded`), until the parent sends None or is gone. A run that stops
    to requeue the job raises there (``isoflow.requeue.WORKER_ENV``) rather than requeueing
    it and ending this process: the parent requeues the job, once."""
    from isoflow.requeue import WORKER_ENV

    _die_with_parent()
    os.environ[WORKER_ENV] = "1"
    if initializer is not None:
        initializer()
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone: train nothing more
            return
        if task is None:
            return
        outcome = _guarded(task)
        conn.send(outcome)
        if outcome[2] is not None and ("requeued" in outcome[2] or outcome[2].get("stopped")):
            # the job ends: waiting here for another task kept this process alive until
            # the parent's SIGKILL, grace_s later (Lightning's SIGTERM handler stays set)
            return


def _die_with_parent() -> None:
    """End this worker process when its parent ends, even by SIGKILL (then no cleanup of the
    parent's stops it): orphaned, a worker trained its run to the end, and a rerun of the
    job meanwhile wrote the same run folder beside it. On Linux the kernel sends SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread waits for the parent to end."""
    import multiprocessing
    import signal
    import sys

    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            set_up = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            set_up = False
        if set_up:
            if os.getppid() != parent.pid:  # the parent ended before prctl
                os._exit(1)
            return
    import threading
    from multiprocessing.connection import wait

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="isoflow-parent-watch", daemon=True).start()


def _died(name: str, exitcode: int | None, others: list[str]) -> RuntimeError:
    """A worker process that ended while training run ``name``, as one line: the signal that
    killed it, or its exit code, what to do about it, and the runs in flight in the other
    workers (``others``), which are stopped with it."""
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            how += (
                " (out of memory? the kernel's OOM killer sends it: raise "
                "resources.train_mem_mb or lower resources.train_processes)"
            )
    elif exitcode == 0:
        how = "ended without returning its run (exit code 0)"
    else:
        how = f"exited with code {exitcode} (its error, if it wrote one, is above)"
    if others:
        stopped = f"run{'s' if len(others) > 1 else ''} {', '.join(others)} stopped with it"
    else:
        stopped = "no other run in flight"
    return RuntimeError(f"run {name}: its train worker process {how}; {stopped}")


def _stop(processes: list[Any], grace_s: float) -> None:
    """End ``processes``: SIGTERM to each at once, then SIGKILL to those still alive
    ``grace_s`` seconds later (Lightning catches SIGTERM and stops only at the next step),
    and wait for each. One deadline for all: in turn, N workers took N x ``grace_s``, past
    SLURM's KillWait (30 s) with four of them."""
    import time

    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join()


def _ignore_stops() -> dict[int, Any]:
    """Ignore SIGTERM and SIGINT in this process (main thread only; else nothing); returns
    the handlers replaced. While the workers are stopped: a second SIGTERM or Ctrl-C raised
    out of the cleanup and left them running, and multiprocessing's exit hook then waited
    for them without end."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}


def run_in_processes(
    config: dict,
    runs: dict[str, dict[str, Any]],
    dataset_path: str | os.PathLike,
    genome_fasta: str | os.PathLike | None,
    processes: int,
    *,
    worker: Callable[..., tuple[str, dict[str, Any] | None]] = _run_one,
    initializer: Callable[[], None] | None = _one_thread,
    grace_s: float = 10.0,
) -> dict[str, dict[str, Any] | None]:
    """Train ``runs`` (as ``isoflow.train.run_experiments`` takes them) in ``processes``
    spawned workers of one torch thread each, which take the runs costliest first
    (:func:`expected_cost`; config order among equals) as each becomes free, so the workers
    end close together; returns each run's test metrics, in ``runs``' order. Each run seeds
    every RNG itself, so the order changes no output.

    A run that raises ends the job at once with its one line (an InputError as itself; the
    other workers are terminated), never a wait: see :func:`_guarded`. So does a worker that
    dies (killed by the kernel's OOM killer, SIGKILL): a RuntimeError naming its run and the
    signal (:func:`_died`); under ``multiprocessing.Pool`` such a worker was replaced
    silently, its run never came back, and the job waited until its time limit. The other
    workers are sent SIGTERM, then SIGKILL after ``grace_s`` seconds (one deadline for all;
    a second SIGTERM or Ctrl-C meanwhile is ignored), and waited for: none outlives the job.
    ``worker`` and ``initializer`` (module-level, so a spawned process can import them) are
    what each process calls: tests pass stand-ins that need no torch."""
    import multiprocessing
    from multiprocessing.connection import wait

    # a process and a pipe per worker, not concurrent.futures.ProcessPoolExecutor: its
    # BrokenProcessPool names neither the run nor the signal, and after a run that raised its
    # shutdown stops no task already running
    # spawn, not fork: a forked child of a process that has used OpenMP is not safe
    context = multiprocessing.get_context("spawn")
    count = max(1, min(processes, len(runs)))
    log.info("training %d runs in %d processes of one torch thread each", len(runs), count)
    order = sorted(runs, key=lambda name: expected_cost(runs[name]), reverse=True)
    queue = [(worker, config, name, runs[name], dataset_path, genome_fasta) for name in order]
    queue.reverse()  # pop() takes the costliest left
    done: dict[str, dict[str, Any] | None] = {}
    requeued: tuple[str, str] | None = None  # (the run, why) that stopped to requeue the job
    workers: list[tuple[Any, Any]] = []  # (process, the parent's end of its pipe)
    running: dict[int, str] = {}  # worker index -> the run it trains

    def give(index: int) -> None:
        """Send worker ``index`` the costliest run left, or None (it then exits)."""
        process, conn = workers[index]
        task = queue.pop() if queue else None
        if task is not None:
            running[index] = task[2]
        try:
            conn.send(task)
        except OSError:  # its process is gone (BrokenPipeError)
            if task is None:  # it had returned every run it took
                return
            process.join()
            raise _died(task[2], process.exitcode, in_flight(index)) from None

    def in_flight(index: int) -> list[str]:
        return [name for other, name in running.items() if other != index]

    # a SIGTERM to this process (Snakemake stopping the job, a kill) ends it through the
    # finally below, which stops the workers: by default it ended this process alone, and
    # each daemon worker trained its run to the end, orphaned
    began = datetime.datetime.now(datetime.UTC)  # each run's attempt in this job began after
    previous = _exit_on_sigterm()
    try:
        for index in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve, args=(theirs, initializer), name=f"isoflow-train-{index}"
            )
            process.daemon = True
            process.start()
            theirs.close()
            workers.append((process, ours))
            give(index)
        while running and requeued is None:
            waiting = [workers[index][1] for index in running]
            waiting += [workers[index][0].sentinel for index in running]
            wait(waiting)
            for index, name in list(running.items()):
                process, conn = workers[index]
                outcome = None
                try:
                    # its outcome, or the end of the pipe of a process that died (EOFError,
                    # or ConnectionResetError when it left a task unread)
                    if conn.poll():
                        outcome = conn.recv()
                    elif process.is_alive():
                        continue
                except (EOFError, OSError):
                    pass
                if outcome is None:
                    process.join()
                    raise _died(name, process.exitcode, in_flight(index))
                del running[index]
                _, metrics, failure = outcome
                if failure is not None and "requeued" in failure:
                    requeued = (name, failure["requeued"])
                    log.warning(
                        "requeued by run %s: %s; stopping the other runs (each resumes "
                        "from its last checkpoint)",
                        name,
                        requeued[1],
                    )
                    break
                if failure is not None:
                    _raise(name, failure)
                done[name] = metrics
                give(index)
        if requeued is None:
            for process, _ in workers:  # each was sent None: it ends by itself
                process.join(grace_s)
    finally:
        # the first failure ends the job at once, not once every other run has trained
        replaced = _ignore_stops()
        try:
            _stop([process for process, _ in workers], grace_s)
            for _, conn in workers:
                conn.close()
        finally:
            import signal

            if previous is not None:
                replaced[signal.SIGTERM] = previous
            for sig, handler in replaced.items():
                signal.signal(sig, handler)
    if requeued is not None:
        # the job's one requeue, once every worker has ended, as requeue_job in one process
        from isoflow.requeue import exit_requeued, scontrol_requeue, slurm_job_id

        job = slurm_job_id()
        endings = _requeue_endings(runs, job, requeued, list(running.values()))
        # SLURM sends the requeued job's processes SIGTERM as soon as scontrol returns, and
        # by default it ended this one before the endings were written: ignored from here,
        # as this process exits once they are (SLURM's SIGKILL follows after KillWait)
        replaced = _ignore_stops()
        try:
            scontrol_requeue(job, f"by run {requeued[0]}: {requeued[1]}")
        except BaseException:
            import signal

            for sig, handler in replaced.items():
                signal.signal(sig, handler)
            raise
        _end_attempts(runs, endings, began)
        exit_requeued()
    return {name: done[name] for name in runs}


def _requeue_endings(
    runs: dict[str, dict[str, Any]], job: str, requeued: tuple[str, str], stopped: list[str]
) -> dict[str, str]:
    """The last line of each attempt the job's requeue ends: the requeuing run's, as
    ``requeue_job`` ends it in one process, and each run stopped with it (SIGTERM from this
    process), whose attempt otherwise just ended; each names the checkpoint its next attempt
    resumes from. Read before the requeue (``scontrol requeue`` ends the job soon after):
    this imports torch, once every worker has ended. Each checkpoint's central directory and
    pickle only (``crc=False``, ``saved_epoch``'s ``mmap``), not its body: the CRC check of
    each run's checkpoint read it whole (3.7 s per 2 GB from the disk of the dev VM,
    docs/benchmarks.md, "Requeue endings") out of the time left before the limit; the
    requeued attempt checks the one it resumes from whole (``resume_checkpoint``) and passes
    over a broken one, so this line can name a checkpoint that attempt does not take."""
    from isoflow.checkpoints import resume_checkpoint, saved_epoch

    def resumes(name: str) -> str:
        checkpoint = resume_checkpoint(runs[name]["run_dir"], set_aside=False, crc=False)
        if checkpoint is None:
            return "starts again from scratch (no checkpoint yet)"
        epoch = saved_epoch(checkpoint)  # 0-based, as the run's log counts: the next one trains
        at = "" if epoch is None else f", written at the end of epoch {epoch}"
        return f"resumes from its last checkpoint ({checkpoint.name}{at})"

    name, why = requeued
    endings = {}
    if runs[name].get("run_dir") is not None:
        endings[name] = f"requeued: SLURM job {job}, by run {name}: {why}; {resumes(name)}"
    for other in stopped:
        if runs[other].get("run_dir") is not None:
            endings[other] = (
                f"stopped: SLURM job {job} requeued by run {name} ({why}); {resumes(other)}"
            )
    return endings


def _end_attempts(runs: dict[str, dict[str, Any]], endings: dict[str, str], began: Any) -> None:
    """Write each run's last line (:func:`_requeue_endings`) into its attempts log, which
    lasts (``isoflow.attempts``; copied to the job's log when the run succeeds), and to this
    job's log: SLURM's log of the job is emptied when it starts again."""
    from isoflow.attempts import end_attempt

    for name, line in endings.items():
        if end_attempt(runs[name]["run_dir"], line, began):
            log.warning("run %s: %s", name, line)


def _exit_on_sigterm() -> Any:
    """Make SIGTERM raise SystemExit(143) in this process (the main thread only: elsewhere
    signal handlers cannot be set, and None is returned); returns the handler it replaced."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, terminated)
