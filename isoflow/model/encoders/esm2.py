"""ESM-2 (fair-esm): per-residue representations of a protein."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
from esm.multihead_attention import MultiheadAttention
from torch import nn

from isoflow.alphabet import is_missing
from isoflow.errors import InputError
from isoflow.model.encoders.base import Encoder
from isoflow.model.registry import FAMILY_PACKAGES
from isoflow.settings import protein_config


def _esm_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    candidates = sorted(
        p for p in path.glob("esm*.pt") if not p.name.endswith("-contact-regression.pt")
    )
    if len(candidates) != 1:
        raise InputError(path, None, f"expected one esm*.pt checkpoint, found {len(candidates)}")
    return candidates[0]


def load_esm2(path: str | os.PathLike) -> tuple[nn.Module, Any]:
    """fair-esm's local loader; the checkpoint's config is an argparse.Namespace, which
    torch's weights-only unpickler accepts once allow-listed."""
    import esm

    checkpoint = _esm_checkpoint(Path(path))
    with torch.serialization.safe_globals([argparse.Namespace]):
        model, alphabet = esm.pretrained.load_model_and_alphabet_local(str(checkpoint))
    return model, alphabet


ATTENTIONS = ("eager", "sdpa")  # an ESM-2 spec's ``attention``; absent = eager


class SdpaMultiheadAttention(MultiheadAttention):
    """fair-esm's ``MultiheadAttention`` with its self-attention product through
    ``torch.nn.functional.scaled_dot_product_attention`` (``attention: sdpa``).

    The same projections, scaling and rotary embedding, so the same parameters and state
    dict; only ``softmax(q k^T) v`` runs in one fused kernel where fair-esm runs two
    ``bmm`` and a float32 softmax (under bf16 autocast on a GPU that was 31 % cast kernels and
    14 % softmax of ESM-2's forward: docs/benchmarks.md, "GPU figures at real size"). Calls
    that need what SDPA does not give (attention weights per head, an attention mask,
    incremental state) run fair-esm's own forward."""

    def forward(self, query, key, value, key_padding_mask=None, **options):
        fallback = (
            options.get("need_head_weights")
            or options.get("incremental_state") is not None
            or options.get("static_kv")
            or options.get("attn_mask") is not None
            or options.get("before_softmax")
            or not self.self_attention
            or self.bias_k is not None
            or self.add_zero_attn
        )
        if fallback:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, **options)
        length, batch, dim = query.shape
        heads, head_dim = self.num_heads, self.head_dim

        def split(x):  # (L, B, dim) -> (B * heads, L, head_dim), fair-esm's layout
            return x.contiguous().view(length, batch * heads, head_dim).transpose(0, 1)

        q = split(self.q_proj(query) * self.scaling)
        k = split(self.k_proj(query))
        v = split(self.v_proj(query))
        if self.rot_emb:
            q, k = self.rot_emb(q, k)
        q, k, v = (x.view(batch, heads, length, head_dim) for x in (q, k, v))
        mask = None
        if key_padding_mask is not None and key_padding_mask.dim() > 0:
            mask = ~key_padding_mask.to(torch.bool).view(batch, 1, 1, length)
        out = torch.nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=1.0,  # q is scaled above, as fair-esm scales it
        )
        out = out.permute(2, 0, 1, 3).reshape(length, batch, dim)
        return self.out_proj(out), None


def use_sdpa(model: nn.Module) -> None:
    """Every self-attention of an ESM-2 ``model`` through SDPA, in place (the class of each
    fair-esm ``MultiheadAttention`` swapped; parameters untouched)."""
    for module in model.modules():
        if type(module) is MultiheadAttention:
            module.__class__ = SdpaMultiheadAttention


