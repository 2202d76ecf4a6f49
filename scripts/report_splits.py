"""Rule report_splits: split sizes (isoflow.report.build.build_splits)."""

from isoflow.jobs import run_script
from isoflow.report.build import build_splits


def main() -> None:
    sm = snakemake  # noqa: F821
    build_splits(
        sm.input[0],
        sm.output.figure,
        sm.output.table,
        sm.params.scheme,
        demo=sm.params.demo,
        # only when report.reference_counts is set (isoflow.workflow.set_options)
        dataset=sm.input.get("dataset"),
        reference=sm.params.get("reference_counts"),
        transcripts=sm.input.transcripts,
    )


run_script(main, snakemake.log[0])  # noqa: F821
