"""Rule genome_index: genome FASTA -> its samtools .fai index."""

from isoflow.genome import index_fasta
from isoflow.jobs import run_script


def main() -> None:
    index_fasta(snakemake.input[0], snakemake.output[0])  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
