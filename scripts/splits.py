"""Rule splits: results/annotation/transcripts.parquet -> results/splits/{scheme}.tsv."""

from isoflow.cli import run_script
from isoflow.splits import build_splits


def main() -> None:
    build_splits(
        snakemake.input[0],  # noqa: F821
        snakemake.output[0],  # noqa: F821
        snakemake.wildcards.scheme,  # noqa: F821
        **snakemake.params.split,  # noqa: F821
    )


run_script(main, snakemake.log[0])  # noqa: F821
