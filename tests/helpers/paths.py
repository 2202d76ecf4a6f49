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
