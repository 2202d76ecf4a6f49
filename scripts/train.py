"""Rule train: dataset (+ genome or embedding caches) -> results/runs/{run}/."""

import torch

from isoflow.jobs import run_script
from isoflow.train import run_experiment


def main() -> None:
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    inputs = snakemake.input  # noqa: F821
    params = snakemake.params  # noqa: F821
    cache_dirs = {
        key.removeprefix("cache_"): path for key, path in inputs.items() if key.startswith("cache_")
    }
    run_experiment(
        params.settings,
        params.experiment,
        inputs.dataset,
        params.run_dir,
        genome_fasta=inputs.get("genome"),
        cache_dirs=cache_dirs,
    )


run_script(main, snakemake.log[0])  # noqa: F821
