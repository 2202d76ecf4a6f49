"""Encoder names -> (class kind, modality): what a configured encoder is, without building it.

Light on purpose: the workflow reads it at parse time (``isoflow.workflow.embed_inputs``) and
``isoflow.model.encoders``, which imports torch, builds the encoders from it.
"""

from __future__ import annotations

from isoflow.errors import InputError

# Encoder name -> (kind, modality). ``kind`` picks the class in isoflow.model.encoders.
ENCODERS: dict[str, tuple[str, str]] = {
    "enformer": ("enformer", "dna"),
    "borzoi": ("borzoi", "dna"),
    "nucleotide_transformer": ("nt", "rna"),
    "nt_dna": ("nt", "dna"),
    "esm2": ("esm2", "protein"),
}


def encoder_kind(name: str, spec: dict) -> tuple[str, str]:
    """``(kind, modality)`` of encoder ``name``: its ``class`` (default: the name) looked up in
    ``ENCODERS``, the modality overridden by ``spec["modality"]``."""
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
