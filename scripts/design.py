"""Rule design: a start cassette + model bundles -> designed cassettes (isoflow.design)."""

import torch

from isoflow.design import SETTINGS_KEYS, design_job
from isoflow.jobs import run_script


def main() -> None:
    sm = snakemake  # noqa: F821
    torch.set_num_threads(sm.threads)
    settings = dict(sm.params.settings)
    design_job(
        sm.input.construct,
        list(sm.input.models),
        dict(sm.output.items()),
        construct_id=settings["id"],
        target_tissues=settings["target_tissues"],
        others=settings.get("others", "max"),
        k=settings.get("k", 1.0),
        editable=settings.get("editable", ["utr5", "utr3"]),
        fixed=settings.get("fixed", []),
        constraints=settings.get("constraints"),
        settings={k: settings[k] for k in SETTINGS_KEYS if k in settings},
        background=sm.input.get("background"),
        holdout=list(sm.input.get("holdout", [])),
        demo=sm.params.demo,
        **sm.params.placement,
    )


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
