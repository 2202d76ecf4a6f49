"""The paths the suite needs from outside Python, written once (tests/conftest.py turns them
into fixtures and skips; a test that needs one at import time imports it from here)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The snakemake of the interpreter running the tests (the .venv's).
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# The shared real-data excerpts beside the checkout; tests needing them are marked
# ``@pytest.mark.needs("shared")`` and skipped with the reason when it is absent.
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


def bench_module(name: str):
    """A script of bench/ imported as a module (``bench/`` on sys.path only for the import)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "bench"))
