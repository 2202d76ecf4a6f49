"""The ``isoflow`` console script: ``isoflow <command> [options]``.

Each command lives in its own module, imported only when that command runs, so ``isoflow
--help`` starts without torch. A command module defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status). Errors a user can act on
(:class:`isoflow.errors.InputError` and friends) end the command with their one line on stderr
and exit status 1, never a traceback; Ctrl-C ends it with one line and exit status 130.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import math
import os
import sys

from isoflow.cpu import in_effect, pin_for_command
from isoflow.errors import InputError

# command name -> module; a module is imported only when its command is asked for.
COMMANDS = {
    "score": "isoflow.score",
    "explain": "isoflow.explain",
    "variants": "isoflow.variants",
    "design": "isoflow.design",
    "finetune": "isoflow.finetune",
    "rescore": "isoflow.metrics",
}


# What Ctrl-C leaves: every command writes its outputs all or none (files.atomic_path,
# files.output_set), so an interrupted one leaves the earlier outputs as they were. A command
# that keeps more (finetune's finished folds) says so in its module's INTERRUPTED.
INTERRUPTED = "interrupted; no output written"


def _number(text: str, kind, what: str, ok) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type`` of a count (batch size, epochs, budget...): an integer >= 1."""
    return _number(text, int, "a whole number >= 1", lambda v: v >= 1)


# One spelling per concept in every command that has it (and python -m isoflow.train): the
# option strings a command gives add_argument for the model bundle, the output, the genome
# FASTA, the transcripts table and the construct file. The first short option a command
# took stays the only meaning of that letter (tests/unit/test_commands.py checks every
# parser); --out's help says whether it is a prefix, a folder or a file, which differs.
MODEL_FLAGS = ("-m", "--model")
OUT_FLAGS = ("-o", "--out")
GENOME_FLAGS = ("-g", "--genome")
ANNOTATION_FLAGS = ("-a", "--annotation")
CONSTRUCTS_FLAGS = ("--constructs",)

# --batch-size of the commands that run a bundle (bundle.load_model's batch_size=None)
BATCH_SIZE_HELP = "inputs per forward pass (default: the bundle's evaluation batch size)"
# --device of the commands that run a bundle (checked by check_device before any work)
DEVICE_HELP = "torch device: cpu, cuda, cuda:1 (default: cuda when available, else cpu)"
# --out of the commands that write a set of files under a prefix (files.output_set)
REPLACED = "; an existing prefix's files are replaced, all or none"


def fold_count(text: str) -> int:
    """argparse ``type`` of a number of cross-validation folds: an integer >= 2."""
    return _number(text, int, "a whole number >= 2", lambda v: v >= 2)


def blocks_or_all(text: str) -> int:
    """argparse ``type`` of a number of blocks that train: -1 (all) or an integer >= 0."""
    return _number(text, int, "a whole number >= -1 (-1: all)", lambda v: v >= -1)


def nonnegative_int(text: str) -> int:
    """argparse ``type`` of a seed, a tail length...: an integer >= 0."""
    return _number(text, int, "a whole number >= 0", lambda v: v >= 0)


def nonnegative_float(text: str) -> float:
    """argparse ``type`` of a finite number >= 0 (``nan`` and ``inf`` refused)."""
    return _number(text, float, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)


