"""Encoder checkpoints in the layouts the downloads hold, built small and offline."""

from __future__ import annotations

import argparse

import torch

from isoflow.model.encoders import Esm2Encoder


def save_tiny_esm2(folder, name="esm2_t2_tiny"):
    """A fair-esm v2 checkpoint + contact-regression file, as the download holds them
    (every head included); returns the encoder wrapping the same weights."""
    import esm

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(num_layers=2, embed_dim=64, attention_heads=4, alphabet=alphabet)
    state = model.state_dict()
    regression = {k: v for k, v in state.items() if k.startswith("contact_head.regression")}
    body = {f"encoder.sentence_encoder.{k}": v for k, v in state.items() if k not in regression}
    cfg = argparse.Namespace(
        encoder_layers=model.num_layers,
        encoder_embed_dim=model.embed_dim,
        encoder_attention_heads=model.attention_heads,
        token_dropout=model.token_dropout,
    )
    torch.save({"model": body, "cfg": {"model": cfg}}, folder / f"{name}.pt")
    torch.save({"model": regression}, folder / f"{name}-contact-regression.pt")
    return Esm2Encoder(model, alphabet)
