"""Encoder names -> (family, modality): what a configured encoder is, without building it.

Light on purpose: the workflow reads it at parse time (``isoflow.workflow.embed_inputs``) and
the config check (``isoflow.config``) takes its keys as the encoder classes a spec may name.
``isoflow.model.encoders``, which imports torch, builds the encoders from it: the family is
the module ``isoflow/model/encoders/<family>.py``. A new family is that file plus its line
in ``ENCODERS`` and its measured ``ENCODER_HOST_MB`` line here, and a DNA family its
``TOKEN_GEOMETRY`` line (docs/encoders.md, "Adding an encoder family").
"""

from __future__ import annotations

from importlib import metadata
from typing import NamedTuple

from isoflow.errors import InputError

# Encoder name (or a spec's ``class``) -> (family, modality it reads by default).
ENCODERS: dict[str, tuple[str, str]] = {
    "enformer": ("enformer", "dna"),
    "borzoi": ("borzoi", "dna"),
    "nucleotide_transformer": ("nucleotide_transformer", "rna"),
    "nt_dna": ("nucleotide_transformer", "dna"),
    "esm2": ("esm2", "protein"),
}


# Family -> the installed distributions whose code computes its embeddings (the package it
# wraps and what that package's forward or tokeniser runs; torch is counted on its own): each
# family class's ``PACKAGES``. Their versions, with torch's, are in the embedding store's
# digest (``isoflow.embed.package_versions``) and in the embed rules' params
# (``isoflow.workflow.embed_packages``), so an upgrade reruns that family's embed jobs only.
FAMILY_PACKAGES: dict[str, tuple[str, ...]] = {
    "enformer": ("enformer-pytorch", "einops"),
    "borzoi": ("borzoi-pytorch", "einops"),
    "nucleotide_transformer": ("transformers", "tokenizers"),
    "esm2": ("fair-esm",),
}


def family_packages(family: str) -> tuple[str, ...]:
    """``FAMILY_PACKAGES[family]``. A family without its line stops with one line naming the
    table: the embed rules' params would hold no version of what computes its caches."""
    if family not in FAMILY_PACKAGES:
        raise InputError(
            "isoflow/model/registry.py",
            "FAMILY_PACKAGES",
            f"no entry for encoder family {family!r}: add the distributions whose code computes "
            'its embeddings, e.g. ("borzoi-pytorch", "einops") (docs/encoders.md, "Adding an '
            'encoder family")',
        )
    return FAMILY_PACKAGES[family]


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (read from its metadata, nothing imported),
    None where it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class TokenGeometry(NamedTuple):
    """How a family's output tokens map onto its input: ``letters`` bp (or nt) per token, and
    the setting that caps the tokens it returns (``cap``: an hparam, for published weights
    also a spec key) with its default for tiny and for published weights."""

    letters: int
    cap: str
    tiny: int
    pretrained: int


# Family -> token geometry, the one home of these numbers (the encoder classes read them;
# ``isoflow.workflow.dna_span`` states from them what DNA a run reads). Enformer: 128 bp bins,
# the centre ``target_length`` kept (enformer-pytorch's crop; -1 keeps all); Borzoi: 32 bp
# bins, the centre ``bins_to_return`` kept (BorzoiConfig's default for published weights);
# Nucleotide Transformer: 6-mers, ``max_len`` tokens with CLS, so (max_len - 1) * 6 letters
# (a DNA window cropped to them around its centre).
TOKEN_GEOMETRY: dict[str, TokenGeometry] = {
    "enformer": TokenGeometry(128, "target_length", 8, 896),
    "borzoi": TokenGeometry(32, "bins_to_return", 16, 6144),
    "nucleotide_transformer": TokenGeometry(6, "max_len", 2048, 2048),
}


