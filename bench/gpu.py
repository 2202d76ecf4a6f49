"""GPU figures at real size: embedding, training from the cache, fine-tuning, and the projected
GPU-hours of the full reproduction, from rates measured in one run.

Real-size architectures of the four encoder families with random weights (no download):
Enformer (196,608 bp), Borzoi (524,288 bp), Nucleotide Transformer v2 250M (2,048 tokens) and
ESM-2 150M (1,024 tokens: 1,022 residues + BOS/EOS), built by
``isoflow.model.encoders.random_encoder(..., real_size=True)``, the classes the workflow loads
pretrained weights into. Sections, each timed on the same device in the same run:

- ``reference``: an 8192³ bf16 matrix product (the in-run yardstick of what the chip does),
  beside the vendor's dense bf16 peak for the exact device name (``PEAK_BF16``; another
  name needs ``--peak-tflops``);
- ``embed``: per encoder, fp32 and bf16 autocast (what rule embed's ``embed.precision`` picks):
  the forward alone and the whole ``isoflow.embed.encode_pooled`` path (tokenise, forward,
  copy back, pool), sequences/s, peak GPU memory, FLOPs per sequence counted by
  ``torch.utils.flop_counter`` and the share of the dense bf16 peak (MFU); bf16 against fp32
  on the same batch (largest difference / largest fp32 value); ``bf16c``: the bf16 forward
  through ``torch.compile`` (``embed.compile``, ``isoflow.embed.CompiledForward``), the first
  call (compile) timed apart from the steady rate, graphs compiled, and its outputs against
  fp32 and eager bf16 (CUDA only unless ``--compile-cpu``: the reason is in the JSON);
- ``train_cache``: IsoFormer training steps/s from cached embeddings at the real widths
  (Enformer 3,072, NT 768, ESM-2 640; ``pool_to`` 64 tokens per modality, and Enformer's
  896 bins unpooled), bf16 autocast, batch 32, AdamW;
- ``loader``: a cached epoch through ``IsoformDataModule`` (caches in the real on-disk format
  at the real widths, written by ``isoflow.embed.build_cache``; num_workers 4 as in
  config/config.yaml) against the same steps on a device-resident batch, timed once per
  model configuration before any epoch's loader exists: the step loop's share of the epoch
  (``step_share``, host wall-clock) and the GPU's summed kernel and copy time over the epoch
  (``gpu_busy``, torch.profiler; CUDA only); ``--loader-compile reduce-overhead`` (or ``default``,
  ``max-autotune``) adds the epoch with the model through ``torch.compile`` in that mode
  (``reduce-overhead``: CUDA graphs, for the small head's launch-bound step);
- ``finetune``: steps/s and MFU with the encoders in the graph and trainable: NT-v2 + ESM-2
  fully trainable beside a cached DNA modality (batch 8), and Enformer end to end (the
  paper's path, batch 1);
- ``projection``: GPU-hours of the full reproduction from the measured bf16 rates (dataset
  sizes from IsoFormer's dataset card; see ``docs/benchmarks.md``).

Results go to ``--out`` (JSON, rewritten after every measurement, so a run stopped at its
time limit keeps what it measured) and to stdout as one line each. ``--budget-s`` bounds the
whole run: measurements that would start after it are recorded as skipped.

On a GPU (the figures in docs/benchmarks.md):
    python bench/gpu.py --out gpu.json
In the test suite (CPU, tiny sizes, seconds):
    python bench/gpu.py --tiny --out /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from isoflow import graph_step  # torch only: the whole-step CUDA graph of graph-step

ROOT = Path(__file__).resolve().parents[1]

# Dense (no sparsity) bf16 tensor-core peaks by the exact name torch.cuda.get_device_name gives.
# NVIDIA's own data sheets could not be read here; read from secondary copies instead: H100
# SXM5 989.4 (the "Matrix" column of glennklockwood.com/garden/processors/h100, which also
# notes the H200 is the same chip with more memory), H100 PCIe 756 (half the 1,513 "with
# sparsity" of the data-sheet table copied at
# archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html). Any other name (H100 NVL, H200
# NVL, A100, a name not seen before) has no entry: its peak was not read from any source, so
# bench/gpu.py stops unless --peak-tflops gives it.
PEAK_BF16 = {
    "NVIDIA H100 80GB HBM3": 989.4e12,  # H100 SXM5
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H200": 989.4e12,  # H200 SXM (the name runs 1-6 recorded)
}

# IsoFormer's dataset card (docs/reproduction.md): transcripts of the 30-tissue GTEx set.
DATASET_TRANSCRIPTS = 91_241
TRAIN_FRACTION = 0.9

WIDTHS = {"dna": 3072, "rna": 768, "protein": 640}  # Enformer trunk, NT-v2 250M, ESM-2 150M
# esm2_sdpa: ESM-2 with `attention: sdpa` (isoflow.model.encoders.esm2.SdpaMultiheadAttention),
# beside fair-esm's eager attention, so a run measures what SDPA does to its forward.
ENCODERS = ["enformer", "borzoi", "nucleotide_transformer", "esm2", "esm2_sdpa"]

# Input sizes and batch sizes per encoder: (real, tiny).
INPUTS = {
    "enformer": {"real": 196_608, "tiny": 2_048, "batch": (4, 2), "unit": "bp"},
    "borzoi": {"real": 524_288, "tiny": 4_096, "batch": (2, 1), "unit": "bp"},
    "nucleotide_transformer": {"real": 2_047 * 6, "tiny": 300, "batch": (16, 2), "unit": "nt"},
    "esm2": {"real": 1_022, "tiny": 50, "batch": (16, 2), "unit": "aa"},
    "esm2_sdpa": {"real": 1_022, "tiny": 50, "batch": (16, 2), "unit": "aa"},
}


# The real-size stand-in of NT-v2 250M is transformers' EsmForMaskedLM, whose feed-forward is
# plain (two matrices) where NT-v2's is SwiGLU (three of 768 x 3,072): a plain width of 4,608
# holds the same weights per layer, so the stand-in does NT-v2's FLOPs (~234 M parameters).
SPECS = {"nucleotide_transformer": {"hparams": {"intermediate_size": 4608}}}
# fine-tuning cases: label -> (modality -> encoder, (real batch, tiny batch))
# --loader-compile: the cached epoch's model eager, or through torch.compile in a mode, or
# graph-step: the whole step (forward, backward, AdamW) captured as one CUDA graph on batches
# padded to fixed widths (CUDA only)
LOADER_COMPILE_MODES = ("eager", "default", "reduce-overhead", "max-autotune", "graph-step")
# the loader section's caches pool every sequence to at most this many rows: graph-step pads
# each cached modality's batch to it, so every full batch has one shape
LOADER_POOL_TO = 64
FINETUNE_CASES = {
    "nt_esm2_trainable": ({"rna": "nucleotide_transformer", "protein": "esm2"}, (8, 2)),
    # the same with ESM-2's attention through SDPA (`attention: sdpa`)
    "nt_esm2sdpa_trainable": ({"rna": "nucleotide_transformer", "protein": "esm2_sdpa"}, (8, 2)),
    "enformer_end_to_end": ({"dna": "enformer"}, (1, 1)),
}
VARIANTS = {"esm2_sdpa": {"class": "esm2", "attention": "sdpa"}}  # at both sizes


class Recorder:
    """Results dict written to ``path`` after every ``add``, and one line per entry."""

    def __init__(self, path: Path, started: float, budget_s: float):
        self.path, self.started, self.budget_s = path, started, budget_s
        self.data: dict = {"sections": {}}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def add(self, section: str, key: str, value: dict) -> None:
        self.data["sections"].setdefault(section, {})[key] = value
        self.write()
        shown = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
        print(f"[{time.perf_counter() - self.started:6.1f}s] {section}/{key}: {shown}", flush=True)

    def write(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=float))
        os.replace(tmp, self.path)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, min_iters: int, min_s: float, warmup: int = 1) -> float:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then at least ``min_iters``
    calls and ``min_s`` seconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < min_s:
        fn()
        n += 1
    sync(device)
    return (time.perf_counter() - start) / n


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict):
    """``out["peak_gib"]``: the largest GPU memory allocated inside the block."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_for(name: str) -> float | None:
    """The dense bf16 peak for exactly this device name, else None: a variant's name holds
    its family's (``NVIDIA H200 NVL`` holds ``H200``) but not its peak."""
    return PEAK_BF16.get(name.strip())


