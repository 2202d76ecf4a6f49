"""What a train job's parent process reads before ``scontrol requeue`` with
``resources.train_processes`` > 1 (``isoflow.train_workers._requeue_endings``: for the
requeuing run and each run stopped with it, the checkpoint its next attempt resumes from and
that checkpoint's epoch), on one checkpoint of real size, from the disk (evicted from the
page cache: ``os.sync`` then ``posix_fadvise(DONTNEED)``) and from the page cache.

    python bench/bench_requeue_endings.py --folder /tmp/x --mb 2048 --repeats 3

Reference, in the same run: ``checkpoints.unreadable`` with every member's CRC-32 (what
``_requeue_endings`` read before), against ``crc=False`` (central directory and pickle entry
only, what it reads now); then ``saved_epoch`` (``torch.load(mmap=True)``: the pickle) and
``import torch`` in a fresh interpreter, which the parent pays once. Results:
docs/benchmarks.md ("Requeue endings").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def evict(path: Path) -> None:
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(call, path: Path, cold: bool) -> float:
    if cold:
        evict(path)
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--mb", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_import = time.perf_counter() - start

    import torch

    from isoflow.checkpoints import saved_epoch, unreadable

    path = args.folder / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    n = args.mb * 2**20 // 4
    torch.save({"epoch": 4, "state_dict": {"w": torch.ones(n)}}, path)
    size = path.stat().st_size
    checks = {
        "unreadable(crc=True) (before)": lambda: unreadable(path),
        "unreadable(crc=False) (now)": lambda: unreadable(path, crc=False),
        "saved_epoch (mmap: the pickle)": lambda: saved_epoch(path),
    }
    assert unreadable(path) is None and unreadable(path, crc=False) is None
    assert saved_epoch(path) == 4
    print(f"checkpoint {size / 1e6:,.0f} MB at {path}; {platform.node()}, {os.cpu_count()} CPUs")
    print(f"import torch in a fresh interpreter: {torch_import:.2f} s")
    for cold in (True, False):
        for name, call in checks.items():
            if not cold:
                call()  # into the page cache
            times = [timed(call, path, cold) for _ in range(args.repeats)]
            where = "disk" if cold else "page cache"
            print(
                f"{name:34s} {where:10s} median {statistics.median(times):.3f} s "
                f"(min {min(times):.3f}, max {max(times):.3f})"
            )
    path.unlink()


if __name__ == "__main__":
    main()
