"""What the bundle's digest check (``isoflow.bundle.check_digests``: the sha256 of
``model.pt`` and each ``encoders/NAME.pt``, checked at every load) adds to loading the same
file with ``torch.load`` (the reference in the same run). A fine-tuned bundle carries each
trained encoder's weights, so the case that matters is an encoder at real size: prints one
row per encoder: MB, torch.load (s), sha256 of the file (s), and the check's share of
load + check.

    python bench/bench_bundle_digest.py --encoders esm2,nucleotide_transformer

Random weights at real size (``random_encoder(real_size=True)``; NT-v2 250M through
bench/gpu.py's stand-in, a plain feed-forward of width 4,608 holding its SwiGLU's weights)
saved with ``torch.save`` to a temporary folder; page cache warm (best of ``--repeats``,
alternating).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from gpu import SPECS  # bench/gpu.py's: NT-v2 250M's weights in a plain feed-forward

from isoflow.model.encoders import random_encoder
from isoflow.provenance import file_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="esm2,nucleotide_transformer")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| encoder | MB | torch.load (s) | sha256 of the file (s) | check / (load + check) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders.split(","):
            path = Path(tmp) / f"{name}.pt"
            encoder = random_encoder(name, SPECS.get(name, {}), real_size=True)
            torch.save(encoder.state_dict(), path)
            del encoder
            load = digest = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                state = torch.load(path, map_location="cpu", weights_only=True)
                load = min(load, time.perf_counter() - start)
                del state
                start = time.perf_counter()
                file_digest(path)
                digest = min(digest, time.perf_counter() - start)
            print(
                f"| {name} | {path.stat().st_size / 1e6:,.0f} | {load:.2f} | {digest:.2f} "
                f"| {digest / (load + digest):.0%} |"
            )
            path.unlink()


if __name__ == "__main__":
    main()
