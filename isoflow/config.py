"""Config checks that read as one line: the key path, the value and what is wrong."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from isoflow.errors import InputError, did_you_mean
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.model.registry import ENCODERS

# The schema beside the package in a checkout (or an editable install); an installed copy of
# the package (the rules' conda env) has none and relies on the workflow having validated.
SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"


def key_path(parts) -> str:
    """``['genome', 'sha256']`` -> ``genome.sha256``; list indices as ``[0]``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


@functools.cache
def load_schema(schema_path: str | Path) -> dict[str, Any]:
    # libyaml's loader when PyYAML was built with it: 7 ms instead of 63 ms for schema.yaml,
    # read at every workflow parse (bench/bench_parse.py).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(schema_path).read_text(), Loader=loader)


def _unknown_keys(error: jsonschema.ValidationError) -> list[str]:
    """The keys an ``additionalProperties: false`` error complains about, in config order."""
    known = error.schema.get("properties", {})
    patterns = error.schema.get("patternProperties", {})
    return [
        key
        for key in error.instance
        if key not in known and not any(re.search(p, key) for p in patterns)
    ]


# Keys a user may look for in an encoder spec that live in another section.
ELSEWHERE = {
    "compile": "torch.compile of the frozen forward is embed.compile, a setting of the embed "
    "rules: fine-tuned and LoRA encoders, read raw in train, are never compiled",
}


