"""torch's CPU kernels held to one instruction set, so that a CPU run does not depend on
whether the x86-64 CPU has AVX-512 (config key ``resources.cpu_kernels``).

torch picks its vectorised kernels when a process starts, by what the CPU offers: ATen's own
element-wise and reduction kernels (``ATEN_CPU_CAPABILITY``), oneDNN's convolutions
(``ONEDNN_MAX_CPU_ISA``, a ceiling on what it detects) and MKL's BLAS behind ``Linear`` and
``matmul`` (``MKL_CBWR``, MKL's conditional numerical reproducibility; its ISA branches are
taken on Intel CPUs only, others keep MKL's own choice). A float sum taken 16 lanes at a time
(AVX-512) adds in another order than one taken 8 at a time (AVX2), so the same demo gave
other embedding caches on an AVX-512 machine than on an AVX2 one, and every run trained on
them other metrics in the third decimal (docs/benchmarks.md, "The same bytes on another
CPU"). Held to AVX2, the two machines (AMD EPYC both, the same thread counts) wrote the same
bytes. Not measured: Intel against AMD; and thread counts change bytes of their own
(``resources.embed_threads``).

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
VARIABLES = tuple(KERNEL_ENV["avx2"])  # every variable any choice sets
# the variables an isoflow process set (comma-separated), so that a process on another
# machine that inherits them can take them back (pin_cpu_kernels)
MARKER = "ISOFLOW_CPU_KERNELS_SET"
# a process started by hand: avx2 (default) or native (pin_for_command)
CHOICE_VARIABLE = "ISOFLOW_CPU_KERNELS"


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
    """Hold torch's CPU kernels to ``choice`` in ``environ`` (default ``os.environ``): return
    :func:`kernel_env`'s variables, and the line saying what is in effect. Nothing returned
    for a choice other than ``native``: it could not be held on this machine.

    Variables an isoflow process set upstream (named in ``MARKER``: the Snakemake process of
    a login node, whose environment a SLURM job inherits) describe that machine, not this
    one: they are taken back first, so a node without AVX2 or an Arm node runs its own
    kernels rather than the login node's. A value the user set wins, and the line names it."""
    environ = os.environ if environ is None else environ
    for key in environ.pop(MARKER, "").split(","):
        if key in VARIABLES:  # only ever one of ours, whatever else the marker names
            environ.pop(key, None)
    env, line = kernel_env(choice, machine=machine, flags=flags)
    kept = {k: environ[k] for k in VARIABLES if k in environ and environ[k] != env.get(k)}
    set_here = [k for k in env if k not in environ]
    for key in set_here:
        environ[key] = env[key]
    if set_here:
        environ[MARKER] = ",".join(set_here)
    if kept:
        line += "; kept from the environment: " + " ".join(f"{k}={v}" for k, v in kept.items())
    return env, line


def pin_for_command(environ: MutableMapping[str, str] | None = None) -> str:
    """:func:`pin_cpu_kernels` for a process started by hand (the ``isoflow`` console script,
    ``python -m isoflow.train``), before it imports torch: held as a workflow run's
    (``avx2``), or as ``ISOFLOW_CPU_KERNELS`` says (``avx2`` or ``native``). Returns the line;
    an unknown value is an InputError naming the variable."""
    environ = os.environ if environ is None else environ
    choice = environ.get(CHOICE_VARIABLE, "avx2")
    if choice not in KERNEL_ENV:
        from isoflow.errors import InputError

        raise InputError(
            CHOICE_VARIABLE, None, f"{choice!r} is not one of {', '.join(sorted(KERNEL_ENV))}"
        )
    return pin_cpu_kernels(choice, environ)[1]


def kernels_in_effect(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a process that has imported torch runs, as data (the embedding store's digest,
    isoflow.embed.build_caches): ATen's kernels as torch reports them (``cpu_capability``)
    and each of ``VARIABLES`` as set in ``environ`` (default ``os.environ``), so that a cache
    built under another ``resources.cpu_kernels`` (or on a CPU of other kernels) is another
    cache."""
    import torch

    environ = os.environ if environ is None else environ
    return {
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        **{key: environ[key] for key in VARIABLES if key in environ},
    }


def held_choice(environ: Mapping[str, str] | None = None) -> str | None:
    """The ``resources.cpu_kernels`` choice the variables in ``environ`` (default
    ``os.environ``) hold: the ``KERNEL_ENV`` entry they equal, ``native`` when none is set
    (chosen so, or not holdable on that machine: ``kernels_in_effect``'s capability says
    which kernels ran); None for another mix (set by hand). A model bundle records it with
    :func:`kernels_in_effect` (manifest ``cpu_kernels``, isoflow.bundle)."""
    environ = os.environ if environ is None else environ
    held = {key: environ[key] for key in VARIABLES if key in environ}
    return next((choice for choice, env in KERNEL_ENV.items() if env == held), None)


def in_effect(environ: Mapping[str, str] | None = None) -> str:
    """What a process that has imported torch runs, for a job's log next to its results:
    ATen's kernels as torch reports them, and what was asked of the libraries (MKL takes its
    branch on Intel CPUs only; on others it keeps its own choice)."""
    import torch

    environ = os.environ if environ is None else environ
    asked = " ".join(f"{k}={environ[k]}" for k in VARIABLES if k in environ)
    return (
        f"torch {torch.__version__}: ATen's CPU kernels "
        f"{torch.backends.cpu.get_cpu_capability()}; "
        + (f"asked of the libraries: {asked}" if asked else "none asked (not held)")
    )
