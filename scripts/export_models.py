"""Rule export_models (resources.train_jobs: one): every bundle the workflow asks for, in one
job, so torch and the encoder libraries are imported once (isoflow.bundle)."""

import logging
from pathlib import Path

import torch

from isoflow.bundle import export_rule_bundle
from isoflow.jobs import run_script

log = logging.getLogger("isoflow.bundle")


def main() -> None:
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    params = snakemake.params  # noqa: F821
    outputs = list(snakemake.output)  # noqa: F821
    for i, (run, out_dir) in enumerate(zip(params.runs, outputs, strict=True)):
        inputs = params.inputs[run]
        export_rule_bundle(
            Path(inputs["metrics"]).parent,  # results/runs/{run}/
            out_dir,
            inputs,
            config=params.settings,
            experiment=params.experiments[run],
        )
        log.info("bundle of run %s (%d of %d) written to %s", run, i + 1, len(outputs), out_dir)


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
