"""Rule report_targets: target distribution, isoforms per gene, GTEx vs annotation
(isoflow.report.build.build_targets)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_targets


def main() -> None:
    sm = snakemake  # noqa: F821
    build_targets(
        sm.input.targets,
        sm.input.stats,
        figure=sm.output.figure,
        table=sm.output.table,
        isoforms_figure=sm.output.isoforms,
        demo=sm.params.demo,
    )


run_script(main, snakemake.log[0])  # noqa: F821
