"""Experiments: one training run each, named after what it is (DESIGN.md)."""

from __future__ import annotations

from typing import Any

from isoflow.errors import InputError

MODALITY_ORDER = ("dna", "rna", "protein")
DEFAULTS: dict[str, Any] = {
    "dna_encoder": "enformer",
    "aggregator": "cross_attention",
    "seed": 0,
    "fraction": 1.0,
    "shuffle_targets": False,
}


def run_name(experiment: dict[str, Any]) -> str:
    """``{modalities}_{dna_encoder}_{aggregator}_s{seed}[_f{fraction}][_shuffled]``.

    The DNA encoder is named even when DNA is not among the modalities, so that two runs
    never share a name by accident only if everything else is equal.
    """
    exp = {**DEFAULTS, **experiment}
    unknown = set(exp["modalities"]) - set(MODALITY_ORDER)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; allowed: {MODALITY_ORDER}")
    modalities = "+".join(m for m in MODALITY_ORDER if m in exp["modalities"])
    name = f"{modalities}_{exp['dna_encoder']}_{exp['aggregator']}_s{exp['seed']}"
    if exp["fraction"] != 1.0:
        name += f"_f{exp['fraction']:g}"
    if exp["shuffle_targets"]:
        name += "_shuffled"
    return name


def expand_experiments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run name -> experiment with defaults filled, in config order.

    An experiment that sets its own ``seed`` is one run; any other is one run per entry of
    the top-level ``seeds`` list (default ``[0]``). Two runs with the same name are a config
    error (InputError, one line naming the entry).
    """
    seeds = config.get("seeds", [0])
    if not seeds:
        raise InputError("config", "seeds", "empty list: give at least one seed, e.g. [0]")
    runs: dict[str, dict[str, Any]] = {}
    for i, experiment in enumerate(config.get("experiments") or []):
        own_seed = "seed" in experiment
        for seed in [experiment["seed"]] if own_seed else seeds:
            exp = {**DEFAULTS, **experiment, "seed": seed}
            exp["modalities"] = [m for m in MODALITY_ORDER if m in exp["modalities"]]
            name = run_name(exp)
            if name in runs:
                raise InputError(
                    "config",
                    f"experiments[{i}]",
                    f"duplicate run {name!r}: an earlier entry (or the seeds list) makes it too",
                )
            runs[name] = exp
    return runs
