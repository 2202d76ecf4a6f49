"""Rule report_lengths: RNA and protein length distributions
(isoflow.report.build.build_lengths)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_lengths


def main() -> None:
    sm = snakemake  # noqa: F821
    build_lengths(
        sm.input.rna,
        sm.input.protein,
        sm.output.figure,
        sm.output.table,
        max_nt=sm.params.max_nt,
        max_aa=sm.params.max_aa,
        demo=sm.params.demo,
    )


run_script(main, snakemake.log[0])  # noqa: F821
