"""The workflow's layout: every input function, wildcard pattern and path list the rules use.

``rules/*.smk`` import from here (and from ``isoflow.config``, ``isoflow.experiments``,
``isoflow.settings``, ``isoflow.provenance``) and nothing else of the package, so reading the
workflow loads only the standard library, the config layer and what Snakemake loads itself:
torch, Lightning, the encoders and matplotlib load inside the jobs that use them
(``tests/workflow/test_parse.py``).
"""

from __future__ import annotations

import datetime
import math
import os
import posixpath
import re
import subprocess
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from isoflow.config import SCHEMA, check_dna_encoder, load_schema
from isoflow.cpu import VARIABLES as CPU_VARIABLES
from isoflow.errors import InputError
from isoflow.experiments import (
    DEFAULT_POOLING,
    FACTORS,
    ablation_groups,
    expand_experiments,
    run_pooling,
)
from isoflow.experiments import DEFAULTS as EXPERIMENT_DEFAULTS
from isoflow.model.registry import (
    IMPORT_MB,
    TOKEN_GEOMETRY,
    encoder_host_mb,
    encoder_kind,
    encoder_modality,
    family_packages,
    installed_version,
    nt_dna_crop,
)
from isoflow.settings import (
    ENCODER_DEFAULTS,
    cached_modalities,
    encoder_names,
    encoder_spec,
    protein_config,
    rna_config,
    scoped_settings,
    train_config,
    with_encoder_defaults,
)
from isoflow.weights import SOURCE_FILE, download_source

# ---------------------------------------------------------------- options set away from defaults


def set_options(
    config: Mapping[str, Any], section: str, keys: Iterable[str], schema_path=SCHEMA
) -> dict[str, Any]:
    """``{key: value}`` of those ``keys`` of ``config[section]`` whose value is not the
    schema's default: the rule params of options that must not change a rule's params (and
    so trigger no rerun of results built before the option existed) while left at their
    default. The schema holds the one default; an absent param leaves the library
    function's keyword at its default, which is the same behaviour."""
    properties = load_schema(str(schema_path))["properties"][section]["properties"]
    values = config.get(section) or {}
    return {
        key: sorted_keys(values[key])
        for key in keys
        if key in values and values[key] != properties[key].get("default")
    }


# split key -> the schemes whose split reads it (isoflow.splits.split_transcripts: the fractions
# and salt hash genes or loci; locus_tss_distance joins genes into loci; the held-out
# chromosomes are the chrom scheme's). The splits and export rules get a key only under a
# scheme that reads it, so editing a key the configured scheme ignores reruns nothing
# (split.valid_chroms under locus replanned the splits and everything after them).
# ``scheme`` itself, read by all, is not in it.
SPLIT_KEY_SCHEMES = {
    "valid_fraction": ("gene", "locus"),
    "test_fraction": ("gene", "locus"),
    "salt": ("gene", "locus"),
    "locus_tss_distance": ("locus",),
    "valid_chroms": ("chrom",),
    "test_chroms": ("chrom",),
}


def split_settings(
    config: Mapping[str, Any], scheme: str | None = None, schema_path=SCHEMA
) -> dict[str, Any]:
    """``config["split"]`` as the rules record it for ``scheme`` (default: the configured
    one): a key of ``SPLIT_KEY_SCHEMES`` only under a scheme that reads it, ``scheme`` as
    configured, keys sorted (:func:`sorted_keys`: the params do not depend on the config's
    key order)."""
    section = dict(config.get("split") or {})
    if scheme is None:
        scheme = section.get("scheme", schema_default("split", "scheme", schema_path))
    return sorted_keys(
        {
            key: value
            for key, value in section.items()
            if scheme in SPLIT_KEY_SCHEMES.get(key, (scheme,))
        }
    )


def schema_default(section: str, key: str, schema_path=SCHEMA) -> Any:
    """The schema's default of ``config[section][key]`` (its one home)."""
    return load_schema(str(schema_path))["properties"][section]["properties"][key]["default"]


# ---------------------------------------------------------------- the genome

BGZIP_SUFFIXES = (".gz", ".bgz")


def fasta_index_files(fasta: str) -> list[str]:
    """Rule genome_index's outputs: the ``.fai`` and, for a (bgzip) FASTA named ``.gz`` or
    ``.bgz``, its ``.gzi`` (``isoflow.genome.index_fasta`` writes both atomically), beside
    the FASTA where the readers look for them."""
    return [f"{fasta}.fai"] + ([f"{fasta}.gzi"] if fasta.endswith(BGZIP_SUFFIXES) else [])


# Where the workflow's own inputs go: downloads, and the demo's generated data.
RESOURCES = "resources"


def genome_index_outputs(fasta: str) -> list[str]:
    """Rule genome_index's outputs for this genome FASTA, or ``[]`` when there is no such rule.

    A FASTA under ``resources/`` is the workflow's (downloaded, or the demo's generated one):
    its index is the rule's output, remade with it. Any other FASTA is the user's own, often a
    shared read-only reference: when its index files (``fasta_index_files``) are all there,
    they are inputs like the FASTA itself, never an output Snakemake could decide to remake
    ("Code has changed", ``--forceall``) and write beside the user's file; the readers check
    them against the FASTA (``genome.check_fasta_index``, in ``GenomeWindows``). Only an
    index that is missing is built there, by the rule (``genome.index_fasta``, which fails in
    one line when the folder is not writable). Relative paths are taken from the working
    directory, as Snakemake takes them."""
    index = fasta_index_files(fasta)
    resources = os.path.abspath(RESOURCES)
    if os.path.abspath(fasta).startswith(resources + os.sep):
        return index
    return [] if all(os.path.exists(path) for path in index) else index


# ---------------------------------------------------------------- training runs


def run_pattern(experiments: Mapping[str, Any]) -> str:
    """Regex matching exactly the configured run names (an impossible one when none)."""
    return "|".join(re.escape(run) for run in experiments) or "(?!)"


def train_inputs(config: dict, experiment: dict, dataset: str, genome: str) -> dict[str, str]:
    """Inputs of the ``train`` rule: the dataset, the genome (+ .fai) when DNA is read raw,
    one ``cache_{modality}`` embeddings folder per cached modality, and one
    ``weights_{modality}`` download record per pretrained encoder read raw (the job builds
    it from its weights folder, as an embed job does: ``embed_inputs``)."""
    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    if "dna" in experiment["modalities"]:
        check_dna_encoder(config, experiment["dna_encoder"])
    inputs = {"dataset": dataset}
    cached = cached_modalities(config, experiment)
    if "dna" in experiment["modalities"] and "dna" not in cached:
        inputs["genome"] = genome
        inputs["fai"] = f"{genome}.fai"
    names = encoder_names(config, experiment)
    for modality in cached:
        inputs[f"cache_{modality}"] = cache_dir(names[modality], run_pooling(experiment))
    for modality, name in names.items():
        spec = (config.get("encoders") or {}).get(name)
        if modality not in cached and with_encoder_defaults(spec)["source"] == "pretrained":
            inputs[f"weights_{modality}"] = f"{weights_dir(name, spec or {})}/{SOURCE_FILE}"
    return inputs


def rule_inputs(wildcards, config: dict, experiments: dict, dataset: str, genome: str):
    """Input function of the ``train`` rule for ``wildcards.run``."""
    return train_inputs(config, experiments[wildcards.run], dataset, genome)


def rule_experiment(wildcards, experiments: dict) -> dict:
    """Run ``wildcards.run``'s experiment as the rules' params: keys sorted
    (:func:`sorted_keys`)."""
    return sorted_keys(experiments[wildcards.run])


def experiment_params(experiments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Run name -> experiment as the rules' params: the runs in config order (the report's
    order), each experiment's keys sorted (:func:`sorted_keys`)."""
    return {run: sorted_keys(experiment) for run, experiment in experiments.items()}


