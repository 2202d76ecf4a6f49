"""Run ``isoflow <argv>`` (isoflow.commands) in a fresh interpreter, as the console script
would: what it printed and whether torch got imported on the way."""

from __future__ import annotations

import subprocess
import sys

_CODE = """
import contextlib, io, json, sys
from isoflow import commands
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        commands.main(json.loads(sys.argv[1]))
    except SystemExit:
        pass
print(json.dumps({"torch": "torch" in sys.modules, "stdout": out.getvalue()}))
"""


def command_output(argv: list[str]) -> tuple[str, bool]:
    """``(stdout, torch imported)`` of ``isoflow *argv`` in a new Python process."""
    import json

    result = subprocess.run(
        [sys.executable, "-c", _CODE, json.dumps(argv)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout.strip().splitlines()[-1])
    return done["stdout"], done["torch"]
