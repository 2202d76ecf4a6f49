#!/usr/bin/env bash
# Snakemake runs this inside the new envs/isoflow.yaml environment, in the workflow's working
# directory (the repository root). Dependencies are already pinned by the environment file.
set -euo pipefail
test -f pyproject.toml || { echo "isoflow.post-deploy.sh: run snakemake from the isoflow repository root" >&2; exit 1; }
python -m pip install --no-deps .