def mfu(flops_per_s: float, peak: float | None) -> float | None:
    return round(flops_per_s / peak, 4) if peak else None


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def kernel_profile(fn, device: torch.device, top: int = 6) -> dict:
    """Where one call of ``fn`` spends its GPU time: the share of matrix and convolution
    kernels (what tensor cores run) and the ``top`` kernels by time."""
    from torch.profiler import ProfilerActivity, profile

    if device.type != "cuda":
        return {}
    fn()
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync(device)
    kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    total = sum(e.self_device_time_total for e in kernels) or 1.0
    # cuBLAS/cuBLASLt (gemm, nvjet on Hopper), cuDNN convolutions and attention
    dense = ("gemm", "nvjet", "conv", "xmma", "cutlass", "fprop", "dgrad", "wgrad", "flash", "fmha")
    share = sum(e.self_device_time_total for e in kernels if any(k in e.key.lower() for k in dense))
    ranked = sorted(kernels, key=lambda e: -e.self_device_time_total)[:top]
    return {
        "dense_kernel_share": round(share / total, 3),
        "kernel_ms": round(total / 1000, 2),
        "top": [[e.key[:90], round(e.self_device_time_total / total, 3)] for e in ranked],
    }


def random_sequences(encoder: str, n: int, length: int, rng: np.random.Generator):
    if encoder in ("enformer", "borzoi"):
        return [rng.integers(0, 4, length, dtype=np.uint8) for _ in range(n)]
    letters = list("ACGT") if encoder == "nucleotide_transformer" else list("ACDEFGHIKLMNPQRSTVWY")
    return ["".join(rng.choice(letters, length)) for _ in range(n)]


# ---------------------------------------------------------------------------- sections


def reference(rec: Recorder, device: torch.device, tiny: bool) -> float | None:
    n = 256 if tiny else 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    s = timed(lambda: a @ b, device, min_iters=10, min_s=0.5 if tiny else 2.0, warmup=3)
    rate = 2 * n**3 / s
    rec.add("reference", f"matmul_bf16_{n}", {"tflops": round(rate / 1e12, 1)})
    a = b = None
    free(device)
    return rate


# Why a CPU run records the compiled rows as skipped (bench/gpu.py --tiny in the test suite).
COMPILE_CPU_SKIP = (
    "torch.compile (inductor) rows run on CUDA only: on the 2-core dev CPU compiling one tiny "
    "family took 1-2.5 min (docs/benchmarks.md); --compile-cpu runs them"
)


def compiled_forward(
    result: dict,
    encoder,
    tokens: dict,
    seqs: list,
    device: torch.device,
    peak: float | None,
    tiny: bool,
    backend: str = "inductor",
) -> torch.Tensor:
    """Fill ``result`` with the bf16 autocast forward of ``encoder`` through ``torch.compile``
    (what ``embed.compile`` runs): ``compile_s`` (the first call: compile and one forward),
    then the steady forward and the whole ``encode_pooled`` path, their MFU (the eager
    forward's FLOPs: compiling changes no arithmetic), ``graphs`` compiled in all and
    ``graphs_first_call`` (more: the timed calls recompiled). Returns the embeddings."""
    from isoflow.embed import CompiledForward, embedding_autocast, encode_pooled_many

    def eager():
        with torch.no_grad(), embedding_autocast(device, "bf16"):
            return encoder(**tokens)

    flops = count_flops(eager)
    with CompiledForward(encoder, backend) as compiled:

        def forward():
            with torch.no_grad(), embedding_autocast(device, "bf16"):
                return compiled.forward(**tokens)

        start = time.perf_counter()
        forward()
        sync(device)
        result["compile_s"] = round(time.perf_counter() - start, 2)
        result["graphs_first_call"] = compiled.graphs
        with peak_memory(device, result):
            s_fwd = timed(forward, device, min_iters=1 if tiny else 3, min_s=0 if tiny else 3.0)
        s_path = timed(
            lambda: encode_pooled_many(encoder, seqs, [64], device, None, "bf16", compiled.forward),
            device,
            min_iters=1 if tiny else 2,
            min_s=0 if tiny else 2.0,
        )
        emb, _ = forward()
        batch = len(seqs)
        result.update(
            backend=backend,
            graphs=compiled.graphs,
            seq_per_s_forward=round(batch / s_fwd, 3),
            seq_per_s_path=round(batch / s_path, 3),
            tflop_per_seq=round(flops / batch / 1e12, 4),
            mfu_forward=mfu(flops / s_fwd, peak),
            mfu_path=mfu(flops / s_path, peak),
        )
    return emb.float()


