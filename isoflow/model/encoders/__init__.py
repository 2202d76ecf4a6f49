"""Pretrained sequence encoders behind one interface (DESIGN.md "Model inputs"), one file per
family (``enformer``, ``borzoi``, ``nucleotide_transformer``, ``esm2``) on a common base.

Every encoder is an ``nn.Module`` with

- ``.dim``: width of the output embedding, ``.modality``: ``dna``, ``rna`` or ``protein``;
- ``.tokenize(batch) -> dict[str, Tensor]``: DNA takes uint8 token arrays (``A=0, C=1, G=2,
  T=3, N=4`` as made by :mod:`isoflow.genome`); RNA and protein take ``list[str]`` where
  ``None`` (or ``""``) means the modality is missing for that item;
- ``forward(**tokens) -> (emb (B, L, D) float, mask (B, L) bool, True = real token)``.
  A missing item is an all-False mask row and zeros: the model never runs on it;
- ``.trainable_last(n)``: freeze all but the last ``n`` blocks (0 = frozen, -1 = all).

``build_encoder(name, spec)`` builds one from a config spec::

    {source: tiny | pretrained, path: resources/models/<name>, repo: ..., revision: main,
     hparams: {...}, max_len: ..., truncate: keep_5prime | keep_3prime, finetune_last: 0}

``tiny`` builds the same classes with small random weights (seeded by ``spec["seed"]``,
default 0, so two processes build identical tiny encoders); ``pretrained`` loads the files
that :mod:`isoflow.weights` downloaded into ``path``, without network access.

The name resolves through :data:`isoflow.model.registry.ENCODERS` to ``(family, modality)``;
the family is the module ``isoflow.model.encoders.<family>``, whose ``FAMILY`` class declares
its sizes and how to build and load it (:mod:`isoflow.model.encoders.base`). Adding a family
is that one file plus its registry lines: its name in ``ENCODERS`` and its measured host
memory in ``ENCODER_HOST_MB`` (docs/encoders.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from isoflow.errors import InputError
from isoflow.model.encoders.base import DnaEncoder, Encoder, _merge, one_hot_dna
from isoflow.model.encoders.borzoi import BORZOI_INPUT_BP, BorzoiEncoder
from isoflow.model.encoders.enformer import EnformerEncoder
from isoflow.model.encoders.esm2 import Esm2Encoder, load_esm2
from isoflow.model.encoders.nucleotide_transformer import (
    NT_KMER,
    NucleotideTransformerEncoder,
    nt_vocabulary,
)
from isoflow.model.registry import encoder_kind
from isoflow.settings import encoder_spec, with_encoder_defaults
from isoflow.weights import check_source
from isoflow.workflow import weights_dir

__all__ = [
    "BORZOI_INPUT_BP",
    "NT_KMER",
    "BorzoiEncoder",
    "DnaEncoder",
    "Encoder",
    "EnformerEncoder",
    "Esm2Encoder",
    "NucleotideTransformerEncoder",
    "build_encoder",
    "family",
    "load_esm2",
    "nt_vocabulary",
    "one_hot_dna",
    "random_encoder",
    "raw_cut",
    "spec_raw_cut",
    "spec_from_config",
]


def family(kind: str) -> type[Encoder]:
    """The :class:`Encoder` class of family ``kind``: the ``FAMILY`` of the module
    ``isoflow.model.encoders.<kind>`` (imported on first use)."""
    module = importlib.import_module(f"{__name__}.{kind}")
    cls = getattr(module, "FAMILY", None)
    if not (isinstance(cls, type) and issubclass(cls, Encoder)):
        raise TypeError(f"{module.__name__}.FAMILY must be an Encoder subclass, got {cls!r}")
    return cls


def _resolve(name: str, spec: dict) -> tuple[type[Encoder], str]:
    """The family class and modality of encoder ``name``; the modality must be one the
    family reads."""
    kind, modality = encoder_kind(name, spec)
    cls = family(kind)
    if modality not in cls.MODALITIES:
        readable = " or ".join(cls.MODALITIES)
        raise InputError(None, name, f"{kind} encoders read {readable}, not {modality}")
    return cls, modality


def random_encoder(name: str, spec: dict | None = None, real_size: bool = False) -> Encoder:
    """An encoder of the real class with random weights: tiny sizes, or the published ones."""
    spec = with_encoder_defaults(spec)
    cls, modality = _resolve(name, spec)
    hparams = _merge(cls.REAL_HPARAMS if real_size else cls.TINY_HPARAMS, spec.get("hparams"))
    # A fixed seed without touching the caller's RNG: two processes build the same weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec["seed"]))
        return cls.from_hparams(hparams, modality, spec)


def build_encoder(name: str, spec: dict | None = None) -> Encoder:
    """Build encoder ``name`` (a key of ``ENCODERS``, or any name with ``spec["class"]``)."""
    spec = with_encoder_defaults(spec)
    source = spec["source"]
    cls, modality = _resolve(name, spec)
    if source == "tiny":
        encoder = random_encoder(name, spec)
    elif source == "pretrained":
        path = Path(weights_dir(name, spec))
        if not path.exists():
            raise InputError(
                path, None, "pretrained weights not found; run the download_encoders rule"
            )
        check_source(path, name, spec)
        encoder = cls.from_pretrained(path, modality, spec)
    else:
        raise InputError(None, name, f"encoder source must be tiny or pretrained, got {source!r}")
    encoder.trainable_last(int(spec["finetune_last"]))
    if spec.get("gradient_checkpointing"):  # absent = off: not in ENCODER_DEFAULTS
        encoder.checkpoint_blocks()
    if spec.get("lora"):
        from isoflow.model.lora import add_lora, lora_settings

        if int(spec["finetune_last"]) != 0:
            raise InputError(
                None,
                f"encoders.{name}",
                "lora and finetune_last both set: with LoRA only the adapters train; "
                "set finetune_last to 0",
            )
        add_lora(encoder, **lora_settings(spec["lora"]))
    return encoder


def spec_from_config(config: dict, name: str) -> dict:
    """The spec of encoder ``name`` with the config's sequence limits filled in.

    Each family says which apply (``spec_from_config`` of its class): ``rna.max_nt`` /
    ``rna.truncate`` set the NT token budget and direction, ``protein.max_aa`` the ESM-2
    residue limit, unless the spec sets them itself.
    """
    spec = encoder_spec(config, name)
    cls, modality = _resolve(name, spec)
    return cls.spec_from_config(spec, modality, config)


def raw_cut(config: dict, name: str) -> tuple[int | None, str]:
    """``(letters, truncate mode)`` encoder ``name`` reads of a longer raw RNA / protein
    under ``config`` (its family's ``raw_cut`` of :func:`spec_from_config`): the loader's
    cut, so raw runs and the embedding cache read the same sequence."""
    return spec_raw_cut(name, spec_from_config(config, name))


def spec_raw_cut(name: str, spec: dict) -> tuple[int | None, str]:
    """:func:`raw_cut` of an effective ``spec`` (``spec_from_config``'s, as a bundle's
    manifest records it), so a bundle cuts a raw sequence as its run's loader did."""
    cls, modality = _resolve(name, spec)
    return cls.raw_cut(spec, modality)
