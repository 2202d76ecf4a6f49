#!/bin/bash
# Wheels for bench/gpu.py on a device machine (docs/benchmarks.md, "Device set-up"): the
# packages isoflow imports that the device image lacks or holds at another version, at
# requirements.lock's pins, for CPython 3.12 on x86-64 Linux, into .whl/ (ignored by git:
# add "/.whl/" to .git/info/exclude). polars is replaced by a stub that raises on any use:
# its runtime wheel (54 MB) does not fit the device call's 64 MiB, and bench/gpu.py never
# calls it. On the device:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD/.whl/stub:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
NAMES="transformers tokenizers huggingface_hub pysam pyfaidx xopen zlib-ng isal backports.zstd
jsonschema referencing rpds-py jsonschema-specifications enformer-pytorch borzoi-pytorch
fair-esm discrete-key-value-bottleneck-pytorch einx intervaltree pytorch-lightning
lightning-utilities torchmetrics"
mkdir -p .whl
for name in $NAMES; do
    pin=$(grep -i -m1 "^${name}==" requirements.lock) || { echo "device_wheels: $name is not pinned in requirements.lock" >&2; exit 1; }
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pin" 2>/dev/null; then
        # pure-Python packages published as source only (intervaltree): build the wheel here
        "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl "$pin"
    fi
done
mkdir -p .whl/stub/polars
cat > .whl/stub/polars/__init__.py <<'STUB'
"""Device-run stand-in for polars (bench/device_wheels.sh): any use raises at once."""


def __getattr__(name):
    raise RuntimeError(f"polars.{name}: polars is a stub on the device machine (.whl/stub)")
STUB
du -sh .whl
