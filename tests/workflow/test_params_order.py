"""A job's params do not depend on the order the config files write their keys in.

Snakemake records each param's repr and compares those strings (``Params have changed``),
so a dict's key order counts. The same values in another order (``--configfile
config/config.yaml config/demo.yaml``, as the README's ``--directory`` commands write, against
``--configfile config/demo.yaml`` over the Snakefile's ``config/config.yaml``; or a config
whose keys are written in another order) must give every job the same params, or a run
built one way reruns from its first dict param on (the splits, then everything after). The
params compared are those Snakemake's persistence records (tests/helpers/dag_params.py),
for the demo (one train job, shared forwards, the construct, explain, design and finetune
rules), the demo with per-run train jobs and scattered embeds, and the full config with
its ablations (downloads, the data-scaling view). Lists keep their order: it is meaningful
(tissues, runs, modalities).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.configs import reversed_keys
from helpers.paths import REPO, SNAKEMAKE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SNAKEMAKE.exists(), reason=f"{SNAKEMAKE} missing"),
]

DAG_PARAMS = Path(__file__).resolve().parents[1] / "helpers" / "dag_params.py"
CONFIG = REPO / "config" / "config.yaml"
DEMO = REPO / "config" / "demo.yaml"
ABLATIONS = REPO / "config" / "ablations.yaml"
# per-run train and report jobs, each cache scattered over two embed_part jobs
VARIANT = {
    "resources": {"train_jobs": "per_run"},
    "embed": {"jobs": 2, "share_forward": False},
}


def write(path: Path, value) -> Path:
    path.write_text(yaml.safe_dump(value, sort_keys=False))
    return path


def dag_params(workdir: Path, *configs: Path) -> dict:
    done = subprocess.run(
        [sys.executable, DAG_PARAMS, REPO, workdir, *configs],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def differing(one: dict, other: dict) -> list[str]:
    """The jobs whose recorded params differ, with the first differing param of each."""
    assert one["jobs"].keys() == other["jobs"].keys()
    found = []
    for job, (rule, params) in one["jobs"].items():
        if params != other["jobs"][job][1]:
            extra = sorted(set(params) ^ set(other["jobs"][job][1]))
            found.append(f"{rule} ({job[:60]}): {extra[0][:200]}")
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory where the Snakefile's `configfile: config/config.yaml` is found
    (as in the checkout), with the configs' reversed copies beside it."""
    work = tmp_path_factory.mktemp("order")
    (work / "config").symlink_to(REPO / "config")
    for name, path in (("config", CONFIG), ("demo", DEMO), ("ablations", ABLATIONS)):
        write(work / f"{name}.reversed.yaml", reversed_keys(yaml.safe_load(path.read_text())))
    write(work / "variant.yaml", VARIANT)
    write(work / "variant.reversed.yaml", reversed_keys(VARIANT))
    return work


def test_every_jobs_params_are_the_same_whatever_the_configs_key_order(workdir: Path) -> None:
    rules_seen, rules_defined = set(), set()
    cases = [
        # the demo as `make demo` runs it, as the README's --directory commands name its
        # files, and in reversed key order
        [
            [DEMO],
            [CONFIG, DEMO],
            [workdir / "config.reversed.yaml", workdir / "demo.reversed.yaml"],
        ],
        [
            [DEMO, workdir / "variant.yaml"],
            [
                workdir / "config.reversed.yaml",
                workdir / "demo.reversed.yaml",
                workdir / "variant.reversed.yaml",
            ],
        ],
        [
            [CONFIG, ABLATIONS],
            [workdir / "config.reversed.yaml", workdir / "ablations.reversed.yaml"],
        ],
    ]
    for configs, *others in cases:
        first = dag_params(workdir, *configs)
        assert first["jobs"]
        rules_seen |= {rule for rule, _ in first["jobs"].values()}
        rules_defined |= set(first["rules"])
        for other in others:
            assert differing(first, dag_params(workdir, *other)) == [], (configs, other)
    # every rule with params is in one of the DAGs compared
    assert rules_defined - rules_seen == set()


def test_a_changed_value_is_still_a_changed_param(workdir: Path) -> None:
    """The comparison can fail: a value edited (split.salt) changes the splits' params."""
    edit = write(workdir / "salt.yaml", {"split": {"salt": "other"}})
    changed = differing(dag_params(workdir, DEMO), dag_params(workdir, DEMO, edit))
    assert any(line.startswith("splits ") for line in changed), changed
