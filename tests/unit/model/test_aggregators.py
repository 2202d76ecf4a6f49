"""Every aggregator over every modality subset, with a sample that has no protein."""

from itertools import combinations

import pytest
import torch

from isoflow.experiments import MODALITIES
from isoflow.model.aggregators import (
    AGGREGATORS,
    TokenStandardizer,
    build_aggregator,
    masked_mean,
)

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


def _offset_signal_inputs(n=256, length=4, dim=12, seed=0):
    """Tokens whose whole between-sample signal is a 1e-5 variation around a 0.04 offset
    (the demo's cached tiny-Enformer embeddings, docs/model.md); target = that signal."""
    gen = torch.Generator().manual_seed(seed)
    signal = torch.randn(n, generator=gen)
    direction = torch.randn(dim, generator=gen)
    noise = torch.randn(n, length, dim, generator=gen)
    emb = 0.04 + 1e-5 * (signal[:, None, None] * direction + 0.3 * noise)
    mask = torch.ones(n, length, dtype=torch.bool)
    return emb, mask, signal


@pytest.mark.slow
@pytest.mark.parametrize("name", AGGREGATORS)
def test_single_modality_learns_a_tiny_signal_on_a_large_offset(name):
    # Before per-feature standardisation every aggregator passed the 1e-5 / 0.04 ratio to the
    # head, which then predicted a constant (the demo's DNA-only run: spread ~1e-5).
    torch.manual_seed(0)
    emb, mask, signal = _offset_signal_inputs()
    agg = build_aggregator(name, {"dna": emb.shape[-1]}, d_model=16, heads=4)
    head = torch.nn.Linear(16, 1)
    params = [*agg.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    for step in range(60):
        batch = torch.arange(32) + 32 * (step % 6)
        predicted = head(masked_mean(*agg({"dna": (emb[batch], mask[batch])}))).squeeze(-1)
        loss = torch.nn.functional.mse_loss(predicted, signal[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    agg.eval()
    held_out = torch.arange(192, 256)
    with torch.no_grad():
        predicted = head(masked_mean(*agg({"dna": (emb[held_out], mask[held_out])}))).squeeze(-1)
    assert predicted.std() > 0.3, predicted.std()
    assert torch.corrcoef(torch.stack([predicted, signal[held_out]]))[0, 1] > 0.9


def test_standardizer_uses_real_training_tokens_only():
    emb, mask, _ = _offset_signal_inputs(n=64)
    mask[:8, 2:] = False  # padding
    padded = emb.clone()
    padded[:8, 2:] = 0.0
    mask[8] = False  # a sample without this modality
    padded[8] = 0.0
    standardizer = TokenStandardizer(emb.shape[-1])
    standardizer.eval()
    assert torch.equal(standardizer(padded, mask), padded)  # untrained: the identity
    standardizer.train()
    for chunk in torch.arange(64).split(24):  # three batches, statistics accumulate
        standardizer(padded[chunk], mask[chunk])
    real = emb[mask].double()
    assert torch.allclose(standardizer.mean.double(), real.mean(0), atol=1e-9)
    assert torch.allclose(
        (standardizer.sum_sq / standardizer.count).double(), real.var(0, unbiased=False), rtol=1e-3
    )
    standardizer.eval()
    out = standardizer(padded, mask)
    assert torch.all(out[~mask] == 0)
    # float32 resolves 0.04 to ~4e-9, i.e. ~4e-4 of this sd
    assert torch.allclose(out[mask].mean(0), torch.zeros(emb.shape[-1]), atol=5e-3)
    assert torch.allclose(out[mask].std(0), torch.ones(emb.shape[-1]), atol=1e-2)
    # evaluation leaves the statistics alone; an all-masked batch in training too
    count = standardizer.count.clone()
    standardizer(padded, mask)
    standardizer.train()
    standardizer(padded[8:9], mask[8:9])
    assert standardizer.count == count
    # the statistics are buffers: saved with the checkpoint, restored on resume
    restored = TokenStandardizer(emb.shape[-1])
    restored.load_state_dict(standardizer.state_dict())
    assert torch.equal(restored.eval()(padded, mask), out)


def test_standardizer_does_not_blow_up_rounding_noise():
    # a feature constant up to float32 rounding stays near zero instead of unit scale
    emb = torch.full((32, 4, 2), 1000.0)
    emb[..., 1] += torch.randn(32, 4)
    emb[..., 0] += torch.randn(32, 4) * 1e-4  # ~1e-7 relative: rounding-level noise
    mask = torch.ones(32, 4, dtype=torch.bool)
    standardizer = TokenStandardizer(2)
    out = standardizer(emb, mask)
    assert out[..., 0].std() < 0.05
    assert out[..., 1].std() == pytest.approx(1.0, rel=0.05)


@pytest.mark.slow
def test_cross_attention_learns_samples_without_the_query_modality():
    # protein-only run: a non-coding transcript has no protein tokens at all. It used to pool
    # to the zero vector, so its prediction was the head's bias (the demo's protein-only run
    # missed non-coding transcripts by 1.5); a learned query token stands in for it.
    torch.manual_seed(0)
    emb, mask, signal = _offset_signal_inputs(n=128, length=4, dim=8)
    emb = torch.randn_like(emb)
    signal = emb.mean(dim=(1, 2)) * 10
    absent = torch.arange(128) % 4 == 0
    mask[absent] = False
    target = torch.where(absent, torch.tensor(4.0), signal)
    agg = build_aggregator("cross_attention", {"protein": 8}, d_model=16, heads=4)
    head = torch.nn.Linear(16, 1)
    optimizer = torch.optim.AdamW([*agg.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(100):
        predicted = head(masked_mean(*agg({"protein": (emb, mask)}))).squeeze(-1)
        loss = torch.nn.functional.mse_loss(predicted, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = head(masked_mean(*agg.eval()({"protein": (emb, mask)}))).squeeze(-1)
    assert (predicted[absent] - 4.0).abs().max() < 0.2, predicted[absent]
    assert torch.corrcoef(torch.stack([predicted[~absent], signal[~absent]]))[0, 1] > 0.9


def _reference_standardize(state: dict, emb, mask, training: bool):
    """TokenStandardizer's update and forward as they were before ``has_stats`` (commit
    6efff83), on a dict of its buffers: the maths the demo's numbers came from."""
    if training:
        real = emb[mask].detach().float()
        n = real.shape[0]
        if n:
            batch_mean = real.mean(0)
            batch_sum_sq = ((real - batch_mean) ** 2).sum(0)
            total = state["count"] + n
            delta = batch_mean - state["mean"]
            state["mean"] += delta * (n / total)
            state["sum_sq"] += batch_sum_sq + delta**2 * (state["count"] * n / total)
            state["count"].copy_(total)
    if state["count"] == 0:
        return emb
    var = state["sum_sq"] / state["count"]
    floor = 1e-5**2 * (state["mean"] ** 2 + var) + 1e-20
    return ((emb - state["mean"]) / torch.sqrt(var + floor)).masked_fill(~mask.unsqueeze(-1), 0)


def test_standardizer_outputs_bit_identical_to_before_the_host_flag():
    emb, mask, _ = _offset_signal_inputs(n=64)
    mask[:8, 2:] = False
    mask[40:48] = False  # a whole batch without the modality: no statistics from it
    standardizer = TokenStandardizer(emb.shape[-1])
    state = {k: v.clone() for k, v in standardizer.state_dict().items()}
    steps = [(False, slice(0, 16)), (True, slice(40, 48))]  # identity until tokens are seen
    steps += [(True, slice(i, i + 8)) for i in range(0, 64, 8)] + [(False, slice(0, 64))]
    for training, rows in steps:
        standardizer.train(training)
        out = standardizer(emb[rows], mask[rows])
        expected = _reference_standardize(state, emb[rows], mask[rows], training)
        assert torch.equal(out, expected)
    assert all(torch.equal(standardizer.state_dict()[k], v) for k, v in state.items())


class _ScalarReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts reads of a tensor's value by the host (``bool(t)``, ``t.item()``): each one
    waits for the device on a GPU."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def test_standardizer_forward_reads_no_device_value_once_it_has_statistics():
    emb, mask, _ = _offset_signal_inputs(n=16)
    standardizer = TokenStandardizer(emb.shape[-1]).train()
    standardizer(emb[:8], mask[:8])
    for training in (True, False):
        standardizer.train(training)
        with _ScalarReads() as reads:
            standardizer(emb[8:], mask[8:])
        assert reads.count == 0, f"training={training}"
    # the flag follows a loaded state dict: statistics restored, or none (the identity)
    restored = TokenStandardizer(emb.shape[-1])
    restored.load_state_dict(standardizer.state_dict())
    with _ScalarReads() as reads:
        assert torch.equal(restored.eval()(emb, mask), standardizer.eval()(emb, mask))
    assert reads.count == 0
    standardizer.load_state_dict(TokenStandardizer(emb.shape[-1]).state_dict())
    assert torch.equal(standardizer(emb, mask), emb)


def _block_forward_before_attention_weights(block, queries, keys, key_mask):
    """AttentionBlock.forward as it was before return_attention existed (commit 0dc15ab):
    the default path must stay exactly this."""
    has_keys = key_mask.any(dim=1)
    ignore = ~key_mask
    ignore[:, 0] &= has_keys
    kv = block.norm_kv(keys)
    attended, _ = block.attn(
        block.norm_q(queries), kv, kv, key_padding_mask=ignore, need_weights=False
    )
    attended = attended * has_keys[:, None, None].to(attended.dtype)
    x = queries + block.dropout(attended)
    return x + block.dropout(block.ff(block.norm_ff(x)))


def _cross_forward_before_attention_weights(agg, inputs):
    tokens = agg.projected(inputs)
    queries, query_mask = tokens[agg.query_modality]
    absent = ~query_mask.any(dim=1)
    first = torch.zeros_like(query_mask)
    first[:, 0] = True
    stand_in = absent[:, None] & first
    queries = torch.where(stand_in.unsqueeze(-1), agg.missing_query, queries)
    query_mask = query_mask | stand_in
    for layer in agg.layers:
        for m in agg.key_modalities:
            keys, key_mask = (queries, query_mask) if m == agg.query_modality else tokens[m]
            queries = _block_forward_before_attention_weights(layer[m], queries, keys, key_mask)
    return queries, query_mask


@pytest.mark.parametrize("modalities", [["dna", "rna", "protein"], ["rna"]], ids="+".join)
def test_default_forward_is_bit_identical_to_the_one_without_attention_weights(modalities):
    """Asking for no attention weights computes exactly what the aggregator computed
    before they could be returned (eval and train mode, same dropout draws)."""
    agg = build_aggregator(
        "cross_attention",
        {m: DIMS[m] for m in modalities},
        d_model=16,
        depth=2,
        heads=4,
        dropout=0.1,
    )
    inputs = make_inputs(modalities)
    for train in (False, True):
        agg.train(train)
        torch.manual_seed(1)
        tokens, mask = agg(inputs)
        torch.manual_seed(1)
        old_tokens, old_mask = _cross_forward_before_attention_weights(agg, inputs)
        assert torch.equal(tokens, old_tokens) and torch.equal(mask, old_mask)


def test_attention_weights_sum_to_one_over_real_keys_and_match_the_output():
    modalities = ["dna", "rna", "protein"]
    agg = build_aggregator("cross_attention", DIMS, d_model=16, depth=2, heads=4).eval()
    inputs = make_inputs(modalities)
    with torch.no_grad():
        tokens, mask = agg(inputs)
        tokens_w, mask_w, attention = agg(inputs, return_attention=True)
    torch.testing.assert_close(tokens_w, tokens, rtol=0, atol=1e-5)
    assert torch.equal(mask_w, mask)
    assert len(attention) == 2 and all(set(a) == {"rna", "protein"} for a in attention)
    for per_key in attention:
        for m, weights in per_key.items():
            key_mask = inputs[m][1]
            assert weights.shape == (3, 4, LENGTHS["dna"], LENGTHS[m])
            # no weight on padding; rows of a sample with keys sum to 1, without keys to 0
            assert (weights * ~key_mask[:, None, None, :]).abs().max() == 0
            sums = weights.sum(-1)
            has_keys = key_mask.any(dim=1)
            torch.testing.assert_close(sums[has_keys], torch.ones_like(sums[has_keys]))
            assert sums[~has_keys].abs().max() == 0 if (~has_keys).any() else True


def test_isoformer_attention_only_from_cross_attention():
    from isoflow.model.isoformer import IsoFormer

    inputs = make_inputs(["rna", "protein"])
    dims = {"rna": DIMS["rna"], "protein": DIMS["protein"]}
    model = IsoFormer(3, dims=dims, aggregator="cross_attention", d_model=16, heads=2).eval()
    with torch.no_grad():
        plain = model(inputs)
        out, attention = model(inputs, return_attention=True)
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-5)
    assert list(attention[0]) == ["protein"]
    concat = IsoFormer(3, dims=dims, aggregator="concat", d_model=16)
    with pytest.raises(ValueError, match="cross_attention"):
        concat(inputs, return_attention=True)


def test_a_ddp_step_without_tokens_on_any_rank_leaves_empty_statistics_empty(monkeypatch):
    """Under DDP the first steps may hold no real token on any rank (a modality masked
    throughout): the merge must leave the statistics as they were (count 0, the identity
    map), not divide 0 by 0 into a NaN mean every later step carries."""
    from isoflow.model import aggregators

    standardizer = aggregators.TokenStandardizer(3).train()
    nothing = (torch.tensor(0.0), torch.zeros(3), torch.zeros(3))
    monkeypatch.setattr(aggregators, "_all_ranks_stats", lambda real: nothing)
    standardizer._update_all_ranks(torch.zeros(0, 3))
    assert float(standardizer.count) == 0
    assert torch.equal(standardizer.mean, torch.zeros(3))
    assert torch.equal(standardizer.sum_sq, torch.zeros(3))
    tokens = (torch.tensor(2.0), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.5, 0.5]))
    monkeypatch.setattr(aggregators, "_all_ranks_stats", lambda real: tokens)
    standardizer._update_all_ranks(torch.zeros(0, 3))
    assert float(standardizer.count) == 2
    torch.testing.assert_close(standardizer.mean, torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(standardizer.sum_sq, torch.tensor([0.5, 0.5, 0.5]))


def test_standardizer_update_on_fixed_shapes_matches_the_gathered_tokens(monkeypatch):
    # a CUDA graph cannot capture emb[mask] (a data-dependent shape: the host waits for the
    # device): while a stream captures, update takes masked sums over every position instead,
    # the same statistics up to float rounding, and a batch with no real token leaves them;
    # outside a capture update is the gathering code, bit for bit
    from isoflow.model import aggregators

    torch.manual_seed(0)
    batches = []
    for rows in (5, 3, 4):
        emb = torch.randn(rows, 7, 6) * 3 + 1
        mask = torch.rand(rows, 7) > 0.4
        batches.append((emb, mask))
    batches.append((torch.randn(2, 7, 6), torch.zeros(2, 7, dtype=torch.bool)))
    gathered, masked = TokenStandardizer(6), TokenStandardizer(6)
    for emb, mask in batches:
        gathered.update(emb, mask)
        masked._update_masked(emb, mask)
    for name in ("count", "mean", "sum_sq"):
        torch.testing.assert_close(
            getattr(masked, name), getattr(gathered, name), rtol=1e-5, atol=1e-5
        )
    # the host's flag: set by the gathering update; the fixed-shape one leaves it to the
    # next forward outside a capture (a graph cannot read the count on the host)
    assert gathered.has_stats and not masked.has_stats

    calls = []
    monkeypatch.setattr(TokenStandardizer, "_update_masked", lambda self, e, m: calls.append(1))
    TokenStandardizer(6).update(*batches[0])
    assert calls == []  # eager: the gathering path
    monkeypatch.setattr(aggregators, "_capturing", lambda: True)
    TokenStandardizer(6).update(*batches[0])
    assert calls == [1]
    # under DDP the update merges every rank's real tokens, which no graph can capture
    monkeypatch.setattr(aggregators, "_world_size", lambda: 2)
    with pytest.raises(RuntimeError, match="cannot capture a DDP update"):
        TokenStandardizer(6).update(*batches[0])


def test_a_captured_step_without_real_tokens_yet_answers_as_eager(monkeypatch):
    # a graph's first batch may hold no real token of a modality (all non-coding: no
    # protein): the standardiser has no statistics, and the eager answer is the embeddings
    # unchanged. The captured forward gave NaN statistics (0 / 0) with has_stats set, so a
    # validation pass before any later step standardised real tokens to NaN
    from isoflow.model import aggregators

    torch.manual_seed(0)
    emb = torch.randn(2, 3, 4)
    eager = TokenStandardizer(4).train()
    captured = TokenStandardizer(4).train()
    none = torch.zeros(2, 3, dtype=torch.bool)
    expected = eager(emb, none)
    monkeypatch.setattr(aggregators, "_capturing", lambda: True)
    assert torch.equal(captured(emb, none), expected)
    assert torch.equal(expected, emb)
    monkeypatch.setattr(aggregators, "_capturing", lambda: False)
    real = torch.ones(2, 3, dtype=torch.bool)
    captured.eval()
    assert torch.equal(captured(emb, real), emb)  # still no statistics: not NaN
    # with statistics, the captured forward standardises as the eager one
    captured.train()
    monkeypatch.setattr(aggregators, "_capturing", lambda: True)
    out = captured(emb, real)
    eager.train()
    monkeypatch.setattr(aggregators, "_capturing", lambda: False)
    torch.testing.assert_close(out, eager(emb, real), rtol=1e-5, atol=1e-5)
