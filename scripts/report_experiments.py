"""Rule report_experiments: all runs beside the paper
(isoflow.report.build.build_experiments)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_experiments


def main() -> None:
    sm = snakemake  # noqa: F821
    build_experiments(
        dict(sm.params.experiments),
        list(sm.input.metrics),
        sm.params.paper,
        table_html_path=sm.output.table,
        table_tsv_path=sm.output.tsv,
        figure=sm.output.figure,
        baseline_path=getattr(sm.input, "baseline", None),
        demo=sm.params.demo,
        tiny_encoders=list(sm.params.tiny_encoders),
        bootstrap_resamples=sm.params.bootstrap_resamples,
        bootstrap_seed=sm.params.bootstrap_seed,
        bootstrap_unit=sm.params.bootstrap_unit,
        # each run's resamples from rule report_bootstrap (bootstrap.npz beside metrics.json)
        bootstrap_precomputed=True,
        within_gene=sm.output.within_gene,
    )


run_script(main, snakemake.log[0])  # noqa: F821
