"""isoflow.cpu: torch's CPU kernels held to AVX2 (resources.cpu_kernels), so a CPU run writes
the same bytes on every x86-64 machine with AVX2, AVX-512 ones included."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from isoflow import cpu
from isoflow.cpu import KERNEL_ENV, VARIABLES, cpu_flags, kernel_env, pin_cpu_kernels

AVX512 = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f"})

# A conv (oneDNN), Linear + LayerNorm and attention (MKL, ATen) on fixed random input, one
# thread; prints the SHA-256 of each float32 result and ATen's kernels.
COMPUTE = """
import hashlib, json, torch
torch.set_num_threads(1)
torch.manual_seed(0)
x = torch.randn(4, 4, 1024)
conv = torch.nn.Conv1d(4, 64, 15, padding=7)
lin = torch.nn.Linear(64, 64)
norm = torch.nn.LayerNorm(64)
att = torch.nn.MultiheadAttention(64, 4, batch_first=True)
with torch.no_grad():
    h = torch.nn.functional.gelu(conv(x)).transpose(1, 2)
    a = norm(lin(h))
    out = att(a, a, a, need_weights=False)[0].softmax(-1).sum(1)
parts = {"conv": h, "linear+norm": a, "attention": out}
digests = {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in parts.items()}
print(json.dumps({"kernels": torch.backends.cpu.get_cpu_capability(), **digests}))
"""

# COMPUTE's digests with the kernels held to AVX2, seen on the AVX-512 dev box (AMD EPYC,
# torch 2.13.0+cpu) on 2026-11-27; an AVX2 machine writes them with its own kernels.
AVX2_DIGESTS = {
    "conv": "c80b8a86842929a7ec69eb6e1efaab24cb61854dae4a7df10a38a0107626bfd8",
    "linear+norm": "57322c1b2e281d85c0df86d22c220384a965060ef00cbcad70178be9ec883567",
    "attention": "15a1c6e38ef7e14662e2306ebc64c6842cfeb819837d8982ab4dc34f29595541",
}

FLAGS = cpu_flags()
HAS_AVX2 = platform.machine().lower() in cpu.X86_64 and FLAGS is not None and "avx2" in FLAGS


def _compute(env: dict[str, str]) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", COMPUTE],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86-64 CPU with AVX2")
def test_held_to_avx2_the_results_are_an_avx2_machines_bytes():
    env, _ = kernel_env("avx2")
    result = _compute(env)
    assert result.pop("kernels") == "AVX2"
    assert result == AVX2_DIGESTS


@pytest.mark.skipif(
    FLAGS is None or "avx512f" not in FLAGS, reason="shows the difference on an AVX-512 CPU"
)
def test_on_an_avx512_cpu_native_kernels_write_other_bytes():
    """Why the pin exists: the same computation with the CPU's own kernels differs."""
    result = _compute({})
    assert result.pop("kernels") == "AVX512"
    assert result["conv"] != AVX2_DIGESTS["conv"]
    assert result["attention"] != AVX2_DIGESTS["attention"]


def test_kernel_env_holds_an_avx2_x86_64_cpu():
    env, line = kernel_env("avx2", machine="x86_64", flags=AVX512)
    assert env == KERNEL_ENV["avx2"]
    assert set(env) == set(VARIABLES)
    assert "held to avx2" in line and "MKL_CBWR=AVX2" in line


def test_native_sets_nothing():
    assert kernel_env("native", machine="x86_64", flags=AVX512)[0] == {}


@pytest.mark.parametrize(
    ("machine", "flags", "said"),
    [
        ("aarch64", frozenset({"fp", "asimd"}), "aarch64"),
        ("x86_64", frozenset({"sse4_2", "avx"}), "lacks ['avx2', 'fma']"),
        ("x86_64", None, "could not be read"),
    ],
    ids=["arm", "no-avx2", "no-cpuinfo"],
)
def test_not_held_where_the_cpu_cannot_run_avx2_kernels(machine, flags, said, tmp_path):
    """ATen would run AVX2 kernels on a CPU without them; the variables mean nothing on Arm."""
    # given no flags, kernel_env reads them from cpuinfo: here a file that is not there
    env, line = kernel_env("avx2", machine=machine, flags=flags, cpuinfo=tmp_path / "none")
    assert env == {}
    assert "not held to avx2" in line and said in line


def test_an_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="resources.cpu_kernels: 'avx512'"):
        kernel_env("avx512")


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(info) == frozenset({"fpu", "sse", "avx2", "fma"})
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # Arm's /proc/cpuinfo
    assert cpu_flags(info) is None


def test_pin_keeps_a_value_the_user_set_and_says_so():
    environ = {"MKL_CBWR": "COMPATIBLE", "PATH": "/usr/bin"}
    env, line = pin_cpu_kernels("avx2", environ, machine="x86_64", flags=AVX512)
    assert env == KERNEL_ENV["avx2"]
    assert environ["MKL_CBWR"] == "COMPATIBLE"  # the user's wins
    assert environ["ATEN_CPU_CAPABILITY"] == "avx2"
    assert environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert "kept from the environment: MKL_CBWR=COMPATIBLE" in line


def test_pin_native_leaves_the_environment_alone():
    environ = {"PATH": "/usr/bin"}
    assert pin_cpu_kernels("native", environ) == ({}, pin_cpu_kernels("native", {})[1])
    assert environ == {"PATH": "/usr/bin"}
