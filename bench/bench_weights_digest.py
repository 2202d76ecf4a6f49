"""The encoder weights' digest that keys an embed job's resume and its cache's meta.json
(``isoflow.embed.weights_digest``), at real size, against the reference in the same run:
hashlib's sha256 over the same bytes already in one buffer (the floor for any sha256 of the
weights). Prints one row per encoder: MB hashed, seconds, GB/s, and the ratio.

    python bench/bench_weights_digest.py --encoders esm2,nucleotide_transformer,borzoi,enformer

Random weights at real size (``random_encoder(real_size=True)``, the classes pretrained
weights load into; NT-v2 250M through bench/gpu.py's stand-in, its weight count), one torch
thread, the digest taken once per encoder and job.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import torch
from gpu import SPECS  # bench/gpu.py's: NT-v2 250M's weights in a plain feed-forward

from isoflow.embed import weights_digest
from isoflow.model.encoders import random_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="esm2,nucleotide_transformer,borzoi,enformer")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| encoder | MB | weights_digest (s) | sha256, one buffer (s) | ratio | GB/s |")
    print("|---|---|---|---|---|---|")
    for name in args.encoders.split(","):
        encoder = random_encoder(name, SPECS.get(name, {}), real_size=True)
        tensors = list(encoder.state_dict().values())
        size = sum(t.numel() * t.element_size() for t in tensors)
        flat = b"".join(
            t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            for t in tensors
            if t.numel()
        )
        digest = buffer = float("inf")
        for _ in range(args.repeats):  # alternating, best of each
            start = time.perf_counter()
            weights_digest(encoder)
            digest = min(digest, time.perf_counter() - start)
            start = time.perf_counter()
            hashlib.sha256(flat).hexdigest()
            buffer = min(buffer, time.perf_counter() - start)
        print(
            f"| {name} | {size / 1e6:,.0f} | {digest:.2f} | {buffer:.2f} | {digest / buffer:.2f} "
            f"| {size / digest / 1e9:.2f} |"
        )
        del encoder, tensors, flat


if __name__ == "__main__":
    main()
