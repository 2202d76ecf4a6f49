"""The ``isoflow`` console script dispatcher (isoflow.commands)."""

from __future__ import annotations

import pytest

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


# Each command with its arguments (inputs that do not exist: the guard answers first), the
# output it would write over an existing folder, and the option naming that output.
REFUSALS = {
    "score": (["--model", "{none}", "--constructs", "{none}", "--out", "{tmp}/x"], "x.scores.tsv"),
    "explain": (
        ["--model", "{none}", "--construct", "{none}", "--out", "{tmp}/x"],
        "x.attention.png",
    ),
    # `isoflow variants -o results` replaced the whole results/ folder with one table
    "variants": (
        ["{none}", "-m", "{none}", "-g", "{none}", "-a", "{none}", "-o", "{tmp}/results"],
        "results",
    ),
    "design": (
        [
            "--model",
            "{none}",
            "--constructs",
            "{none}",
            "--target-tissue",
            "Liver",
            "--out",
            "{tmp}/x",
        ],
        "x.designs.tsv",
    ),
}


@pytest.mark.parametrize("command", list(REFUSALS))
def test_a_command_refuses_an_output_file_over_a_folder_before_any_work(command, tmp_path, capsys):
    # atomic_path would replace the folder, with all it holds, by the output file
    args, output = REFUSALS[command]
    folder = tmp_path / output
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    argv = [a.format(none=tmp_path / "none", tmp=tmp_path) for a in args]
    assert commands.main([command, *argv]) == 1
    option = "-o" if command == "variants" else "--out"
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"isoflow {command}: error: {folder}: {option}: an output file here would"
    )
    assert "\n" not in err and (folder / "keep.txt").is_file()
