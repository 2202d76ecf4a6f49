"""Rule sequences: transcripts.parquet + genome -> rna.fa.gz, protein.fa.gz, dna_windows.bed."""

import pandas as pd

from isoflow.jobs import run_script
from isoflow.sequences import build_sequences

# Options passed only when set away from their default (isoflow.workflow.set_options).
OPTIONS = ("edge",)


def main() -> None:
    io, out = snakemake.input, snakemake.output  # noqa: F821
    params = snakemake.params  # noqa: F821
    build_sequences(
        pd.read_parquet(io.transcripts),
        io.fasta,
        snakemake.params.window,  # noqa: F821
        out.rna,
        out.protein,
        out.windows,
        annotation_path=snakemake.params.annotation,  # noqa: F821
        transcripts_path=io.transcripts,
        contig_aliases=snakemake.params.contig_aliases,  # noqa: F821
        **{key: value for key, value in params.items() if key in OPTIONS},
    )


run_script(main, snakemake.log[0])  # noqa: F821
