"""Rule report_biotypes: transcripts by biotype (isoflow.report.build.build_biotypes)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_biotypes


def main() -> None:
    sm = snakemake  # noqa: F821
    build_biotypes(sm.input[0], sm.output.figure, sm.output.table, demo=sm.params.demo)


run_script(main, snakemake.log[0])  # noqa: F821