def embed_section(
    rec: Recorder,
    device: torch.device,
    tiny: bool,
    peak: float | None,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
    batch_scale: int = 1,
    profile: bool = False,
    compile_cpu: bool = False,
    encoders: tuple[str, ...] = tuple(ENCODERS),
) -> None:
    """``encoders``: which of ``ENCODERS``, in this order (the cheap or most wanted rows first,
    so a budget cut by a long compile drops the others). ``precisions``: ``fp32``, ``bf16``
    (autocast, what rule embed runs), ``bf16c`` (bf16
    autocast through ``torch.compile``: :func:`compiled_forward`; on a CPU only with
    ``compile_cpu``) and ``bf16w`` (the encoder's weights cast to bf16 once, no autocast: the
    cost of autocast's per-call weight casts; list it last, it casts the encoder in place)."""
    from isoflow.embed import embedding_autocast, encode_pooled

    rng = np.random.default_rng(0)
    for name in encoders:
        size = INPUTS[name]["tiny" if tiny else "real"]
        batch = INPUTS[name]["batch"][1 if tiny else 0] * batch_scale
        if rec.left() < 20:
            rec.add("embed", name, {"skipped": "budget"})
            continue
        try:
            build_start = time.perf_counter()
            encoder = build_encoder(name, tiny).to(device).eval()
            build_s = time.perf_counter() - build_start
            params = sum(p.numel() for p in encoder.parameters())
            seqs = random_sequences(name, batch, size, rng)
            tokens = {k: v.to(device) for k, v in encoder.tokenize(seqs).items()}
            outputs = {}
            for precision in precisions:
                if precision == "bf16w":
                    encoder = encoder.to(torch.bfloat16)
                if rec.left() < 10:
                    rec.add("embed", f"{name}_{precision}", {"skipped": "budget"})
                    continue
                result = {
                    "input": f"{size:,} {INPUTS[name]['unit']}",
                    "batch": batch,
                    "params_m": round(params / 1e6, 1),
                    "build_s": round(build_s, 1),
                }

                if precision == "bf16c":
                    if device.type != "cuda" and not compile_cpu:
                        result["skipped"] = COMPILE_CPU_SKIP
                    else:
                        try:
                            outputs["bf16c"] = compiled_forward(
                                result, encoder, tokens, seqs, device, peak, tiny
                            )
                        except Exception as error:  # OOM, a compile failure: record, go on
                            if not is_oom(error) and tiny:
                                raise
                            result["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                    rec.add("embed", f"{name}_bf16c_b{batch}", result)
                    free(device)
                    continue
                autocast = "fp32" if precision == "bf16w" else precision

                def forward(precision=autocast, encoder=encoder, tokens=tokens):
                    with torch.no_grad(), embedding_autocast(device, precision):
                        return encoder(**tokens)

                try:
                    with peak_memory(device, result):
                        s_fwd = timed(
                            forward, device, min_iters=1 if tiny else 3, min_s=0 if tiny else 3.0
                        )
                    flops = count_flops(forward)
                    s_path = timed(
                        lambda precision=autocast, encoder=encoder, seqs=seqs: encode_pooled(
                            encoder, seqs, 64, device, None, precision
                        ),
                        device,
                        min_iters=1 if tiny else 2,
                        min_s=0 if tiny else 2.0,
                    )
                    if profile:
                        try:
                            result["profile"] = kernel_profile(forward, device)
                        except Exception as error:  # the profiler is a nice-to-have
                            result["profile"] = {"error": f"{type(error).__name__}: {error}"[:200]}
                    emb, _ = forward()
                    outputs[precision] = emb.float()
                    result.update(
                        seq_per_s_forward=round(batch / s_fwd, 3),
                        seq_per_s_path=round(batch / s_path, 3),
                        tflop_per_seq=round(flops / batch / 1e12, 4),
                        mfu_forward=mfu(flops / s_fwd, peak),
                        mfu_path=mfu(flops / s_path, peak),
                    )
                except Exception as error:  # OOM or an API change: record, go on
                    if not is_oom(error) and tiny:
                        raise
                    result["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                rec.add("embed", f"{name}_{precision}_b{batch}", result)
                free(device)
            for other, base in (
                ("bf16", "fp32"),
                ("bf16w", "fp32"),
                ("bf16c", "fp32"),
                ("bf16c", "bf16"),
            ):
                if base in outputs and other in outputs:
                    ref = outputs[base]
                    rel = float((outputs[other] - ref).abs().max() / ref.abs().max())
                    rec.add("embed", f"{name}_{other}_vs_{base}", {"max_rel_diff": round(rel, 5)})
            encoder = tokens = outputs = None
        except Exception as error:
            if tiny:
                raise
            rec.add("embed", name, {"error": f"{type(error).__name__}: {str(error)[:200]}"})
        free(device)


TINY = False  # set by main(--tiny): a smaller head, so the CPU test takes seconds


def _isoformer(dims: dict[str, int], encoders: dict | None = None):
    from isoflow.model.isoformer import IsoFormer

    # config/config.yaml's model section: d_model 256, depth 1, heads 8, dropout 0.1
    return IsoFormer(
        n_tissues=30,
        encoders=encoders or {},
        dims=dims,
        aggregator="cross_attention",
        d_model=32 if TINY else 256,
        depth=1,
        heads=4 if TINY else 8,
        dropout=0.1,
    )


def train_step(model, optimizer, inputs, target, device):
    """One optimiser step: bf16 autocast on CUDA (Lightning's bf16-mixed), MSE, AdamW."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(inputs)
    loss = torch.nn.functional.mse_loss(out.float(), target)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def build_encoder(name: str, tiny: bool):
    """Encoder ``name`` with random weights: tiny sizes, or the published ones (``SPECS``)."""
    from isoflow.model.encoders import random_encoder

    spec = {"source": "tiny", **VARIANTS.get(name, {}), **({} if tiny else SPECS.get(name, {}))}
    return random_encoder(name, spec, real_size=not tiny)


def _cached_inputs(batch: int, tokens: dict[str, int], widths: dict[str, int], device):
    g = torch.Generator(device="cpu").manual_seed(0)
    inputs = {}
    for modality, length in tokens.items():
        emb = torch.randn(batch, length, widths[modality], generator=g).half().to(device)
        mask = torch.ones(batch, length, dtype=torch.bool, device=device)
        inputs[modality] = (emb, mask)
    return inputs


def train_cache_section(rec: Recorder, device, tiny: bool, peak) -> dict:
    widths = {m: (16 if tiny else w) for m, w in WIDTHS.items()}
    batch = 4 if tiny else 32
    rates = {}
    for label, tokens in (
        ("pool64", {"dna": 64, "rna": 64, "protein": 64}),
        ("dna896_pool64", {"dna": 8 if tiny else 896, "rna": 64, "protein": 64}),
        # positional pooling's defaults at full length: 128 TSS bins, 12,282 nt / 96 nt,
        # 1,022 aa / 16 aa (docs/encoders.md)
        ("positional", {"dna": 8 if tiny else 128, "rna": 8 if tiny else 128, "protein": 64}),
    ):
        if rec.left() < 15:
            rec.add("train_cache", label, {"skipped": "budget"})
            continue
        torch.manual_seed(0)
        model = _isoformer(widths).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        inputs = _cached_inputs(batch, tokens, widths, device)
        target = torch.randn(batch, 30, device=device)
        step = partial(train_step, model, optimizer, inputs, target, device)
        result = {"batch": batch, "tokens": tokens}
        with peak_memory(device, result):
            s = timed(step, device, min_iters=2 if tiny else 5, min_s=0 if tiny else 3.0, warmup=3)
        flops = count_flops(step)
        result.update(
            steps_per_s=round(1 / s, 2),
            ms_per_step=round(1000 * s, 3),
            gflop_per_step=round(flops / 1e9, 2),
            mfu=mfu(flops / s, peak),
        )
        rec.add("train_cache", label, result)
        rates[label] = 1 / s
        del model, optimizer, inputs
        free(device)
    return rates


def _bench_loader():
    # bench_loader imports benchcommon, a sibling: importable when gpu.py is loaded by path
    # (tests/unit/test_gpu_bench.py) as when it runs as a script
    if str(ROOT / "bench") not in sys.path:
        sys.path.append(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_loader", ROOT / "bench/bench_loader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _synthetic_caches(work: Path, n: int, tiny: bool) -> tuple[dict, dict[str, int]]:
    """``bench_loader.build_inputs``' dataset and three caches of ``n`` synthetic transcripts
    in ``work``, at the workflow's encoder widths (16 each at tiny size), pooled to
    ``LOADER_POOL_TO`` rows: (its paths, the widths)."""
    bench_loader = _bench_loader()
    widths = {m: (16 if tiny else w) for m, w in WIDTHS.items()}
    bench_loader.WIDTHS = {
        "dna": ("enformer", widths["dna"]),
        "rna": ("nucleotide_transformer", widths["rna"]),
        "protein": ("esm2", widths["protein"]),
    }
    return bench_loader.build_inputs(work, n, pool_to=LOADER_POOL_TO), widths


def loader_section(
    rec: Recorder,
    device,
    tiny: bool,
    work: Path,
    worker_counts: tuple[int, ...] = (4,),
    prefetch_depths: tuple[int, ...] = (0, 2),
    compile_modes: tuple[str, ...] = ("eager",),
    backend: str = "inductor",
    batches: tuple[int, ...] | None = None,
    compile_workers: tuple[int, ...] = (0,),
) -> None:
    """A cached epoch through the workflow's DataModule against the same steps on a batch
    already on the device (``steps_alone``: timed once, before any epoch's loader exists;
    ``LOADER_RATIOS``), for each of ``worker_counts`` DataLoader workers; with 0 workers
    once per ``prefetch_depths`` (``train.prefetch_batches``: batches made ahead in a thread).
    Each of ``compile_modes`` other than ``eager`` adds its own ``steps_alone_<mode>`` and the
    rows of 0 workers and the deepest prefetch with the model through ``torch.compile`` in
    that mode (``reduce-overhead``: CUDA graphs, fewer kernel launches for the launch-bound
    small head), or ``graph-step``: the whole step captured as one CUDA graph on batches
    padded to fixed widths (``GraphStep``; CUDA only, an error row elsewhere); with each of
    ``compile_workers`` (0: the deepest prefetch; more: that many DataLoader workers, no
    prefetch thread, also at tiny size), so a step made short shows whether workers feed it
    faster than the main process. ``batches``:
    the batch sizes, each with its own rows (suffix ``_b<batch>`` for any but the workflow's
    32; default 32, the tiny run 8); the cache holds at least 16 batches of the largest."""
    if rec.left() < 60 and not tiny:
        rec.add("loader", "epoch", {"skipped": "budget"})
        return

    batches = batches or ((8,) if tiny else (32,))
    n = max(96 if tiny else 2048, 16 * max(batches))
    start = time.perf_counter()
    paths, widths = _synthetic_caches(work, n, tiny)
    build_s = time.perf_counter() - start
    rec.data["loader_ratios"] = LOADER_RATIOS
    for batch in batches:
        if rec.left() < 60 and not tiny:
            rec.add("loader", _batch_key("epoch", batch), {"skipped": "budget"})
            continue
        options = (worker_counts, prefetch_depths, compile_modes, backend, compile_workers)
        _loader_batch(rec, device, tiny, paths, widths, n, build_s, batch, options)


def workflow_section(rec, device, tiny: bool, work: Path, epochs: int) -> None:
    """The workflow's own training (``IsoFormerModule`` under a Lightning ``Trainer``, as
    ``isoflow.train`` builds them: config/config.yaml's model and train settings, clipping,
    warmup and cosine, bf16-mixed on CUDA) on the loader section's synthetic caches, ``epochs``
    epochs with ``train.cuda_graph`` false, then true: each epoch's wall (CUDA synchronised
    at both ends), the steady epoch (the median after the first) and its ratio, and how far
    the captured run's losses are from the eager run's (bf16; not bit-equal: padding and
    captured kernels round differently). Off CUDA (``--tiny``) the steps run without capture
    (the module's ``graph_capture``), as the unit tests run them."""
    import statistics

    import pytorch_lightning as pl
    import yaml

    from isoflow.lightning import IsoFormerModule
    from isoflow.loader import IsoformDataModule

    if rec.left() < 90 and not tiny:
        rec.add("workflow", "cuda_graph", {"skipped": "budget"})
        return
    batch = 8 if tiny else 32
    n = 96 if tiny else 8192
    paths, widths = _synthetic_caches(work, n, tiny)
    config = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text()
    )
    if tiny:
        config["model"].update(d_model=32, heads=4)
    config["model"]["cached_modalities"] = ["dna", "rna", "protein"]
    config["train"].update(
        batch_size=batch, max_epochs=epochs, patience=epochs + 1, num_workers=0, compile=False
    )
    experiment = {
        "modalities": ["dna", "rna", "protein"],
        "dna_encoder": "enformer",
        "aggregator": "cross_attention",
    }
    cuda = device.type == "cuda"

    class EpochClock(pl.Callback):
        def __init__(self):
            self.walls, self.train, self.valid, self.started = [], [], [], 0.0

        def on_train_epoch_start(self, trainer, module):
            sync(device)
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            sync(device)
            self.walls.append(time.perf_counter() - self.started)
            # the epoch's validation ran before this hook (as isoflow.lightning.History reads)
            self.train.append(float(trainer.callback_metrics["train_loss"]))
            self.valid.append(float(trainer.callback_metrics["val_loss"]))

    results = {}
    for graph in (False, True):
        name = "cuda_graph" if graph else "eager"
        config["train"]["cuda_graph"] = graph
        try:
            pl.seed_everything(0, workers=False, verbose=False)
            data = IsoformDataModule(
                paths["dataset"],
                experiment["modalities"],
                cache_dirs=paths["caches"],
                batch_size=batch,
                num_workers=0,
                prefetch_batches=int(config["train"]["prefetch_batches"]),
            )
            data.setup()
            module = IsoFormerModule(config, experiment, data.tissues, cached_dims=widths)
            module.graph_capture = cuda  # a CPU runs the same steps without a graph
            clock = EpochClock()
            trainer = pl.Trainer(
                max_epochs=epochs,
                accelerator="gpu" if cuda else "cpu",
                devices=1,
                precision="bf16-mixed" if cuda else "32-true",
                gradient_clip_val=None if graph else config["train"]["grad_clip"],
                gradient_clip_algorithm="norm",
                callbacks=[clock],
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
            )
            trainer.fit(module, datamodule=data)
            steady = statistics.median(clock.walls[1:] or clock.walls)
            row = {
                "captured": graph and cuda,
                "batch": batch,
                "transcripts": n,
                "epochs_s": [round(w, 3) for w in clock.walls],
                "steady_epoch_s": round(steady, 3),
                "train_loss": [round(v, 6) for v in clock.train],
                "val_loss": [round(v, 6) for v in clock.valid],
            }
            if graph:
                step = module._graph_step
                row |= {"graphs": step.graphs, "eager_steps": step.eager_steps}
            results[name] = row
            rec.add("workflow", name, row)
        except Exception as error:  # a failing mode is a row, not the end of the run
            rec.add("workflow", name, {"error": f"{type(error).__name__}: {str(error)[:300]}"})
        finally:
            module = data = trainer = None
            free(device)
    if len(results) == 2:
        eager, graph = results["eager"], results["cuda_graph"]

        def rel(a, b):
            if len(a) != len(b) or not a:  # one stopped early: no epoch-by-epoch comparison
                return None
            return max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b, strict=True))

        rec.add(
            "workflow",
            "ratio",
            {
                "steady_epoch_eager_over_graph": round(
                    eager["steady_epoch_s"] / graph["steady_epoch_s"], 3
                ),
                "train_loss_max_rel_diff": rel(eager["train_loss"], graph["train_loss"]),
                "val_loss_max_rel_diff": rel(eager["val_loss"], graph["val_loss"]),
            },
        )


