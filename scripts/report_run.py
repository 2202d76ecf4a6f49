"""Rule report_run: the per-run views (isoflow.report.build.build_run)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_run


def main() -> None:
    sm = snakemake  # noqa: F821
    build_run(
        sm.wildcards.run,
        sm.input.metrics,
        sm.input.history,
        sm.input.predictions,
        curves=sm.output.curves,
        tissue_table=sm.output.tissue_table,
        tissue_figure=sm.output.tissue_figure,
        scatter=sm.output.scatter,
        within_gene=sm.output.within_gene,
        n_scatter=sm.params.scatter_tissues,
        max_points=sm.params.scatter_max_points,
        transcripts_path=sm.input.transcripts,
        errors=sm.output.errors,
        demo=sm.params.demo,
    )


run_script(main, snakemake.log[0])  # noqa: F821
