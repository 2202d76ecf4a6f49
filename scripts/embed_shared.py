"""Rule embed_shared: dataset table (+ genome) -> results/embeddings/{encoder}/ (adaptive)
and results/embeddings/{encoder}-positional/ from one forward per batch
(isoflow.embed.build_caches; config embed.share_forward)."""

import torch

from isoflow.embed import embed_dataset
from isoflow.jobs import run_script
from isoflow.model.encoders import spec_from_config
from isoflow.workflow import embed_shard_mb, embed_store_options

# Options passed only when set away from their default (isoflow.workflow.set_options)
# (embed.shard_mb is not a param: read from the config, it changes no stored value).
OPTIONS = ("precision", "batch_letters", "compile")


def main() -> None:
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    name = snakemake.wildcards.encoder  # noqa: F821
    params = snakemake.params  # noqa: F821
    output = snakemake.output  # noqa: F821
    embed_dataset(
        snakemake.input.dataset,  # noqa: F821
        name,
        spec_from_config(params.settings, name),
        output.adaptive,
        genome_fasta=snakemake.input.get("genome"),  # noqa: F821
        shard_mb=embed_shard_mb(snakemake.config),  # noqa: F821 (not a param: layout only)
        **embed_store_options(snakemake.config),  # noqa: F821 (not params: no byte changes)
        also=[(output.positional, params.pooling)],
        **{key: value for key, value in params.items() if key in OPTIONS},
    )


run_script(main, snakemake.log[0], exit_when_done=True)  # noqa: F821
