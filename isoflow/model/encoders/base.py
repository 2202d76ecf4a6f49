"""The encoder interface, the contract every family file fills in, and the helpers families
share (DNA batches and one-hot, hparam merging).

A family (``isoflow/model/encoders/<family>.py``) is one :class:`Encoder` subclass, exported
as the module's ``FAMILY``, that declares

- ``MODALITIES``: what it can read (the registry line picks one per encoder name);
- ``TINY_HPARAMS``: sizes that run in milliseconds on a CPU (a spec's ``hparams`` override
  them key by key), ``REAL_HPARAMS``: the published sizes (random weights, for shape and
  cost checks without a download), ``DEFAULT_MAX_LEN``: its token budget, if it has one;
- ``PACKAGES``: the installed distributions whose code computes its embeddings (the
  package it wraps and what that package's forward or tokeniser runs, not torch): their
  versions are part of the embedding store's digest (``isoflow.embed.package_versions``),
  so an upgrade of one encodes that family's caches again and no other's;
- ``from_hparams(hparams, modality, spec)``: the real class with random weights;
- ``from_pretrained(path, modality, spec)``: the downloaded weights in ``path``, offline;
- optionally ``spec_from_config(spec, modality, config)``: the config's sequence limits
  that apply to it.

``isoflow.model.encoders`` (the package) builds any of them from a config spec through the
registry (:mod:`isoflow.model.registry`); docs/encoders.md walks through adding a family.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isoflow.errors import InputError


def _merge(defaults: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(defaults)
    merged.update(override or {})
    return merged


def _dna_batch(batch: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """(B, L) long tensor from a 2-D uint8 array or equal-length 1-D arrays."""
    if isinstance(batch, np.ndarray) and batch.ndim == 1:
        batch = batch[None, :]
    arrays = [np.asarray(a, dtype=np.uint8) for a in batch]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise InputError(None, None, f"DNA windows in one batch differ in length: {lengths}")
    stacked = np.stack(arrays) if arrays else np.zeros((0, 0), dtype=np.uint8)
    return torch.from_numpy(np.minimum(stacked, 4).astype(np.int64))


def one_hot_dna(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) tokens -> (B, L, 4) float one-hot; N (4) is all zeros."""
    return F.one_hot(tokens.clamp(0, 4), 5)[..., :4].float()


class Encoder(nn.Module):
    """Base class: the shared interface and freezing logic, and the family declaration."""

    modality: str = ""
    dim: int = 0

    # The family declaration (see the module docstring); each family file sets these.
    MODALITIES: ClassVar[tuple[str, ...]] = ()
    TINY_HPARAMS: ClassVar[dict[str, Any]] = {}
    REAL_HPARAMS: ClassVar[dict[str, Any]] = {}
    DEFAULT_MAX_LEN: ClassVar[int] = 0
    PACKAGES: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self._trainable = -1

    # ---- building (one family = one subclass) ---------------------------------------

    @classmethod
    def max_len_of(cls, spec: dict) -> int:
        """The spec's ``max_len``, else the family's default (0: no token budget)."""
        return int(spec.get("max_len") or cls.DEFAULT_MAX_LEN)

    @classmethod
    def raw_cut(cls, spec: dict, modality: str) -> tuple[int | None, str]:
        """What the encoder of ``spec`` (``spec_from_config``'s, limits filled) reads of a
        longer RNA / protein: ``(letters, truncate mode)``; ``(None, ...)`` when it cuts
        nothing. The loader cuts a raw sequence to this, so a run reading raw sequences
        and the embedding cache read the same letters."""
        return None, "keep_5prime"

    @classmethod
    def from_hparams(
        cls, hparams: dict[str, Any], modality: str, spec: dict
    ) -> Encoder:  # pragma: no cover - abstract
        """The real model class with random weights of size ``hparams`` (the caller seeds)."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls, path: Path, modality: str, spec: dict
    ) -> Encoder:  # pragma: no cover - abstract
        """The weights :mod:`isoflow.weights` downloaded into ``path``, without network."""
        raise NotImplementedError

    @classmethod
    def spec_from_config(cls, spec: dict, modality: str, config: dict) -> dict:
        """``spec`` with the config's sequence limits that apply to this family filled in."""
        return spec

    # ---- the interface --------------------------------------------------------------

    def tokenize(self, batch) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def blocks(self) -> list[nn.Module]:
        """Repeated blocks, first to last (what ``trainable_last`` counts)."""
        raise NotImplementedError

    def tail(self) -> list[nn.Module]:
        """Modules after the last block; trainable whenever any block is."""
        return []

    def trainable_last(self, n: int) -> Encoder:
        """Freeze all but the last ``n`` blocks (0 = all frozen, -1 = all trainable)."""
        blocks = self.blocks()
        if n < -1:
            raise ValueError(f"trainable_last: n must be >= -1, got {n}")
        self._trainable = n
        if n == -1:
            self.requires_grad_(True)
            return self
        self.requires_grad_(False)
        if n > 0:
            for block in blocks[max(len(blocks) - n, 0) :]:
                block.requires_grad_(True)
            for module in self.tail():
                module.requires_grad_(True)
        self.train(self.training)
        return self

    def checkpoint_blocks(self) -> Encoder:
        """Gradient checkpointing over :meth:`blocks`: while gradients are recorded, each
        block's activations are dropped after its forward and recomputed in the backward
        pass (``torch.utils.checkpoint``, non-reentrant, RNG state kept so dropout draws
        the same masks): the same loss and gradients for one more forward of the blocks'
        compute, and the activation memory of one block instead of all
        (``tests/unit/model/test_encoders.py``). Spec key ``gradient_checkpointing``."""
        from torch.utils.checkpoint import checkpoint

        for block in self.blocks():
            if getattr(block, "_isoflow_checkpointed", False):
                continue
            inner = block.forward

            def forward(*args, _inner=inner, **kwargs):
                if torch.is_grad_enabled():
                    return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
                return _inner(*args, **kwargs)

            block.forward = forward
            block._isoflow_checkpointed = True
        return self

    def train(self, mode: bool = True) -> Encoder:
        """A frozen encoder stays in eval mode (no dropout, fixed BatchNorm statistics) even
        while the model around it trains; with ``trainable_last(n)``, n > 0, so does every
        part outside its last n blocks and :meth:`tail`: frozen layers behave as at
        inference (their BatchNorm statistics updated, and their dropout drew, before)."""
        super().train(mode)
        if self._trainable == 0:
            for module in self.children():
                module.eval()
        elif self._trainable > 0 and mode:
            blocks = self.blocks()
            trained = blocks[max(len(blocks) - self._trainable, 0) :] + list(self.tail())
            _eval_outside(self, {id(m) for m in trained})
            for module in trained:  # a module shared with a frozen part trains (Borzoi's upsample)
                module.train(mode)
        return self


def _eval_outside(module: nn.Module, trained: set[int]) -> None:
    """Eval mode for every submodule of ``module`` that neither is one of ``trained`` (ids)
    nor holds one; those holding one are walked into."""
    for child in module.children():
        if id(child) in trained:
            continue
        if any(id(sub) in trained for sub in child.modules()):
            _eval_outside(child, trained)
        else:
            child.eval()


class DnaEncoder(Encoder):
    """A family that reads genome windows as uint8 tokens (``A=0 … N=4``)."""

    modality = "dna"
    MODALITIES = ("dna",)

    def tokenize(self, batch) -> dict[str, torch.Tensor]:
        return {"tokens": _dna_batch(batch)}
