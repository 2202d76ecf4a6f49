"""Experiments: one training run each, named after what it is (DESIGN.md), and runs grouped by
the setting they share (ablations, seeds pooled, the shuffled-target control)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from isoflow.errors import InputError

# The modalities in their one order (run names, the aggregators' query order); the tests hold
# config/schema.yaml's modality enums to it.
MODALITIES = ("dna", "rna", "protein")
DEFAULTS: dict[str, Any] = {
    "dna_encoder": "enformer",
    "aggregator": "cross_attention",
    "seed": 0,
    "fraction": 1.0,
    "shuffle_targets": False,
}
# The embedding cache's pooling (isoflow.embed.POOLINGS) of a run that names none, when the
# config's `embed.pooling` is unset too; an expanded experiment holds `pooling` only when it
# is another (so runs, names and fingerprints made before the key existed stay as they were).
DEFAULT_POOLING = "adaptive"
# Seeds of an experiment without its own ``seed`` when the config has no ``seeds`` list.
DEFAULT_SEEDS = [0]
# The factors an ablation varies one at a time; seed is replication, averaged over.
FACTORS = ("modalities", "dna_encoder", "aggregator", "pooling")
FACTOR_LABELS = {
    "modalities": "modalities",
    "dna_encoder": "DNA encoder",
    "aggregator": "aggregator",
    "pooling": "cache pooling",
    "fraction": "training fraction",
}


def run_pooling(experiment: Mapping[str, Any]) -> str:
    """The pooling of the embedding caches a run reads (``adaptive`` unless it says)."""
    return experiment.get("pooling") or DEFAULT_POOLING


def run_name(experiment: dict[str, Any]) -> str:
    """``{modalities}_{dna_encoder}_{aggregator}_s{seed}[_f{fraction}][_{pooling}][_shuffled]``
    (``_positional`` for a run on positionally pooled caches).

    The DNA encoder is named even when DNA is not among the modalities, so that two runs
    never share a name by accident only if everything else is equal.
    """
    exp = {**DEFAULTS, **experiment}
    unknown = set(exp["modalities"]) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; allowed: {MODALITIES}")
    modalities = "+".join(m for m in MODALITIES if m in exp["modalities"])
    name = f"{modalities}_{exp['dna_encoder']}_{exp['aggregator']}_s{exp['seed']}"
    if exp["fraction"] != 1.0:
        name += f"_f{exp['fraction']:g}"
    if run_pooling(exp) != DEFAULT_POOLING:
        name += f"_{run_pooling(exp)}"
    if exp["shuffle_targets"]:
        name += "_shuffled"
    return name


def expand_experiments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run name -> experiment with defaults filled, in config order.

    An experiment that sets its own ``seed`` is one run; any other is one run per entry of
    the top-level ``seeds`` list (default ``DEFAULT_SEEDS``). Two runs with the same name are
    a config error (InputError, one line naming the entry). An experiment without its own
    ``pooling`` reads caches pooled as ``embed.pooling`` says (default adaptive); the
    expanded experiment holds ``pooling`` only when it is not adaptive.
    """
    seeds = config.get("seeds", DEFAULT_SEEDS)
    pooling = (config.get("embed") or {}).get("pooling") or DEFAULT_POOLING
    if not seeds:
        raise InputError("config", "seeds", "empty list: give at least one seed, e.g. [0]")
    runs: dict[str, dict[str, Any]] = {}
    for i, experiment in enumerate(config.get("experiments") or []):
        own_seed = "seed" in experiment
        for seed in [experiment["seed"]] if own_seed else seeds:
            exp = {**DEFAULTS, **experiment, "seed": seed}
            exp["pooling"] = experiment.get("pooling") or pooling
            if exp["pooling"] == DEFAULT_POOLING:
                del exp["pooling"]
            exp["modalities"] = [m for m in MODALITIES if m in exp["modalities"]]
            name = run_name(exp)
            if name in runs:
                raise InputError(
                    "config",
                    f"experiments[{i}]",
                    f"duplicate run {name!r}: an earlier entry (or the seeds list) makes it too",
                )
            runs[name] = exp
    return runs


# ---------------------------------------------------------------- runs grouped by setting


def factor_level(experiment: Mapping[str, Any], factor: str) -> str:
    """How a run's setting of ``factor`` is written in tables (modalities joined by +)."""
    if factor == "pooling":
        return run_pooling(experiment)
    value = experiment[factor]
    if factor == "modalities":
        return "+".join(value)
    if factor == "fraction":
        return f"{float(value):g}"
    return str(value)


_SETTING_KEYS = (
    "modalities",
    "dna_encoder",
    "aggregator",
    "fraction",
    "pooling",
    "shuffle_targets",
)


def _settings(experiment: Mapping[str, Any], exclude: Iterable[str]) -> str:
    parts = []
    for key in _SETTING_KEYS:
        if key in exclude:
            continue
        if key == "shuffle_targets":
            if experiment.get(key):
                parts.append("shuffled targets")
            continue
        if key == "pooling" and run_pooling(experiment) == DEFAULT_POOLING:
            continue  # said only when not the default, as in the run's name
        parts.append(f"{FACTOR_LABELS[key]} {factor_level(experiment, key)}")
    return ", ".join(parts)


def _setting_key(experiment: Mapping[str, Any], exclude: str | None = None) -> tuple:
    return tuple(
        factor_level(experiment, k) if k != "shuffle_targets" else bool(experiment.get(k))
        for k in _SETTING_KEYS
        if k != exclude
    )


def setting_name(run: str) -> str:
    """A run's name without its seed (``dna_enformer_concat_s2_f0.5`` -> ``..._concat_f0.5``)."""
    return re.sub(r"_s-?\d+(?=_|$)", "", run)


def setting_groups(experiments: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Setting name -> the runs that differ only in seed, config order."""
    groups: dict[tuple, list[str]] = {}
    for run, exp in experiments.items():
        groups.setdefault(_setting_key(exp), []).append(run)
    return {setting_name(runs[0]): runs for runs in groups.values()}


def ablation_groups(
    experiments: Mapping[str, Mapping[str, Any]], factor: str
) -> list[dict[str, Any]]:
    """Groups of runs that differ only in ``factor`` (seeds pooled), two or more levels each.

    Returns ``[{"fixed": str, "levels": {level: [run, ...]}}]`` in config order. For the
    DNA-encoder factor, runs without DNA are left out: their encoder setting is unused.
    Shuffled-target runs are the control (``control_runs``), not a level of any factor.
    """
    if factor not in (*FACTORS, "fraction"):
        raise ValueError(f"unknown ablation factor {factor!r}")
    groups: dict[tuple, dict[str, list[str]]] = {}
    fixed: dict[tuple, str] = {}
    for run, exp in experiments.items():
        if exp.get("shuffle_targets"):
            continue
        if factor == "dna_encoder" and "dna" not in exp["modalities"]:
            continue
        key = _setting_key(exp, exclude=factor)
        groups.setdefault(key, {}).setdefault(factor_level(exp, factor), []).append(run)
        fixed.setdefault(key, _settings(exp, exclude=(factor,)))
    return [
        {"fixed": fixed[key], "levels": levels}
        for key, levels in groups.items()
        if len(levels) >= 2
    ]


def control_runs(experiments: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The shuffled-target runs (``shuffle_targets: true``), all seeds: the floor."""
    return [run for run, exp in experiments.items() if exp.get("shuffle_targets")]
