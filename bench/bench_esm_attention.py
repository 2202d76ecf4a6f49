"""ESM-2 forward with fair-esm's eager attention against ``attention: sdpa``, same weights.

Builds ESM-2 at a size (default the real 150M: 30 layers, 640 wide, 20 heads) with random
weights, copies the eager encoder's state into an ``attention: sdpa`` one, and times the
frozen forward of the same batch of random proteins on each, interleaved --repeat times
after one warm-up each (fp32; bf16 autocast as rule embed runs it with --bf16 on CUDA).
Reports the median seconds per forward, the ratio sdpa/eager and the largest difference of
the embeddings relative to their largest value. On CPU this is the CPU kernels' ratio; the
GPU figure is bench/gpu.py's ``esm2_sdpa`` row.

Run: .venv/bin/python bench/bench_esm_attention.py --residues 512 --batch 2 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residues", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny ESM-2 (tests)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    args = parser.parse_args()

    from isoflow.embed import embedding_autocast
    from isoflow.model.encoders import random_encoder

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    real = not args.tiny
    eager = random_encoder("esm2", {"source": "tiny"}, real_size=real).to(device).eval()
    sdpa = random_encoder("esm2", {"source": "tiny", "attention": "sdpa"}, real_size=real)
    sdpa.load_state_dict(eager.state_dict())
    sdpa = sdpa.to(device).eval()
    rng = np.random.default_rng(0)
    letters = list("ACDEFGHIKLMNPQRSTVWY")
    proteins = ["".join(rng.choice(letters, args.residues)) for _ in range(args.batch)]
    tokens = {k: v.to(device) for k, v in eager.tokenize(proteins).items()}
    precision = "bf16" if args.bf16 else "fp32"

    def forward(encoder):
        with torch.no_grad(), embedding_autocast(device, precision):
            emb, _ = encoder(**tokens)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return emb

    outputs = {"eager": forward(eager).float(), "sdpa": forward(sdpa).float()}  # warm-up
    times: dict[str, list[float]] = {"eager": [], "sdpa": []}
    for _ in range(args.repeat):
        for name, encoder in (("eager", eager), ("sdpa", sdpa)):
            start = time.perf_counter()
            forward(encoder)
            times[name].append(time.perf_counter() - start)
    eager_s, sdpa_s = (statistics.median(times[k]) for k in ("eager", "sdpa"))
    scale = outputs["eager"].abs().max().item()
    diff = (outputs["sdpa"] - outputs["eager"]).abs().max().item()
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                f"{torch.get_num_threads()}, load "
                + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
                "size": "tiny" if args.tiny else "esm2_t30_150M (random weights)",
                "precision": precision,
                "batch": args.batch,
                "residues": args.residues,
                "eager_s": round(eager_s, 4),
                "sdpa_s": round(sdpa_s, 4),
                "sdpa_vs_eager": round(sdpa_s / eager_s, 3),
                "max_rel_diff": diff / scale if scale else 0.0,
                "all_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
