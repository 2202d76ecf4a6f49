"""Rules report_bootstrap and report_bootstraps: each run's metrics on the bootstrap's
resamples of the test units, the split's (isoflow.report.bootstrap.write_runs), read by the
tables across runs."""

from isoflow.jobs import run_script
from isoflow.report.bootstrap import split_units, write_runs


def main() -> None:
    sm = snakemake  # noqa: F821
    predictions = sm.input.predictions
    if isinstance(predictions, str):  # rule report_bootstrap: one run
        predictions = [predictions]
    # in order: predictions i are output i's; what the runs share taken once
    runs = list(zip(predictions, sm.output, strict=True))
    units = split_units(sm.input.get("annotation"), **sm.params.unit)
    write_runs(runs, sm.params.bootstrap_resamples, sm.params.bootstrap_seed, units)


run_script(main, snakemake.log[0])  # noqa: F821
