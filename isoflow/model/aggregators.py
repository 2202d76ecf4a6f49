"""Aggregators: fuse per-modality token embeddings into one set of tokens for the head.

Every aggregator takes ``{modality: (emb (B, L_m, D_m), mask (B, L_m) bool, True = real)}``
for the modalities it was built with (any non-empty subset of dna, rna, protein),
standardises each feature with statistics of the training tokens (:class:`TokenStandardizer`),
projects each modality to a common ``d_model`` and returns ``(tokens (B, L, d_model), mask
(B, L))`` that the head mean-pools. A sample whose modality is missing (no protein for a
non-coding transcript) has an all-False mask for it; that modality then contributes nothing
to that sample and produces no NaN.

- ``cross_attention`` (IsoFormer): the first present modality of dna, rna, protein gives the
  queries; per layer they attend to each other modality in that order (pre-norm blocks:
  ``x + attn(LN(x), LN(keys))``, ``x + ff(LN(x))``). With a single modality the layers are
  self-attention. A sample without the query modality gets one learned query token.
- ``concat``: masked mean-pool each modality, a learned "missing" vector where a sample has
  none, concatenate, project.
- ``perceiver``: a Perceiver resampler; learned latents cross-attend to all present tokens
  (each tagged with a learned modality embedding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isoflow.experiments import MODALITIES

AGGREGATORS = ("cross_attention", "concat", "perceiver")

Inputs = dict[str, tuple[Tensor, Tensor]]


def masked_mean(emb: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens; zeros for a sample with none. (B, L, D), (B, L) -> (B, D)."""
    weights = mask.to(emb.dtype).unsqueeze(-1)
    return (emb * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TokenStandardizer(nn.Module):
    """Per-feature z-score of real tokens, with the mean and variance of the training tokens.

    Frozen encoders can carry a feature's between-sequence signal as a tiny variation around a
    large offset shared by every sequence. In the demo's cached tiny-Enformer embeddings each
    feature varies across transcripts by about 1e-5 around a mean of about 0.04 (docs/model.md).
    A linear projection, LayerNorm over a token's features and a linear head on the pooled
    tokens all keep that ratio, so the head sees an almost constant input and the run predicts
    a constant; a linear probe on standardised features finds the signal at once. Scaling each
    feature by the spread of the training tokens gives the signal unit scale whatever offset
    and scale the encoder left it at.

    The statistics are a running mean and variance over every real token seen in training mode
    (Chan's parallel update: after one epoch on a frozen encoder, those of the whole training
    set; under DDP every rank merges the real tokens of all ranks' batches, so each holds the
    same statistics). Tokens are always normalised with the running statistics, never with
    the batch's own, so training and evaluation apply the same map and a batch of one token or
    with the modality masked throughout needs no special case (unlike BatchNorm). Masked
    tokens (padding, a missing modality) never enter the statistics and come out as zeros.
    Before the first training step the map is the identity. A feature's spread is floored at
    ``rel_floor`` of its root mean square, so float rounding noise on a constant feature is
    not blown up to unit scale. ``counted`` (B,) bool, when given, names the rows whose tokens
    enter the statistics: under DDP the sampler's padding repeats a transcript on some ranks
    (``loader.EpochSeededSampler``), and a repeat's tokens would count twice.
    """

    def __init__(self, dim: int, rel_floor: float = 1e-5, abs_floor: float = 1e-20):
        super().__init__()
        self.rel_floor = rel_floor
        self.abs_floor = abs_floor
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("sum_sq", torch.zeros(dim))  # sum of squared deviations
        # ``count > 0``, kept on the host: testing the buffer in every forward would make the
        # host wait for the device at every step. Set by ``update`` in one process, derived
        # from the buffer when a state dict is loaded, and re-read from it (one wait per step)
        # only while False: under DDP, where the step's tokens may all be on other ranks.
        self.has_stats = False

    @torch.no_grad()
    def update(self, emb: Tensor, mask: Tensor) -> None:
        """Merge the real tokens of ``emb`` into the statistics; under DDP those of every
        rank's batch (collective: each rank calls it at each training step)."""
        if _capturing():
            if _world_size() > 1:  # the all-ranks merge gathers real tokens: not capturable
                raise RuntimeError("TokenStandardizer: a CUDA graph cannot capture a DDP update")
            self._update_masked(emb, mask)
            return
        real = emb[mask].detach().float()  # (N, D)
        if _world_size() > 1:
            self._update_all_ranks(real)
            return
        n = real.shape[0]
        if n == 0:
            return
        batch_mean = real.mean(0)
        batch_sum_sq = ((real - batch_mean) ** 2).sum(0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * (n / total)
        self.sum_sq += batch_sum_sq + delta**2 * (self.count * n / total)
        self.count.copy_(total)
        if not self.has_stats:  # nn.Module.__setattr__ costs more than the test
            self.has_stats = True

    def _update_masked(self, emb: Tensor, mask: Tensor) -> None:
        """``update`` in one process on fixed shapes: masked sums over every position where
        ``update`` gathers the real tokens (``emb[mask]``: a data-dependent shape, so the host
        waits for the device and a CUDA graph cannot capture it). The same statistics up to
        float rounding (the sums run in another order); used only while a CUDA stream is
        capturing (``isoflow.graph_step``), so eager training keeps its bits. It leaves
        ``has_stats`` alone: a graph's first batch may hold no real token, and the flag is
        read on the host (``forward`` reads the count on the device while capturing)."""
        weight = mask.unsqueeze(-1).float()
        x = emb.detach().float()
        dims = tuple(range(x.dim() - 1))
        n = weight.sum()
        batch_mean = (x * weight).sum(dims) / n.clamp(min=1.0)
        batch_sum_sq = ((x - batch_mean) ** 2 * weight).sum(dims)
        total = self.count + n
        share = n / total.clamp(min=1.0)  # 0 when the batch has no real token
        delta = batch_mean - self.mean
        self.mean += delta * share
        self.sum_sq += batch_sum_sq + delta**2 * (self.count * share)
        self.count.copy_(total)

    def _update_all_ranks(self, real: Tensor) -> None:
        """``update`` with every rank's real tokens (``_all_ranks_stats``), so all ranks hold
        the same statistics, those of the global batch. On tensors only (no wait for the
        device); a step without tokens on any rank leaves them as they were, and
        ``has_stats`` is left to ``forward``, which reads the count while it is False."""
        n, batch_mean, batch_sum_sq = _all_ranks_stats(real)
        total = self.count + n
        weight = n / total.clamp(min=1.0)  # 0 when no rank had a token
        delta = batch_mean - self.mean
        self.mean += delta * weight
        self.sum_sq += batch_sum_sq + delta**2 * (self.count * weight)
        self.count.copy_(total)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.has_stats = bool(self.count != 0)

    def forward(self, emb: Tensor, mask: Tensor, counted: Tensor | None = None) -> Tensor:
        if self.training:
            self.update(emb, mask if counted is None else mask & counted.unsqueeze(-1))
        # while a CUDA graph captures, the count cannot be read on the host: without statistics
        # yet (a first step with no real token) the same answer as below, on the device
        capturing = not self.has_stats and _capturing()
        if not self.has_stats and not capturing:
            self.has_stats = bool(self.count != 0)
            if not self.has_stats:
                return emb
        var = self.sum_sq / (self.count.clamp(min=1.0) if capturing else self.count)
        floor = self.rel_floor**2 * (self.mean**2 + var) + self.abs_floor
        standardized = (emb - self.mean) / torch.sqrt(var + floor)
        # masked positions (often zeros) would land far out: keep them at zero
        standardized = standardized.masked_fill(~mask.unsqueeze(-1), 0.0)
        return torch.where(self.count > 0, standardized, emb) if capturing else standardized


def _capturing() -> bool:
    """Whether the current CUDA stream is capturing a graph (False without CUDA)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _world_size() -> int:
    """The ranks of the default process group; 1 outside DDP."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _all_ranks_stats(real: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(count, mean, sum of squared deviations), float32 tensors, of the real tokens of every
    rank's batch, the same on every rank: each rank's own three, gathered and merged in rank
    order (Chan's parallel update, in float64). Collective. Without it each rank kept its own
    statistics and DDP's buffer broadcast replaced them with rank 0's before every forward,
    so the standardiser saw rank 0's tokens alone."""
    n, dim = real.shape
    local = torch.zeros(1 + 2 * dim, dtype=torch.float64, device=real.device)
    if n:
        mean = real.double().mean(0)
        local[0] = n
        local[1 : 1 + dim] = mean
        local[1 + dim :] = ((real.double() - mean) ** 2).sum(0)
    gathered = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, local)
    count = torch.zeros((), dtype=torch.float64, device=real.device)
    mean = torch.zeros(dim, dtype=torch.float64, device=real.device)
    sum_sq = torch.zeros(dim, dtype=torch.float64, device=real.device)
    for part in gathered:
        k = part[0]
        total = count + k
        weight = k / total.clamp(min=1.0)  # 0 for a rank without tokens
        delta = part[1 : 1 + dim] - mean
        mean = mean + delta * weight
        sum_sq = sum_sq + part[1 + dim :] + delta**2 * (count * weight)
        count = total
    return count.float(), mean.float(), sum_sq.float()


class AttentionBlock(nn.Module):
    """Pre-norm attention + feed-forward block that tolerates all-masked key rows.

    ``x + attn(LN(x), LN(keys))`` then ``x + ff(LN(x))``: the residual stream itself is never
    normalised, so a per-token magnitude in the projected inputs (where frozen encoders put
    much of their signal) reaches the pooled output. (A post-norm block, LayerNorm after each
    residual, squashed it: on the demo's cached embeddings it learned far less than concat.)

    ``nn.MultiheadAttention`` returns NaN for a query row whose keys are all masked. Such
    samples get one key unmasked for the computation and their attention output zeroed, so
    the residual passes the queries through unchanged: the missing modality adds nothing.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0, ff_mult: int = 2):
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_kv = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_mult * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ff_mult * d_model, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, queries: Tensor, keys: Tensor, key_mask: Tensor, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The block's output; with ``return_attention`` also the attention weights ``(B,
        heads, L_q, L_k)`` (softmax over keys, per head; rows of a sample without keys are
        zeroed, as its output is). Only then does ``nn.MultiheadAttention`` compute them
        (``need_weights=True`` leaves its fused kernel, so the output may differ from the
        default path in the last bits); the default path is unchanged."""
        has_keys = key_mask.any(dim=1)
        ignore = ~key_mask
        ignore[:, 0] &= has_keys  # one visible key for empty rows; their output is zeroed
        kv = self.norm_kv(keys)
        if return_attention:
            attended, weights = self.attn(
                self.norm_q(queries),
                kv,
                kv,
                key_padding_mask=ignore,
                need_weights=True,
                average_attn_weights=False,
            )
            weights = weights * has_keys[:, None, None, None].to(weights.dtype)
        else:
            attended, _ = self.attn(
                self.norm_q(queries), kv, kv, key_padding_mask=ignore, need_weights=False
            )
        attended = attended * has_keys[:, None, None].to(attended.dtype)
        x = queries + self.dropout(attended)
        out = x + self.dropout(self.ff(self.norm_ff(x)))
        return (out, weights) if return_attention else out


class Aggregator(nn.Module):
    """Common part: the modalities it fuses and their projections to ``d_model``."""

    def __init__(self, dims: dict[str, int], d_model: int):
        super().__init__()
        unknown = set(dims) - set(MODALITIES)
        if not dims or unknown:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}: {dims}")
        self.modalities = [m for m in MODALITIES if m in dims]
        self.d_model = d_model
        # Per-feature standardisation, then a plain linear projection: a per-token LayerNorm
        # here would erase the per-token scale of the frozen embeddings (the blocks normalise
        # their own attention inputs).
        self.standardize = nn.ModuleDict({m: TokenStandardizer(dims[m]) for m in dims})
        self.project = nn.ModuleDict({m: nn.Linear(dims[m], d_model) for m in dims})

    def projected(self, inputs: Inputs, counted: Tensor | None = None) -> Inputs:
        """Each modality standardised and projected; ``counted``: the rows whose tokens
        enter the standardisers' statistics (None: every row; :class:`TokenStandardizer`)."""
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise ValueError(f"aggregator built for {self.modalities} got no {missing}")
        out = {}
        for m in self.modalities:
            emb, mask = inputs[m][0], inputs[m][1].bool()
            out[m] = (self.project[m](self.standardize[m](emb, mask, counted)), mask)
        return out


class CrossAttentionAggregator(Aggregator):
    def __init__(
        self, dims: dict[str, int], d_model: int, depth: int = 1, heads: int = 4, dropout=0.0
    ):
        super().__init__(dims, d_model)
        self.query_modality = self.modalities[0]
        self.key_modalities = self.modalities[1:] or [self.query_modality]
        self.layers = nn.ModuleList(
            nn.ModuleDict({m: AttentionBlock(d_model, heads, dropout) for m in self.key_modalities})
            for _ in range(depth)
        )
        # The one query token of a sample that lacks the query modality (a non-coding
        # transcript in a protein-only run), as concat's "missing" vector. Without it such a
        # sample pooled to the zero vector, so its prediction was the head's bias, shared with
        # every other sample; on the demo the protein-only run then missed the non-coding
        # transcripts by 1.5 on average. Zeros: no draw from the global RNG, so runs whose
        # query modality is always present keep their initialisation.
        self.missing_query = nn.Parameter(torch.zeros(d_model))

    def forward(
        self, inputs: Inputs, return_attention: bool = False, counted: Tensor | None = None
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list[dict[str, Tensor]]]:
        """``(tokens, mask)``; with ``return_attention`` also, per layer, key modality ->
        attention weights ``(B, heads, L_q, L_k)`` over that modality's tokens (in the
        order ``inputs`` holds them; rows sum to 1 over real keys for a sample that has
        keys, zero for one without)."""
        tokens = self.projected(inputs, counted)
        queries, query_mask = tokens[self.query_modality]
        absent = ~query_mask.any(dim=1)
        first = torch.zeros_like(query_mask)
        first[:, 0] = True
        stand_in = absent[:, None] & first
        queries = torch.where(stand_in.unsqueeze(-1), self.missing_query, queries)
        query_mask = query_mask | stand_in
        attention: list[dict[str, Tensor]] = []
        for layer in self.layers:
            if return_attention:
                attention.append({})
            for m in self.key_modalities:
                # self-attention (single modality) sees the current queries as keys
                keys, key_mask = (queries, query_mask) if m == self.query_modality else tokens[m]
                if return_attention:
                    queries, attention[-1][m] = layer[m](queries, keys, key_mask, True)
                else:
                    queries = layer[m](queries, keys, key_mask)
        if return_attention:
            return queries, query_mask, attention
        return queries, query_mask


class ConcatAggregator(Aggregator):
    def __init__(self, dims: dict[str, int], d_model: int, dropout: float = 0.0, **_):
        super().__init__(dims, d_model)
        self.missing = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(d_model) * 0.02) for m in self.modalities}
        )
        self.out = nn.Sequential(
            nn.Linear(len(self.modalities) * d_model, d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_model, d_model),
        )

    def forward(self, inputs: Inputs, counted: Tensor | None = None) -> tuple[Tensor, Tensor]:
        pooled = []
        for m, (emb, mask) in self.projected(inputs, counted).items():
            present = mask.any(dim=1, keepdim=True)
            pooled.append(torch.where(present, masked_mean(emb, mask), self.missing[m]))
        fused = self.out(torch.cat(pooled, dim=-1)).unsqueeze(1)
        return fused, torch.ones(fused.shape[:2], dtype=torch.bool, device=fused.device)


