"""Borzoi (borzoi-pytorch): embeddings before the track heads, 32 bp per bin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from isoflow.errors import InputError
from isoflow.model.encoders.base import DnaEncoder, one_hot_dna
from isoflow.model.registry import BORZOI_INPUT_BP, FAMILY_PACKAGES, TOKEN_GEOMETRY

GEOMETRY = TOKEN_GEOMETRY["borzoi"]  # 32 bp bins; bins_to_return 16 (tiny), 6,144 (published)


class BorzoiEncoder(DnaEncoder):
    """Borzoi embeddings before the output heads: (B, bins, dim), 32 bp per bin."""

    TINY_HPARAMS = dict(
        dim=64,
        depth=1,
        heads=2,
        attn_dim_key=16,
        attn_dim_value=32,
        bins_to_return=GEOMETRY.tiny,
        dropout_rate=0.0,
        attn_dropout=0.0,
        pos_dropout=0.0,
        enable_human_head=False,
        enable_mouse_head=False,
    )
    # As published (johahi/borzoi-replicate-0's config is the BorzoiConfig default).
    REAL_HPARAMS = dict(enable_human_head=False, enable_mouse_head=False)
    # whose code computes its embeddings (the store digest and the embed params hold their versions)
    PACKAGES = FAMILY_PACKAGES["borzoi"]

    def __init__(self, model: nn.Module):
        super().__init__()
        # The track heads (and the 1,920-channel conv feeding them) are not used for
        # embeddings; dropping them saves memory and leaves no parameter without a gradient.
        for head in ("human_head", "mouse_head", "final_joined_convs"):
            if hasattr(model, head):
                delattr(model, head)
        self.model = model
        self.dim = model.config.dim
        # Set for published weights: their relative-position table covers exactly this input.
        self.required_length: int | None = None

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any], modality: str, spec: dict) -> BorzoiEncoder:
        from borzoi_pytorch import Borzoi

        return cls(Borzoi.from_hparams(**hparams))

    @classmethod
    def from_pretrained(cls, path: Path, modality: str, spec: dict) -> BorzoiEncoder:
        from borzoi_pytorch import Borzoi
        from borzoi_pytorch.pytorch_borzoi_transformer import Attention, get_positional_embed

        model = Borzoi.from_pretrained(str(path), local_files_only=True)
        # transformers builds the model on the meta device; Borzoi's relative-position table
        # is a non-persistent buffer, so it is not in the checkpoint and must be rebuilt.
        for module in model.modules():
            if isinstance(module, Attention) and module.positions.is_meta:
                module.positions = get_positional_embed(
                    4096, module.num_rel_pos_features, torch.device("cpu")
                )
        encoder = cls(model)
        encoder.required_length = int(spec.get("input_length", BORZOI_INPUT_BP))
        return encoder

    def blocks(self) -> list[nn.Module]:
        return list(self.model.transformer)

    def tail(self) -> list[nn.Module]:
        m = self.model
        return [
            m.horizontal_conv0,
            m.horizontal_conv1,
            m.upsampling_unet1,
            m.separable1,
            m.upsampling_unet0,
            m.separable0,
        ]

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.required_length and tokens.shape[1] != self.required_length:
            raise InputError(
                None,
                "borzoi",
                f"pretrained Borzoi reads {self.required_length:,} bp windows, got "
                f"{tokens.shape[1]:,} (set dna.window: {self.required_length})",
            )
        x = one_hot_dna(tokens).to(next(self.model.parameters()).dtype).transpose(1, 2)
        emb = self.model.get_embs_after_crop(x).transpose(1, 2)
        mask = torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device)
        return emb, mask


FAMILY = BorzoiEncoder
