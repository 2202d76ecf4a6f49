"""The ``isoflow`` console script dispatcher (isoflow.commands)."""

from __future__ import annotations

from helpers.commands import command_output
from isoflow import commands


def test_top_level_help_lists_commands_without_importing_torch():
    out, torch_loaded = command_output(["--help"])
    assert not torch_loaded
    assert "usage: isoflow" in out


def test_unknown_command_is_a_usage_error(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        commands.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
