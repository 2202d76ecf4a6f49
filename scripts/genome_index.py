"""Rule genome_index: genome FASTA -> its samtools .fai index (and a bgzip FASTA's .gzi)."""

from isoflow.genome import index_fasta
from isoflow.jobs import run_script


def main() -> None:
    index_fasta(snakemake.input[0], *snakemake.output)  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
