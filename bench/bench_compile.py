"""torch.compile of a frozen encoder's forward (``embed.compile``) against eager on this
machine: compile time (the first call) and the steady forward, both on the same batch in the
same run (medians of interleaved repeats after a warm-up), and the largest difference of the
outputs.

    python bench/bench_compile.py --encoder esm2 --batch 2 --length 256 [--tiny]

Real-size random weights by default (``random_encoder(real_size=True)``), fp32 (a CPU never
autocasts in rule embed). The GPU figures come from bench/gpu.py's bf16c rows.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def random_tokens(encoder, batch: int, length: int) -> dict:
    """The tokens of ``batch`` random sequences of ``length`` (bp, nt or residues) for
    ``encoder``'s modality, seed 0 (also bench/bench_cpu_kernels.py)."""
    rng = np.random.default_rng(0)
    if encoder.modality == "dna":
        seqs = [rng.integers(0, 4, length, dtype=np.uint8) for _ in range(batch)]
    else:
        letters = list("ACGT" if encoder.modality == "rna" else "ACDEFGHIKLMNPQRSTVWY")
        seqs = ["".join(rng.choice(letters, length)) for _ in range(batch)]
    return encoder.tokenize(seqs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="esm2")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=256, help="residues, nt or bp")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--backend", default="inductor")
    args = parser.parse_args(argv)

    from isoflow.embed import CompiledForward
    from isoflow.model.encoders import random_encoder

    encoder = random_encoder(args.encoder, {"source": "tiny"}, real_size=not args.tiny).eval()
    tokens = random_tokens(encoder, args.batch, args.length)

    def once(fn) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            fn(**tokens)
        return time.perf_counter() - start

    with torch.no_grad():
        want, _ = encoder(**tokens)
    once(encoder)  # warm-up
    with CompiledForward(encoder, args.backend) as compiled:
        start = time.perf_counter()
        with torch.no_grad():
            got, _ = compiled.forward(**tokens)
        compile_s = time.perf_counter() - start
        # interleaved: encoder.forward is the eager forward (the in-place compile wraps
        # __call__ only)
        eager, fused = [], []
        for _ in range(args.repeats):
            eager.append(once(encoder.forward))
            fused.append(once(compiled.forward))
        graphs = compiled.graphs
    eager_s, compiled_s = float(np.median(eager)), float(np.median(fused))
    result = {
        "encoder": args.encoder,
        "size": "tiny" if args.tiny else "real",
        "params_m": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 1),
        "batch": args.batch,
        "length": args.length,
        "threads": torch.get_num_threads(),
        "backend": args.backend,
        "graphs": graphs,
        "first_call_s": round(compile_s, 1),
        "eager_forward_s": round(eager_s, 3),
        "compiled_forward_s": round(compiled_s, 3),
        "eager_runs": [round(t, 3) for t in eager],
        "compiled_runs": [round(t, 3) for t in fused],
        "compiled_over_eager": round(compiled_s / eager_s, 3),
        "max_abs_diff": float((got - want).abs().max()),
        "max_abs": float(want.abs().max()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
