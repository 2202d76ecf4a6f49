"""Rule demo_constructs: the demo cassettes and their background (isoflow.demo)."""

from isoflow.demo import write_demo_constructs
from isoflow.jobs import run_script


def main() -> None:
    sm = snakemake  # noqa: F821
    write_demo_constructs(
        sm.output.constructs,
        seed=sm.params.seed,
        background=sm.output.background,
        background_len=sm.params.background_len,
    )


run_script(main, snakemake.log[0])  # noqa: F821
