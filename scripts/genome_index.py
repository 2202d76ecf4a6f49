"""Rule genome_index: genome FASTA -> its samtools .fai index."""

from isoflow.cli import run_script
from isoflow.genome import index_fasta


def main() -> None:
    index_fasta(snakemake.input[0], snakemake.output[0])  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
