"""Every aggregator over every modality subset, with a sample that has no protein."""

from itertools import combinations

import pytest
import torch

from isoflow.model.aggregators import AGGREGATORS, MODALITIES, build_aggregator, masked_mean

DIMS = {"dna": 12, "rna": 10, "protein": 8}
LENGTHS = {"dna": 5, "rna": 7, "protein": 4}
SUBSETS = [list(c) for n in (1, 2, 3) for c in combinations(MODALITIES, n)]


def make_inputs(modalities, batch=3, no_protein=(1,)):
    torch.manual_seed(0)
    inputs = {}
    for m in modalities:
        emb = torch.randn(batch, LENGTHS[m], DIMS[m], requires_grad=True)
        mask = torch.ones(batch, LENGTHS[m], dtype=torch.bool)
        mask[0, -2:] = False  # padding
        if m == "protein":
            mask[list(no_protein)] = False  # non-coding transcript: whole modality masked
        inputs[m] = (emb, mask)
    return inputs


@pytest.mark.parametrize("name", AGGREGATORS)
@pytest.mark.parametrize("modalities", SUBSETS, ids="+".join)
def test_shapes_finite_and_gradients(name, modalities):
    agg = build_aggregator(name, {m: DIMS[m] for m in modalities}, d_model=16, depth=2, heads=4)
    inputs = make_inputs(modalities)
    tokens, mask = agg(inputs)
    assert tokens.shape[0] == 3 and tokens.shape[-1] == 16
    assert mask.shape == tokens.shape[:2] and mask.dtype == torch.bool
    pooled = masked_mean(tokens, mask)
    assert torch.isfinite(pooled).all()
    # a random readout: a plain sum of LayerNorm outputs is identically zero
    (pooled * torch.randn(16)).sum().backward()
    for m in modalities:
        grad = inputs[m][0].grad
        assert grad is not None and torch.isfinite(grad).all()
        # a present modality influences the output of a sample where it is real
        assert grad[2].abs().sum() > 0, m
    for param_name, param in agg.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name", ["cross_attention", "perceiver"])
def test_masked_protein_contributes_nothing(name):
    modalities = ["dna", "rna", "protein"]
    agg = build_aggregator(name, DIMS, d_model=16, depth=2, heads=2).eval()
    inputs = make_inputs(modalities)
    out_a = masked_mean(*agg(inputs))
    # change the masked-out protein embeddings of sample 1: its output must not move
    emb, mask = inputs["protein"]
    changed = emb.detach().clone()
    changed[1] = 100.0
    inputs["protein"] = (changed, mask)
    out_b = masked_mean(*agg(inputs))
    assert torch.allclose(out_a[1], out_b[1])
    assert torch.allclose(out_a[0], out_b[0])


def test_concat_uses_missing_embedding_for_absent_protein():
    agg = build_aggregator("concat", DIMS, d_model=16).eval()
    inputs = make_inputs(["dna", "rna", "protein"])
    out_a = agg(inputs)[0]
    emb, mask = inputs["protein"]
    inputs["protein"] = (emb.detach() + 100.0, mask)
    out_b = agg(inputs)[0]
    assert torch.allclose(out_a[1], out_b[1])
    assert not torch.allclose(out_a[2], out_b[2])


def test_padding_is_ignored():
    agg = build_aggregator("cross_attention", DIMS, d_model=16, heads=2).eval()
    inputs = make_inputs(["dna", "rna", "protein"])
    out_a = masked_mean(*agg(inputs))
    emb, mask = inputs["rna"]
    changed = emb.detach().clone()
    changed[0, -2:] = -50.0  # padded RNA positions of sample 0
    inputs["rna"] = (changed, mask)
    assert torch.allclose(out_a, masked_mean(*agg(inputs)), atol=1e-6)


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown aggregator"):
        build_aggregator("sum", DIMS)
    with pytest.raises(ValueError, match="subset"):
        build_aggregator("concat", {"atac": 4})
    with pytest.raises(ValueError, match="subset"):
        build_aggregator("concat", {})


@pytest.mark.parametrize("modalities", [["protein"], ["dna", "rna", "protein"]], ids="+".join)
def test_cross_attention_keeps_the_scale_of_its_inputs(modalities):
    # Frozen encoders put much of their signal in per-token magnitude. A post-norm block or a
    # LayerNorm on the projected tokens returns unit-scale tokens whatever the input scale
    # (the cause of cross-attention learning far less than concat on the demo cache); the
    # pre-norm residual stream carries the scale through to the pooled output.
    torch.manual_seed(0)
    agg = build_aggregator(
        "cross_attention", {m: DIMS[m] for m in modalities}, d_model=16, depth=2, heads=4
    ).eval()
    inputs = make_inputs(modalities, no_protein=())
    scaled = {m: (emb.detach() * 8.0, mask) for m, (emb, mask) in inputs.items()}
    with torch.no_grad():
        norm = masked_mean(*agg(inputs)).norm(dim=-1)
        norm_scaled = masked_mean(*agg(scaled)).norm(dim=-1)
    assert (norm_scaled > 2.0 * norm).all(), (norm, norm_scaled)