def _batch_key(key: str, batch: int) -> str:
    """A row's name at ``batch``: unchanged at the default (the workflow's 32; the tiny
    run's 8), ``<key>_b<batch>`` at any other."""
    return key if batch == (8 if TINY else 32) else f"{key}_b{batch}"


def _loader_batch(rec, device, tiny, paths, widths, n, build_s, batch, options) -> None:
    """``loader_section``'s rows at one batch size; ``options``: its worker counts, prefetch
    depths, compile modes, compile backend and the compiled rows' worker counts."""
    worker_counts, prefetch_depths, compile_modes, backend, compile_workers = options
    # one reference per model configuration, before any epoch's loader (and its workers) exists
    reference = _step_reference(device, paths, widths, batch)
    rec.add("loader", _batch_key("steps_alone", batch), reference)
    for workers in (0,) if tiny else worker_counts:
        for depth in prefetch_depths if workers == 0 else (0,):
            _loader_epochs(rec, device, paths, widths, batch, workers, n, build_s, reference, depth)
    for mode in compile_modes:
        if mode == "eager":
            continue
        compiled = None
        for workers in compile_workers:
            depth = max(prefetch_depths) if workers == 0 else 0
            key = _loader_key(workers, depth, mode, batch)
            if rec.left() < 60 and not tiny:
                rec.add("loader", key, {"skipped": "budget"})
                continue
            try:
                if compiled is None:  # the mode's reference, once, before its epochs' loaders
                    compiled = _step_reference(device, paths, widths, batch, mode, backend)
                    rec.add("loader", _batch_key(f"steps_alone_{mode}", batch), compiled)
                epoch_args = (rec, device, paths, widths, batch, workers, n, build_s, compiled)
                _loader_epochs(*epoch_args, depth, mode, backend)
            except Exception as error:  # a mode that fails is a row, not the end of the run
                rec.add("loader", key, {"error": f"{type(error).__name__}: {str(error)[:300]}"})
                torch._dynamo.reset()
                free(device)