def describe(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, or for a typo (unknown key, value not in an enum) the nearest
    valid spelling."""
    if error.validator == "additionalProperties" and error.validator_value is False:
        unknown = _unknown_keys(error)
        if unknown:
            key = unknown[0]
            if key in ELSEWHERE and "pool_to" in error.schema.get("properties", {}):
                return f"unknown key {key!r} in an encoder spec ({ELSEWHERE[key]})"
            return f"unknown key {key!r}" + did_you_mean(key, error.schema.get("properties", {}))
    if error.validator == "enum" and isinstance(error.instance, str):
        return error.message + did_you_mean(error.instance, error.validator_value)
    if error.validator == "uniqueItems" and isinstance(error.instance, list):
        seen: set[str] = set()
        twice = [v for v in map(repr, error.instance) if v in seen or seen.add(v)]
        return f"{twice[0]} is listed twice; list each once"
    return error.message


def check_config(
    config: dict[str, Any],
    schema_path: str | Path = SCHEMA,
    source: str = "config",
    sections: tuple[str, ...] | None = None,
) -> None:
    """Raise an InputError naming the first (most relevant) schema violation, on one line.

    Snakemake's own ``validate`` (which also fills defaults) prints a multi-line schema dump;
    this runs first so a user sees ``config:genome.sha256: 'xyz' does not match ...`` or
    ``config:train: unknown key 'max_epoch' (did you mean 'max_epochs'?)``.
    ``sections`` checks only those top-level keys (a partial config, e.g. a run's settings).
    """
    schema = load_schema(str(schema_path))
    if sections is not None:
        schema = {
            "$schema": schema.get("$schema"),
            "type": "object",
            "properties": {k: schema["properties"][k] for k in sections},
        }
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise InputError(source, key_path(error.absolute_path), describe(error))
    if sections is None:
        _check_encoder_names(config, source)
        _check_constructs(config, source)
        _check_design(config, source)
        _check_rna_kmers(config, source)
        check_cuda_graph(config, source)


# train.precision values that scale the loss (fp16's GradScaler: a host check for inf each
# step, which a CUDA graph cannot hold)
SCALED_PRECISIONS = ("16-mixed", "16", 16)


def check_cuda_graph(
    config: dict[str, Any], source: str = "config", experiments: list[dict] | None = None
) -> None:
    """``train.cuda_graph: true`` captures the cached-embedding step on one GPU
    (``isoflow.graph_step``): refused, in one line naming the key, with ``train.compile``,
    more than one device or DDP, fp16 loss scaling, and any experiment (``experiments``, else
    the config's) reading a modality raw (fine-tuned or LoRA encoders: tokenised on the host,
    variable shapes) rather than from ``model.cached_modalities``."""
    train = config.get("train") or {}
    if not train.get("cuda_graph"):
        return
    why = None
    devices = train.get("devices", 1)
    if train.get("compile"):
        why = "and train.compile: true both take the step; set one of them"
    elif train.get("strategy", "auto") != "auto" or not (
        devices == 1 or (isinstance(devices, list) and len(devices) == 1)
    ):
        why = (
            f"captures one process's step on one GPU, not train.devices: {devices!r} / "
            f"train.strategy: {train.get('strategy', 'auto')}; set train.devices: 1 and "
            "train.strategy: auto, or train.cuda_graph: false"
        )
    elif train.get("precision") in SCALED_PRECISIONS:
        why = (
            f"takes no fp16 loss scaling (train.precision: {train['precision']}); use "
            "bf16-mixed or 32-true"
        )
    else:
        cached = set((config.get("model") or {}).get("cached_modalities") or [])
        if experiments is None:
            experiments = config.get("experiments") or []
        for experiment in experiments:
            modalities = {**EXPERIMENT_DEFAULTS, **experiment}["modalities"]
            raw = [m for m in modalities if m not in cached]
            if raw:
                why = (
                    f"captures steps on cached embeddings only, but an experiment reads "
                    f"{', '.join(raw)} raw (not in model.cached_modalities); set "
                    "train.cuda_graph: false for runs that fine-tune an encoder"
                )
                break
    if why is not None:
        raise InputError(source, "train.cuda_graph", f"true {why}")


def _check_rna_kmers(config: dict[str, Any], source: str) -> None:
    """``rna.max_nt`` a multiple of the Nucleotide Transformer's k-mer when an NT encoder
    reads RNA without a ``max_len`` of its own (the same check as the encoder's
    ``spec_from_config``, which would raise it only when an embed or train job starts)."""
    from isoflow.model.registry import TOKEN_GEOMETRY, rna_kmer_error
    from isoflow.settings import MODEL_DEFAULTS, RNA_DEFAULTS  # it imports this module

    max_nt = {**RNA_DEFAULTS, **(config.get("rna") or {})}.get("max_nt")
    name = {**MODEL_DEFAULTS, **(config.get("model") or {})}.get("rna_encoder")
    if not max_nt or not name:
        return
    spec = (config.get("encoders") or {}).get(name) or {}
    family = ENCODERS.get(spec.get("class") or name, ("",))[0]
    kmer = TOKEN_GEOMETRY["nucleotide_transformer"].letters
    if family == "nucleotide_transformer" and "max_len" not in spec and int(max_nt) % kmer:
        raise rna_kmer_error(int(max_nt), source, name)


def _check_design(config: dict[str, Any], source: str) -> None:
    """``design.constraints``' lower GC bounds at most their upper ones, which the schema
    checks one key at a time (:func:`isoflow.constraints.check_bounds`)."""
    section = config.get("design") or {}
    if section.get("constraints"):
        from isoflow.constraints import check_bounds  # torch-free; only this check needs it

        try:
            check_bounds(section["constraints"])
        except InputError as err:
            raise InputError(source, err.record, err.message) from None


def _check_constructs(config: dict[str, Any], source: str) -> None:
    """``constructs.aav_limit`` set for a construct table without ``constructs.aav`` checks
    nothing (a table has no ITRs; :func:`isoflow.constructs.aav_limit_ignored`): refused, as
    ``isoflow score --aav-limit`` without ``--aav`` is."""
    from isoflow.constructs import aav_limit_ignored  # torch-free; only this check needs it

    section = config.get("constructs") or {}
    table, limit = section.get("table"), section.get("aav_limit")
    if table and aav_limit_ignored(table, aav=bool(section.get("aav")), aav_limit=limit):
        raise InputError(
            source,
            "constructs.aav_limit",
            f"{limit} is set, but constructs.aav is false and constructs.table ({table}) is a "
            "table, whose cassettes carry no ITR annotation: only aav checks them against the "
            "limit (a GenBank record with two ITRs is checked without it); set "
            "constructs.aav: true, or constructs.aav_limit: null",
        )


def _check_encoder_names(config: dict[str, Any], source: str) -> None:
    """Each encoder's ``class`` is a registered encoder class, and the encoder names the
    config gives (model.rna_encoder, model.protein_encoder, each experiment's dna_encoder)
    are entries of ``encoders`` or encoder classes: a misspelt one would otherwise surface
    only inside a job, or as a folder nobody builds. The classes are the registry's
    (``isoflow.model.registry.ENCODERS``), so a new encoder family needs no schema edit."""
    for name, spec in (config.get("encoders") or {}).items():
        cls = (spec or {}).get("class")
        if cls is not None and cls not in ENCODERS:
            message = f"{cls!r} is not an encoder class"
            raise InputError(
                source, f"encoders.{name}.class", message + did_you_mean(cls, ENCODERS)
            )
        family = ENCODERS.get(cls or name, ("",))[0]
        if (spec or {}).get("attention") is not None and family != "esm2":
            raise InputError(
                source,
                f"encoders.{name}.attention",
                "is an ESM-2 setting (fair-esm's attention through SDPA); "
                f"this encoder is {family or 'not a registered class'}: remove it",
            )
    known = [*(config.get("encoders") or {}), *ENCODERS]
    for name in (config.get("resources") or {}).get("embed_threads") or {}:
        if name not in known:
            message = f"{name!r} is not an entry of encoders nor an encoder class"
            raise InputError(
                source, f"resources.embed_threads.{name}", message + did_you_mean(name, known)
            )
    given = [
        (f"model.{key}", (config.get("model") or {}).get(key))
        for key in ("rna_encoder", "protein_encoder")
    ]
    for i, experiment in enumerate(config.get("experiments") or []):
        given.append((f"experiments[{i}].dna_encoder", experiment.get("dna_encoder")))
    for where, name in given:
        if name is not None and name not in known:
            message = f"{name!r} is not an entry of encoders nor an encoder class"
            raise InputError(source, where, message + did_you_mean(name, known))
    # each slot's encoder, defaults included (an `encoders.enformer` of another class is
    # read by every experiment naming no dna_encoder)
    from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
    from isoflow.settings import MODEL_DEFAULTS  # it imports this module

    for where, name in given:
        if where.startswith("experiments"):
            name = name or EXPERIMENT_DEFAULTS["dna_encoder"]
        else:
            name = name or MODEL_DEFAULTS[where.removeprefix("model.")]
        _check_slot_modality(config, source, where, name)


def _check_slot_modality(config: dict[str, Any], source: str, where: str, name: str) -> None:
    """The encoder named at ``where`` (``model.rna_encoder``, ``model.protein_encoder``, an
    experiment's ``dna_encoder``) reads that slot's modality: ESM-2 given DNA passed the
    parse and the dry run and failed only in the train job (``isoflow.loader``)."""
    from isoflow.model.registry import encoder_modality

    slot = where.rsplit(".", 1)[-1].removesuffix("_encoder")
    spec = (config.get("encoders") or {}).get(name) or {}
    modality = encoder_modality(name, spec)
    if modality != slot:
        readers = [
            n
            for n, s in {**dict.fromkeys(ENCODERS), **(config.get("encoders") or {})}.items()
            if (s or {}).get("class", n) in ENCODERS and encoder_modality(n, s) == slot
        ]
        raise InputError(
            source,
            where,
            f"{name!r} reads {modality}, not {slot}: name an encoder of {slot}"
            + (f" ({', '.join(readers)})" if readers else ""),
        )


# Where the remote-code check records the NT snapshots whose remote code imported (one small
# JSON per code and versions, named by their digest): the import (torch and transformers'
# modeling modules) cost 5.6 s a parse on a shared 2-core machine (docs/benchmarks.md), paid
# once per snapshot and release, not at every Snakemake start.
REMOTE_CODE_DIR = ".isoflow/remote_code"


# ISOFLOW_CHECK_REMOTE_CODE=0: no parse-time import of NT-v2 remote code (a submit host whose
# transformers differs from the jobs' environment); the jobs still fail on it in one line.
REMOTE_CODE_ENV = "ISOFLOW_CHECK_REMOTE_CODE"


def check_nt_remote_code(
    config: dict[str, Any],
    stamp_dir: str | os.PathLike = REMOTE_CODE_DIR,
    needed: Iterable[str | os.PathLike] | None = None,
):
    """Each pretrained Nucleotide Transformer whose weights folder already holds the download
    its spec asks for: the snapshot's remote code is the code recorded at download and imports
    with this transformers (``isoflow.weights.check_remote_code``; the loader fails on the same
    import with the same line), so remote code older NT-v2 snapshots ship, importing names newer
    transformers releases removed, stops the run or dry run before any job, in one line, rather
    than the first embed or train job after hours of others. Nothing is imported without such a
    folder (the demo's tiny encoders, a folder not yet downloaded: rule download_encoders checks
    it when it downloads; a record of another download than the spec's: that download reruns, or
    the loader says so), nor for code that imported before with the same torch, transformers and
    Python (a file in ``stamp_dir`` keyed by their versions and the code files' sha256; a stamp
    it cannot write is skipped). ``needed``: only these folders (rules/common.smk, once the DAG
    is built: the folders whose download record a job that will run reads), else every
    configured one. ``ISOFLOW_CHECK_REMOTE_CODE=0`` skips the check (a submit host whose
    transformers differs from the jobs' environment). A download record that is no JSON object
    (truncated by an interrupted copy) stops it in one line (``isoflow.weights.read_source``),
    not taken for another download and skipped."""
    from isoflow.weights import SOURCE_FILE, check_remote_code, check_source, read_source
    from isoflow.workflow import weights_folders  # it imports this module

    if os.environ.get(REMOTE_CODE_ENV, "1") == "0":
        return
    wanted = None if needed is None else {os.path.normpath(str(f)) for f in needed}
    specs = config.get("encoders") or {}
    for folder, names in weights_folders(config).items():
        if wanted is not None and os.path.normpath(str(folder)) not in wanted:
            continue
        nt = [
            name
            for name in names
            if ENCODERS.get((specs.get(name) or {}).get("class") or name, ("",))[0]
            == "nucleotide_transformer"
        ]
        if not nt or not (Path(folder) / SOURCE_FILE).is_file():
            continue
        read_source(folder)  # a broken record (an interrupted copy): one line, not skipped below
        try:
            check_source(folder, nt[0], specs.get(nt[0]) or {})
        except InputError:
            continue  # another download is asked for: its own rerun or one line at load
        stamp = Path(stamp_dir) / f"{_remote_code_key(folder)}.json"
        if stamp.is_file():
            continue
        check_remote_code(folder)
        from isoflow.files import atomic_path

        try:  # the stamp only saves the next parse an import: a folder it cannot write is fine
            with atomic_path(stamp) as tmp:
                tmp.write_text(json.dumps({"folder": str(folder), "imported": True}) + "\n")
        except OSError:
            pass


def _remote_code_key(folder: str | os.PathLike) -> str:
    """sha256 of a weights folder's code files' digests and the torch, transformers and
    Python versions: what decides whether its remote code imports."""
    import hashlib
    import sys
    from importlib.metadata import version

    from isoflow.weights import code_digests

    key = {
        "code": code_digests(folder),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "python": sys.version,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


# enformer-pytorch computes TensorFlow's gamma positional features (what the official weights
# were trained with, `use_tf_gamma`) only for the full input of 196,608 bp; any other window
# fails inside the first forward pass of the embed or train job.
TF_GAMMA_WINDOW = 196_608


def check_dna_encoder(config: dict[str, Any], name: str) -> None:
    """Encoder ``name`` read through this config's ``dna.window``, as only the job's first
    forward pass (after the weights' download and load) would otherwise reject it: a
    pretrained Enformer with ``use_tf_gamma`` needs exactly 196,608 bp; an Enformer needs
    a multiple of 128 bp (pretrained) giving at least its ``target_length`` bins (896 as
    published); a pretrained Borzoi exactly its ``input_length`` (524,288 bp, which its
    relative-position table covers). One line naming the key and the fix. Called from the
    train and embed rules' input functions, so it stops a DAG holding such a job before any
    job starts, while a DAG without one (the data half alone) runs."""
    from isoflow.model.registry import TOKEN_GEOMETRY
    from isoflow.settings import with_encoder_defaults  # it imports this module

    spec = with_encoder_defaults((config.get("encoders") or {}).get(name))
    family = ENCODERS.get(spec.get("class", name), ("",))[0]
    if family not in ("enformer", "borzoi"):
        return
    window = int((config.get("dna") or {}).get("window") or 0) or _schema_window()
    geometry = TOKEN_GEOMETRY["enformer"]
    bins = _enformer_bins(spec)
    pretrained = spec.get("source") == "pretrained"
    if family == "borzoi":
        from isoflow.model.registry import BORZOI_INPUT_BP

        needed = int(spec.get("input_length") or BORZOI_INPUT_BP)
        if pretrained and window != needed:
            raise InputError(
                "config",
                "dna.window",
                f"{window:,} bp, but the pretrained Borzoi encoders.{name} reads exactly "
                f"{needed:,} bp windows (its relative-position table covers that input): set "
                f"dna.window: {needed} in a separate results folder (config/borzoi.yaml)",
            )
        return
    if pretrained and spec.get("use_tf_gamma") and window != TF_GAMMA_WINDOW:
        raise InputError(
            "config",
            f"encoders.{name}.use_tf_gamma",
            f"true needs dna.window {TF_GAMMA_WINDOW:,} (enformer-pytorch has TensorFlow's "
            f"gamma positions only for the full input), but dna.window is {window:,}: set "
            f"dna.window: {TF_GAMMA_WINDOW}, or encoders.{name}.use_tf_gamma: false with a "
            f"dna.window that is a multiple of 128 and still gives at least its target_length "
            f"of {max(bins, 1):,} bins ({max(bins, 1) * 128:,} bp or more)",
        )
    letters = geometry.letters
    if bins != -1 and window // letters < bins:
        raise InputError(
            "config",
            "dna.window",
            f"{window:,} bp gives {window // letters:,} bins of {letters} bp, fewer than the "
            f"{bins:,} (target_length) the Enformer encoders.{name} returns: set dna.window to "
            f"at least {bins * letters} (or a smaller encoders.{name}.target_length)",
        )
    if pretrained and window % letters:
        low = window - window % letters
        raise InputError(
            "config",
            "dna.window",
            f"{window:,} bp is not a multiple of {letters}, which the pretrained Enformer "
            f"encoders.{name} reads in {letters}-bp bins: set {low} or {low + letters}",
        )


def _enformer_bins(spec: dict[str, Any]) -> int:
    """The bins an Enformer spec returns (its target_length; -1: all), as
    ``workflow.dna_span`` reads it: a tiny one's hparams, else the spec's own."""
    from isoflow.model.registry import TOKEN_GEOMETRY

    geometry = TOKEN_GEOMETRY["enformer"]
    if spec.get("source") == "tiny":
        return int((spec.get("hparams") or {}).get(geometry.cap, geometry.tiny))
    return int(spec.get(geometry.cap) or geometry.pretrained)


def _schema_window() -> int:
    return int(load_schema(str(SCHEMA))["properties"]["dna"]["properties"]["window"]["default"])


def replaced_experiments(configfiles, workflow_dir: str | os.PathLike) -> str | None:
    """One warning line when two ``--configfile`` overlays (every file but the Snakefile's
    config/config.yaml under ``workflow_dir``, the Snakefile's folder, ``workflow.basedir``,
    in the order given) each set ``experiments``: Snakemake replaces a list when
    it merges config files, so only the last file's runs are planned (``config.yaml
    ablations.yaml borzoi.yaml`` planned Borzoi's 3 runs, not the ablations' 45 plus them).
    A warning, not an error: an overlay narrowing another's runs on purpose
    (``demo.yaml mine.yaml``) is common. None otherwise; an unreadable file is left to
    Snakemake's own loader.

    The workflow's own config/config.yaml, not the one beside the installed package's
    schema: in a copy of the workflow (a user's, with isoflow pip-installed; the SLURM
    test's) that one counted as an overlay, and every job warned falsely."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    setting: list[tuple[str, int]] = []
    workflow_dir = Path(workflow_dir).resolve()
    base = workflow_dir / "config" / "config.yaml"
    overlays = [p for p in dict.fromkeys(map(str, configfiles)) if Path(p).resolve() != base]
    for path in overlays:
        try:
            data = yaml.load(Path(path).read_text(), Loader=loader)
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("experiments"), list):
            setting.append((_shown(path, workflow_dir), len(data["experiments"])))
    if len(setting) < 2:
        return None

    def entries(n: int) -> str:
        return f"{n} entr{'y' if n == 1 else 'ies'}"

    dropped = ", ".join(f"{path} ({entries(n)})" for path, n in setting[:-1])
    last, n = setting[-1]
    return (
        f"isoflow: warning: experiments is set by {dropped} and {last} ({entries(n)}): "
        f"Snakemake replaces lists when it merges config files, so only {last}'s are "
        "planned; put every experiment in one overlay to run them all"
    )


def _shown(path: str, workflow_dir: Path) -> str:
    """``path`` relative to the workflow when inside it (config/borzoi.yaml), else as given."""
    try:
        return str(Path(path).resolve().relative_to(workflow_dir))
    except ValueError:
        return path
