"""Rule embed (embed.jobs > 1) and embed_positional's gather: part caches -> one cache."""

from isoflow.embed import gather_cache
from isoflow.jobs import run_script


def main() -> None:
    gather_cache(list(snakemake.input), snakemake.output[0])  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