def _loader_key(workers: int, prefetch: int, compile_mode: str, batch: int | None = None) -> str:
    """A cached-epoch row's name: ``epoch_workers0_prefetch2_reduce-overhead`` (``_b256``
    after it at a batch other than 32)."""
    key = f"epoch_workers{workers}" + (f"_prefetch{prefetch}" if prefetch else "")
    key += f"_{compile_mode}" if compile_mode != "eager" else ""
    return key if batch is None else _batch_key(key, batch)


def _graphs() -> int:
    """Graphs dynamo has compiled in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compiled_model(model, mode: str, backend: str):
    """``model`` through ``torch.compile`` in ``mode`` (``default``, ``reduce-overhead``,
    ``max-autotune``); a mode is inductor's option, so another backend (``eager``: capture
    only, the CPU tests) compiles without it."""
    kwargs = {"mode": mode} if backend == "inductor" and mode != "default" else {}
    return torch.compile(model, backend=backend, **kwargs)


def _to_device(b: dict, device) -> tuple[dict, torch.Tensor]:
    """A collated cached batch's inputs and target on ``device``."""
    inputs = {
        m: (e.to(device, non_blocking=True), k.to(device, non_blocking=True))
        for m, (e, k) in b["inputs"].items()
    }
    return inputs, b["target"].to(device, non_blocking=True)


# graph-step's padding and step: the package's (the workflow's train.cuda_graph)
pad_to_width = graph_step.pad_to_width


def _loader_model(widths, device, compile_mode: str, backend: str):
    """The cached epoch's IsoFormer, its optimiser and its step (``run_step(inputs, target)``),
    through ``torch.compile`` in ``compile_mode`` unless eager (dynamo reset first), or
    captured whole as a CUDA graph (``graph-step``: ``GraphStep``)."""
    torch.manual_seed(0)
    model = _isoformer(widths).to(device).train()
    if compile_mode == "graph-step":
        if device.type != "cuda":
            raise RuntimeError("graph-step captures a CUDA graph: CUDA only")
        # the LR a tensor: a float would be baked into the graph (GraphStep refuses it)
        lr = torch.tensor(1e-4, device=device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, capturable=True, foreach=True)
        # every modality padded to the caches' fixed width: one graph
        pad = {m: LOADER_POOL_TO for m in widths}
        step = graph_step.GraphStep(
            model,
            optimizer,
            device,
            autocast_dtype=torch.bfloat16,
            max_widths=pad,
            min_width=LOADER_POOL_TO,
        )
        return model, optimizer, step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    graphs = compile_mode == "reduce-overhead" and backend == "inductor"
    step_model = model
    if compile_mode != "eager":
        torch._dynamo.reset()
        step_model = compiled_model(model, compile_mode, backend)

    def run_step(inputs, target):
        if graphs:  # a new iteration: CUDA graph trees may reuse the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        train_step(step_model, optimizer, inputs, target, device)

    return model, optimizer, run_step


def _device_time_s(fn, device) -> float | None:
    """Seconds of GPU activity (kernels, copies, memsets: torch.profiler's CUDA events, their
    self time summed) during one call of ``fn``; None off CUDA, where there is none to sum."""
    from torch.profiler import ProfilerActivity, profile

    if device.type != "cuda":
        return None
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync(device)
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    return sum(e.self_device_time_total for e in events) / 1e6


def _time_steps(batch, n_batches, widths, device, compile_mode, backend) -> dict:
    """``n_batches`` steps of a fresh model on ``batch`` kept on the device (its model,
    optimiser and tensors gone on return)."""
    _, _, run_step = _loader_model(widths, device, compile_mode, backend)
    inputs, target = _to_device(batch, device)
    start = time.perf_counter()
    run_step(inputs, target)  # any compile, the kernels' first launch
    sync(device)
    first_step_s = time.perf_counter() - start
    s_step = timed(lambda: run_step(inputs, target), device, min_iters=n_batches, min_s=0.0)

    def steps():
        for _ in range(n_batches):
            run_step(inputs, target)

    device_s = _device_time_s(steps, device)
    return {
        "first_step_s": round(first_step_s, 3),
        "step_ms": round(1000 * s_step, 3),
        "steps_s": round(s_step * n_batches, 3),
        "device_s": None if device_s is None else round(device_s, 3),
    }


