"""ISM throughput of ``isoflow.explain.ism``: re-encode only the changed modalities vs
predicting every mutant whole (``Model.predict``), on the tiny bundle the tests build
(DNA raw through a tiny Enformer, RNA and protein through frozen tiny NT / ESM-2 caches,
512-bp window), same process, alternating, a few repeats. Before any time is reported,
every repeat's effects from both paths must agree: the same rows (sites, alts, consequences,
what each substitution changed and what the model sees) exactly, and the per-tissue effects
within ``isoflow.bundle.CHECK_TOLERANCE["float32"]`` of the full path's: the two paths batch
different inputs together (padding, batch size), so float32 sums round differently and a
last-bit difference can flip the float16 a cached embedding is rounded to (the same bound as
``tests/unit/test_explain.py``). The largest difference seen is printed.

    nice -n 10 .venv/bin/python bench/bench_explain.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.bundles import tiny_bundles  # noqa: E402


def max_effect_difference(fast, full, tissues) -> float:
    """The largest |fast - full| effect over every substitution and tissue; SystemExit when
    the rows differ or an effect differs by more than the float32 check tolerance (or is NaN
    on one path only): timing paths that disagree means nothing."""
    import numpy as np
    import pandas as pd

    from isoflow.bundle import CHECK_TOLERANCE

    tolerance = CHECK_TOLERANCE["float32"]
    try:
        pd.testing.assert_frame_equal(fast.drop(columns=tissues), full.drop(columns=tissues))
    except AssertionError as error:
        raise SystemExit(f"ism: the two paths give different rows: {error}") from None
    a, b = fast[tissues].to_numpy(np.float64), full[tissues].to_numpy(np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        raise SystemExit("ism: the two paths leave different effects unscored (NaN)")
    worst = float(np.nanmax(np.abs(a - b), initial=0.0))
    if worst > tolerance:
        raise SystemExit(
            f"ism: the two paths' effects differ by up to {worst:.3g} (log1p TPM), more than "
            f"the float32 check tolerance {tolerance:g}"
        )
    return worst


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
        worst = 0.0
        for _ in range(args.repeats):
            effects = {}
            for fast in (True, False):
                start = time.perf_counter()
                effects[fast] = ism(model, subject, sites, reencode_changed_only=fast)
                times[fast].append(time.perf_counter() - start)
            worst = max(worst, max_effect_difference(effects[True], effects[False], model.tissues))
    print(
        f"answers: the same {n} rows from both paths in every repeat; effects within "
        f"{worst:.3g} (log1p TPM) of the full path's"
    )
    for fast, label in ((True, "re-encode changed only"), (False, "full predict")):
        best = min(times[fast])
        print(
            f"{label:24s} {n} substitutions: best {best:.2f} s ({n / best:.0f} subst/s), "
            f"median {statistics.median(times[fast]):.2f} s, all "
            + ", ".join(f"{t:.2f}" for t in times[fast])
        )
    print(f"speed-up (best / best): {min(times[False]) / min(times[True]):.2f}x")
    print(f"load average at the end {os.getloadavg()}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
