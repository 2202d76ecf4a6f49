"""Rule annotation: GTF/GFF3 -> results/annotation/transcripts.parquet."""

from isoflow.annotation import read_annotation, write_transcripts
from isoflow.jobs import run_script


def main() -> None:
    transcripts = read_annotation(
        snakemake.input[0],  # noqa: F821
        contig_aliases=snakemake.params.contig_aliases,  # noqa: F821
        transcript_types=snakemake.params.transcript_types,  # noqa: F821
        par_y=snakemake.params.par_y,  # noqa: F821
    )
    write_transcripts(transcripts, snakemake.output[0])  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
