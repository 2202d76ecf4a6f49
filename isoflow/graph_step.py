"""The whole training step on cached embeddings captured as CUDA graphs (``train.cuda_graph``).

A step of a model that reads every modality from the embedding caches is ~700 small kernels
that the host launches one by one: on an H200 the host, not the GPU, sets the pace (7 % of an
epoch's wall GPU-busy at batch 32). ``GraphStep`` captures forward (bf16 autocast), MSE,
backward, gradient clipping and the AdamW update as one CUDA graph (PyTorch's whole-network
recipe: ``torch.cuda.graph``, AdamW with ``capturable=True`` and a tensor LR, autocast's weight
cache off) and replays it: ``bench/gpu.py --loader-compile graph-step`` (this class) measured
13.9 -> 1.74 ms of host time per step and 4.88 -> 0.98 s per epoch (docs/benchmarks.md,
"Whole-step CUDA graph (runs 10–13)").

A graph takes fixed shapes: each modality's ``(emb (B, L, D), mask (B, L))`` is padded to a
bucket of ``L`` (:func:`bucket_width`) with zero rows the mask leaves out, and one graph is
captured per distinct set of widths, lazily, each in its own memory pool; a batch of another
row count (an epoch's last, partial batch) runs the same step eagerly. Every graph and the
eager path share the parameters' ``.grad`` tensors, allocated once before any capture and
zeroed inside the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Narrowest padded width: batches of a few slots all share one graph.
MIN_WIDTH = 8


def bucket_width(width: int, cap: int | None = None, floor: int = MIN_WIDTH) -> int:
    """The padded width of a modality whose batch holds ``width`` rows per entry: the next
    power of two, at least ``floor``, at most ``cap`` (the modality's widest entry in the
    data), never less than ``width``."""
    bucket = max(floor, 1 << max(width - 1, 0).bit_length())
    if cap is not None:
        bucket = min(bucket, cap)
    return max(bucket, width)


def pad_to_width(inputs: dict, widths: dict[str, int] | int) -> dict:
    """Each cached modality's ``(emb (B, L, D), mask (B, L))`` padded to ``L = widths[modality]``
    (or ``widths`` for all) with zero rows that the mask leaves out (the collate pads to the
    batch's longest entry, so batches differ in shape; a captured graph takes one)."""
    padded = {}
    for modality, (emb, mask) in inputs.items():
        width = widths if isinstance(widths, int) else widths[modality]
        extra = width - emb.shape[1]
        if extra < 0:
            raise ValueError(f"{modality}: {emb.shape[1]} rows, more than the width {width}")
        padded[modality] = (
            torch.nn.functional.pad(emb, (0, 0, 0, extra)),
            torch.nn.functional.pad(mask, (0, extra), value=False),
        )
    return padded


@dataclass
class _Captured:
    """One width key's static inputs and, when captured, its graph and static loss."""

    inputs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    target: torch.Tensor
    graph: Any = None
    loss: torch.Tensor | None = None


class GraphStep:
    """``step(inputs, target) -> loss``: one optimiser step of ``model`` (MSE of its float
    output against ``target``; autocast to ``autocast_dtype`` unless None; total gradient
    norm clipped to ``grad_clip`` unless None), replayed from a CUDA graph per width key.

    ``optimizer`` must hold its LR as a tensor (``AdamW(lr=torch.tensor(lr, device=...),
    capturable=True, foreach=True)`` on CUDA): a float LR would be baked into the graph at
    capture, and an LR schedule (``LambdaLR`` fills a tensor LR in place) would stop at the
    first step's value. ``rows``: the batch size the graphs take (None: the first batch's);
    other row counts run eager (``eager_steps`` counts them). ``max_widths``: each modality's
    widest entry over the data (the buckets' cap); ``min_width``: the narrowest bucket.

    Capturing needs warm-up steps (``warmup``, on a side stream), which would train: every
    parameter, buffer (the standardisers' statistics) and optimiser state tensor is saved
    before them and copied back in place after (state they created: zeros and step 0, a fresh
    AdamW's), and the RNG states too, so the first real step starts where an eager one would.

    ``capture=False`` (tests only: a CPU cannot capture) runs the same warm-up, restore and
    step on the same static tensors, without a graph."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        *,
        rows: int | None = None,
        grad_clip: float | None = None,
        autocast_dtype: torch.dtype | None = None,
        max_widths: dict[str, int] | None = None,
        min_width: int = MIN_WIDTH,
        warmup: int = 3,
        capture: bool = True,
    ):
        for group in optimizer.param_groups:
            if not isinstance(group["lr"], torch.Tensor):
                raise ValueError(
                    "GraphStep: the optimizer's lr is a float, which a CUDA graph bakes in at "
                    "capture (the LR schedule would stop there); give it as a tensor, "
                    "AdamW(lr=torch.tensor(lr, device=...), capturable=True, foreach=True)"
                )
        if capture and device.type != "cuda":
            raise ValueError(f"GraphStep captures CUDA graphs: the device is {device.type}")
        self.model, self.optimizer, self.device = model, optimizer, torch.device(device)
        self.rows, self.grad_clip, self.autocast_dtype = rows, grad_clip, autocast_dtype
        self.max_widths = dict(max_widths or {})
        self.min_width, self.warmup, self.capture = min_width, warmup, capture
        self.params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        self.steps: dict[tuple, _Captured] = {}  # width key -> static tensors (and graph)
        self.eager_steps = 0
        self._grads_ready = False

    @property
    def graphs(self) -> int:
        """Width keys prepared (captured graphs, with ``capture``)."""
        return len(self.steps)

    def widths(self, inputs: dict) -> dict[str, int]:
        """The bucket each modality of a batch is padded to."""
        return {
            m: bucket_width(emb.shape[1], self.max_widths.get(m), self.min_width)
            for m, (emb, _) in inputs.items()
        }

    def _step(self, inputs: dict, target: torch.Tensor) -> torch.Tensor:
        """The step a graph captures (and the eager path runs): gradients zeroed in place (the
        tensors every graph recorded), forward (autocast), MSE, backward, clipping, optimiser
        step (these three without autocast, whatever the caller's). Nothing in it makes the
        host wait for the device or has a shape that depends on the data (``.item()``,
        ``bool(t)``, ``t[mask]``): a graph cannot capture those
        (tests/unit/test_graph_step.py traces it on fake tensors for every aggregator)."""
        self.optimizer.zero_grad(set_to_none=False)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
            cache_enabled=False,  # cached weight casts would outlive the capture
        ):
            out = self.model(inputs)
        # the caller's autocast off for the rest: Lightning's bf16-mixed wraps training_step
        # in its own (weight cache on), and a backward under autocast may run other kernels
        # than Lightning's automatic optimisation, whose backward runs outside it (PyTorch's
        # make_graphed_callables records its backward without autocast for this reason)
        with torch.autocast(self.device.type, enabled=False):
            loss = torch.nn.functional.mse_loss(out.float(), target)
            loss.backward()
            if self.grad_clip is not None:
                # foreach on CUDA: no host sync; the CPU (tests) takes the per-tensor path
                foreach = True if self.device.type == "cuda" else None
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=foreach)
            self.optimizer.step()
        return loss.detach()

    def _allocate_grads(self) -> None:
        """Every parameter's ``.grad`` allocated once, outside any graph, so that all graphs and
        the eager path accumulate into the same tensors."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self._grads_ready = True

    def _snapshot(self) -> dict[str, Any]:
        tensors = [*self.model.parameters(), *self.model.buffers()]
        state = self.optimizer.state
        with_state = {id(p) for p in self.params if state.get(p)}
        for p in self.params:
            if id(p) in with_state:
                tensors += [v for v in state[p].values() if isinstance(v, torch.Tensor)]
        flags = {m: m.has_stats for m in self.model.modules() if hasattr(m, "has_stats")}
        return {
            "tensors": [(t, t.detach().clone()) for t in tensors],
            "with_state": with_state,
            "flags": flags,
            "rng": torch.get_rng_state(),
            "cuda_rng": (
                torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
            ),
        }

    @torch.no_grad()
    def _restore(self, saved: dict[str, Any]) -> None:
        """Everything the warm-up changed, back in place (the graph records the addresses)."""
        for tensor, value in saved["tensors"]:
            tensor.copy_(value)
        for p in self.params:  # state the warm-up created: a fresh AdamW's (zeros, step 0)
            if id(p) not in saved["with_state"]:
                for value in self.optimizer.state.get(p, {}).values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()
        for module, flag in saved["flags"].items():
            module.has_stats = flag
        torch.set_rng_state(saved["rng"])
        if saved["cuda_rng"] is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)

    def _prepare(self, inputs: dict, target: torch.Tensor) -> _Captured:
        """Static copies of a padded batch, the warm-up (undone) and, with ``capture``, the
        graph of one step on them."""
        entry = _Captured(
            {m: (e.clone(), k.clone()) for m, (e, k) in inputs.items()}, target.clone()
        )
        saved = self._snapshot()
        if self.capture:
            current = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):  # warm-up off the capture stream, as the recipe asks
                for _ in range(self.warmup):
                    self._step(entry.inputs, entry.target)
            current.wait_stream(side)
        else:
            for _ in range(self.warmup):
                self._step(entry.inputs, entry.target)
        self._restore(saved)
        if self.capture:
            entry.graph = torch.cuda.CUDAGraph()
            # thread_local: the prefetch thread's pinned-memory copies are not in the capture;
            # each graph its own memory pool (none shared between graphs)
            with torch.cuda.graph(entry.graph, capture_error_mode="thread_local"):
                entry.loss = self._step(entry.inputs, entry.target)
        return entry

    def __call__(self, inputs: dict, target: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a batch of cached ``(emb, mask)`` inputs; the loss returned
        is the caller's own tensor (a replay overwrites the graph's)."""
        if not self._grads_ready:
            self._allocate_grads()
        if self.rows is None:
            self.rows = len(target)
        if len(target) != self.rows:
            self.eager_steps += 1
            return self._step(inputs, target)
        widths = self.widths(inputs)
        inputs = pad_to_width(inputs, widths)
        key = tuple(sorted(widths.items()))
        entry = self.steps.get(key)
        if entry is None:
            entry = self.steps[key] = self._prepare(inputs, target)
        for modality, (emb, mask) in inputs.items():
            entry.inputs[modality][0].copy_(emb, non_blocking=True)
            entry.inputs[modality][1].copy_(mask, non_blocking=True)
        entry.target.copy_(target, non_blocking=True)
        if entry.graph is None:
            return self._step(entry.inputs, entry.target)
        entry.graph.replay()
        return entry.loss.clone()
