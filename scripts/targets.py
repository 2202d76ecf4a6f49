"""Rule targets: GTEx TPM GCT + attributes -> results/targets/{tissue_set}.parquet, .stats.tsv."""

from isoflow.gtex import build_targets
from isoflow.jobs import run_script

# Options passed only when set away from their default (isoflow.workflow.set_options).
OPTIONS = ("cell_lines",)


def main() -> None:
    params = snakemake.params  # noqa: F821
    build_targets(
        gct=snakemake.input.tpm,  # noqa: F821
        samples=snakemake.input.samples,  # noqa: F821
        transcripts=snakemake.input.transcripts,  # noqa: F821
        tissue_set=snakemake.wildcards.tissue_set,  # noqa: F821
        tissues=snakemake.params.tissues,  # noqa: F821
        min_samples=snakemake.params.min_samples,  # noqa: F821
        overlap_warn_below=snakemake.params.overlap_warn_below,  # noqa: F821
        overlap_fail_below=snakemake.params.overlap_fail_below,  # noqa: F821
        out_parquet=snakemake.output.targets,  # noqa: F821
        out_stats=snakemake.output.stats,  # noqa: F821
        **{key: value for key, value in params.items() if key in OPTIONS},
    )


run_script(main, snakemake.log[0])  # noqa: F821
