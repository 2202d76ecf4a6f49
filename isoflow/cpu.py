"""torch's CPU kernels held to one instruction set, so that a CPU run gives the same bytes on
every x86-64 machine that has it (config key ``resources.cpu_kernels``).

torch picks its vectorised kernels when a process starts, by what the CPU offers: ATen's own
element-wise and reduction kernels (``ATEN_CPU_CAPABILITY``), MKL's BLAS behind ``Linear``
and ``matmul`` (``MKL_CBWR``, MKL's conditional numerical reproducibility) and oneDNN's
convolutions (``ONEDNN_MAX_CPU_ISA``). A float sum taken 16 lanes at a time (AVX-512) adds in
another order than one taken 8 at a time (AVX2), so the same demo gave other embedding caches
on an AVX-512 machine than on an AVX2 one, and every run trained on them other metrics in
the third decimal (docs/benchmarks.md, "The same bytes on another CPU"). Held to AVX2, both
machines write the same bytes.

Read at workflow parse (rules/common.smk), so standard library only: the variables are set
in the Snakemake process, and every job (and every process a job spawns) inherits them. A
value already in the environment wins, as for ``OMP_WAIT_POLICY``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, MutableMapping
from pathlib import Path

# resources.cpu_kernels -> the variables that hold torch's CPU kernels to it
KERNEL_ENV: dict[str, dict[str, str]] = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "native": {},
}
# what the CPU must offer for the choice (ATen's AVX2 kernels are compiled with FMA)
REQUIRED_FLAGS: dict[str, frozenset[str]] = {"avx2": frozenset({"avx2", "fma"})}
X86_64 = frozenset({"x86_64", "amd64"})
VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> frozenset[str] | None:
    """The instruction-set flags of the first CPU in ``cpuinfo``; None where it cannot be read
    (not Linux)."""
    try:
        with Path(cpuinfo).open() as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        return None
    return None


def kernel_env(
    choice: str,
    *,
    machine: str | None = None,
    flags: frozenset[str] | None = None,
    cpuinfo: str | os.PathLike = "/proc/cpuinfo",
) -> tuple[dict[str, str], str]:
    """The environment that holds torch's CPU kernels to ``choice`` on this machine, and one
    line saying what it does (for the log). Nothing is set for ``native``, off x86-64 (the
    variables name x86 instruction sets) or on a CPU without the instruction set (ATen would
    run kernels the CPU cannot execute). ``flags``: the CPU's, read from ``cpuinfo`` when
    not given."""
    if choice not in KERNEL_ENV:
        raise ValueError(f"resources.cpu_kernels: {choice!r} is not one of {sorted(KERNEL_ENV)}")
    env = KERNEL_ENV[choice]
    if not env:
        return {}, "torch's CPU kernels: each library's own choice for this CPU (native)"
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in X86_64:
        return {}, (
            f"torch's CPU kernels: not held to {choice} on this {machine} machine (x86-64 "
            "only); CPU results may differ in the last bits from an x86-64 machine's"
        )
    if flags is None:
        flags = cpu_flags(cpuinfo)
    missing = sorted(REQUIRED_FLAGS[choice] - flags) if flags is not None else None
    if missing is None or missing:
        what = "its flags could not be read" if missing is None else f"it lacks {missing}"
        return {}, (
            f"torch's CPU kernels: not held to {choice}, {what}; CPU results may differ "
            f"in the last bits from a machine with {choice}'s"
        )
    setting = " ".join(f"{k}={v}" for k, v in env.items())
    return dict(env), f"torch's CPU kernels held to {choice} ({setting})"


def pin_cpu_kernels(
    choice: str,
    environ: MutableMapping[str, str] | None = None,
    *,
    machine: str | None = None,
    flags: frozenset[str] | None = None,
) -> tuple[dict[str, str], str]:
    """Set :func:`kernel_env`'s variables in ``environ`` (default ``os.environ``) where not
    already set; return them, and the line saying what is in effect (a user's own value
    named). Nothing returned for a choice other than ``native``: it could not be held."""
    environ = os.environ if environ is None else environ
    env, line = kernel_env(choice, machine=machine, flags=flags)
    kept = {k: environ[k] for k in env if k in environ and environ[k] != env[k]}
    for key, value in env.items():
        environ.setdefault(key, value)
    if kept:
        line += "; kept from the environment: " + " ".join(f"{k}={v}" for k, v in kept.items())
    return env, line


def in_effect(environ: Mapping[str, str] | None = None) -> str:
    """What a process that has imported torch runs: ATen's kernels and the variables above
    as set (for a job's log, next to its results)."""
    import torch

    environ = os.environ if environ is None else environ
    setting = " ".join(f"{k}={environ[k]}" for k in VARIABLES if k in environ)
    return f"torch {torch.__version__} CPU kernels: {torch.backends.cpu.get_cpu_capability()}" + (
        f" ({setting})" if setting else " (not held)"
    )