class PerceiverAggregator(Aggregator):
    def __init__(
        self,
        dims: dict[str, int],
        d_model: int,
        depth: int = 1,
        heads: int = 4,
        dropout: float = 0.0,
        n_latents: int = 8,
    ):
        super().__init__(dims, d_model)
        self.latents = nn.Parameter(torch.randn(n_latents, d_model) * 0.02)
        self.modality_embedding = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(d_model) * 0.02) for m in self.modalities}
        )
        self.cross = nn.ModuleList(AttentionBlock(d_model, heads, dropout) for _ in range(depth))
        self.self_attn = nn.ModuleList(
            AttentionBlock(d_model, heads, dropout) for _ in range(depth)
        )

    def forward(self, inputs: Inputs, counted: Tensor | None = None) -> tuple[Tensor, Tensor]:
        tokens = self.projected(inputs, counted)
        keys = torch.cat([emb + self.modality_embedding[m] for m, (emb, _) in tokens.items()], 1)
        key_mask = torch.cat([mask for _, mask in tokens.values()], dim=1)
        latents = self.latents.unsqueeze(0).expand(keys.shape[0], -1, -1)
        latent_mask = torch.ones(latents.shape[:2], dtype=torch.bool, device=latents.device)
        for cross, self_attn in zip(self.cross, self.self_attn, strict=True):
            latents = cross(latents, keys, key_mask)
            latents = self_attn(latents, latents, latent_mask)
        return latents, latent_mask


def build_aggregator(
    name: str,
    dims: dict[str, int],
    d_model: int = 64,
    depth: int = 1,
    heads: int = 4,
    dropout: float = 0.0,
    n_latents: int = 8,
) -> Aggregator:
    """An aggregator by name over the modalities in ``dims`` (modality -> embedding width)."""
    if name == "cross_attention":
        return CrossAttentionAggregator(dims, d_model, depth=depth, heads=heads, dropout=dropout)
    if name == "concat":
        return ConcatAggregator(dims, d_model, dropout=dropout)
    if name == "perceiver":
        return PerceiverAggregator(
            dims, d_model, depth=depth, heads=heads, dropout=dropout, n_latents=n_latents
        )
    raise ValueError(f"unknown aggregator {name!r}; choose one of {AGGREGATORS}")
