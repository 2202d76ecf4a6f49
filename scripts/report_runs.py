"""Rule report_runs: every run's per-run views in one job (isoflow.report.build.build_runs;
resources.train_jobs: one)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_runs


def main() -> None:
    sm = snakemake  # noqa: F821
    build_runs(
        sm.params.runs,
        sm.params.views,
        list(sm.output),
        sm.input.metrics,
        sm.input.history,
        sm.input.predictions,
        transcripts_path=sm.input.transcripts,
        n_scatter=sm.params.scatter_tissues,
        max_points=sm.params.scatter_max_points,
        demo=sm.params.demo,
    )


run_script(main, snakemake.log[0])  # noqa: F821