# How a command that reads constructs for a model reads and places them (isoflow score and
# isoflow finetune; one definition, so a model fine-tuned on constructs is scored with the
# same choices): reading options go to constructs.read_constructs, placement options to
# constructs.construct_inputs. Config keys -> the flags, for a command's FLAGS.
READ_OPTIONS = ("allow_noncanonical_cds", "aav", "aav_limit")
PLACEMENT_OPTIONS = ("background", "fill", "polya_in_rna", "polya_tail")
CONSTRUCT_FLAGS = {
    "allow_noncanonical_cds": "--allow-noncanonical-cds",
    "polya_tail": "--polya-tail",
    "polya_in_rna": "--polya-in-rna",
    "aav_limit": "--aav-limit",
    "fill": "--fill",
}


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say how a construct is placed in a bundle's inputs
    (``PLACEMENT_OPTIONS``; docs/constructs.md): one definition for every command that
    places constructs (score, finetune, explain, design)."""
    parser.add_argument(
        "--background",
        metavar="FASTA",
        help="one-record FASTA filling the DNA window around the cassette (at least the "
        "window long, centre base at the TSS); default: --fill",
    )
    parser.add_argument(
        "--fill",
        default="N",
        help="the letter around the cassette without --background (default: %(default)s)",
    )
    parser.add_argument(
        "--polya-in-rna", action="store_true", help="append the polya part to the RNA"
    )
    parser.add_argument(
        "--polya-tail",
        type=nonnegative_int,
        default=0,
        metavar="N",
        help="append N A's to the RNA (default: %(default)s)",
    )


def add_construct_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say how constructs are read and placed in a bundle's inputs
    (``READ_OPTIONS``, :func:`add_placement_arguments`; docs/constructs.md)."""
    add_placement_arguments(parser)
    parser.add_argument(
        "--allow-noncanonical-cds",
        action="store_true",
        help="read a CDS without ATG / a single terminal stop / whole codons as it is",
    )
    parser.add_argument(
        "--aav", action="store_true", help="check each whole cassette against --aav-limit"
    )
    parser.add_argument(
        "--aav-limit",
        type=positive_int,
        default=None,
        metavar="NT",
        help="AAV packaging limit, ITR to ITR inclusive (default: 4700): GenBank records "
        "with two ITRs, and with --aav every cassette (a table's only with --aav)",
    )


def construct_flags(args: argparse.Namespace) -> tuple[dict, dict]:
    """``(read options, placement)`` from :func:`add_construct_arguments`' flags: the
    keywords of ``constructs.read_constructs`` (``aav_limit`` only when given: its default
    is the reader's) and of ``constructs.construct_inputs`` (``background`` the FASTA
    path, read by the command)."""
    read = {"allow_noncanonical_cds": args.allow_noncanonical_cds, "aav": args.aav}
    if args.aav_limit is not None:
        read["aav_limit"] = args.aav_limit
    placement = {
        "background": args.background,
        "fill": args.fill,
        "polya_in_rna": args.polya_in_rna,
        "polya_tail": args.polya_tail,
    }
    return read, placement


def _module(name: str):
    return importlib.import_module(COMMANDS[name])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; the shell's 128 + SIGINT
        name = argv[0] if argv and argv[0] in COMMANDS else None
        module = sys.modules.get(COMMANDS[name]) if name else None
        lead = f"isoflow {name}" if name else "isoflow"
        sys.stderr.write(f"{lead}: {getattr(module, 'INTERRUPTED', INTERRUPTED)}\n")
        return 130