def _step_reference(device, paths, widths, batch, compile_mode="eager", backend="inductor"):
    """The cached epoch's steps with nothing else running: one batch drawn through a 0-worker
    loader (no worker process, no prefetch thread), that loader dropped, then one epoch's
    number of steps on the batch kept on the device. Timed once per model configuration,
    before any epoch's DataLoader exists, and every row of that configuration is divided by
    it (each row used to time its own after its epochs, while 4 persistent workers
    restarted and prefetched beside it: 0.673 s against 0.996 s for the same device work).
    ``step_s``: host wall-clock per step (a launch-bound step: the step loop's time, not
    kernel occupancy); ``device_s``: the GPU's activity in those steps (profiler), or None
    off CUDA."""
    from isoflow.loader import IsoformDataModule

    module = IsoformDataModule(
        paths["dataset"],
        ["dna", "rna", "protein"],
        cache_dirs=paths["caches"],
        batch_size=batch,
        num_workers=0,
        prefetch_batches=0,
    )
    module.setup()
    loader = module.train_dataloader()
    n_batches = len(loader)
    first = next(iter(loader))
    loader = module = None
    gc.collect()
    dynamo = compile_mode not in ("eager", "graph-step")
    graphs_before = _graphs() if dynamo else 0
    result = {
        "batches": n_batches,
        **_time_steps(first, n_batches, widths, device, compile_mode, backend),
    }
    if dynamo:
        result["graphs"] = _graphs() - graphs_before
    if compile_mode != "eager":
        torch._dynamo.reset()
    free(device)
    return result


# What a cached-epoch row's ratios are (recorded beside the rows).
LOADER_RATIOS = (
    "step_share: the reference's steps (one epoch's number, on one batch kept on the device, "
    "timed once per model configuration before any epoch's DataLoader existed; host "
    "wall-clock of a launch-bound step) over the epoch's wall: the step loop's share of the "
    "epoch, not kernel occupancy. gpu_busy: the GPU's activity in those steps (CUDA kernels, "
    "copies and memsets summed by torch.profiler) over the epoch's wall; None off CUDA"
)


def _loader_epochs(
    rec,
    device,
    paths,
    widths,
    batch,
    workers,
    n,
    build_s,
    reference,
    prefetch=0,
    compile_mode="eager",
    backend="inductor",
) -> None:
    from isoflow.loader import IsoformDataModule

    module = IsoformDataModule(
        paths["dataset"],
        ["dna", "rna", "protein"],
        cache_dirs=paths["caches"],
        batch_size=batch,
        num_workers=workers,
        prefetch_batches=prefetch,
    )
    module.setup()
    loader = module.train_dataloader()
    dynamo = compile_mode not in ("eager", "graph-step")
    graphs_before = _graphs() if dynamo else 0
    _, _, run_step = _loader_model(widths, device, compile_mode, backend)

    def epoch(with_steps: bool) -> tuple[float, int]:
        sync(device)
        t0, n_batches = time.perf_counter(), 0
        for b in loader:
            inputs, target = _to_device(b, device)
            if with_steps:
                run_step(inputs, target)
            n_batches += 1
        sync(device)
        return time.perf_counter() - t0, n_batches

    first_s, _ = epoch(True)  # warm-up: workers start, page cache, kernels, any compile
    loader.sampler.set_epoch(1)
    wall, n_batches = epoch(True)
    loader.sampler.set_epoch(2)
    load_only, _ = epoch(False)
    if n_batches != reference["batches"]:
        raise RuntimeError(f"{n_batches} batches in the epoch, {reference['batches']} timed")
    device_s = reference["device_s"]
    rec.add(
        "loader",
        _loader_key(workers, prefetch, compile_mode, batch),
        {
            "compile_mode": compile_mode,
            **({"backend": backend, "graphs": _graphs() - graphs_before} if dynamo else {}),
            # graph-step: the batches of another size (an epoch's last) that ran eager, in the
            # warm-up epoch and the timed one together
            **({"eager_steps": run_step.eager_steps} if compile_mode == "graph-step" else {}),
            "first_epoch_s": round(first_s, 3),
            "transcripts": n,
            "batch": batch,
            "num_workers": workers,
            "prefetch_batches": prefetch,
            "batches": n_batches,
            "cache_build_s": round(build_s, 1),
            "epoch_s": round(wall, 3),
            "loader_only_s": round(load_only, 3),
            "steps_alone_s": reference["steps_s"],
            "step_share": round(min(reference["steps_s"] / wall, 1.0), 3),
            "gpu_device_s": device_s,
            "gpu_busy": None if device_s is None else round(min(device_s / wall, 1.0), 3),
        },
    )
    # the workers of a persistent loader end here, not whenever the collector gets to them
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    run_step = loader = module = iterator = None
    if compile_mode != "eager":
        torch._dynamo.reset()
    free(device)


def finetune_section(
    rec: Recorder,
    device,
    tiny: bool,
    peak,
    modes: tuple[str, ...] = ("eager",),
    backend: str = "inductor",
    only: tuple[str, ...] | None = None,
    batch_scale: int = 1,
    checkpointing: bool = False,
) -> dict:
    """Optimiser steps with the encoders in the graph. ``modes``: ``eager``, and ``compiled``
    (the whole model through ``nn.Module.compile`` with ``backend``, forward and backward:
    ``compile_s`` is the first step, the FLOPs are the eager step's, since compiling changes
    no arithmetic). ``only``: those of ``FINETUNE_CASES``, in that order. ``batch_scale``
    multiplies each case's batch (MFU against batch size; the workflow trains at
    ``train.batch_size``, 32). ``checkpointing``: the encoders' blocks recomputed in the
    backward pass (the spec key ``gradient_checkpointing``); MFU then counts the model's
    FLOPs (one sequence's step without recomputation, times the batch: every input has the
    same length), and ``tflop_executed_per_step`` what ran, recomputation included. The
    projection reads the eager rows."""
    rng = np.random.default_rng(1)
    rates = {}
    cases = [
        (label, names, batches[1 if tiny else 0] * batch_scale)
        for label, (names, batches) in FINETUNE_CASES.items()
        if only is None or label in only
    ]
    if only is not None:
        cases.sort(key=lambda case: only.index(case[0]))
    for (label, names, batch), mode in [(c, m) for c in cases for m in modes]:
        label = label if mode == "eager" else f"{label}_{mode}"
        if rec.left() < 40 and not tiny:
            rec.add("finetune", label, {"skipped": "budget"})
            continue
        result = {"batch": batch} | ({"gradient_checkpointing": True} if checkpointing else {})
        try:
            encoders = {}
            raw = {}
            for modality, name in names.items():
                enc = build_encoder(name, tiny)
                enc.trainable_last(-1)
                encoders[modality] = enc
                size = INPUTS[name]["tiny" if tiny else "real"]
                raw[modality] = random_sequences(name, batch, size, rng)
            dims = {} if "dna" in names else {"dna": 16 if tiny else WIDTHS["dna"]}
            torch.manual_seed(0)
            model = _isoformer(dims, encoders).to(device).train()
            if "dna" not in names:
                raw |= _cached_inputs(batch, {"dna": 64}, {"dna": dims["dna"]}, device)
            tokens = model.tokenize(raw, device)
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(trainable, lr=1e-5)
            target = torch.randn(batch, 30, device=device)
            step = partial(train_step, model, optimizer, tokens, target, device)
            # FLOPs counted on one sequence's step, times the batch (every input has the same
            # length), before any timing and eager (the counter does not see into compiled
            # graphs): counting the whole batch's step under FlopCounterMode after the timed
            # steps ran NT-v2 + ESM-2 at batch 32 with checkpointing out of the H200's 139 GiB
            # (2026-11-28) and lost the measured rate with it
            one = partial(train_step, model, optimizer, _rows(tokens, 1), target[:1], device)
            flops = count_flops(one) * batch
            if checkpointing:  # the model's FLOPs above; what runs, recomputation included
                for enc in encoders.values():
                    enc.checkpoint_blocks()
                result["tflop_executed_per_step"] = round(count_flops(one) * batch / 1e12, 4)
            if mode == "compiled":
                from isoflow.train import compile_model  # what train.compile runs

                compile_model(model, backend)
                start = time.perf_counter()
                step()
                sync(device)
                result["compile_s"] = round(time.perf_counter() - start, 2)
                result["backend"] = backend
            with peak_memory(device, result):
                s = timed(
                    step, device, min_iters=1 if tiny else 3, min_s=0 if tiny else 4.0, warmup=2
                )
            result.update(
                trainable_m=round(sum(p.numel() for p in trainable) / 1e6, 1),
                steps_per_s=round(1 / s, 3),
                seq_per_s=round(batch / s, 3),
                tflop_per_step=round(flops / 1e12, 4),
                mfu=mfu(flops / s, peak),
            )
            if mode == "eager":
                rates[label] = batch / s
        except Exception as error:
            if tiny and not is_oom(error):
                raise
            # an OOM's whole message: what PyTorch held, reserved and could not place
            result["error"] = (
                f"{type(error).__name__}: {str(error)[: 200 if not is_oom(error) else 900]}"
            )
        rec.add("finetune", label, result)
        model = optimizer = tokens = encoders = None
        free(device)
    return rates


