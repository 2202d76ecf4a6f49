"""Every encoder at its published size (random weights, nothing downloaded) at the input
lengths docs/encoders.md documents: a forward pass at full length, and a forward+backward at
full width — full length where it fits a 2-core / 24 GiB CI box, shorter where it does not.

One model at a time; each test frees its model before the next starts. Costs measured on
that kind of box are in docs/encoders.md.
"""

import gc

import numpy as np
import pytest
import torch

from isoflow.model.encoders import random_encoder

pytestmark = pytest.mark.slow

ENFORMER_BP = 196_608
BORZOI_BP = 524_288
NT_TOKENS = 2_048  # CLS + 2,047 6-mers = 12,282 nt
ESM_RESIDUES = 1_022  # + BOS/EOS = 1,024 tokens


@pytest.fixture(autouse=True)
def free_memory():
    yield
    gc.collect()


def dna(length, seed=0):
    return np.random.default_rng(seed).integers(0, 4, (1, length)).astype(np.uint8)


def text(alphabet, length, seed=0):
    return "".join(np.random.default_rng(seed).choice(list(alphabet), length))


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def forward_backward(encoder, tokens):
    """Gradients through every parameter; eval mode (no dropout) as for a cost check."""
    encoder.trainable_last(-1).eval()
    emb, mask = encoder(**tokens)
    emb[mask].float().pow(2).mean().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    return emb


def test_enformer_real_size():
    encoder = random_encoder("enformer", real_size=True).eval()
    assert 2.2e8 < n_params(encoder) < 2.4e8  # trunk without track heads: ~230 M
    assert encoder.dim == 3072 and len(encoder.blocks()) == 11
    with torch.no_grad():
        emb, mask = encoder(**encoder.tokenize(dna(ENFORMER_BP)))
    assert emb.shape == (1, 896, 3072) and mask.all()
    del emb, mask
    gc.collect()
    # f+b at a quarter of the window (full length needs ~15 GiB): all 384 bins, no crop.
    encoder.model.set_target_length(-1)
    emb = forward_backward(encoder, encoder.tokenize(dna(ENFORMER_BP // 4)))
    assert emb.shape == (1, 384, 3072)
    del encoder, emb


def test_borzoi_real_size():
    encoder = random_encoder("borzoi", real_size=True).eval()
    assert encoder.dim == 1536 and len(encoder.blocks()) == 8
    with torch.no_grad():
        emb, mask = encoder(**encoder.tokenize(dna(BORZOI_BP)))
    assert emb.shape == (1, 6144, 1536) and mask.all()  # 32 bp bins, centre 6,144 kept
    del emb, mask
    gc.collect()
    # f+b at a quarter of the input in eval mode (training-mode dropout at full length
    # needs > 20 GiB); the relative-position table is sized for 524,288 bp, so this checks
    # cost and gradient flow, not outputs. 4,096 bins < 6,144: return them all.
    encoder.model.crop.target_length = -1
    emb = forward_backward(encoder, encoder.tokenize(dna(BORZOI_BP // 4)))
    assert emb.shape == (1, 4096, 1536)
    del encoder, emb


def test_nucleotide_transformer_real_size():
    encoder = random_encoder("nucleotide_transformer", real_size=True).eval()
    assert encoder.dim == 768 and len(encoder.blocks()) == 24
    rna = text("ACGT", (NT_TOKENS - 1) * 6 + 600)  # longer than the limit: truncated
    tokens = encoder.tokenize([rna])
    assert tokens["input_ids"].shape == (1, NT_TOKENS)
    with torch.no_grad():
        emb, mask = encoder(**tokens)
    assert emb.shape == (1, NT_TOKENS - 1, 768) and mask.all()
    del emb, mask
    emb = forward_backward(encoder, tokens)  # full length, dropout 0
    assert emb.shape == (1, NT_TOKENS - 1, 768)
    del encoder, emb


def test_esm2_real_size():
    encoder = random_encoder("esm2", real_size=True).eval()
    assert encoder.dim == 640 and len(encoder.blocks()) == 30
    assert 1.4e8 < n_params(encoder) < 1.6e8  # esm2_t30_150M
    tokens = encoder.tokenize([text("ACDEFGHIKLMNPQRSTVWY", ESM_RESIDUES + 50)])
    assert tokens["tokens"].shape == (1, ESM_RESIDUES + 2)
    with torch.no_grad():
        emb, mask = encoder(**tokens)
    assert emb.shape == (1, ESM_RESIDUES, 640) and mask.all()
    del emb, mask
    emb = forward_backward(encoder, tokens)  # full length
    assert emb.shape == (1, ESM_RESIDUES, 640)
    del encoder, emb
