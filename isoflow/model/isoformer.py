"""IsoFormer: one encoder per modality, an aggregator, and a per-tissue linear head.

Each modality enters either as raw sequences (the encoder tokenizes and runs; the last
``finetune_last`` blocks train, see ``Encoder.trainable_last``) or as cached frozen-encoder
embeddings ``(emb, mask)`` from :mod:`isoflow.embed`. The head mean-pools the aggregator's
real tokens and maps them to one value per tissue.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from isoflow.experiments import MODALITIES
from isoflow.model.aggregators import CrossAttentionAggregator, build_aggregator, masked_mean
from isoflow.model.encoders import Encoder


class IsoFormer(nn.Module):
    """Encoders (optional per modality) + aggregator + head.

    ``encoders`` maps modality -> Encoder for modalities read from raw sequences; ``dims``
    gives the embedding width of modalities read from the cache. Together they name the
    modalities the model uses.
    """

    def __init__(
        self,
        n_tissues: int,
        encoders: dict[str, Encoder] | None = None,
        dims: dict[str, int] | None = None,
        aggregator: str = "cross_attention",
        d_model: int = 64,
        depth: int = 1,
        heads: int = 4,
        dropout: float = 0.0,
        n_latents: int = 8,
    ):
        super().__init__()
        encoders = encoders or {}
        widths = {m: enc.dim for m, enc in encoders.items()} | dict(dims or {})
        for modality, encoder in encoders.items():
            if encoder.modality != modality:
                raise ValueError(f"encoder for {modality} reads {encoder.modality}")
        self.modalities = [m for m in MODALITIES if m in widths]
        self.encoders = nn.ModuleDict(encoders)
        self.aggregator = build_aggregator(
            aggregator,
            {m: widths[m] for m in self.modalities},
            d_model=d_model,
            depth=depth,
            heads=heads,
            dropout=dropout,
            n_latents=n_latents,
        )
        self.head = nn.Linear(d_model, n_tissues)

    def tokenize(self, raw: dict[str, Any], device: torch.device | None = None) -> dict:
        """Raw sequences -> encoder tokens (on ``device``) for the modalities with encoders;
        cached ``(emb, mask)`` pairs pass through."""
        out: dict[str, Any] = {}
        for modality in self.modalities:
            value = raw[modality]
            if modality in self.encoders and not isinstance(value, tuple):
                tokens = self.encoders[modality].tokenize(value)
                value = {k: v.to(device) if device is not None else v for k, v in tokens.items()}
            out[modality] = value
        return out

    def forward(
        self, inputs: dict[str, Any], return_attention: bool = False, counted: Tensor | None = None
    ) -> Tensor | tuple[Tensor, list[dict[str, Tensor]]]:
        """``inputs[modality]`` is a token dict (from ``tokenize``) or ``(emb, mask)``;
        ``counted`` (B,) bool: the rows whose tokens enter the standardisers' statistics in
        training mode (None: all; a DDP repeat does not, ``lightning.IsoFormerModule``).

        Returns (B, n_tissues); with ``return_attention`` (the ``cross_attention``
        aggregator only) also its attention weights: per layer, key modality -> ``(B,
        heads, L_q, L_k)`` (:meth:`CrossAttentionAggregator.forward`).
        """
        embedded: dict[str, tuple[Tensor, Tensor]] = {}
        for modality in self.modalities:
            value = inputs[modality]
            if isinstance(value, dict):
                emb, mask = self.encoders[modality](**value)
            else:
                emb, mask = value
            embedded[modality] = (emb.float(), mask.bool())
        if return_attention:
            if not isinstance(self.aggregator, CrossAttentionAggregator):
                raise ValueError(
                    "attention weights come from the cross_attention aggregator, not "
                    f"{type(self.aggregator).__name__}"
                )
            tokens, mask, attention = self.aggregator(embedded, return_attention=True)
            return self.head(masked_mean(tokens, mask)), attention
        tokens, mask = self.aggregator(embedded, counted=counted)
        return self.head(masked_mean(tokens, mask))