def _rows(tokens: dict, n: int) -> dict:
    """The first ``n`` rows of each modality's inputs (token dicts or ``(emb, mask)``)."""
    return {
        m: {k: v[:n] for k, v in t.items()} if isinstance(t, dict) else tuple(x[:n] for x in t)
        for m, t in tokens.items()
    }


def projection(rec: Recorder, embed_rates: dict, train_rate: float | None, ft_rates: dict):
    """GPU-hours of the full reproduction from the measured rates (upper bounds: every
    transcript counted as its own DNA window, RNA at the full 2,048 tokens, proteins at
    1,022 residues)."""
    import yaml

    from isoflow.experiments import expand_experiments

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config |= yaml.safe_load((ROOT / "config/ablations.yaml").read_text())
    runs = expand_experiments(config)
    epochs = int(config["train"]["max_epochs"])
    batch = int(config["train"]["batch_size"])
    steps_full = math.ceil(TRAIN_FRACTION * DATASET_TRANSCRIPTS / batch) * epochs
    hours = {}
    n = DATASET_TRANSCRIPTS
    for modality, name in (("dna", "enformer"), ("rna", "nucleotide_transformer")):
        if embed_rates.get(name):
            hours[f"embed_{modality}_{name}"] = n / embed_rates[name] / 3600
    if embed_rates.get("esm2"):
        hours["embed_protein_esm2"] = n / embed_rates["esm2"] / 3600
    if embed_rates.get("nucleotide_transformer") and any(
        r.get("dna_encoder") == "nt_dna" for r in runs.values()
    ):
        hours["embed_dna_nt_dna"] = n / embed_rates["nucleotide_transformer"] / 3600
    if train_rate:
        hours["train_one_run"] = steps_full / train_rate / 3600
        grid_steps = sum(float(r.get("fraction", 1.0)) for r in runs.values()) * steps_full
        hours[f"train_ablation_grid_{len(runs)}_runs"] = grid_steps / train_rate / 3600
    if ft_rates.get("enformer_end_to_end"):
        samples = TRAIN_FRACTION * n * epochs
        hours["enformer_end_to_end_one_run"] = samples / ft_rates["enformer_end_to_end"] / 3600
    if ft_rates.get("nt_esm2_trainable"):
        samples = TRAIN_FRACTION * n * epochs
        hours["nt_esm2_finetune_one_run"] = samples / ft_rates["nt_esm2_trainable"] / 3600
    # the grid holds the full model's runs too, so "train_one_run" is not added again
    cached = [k for k in hours if k.startswith("embed_") or k.startswith("train_ablation")]
    hours = {k: round(v, 3) for k, v in hours.items()}
    hours["total_cached_path"] = round(sum(hours[k] for k in cached), 3)
    hours["assumptions"] = (
        f"{n:,} transcripts (IsoFormer's dataset card), each its own DNA window, RNA at 2,048 "
        f"tokens, proteins at 1,022 residues (upper bounds); {epochs} epochs of batch {batch} "
        f"over {TRAIN_FRACTION:.0%} of them with no early stop; grid = config.yaml + "
        "ablations.yaml"
    )
    rec.add("projection", "gpu_hours", hours)


def best_rate(embed: dict, name: str) -> float | None:
    """The encoder's best whole-path rate compiled under bf16 autocast (what rule embed runs
    with ``embed.precision: bf16`` and ``embed.compile: true``, config.yaml's settings), else
    under bf16 autocast, else under fp32."""
    for precision in ("bf16c", "bf16", "fp32"):
        rates = [
            v["seq_per_s_path"]
            for k, v in embed.items()
            if k.startswith(f"{name}_{precision}_b") and "seq_per_s_path" in v
        ]
        if rates:
            return max(rates)
    return None