def nt_dna_crop(window_bp: int, budget: int) -> tuple[int, int]:
    """Where the Nucleotide Transformer reads a DNA window of ``window_bp`` bp whose centre
    base (``window_bp // 2``) is the TSS: ``(start, kmers)``, the crop ``[TSS - 3 * kmers,
    TSS + 3 * kmers)`` of ``kmers`` whole 6-mers, as many as fit, at most ``budget``. Its
    own centre base (``3 * kmers``, the window's ``len // 2`` convention) is the TSS, so
    without an N the TSS lies in 6-mer ``kmers // 2``, the token positional pooling reads as
    the centre (``isoflow.embed.pool_positional``): its 4th letter for an odd count, its
    first for an even one, as the TSS is the first base of Enformer's bin 448 of 896. A
    window shorter than ``6 * budget`` loses its last ``window_bp % 6`` letters, split
    between its ends (they were read as single-letter tokens after the last 6-mer, which put
    the TSS token one left of the middle); a longer one is cut as before. A window under
    6 bp: ``(0, 0)``, no 6-mer (read letter by letter)."""
    half = TOKEN_GEOMETRY["nucleotide_transformer"].letters // 2
    centre = window_bp // 2  # window_bp - centre >= centre: the left side bounds the crop
    kmers = max(min(int(budget), centre // half), 0)
    return (centre - half * kmers, kmers) if kmers else (0, 0)


# The input the published Borzoi weights' relative-position table covers (4,096 positions):
# the only ``dna.window`` they read (``isoflow.config.check_dna_encoder``).
BORZOI_INPUT_BP = 524_288

# Host memory of one embedding forward on CPU, per family, in MiB (peak RSS of the process,
# interpreter and imports included: ~252 MiB of it), for isoflow.workflow.embed_mem_mb:
# "tiny" = the tiny size at the demo's lengths, batch 8 (measured 2026-11-26: Enformer 2,048
# bp 461, NT 3,000 nt 419, ESM-2 1,000 aa 573; tiny Borzoi keeps the real conv tower and is
# counted at its real size); "real" = the published size at its full input, batch 1
# (docs/encoders.md "Real-size checks"; NT: the 173 M stock-layer model measured, plus the
# 77 M parameters of the 250 M checkpoint's gated FFNs at 4 B); "weights" = the published
# size's float32 parameters (230 M, 186 M, 250 M, 148 M).
ENCODER_HOST_MB: dict[str, dict[str, int]] = {
    "enformer": {"tiny": 461, "real": 3891, "weights": 877},
    "borzoi": {"tiny": 4198, "real": 4198, "weights": 710},
    "nucleotide_transformer": {"tiny": 419, "real": 1830, "weights": 954},
    "esm2": {"tiny": 573, "real": 1229, "weights": 565},
}
IMPORT_MB = 252  # the interpreter with torch and the encoder packages imported (measured)


def encoder_host_mb(family: str) -> dict[str, int]:
    """``ENCODER_HOST_MB[family]``. A family without its line stops with one line naming the
    table: its figures become SLURM ``mem_mb`` requests (``isoflow.workflow.embed_mem_mb``,
    ``bundle_mem_mb``), so they are measured, never a default guessed for an unknown model."""
    if family not in ENCODER_HOST_MB:
        raise InputError(
            "isoflow/model/registry.py",
            "ENCODER_HOST_MB",
            f"no entry for encoder family {family!r}: add its measured peak RSS in MiB, "
            f'{{"tiny": ..., "real": ..., "weights": ...}} (docs/encoders.md, "Adding an '
            'encoder family")',
        )
    return ENCODER_HOST_MB[family]


def encoder_kind(name: str, spec: dict) -> tuple[str, str]:
    """``(family, modality)`` of encoder ``name``: its ``class`` (default: the name) looked up
    in ``ENCODERS``, the modality overridden by ``spec["modality"]``."""
    key = spec.get("class", name)
    if key not in ENCODERS:
        raise InputError(
            None, name, f"unknown encoder {key!r}; known: {', '.join(sorted(ENCODERS))}"
        )
    kind, modality = ENCODERS[key]
    return kind, spec.get("modality", modality)


def encoder_modality(name: str, spec: dict | None = None) -> str:
    """``dna``, ``rna`` or ``protein``: what encoder ``name`` reads."""
    return encoder_kind(name, dict(spec or {}))[1]


def rna_kmer_error(max_nt: int, source: str = "config", encoder: str | None = None) -> InputError:
    """The error for an ``rna.max_nt`` off the Nucleotide Transformer's k-mer frame (the
    cache would read ``ceil(max_nt / k)`` k-mers of the whole RNA, a run reading raw RNA the
    tokens of its ``max_nt`` letters: other k-mers), naming the nearest valid values; one
    text for the parse-time check (``isoflow.config``) and the encoder's own."""
    kmer = TOKEN_GEOMETRY["nucleotide_transformer"].letters
    low = max_nt - max_nt % kmer
    which = f" ({encoder})" if encoder else ""
    return InputError(
        source,
        "rna.max_nt",
        f"{max_nt} is not a multiple of {kmer}: the Nucleotide Transformer{which} reads whole "
        f"{kmer}-mers; set {low or kmer} or {low + kmer}",
    )
