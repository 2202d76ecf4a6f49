#!/usr/bin/env bash
# Debian packages the test suite needs (gffread and samtools are the independent oracles).
set -euo pipefail
# Idempotent: installs only what is missing (make test runs it on every call as root).
PKGS=(gffread samtools)
# tests/workflow/test_report_browser.py renders the HTML report in headless Chromium.
PKGS+=(chromium)
# embed.compile: torch.compile's inductor backend generates and builds C++ kernels on a CPU
# (tests/unit/test_embed.py compiles a tiny ESM-2 through it).
PKGS+=(g++)
# tests/workflow/test_slurm.py starts a single-node SLURM cluster with accounting (slurmdbd on MariaDB).
PKGS+=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
  # Wait for another apt/dpkg run instead of failing on its lock.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi
