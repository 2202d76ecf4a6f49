"""The encoder weights' digest that keys an embed job's resume and its cache's meta.json
(``isoflow.embed.weights_digest``), at real size, against the reference in the same run:
hashlib's sha256 over the same bytes already in one buffer (the floor for any sha256 of the
weights). Prints one row per encoder: MB hashed, MB of distinct weights, seconds, GB/s, and
the ratio. The two sizes differ where a module registers one tensor under two names:
enformer-pytorch's state_dict lists its stem and trunk under ``stem.*`` and ``_trunk.*``
both, so the digest hashes those weights twice (kept: the digest is in every existing
cache's resume key, and changing it would rebuild every Enformer cache).

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


def unique_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a tensor listed twice counts once)."""
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        if t.numel():
            storage = t.untyped_storage()
            key = (str(t.device), storage.data_ptr())
            seen[key] = max(seen.get(key, 0), storage.nbytes())
    return sum(seen.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="esm2,nucleotide_transformer,borzoi,enformer")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny encoders (tests)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        "| encoder | MB hashed | MB distinct | weights_digest (s) | sha256, one buffer (s) "
        "| ratio | GB/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.encoders.split(","):
        spec = {"source": "tiny"} if args.tiny else SPECS.get(name, {})
        encoder = random_encoder(name, spec, real_size=not args.tiny)
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
            f"| {name} | {size / 1e6:,.0f} | {unique_bytes(tensors) / 1e6:,.0f} | {digest:.2f} "
            f"| {buffer:.2f} | {digest / buffer:.2f} "
            f"| {size / digest / 1e9:.2f} |"
        )
        del encoder, tensors, flat


if __name__ == "__main__":
    main()
