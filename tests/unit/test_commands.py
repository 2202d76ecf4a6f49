"""The ``isoflow`` console script dispatcher (isoflow.commands)."""

from __future__ import annotations

import subprocess
import sys

from isoflow import commands


def test_top_level_help_lists_commands_without_importing_torch():
    code = (
        "import sys, io, contextlib\n"
        "from isoflow import commands\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    commands.main(['--help'])\n"
        "print('torch' in sys.modules)\n"
        "print(out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    first, rest = result.stdout.split("\n", 1)
    assert first == "False"
    assert "usage: isoflow" in rest


def test_unknown_command_is_a_usage_error(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        commands.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
