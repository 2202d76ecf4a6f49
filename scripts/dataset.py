"""Rule dataset: annotation, sequences, targets, splits -> results/dataset/{name}.parquet."""

from isoflow.dataset import build_dataset
from isoflow.jobs import run_script


def main() -> None:
    build_dataset(
        transcripts_parquet=snakemake.input.transcripts,  # noqa: F821
        rna_fa_gz=snakemake.input.rna,  # noqa: F821
        protein_fa_gz=snakemake.input.protein,  # noqa: F821
        windows_bed=snakemake.input.windows,  # noqa: F821
        targets_parquet=snakemake.input.targets,  # noqa: F821
        splits_tsv=snakemake.input.splits,  # noqa: F821
        genome_fasta=snakemake.input.genome,  # noqa: F821
        out=snakemake.output[0],  # noqa: F821
    )


run_script(main, snakemake.log[0])  # noqa: F821
