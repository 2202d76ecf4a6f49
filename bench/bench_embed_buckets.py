"""Length buckets on the demo: the demo's caches built in dataset order (embed_batch_size)
and with ``embed.batch_letters``, and the largest difference of any cached value.

For each of the demo's three cached encoders (tiny ESM-2, NT, Enformer; config/demo.yaml),
``isoflow.embed.embed_dataset`` on CPU twice into --work: ``batch_letters=0`` and
``batch_letters=--letters``; then ``lookup_items`` of every transcript from both and
max |bucketed - plain| (float32 of the stored float16). Wall times are of one run each.

Run: .venv/bin/python bench/bench_embed_buckets.py --letters 8000 \\
         --dataset results/dataset/demo.parquet --genome resources/demo/genome.fa
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from isoflow.dataset import read_dataset
from isoflow.embed import EmbeddingCache, embed_dataset
from isoflow.model.encoders import spec_from_config

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="the demo's dataset parquet")
    parser.add_argument("--genome", type=Path, required=True, help="the demo's genome FASTA")
    parser.add_argument("--letters", type=int, default=8000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/isoflow_bench_buckets"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    ids = list(read_dataset(args.dataset)[0]["transcript_id"])
    for name in ("esm2", "nucleotide_transformer", "enformer"):
        spec = spec_from_config(config, name)
        caches = {}
        for label, letters in (("plain", 0), ("bucketed", args.letters)):
            start = time.perf_counter()
            out = args.work / label / name
            embed_dataset(args.dataset, name, spec, out, args.genome, "cpu", batch_letters=letters)
            caches[label] = EmbeddingCache(out)
            batches = caches[label].meta["n_forward_batches"]
            print(f"{name} {label}: {time.perf_counter() - start:.1f} s, {batches} batches")
        plain, mask = caches["plain"].lookup_items(ids)
        bucketed, bucketed_mask = caches["bucketed"].lookup_items(ids)
        assert torch.equal(mask, bucketed_mask)
        print(
            f"{name}: max |bucketed - plain| = {(plain - bucketed).abs().max().item():.3g} "
            f"(max |plain| {plain.abs().max().item():.3g})"
        )


if __name__ == "__main__":
    main()
