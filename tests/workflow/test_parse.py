"""Reading the workflow loads no deep-learning or plotting library.

Every Snakemake start (a dry run, the scheduler, each SLURM job) parses the Snakefile and
evaluates the input functions: with torch and Lightning imported there, each start cost 5 s
and 500 MB before any job ran (docs/benchmarks.md, bench/bench_parse.py). The rules import
only light modules (isoflow.workflow and what it needs); torch, Lightning, the encoders and
matplotlib load inside the jobs that use them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import REPO
from isoflow.cpu import MARKER, VARIABLES, kernel_env

pytestmark = pytest.mark.slow  # each test is a Snakemake dry run in a fresh interpreter

HEAVY = ("torch", "pytorch_lightning", "lightning", "matplotlib", "transformers")

# A dry run in this process's interpreter, through Snakemake's own command line; then the
# heavy modules it left in sys.modules, as JSON, into the file named by argv[1].
DRY_RUN = """
import json, os, sys
from snakemake.cli import main
from isoflow.cpu import VARIABLES as KERNEL_VARIABLES

out, heavy, args = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
sys.argv = ["snakemake", *args]
try:
    main()
except SystemExit as done:
    code = done.code
else:
    code = 0
with open(out, "w") as handle:
    loaded = [m for m in heavy if m in sys.modules]
    kernels = {k: v for k, v in os.environ.items() if k in KERNEL_VARIABLES}
    json.dump({"code": code, "loaded": loaded, "kernels": kernels}, handle)
"""


@pytest.mark.parametrize(
    "configfiles",
    [["config/config.yaml", "config/ablations.yaml"], ["config/demo.yaml"]],
    ids=["full+ablations", "demo"],
)
def test_dry_run_imports_no_torch_lightning_or_matplotlib(tmp_path: Path, configfiles) -> None:
    workdir = tmp_path / "work"  # empty: every job of the DAG is planned, every input function runs
    workdir.mkdir()
    found = tmp_path / "modules.json"
    args = ["-n", "-s", REPO / "Snakefile", "-d", workdir, "--configfile"]
    args += [REPO / f for f in configfiles]
    done = subprocess.run(
        [sys.executable, "-c", DRY_RUN, found, ",".join(HEAVY), *args],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k not in (*VARIABLES, MARKER)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(found.read_text())
    # A parse that failed early would load nothing: the dry run must have planned the DAG.
    assert result["code"] == 0 and "This was a dry-run" in done.stdout, done.stderr[-3000:]
    assert result["loaded"] == [], f"imported while reading the workflow: {result['loaded']}"
    # every job inherits torch's CPU kernels held to AVX2 (resources.cpu_kernels' default)
    assert result["kernels"] == kernel_env("avx2")[0]
