"""What putting an embedding shard on disk (``fsync``) before its record costs the embed job
(``isoflow.embed._ShardWriter``), against the writer before it (``np.save`` through
``atomic_path``, no sync) and a sync in the job's own thread (``atomic_path(fsync=True)``),
alternating, in a folder on the filesystem under test; then a training checkpoint written by
``isoflow.lightning.AtomicCheckpointIO`` (beside it, synced, renamed) against Lightning's
``TorchCheckpointIO`` (a buffer, a temporary in ``$TMPDIR``, moved).

    python bench/bench_fsync.py --folder results/.bench_fsync --mb 1024 --checkpoint-mb 1024

Rows: MB per shard, the median seconds the job waits, MB/s; for the writer also the
seconds until its thread has synced and recorded the shard (``wait``), which the job spends
encoding the next shard. Before each write ``os.sync()`` (untimed) leaves nothing to write
back, so the write without a sync costs the copy into the page cache alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from benchcommon import scratch_in
from pytorch_lightning.plugins import TorchCheckpointIO

from isoflow.checkpoints import unreadable
from isoflow.embed import _ShardWriter
from isoflow.files import atomic_path
from isoflow.lightning import AtomicCheckpointIO


def plain(folder: Path, buffer: np.ndarray, fsync: bool) -> tuple[float, float]:
    start = time.perf_counter()
    with atomic_path(folder / "shard_00000.npy", fsync=fsync) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, buffer)
    return time.perf_counter() - start, 0.0


def writer(folder: Path, buffer: np.ndarray, fsync: bool) -> tuple[float, float]:
    shards = _ShardWriter(folder, buffer.shape[1], len(buffer), 1, "bench")
    shards.buffer, shards.rows = buffer, len(buffer)  # a full shard, as add() leaves it
    shards.index = {"key": ["k"], "shard": [0], "offset": [0], "length": [len(buffer)]}
    start = time.perf_counter()
    shards.flush()
    waited = time.perf_counter()
    shards.wait()
    return waited - start, time.perf_counter() - waited


WAYS = {
    "atomic_path, no sync (the writer before)": (plain, False),
    "atomic_path(fsync=True), in the job's thread": (plain, True),
    "_ShardWriter.flush: sync + record in a thread": (writer, True),
}


CHECK = "checkpoints.unreadable (every member's CRC-32, at a resume)"
CHECKPOINT_IO = {
    "Lightning's TorchCheckpointIO (before)": TorchCheckpointIO,
    "AtomicCheckpointIO (committed)": AtomicCheckpointIO,
}


def checkpoints(folder: Path, mb: float, repeats: int) -> None:
    """Median (min) seconds a training job waits for one checkpoint of ``mb`` MB."""
    state = {"state_dict": {"w": torch.randn(int(mb * 1e6) // 4)}, "epoch": 1}
    times: dict[str, list[float]] = {name: [] for name in [*CHECKPOINT_IO, CHECK]}
    try:
        for _ in range(repeats):
            for name, io in CHECKPOINT_IO.items():
                folder.mkdir(parents=True, exist_ok=True)
                os.sync()
                start = time.perf_counter()
                io().save_checkpoint(state, folder / "last.ckpt")
                times[name].append(time.perf_counter() - start)
                if io is AtomicCheckpointIO:  # the check a resume makes (page cache warm)
                    start = time.perf_counter()
                    assert unreadable(folder / "last.ckpt") is None
                    times[CHECK].append(time.perf_counter() - start)
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n| checkpoint ({mb:,.0f} MB) | median (min) s |")
    print("|---|---|")
    for name, seen in times.items():
        print(f"| {name} | {statistics.median(seen):.2f} ({min(seen):.2f}) |")


def shards(folder: Path, mb: float, repeats: int) -> None:
    """Median (min) seconds an embed job waits for one shard of ``mb`` MiB, each way."""
    rng = np.random.default_rng(0)
    rows = int(mb * 2**20) // (2 * 1024)
    buffer = rng.standard_normal((rows, 1024), dtype=np.float32).astype(np.float16)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}
    try:
        for _ in range(repeats):
            for name, (way, fsync) in WAYS.items():
                folder.mkdir(parents=True, exist_ok=True)
                os.sync()  # nothing left to write back (untimed)
                times[name].append(way(folder, buffer, fsync))
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    size = buffer.nbytes / 1e6
    print("| shard write | MB | job waits, median (min) s | MB/s | then in the thread (s) |")
    print("|---|---|---|---|---|")
    for name, (way, _) in WAYS.items():
        waits = statistics.median(t for t, _ in times[name])
        best = min(t for t, _ in times[name])
        behind = statistics.median(b for _, b in times[name])
        thread = f"{behind:.2f}" if way is writer else ""
        print(
            f"| {name} | {size:,.0f} | {waits:.2f} ({best:.2f}) | {size / waits:,.0f} | {thread} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="results/.bench_fsync")
    parser.add_argument(
        "--mb", type=float, default=1024, help="shard MiB (embed.shard_mb); 0: none"
    )
    parser.add_argument("--checkpoint-mb", type=float, default=1024, help="0: none")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    # a folder of its own inside --folder, removed at the end: the rest of --folder stays
    with scratch_in(args.folder, "bench_fsync_") as work:
        if args.mb:
            shards(work / "shards", args.mb, args.repeats)
        if args.checkpoint_mb:
            checkpoints(work / "checkpoints", args.checkpoint_mb, args.repeats)


if __name__ == "__main__":
    main()
