"""The conda environments in envs/ pin what pyproject.toml and requirements.lock pin."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from helpers.paths import REPO

ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def exact_pins(requirements: list[str]) -> dict[str, str]:
    """name -> version for `name==version` lines; anything looser is an error."""
    pins = {}
    for line in requirements:
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not pinned with ==: {line}"
        pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def lock_pins() -> dict[str, str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return exact_pins([line for line in lines if line.strip() and not line.startswith("#")])


def env_parts(path: Path) -> tuple[list[str], list[str]]:
    """(conda package specs, pip requirement lines) of one environment file."""
    spec = yaml.safe_load(path.read_text())
    conda, pip = [], []
    for item in spec["dependencies"]:
        if isinstance(item, dict):
            pip += item["pip"]
        else:
            conda.append(item)
    return conda, pip


def test_there_is_an_environment_for_the_python_rules() -> None:
    assert REPO / "envs" / "isoflow.yaml" in ENV_FILES


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_every_package_is_pinned_and_agrees_with_the_lock(path: Path) -> None:
    conda, pip = env_parts(path)
    for spec in conda:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+=[0-9][0-9A-Za-z.]*", spec), f"{path.name}: {spec}"
    lock = lock_pins()
    declared = exact_pins(pyproject()["project"]["dependencies"])
    for name, version in exact_pins(pip).items():
        assert lock.get(name) == version, (
            f"{path.name}: {name}=={version}, lock has {lock.get(name)}"
        )
        if name in declared:
            assert declared[name] == version, f"{path.name}: {name}, pyproject has {declared[name]}"
    spec = yaml.safe_load(path.read_text())
    assert "defaults" not in spec["channels"], "the defaults channel changes under a pinned env"


def test_isoflow_env_holds_exactly_the_pyproject_dependencies() -> None:
    conda, pip = env_parts(REPO / "envs" / "isoflow.yaml")
    assert exact_pins(pip) == exact_pins(pyproject()["project"]["dependencies"])
    python = next(spec for spec in conda if spec.startswith("python="))
    version = python.split("=", 1)[1]
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(f"{version}.0")


def test_post_deploy_script_installs_isoflow_without_touching_the_pins() -> None:
    script = (REPO / "envs" / "isoflow.post-deploy.sh").read_text()
    assert "pip install --no-deps ." in script


def test_every_conda_directive_names_an_existing_environment() -> None:
    """`conda:` takes a path relative to the rule file, or a name bound to one in that file."""
    for smk in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        lines = smk.read_text().splitlines()
        bound = dict(re.findall(r'^(\w+) = "([^"]+)"$', smk.read_text(), flags=re.M))
        for number, line in enumerate(lines, start=1):
            if line.strip() == "conda:":
                target = lines[number].strip().rstrip(",")
                target = bound.get(target, target).strip("\"'")
                assert (smk.parent / target).resolve() in ENV_FILES, f"{smk.name}:{number + 1}"
