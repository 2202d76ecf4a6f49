"""Rules report_bootstrap and report_bootstraps: each run's metrics on the bootstrap's
resamples of the test genes (isoflow.report.bootstrap.write_runs), read by the tables across
runs."""

from isoflow.jobs import run_script
from isoflow.report.bootstrap import write_runs


def main() -> None:
    sm = snakemake  # noqa: F821
    # in order: input i is output i's predictions; what the runs share taken once
    runs = list(zip(sm.input, sm.output, strict=True))
    write_runs(runs, sm.params.bootstrap_resamples, sm.params.bootstrap_seed)


run_script(main, snakemake.log[0])  # noqa: F821
