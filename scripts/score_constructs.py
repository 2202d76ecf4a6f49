"""Rule score_constructs: constructs + model bundles -> results/constructs/ (isoflow.score)."""

import torch

from isoflow.jobs import run_script
from isoflow.score import score_file


def main() -> None:
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    settings = dict(sm.params.settings)
    score_file(
        sm.input.constructs,
        list(sm.input.models),
        dict(sm.output.items()),
        background=sm.input.get("background"),
        demo=sm.params.demo,
        **settings,
    )


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
