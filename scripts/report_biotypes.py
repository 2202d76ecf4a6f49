"""Rule report_biotypes: transcripts by biotype (isoflow.report.build_biotypes)."""

from isoflow.cli import run_script
from isoflow.report import build_biotypes


def main() -> None:
    build_biotypes(snakemake.input[0], snakemake.output.figure, snakemake.output.table)  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