class _NoLogits(nn.Module):
    """Stands in for ESM-2's LM head: forward returns nothing worth computing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :0]


class Esm2Encoder(Encoder):
    """ESM-2 per-residue representations of the last layer, BOS/EOS dropped: (B, L, dim)."""

    modality = "protein"
    MODALITIES = ("protein",)
    TINY_HPARAMS = dict(num_layers=2, embed_dim=64, attention_heads=4)
    REAL_HPARAMS = dict(num_layers=30, embed_dim=640, attention_heads=20)  # esm2_t30_150M_UR50D
    DEFAULT_MAX_LEN = 1022  # residues, BOS/EOS added on top
    # whose code computes its embeddings (the store digest and the embed params hold their versions)
    PACKAGES = FAMILY_PACKAGES["esm2"]

    def __init__(self, model: nn.Module, alphabet, max_len: int = 1022, attention: str = "eager"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise InputError(
                "config", "attention", f"ESM-2 attention is one of {ATTENTIONS}, got {attention!r}"
            )
        if attention == "sdpa":
            use_sdpa(model)
        self.attention = attention
        # Embeddings only: the contact head is never called and the LM head's logits (tied
        # to the token embedding, plus its own dense layer) are discarded.
        model.contact_head = nn.Identity()
        model.lm_head = _NoLogits()
        self.model = model
        self.alphabet = alphabet
        self.max_len = max_len
        self.dim = model.embed_dim
        self.num_layers = model.num_layers

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any], modality: str, spec: dict) -> Esm2Encoder:
        import esm

        alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
        model = esm.model.esm2.ESM2(alphabet=alphabet, **hparams)
        return cls(model, alphabet, cls.max_len_of(spec), spec.get("attention", "eager"))

    @classmethod
    def from_pretrained(cls, path: Path, modality: str, spec: dict) -> Esm2Encoder:
        model, alphabet = load_esm2(path)
        return cls(model, alphabet, cls.max_len_of(spec), spec.get("attention", "eager"))

    @classmethod
    def spec_from_config(cls, spec: dict, modality: str, config: dict) -> dict:
        """``protein.max_aa`` sets the residue limit unless the spec sets ``max_len``."""
        if "max_len" not in spec:
            max_aa = protein_config(config)["max_aa"]
            if max_aa:
                spec["max_len"] = int(max_aa)
        return spec

    @classmethod
    def raw_cut(cls, spec: dict, modality: str) -> tuple[int | None, str]:
        """The N-terminal ``max_len`` residues."""
        return cls.max_len_of(spec) or None, "keep_5prime"

    def blocks(self) -> list[nn.Module]:
        return list(self.model.layers)

    def tail(self) -> list[nn.Module]:
        return [self.model.emb_layer_norm_after]

    def tokenize(self, batch) -> dict[str, torch.Tensor]:
        """``tokens`` (B, 2 + longest) with BOS/EOS/padding; ``lengths`` 0 = missing.

        A protein longer than ``max_len`` residues keeps its N-terminal ``max_len``.
        """
        a = self.alphabet
        seqs = [None if is_missing(s) else str(s)[: self.max_len] for s in batch]
        width = max([len(s) for s in seqs if s is not None], default=0) + 2
        tokens = torch.full((len(seqs), width), a.padding_idx, dtype=torch.long)
        lengths = torch.zeros(len(seqs), dtype=torch.long)
        for i, seq in enumerate(seqs):
            if seq is None:
                continue
            ids = [a.cls_idx] + [a.get_idx(c) for c in seq] + [a.eos_idx]
            tokens[i, : len(ids)] = torch.tensor(ids)
            lengths[i] = len(seq)
        return {"tokens": tokens, "lengths": lengths}

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = tokens.shape[0]
        width = max(tokens.shape[1] - 2, 1)
        positions = torch.arange(width, device=tokens.device)
        mask = positions.unsqueeze(0) < lengths.to(tokens.device).unsqueeze(1)
        present = lengths > 0
        if batch and present.all():
            # every sequence present: no indexing, and no zeros to fill
            out = self.model(tokens, repr_layers=[self.num_layers])
            emb = out["representations"][self.num_layers][:, 1 : width + 1]
            return emb * mask.unsqueeze(-1), mask
        emb = torch.zeros(batch, width, self.dim, device=tokens.device)
        if present.any():
            # row numbers, not the boolean mask: the backward of indexing by a mask needs a
            # nonzero again, inside the compiled graph
            rows = present.nonzero().squeeze(1)
            out = self.model(tokens[rows], repr_layers=[self.num_layers])
            reps = out["representations"][self.num_layers][:, 1 : width + 1]
            emb = emb.to(reps.dtype)
            emb[rows] = reps
            emb = emb * mask.unsqueeze(-1)
        return emb, mask


FAMILY = Esm2Encoder
