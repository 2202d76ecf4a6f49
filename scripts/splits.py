"""Rule splits: results/annotation/transcripts.parquet -> results/splits/{scheme}.tsv."""

from isoflow.jobs import run_script
from isoflow.splits import build_splits


def main() -> None:
    # The scheme comes from the wildcard; the rest of config["split"] are its settings.
    settings = {k: v for k, v in snakemake.params.split.items() if k != "scheme"}  # noqa: F821
    build_splits(
        snakemake.input[0],  # noqa: F821
        snakemake.output[0],  # noqa: F821
        snakemake.wildcards.scheme,  # noqa: F821
        **settings,
    )


run_script(main, snakemake.log[0])  # noqa: F821