def grouped_train_runs(
    config: dict, experiments: Mapping[str, dict], dataset: str, genome: str
) -> dict[str, dict[str, Any]]:
    """Each run of the one ``train`` job of ``resources.train_jobs: one``, in config order:
    its experiment, folder, log and embedding caches (``isoflow.train.run_experiments``)."""
    runs = {}
    for run, experiment in experiments.items():
        inputs = train_inputs(config, experiment, dataset, genome)
        runs[run] = {
            "experiment": sorted_keys(experiment),
            "run_dir": f"results/runs/{run}",
            "log": f"logs/train/{run}.log",
            "cache_dirs": {
                key.removeprefix("cache_"): path
                for key, path in inputs.items()
                if key.startswith("cache_")
            },
        }
    return runs


def grouped_train_inputs(
    config: dict, experiments: Mapping[str, dict], dataset: str, genome: str
) -> dict[str, str]:
    """Inputs of that one job: what any run reads (``train_inputs``), caches and weights
    named by their folder (two runs may read different DNA encoders' caches or weights)."""
    inputs: dict[str, str] = {}
    for experiment in experiments.values():
        for key, path in train_inputs(config, experiment, dataset, genome).items():
            if key.startswith("cache_"):
                key = f"cache_{Path(path).name}"
            elif key.startswith("weights_"):
                key = f"weights_{Path(path).parent.name}"
            inputs[key] = path
    return inputs


def train_runtime_min(config: dict, runs: int = 1) -> int:
    """Wall time (minutes) of a train job holding ``runs`` runs: ``resources.train_runtime_min``
    per round of them. One job per run (``train_jobs: per_run``) is one round; the one job of
    ``train_jobs: one`` trains them ``resources.train_processes`` at a time, each worker taking
    the next run when its last ends, so ``ceil(runs / processes)`` rounds (with every run
    within the per-run time, the last run starts before every worker has finished
    ``floor((runs - 1) / processes)`` runs' time). It asked for ``runs`` rounds whatever the
    processes: the ablation grid's 45 runs in 2 processes asked for 45 days, not 23."""
    resources = config["resources"]
    processes = max(1, min(int(resources["train_processes"]), max(runs, 1)))
    return int(resources["train_runtime_min"]) * max(1, math.ceil(runs / processes))


def train_cpus(wildcards, threads: int, config: dict, runs: int = 1, processes: int = 1) -> int:
    """``cpus_per_task`` of a train job (``--cpus-per-task`` on SLURM; the rule's ``threads``,
    as a profile's ``set-threads`` or ``--cores`` leave them, stay its torch threads): the
    cores its processes and threads keep busy, so a cluster reserves no idle ones.

    One training process holds ``threads`` torch threads (its main thread one of them), plus
    ``train.num_workers`` loader processes or, with none and ``train.prefetch_batches`` > 0,
    the thread making batches ahead (``isoflow.loader.PrefetchDataLoader``); under
    ``train.strategy: ddp`` the job runs one such process per rank (``train.devices``; -1 or
    auto: ``resources.gpu``). ``processes`` > 1 with more than one of ``runs`` (rule train
    of ``resources.train_jobs: one``): that many workers of one torch thread each
    (``isoflow.train_workers``), each with its own loader; the parent only waits on them."""
    train = train_config(config)
    workers = int(train["num_workers"])
    loader = workers if workers > 0 else int(int(train["prefetch_batches"]) > 0)
    if processes > 1 and runs > 1:
        return min(processes, runs) * (1 + loader)
    ranks = 1
    if train["strategy"] == "ddp":
        devices = train["devices"]
        if isinstance(devices, list):
            ranks = len(devices)
        elif isinstance(devices, int) and devices > 0:
            ranks = devices
        else:
            ranks = max(1, int((config.get("resources") or {}).get("gpu") or 0))
    return ranks * (max(1, int(threads)) + loader)


