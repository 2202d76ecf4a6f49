"""Cached epochs with and without train.prefetch_batches, against a stand-in GPU step.

A GPU step leaves the host waiting on CUDA with the GIL released; here a ``time.sleep`` of
``--step-ms`` per batch stands in for it (this machine has no GPU), so what is measured is
whether the next cached batch's gather (``IsoformDataModule`` with ``num_workers`` 0:
index_select from the memory-mapped shards, at real encoder widths) overlaps the wait.
The caches are bench_loader.py's (real on-disk format, Enformer 3,072 / NT-v2 768 / ESM-2
640 wide, the workflow's widths), built in a folder of its own inside --work that is
removed at the end. Each case in the same process, interleaved --repeat times, one untimed
warm-up epoch first (page cache), which also hashes every batch (indices, targets, each
modality's embeddings and masks, bytes as returned): every depth must give the same sha256
(prefetching reorders nothing and copies nothing: exact), or the bench stops before timing.
Reports, per prefetch depth,
the median epoch wall time, the step's share of it ("busy", what bench/gpu.py calls
``step_share``) and the ratio to no prefetch.

Run: .venv/bin/python bench/bench_prefetch.py --transcripts 768 --step-ms 12 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path

from benchcommon import scratch_in

ROOT = Path(__file__).resolve().parents[1]


def bench_loader():
    spec = importlib.util.spec_from_file_location("bench_loader", ROOT / "bench/bench_loader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool-to", type=int, default=64)
    parser.add_argument("--step-ms", type=float, default=12.0, help="stand-in GPU step")
    parser.add_argument("--depths", default="0,1,2", help="prefetch_batches to compare")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/isoflow_bench_prefetch"))
    args = parser.parse_args()
    # a folder of its own inside --work, removed at the end: the rest of --work stays
    with scratch_in(args.work, "bench_prefetch_") as work:
        _bench(args, work)


def batches_sha256(loader) -> str:
    """One epoch of ``loader``, every batch's bytes hashed in order (index, target, each
    modality's embeddings then mask)."""
    digest = hashlib.sha256()
    for batch in loader:
        digest.update(batch["index"].numpy().tobytes())
        digest.update(batch["target"].numpy().tobytes())
        for modality in sorted(batch["inputs"]):
            for tensor in batch["inputs"][modality]:
                digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def same_answers(digests: dict[int, str]) -> str:
    """The answers' line; SystemExit when the depths' batches are not the same bytes."""
    if len(set(digests.values())) != 1:
        raise SystemExit(f"prefetch depths give different batches (sha256 by depth): {digests}")
    return f"answers: the same batches (sha256 {next(iter(digests.values()))[:16]}) at every depth"


def _bench(args, work: Path) -> None:
    import torch

    from isoflow.loader import IsoformDataModule

    torch.set_num_threads(args.torch_threads)
    paths = bench_loader().build_inputs(work, args.transcripts, args.pool_to)
    step_s = args.step_ms / 1000
    depths = [int(d) for d in args.depths.split(",")]
    loaders = {}
    for depth in depths:
        module = IsoformDataModule(
            paths["dataset"],
            ["dna", "rna", "protein"],
            cache_dirs=paths["caches"],
            batch_size=args.batch_size,
            prefetch_batches=depth,
        )
        module.setup()
        loaders[depth] = module.train_dataloader()

    def epoch(loader, with_step: bool) -> tuple[float, int]:
        start, n = time.perf_counter(), 0
        for _batch in loader:
            if with_step:
                time.sleep(step_s)  # the host waiting on the GPU: the GIL is free
            n += 1
        return time.perf_counter() - start, n

    # warm-up (memory maps into the page cache), hashing what each depth returns
    answers = same_answers({depth: batches_sha256(loader) for depth, loader in loaders.items()})
    gather = statistics.median(epoch(loaders[0], False)[0] for _ in range(args.repeat))
    walls: dict[int, list[float]] = {d: [] for d in depths}
    n_batches = 0
    for _ in range(args.repeat):
        for depth, loader in loaders.items():
            wall, n_batches = epoch(loader, True)
            walls[depth].append(wall)
    rows = {}
    base = statistics.median(walls[depths[0]])
    for depth in depths:
        wall = statistics.median(walls[depth])
        rows[depth] = {
            "epoch_s": round(wall, 3),
            "busy": round(n_batches * step_s / wall, 3),
            "vs_no_prefetch": round(wall / base, 3),
            "all_s": [round(w, 3) for w in walls[depth]],
        }
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load "
                + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
                "answers": answers,
                "batches": n_batches,
                "gather_only_epoch_s": round(gather, 3),
                "gather_ms_per_batch": round(1000 * gather / n_batches, 2),
                "step_ms": args.step_ms,
                "prefetch": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
