"""Rule annotation: GTF/GFF3 -> results/annotation/transcripts.parquet."""

from isoflow.annotation import read_annotation, write_transcripts
from isoflow.jobs import run_script

# Options passed only when set away from their default (isoflow.workflow.set_options).
OPTIONS = ("gene_types", "exclude_contigs")


def main() -> None:
    params = snakemake.params  # noqa: F821
    transcripts = read_annotation(
        snakemake.input[0],  # noqa: F821
        contig_aliases=params.contig_aliases,
        transcript_types=params.transcript_types,
        par_y=params.par_y,
        **{key: value for key, value in params.items() if key in OPTIONS},
    )
    write_transcripts(transcripts, snakemake.output[0])  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