def encoder_settings(config: dict, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The configured encoder specs over ``settings.ENCODER_DEFAULTS`` (the rules' params),
    in config order: those of ``names`` only when given."""
    wanted = None if names is None else set(names)
    return {
        name: with_encoder_defaults(spec)
        for name, spec in config.get("encoders", {}).items()
        if wanted is None or name in wanted
    }


# Train keys left out of the train rules' params: they change no output (the same batches,
# made ahead in a thread: tests/unit/test_train.py; when a SLURM job requeues itself), so
# setting them (config.yaml's 2 for a GPU, the demo's 0) reruns nothing. Like the
# fingerprint's NOT_IN_FINGERPRINT, but only the keys added since results were built:
# dropping a key the params held reruns those results.
TRAIN_KEYS_NOT_IN_PARAMS = ("prefetch_batches", "requeue_factor", "requeue_min_s", "requeue_poll_s")
# Train keys added since results were built that change them when set: in the params only
# when set away from this default, so writing the default (config.yaml's cuda_graph: false)
# reruns nothing.
TRAIN_KEYS_IN_PARAMS_IF_SET = {"cuda_graph": False}


def job_settings(settings: dict, config: dict) -> dict[str, Any]:
    """A train job's settings: its params' ``settings`` (:func:`rule_settings`) with the
    ``TRAIN_KEYS_NOT_IN_PARAMS`` the config sets put back (``snakemake.config`` in the job:
    read there, not tracked as params)."""
    train = config.get("train") or {}
    extra = {k: train[k] for k in TRAIN_KEYS_NOT_IN_PARAMS if k in train}
    return {**settings, "train": {**settings.get("train", {}), **extra}}


def used_encoders(config: dict, experiments: Iterable[Mapping[str, Any]]) -> set[str]:
    """The encoders the experiments read (any modality, cached or raw)."""
    used: set[str] = set()
    for experiment in experiments:
        used |= set(encoder_names(config, {**EXPERIMENT_DEFAULTS, **experiment}).values())
    return used


def rule_settings(config: dict, experiments: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The config sections that shape the training of ``experiments`` (a train rule's params:
    one run's, or every run's for the one job of ``resources.train_jobs: one``), defaults
    filled where the schema leaves them to ``isoflow.settings``; the train section as
    written, less ``TRAIN_KEYS_NOT_IN_PARAMS``; the specs of the encoders they read only, so
    editing another encoder retrains nothing; and less the sections of modalities none of
    them reads (``settings.scoped_settings``, as the fingerprint leaves them out), so editing
    ``rna`` retrains no DNA-only run. Keys sorted (:func:`sorted_keys`)."""
    train = config.get("train", {})
    experiments = list(experiments)
    modalities = {
        m for experiment in experiments for m in {**EXPERIMENT_DEFAULTS, **experiment}["modalities"]
    }
    settings = {
        "model": config.get("model", {}),
        "train": {
            k: v
            for k, v in train.items()
            if k not in TRAIN_KEYS_NOT_IN_PARAMS
            and not (k in TRAIN_KEYS_IN_PARAMS_IF_SET and v == TRAIN_KEYS_IN_PARAMS_IF_SET[k])
        },
        "encoders": encoder_settings(config, used_encoders(config, experiments)),
        "rna": rna_config(config),
        "protein": protein_config(config),
    }
    return sorted_keys(scoped_settings(settings, modalities))


def run_settings(wildcards, config: dict, experiments: Mapping[str, dict]) -> dict[str, Any]:
    """:func:`rule_settings` of run ``wildcards.run`` (rule train, one job per run)."""
    return rule_settings(config, [experiments[wildcards.run]])


# ---------------------------------------------------------------- model bundles

MODELS_DIR = "results/models"


def export_inputs(
    wildcards, config: dict, experiments: dict, dataset: str, genome: str
) -> dict[str, str]:
    """Inputs of the ``export_model`` rule: the run's declared outputs (``metrics.json``,
    ``predictions.parquet``: the export re-predicts test transcripts against them), what
    ``train`` read (the fingerprint that finds the checkpoint is computed from it), and the
    genome when the run reads DNA (the check reads the windows from it)."""
    experiment = experiments[wildcards.run]
    inputs = train_inputs(config, experiment, dataset, genome)
    run_dir = f"results/runs/{wildcards.run}"
    inputs |= {
        "metrics": f"{run_dir}/metrics.json",
        "predictions": f"{run_dir}/predictions.parquet",
    }
    if "dna" in {**EXPERIMENT_DEFAULTS, **experiment}["modalities"]:
        inputs |= {"genome": genome, "fai": f"{genome}.fai"}
    return inputs


def bundle_runs(config: dict, experiments: Mapping[str, Any]) -> list[str]:
    """Every run whose bundle the workflow asks for, in a fixed order without repeats:
    ``models.export``, the constructs' models, the design's (those it optimises on and those
    held out), ``explain.model`` and
    ``finetune.model`` (each only where its section is on). What rule export_models writes
    in one job (``resources.train_jobs: one``, when more than one); any other bundle asked
    for by name is rule export_model's."""
    runs = [Path(path).name for path in model_outputs(config, experiments)]
    if construct_outputs(config):
        runs += construct_models(config, experiments)
    if design_paths(config):
        runs += design_models(config, experiments) + design_holdout(config, experiments)
    if explain_paths(config, experiments):
        runs.append(config["explain"]["model"])
    if finetune_paths(config, experiments):
        runs.append(config["finetune"]["model"])
    return list(dict.fromkeys(runs))


def export_all_inputs(
    config: dict, experiments: dict, runs: list[str], dataset: str, genome: str
) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Rule export_models' inputs: every file :func:`export_inputs` names for any of
    ``runs`` (once each, for Snakemake), and each run's own named inputs (for the script)."""
    per_run = {
        run: export_inputs(SimpleNamespace(run=run), config, experiments, dataset, genome)
        for run in runs
    }
    files = list(dict.fromkeys(path for inputs in per_run.values() for path in inputs.values()))
    return files, per_run


def bundle_settings(config: dict, experiments: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What the export rules record for the bundles of ``experiments``: their training
    settings (``rule_settings``, which the checkpoint fingerprint is computed from) plus
    ``dna``, ``split`` (:func:`split_settings`), ``dataset`` and ``demo``, and ``rna`` and
    ``protein`` whether the runs read them or not (a bundle's manifest records both limits,
    as configured). Keys sorted (:func:`sorted_keys`)."""
    keys = ("dna", "split", "dataset", "demo")
    return sorted_keys(
        rule_settings(config, experiments)
        | {"rna": rna_config(config), "protein": protein_config(config)}
        | {k: split_settings(config) if k == "split" else config[k] for k in keys if k in config}
    )


def run_bundle_settings(wildcards, config: dict, experiments: Mapping[str, dict]) -> dict:
    """:func:`bundle_settings` of run ``wildcards.run`` (rule export_model)."""
    return bundle_settings(config, [experiments[wildcards.run]])


def model_outputs(config: dict, experiments: Mapping[str, Any]) -> list[str]:
    """The bundles ``rule all`` asks for: ``models.export`` (configured run names; one that
    is not a run is an error naming it)."""
    names = list((config.get("models") or {}).get("export") or [])
    for name in names:
        if name not in experiments:
            raise InputError(
                "config",
                "models.export",
                f"{name!r} is not a configured run; runs: {', '.join(experiments)}",
            )
    return [f"{MODELS_DIR}/{name}" for name in names]


EXPLAIN_DIR = "results/explain"


def explain_paths(config: dict, experiments: Mapping[str, Any]) -> dict[str, str]:
    """Outputs of the ``explain`` rule (``isoflow.explain``) for the ``explain`` section:
    ``{}`` without one (the rule is then not defined). ``model`` must be a configured run
    and exactly one of ``construct`` + ``id`` or ``transcript`` names the subject; a
    transcript's also ``bedgraph_<i>``, the bedGraph of the ``i``-th logo track of
    ``tissues`` (``explain.track_file_name``)."""
    section = config.get("explain") or {}
    if not section.get("model"):
        return {}
    run = section["model"]
    if run not in experiments:
        raise InputError(
            "config",
            "explain.model",
            f"{run!r} is not a configured run; runs: {', '.join(experiments)}",
        )
    by_construct = bool(section.get("construct")) and bool(section.get("id"))
    if by_construct == bool(section.get("transcript")):
        raise InputError(
            "config", "explain", "give either construct and id, or transcript (not both)"
        )
    if not by_construct and int(section.get("transcripts_for_attention", 64)) == 0:
        raise InputError(
            "config",
            "explain.transcripts_for_attention",
            "0 averages the attention view over the constructs of explain.construct, but the "
            "section explains a transcript and names no construct: set it > 0 (test-split "
            "transcripts) or explain a construct",
        )
    name = section["id"] if by_construct else section["transcript"]
    prefix = f"{EXPLAIN_DIR}/{run}/{name}"
    paths = {
        "ism": f"{prefix}.ism.parquet",
        "ism_tsv": f"{prefix}.ism.tsv",
        "summary": f"{prefix}.ism_summary.tsv",
        "ism_figure": f"{prefix}.ism.png",
        "attention": f"{prefix}.attention.tsv",
        "attention_figure": f"{prefix}.attention.png",
    }
    if not by_construct:  # a construct has no genome to place a track on
        from isoflow.explain import track_file_name

        tracks = dict.fromkeys(section.get("tissues") or ["mean"])
        for i, track in enumerate(tracks):
            paths[f"bedgraph_{i}"] = f"{prefix}.{track_file_name(track)}"
    return paths


def explain_inputs(config: dict, dataset: str, genome: str) -> dict[str, str]:
    """Inputs of the ``explain`` rule: the bundle, the construct file or the dataset (with
    the annotation and genome) for a transcript, and those too when attention is averaged
    over the dataset's test split (``transcripts_for_attention`` > 0)."""
    section = config["explain"]
    inputs = {"model": f"{MODELS_DIR}/{section['model']}"}
    if section.get("construct"):
        inputs["construct"] = section["construct"]
        background = (config.get("constructs") or {}).get("background")
        if background:  # placed as score_constructs places it (explain_placement)
            inputs["background"] = background
    if section.get("transcript") or int(section.get("transcripts_for_attention", 64)) > 0:
        inputs |= {
            "dataset": dataset,
            "annotation": "results/annotation/transcripts.parquet",
            "genome": genome,
            "fai": f"{genome}.fai",
        }
    return inputs


def explain_placement(config: dict) -> dict[str, Any]:
    """How rule ``explain`` places a construct in the model's inputs: as rule
    ``score_constructs`` does, from the ``constructs`` section (fill, polyA in the RNA, polyA
    tail; the background is an input), so the explained reference is the input that was
    scored."""
    section = config.get("constructs") or {}
    return {
        "fill": section.get("fill", "N"),
        "polya_in_rna": bool(section.get("polya_in_rna", False)),
        "polya_tail": int(section.get("polya_tail", 0)),
    }


# ---------------------------------------------------------------- construct scores

CONSTRUCTS_DIR = "results/constructs"
# rule score_constructs' outputs (isoflow.score.write_scores keys -> file names)
CONSTRUCT_FILES = {
    "tsv": "scores.tsv",
    "parquet": "scores.parquet",
    "specificity": "specificity.tsv",
    "figure": "heatmap.svg",
    "html": "scores.html",
}


def construct_models(config: dict, experiments: Mapping[str, Any]) -> list[str]:
    """The runs whose bundles score the constructs: ``constructs.models``, or without it
    ``models.export``; a name that is not a run is an error naming it."""
    section = config.get("constructs") or {}
    names = list(section.get("models") or (config.get("models") or {}).get("export") or [])
    key = "constructs.models" if section.get("models") else "models.export"
    if section.get("table") and not names:
        raise InputError(
            "config",
            "constructs.models",
            "constructs.table is set but no model scores it: name runs in constructs.models "
            "(or models.export)",
        )
    for name in names:
        if name not in experiments:
            raise InputError(
                "config", key, f"{name!r} is not a configured run; runs: {', '.join(experiments)}"
            )
    return names


def score_inputs(config: dict, experiments: Mapping[str, Any]) -> dict[str, Any]:
    """Rule ``score_constructs``' inputs: the constructs, the bundles of
    :func:`construct_models` and the background FASTA when one is configured."""
    section = config.get("constructs") or {}
    inputs: dict[str, Any] = {
        "constructs": section.get("table"),
        "models": [f"{MODELS_DIR}/{run}" for run in construct_models(config, experiments)],
    }
    if section.get("background"):
        inputs["background"] = section["background"]
    return inputs


def construct_outputs(config: dict) -> dict[str, str]:
    """Rule ``score_constructs``' outputs (``CONSTRUCT_FILES`` under ``CONSTRUCTS_DIR``; the
    specificity table only with ``constructs.target_tissues``); none without
    ``constructs.table``."""
    section = config.get("constructs") or {}
    if not section.get("table"):
        return {}
    keys = [k for k in CONSTRUCT_FILES if k != "specificity" or section.get("target_tissues")]
    return {k: f"{CONSTRUCTS_DIR}/{CONSTRUCT_FILES[k]}" for k in keys}


# ---------------------------------------------------------------- cassette design

DESIGN_DIR = "results/design"
# rule design's outputs (isoflow.design.output_paths keys -> file suffixes)
DESIGN_FILES = {
    "fasta": "designs.fa",
    "genbank": "designs.gb",
    "tsv": "designs.tsv",
    "profiles": "profiles.tsv",
    "profiles_figure": "profiles.png",
    "constraints": "constraints.tsv",
    "trajectory": "trajectory.tsv",
    "trajectory_figure": "trajectory.png",
    "html": "summary.html",
}


def design_models(config: dict, experiments: Mapping[str, Any]) -> list[str]:
    """The runs whose bundles the design optimises against: ``design.models``, else the
    constructs' (``constructs.models``, else ``models.export``); a name that is not a run is
    an error naming it."""
    section = config.get("design") or {}
    names = list(section.get("models") or [])
    key = "design.models"
    if not names:
        names = list((config.get("constructs") or {}).get("models") or [])
        key = "constructs.models"
    if not names:
        names, key = list((config.get("models") or {}).get("export") or []), "models.export"
    if not names:
        raise InputError(
            "config", "design.models", "no model to design with: name runs in design.models"
        )
    for name in names:
        if name not in experiments:
            raise InputError(
                "config", key, f"{name!r} is not a configured run; runs: {', '.join(experiments)}"
            )
    return names


def design_holdout(config: dict, experiments: Mapping[str, Any]) -> list[str]:
    """The runs whose bundles grade the designs but are never optimised on
    (``design.holdout_runs``; none by default); a name that is not a run, or one that also
    optimises, is an error naming it."""
    names = list((config.get("design") or {}).get("holdout_runs") or [])
    optimisers = design_models(config, experiments) if names else []
    for name in names:
        if name not in experiments:
            raise InputError(
                "config",
                "design.holdout_runs",
                f"{name!r} is not a configured run; runs: {', '.join(experiments)}",
            )
        if name in optimisers:
            raise InputError(
                "config",
                "design.holdout_runs",
                f"{name!r} also optimises the designs (design.models, else constructs.models, "
                "else models.export): a held-out run grades them only; name the optimising "
                "runs in design.models without it",
            )
    return names


def design_paths(config: dict) -> dict[str, str]:
    """Rule ``design``'s outputs (``DESIGN_FILES`` as ``results/design/{id}.*``); ``{}``
    without a ``design`` section (the rule is then not defined)."""
    section = config.get("design") or {}
    if not section.get("construct"):
        return {}
    return {k: f"{DESIGN_DIR}/{section['id']}.{v}" for k, v in DESIGN_FILES.items()}


def design_inputs(config: dict, experiments: Mapping[str, Any]) -> dict[str, Any]:
    """Rule ``design``'s inputs: the start's construct file, the bundles, the held-out
    bundles (``holdout``, only with ``design.holdout_runs``), the constructs' background
    FASTA when one is configured (the start is placed as rule score_constructs places
    constructs: :func:`explain_placement`)."""
    section = config["design"]
    inputs: dict[str, Any] = {
        "construct": section["construct"],
        "models": [f"{MODELS_DIR}/{run}" for run in design_models(config, experiments)],
    }
    holdout = design_holdout(config, experiments)
    if holdout:
        inputs["holdout"] = [f"{MODELS_DIR}/{run}" for run in holdout]
    background = (config.get("constructs") or {}).get("background")
    if background:
        inputs["background"] = background
    return inputs


# ---------------------------------------------------------------- fine-tuning on constructs

FINETUNE_DIR = "results/finetune"
# Rule finetune's outputs, the files isoflow.finetune writes (its OUTPUTS): the bundle folder
# and the CV files.
FINETUNE_FILES = {
    "bundle": "bundle",
    "cv": "cv.tsv",
    "summary": "summary.tsv",
    "predictions": "predictions.tsv",
    "figure": "cv.svg",
    "html": "cv.html",
}
# finetune keys that say how the table's constructs are read and placed beside background
# and fill, as the constructs section's (isoflow.commands.READ_OPTIONS, PLACEMENT_OPTIONS):
# rule finetune's params only when set (finetune_construct_options)
FINETUNE_CONSTRUCT_KEYS = (
    "polya_in_rna",
    "polya_tail",
    "allow_noncanonical_cds",
    "aav",
    "aav_limit",
)
# finetune keys that are not isoflow.finetune settings (inputs, placement, columns)
FINETUNE_NOT_SETTINGS = (
    "table",
    "model",
    "columns",
    "background",
    "fill",
    *FINETUNE_CONSTRUCT_KEYS,
)


def finetune_paths(config: dict, experiments: Mapping[str, Any]) -> dict[str, str]:
    """Rule ``finetune``'s outputs (``FINETUNE_FILES`` under ``FINETUNE_DIR``): ``{}`` without
    a ``finetune`` section with a ``table`` (the rule is then not defined); ``model`` must be
    a configured run."""
    section = config.get("finetune") or {}
    if not section.get("table"):
        return {}
    run = section.get("model")
    if run not in experiments:
        raise InputError(
            "config",
            "finetune.model",
            f"{run!r} is not a configured run; runs: {', '.join(experiments)}",
        )
    return {k: f"{FINETUNE_DIR}/{v}" for k, v in FINETUNE_FILES.items()}


def finetune_construct_options(config: dict) -> dict[str, Any]:
    """Rule finetune's construct options (``FINETUNE_CONSTRUCT_KEYS``) that the
    ``finetune`` section sets (not null): params only then, so results fine-tuned before
    the keys existed keep their params and do not rerun (as ``set_options``; these keys'
    defaults are the reader's, not the schema's)."""
    section = config.get("finetune") or {}
    return {
        k: sorted_keys(section[k]) for k in FINETUNE_CONSTRUCT_KEYS if section.get(k) is not None
    }


def finetune_inputs(config: dict) -> dict[str, str]:
    """Rule ``finetune``'s inputs: the measurement table, the bundle of ``finetune.model``
    and the background FASTA when one is configured."""
    section = config.get("finetune") or {}
    inputs = {"table": section["table"], "model": f"{MODELS_DIR}/{section['model']}"}
    if section.get("background"):
        inputs["background"] = section["background"]
    return inputs


# ---------------------------------------------------------------- embedding caches

EMBEDDINGS_DIR = "results/embeddings"
POSITIONAL_OPTIONS = ("dna_crop_bins", "stride_nt", "stride_aa")


def cache_dir(encoder: str, pooling: str = DEFAULT_POOLING) -> str:
    """The embedding cache of ``encoder`` pooled as ``pooling`` says: rule embed's
    ``results/embeddings/{encoder}`` (adaptive) or rule embed_positional's
    ``results/embeddings/{encoder}-positional``."""
    if pooling == DEFAULT_POOLING:
        return f"{EMBEDDINGS_DIR}/{encoder}"
    return f"{EMBEDDINGS_DIR}/{encoder}-{pooling}"


def embed_pooling(config: dict) -> dict[str, Any]:
    """Rule embed_positional's pooling (``isoflow.embed.pool_positional``): ``mode``
    positional and ``embed``'s ``dna_crop_bins``, ``stride_nt``, ``stride_aa`` (schema
    defaults filled)."""
    section = config.get("embed") or {}
    pooling: dict[str, Any] = {"mode": "positional"}
    for key in POSITIONAL_OPTIONS:
        pooling[key] = int(section.get(key) or schema_default("embed", key))
    return pooling


def dna_span(config: dict, experiment: Mapping[str, Any]) -> dict[str, Any] | None:
    """The DNA a run's model reads, from the config and the encoder registry
    (``registry.TOKEN_GEOMETRY``), or None for a run without DNA (or whose DNA encoder's
    family has no geometry there).

    ``input_bp``: what the DNA encoder is fed (``dna.window``; Nucleotide Transformer: the
    whole 6-mers centred on the TSS, at most ``max_len - 1``: ``registry.nt_dna_crop``);
    ``tokens`` of ``letters`` bp each come out
    (Enformer, Borzoi: the centre ``target_length`` / ``bins_to_return`` bins), covering
    ``output_bp``. What the aggregator sees (``mode``): a positional cache keeps the
    ``embed.dna_crop_bins`` central tokens unpooled (``span_bp`` = kept tokens x bp per
    token, around the TSS); an adaptive cache averages all tokens into ``slots`` =
    ``min(tokens, pool_to)``; a DNA encoder read raw gives all its tokens. ``span_bp`` is the
    DNA behind those tokens; ``text`` says it in one line. Each token's encoder saw all
    ``input_bp`` through its receptive field. A ``dna.window`` too short for the tokens the
    encoder returns is an InputError naming it, never a clamped count (the job would fail)."""
    experiment = {**EXPERIMENT_DEFAULTS, **experiment}
    if "dna" not in experiment["modalities"]:
        return None
    name = experiment["dna_encoder"]
    spec = encoder_spec(config, name)
    family = encoder_kind(name, spec)[0]
    if family not in TOKEN_GEOMETRY:  # a new family without its geometry line: not stated
        return None
    geometry = TOKEN_GEOMETRY[family]
    default = geometry.tiny if spec["source"] == "tiny" else geometry.pretrained
    if family == "nucleotide_transformer":
        cap = int(spec.get("max_len") or default)
    elif spec["source"] == "tiny":
        cap = int((spec.get("hparams") or {}).get(geometry.cap, default))
    else:
        cap = int(spec.get(geometry.cap) or default)
    window = int((config.get("dna") or {}).get("window") or schema_default("dna", "window"))
    letters = geometry.letters
    if family == "nucleotide_transformer":
        tokens = nt_dna_crop(window, cap - 1)[1]  # whole 6-mers centred on the TSS
        input_bp = output_bp = tokens * letters
    else:
        input_bp = window
        if cap != -1 and window // letters < cap:  # the encoder's forward would fail
            check_dna_encoder(config, name)  # its own line where it has one (Enformer)
            raise InputError(
                "config",
                "dna.window",
                f"{window:,} bp gives {window // letters:,} tokens of {letters} bp, fewer "
                f"than the {cap:,} ({geometry.cap}) encoder {name} returns: set dna.window "
                f"to at least {cap * letters}",
            )
        tokens = window // letters if cap == -1 else cap
        output_bp = tokens * letters
    if "dna" not in cached_modalities(config, experiment):
        mode, kept, slots, span_bp = "raw", tokens, tokens, output_bp
    elif run_pooling(experiment) == "positional":
        kept = min(tokens, embed_pooling(config)["dna_crop_bins"])
        mode, slots, span_bp = "positional", kept, min(kept * letters, output_bp)
    else:
        mode, kept, slots, span_bp = (
            "adaptive",
            tokens,
            min(tokens, int(spec["pool_to"])),
            output_bp,
        )
    centre = " (the window's centre)" if input_bp < window else ""
    read = f"reads {input_bp:,} bp{centre}, outputs {tokens:,} tokens of {letters} bp"
    if mode == "positional":
        text = f"{read}; the cache keeps the central {kept:,}: {span_bp:,} bp around the TSS"
    elif mode == "adaptive":
        text = (
            f"{read} ({output_bp:,} bp), averaged into {slots:,} slots of ~"
            f"{output_bp // max(slots, 1):,} bp (adaptive cache)"
        )
    else:
        text = f"{read}, all {output_bp:,} bp (encoder read raw)"
    return {
        "encoder": name,
        "mode": mode,
        "input_bp": input_bp,
        "tokens": tokens,
        "letters": letters,
        "output_bp": output_bp,
        "kept_tokens": kept,
        "slots": slots,
        "span_bp": span_bp,
        "text": text,
    }


# Ablation factors whose levels can read different spans of DNA: the report states each's.
DNA_SPAN_FACTORS = ("dna_encoder", "pooling")


def ablation_dna_spans(
    config: dict, experiments: Mapping[str, Mapping[str, Any]], factor: str
) -> dict[str, dict[str, Any]]:
    """Run name -> :func:`dna_span`, for the runs reading DNA under a factor of
    ``DNA_SPAN_FACTORS`` (rule report_ablation's params; empty for the other factors)."""
    if factor not in DNA_SPAN_FACTORS:
        return {}
    spans = {run: dna_span(config, experiment) for run, experiment in experiments.items()}
    return {run: span for run, span in spans.items() if span is not None}


def shared_forward_encoders(config: dict, experiments: Mapping[str, dict]) -> list[str]:
    """The encoders whose adaptive and positional caches are both read by some run, when
    ``embed.share_forward`` is on: rule embed_shared writes both from one forward per batch
    (``isoflow.embed.build_caches``) instead of rules embed and embed_positional running the
    same forwards twice. Off (the default), or with ``embed.jobs`` > 1 (stopped here with
    one line: the scattered parts are per cache), the list is empty."""
    section = config.get("embed") or {}
    if not section.get("share_forward"):
        return []
    if int(section.get("jobs") or 1) != 1:
        raise InputError(
            "config",
            "embed.share_forward",
            f"true needs embed.jobs: 1 (got {section.get('jobs')}): the parts of a scattered "
            "embedding are per cache; set one of the two back",
        )
    poolings: dict[str, set[str]] = {}
    for experiment in experiments.values():
        experiment = {**EXPERIMENT_DEFAULTS, **experiment}
        names = encoder_names(config, experiment)
        for modality in cached_modalities(config, experiment):
            poolings.setdefault(names[modality], set()).add(run_pooling(experiment))
    return sorted(name for name, used in poolings.items() if len(used) > 1)


def embed_inputs(wildcards, config: dict, dataset: str, genome: str) -> dict[str, str]:
    """Inputs of the ``embed`` rule for ``wildcards.encoder`` (a Snakemake input function).

    The genome only for DNA encoders; the download record only for pretrained ones.
    """
    name = wildcards.encoder
    spec = (config.get("encoders") or {}).get(name)
    if spec is None:
        raise InputError(None, name, "encoder is not configured under `encoders:`")
    check_dna_encoder(config, name)
    inputs = {"dataset": dataset}
    if encoder_modality(name, spec) == "dna":
        inputs["genome"] = genome
        inputs["fai"] = f"{genome}.fai"
    if with_encoder_defaults(spec)["source"] == "pretrained":
        inputs["weights"] = f"{weights_dir(name, spec)}/isoflow_source.json"
    return inputs


# Encoder spec keys a frozen cache's content never depends on (training-side settings):
# cache_spec normalises them, so editing them rebuilds no cache and the loader accepts it.
NOT_IN_CACHE = ("gradient_checkpointing", "lora")


def cache_spec(spec: Mapping[str, Any], pooling: str = "adaptive") -> dict[str, Any]:
    """``spec`` (defaults filled) as far as a cache's content depends on it: ``finetune_last``
    0 (every cache is made by a frozen encoder, ``embed.frozen_encoder``), no
    ``NOT_IN_CACHE`` key, and for a ``positional`` cache alone ``pool_to`` the default (its
    rows do not depend on it). Set in place rather than dropped, so a spec already at those
    values is unchanged, key order included: the embed rules' params of such a config are
    what they were before (no params-triggered rebuild). What the embed rules' params hold,
    the jobs record in meta.json and the loader compares (``loader._check_cache_settings``)."""
    normal = {k: v for k, v in with_encoder_defaults(dict(spec)).items() if k not in NOT_IN_CACHE}
    normal["finetune_last"] = 0
    if pooling == "positional":
        normal["pool_to"] = ENCODER_DEFAULTS["pool_to"]
    return normal


def embed_settings(wildcards, config: dict, pooling: str | None = None) -> dict[str, Any]:
    """What the caches of encoder ``wildcards.encoder`` depend on in the config (the embed
    rules' params; the job's spec is ``model.encoders.spec_from_config`` of it): its spec,
    defaults filled, as :func:`cache_spec` reads it for the cache's ``pooling`` (default
    ``wildcards.pooling`` where the rule has one (embed_part), else adaptive; rule
    embed_shared's adaptive, as it writes both), and the limits of its modality's section
    (``rna`` for an RNA encoder, ``protein`` for a protein one, which that function folds
    in); no other encoder and no other section, so editing them, or a spec key the cache does
    not depend on (``finetune_last``, ``gradient_checkpointing``, ``lora``, and ``pool_to``
    for a positional cache), rebuilds no cache (and, through the caches' mtimes in the
    checkpoints' fingerprints, retrains no run)."""
    name = wildcards.encoder
    spec = (config.get("encoders") or {}).get(name)
    pooling = pooling or getattr(wildcards, "pooling", None) or DEFAULT_POOLING
    settings: dict[str, Any] = {"encoders": {name: cache_spec(spec or {}, pooling)}}
    modality = encoder_modality(name, spec)
    if modality == "rna":
        settings["rna"] = rna_config(config)
    elif modality == "protein":
        settings["protein"] = protein_config(config)
    # Snakemake compares params by repr, so key order counts: sorted, a key the config
    # writes (finetune_last: 1) and one with_encoder_defaults appends give the same params
    return sorted_keys(settings)


def embed_packages(wildcards, config: dict) -> dict[str, str | None]:
    """The installed versions the caches of encoder ``wildcards.encoder`` are computed by:
    torch's and its family's ``registry.FAMILY_PACKAGES`` (what the embedding store's digest holds,
    ``isoflow.embed.package_versions``; None: not installed), keys sorted. The embed rules'
    params, so Snakemake's params trigger reruns an embed job after an upgrade of one of them
    (``pip install -U transformers`` reruns the NT caches, no other). Read from the
    distributions' metadata by the process that runs snakemake, nothing imported
    (``registry.installed_version``)."""
    name = wildcards.encoder
    family = encoder_kind(name, dict((config.get("encoders") or {}).get(name) or {}))[0]
    names = sorted({"torch", *family_packages(family)})
    return {package: installed_version(package) for package in names}


def sorted_keys(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively (lists keep their order): the
    one key order of a rule's params whatever order the config writes them in (the params
    trigger compares their repr)."""
    if isinstance(value, Mapping):
        return {k: sorted_keys(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return type(value)(sorted_keys(v) for v in value)
    return value


def embed_shard_mb(config: Mapping[str, Any]) -> int:
    """``embed.shard_mb`` (schema default filled): what an embed job holds of a cache at once
    and how its rows are split over shard files. Not in the embed rules' params: the stored
    values, keys and items are the same whatever it is (tests/unit/test_embed.py), so
    changing it rebuilds no cache; the job reads it from the config (``snakemake.config``)."""
    return int((config.get("embed") or {}).get("shard_mb") or schema_default("embed", "shard_mb"))


def embed_store_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``embed.store`` and ``embed.store_keep`` (schema defaults filled) as the embed jobs'
    ``store_reuse`` and ``store_keep`` (isoflow.embed.build_caches). Not params of the embed
    rules: whether a cache comes from the store or is built again, and how many superseded
    entries the store keeps, change no stored byte; the job reads them from the config."""
    section = config.get("embed") or {}
    reuse = section.get("store")
    keep = section.get("store_keep")
    return {
        "store_reuse": bool(schema_default("embed", "store") if reuse is None else reuse),
        "store_keep": int(schema_default("embed", "store_keep") if keep is None else keep),
    }


def embed_parts(wildcards, pooling: str, jobs: int) -> list[str]:
    """The part caches the gather of ``wildcards.encoder``'s ``pooling`` cache joins, in
    order (``embed.jobs`` > 1; rule embed_part)."""
    return [f"{EMBEDDINGS_DIR}/.parts/{wildcards.encoder}/{pooling}/{i}" for i in range(jobs)]


def part_pooling(wildcards, config: dict) -> dict[str, Any] | None:
    """Rule embed_part's pooling: :func:`embed_pooling` for a positional part, else none
    (the spec's ``pool_to``)."""
    return embed_pooling(config) if wildcards.pooling == "positional" else None


EMBED_MEM_MARGIN = 1.25  # headroom over the estimate (allocator slack, the index, pyarrow)
GPU_HOST_MB = 2048  # CUDA runtime and libraries in host memory: an allowance, not measured


EMBED_THREADS = 2  # an embed job's torch threads unless resources.embed_threads names its encoder


def embed_threads(wildcards, config: dict) -> int:
    """``threads`` of an embed job of ``wildcards.encoder``: ``resources.embed_threads``'s
    entry for it, else ``EMBED_THREADS``. What the job's torch runs with (the scripts call
    ``torch.set_num_threads(snakemake.threads)``); on a CPU, where a cache's bytes can depend
    on it (docs/encoders.md, "Threads")."""
    threads = (config.get("resources") or {}).get("embed_threads") or {}
    return int(threads.get(wildcards.encoder, EMBED_THREADS))


def embed_mem_mb(wildcards, config: dict, caches: int = 1) -> int:
    """``mem_mb`` of the ``embed`` job of ``wildcards.encoder`` (docs/encoders.md, "Memory of
    an embed job")::

        encoder_mb = ENCODER_HOST_MB[family]["tiny" or "real"]
                     (+ (embed_batch_size - 1) * (real - weights - IMPORT_MB) for a
                        pretrained encoder on CPU: activations grow with the batch)
        mem_mb = ceil(EMBED_MEM_MARGIN * (caches * embed.shard_mb + encoder_mb))
                 + GPU_HOST_MB if resources.gpu, rounded up to 100 MB

    ``embed.shard_mb`` bounds the cache rows a job holds per cache it writes (``caches``:
    2 for rule embed_shared; isoflow.embed.build_caches)."""
    name = wildcards.encoder
    spec = with_encoder_defaults((config.get("encoders") or {}).get(name))
    family, _ = encoder_kind(name, spec)
    host = encoder_host_mb(family)
    gpu = int((config.get("resources") or {}).get("gpu") or 0)
    if spec["source"] == "tiny":
        encoder_mb = host["tiny"]
    else:
        encoder_mb = host["real"]
        if not gpu:
            activations = host["real"] - host["weights"] - IMPORT_MB
            encoder_mb += (int(spec["embed_batch_size"]) - 1) * activations
    mem = -(-EMBED_MEM_MARGIN * (caches * embed_shard_mb(config) + encoder_mb) // 1)
    mem += GPU_HOST_MB if gpu else 0
    return int(-(-mem // 100) * 100)


# A job loading trained runs holds, beside the encoders, the dataset frame, predictions and the
# network: an allowance, not measured (like GPU_HOST_MB).
BUNDLE_JOB_MB = 2048


def bundle_mem_mb(
    config: dict, experiments: Iterable[Mapping[str, Any]], *, together: bool = False
) -> int:
    """``mem_mb`` of a job that loads the trained runs of ``experiments`` as models (rules
    export_model and export_models, score_constructs, explain and finetune one at a time:
    the largest counts; design all at once, ``together``: summed)::

        run_mb = sum over the run's encoders of
                 ENCODER_HOST_MB[family]["tiny" or "real"] - IMPORT_MB
        mem_mb = ceil(EMBED_MEM_MARGIN * (IMPORT_MB + max or sum of run_mb + BUNDLE_JOB_MB))
                 + GPU_HOST_MB if resources.gpu, rounded up to 100 MB

    Each encoder's figure is one embedding forward's host memory (``embed_mem_mb``), the
    interpreter and imports counted once."""
    runs = []
    for experiment in experiments:
        run_mb = 0
        for name in encoder_names(config, {**EXPERIMENT_DEFAULTS, **experiment}).values():
            spec = with_encoder_defaults((config.get("encoders") or {}).get(name))
            host = encoder_host_mb(encoder_kind(name, spec)[0])
            run_mb += host["tiny" if spec["source"] == "tiny" else "real"] - IMPORT_MB
        runs.append(run_mb)
    loaded = (sum(runs) if together else max(runs, default=0)) + IMPORT_MB + BUNDLE_JOB_MB
    mem = -(-EMBED_MEM_MARGIN * loaded // 1)
    mem += GPU_HOST_MB if int((config.get("resources") or {}).get("gpu") or 0) else 0
    return int(-(-mem // 100) * 100)


def export_mem_mb(wildcards, config: dict, experiments: Mapping[str, dict]) -> int:
    """:func:`bundle_mem_mb` of run ``wildcards.run`` (rule export_model)."""
    return bundle_mem_mb(config, [experiments[wildcards.run]])


# ---------------------------------------------------------------- the report's figures and tables

REPORT_DIR = "results/report"
# Each run's views: isoflow.report.build.build_run's argument -> file in results/report/runs/{run}/
RUN_VIEWS = {
    "curves": "curves.svg",
    "tissue_table": "per_tissue.html",
    "tissue_figure": "per_tissue.svg",
    "scatter": "scatter.png",
    "within_gene": "within_gene.svg",
    "errors": "errors.svg",
}
DATA_VIEWS = (
    "biotypes.svg",
    "biotypes.html",
    "tissues.svg",
    "tissues.html",
    "splits.svg",
    "splits.html",
    "lengths.svg",
    "lengths.html",
    "targets.svg",
    "targets.html",
    "isoforms.svg",
)


def report_paths(
    experiments: Mapping[str, Mapping[str, Any]], report_dir: str = REPORT_DIR
) -> list[str]:
    """Every report figure and table a config can make (rules/report.smk's outputs).

    The data views always; the per-run views for each run; the cross-run table with at
    least one run; an ablation only for a factor some runs differ in alone (all else
    equal); the data-scaling view only when runs differ in training fraction.
    """
    paths = [f"{report_dir}/data/{name}" for name in DATA_VIEWS]
    paths += [
        f"{report_dir}/runs/{run}/{view}" for run in experiments for view in RUN_VIEWS.values()
    ]
    if experiments:
        paths += [f"{report_dir}/experiments/runs.{ext}" for ext in ("html", "tsv", "svg")]
        paths.append(f"{report_dir}/experiments/within_gene.svg")
    for factor in FACTORS:
        if ablation_groups(experiments, factor):
            paths += [
                f"{report_dir}/experiments/ablation_{factor}.{ext}" for ext in ("html", "svg")
            ]
    if ablation_groups(experiments, "fraction"):
        paths += [f"{report_dir}/experiments/scaling.{ext}" for ext in ("html", "svg")]
    return paths


BASELINE_METRICS = "results/baseline/metrics.json"


def reference_inputs(config: Mapping[str, Any], dataset: str) -> dict[str, str]:
    """The splits view's extra input: ``{"dataset": results/dataset/{dataset}.parquet}`` when
    ``report.reference_counts`` is set (its counts per split go beside the reference's),
    else none, so a config without the key keeps the view's inputs as they were."""
    if (config.get("report") or {}).get("reference_counts"):
        return {"dataset": f"results/dataset/{dataset}.parquet"}
    return {}


def baseline_input(rules: Any, wildcards: Any = None) -> dict[str, str]:
    """The across-run rules' baseline input: ``{"baseline": BASELINE_METRICS}`` when the
    workflow has a rule ``baseline`` that makes it (Snakemake's ``rules.has``), else none,
    so the views are built without the baseline rather than failing on a missing file."""
    return {"baseline": BASELINE_METRICS} if rules.has("baseline") else {}


def baseline_predictions_input(rules: Any, wildcards: Any = None) -> list[str]:
    """The baseline's ``predictions.parquet`` (beside ``BASELINE_METRICS``) when
    :func:`baseline_input` gives the baseline, else none: the report's bootstrap reads it."""
    return [
        posixpath.join(posixpath.dirname(path), "predictions.parquet")
        for path in baseline_input(rules, wildcards).values()
    ]


def bootstrap_files(predictions: Iterable[str]) -> list[str]:
    """The ``bootstrap.npz`` beside each ``predictions.parquet``: rule report_bootstrap's
    outputs (a run's resamples of the test genes), which the tables across runs read."""
    return [posixpath.join(posixpath.dirname(path), "bootstrap.npz") for path in predictions]


def baseline_bootstrap_input(rules: Any, wildcards: Any = None) -> list[str]:
    """The baseline's ``bootstrap.npz`` when :func:`baseline_input` gives the baseline."""
    return bootstrap_files(baseline_predictions_input(rules, wildcards))


def bootstrap_unit(config: Mapping[str, Any], schema_path=SCHEMA) -> str:
    """What the report's bootstrap resamples, the unit the split kept whole: ``locus`` under
    the locus scheme, else ``gene`` (the chrom scheme's unit, a chromosome, is too few in a
    test set to resample). The tables' param; their notes name it."""
    scheme = (config.get("split") or {}).get(
        "scheme", schema_default("split", "scheme", schema_path)
    )
    return "locus" if scheme == "locus" else "gene"


def bootstrap_unit_settings(config: Mapping[str, Any], schema_path=SCHEMA) -> dict[str, Any]:
    """Rule report_bootstrap's ``unit`` param: :func:`bootstrap_unit` and, for loci,
    ``split.locus_tss_distance`` (``bootstrap.split_units`` recomputes the split's loci)."""
    unit = bootstrap_unit(config, schema_path)
    if unit == "gene":
        return {"unit": unit}
    distance = (config.get("split") or {}).get(
        "locus_tss_distance", schema_default("split", "locus_tss_distance", schema_path)
    )
    return sorted_keys({"unit": unit, "locus_tss_distance": distance})


def bootstrap_unit_inputs(config: Mapping[str, Any], wildcards: Any = None) -> dict[str, str]:
    """Rule report_bootstrap's input beside the predictions (an input function: ``partial``
    of ``config``): the annotation the locus split read (``annotation``), for loci; nothing
    for genes."""
    if bootstrap_unit(config) == "gene":
        return {}
    return {"annotation": "results/annotation/transcripts.parquet"}


# ---------------------------------------------------------------- the report's landing page

VERSIONED = ("isoflow", "snakemake", "torch", "pytorch-lightning")


def git_commit(repo_dir: str | Path) -> str:
    """The commit checked out at ``repo_dir`` (``+ uncommitted changes`` when the tree
    differs from it); ``unknown`` when ``repo_dir`` is not the top of a git checkout or
    git is missing. Never guessed."""
    repo = Path(repo_dir).resolve()

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return done.stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != repo:
            return "unknown"  # a workflow copied inside another repository
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" + uncommitted changes" if dirty else "")


def software_versions(packages: Iterable[str] = VERSIONED) -> dict[str, str]:
    """Installed distribution versions (read from metadata, nothing imported)."""
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _relative(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def report_provenance(
    config: Mapping[str, Any],
    configfiles: Iterable[str | Path],
    repo_dir: str | Path,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What the report's landing page states: the data, config files, commit, versions, date,
    torch's CPU kernels (taken when the workflow is parsed: rules/report.smk puts it under
    report.provenance)."""
    demo = bool((config.get("demo") or {}).get("enabled"))
    data = (
        "synthetic demo data (generated by isoflow.demo: not GTEx, not comparable to the paper)"
        if demo
        else data_fact(config)
    )
    encoders, tiny = encoders_fact(config)
    return {
        "demo": demo,
        "data": data,
        "encoders": encoders,
        "tiny_encoders": tiny,
        "configfiles": config_files(configfiles) or ["(none)"],
        "commit": git_commit(repo_dir),
        "versions": software_versions(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_kernels": cpu_kernels_fact(config, environ),
    }


DEFAULT_CONFIG = "config/config.yaml"  # the Snakefile's `configfile:`, the lowest precedence


def config_files(configfiles: Iterable[str | Path]) -> list[str]:
    """The config files in Snakemake's order (the Snakefile's `configfile:`, which Snakemake
    lists last, first; each --configfile over it), relative to the working directory where
    inside it; a file right after itself once (`--configfile config/config.yaml overlay.yaml`
    applies the Snakefile's file twice in a row, the second time changing nothing)."""
    files = [_relative(p) for p in configfiles]
    default = _relative(DEFAULT_CONFIG)
    if default in files:  # the configfile: directive's entry, appended after the CLI's
        files.pop(len(files) - 1 - files[::-1].index(default))
        files.insert(0, default)
    return [p for i, p in enumerate(files) if i == 0 or p != files[i - 1]]


def _source(section: Mapping[str, Any], path_key: str, url_key: str) -> str:
    """A local input's path as configured, else the file name of its download URL."""
    if section.get(path_key):
        return str(section[path_key])
    url = section.get(url_key)
    return url.rsplit("/", 1)[-1] if url else "(not configured)"


def data_fact(config: Mapping[str, Any]) -> str:
    """The landing page's line on the data (outside the demo): the expression matrix and
    the annotation by their configured paths or downloaded file names, and the tissue set;
    GTEx v8 named only when the matrix is the configured GTEx v8 download."""
    gtex = config.get("gtex") or {}
    matrix = _source(gtex, "tpm", "tpm_url")
    annotation = _source(config.get("annotation") or {}, "gtf", "url")
    tissues = config.get("tissue_set")
    if not gtex.get("tpm") and "/v8/" in str(gtex.get("tpm_url") or ""):
        what = f"GTEx v8 transcript TPM ({matrix})"
    else:
        what = f"the expression matrix {matrix} (GTEx layout)"
    return f"{what}, {tissues} tissues, with the annotation {annotation}"


def encoders_fact(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(the landing page's line on what read the sequences, the encoders among them with
    random weights): each encoder the configured runs read, in the order they first appear,
    with where its weights come from."""
    config = dict(config)
    used: list[str] = []
    for experiment in expand_experiments(config).values():
        used += [n for n in encoder_names(config, experiment).values() if n not in used]
    facts, tiny = [], []
    for name in used:
        spec = encoder_spec(config, name)
        if spec["source"] == "pretrained":
            where = spec.get("esm_model") or weights_dir(name, spec)
            if spec.get("repo"):
                where = f"{spec['repo']} revision {spec['revision']}"
            facts.append(
                f"{name}: pretrained, {where} (the resolved commit or checksum in "
                f"{weights_dir(name, spec)}/isoflow_source.json)"
            )
        else:
            facts.append(f"{name}: tiny, random weights (seed {spec['seed']}), not pretrained")
            tiny.append(name)
    return ("; ".join(facts) or "none (no run configured)"), tiny


def cpu_kernels_fact(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """The landing page's line on torch's CPU kernels (isoflow.cpu): the config's choice and
    what the report's own machine holds, since CPU results depend on them in the last bits."""
    environ = os.environ if environ is None else environ
    choice = (config.get("resources") or {}).get("cpu_kernels", "avx2")
    held = " ".join(f"{k}={environ[k]}" for k in CPU_VARIABLES if k in environ)
    return f"resources.cpu_kernels {choice}; on the machine that built the report: " + (
        held or "not held"
    )


# ---------------------------------------------------------------- pretrained encoder weights


WEIGHTS_ROOT = "resources/models"
# The folders rule download_encoders writes: resources/models/{folder} (its wildcard)
DOWNLOADED_FOLDER = re.compile(rf"{WEIGHTS_ROOT}/([A-Za-z0-9_]+)")


def weights_dir(name: str, spec: Mapping[str, Any]) -> str:
    """The folder holding encoder ``name``'s downloaded weights (and ``isoflow_source.json``):
    the spec's ``path`` normalised (``resources/models/esm2/`` and ``./resources/models/esm2``
    are ``resources/models/esm2``, the name rule download_encoders writes), else
    ``resources/models/<name>``."""
    return os.path.normpath(str(spec.get("path") or f"{WEIGHTS_ROOT}/{name}"))


def weights_folders(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each weights folder of a pretrained encoder -> the pretrained encoders reading it
    (config order): several encoders may share one (config.yaml's ``nt_dna`` reads
    ``nucleotide_transformer``'s)."""
    folders: dict[str, list[str]] = {}
    for name, spec in (config.get("encoders") or {}).items():
        if with_encoder_defaults(spec)["source"] == "pretrained":
            folders.setdefault(weights_dir(name, spec or {}), []).append(name)
    return folders


def folder_download(wildcards, config: Mapping[str, Any]) -> dict[str, Any]:
    """Rule download_encoders' params for ``resources/models/{folder}``: the download source
    (``isoflow.weights.download_source``: repo, revision, esm_model, url, file patterns) of
    the pretrained encoders whose weights folder it is, which :func:`check_weights_folders`
    has made sure agree; nothing else of their specs, so editing another key or another
    encoder downloads nothing again. A folder no pretrained encoder reads is an error."""
    folder = f"{WEIGHTS_ROOT}/{wildcards.folder}"
    names = weights_folders(config).get(folder)
    if not names:
        raise InputError("config", "encoders", f"no pretrained encoder has its weights in {folder}")
    return download_source((config.get("encoders") or {})[names[0]])


def check_weights_folders(config: Mapping[str, Any]) -> None:
    """At parse time, for every pretrained encoder: encoders sharing a weights folder ask for
    the same download (else the folder would hold the first one's weights and the others
    would silently read them), and a folder rule download_encoders cannot write
    (``resources/models/<letters, digits, _>``) already holds a download record. One line
    naming the encoders, the folder and the fix."""
    specs = config.get("encoders") or {}
    for folder, names in weights_folders(config).items():
        first = download_source(specs[names[0]])
        for name in names[1:]:
            other = download_source(specs[name])
            differs = [k for k in dict.fromkeys([*first, *other]) if first.get(k) != other.get(k)]
            if differs:
                shown = ", ".join(f"{k} {other.get(k)!r} vs {first.get(k)!r}" for k in differs)
                raise InputError(
                    "config",
                    f"encoders.{name}",
                    f"shares its weights folder {folder} with encoders.{names[0]} but asks for "
                    f"another download ({shown}), so it would read {names[0]}'s weights: give "
                    f"encoders.{name} a path of its own (path: {WEIGHTS_ROOT}/{name}) or the "
                    f"same {', '.join(differs)}",
                )
        if (
            not DOWNLOADED_FOLDER.fullmatch(os.path.normpath(folder))
            and not (Path(folder) / SOURCE_FILE).is_file()
        ):
            raise InputError(
                "config",
                f"encoders.{names[0]}.path",
                f"{folder} holds no {SOURCE_FILE}, and rule download_encoders downloads only "
                f"into {WEIGHTS_ROOT}/<name> (letters, digits, _): set path: "
                f"{WEIGHTS_ROOT}/{names[0]} to download there, or put weights downloaded by "
                f"isoflow (with their {SOURCE_FILE}) in {folder}",
            )
