"""Does a cached row depend on the sequences that shared its forward? (docs/rerun.md,
"Embedding store", why the store reuses whole caches, not rows.)

Encodes ``--sequences`` random sequences as a cache build does (``embed.encode_pooled``,
batches of ``embed_batch_size`` in order, the short last one padded), then the same set with
``--inserted`` new ones placed among them (one after every ``--every``-th), as a dataset that
gains transcripts is encoded from scratch, and counts the sequences of the first set whose
float16 rows (what the cache stores) differ between the two. A difference means a row taken
from the earlier cache would not be the byte a from-scratch build writes. Tiny encoders of
config/demo.yaml, on this machine's CPU; run from the repository root:

    .venv/bin/python bench/probe_batch_mates.py
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
import yaml

from isoflow.embed import encode_pooled, frozen_encoder
from isoflow.model.encoders import spec_from_config

ALPHABETS = {"esm2": "ACDEFGHIKLMNPQRSTVWY", "nucleotide_transformer": "ACGT"}


def probe(name: str, config: dict, args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)

    def sequence() -> str:
        return "".join(rng.choice(ALPHABETS[name]) for _ in range(rng.randint(*args.lengths)))

    torch.manual_seed(args.seed)
    spec = spec_from_config(config, name)
    encoder = frozen_encoder(name, spec)
    batch_size = int(spec.get("embed_batch_size", 8))
    first = [sequence() for _ in range(args.sequences)]
    grown: list[str] = []
    added = 0
    for i, seq in enumerate(first):
        grown.append(seq)
        if i % args.every == 0 and added < args.inserted:
            grown.append(sequence())
            added += 1
    pool_to = int(spec["pool_to"])
    before = encode_pooled(encoder, first, pool_to, "cpu", batch_size=batch_size)
    after = encode_pooled(encoder, grown, pool_to, "cpu", batch_size=batch_size)
    position = {seq: i for i, seq in enumerate(grown)}
    differ, largest = 0, 0.0
    for i, seq in enumerate(first):
        old, new = before[i].half(), after[position[seq]].half()
        if not torch.equal(old, new):
            differ += 1
            largest = max(largest, (old.float() - new.float()).abs().max().item())
    return {
        "encoder": name,
        "batch_size": batch_size,
        "sequences": len(first),
        "inserted": added,
        "rows_differ": differ,
        "max_abs_diff": largest,
    }


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), empty where there is none."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config/demo.yaml"))
    parser.add_argument("--sequences", type=int, default=24)
    parser.add_argument("--inserted", type=int, default=6)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--lengths", type=int, nargs=2, default=(30, 400))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    for name in ALPHABETS:
        result = probe(name, config, args)
        result.update(torch=torch.__version__, threads=args.threads, cpu=cpu_model())
        print(json.dumps(result))


if __name__ == "__main__":
    main()
