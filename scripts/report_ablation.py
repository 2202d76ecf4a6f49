"""Rules report_ablation and report_scaling: one factor varied
(isoflow.report.build.build_ablation)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_ablation


def main() -> None:
    sm = snakemake  # noqa: F821
    build_ablation(
        dict(sm.params.experiments),
        list(sm.input.metrics),
        sm.params.factor,
        sm.params.paper,
        table_path=sm.output.table,
        figure=sm.output.figure,
        baseline_path=getattr(sm.input, "baseline", None),
        demo=sm.params.demo,
        tiny_encoders=list(sm.params.tiny_encoders),
        bootstrap_resamples=sm.params.bootstrap_resamples,
        bootstrap_seed=sm.params.bootstrap_seed,
        bootstrap_unit=sm.params.bootstrap_unit,
        # each run's resamples from rule report_bootstrap (bootstrap.npz beside metrics.json)
        bootstrap_precomputed=True,
        # rule report_ablation only (workflow.ablation_dna_spans); report_scaling has none
        dna_spans=sm.params.get("dna_spans"),
    )


run_script(main, snakemake.log[0])  # noqa: F821
