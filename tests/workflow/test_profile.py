"""`snakemake --profile slurm`, typed at the repository root, uses the repository's profile.

Snakemake resolves `--profile NAME` as a path relative to the working directory first, then
in the user's and the site's config directories (snakemake.cli.get_profile_dir). The
repository's root holds `slurm`, a symbolic link to `profiles/slurm`: the name works from the
root with no set-up, edits land in one file, nothing outside the repository is written, and a
user's own `~/.config/snakemake/slurm` cannot shadow it there.
"""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers.dryrun import parse_dry_run
from helpers.paths import REPO

pytestmark = pytest.mark.slow


def test_the_root_slurm_link_is_the_repositorys_profile() -> None:
    link = REPO / "slurm"
    assert link.is_symlink(), "the repository root must hold `slurm` -> profiles/slurm"
    assert os.readlink(link) == "profiles/slurm"
    assert (link / "config.yaml").samefile(REPO / "profiles" / "slurm" / "config.yaml")


def test_snakemake_profile_slurm_resolves_the_full_dag(tmp_path: Path, snakemake_exe) -> None:
    """A fresh HOME with a decoy `slurm` profile of its own: from the repository root the
    repository's profile wins, the full DAG resolves with the SLURM resources, nothing is
    submitted and the user's config directory is left as it was."""
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    decoy = xdg / "snakemake" / "slurm" / "config.yaml"
    decoy.parent.mkdir(parents=True)
    decoy.write_text("executor: local\njobs: 1\n")
    before = sorted(p.relative_to(xdg) for p in xdg.rglob("*"))
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "sbatch-calls"
    for tool in ("sbatch", "srun"):
        (fake_bin / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit 1\n')
        (fake_bin / tool).chmod(0o755)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(xdg),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
    }
    workdir = tmp_path / "work"
    done = subprocess.run(
        [snakemake_exe, "--profile", "slurm", "-n", "-d", workdir,
         "--configfile", REPO / "config" / "config.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "Using profiles slurm and workflow specific profile profiles/default" in out
    jobs = parse_dry_run(done.stdout)
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    remote = [job for job in jobs if not job["local"] and job["rule"] != "all"]
    assert remote, "no cluster job in the full DAG"
    for job in remote:
        assert "slurm_partition" in job["resources"], job
        assert job["resources"]["mem_mb"], job
    train = [job for job in jobs if job["rule"] == "train"]
    assert train and all(job["resources"].get("gpu") == "1" for job in train)
    assert profile["executor"] == "slurm"
    assert not calls.exists(), calls.read_text()
    assert decoy.read_text() == "executor: local\njobs: 1\n"
    after = sorted(p.relative_to(xdg) for p in xdg.rglob("*"))
    assert after == before, "the user's config directory was written to"
