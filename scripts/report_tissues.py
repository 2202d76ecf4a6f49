"""Rule report_tissues: GTEx samples per tissue (isoflow.report.build_tissues)."""

from isoflow.cli import run_script
from isoflow.report import build_tissues


def main() -> None:
    build_tissues(snakemake.input[0], snakemake.output.figure, snakemake.output.table)  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