def _main(argv: list[str]) -> int:
    available = [name for name in COMMANDS if importlib.util.find_spec(COMMANDS[name])]
    top = argparse.ArgumentParser(
        prog="isoflow",
        description="Use a trained isoflow model: score constructs, explain a prediction, "
        "predict variant effects, design cassettes, fine-tune on measured constructs, rescore a "
        "run's metrics. Run "
        "`isoflow COMMAND --help` for a command's options.",
    )
    top.add_argument("command", choices=available, help="one of: " + ", ".join(available))
    top.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if not argv:  # no command: a usage error (exit 2, as argparse's own), the help on stderr
        top.print_help(sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    ns = top.parse_args(argv[:1])
    # torch's CPU kernels held as in the workflow (resources.cpu_kernels' default;
    # ISOFLOW_CPU_KERNELS=native lets the libraries choose), before the command's module
    # imports torch: a command gives the numbers its rule would
    try:
        kernels = pin_for_command()
    except InputError as err:
        sys.stderr.write(f"isoflow {ns.command}: error: {err}\n")
        return 1
    module = _module(ns.command)
    parser = argparse.ArgumentParser(prog=f"isoflow {ns.command}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("isoflow").info("%s", kernels)
    if "torch" in sys.modules:
        logging.getLogger("isoflow").info("%s", in_effect())
    try:
        check_device(getattr(args, "device", None))
        return int(module.run(args) or 0)
    except InputError as err:
        _as_flags(err, getattr(module, "FLAGS", {}))
        # no file and no record: the command line itself is at fault, not "<input>"
        line = err.message if err.path is None and err.record in (None, "") else str(err)
        sys.stderr.write(f"isoflow {ns.command}: error: {line}\n")
        return 1
    except Exception as err:  # a file's fault, named by the error: one line; else a bug
        line = file_error(err)
        if line is None:
            raise
        sys.stderr.write(f"isoflow {ns.command}: error: {_with_option(line, parser, args)}\n")
        return 1


def _with_option(line: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``line`` (a file's error, starting with the file) led by the option that named the
    file, where one did (``--background /x.fa: No such file or directory``; a positional
    argument has no option to name)."""
    for action in parser._actions:
        if not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v and line.startswith(f"{v}:"):
                return f"{max(action.option_strings, key=len)} {line}"
    return line


def _as_flags(err: InputError, flags: dict[str, str]) -> None:
    """A message naming a setting by its config key (``allow_noncanonical_cds``,
    ``finetune.folds``) names the command's flag instead: the module's ``FLAGS``. Short
    keys (``fill``) only where they stand for the path; keys with ``_`` or ``.`` anywhere. A
    key ending in ``.`` is a section whose keys are given another way (``design.constraints.``
    -> ``--constraints key ``: ``design.constraints.gc_max`` reads ``--constraints key
    gc_max``); a key of its own in ``flags`` wins over the section's."""
    import re

    sections = {k: v for k, v in flags.items() if k.endswith(".")}
    if err.path in flags:
        err.path = flags[err.path]
    if err.path is None and isinstance(err.record, str):
        if err.record in flags:
            err.path, err.record = flags[err.record], None
        else:
            for prefix, flag in sections.items():
                if err.record.startswith(prefix):
                    err.path, err.record = flag.split()[0], err.record[len(prefix) :]
                    break
    for key, flag in flags.items():
        if ("_" in key or "." in key) and not key.endswith("."):
            pattern = rf"(?<![\w.-]){re.escape(key)}(?![\w.])"
            err.message = re.sub(pattern, flag, err.message)
    for prefix, flag in sections.items():
        pattern = rf"(?<![\w.-]){re.escape(prefix)}(?=\w)"
        err.message = re.sub(pattern, flag, err.message)


def file_error(err: BaseException) -> str | None:
    """One line for an error a file caused that names the file (an ``OSError`` with a
    filename, a missing file as pyarrow, pandas or polars name it, a YAML syntax error,
    pyarrow's "Could not open Parquet input source"), else None (a bug: its traceback is
    kept)."""
    import re

    if isinstance(err, OSError) and err.filename is not None:
        reason = err.strerror or str(err)
        return f"{err.filename}: {reason}"
    missing = _missing_file(err)
    if missing is not None:
        return f"{missing}: No such file or directory"
    yaml = sys.modules.get("yaml")
    if yaml is not None and isinstance(err, yaml.YAMLError):
        mark = getattr(err, "problem_mark", None)
        if mark is None or not mark.name or mark.name.startswith("<"):
            return None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        return f"{mark.name}:{mark.line + 1}: not valid YAML ({problem}); fix the file"
    arrow = sys.modules.get("pyarrow")
    if arrow is not None and isinstance(err, arrow.ArrowException):
        found = re.search(r"input source '([^']+)'", str(err))
        if found and not found.group(1).startswith("<"):
            return f"{found.group(1)}: not a Parquet table; give the .parquet file"
    return None


def _missing_file(err: BaseException) -> str | None:
    """The path of a ``FileNotFoundError`` without ``filename``: pyarrow's datasets and
    pandas raise ``FileNotFoundError(path)``, pyarrow's ``read_schema`` / ``ParquetFile``
    "Failed to open local file 'path'", polars "... (os error 2): path"."""
    import re

    if not isinstance(err, FileNotFoundError) or err.filename is not None:
        return None
    text = str(err)
    found = re.search(r"Failed to open local file '([^']+)'", text) or re.search(
        r"\(os error 2\): (\S.*)$", text
    )
    if found:
        return found.group(1)
    if len(err.args) == 1 and isinstance(err.args[0], str) and "\n" not in err.args[0]:
        return err.args[0] if not os.path.lexists(err.args[0]) else None
    return None


def check_device(device: str | None) -> None:
    """``--device`` checked before any work: a name torch reads, and a device this machine
    has (``cuda`` without a GPU was found only after the inputs were read)."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(
            "--device", None, f"{device!r} is not a torch device (cpu, cuda, cuda:1)"
        ) from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(
                "--device", None, f"{device}: no CUDA device on this machine; use --device cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise InputError("--device", None, f"{device}: this machine has {count} CUDA device(s)")
        return
    if parsed.type == "mps" and torch.backends.mps.is_available():
        return
    raise InputError("--device", None, f"{device}: not available here; use cpu or cuda")


if __name__ == "__main__":
    sys.exit(main())
