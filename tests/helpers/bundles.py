"""Tiny trained runs exported as model bundles (isoflow.bundle), as the score, explain and
variants tests and bench/bench_explain.py use them: DNA read raw (its tiny Enformer trained
inside the network), RNA and protein through embedding caches of frozen tiny NT / ESM-2, so
both ways a modality is fed are in every bundle."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from helpers.training import TINY_CONFIG, make_dataset

EXPERIMENT = {"modalities": ["dna", "rna", "protein"], "aggregator": "cross_attention"}
CACHED = {"rna": "nucleotide_transformer", "protein": "esm2"}


def tiny_bundles(
    tmp: Path,
    *,
    window: int = 512,
    seeds: Sequence[int | None] = (None,),
    max_epochs: int = 1,
    check_n: int = 4,
    pooling: dict | None = None,
    cached: dict[str, str] | None = None,
    **export_kwargs,
) -> dict:
    """Train one tiny run per entry of ``seeds`` on one tiny dataset (``None``: the
    experiment without its own seed) and export each (``check_n`` test transcripts
    re-predicted; ``cached``: modality -> encoder read through a cache, default ``CACHED``;
    a cached ``dna`` is read from the genome, pooled to 8); returns ``{"paths": [bundle,
    ...], "run_dirs": [...], "manifests": [...], "exports": [export_bundle's keyword
    arguments per run, to export it again], "dataset",
    "fasta", "caches", "config"}``. ``pooling``: the caches pooled by position
    (``isoflow.embed.pool_positional``) instead of to 4 slots. ``export_kwargs`` go to
    ``export_bundle``."""
    from isoflow.bundle import export_bundle
    from isoflow.embed import embed_dataset
    from isoflow.model.encoders import spec_from_config
    from isoflow.train import run_experiment

    dataset, fasta = make_dataset(tmp, window=window)
    config = copy.deepcopy(TINY_CONFIG)
    config["train"]["max_epochs"] = max_epochs
    cached = CACHED if cached is None else cached
    config["model"]["cached_modalities"] = list(cached)
    caches = {}
    for modality, name in cached.items():
        config["encoders"][name]["pool_to"] = 8 if modality == "dna" else 4
        caches[modality] = tmp / "embeddings" / name
        genome = fasta if modality == "dna" else None
        spec = spec_from_config(config, name)  # as rule embed: the config's limits filled in
        embed_dataset(dataset, name, spec, caches[modality], genome, pooling=pooling)
    settings = {**config, "dna": {"window": window}, "dataset": {"name": "tiny"}}
    paths, run_dirs, manifests, exports = [], [], [], []
    for seed in seeds:
        experiment = EXPERIMENT if seed is None else {**EXPERIMENT, "seed": seed}
        if pooling is not None:  # a run on positional caches says so (checked against them)
            experiment = {**experiment, "pooling": "positional"}
        name = "r" if seed is None else f"s{seed}"
        run_dir = tmp / "runs" / name
        run_experiment(config, experiment, dataset, run_dir, fasta, cache_dirs=caches)
        out = tmp / "models" / name
        kwargs = dict(
            config=settings,
            experiment=experiment,
            dataset_path=dataset,
            cache_dirs=caches,
            genome_fasta=fasta,
        )
        manifests.append(export_bundle(run_dir, out, check_n=check_n, **kwargs, **export_kwargs))
        paths.append(out)
        run_dirs.append(run_dir)
        exports.append(kwargs)
    return {
        "paths": paths,
        "run_dirs": run_dirs,
        "manifests": manifests,
        "exports": exports,
        "dataset": dataset,
        "fasta": fasta,
        "caches": caches,
        "config": config,
    }


def as_finetuned(bundle: Path, dest: Path, table: str = "lab.tsv", **placement) -> Path:
    """A copy of ``bundle`` at ``dest`` whose manifest carries the ``finetune`` record of a
    bundle fine-tuned on the measurement table ``table`` with constructs placed as
    ``placement`` (``isoflow.finetune.construct_record``'s options, default N fill): what
    the commands read of a fine-tuned bundle (its units, its placement) without a
    fine-tuning run; its digests written again."""
    import json
    import shutil

    from isoflow.bundle import DIGESTS, MANIFEST, _write_manifest
    from isoflow.finetune import construct_record

    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / MANIFEST).read_text())
    manifest.pop(DIGESTS, None)
    manifest["finetune"] = {
        "base": {"path": str(bundle), "run": manifest["run"]},
        "source": {"table": str(dest.parent / table), "demo": False},
        "construct_options": construct_record(placement, {}),
    }
    _write_manifest(dest, manifest)
    return dest
