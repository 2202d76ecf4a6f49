"""Rule download_encoders: pretrained weights -> resources/models/{folder}/."""

from pathlib import Path

from isoflow.jobs import run_script
from isoflow.weights import download_encoder


def main() -> None:
    folder = snakemake.wildcards.folder  # noqa: F821
    download_encoder(folder, snakemake.params.source, Path(snakemake.output[0]).parent)  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
