"""ISM throughput of ``isoflow.explain.ism``: re-encode only the changed modalities vs
predicting every mutant whole (``Model.predict``), on the tiny bundle the tests build
(DNA raw through a tiny Enformer, RNA and protein through frozen tiny NT / ESM-2 caches,
512-bp window), same process, alternating, a few repeats.

    nice -n 10 .venv/bin/python bench/bench_explain.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.bundles import tiny_bundles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import numpy as np

    from isoflow.bundle import load_model
    from isoflow.constructs import Construct
    from isoflow.explain import construct_subject, ism, region_sites

    rng = np.random.default_rng(0)

    def random(n):
        return "".join(rng.choice(list("ACGT"), n))

    cds = "ATG" + "".join(rng.choice(["AAA", "GCT", "TGG", "CTG", "GAA"], 40)) + "TAA"
    construct = Construct(
        "bench", {"promoter": random(100), "utr5": random(30), "cds": cds, "utr3": random(60)}
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(tiny_bundles(Path(tmp), window=args.window)["paths"][0], device="cpu")
        subject = construct_subject(construct, window=args.window)
        sites = region_sites(subject, None)
        n = 3 * len(sites)
        times = {True: [], False: []}
        for _ in range(args.repeats):
            for fast in (True, False):
                start = time.perf_counter()
                ism(model, subject, sites, reencode_changed_only=fast)
                times[fast].append(time.perf_counter() - start)
    for fast, label in ((True, "re-encode changed only"), (False, "full predict")):
        best = min(times[fast])
        print(
            f"{label:24s} {n} substitutions: best {best:.2f} s ({n / best:.0f} subst/s), "
            f"median {statistics.median(times[fast]):.2f} s, all "
            + ", ".join(f"{t:.2f}" for t in times[fast])
        )
    print(f"speed-up (best / best): {min(times[False]) / min(times[True]):.2f}x")


if __name__ == "__main__":
    main()
