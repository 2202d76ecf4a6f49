"""Rule demo_measurements: the demo's construct measurement table (isoflow.demo)."""

from isoflow.demo import write_demo_measurements
from isoflow.jobs import run_script


def main() -> None:
    sm = snakemake  # noqa: F821
    write_demo_measurements(sm.output.table, seed=sm.params.seed)


run_script(main, snakemake.log[0])  # noqa: F821
