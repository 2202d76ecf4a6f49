"""What the suite needs from outside Python, said once at the top and counted at the end.

A test that needs a Debian tool or the shared real-data excerpts says so with a marker:

    @pytest.mark.needs("gffread")          # tools: see NEEDS
    @pytest.mark.needs("shared")           # ../shared/data/real

Where something is missing the test is skipped with the reason, and the session says — right
after collection, before any test runs — how many tests will be skipped and the one command
that would let them run. At the end the skips are counted by reason, so a skipped oracle is
never mistaken for a passed one. Under ``CI=true`` a missing tool is an error: CI installs
them (``.ci/run`` -> ``make test`` -> ``.ci/install-debian.sh``); absent shared data still
skips, as the brief allows.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from helpers.paths import SHARED_REAL, SNAKEMAKE
from isoflow.cpu import pin_cpu_kernels

# torch's CPU kernels held as the workflow holds them (resources.cpu_kernels' default), before
# any test module imports torch: the suite's numbers are those of a workflow run, whatever
# the CPU's vector width (tests/unit/test_cpu.py)
pin_cpu_kernels("avx2")


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """Each test leaves the root logger as it found it. Code run in-process that configures
    logging for a job (``isoflow.jobs.run_script``: ``basicConfig(force=True)`` with a handler
    on ``sys.stderr``) left that handler bound to the test's captured stream, closed once the
    test ended; a later test's log records then printed "--- Logging error ---" tracebacks
    into its own stderr, and a test of the one-line error a command prints failed or passed
    by test order. pytest's own capture handlers (added and removed per phase) are left to it."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before and type(handler).__module__ != "_pytest.logging":
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


pytest_plugins = ["pytester"]  # tests/test_conftest.py runs this file on small suites

INSTALL_COMMAND = "sudo bash .ci/install-debian.sh   (or `make test` as root)"

# need -> executables that must be on PATH (or at these absolute paths). Debian packages from
# .ci/install-debian.sh.
NEEDS: dict[str, tuple[str, ...]] = {
    "gffread": ("gffread",),
    "samtools": ("samtools",),
    "chromium": ("chromium",),
    "slurm": ("slurmctld", "slurmd", "slurmdbd", "sacct", "munged", "mariadbd"),
}
_SBIN = ("/usr/sbin", "/sbin")


def _found(executable: str) -> bool:
    if shutil.which(executable):
        return True
    return any(Path(d, executable).exists() for d in _SBIN)


def missing(need: str) -> list[str]:
    """What is missing for one need (empty: satisfied)."""
    if need == "shared":
        return [] if SHARED_REAL.is_dir() else [str(SHARED_REAL)]
    if need not in NEEDS:
        raise pytest.UsageError(f"unknown need {need!r}: known {sorted([*NEEDS, 'shared'])}")
    return [exe for exe in NEEDS[need] if not _found(exe)]


def skip_reason(need: str, absent: list[str]) -> str:
    if need == "shared":
        return f"needs the shared real-data excerpts: {absent[0]} absent"
    return f"needs {need} ({', '.join(absent)} missing): {INSTALL_COMMAND}"


def shared_listing() -> frozenset[str]:
    """Every file under ../shared/data/real (relative paths); empty where it is absent."""
    if not SHARED_REAL.is_dir():
        return frozenset()
    return frozenset(str(p.relative_to(SHARED_REAL)) for p in SHARED_REAL.rglob("*"))


_SHARED_AT_START = pytest.StashKey[frozenset]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*what): needs Debian tools (gffread, samtools, chromium, slurm) "
        "or 'shared' (../shared/data/real); skipped with the reason when absent",
    )  # fmt: skip
    config.stash[_SHARED_AT_START] = shared_listing()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The shared excerpts are read-only for the suite: a file that appeared there during the
    session (a .fai pysam or gffread wrote beside an unindexed FASTA a test opened in place)
    fails the session, naming it. Tests open such FASTAs from a copy in tmp_path."""
    start = session.config.stash.get(_SHARED_AT_START, None)
    if start is None:
        return
    added = sorted(shared_listing() - start)
    if added:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        line = (
            f"isoflow: the tests wrote into {SHARED_REAL}, which they must only read: "
            f"{', '.join(added)} (open such a FASTA from a copy in tmp_path)"
        )
        if reporter is not None:
            reporter.write_line(line, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    will_skip: Counter[str] = Counter()
    tools_missing: set[str] = set()
    for item in items:
        reasons = []
        for mark in item.iter_markers("needs"):
            for need in mark.args:
                absent = missing(need)
                if absent:
                    reasons.append(skip_reason(need, absent))
                    if need != "shared":
                        tools_missing.update(absent)
        if reasons:
            reason = "; ".join(reasons)
            item.add_marker(pytest.mark.skip(reason=reason))
            will_skip[reason] += 1
    if tools_missing and os.environ.get("CI") == "true":
        raise pytest.UsageError(
            f"CI=true but {', '.join(sorted(tools_missing))} missing: "
            ".ci/run installs them through `make test` (.ci/install-debian.sh)"
        )
    config.stash[_WILL_SKIP] = will_skip


_WILL_SKIP = pytest.StashKey[Counter]()


def pytest_collection_finish(session: pytest.Session) -> None:
    will_skip = session.config.stash.get(_WILL_SKIP, Counter())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not will_skip:
        return
    total = sum(will_skip.values())
    reporter.write_line(
        f"isoflow: {total} tests will be skipped for what this machine lacks:", yellow=True
    )
    for reason, count in will_skip.most_common():
        reporter.write_line(f"  {count:4d}  {reason}", yellow=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Skips counted by reason: a skipped oracle must not read as a passed one."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[text.removeprefix("Skipped: ")] += 1
    if not reasons:
        return
    terminalreporter.section("skipped, by reason")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:4d}  {reason}")


@pytest.fixture(scope="session")
def snakemake_exe() -> Path:
    """The snakemake of the interpreter running the tests."""
    if not SNAKEMAKE.exists():
        pytest.skip(f"{SNAKEMAKE} missing")
    return SNAKEMAKE


@pytest.fixture(scope="session")
def shared_real() -> Path:
    """../shared/data/real; the test is skipped when it is absent."""
    if not SHARED_REAL.is_dir():
        pytest.skip(skip_reason("shared", [str(SHARED_REAL)]))
    return SHARED_REAL