def _package_versions() -> dict[str, str | None]:
    """The versions of the packages a run imports beside torch (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("pytorch-lightning", "transformers", "enformer-pytorch", "fair-esm"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU tests)")
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument(
        "--sections",
        default="reference,embed,train_cache,loader,finetune,projection",
        help="comma-separated subset (and workflow: the workflow's training, eager against "
        "train.cuda_graph; not in the default)",
    )
    parser.add_argument(
        "--precisions", default="fp32,bf16,bf16c", help="embed: fp32,bf16,bf16c,bf16w"
    )
    parser.add_argument(
        "--compile-cpu", action="store_true", help="embed: the bf16c (compiled) rows on a CPU too"
    )
    parser.add_argument(
        "--encoders",
        default=",".join(ENCODERS),
        help=f"embed: which encoders, in this order (of {','.join(ENCODERS)})",
    )
    parser.add_argument(
        "--finetune-cases",
        default=None,
        help=f"finetune: which cases, in this order (of {','.join(FINETUNE_CASES)})",
    )
    parser.add_argument(
        "--finetune-modes",
        default="eager",
        help="finetune: eager,compiled (the whole model through torch.compile)",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="finetune's and loader's compiled rows: torch.compile backend ('eager': capture "
        "only, for tests)",
    )
    parser.add_argument("--batch-scale", type=int, default=1, help="embed batch multiplier")
    parser.add_argument(
        "--finetune-batch-scale", type=int, default=1, help="finetune batch multiplier"
    )
    parser.add_argument(
        "--finetune-checkpointing",
        action="store_true",
        help="finetune: the encoders' blocks recomputed in the backward pass",
    )
    parser.add_argument("--loader-workers", default="4", help="comma-separated worker counts")
    parser.add_argument(
        "--loader-prefetch", default="0,2", help="prefetch_batches with 0 workers (comma-separated)"
    )
    parser.add_argument(
        "--loader-compile",
        default="eager",
        help="loader: the cached epoch's model also through torch.compile in these modes "
        f"(of {','.join(LOADER_COMPILE_MODES)}; 0 workers, the deepest prefetch, unless "
        "--loader-compile-workers)",
    )
    parser.add_argument(
        "--loader-compile-workers",
        default="0",
        help="loader: comma-separated DataLoader worker counts for the --loader-compile rows "
        "(0: the main process with the deepest --loader-prefetch; more: that many workers, "
        "no prefetch thread); whether workers feed a graph-step epoch faster",
    )
    parser.add_argument(
        "--loader-batch",
        default=None,
        help="loader: comma-separated batch sizes, each with its own rows (default 32, the "
        "workflow's train.batch_size; --tiny 8): how the GPU's share of a cached epoch "
        "grows with the batch",
    )
    parser.add_argument(
        "--workflow-epochs",
        type=int,
        default=4,
        help="workflow: epochs of each training (eager, then train.cuda_graph)",
    )
    parser.add_argument("--profile", action="store_true", help="embed: GPU kernel breakdown")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's dense bf16 peak (TFLOP/s) for MFU; needed on a GPU whose exact name "
        f"is not one of {', '.join(PEAK_BF16)}",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder in which the loader's caches are built (in a temporary folder of their own, "
        "removed at the end; the folder's other files are left alone)",
    )
    args = parser.parse_args(argv)
    global TINY
    TINY = args.tiny
    if args.tiny:
        torch.set_num_threads(1)  # a test on a shared CPU: no spinning OpenMP threads
    sections = set(args.sections.split(","))
    encoders = tuple(args.encoders.split(","))
    unknown = sorted(set(encoders) - set(ENCODERS))
    if unknown:
        parser.error(f"--encoders: unknown {', '.join(unknown)} (known: {', '.join(ENCODERS)})")
    # every option checked before anything runs: a typo costs no device time
    modes = tuple(args.finetune_modes.split(","))
    if set(modes) - {"eager", "compiled"}:
        parser.error(f"--finetune-modes: {args.finetune_modes} (of eager,compiled)")
    loader_modes = tuple(args.loader_compile.split(","))
    if set(loader_modes) - set(LOADER_COMPILE_MODES):
        parser.error(
            f"--loader-compile: {args.loader_compile} (of {','.join(LOADER_COMPILE_MODES)})"
        )
    try:
        compile_workers = tuple(int(w) for w in args.loader_compile_workers.split(","))
    except ValueError:
        compile_workers = (-1,)
    if min(compile_workers) < 0:
        parser.error(f"--loader-compile-workers: {args.loader_compile_workers} (counts >= 0)")
    only = tuple(args.finetune_cases.split(",")) if args.finetune_cases else None
    if args.batch_scale < 1 or args.finetune_batch_scale < 1:
        parser.error("--batch-scale and --finetune-batch-scale: a whole number of at least 1")
    try:
        loader_batches = (
            tuple(int(b) for b in args.loader_batch.split(",")) if args.loader_batch else None
        )
    except ValueError:
        loader_batches = (0,)
    if loader_batches and min(loader_batches) < 1:
        parser.error(f"--loader-batch: {args.loader_batch} (whole numbers of at least 1)")
    if only and set(only) - set(FINETUNE_CASES):
        parser.error(f"--finetune-cases: {args.finetune_cases} (of {','.join(FINETUNE_CASES)})")
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    peak = None
    if args.peak_tflops is not None:
        if args.peak_tflops <= 0:
            parser.error(f"--peak-tflops: {args.peak_tflops} (a positive TFLOP/s figure)")
        peak = args.peak_tflops * 1e12
    elif device.type == "cuda":
        peak = peak_for(name)
        if peak is None:  # before anything runs or is written: no MFU against a guess
            parser.error(
                f"no dense bf16 peak known for the device {name!r} (known: "
                f"{', '.join(PEAK_BF16)}); give it with --peak-tflops, from the vendor's "
                "data sheet for this exact model"
            )
    rec = Recorder(args.out, started, args.budget_s)
    rec.data.update(
        device=name or "cpu",
        peak_bf16_tflops=peak / 1e12 if peak else None,
        peak_source=(
            "--peak-tflops" if args.peak_tflops is not None else "PEAK_BF16" if peak else None
        ),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        # what the run imported (a device image's own or the carried wheels' pins)
        packages=_package_versions(),
        tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        tf32_cudnn=torch.backends.cudnn.allow_tf32,
        tiny=args.tiny,
        command=" ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    )
    rec.write()
    print(f"device {rec.data['device']}, peak bf16 {rec.data['peak_bf16_tflops']} TFLOP/s")
    if "reference" in sections:
        rec.data["matmul_bf16_tflops"] = round(reference(rec, device, args.tiny) / 1e12, 1)
    if "embed" in sections:
        embed_section(
            rec,
            device,
            args.tiny,
            peak,
            tuple(args.precisions.split(",")),
            args.batch_scale,
            args.profile,
            args.compile_cpu,
            encoders,
        )
    train_rates = {}
    if "train_cache" in sections:
        train_rates = train_cache_section(rec, device, args.tiny, peak)
    if "loader" in sections:
        if args.work:  # bench_loader.build_inputs writes into a new empty folder only
            args.work.mkdir(parents=True, exist_ok=True)
        # a folder of its own (inside --work when given), removed at the end
        with tempfile.TemporaryDirectory(prefix="gpu_loader_", dir=args.work) as tmp:
            workers = tuple(int(w) for w in args.loader_workers.split(","))
            depths = tuple(int(d) for d in args.loader_prefetch.split(","))
            loader_section(
                rec,
                device,
                args.tiny,
                Path(tmp),
                workers,
                depths,
                loader_modes,
                args.compile_backend,
                loader_batches,
                compile_workers,
            )
    if "workflow" in sections:
        if args.work:
            args.work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="gpu_workflow_", dir=args.work) as tmp:
            workflow_section(rec, device, args.tiny, Path(tmp), args.workflow_epochs)
    ft_rates = {}
    if "finetune" in sections:
        ft_rates = finetune_section(
            rec,
            device,
            args.tiny,
            peak,
            modes,
            args.compile_backend,
            only,
            args.finetune_batch_scale,
            args.finetune_checkpointing,
        )
    if "projection" in sections:
        embed = rec.data["sections"].get("embed", {})
        rates = {n: best_rate(embed, n) for n in ENCODERS}
        projection(rec, rates, train_rates.get("pool64"), ft_rates)
    rec.data["wall_s"] = round(time.perf_counter() - started, 1)
    rec.write()
    print(f"done in {rec.data['wall_s']} s -> {args.out}")


if __name__ == "__main__":
    main()
