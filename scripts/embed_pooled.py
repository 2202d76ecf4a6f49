"""Rules embed_positional and embed_part: dataset table (+ genome) -> a positionally pooled
cache (results/embeddings/{encoder}-positional/) or one part cache of embed.jobs.

A script of its own, not scripts/embed.py: Snakemake reruns a rule whose script is newer
than its outputs, and rule embed's adaptive caches must stay as they are."""

import torch

from isoflow.embed import embed_dataset
from isoflow.jobs import run_script
from isoflow.model.encoders import spec_from_config
from isoflow.workflow import embed_shard_mb, embed_store_options

# Options passed only when set away from their default (isoflow.workflow.set_options)
# (embed.shard_mb is not a param: read from the config, it changes no stored value), and
# this rule's pooling (None: the spec's adaptive pool_to) and part.
OPTIONS = ("precision", "batch_letters", "compile", "pooling", "part")


def main() -> None:
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    name = snakemake.wildcards.encoder  # noqa: F821
    params = snakemake.params  # noqa: F821
    embed_dataset(
        snakemake.input.dataset,  # noqa: F821
        name,
        spec_from_config(params.settings, name),
        snakemake.output[0],  # noqa: F821
        genome_fasta=snakemake.input.get("genome"),  # noqa: F821
        shard_mb=embed_shard_mb(snakemake.config),  # noqa: F821 (not a param: layout only)
        **embed_store_options(snakemake.config),  # noqa: F821 (not params: no byte changes)
        **{k: v for k, v in params.items() if k in OPTIONS and v is not None},
    )


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
