"""Rule report_tissues: GTEx samples per tissue (isoflow.report.build.build_tissues)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_tissues


def main() -> None:
    sm = snakemake  # noqa: F821
    build_tissues(sm.input[0], sm.output.figure, sm.output.table, demo=sm.params.demo)


run_script(main, snakemake.log[0])  # noqa: F821
