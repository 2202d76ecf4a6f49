"""Rule explain: a model bundle + a construct or transcript -> ISM map and attention by
region (isoflow.explain)."""

import torch

from isoflow.explain import explain_job
from isoflow.jobs import run_script


def main() -> None:
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    inputs = snakemake.input  # noqa: F821
    settings = snakemake.params.settings  # noqa: F821
    explain_job(
        inputs.model,
        snakemake.params.prefix,  # noqa: F821
        construct=inputs.get("construct"),
        construct_id=settings.get("id"),
        transcript=settings.get("transcript"),
        dataset=inputs.get("dataset"),
        annotation=inputs.get("annotation") or "results/annotation/transcripts.parquet",
        genome=inputs.get("genome"),
        region=settings.get("region"),
        attention=True,
        attention_transcripts=int(settings["transcripts_for_attention"]),
        tissues=settings.get("tissues") or None,
        background=inputs.get("background"),
        **snakemake.params.placement,  # noqa: F821
    )


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
