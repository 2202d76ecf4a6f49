"""Rule download_encoders: pretrained weights -> resources/models/{encoder}/."""

from pathlib import Path

from isoflow.jobs import run_script
from isoflow.weights import download_encoder


def main() -> None:
    name = snakemake.wildcards.encoder  # noqa: F821
    spec = snakemake.params.encoders.get(name) or {}  # noqa: F821
    download_encoder(name, spec, Path(snakemake.output[0]).parent)  # noqa: F821


run_script(main, snakemake.log[0])  # noqa: F821
