"""Encoder names -> (family, modality): what a configured encoder is, without building it.

Light on purpose: the workflow reads it at parse time (``isoflow.workflow.embed_inputs``) and
the config check (``isoflow.config``) takes its keys as the encoder classes a spec may name.
``isoflow.model.encoders``, which imports torch, builds the encoders from it: the family is
the module ``isoflow/model/encoders/<family>.py``. A new family is that file plus one line
here (docs/encoders.md, "Adding an encoder family").
"""

from __future__ import annotations

from isoflow.errors import InputError

# Encoder name (or a spec's ``class``) -> (family, modality it reads by default).
ENCODERS: dict[str, tuple[str, str]] = {
    "enformer": ("enformer", "dna"),
    "borzoi": ("borzoi", "dna"),
    "nucleotide_transformer": ("nucleotide_transformer", "rna"),
    "nt_dna": ("nucleotide_transformer", "dna"),
    "esm2": ("esm2", "protein"),
}


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
