"""The ``isoflow`` console script dispatcher (isoflow.commands)."""

from __future__ import annotations

import pytest

from helpers.commands import command_output
from isoflow import commands


def test_top_level_help_lists_commands_without_importing_torch():
    out, torch_loaded = command_output(["--help"])
    assert not torch_loaded
    assert "usage: isoflow" in out


def test_no_command_is_a_usage_error(capsys):
    # `isoflow` alone printed the help and exited 0, as if it had done something
    assert commands.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "usage: isoflow" in captured.err
    assert commands.main(["--help"]) == 0


def test_python_m_isoflow_is_the_isoflow_command():
    import subprocess
    import sys

    from helpers.paths import REPO

    done = subprocess.run(
        [sys.executable, "-m", "isoflow", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0 and "usage: isoflow" in done.stdout


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


# Counts and seeds are range-checked when the arguments are parsed: `--batch-size -1` gave
# all-zero scores with exit 0 (score) or a traceback (explain, variants), 0 meant the default,
# `--designs 0` failed after the whole search, `--k nan` gave a NaN objective.
BAD_NUMBERS = [
    ("score", "--batch-size", "-1"),
    ("score", "--batch-size", "0"),
    ("score", "--aav-limit", "-1"),
    ("score", "--polya-tail", "-5"),
    ("explain", "--batch-size", "-1"),
    ("explain", "--polya-tail", "-1"),
    ("variants", "--batch-size", "0"),
    ("design", "--k", "nan"),
    ("design", "--k", "-1"),
    ("design", "--budget", "0"),
    ("design", "--budget", "-5"),
    ("design", "--population", "0"),
    ("design", "--designs", "0"),
    ("design", "--seed", "-1"),
    ("design", "--polya-tail", "-1"),
    ("finetune", "--max-epochs", "0"),
    ("finetune", "--max-epochs", "-1"),
    ("finetune", "--seed", "-1"),
    # `--folds 1` was found by the run (exit 1), not by the parser
    ("finetune", "--folds", "1"),
    ("finetune", "--folds", "0"),
    ("finetune", "--folds", "-2"),
    ("finetune", "--finetune-last", "-2"),
]


@pytest.mark.parametrize(("command", "option", "value"), BAD_NUMBERS)
def test_out_of_range_numbers_are_usage_errors(command, option, value, tmp_path, capsys):
    args, _ = REFUSALS.get(command, (["{none}", "-m", "{none}", "-o", "{tmp}/o"], None))
    argv = [a.format(none=tmp_path / "none", tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exc:
        commands.main([command, *argv, f"{option}={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"isoflow {command}: error: argument {option}: '{value}' is not a")
    assert not list(tmp_path.iterdir())


def test_number_types_accept_what_they_name():
    assert commands.positive_int("3") == 3
    assert commands.nonnegative_int("0") == 0
    assert commands.nonnegative_float("0.5") == 0.5
    for bad in ("1.5", "x", ""):
        with pytest.raises(Exception, match="is not a whole number"):
            commands.positive_int(bad)
    for bad in ("inf", "-0.1", "nan"):
        with pytest.raises(Exception, match="is not a finite number"):
            commands.nonnegative_float(bad)


def test_model_batch_size_under_one_is_refused():
    from types import SimpleNamespace

    from isoflow.bundle import Model
    from isoflow.errors import InputError

    model = SimpleNamespace(batch_size=8)
    assert Model.batch_size_or_default(model, None) == 8
    assert Model.batch_size_or_default(model, 3) == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="batch_size.*whole number >= 1"):
            Model.batch_size_or_default(model, bad)


# Errors a file causes that name it end in one line, like an InputError (they were
# tracebacks, some after all the work); the output folders are not made before the checks.


def _noncanonical_cds_error(flags) -> str:
    """The real one-line error of a construct whose CDS starts with GTG, its config keys
    named as the command ``flags`` name them (``commands._as_flags``)."""
    from isoflow.constructs import Construct, check_construct

    parts = {"promoter": "ACGT", "utr5": "AC", "cds": "GTGAAATAA", "utr3": "AC", "polya": "AA"}
    with pytest.raises(commands.InputError) as caught:
        check_construct(Construct("c1", parts, "c.tsv:2"))
    commands._as_flags(caught.value, flags)
    return str(caught.value)


def _design(tmp_path, *extra):
    return [
        "design",
        "--model",
        str(tmp_path / "none"),
        "--constructs",
        str(tmp_path / "none.tsv"),
        "--target-tissue",
        "Liver",
        "--out",
        str(tmp_path / "new" / "d"),
        *extra,
    ]


def test_file_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert commands.main(_design(tmp_path, "--constraints", str(missing))) == 1
    err = capsys.readouterr().err.strip()
    # the option that named the file leads (a missing --background read as a bare path)
    assert err == f"isoflow design: error: --constraints {missing}: No such file or directory"
    bad = tmp_path / "bad.yaml"
    bad.write_text("restriction_sites: [GAATTC\n")
    assert commands.main(_design(tmp_path, "--constraints", str(bad))) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow design: error: --constraints {bad}:")
    assert "not valid YAML" in err
    assert "\n" not in err and not (tmp_path / "new").exists()


def test_file_error_names_a_file_that_is_not_parquet(tmp_path):
    import pandas as pd

    table = tmp_path / "annotation.tsv"
    table.write_text("a\tb\n1\t2\n")
    with pytest.raises(Exception) as caught:
        pd.read_parquet(table)
    assert (
        commands.file_error(caught.value) == f"{table}: not a Parquet table; give the .parquet file"
    )
    assert commands.file_error(ValueError("a bug")) is None
    assert commands.file_error(OSError("no file named")) is None


def test_file_error_names_a_missing_parquet_file_however_it_was_read(tmp_path):
    """pyarrow's dataset reader (pandas too) raises FileNotFoundError(path), read_schema
    "Failed to open local file", polars "(os error 2): path", none with ``filename``: each
    was a traceback, and is one line naming the file."""
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    missing = str(tmp_path / "nope.parquet")
    readers = [pq.read_table, pq.read_schema, pq.ParquetFile, pd.read_parquet, pl.read_parquet]
    for read in readers:
        with pytest.raises(FileNotFoundError) as caught:
            read(missing)
        assert caught.value.filename is None  # what the OSError case needs
        assert commands.file_error(caught.value) == f"{missing}: No such file or directory", read
    # a FileNotFoundError saying something else is not taken for a path
    here = tmp_path / "here.parquet"
    here.write_bytes(b"")
    assert commands.file_error(FileNotFoundError(str(here))) is None
    assert commands.file_error(FileNotFoundError("two\nlines")) is None


@pytest.mark.parametrize("device", ["gpu", "cuda:99", "cuda"])
def test_a_device_this_machine_lacks_is_refused_before_any_work(device, tmp_path, capsys):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert commands.main(_design(tmp_path, "--device", device)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isoflow design: error: --device: {device}") or err.startswith(
        f"isoflow design: error: --device: '{device}'"
    )
    assert "\n" not in err and not (tmp_path / "new").exists()


def test_an_output_under_a_file_is_refused_and_no_folder_is_left(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    argv = ["score", "--model", str(tmp_path / "m"), "--constructs", str(tmp_path / "c.tsv")]
    assert commands.main([*argv, "--out", str(blocker / "s")]) == 1
    err = capsys.readouterr().err.strip()
    assert f"--out: {blocker} is a file, not a folder" in err and "\n" not in err
    # a failure after the checks leaves no empty output folder behind
    assert commands.main([*argv, "--out", str(tmp_path / "new" / "s")]) == 1
    capsys.readouterr()
    assert not (tmp_path / "new").exists()


def test_messages_name_the_commands_flags_not_config_keys(tmp_path, capsys):
    # "<input>:finetune.folds: at least 2 folds" and "lower finetune.folds" from the CLI
    from isoflow import finetune

    base = [
        "finetune",
        str(tmp_path / "t.tsv"),
        "-m",
        str(tmp_path / "m"),
        "-o",
        str(tmp_path / "o"),
    ]
    err = commands.InputError(None, "finetune.folds", "at least 2 folds")
    commands._as_flags(err, finetune.FLAGS)
    assert str(err) == "--folds: at least 2 folds"
    # --finetune-last was silently ignored outside mode finetune_last
    assert commands.main([*base, "--mode", "frozen", "--finetune-last", "3"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "isoflow finetune: error: --finetune-last: only with --mode finetune_last"
    )
    # the real message of a non-canonical CDS, through isoflow score's flags
    from isoflow import score

    assert _noncanonical_cds_error(score.FLAGS).endswith(
        "fix the CDS (only scoring takes one as it is: --allow-noncanonical-cds)"
    )


def test_errors_name_the_flags_and_the_constraints_keys_not_config_keys():
    """Messages that name a config key read as the command's flag (a reviewer got
    `<input>:target_tissues: …` from `isoflow score --target-tissue liver`, and
    `design.constraints.polya_present` from `isoflow design`)."""
    from isoflow import design, score
    from isoflow.constraints import Constraints
    from isoflow.score import check_targets

    with pytest.raises(commands.InputError) as caught:
        check_targets(["liver"], ["Liver", "Lung"])
    err = caught.value
    commands._as_flags(err, score.FLAGS)
    assert str(err).startswith("--target-tissue: 'liver' is not a tissue of the model")

    with pytest.raises(commands.InputError) as caught:
        Constraints.from_config({"gc_maxx": 0.6})
    err = caught.value
    commands._as_flags(err, design.FLAGS)
    assert str(err).startswith("--constraints: unknown key(s) 'gc_maxx' (did you mean 'gc_max'?)")

    err = commands.InputError(
        None,
        "design.constraints.polya_present",
        "impossible: … or set design.constraints.polya_present: false; "
        "design.constraints.restriction_sites lists GAATTC",
    )
    commands._as_flags(err, design.FLAGS)
    assert str(err) == (
        "--constraints:polya_present: impossible: … or set --constraints key polya_present: "
        "false; --restriction-site lists GAATTC"
    )
    err = commands.InputError("c.tsv", None, "8 constructs: name the start with its id (design.id)")
    commands._as_flags(err, design.FLAGS)
    assert str(err) == "c.tsv: 8 constructs: name the start with its id (--id)"


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [("design", "--restriction-site", ""), ("explain", "--attention-transcripts", "0")],
)
def test_empty_sites_and_no_attention_transcripts_are_usage_errors(
    command, option, value, tmp_path, capsys
):
    args, _ = REFUSALS[command]
    argv = [a.format(none=tmp_path / "none", tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exc:
        commands.main([command, *argv, f"{option}={value}"])
    assert exc.value.code == 2 and f"argument {option}: '{value}' is not" in capsys.readouterr().err


def test_fixed_positions_the_wrong_way_round_say_so():
    from isoflow.design import parse_fixed
    from isoflow.errors import InputError

    with pytest.raises(InputError, match="'utr5:50-10': 50 comes after 10; write the first"):
        parse_fixed("utr5:50-10", {"utr5": (0, 120)})


def test_a_file_error_is_led_by_the_option_that_named_the_file():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("table")
    parser.add_argument("-b", "--background")
    parser.add_argument("--model", action="append")
    args = parser.parse_args(["t.tsv", "-b", "bg.fa", "--model", "m1", "--model", "m2"])
    line = "bg.fa: No such file or directory"
    assert commands._with_option(line, parser, args) == f"--background {line}"
    assert commands._with_option("m2: Is a directory", parser, args) == "--model m2: Is a directory"
    # a positional argument has no option to name; a file no argument gave stays as it was
    assert commands._with_option("t.tsv: denied", parser, args) == "t.tsv: denied"
    assert commands._with_option("other.fa: denied", parser, args) == "other.fa: denied"


def test_score_aav_limit_without_aav_on_a_table_is_an_error(tmp_path, capsys):
    # --aav-limit without --aav on a TSV did nothing and said nothing
    table = tmp_path / "c.tsv"
    argv = ["score", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "s")]
    assert commands.main([*argv, "--constructs", str(table), "--aav-limit", "5000"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"isoflow score: error: --aav-limit: needs --aav with a construct table ({table}): a "
        "table's cassettes carry no ITR annotation, so only --aav checks them against the "
        "limit (a GenBank record with two ITRs is checked without it); add --aav, or drop "
        "--aav-limit"
    )
    # with --aav, or for GenBank maps, it counts: the run goes on (to the missing model)
    for extra in (["--constructs", str(table), "--aav"], ["--constructs", str(tmp_path / "c.gb")]):
        assert commands.main([*argv, *extra, "--aav-limit", "5000"]) == 1
        assert "--aav-limit" not in capsys.readouterr().err


def test_finetune_aav_limit_without_aav_on_a_table_of_parts_is_an_error(tmp_path, capsys):
    # finetune took score's --aav-limit: on a table of parts it too checked nothing
    parts = tmp_path / "m.tsv"
    parts.write_text("id\tpromoter\tutr5\tcds\tutr3\tcell_A\n")
    genbank = tmp_path / "g.tsv"
    genbank.write_text('"id"\t"GenBank"\t"cell_A"\n')  # quoted, as the table reader allows
    argv = ["finetune", "-m", str(tmp_path / "m"), "-o", str(tmp_path / "o"), "--aav-limit", "5000"]
    assert commands.main([*argv, str(parts)]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith(
            f"isoflow finetune: error: --aav-limit: needs --aav with a table of parts ({parts})"
        )
    )
    # with --aav, or a genbank column's records: the run goes on (to the missing model)
    for extra in ([str(parts), "--aav"], [str(genbank)]):
        assert commands.main([*argv, *extra]) == 1
        assert "--aav-limit" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "module", "says"),
    [
        ("score", "isoflow.score", "interrupted; no output written"),
        ("finetune", "isoflow.finetune", "the same command resumes from them"),
    ],
)
def test_ctrl_c_is_one_line_and_exit_130(command, module, says, tmp_path, capsys, monkeypatch):
    # Ctrl-C printed KeyboardInterrupt's whole traceback and exited 1
    import importlib

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), "run", interrupted)
    args, _ = REFUSALS.get(command, (["{none}", "-m", "{none}", "-o", "{tmp}/o"], None))
    argv = [a.format(none=tmp_path / "none", tmp=tmp_path) for a in args]
    assert commands.main([command, *argv]) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"isoflow {command}: interrupted; no output written")
    assert says in err and err.count("\n") == 1


def test_zero_shot_explain_and_cds_messages_name_the_flags(tmp_path, capsys):
    """A reviewer got `<input>:finetune.zero_shot.cell_A: ['liver'] are not tissues of the
    bundle` from `--zero-shot cell_A=liver`, `<input>: nothing to explain` and explain's
    non-canonical CDS naming the config key `allow_noncanonical_cds`."""
    from isoflow import explain, finetune

    with pytest.raises(commands.InputError) as caught:
        finetune.zero_shot_sources(["cell_A"], ["Liver", "Lung"], {"cell_A": "liver"})
    err = caught.value
    commands._as_flags(err, finetune.FLAGS)
    assert str(err) == (
        "--zero-shot:cell_A: 'liver' is not a tissue of the bundle (did you mean 'Liver'?)"
    )

    args, _ = REFUSALS["explain"]
    argv = [a.format(none=tmp_path / "none", tmp=tmp_path) for a in args]
    assert commands.main(["explain", *argv]) == 1
    assert capsys.readouterr().err.strip() == (
        "isoflow explain: error: nothing to explain: give --id ID (a construct of --constructs) "
        "or --transcript ID (of --dataset) for mutation effects, --attention for attention by "
        "region, or both"
    )

    said = _noncanonical_cds_error(explain.FLAGS)
    assert "allow_noncanonical_cds" not in said
    assert said.endswith(
        "(only scoring takes one as it is: isoflow score --allow-noncanonical-cds; isoflow "
        "explain reads a canonical CDS only)"
    )


def _has_default(default) -> bool:
    # 0 and 0.0 are defaults to name; None, False (a store_true flag) and [] are "none given"
    return not (default is None or default is False or default == [])


@pytest.mark.parametrize("command", list(commands.COMMANDS))
def test_every_option_has_help_naming_its_default(command):
    """`--help` listed score --batch-size, design --budget/--seed/--fill..., finetune
    --mode/--folds/... without a word or a default."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog=f"isoflow {command}")
    importlib.import_module(commands.COMMANDS[command]).add_arguments(parser)
    bare, unnamed = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = max(action.option_strings, key=len) if action.option_strings else action.dest
        if not action.help:
            bare.append(name)
        elif _has_default(action.default) and "%(default)s" not in action.help:
            unnamed.append(name)
    assert not bare, f"options without help: {bare}"
    assert not unnamed, f"help not naming the default (%(default)s): {unnamed}"
    parser.format_help()  # every %(...)s renders


@pytest.mark.parametrize("command", ["score", "explain", "design"])
def test_out_help_says_an_existing_prefix_is_replaced_all_or_none(command):
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog=f"isoflow {command}")
    importlib.import_module(commands.COMMANDS[command]).add_arguments(parser)
    (out,) = [a for a in parser._actions if "--out" in a.option_strings]
    assert "existing prefix's files are replaced, all or none" in out.help


def test_design_out_help_names_every_file_it_writes():
    """design's --out help lists its files by hand (PREFIX.designs.fa/.gb/.tsv, ...); it
    left out .summary.html, which design.output_paths writes."""
    import argparse
    import re

    from isoflow.design import add_arguments, output_paths

    parser = argparse.ArgumentParser(prog="isoflow design")
    add_arguments(parser)
    (out,) = [a for a in parser._actions if "--out" in a.option_strings]
    for path in output_paths("P").values():
        stem, ext = path[1:].rsplit(".", 1)  # ".designs", "fa"
        assert re.search(re.escape(stem) + r"\.[a-z/.]*?\b" + ext + r"\b", out.help), path


# ------------------------------------------------------------- one spelling per concept

# Every command's parser, and python -m isoflow.train's: the options they share are checked
# across all of them.
PARSERS = {**commands.COMMANDS, "train": "isoflow.train"}


def _parser(command: str):
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog=f"isoflow {command}")
    importlib.import_module(PARSERS[command]).add_arguments(parser)
    return parser


# Spellings of one command line that must parse to one Namespace: today's (kept working),
# the long form the docs use, the short form. score, explain and design took no -m/-o,
# explain no -g/-a/--constructs, python -m isoflow.train no -g.
SPELLINGS = {
    "score": [
        ["--model", "B", "--model", "B2", "--constructs", "C", "--out", "P"],
        ["-m", "B", "-m", "B2", "--constructs", "C", "-o", "P"],
    ],
    "explain": [
        ["--model", "B", "--construct", "C", "--id", "c1", "--genome", "G", "--annotation", "A"]
        + ["--out", "P"],
        ["--model", "B", "--constructs", "C", "--id", "c1", "--genome", "G", "--annotation"]
        + ["A", "--out", "P"],
        ["-m", "B", "--constructs", "C", "--id", "c1", "-g", "G", "-a", "A", "-o", "P"],
    ],
    "design": [
        ["--model", "B", "--constructs", "C", "--target-tissue", "Liver", "--out", "P"],
        ["-m", "B", "--constructs", "C", "--target-tissue", "Liver", "-o", "P"],
    ],
    "finetune": [["t.tsv", "--model", "B", "--out", "D"], ["t.tsv", "-m", "B", "-o", "D"]],
    "variants": [
        ["v.tsv", "--model", "B", "--genome", "G", "--annotation", "A", "--out", "F.tsv"],
        ["v.tsv", "-m", "B", "-g", "G", "-a", "A", "-o", "F.tsv"],
    ],
    "rescore": [["results/runs/R"]],
    "train": [
        ["--config", "c.yaml", "--experiment", "{}", "--dataset", "d", "--run-dir", "r"]
        + ["--genome", "G"],
        ["--config", "c.yaml", "--experiment", "{}", "--dataset", "d", "--run-dir", "r"]
        + ["-g", "G"],
    ],
}


def test_every_command_has_its_spellings_listed():
    assert set(SPELLINGS) == set(PARSERS)


@pytest.mark.parametrize("command", list(SPELLINGS))
def test_short_and_long_flags_parse_to_one_namespace(command):
    """`isoflow score -m B -o P` was a usage error while `isoflow variants -m B -o F` was the
    way to write it: every spelling of a command line gives the same arguments."""
    parser = _parser(command)
    first, *others = SPELLINGS[command]
    expected = parser.parse_args(first)
    for argv in others:
        assert parser.parse_args(argv) == expected, argv


def _options():
    """``(command, action)`` of every optional argument of every parser."""
    for command in PARSERS:
        for action in _parser(command)._actions:
            if action.option_strings and action.dest != "help":
                yield command, action


def test_no_short_flag_means_two_things():
    meanings: dict[str, set] = {}
    for command, action in _options():
        for option in action.option_strings:
            if not option.startswith("--"):
                meanings.setdefault(option, set()).add((action.dest, command))
    for option, uses in meanings.items():
        dests = {dest for dest, _ in uses}
        assert len(dests) == 1, f"{option} means {sorted(uses)}"


def test_one_concept_takes_the_same_flags_in_every_command():
    """A concept (an argument's dest) shared by commands takes the same short flag and the same
    long flag in each: finetune and variants took -m/--model, score --model alone."""
    spelled: dict[str, dict] = {}
    for command, action in _options():
        short = tuple(o for o in action.option_strings if not o.startswith("--"))
        long = "--" + action.dest.replace("_", "-")
        assert long in action.option_strings, (command, action.option_strings)
        spelled.setdefault(action.dest, {})[command] = short
    for dest, by_command in spelled.items():
        assert len(set(by_command.values())) == 1, f"--{dest}: {by_command}"


def test_out_help_says_prefix_folder_or_file():
    """-o is a prefix for score, explain and design, a folder for finetune, one file for
    variants: the meaning is kept, and the help says which."""
    says = {"PREFIX": "output prefix (not a file)", "DIR": "output folder (not a prefix)"}
    says["FILE"] = "output table, one file (not a prefix)"
    seen = {}
    for command, action in _options():
        if action.dest == "out":
            assert action.metavar in says, (command, action.metavar)
            assert action.help.startswith(says[action.metavar]), (command, action.help)
            seen[command] = action.metavar
    assert seen == {
        "score": "PREFIX",
        "explain": "PREFIX",
        "design": "PREFIX",
        "finetune": "DIR",
        "variants": "FILE",
    }
