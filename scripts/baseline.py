"""Rule baseline: sequence-free ridge baseline -> results/baseline/ (isoflow.baseline)."""

from isoflow.baseline import run_baseline
from isoflow.jobs import run_script


def main() -> None:
    run_baseline(
        transcripts_parquet=snakemake.input.transcripts,  # noqa: F821
        rna_fa_gz=snakemake.input.rna,  # noqa: F821
        dataset_parquet=snakemake.input.dataset,  # noqa: F821
        metrics_json=snakemake.output.metrics,  # noqa: F821
        predictions_parquet=snakemake.output.predictions,  # noqa: F821
        features_tsv=snakemake.output.features,  # noqa: F821
        model=snakemake.params.model,  # noqa: F821
    )


run_script(main, snakemake.log[0])  # noqa: F821
