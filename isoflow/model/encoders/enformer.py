"""Enformer (enformer-pytorch): trunk embeddings of a DNA window, 128 bp per bin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from isoflow.model.encoders.base import DnaEncoder, one_hot_dna
from isoflow.model.registry import FAMILY_PACKAGES, TOKEN_GEOMETRY

GEOMETRY = TOKEN_GEOMETRY["enformer"]  # 128 bp bins; target_length 8 (tiny), 896 (published)


class EnformerEncoder(DnaEncoder):
    """Enformer trunk embeddings: (B, target_length, 2 * dim), 128 bp per bin."""

    # Tiny: Enformer's dim/heads must be a multiple of 6, and dim_divisible_by=16 (the default
    # 128 breaks small dims).
    TINY_HPARAMS = dict(
        dim=96,
        depth=2,
        heads=2,
        output_heads=dict(human=30),
        target_length=GEOMETRY.tiny,
        dim_divisible_by=16,
        attn_dim_key=16,
        dropout_rate=0.0,
        attn_dropout=0.0,
        pos_dropout=0.0,
    )
    # As published (EleutherAI/enformer-official-rough config).
    REAL_HPARAMS = dict(
        dim=1536,
        depth=11,
        heads=8,
        output_heads=dict(human=5313, mouse=1643),
        target_length=GEOMETRY.pretrained,
    )
    # whose code computes its embeddings (the store digest and the embed params hold their versions)
    PACKAGES = FAMILY_PACKAGES["enformer"]

    def __init__(self, model: nn.Module):
        super().__init__()
        # The track heads are not used for embeddings: parameters that never get a gradient
        # would only cost memory and trip DDP's unused-parameter check.
        model.add_heads()
        self.model = model
        self.dim = 2 * model.dim

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any], modality: str, spec: dict) -> EnformerEncoder:
        from enformer_pytorch import Enformer

        return cls(Enformer.from_hparams(**hparams))

    @classmethod
    def from_pretrained(cls, path: Path, modality: str, spec: dict) -> EnformerEncoder:
        from enformer_pytorch import Enformer
        from enformer_pytorch.modeling_enformer import Attention

        model = Enformer.from_pretrained(str(path), local_files_only=True)
        # The official weights were trained with TensorFlow's gamma positional features,
        # which enformer-pytorch has only for the full 196,608 bp input.
        use_tf_gamma = bool(spec.get("use_tf_gamma", False))
        for module in model.modules():
            if isinstance(module, Attention):
                module.use_tf_gamma = use_tf_gamma
        if spec.get("target_length"):
            model.set_target_length(int(spec["target_length"]))
        return cls(model)

    def blocks(self) -> list[nn.Module]:
        return list(self.model.transformer)

    def tail(self) -> list[nn.Module]:
        return [self.model.final_pointwise]

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = one_hot_dna(tokens).to(next(self.model.parameters()).dtype)
        emb = self.model(x, return_only_embeddings=True)
        mask = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)
        return emb, mask


FAMILY = EnformerEncoder
