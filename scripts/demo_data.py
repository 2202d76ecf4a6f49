"""demo_data rule: synthetic genome, GTF, GTEx attributes and TPM matrix (isoflow.demo)."""

from isoflow.demo import write_demo
from isoflow.jobs import run_script


def main() -> None:
    outputs = {key: snakemake.output[key] for key in snakemake.output.keys()}  # noqa: F821
    write_demo(outputs, snakemake.params.seed, **snakemake.params.options)  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
