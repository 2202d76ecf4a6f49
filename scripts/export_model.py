"""Rule export_model: results/runs/{run}/ -> results/models/{run}/ (isoflow.bundle)."""

import torch

from isoflow.bundle import export_rule_bundle
from isoflow.jobs import run_script


def main() -> None:
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    params = snakemake.params  # noqa: F821
    export_rule_bundle(
        params.run_dir,
        snakemake.output[0],  # noqa: F821
        dict(snakemake.input),  # noqa: F821
        config=params.settings,
        experiment=params.experiment,
    )


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
