"""bench/ scripts that `make bench` runs: they start on a fresh machine (scratch folders not
yet made) and answer --help."""

import shutil
import subprocess
import sys

import pytest

from helpers.paths import REPO


def _bench(script: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


@pytest.mark.skipif(shutil.which("samtools") is None, reason="needs samtools")
def test_bench_windows_makes_its_scratch_folder(tmp_path):
    # `make bench` passes --scratch $(BENCH_TMP)/windows, a folder nobody made yet
    scratch = tmp_path / "bench" / "windows"
    done = _bench(
        "bench_windows.py",
        *("--genome-mb", "1", "--contigs", "1", "--windows", "4", "--repeats", "1"),
        *("--scratch", str(scratch)),
    )
    assert done.returncode == 0, done.stderr
    assert scratch.is_dir() and not list(scratch.iterdir())  # the temporary folder is gone


def test_gtex_layout_answers_help_and_checks_its_arguments(tmp_path):
    done = _bench("gtex_layout.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    done = _bench("gtex_layout.py", str(tmp_path / "out"), "many")
    assert done.returncode == 2 and "invalid int value" in done.stderr
    assert not (tmp_path / "out").exists()
