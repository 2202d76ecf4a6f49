"""The near-identical check of ``isoflow finetune`` (``isoflow.finetune.near_identical``) on
generated tables of a few thousand cassettes: its time, what it flags, and whether it checked
the whole table or stopped at ``NEAR_MAX_COMPARED`` base comparisons.

    python bench/bench_near_identical.py [--seed 0]

Tables (each cassette its own group, as a table without a ``group`` column): unrelated
2-kb cassettes; point variants of 10 elements in a shared reporter (the leak the check is
for); distinct promoters in a shared reporter (an MPRA library); 10 promoters each with
many random 3'UTRs (the costly shape: every cassette shares a block with 1/10 of the
others, none near); the same with 20,000 cassettes (stops at the bound). Results:
docs/benchmarks.md ("Near-identical constructs").
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from isoflow.finetune import NEAR_MAX_COMPARED, near_identical

LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)


def tables(seed: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)

    def random(n: int) -> str:
        return LETTERS[rng.integers(0, 4, n)].tobytes().decode()

    def variant(seq: str, k: int) -> str:
        out = bytearray(seq.encode())
        for i in rng.choice(len(out), k, replace=False):
            out[i] = LETTERS[(int(np.flatnonzero(LETTERS == out[i])[0]) + 1) % 4]
        return out.decode()

    head, tail = random(300), random(1500)
    elements = [random(200) for _ in range(10)]
    return {
        "3,000 unrelated 2-kb cassettes": [random(2000) for _ in range(3000)],
        "10 elements x 300 single-base variants, shared reporter": [
            head + variant(e, 1) + tail for e in elements for _ in range(300)
        ],
        "3,000 distinct 200-bp promoters, shared reporter": [
            head + random(200) + tail for _ in range(3000)
        ],
        "10 promoters x 300 random 200-bp 3'UTRs": [
            head + e + random(200) + tail[:1300] for e in elements for _ in range(300)
        ],
        "10 promoters x 2,000 random 200-bp 3'UTRs": [
            head + e + random(200) + tail[:1300] for e in elements for _ in range(2000)
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"machine: {platform.node()} ({platform.machine()}); bound {NEAR_MAX_COMPARED:,}")
    for name, seqs in tables(args.seed).items():
        started = time.perf_counter()
        found = near_identical(seqs, list(range(len(seqs))))
        seconds = time.perf_counter() - started
        print(
            f"{name}: {seconds:.2f} s, {len(found.constructs):,} flagged, "
            f"{'complete' if found.complete else 'stopped at the bound'}, "
            f"{found.compared:,} base comparisons"
        )


if __name__ == "__main__":
    main()
