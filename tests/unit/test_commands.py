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


def _folder_at(path):
    path.mkdir()
    (path / "keep.txt").write_text("x")
    return path


def test_score_refuses_an_output_file_over_a_folder_before_any_work(tmp_path, capsys):
    # atomic_path would replace the folder, with all it holds, by the table; the model
    # does not exist: the guard answers first
    folder = _folder_at(tmp_path / "x.scores.tsv")
    argv = ["score", "--model", str(tmp_path / "none"), "--constructs", str(tmp_path / "c.tsv")]
    assert commands.main([*argv, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow score: error: {folder}: --out: an output file here would")
    assert "\n" not in err and (folder / "keep.txt").is_file()


def test_explain_refuses_an_output_file_over_a_folder_before_any_work(tmp_path, capsys):
    folder = _folder_at(tmp_path / "x.attention.png")
    argv = ["explain", "--model", str(tmp_path / "none"), "--construct", str(tmp_path / "c")]
    assert commands.main([*argv, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow explain: error: {folder}: --out: an output file here would")
    assert "\n" not in err and (folder / "keep.txt").is_file()


def test_variants_refuses_an_output_file_over_a_folder_before_any_work(tmp_path, capsys):
    # `isoflow variants -o results` replaced the whole results/ folder with one table
    folder = _folder_at(tmp_path / "results")
    none = str(tmp_path / "none")
    argv = ["variants", none, "-m", none, "-g", none, "-a", none, "-o", str(folder)]
    assert commands.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow variants: error: {folder}: -o: an output file here would")
    assert "\n" not in err and (folder / "keep.txt").is_file()


def test_design_refuses_an_output_file_over_a_folder_before_any_work(tmp_path, capsys):
    folder = _folder_at(tmp_path / "x.designs.tsv")
    none = str(tmp_path / "none")
    argv = ["design", "--model", none, "--constructs", none, "--target-tissue", "Liver"]
    assert commands.main([*argv, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow design: error: {folder}: --out: an output file here would")
    assert "\n" not in err and (folder / "keep.txt").is_file()
