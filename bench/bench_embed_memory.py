"""Embedding cache writer: peak memory of the old writer (all rows of a shard held, then
concatenated) against the new one (one preallocated shard of --shard-mb), same input.

Each case runs in its own child process on the isoflow package of git revision --old
(default a9aab12, before the bounded writer) or of this checkout: ``build_cache`` over
--sequences synthetic proteins from a stand-in encoder of Enformer's width (3,072) that
returns --tokens tokens per sequence, mean-pooled to --pool-to rows (as the real encoders'
outputs are), i.e. ``sequences * pool_to * 3072 * 2`` bytes of float16 rows. The child reports
the growth of its peak RSS over a warm-up cache built first (imports, the stand-in encoder,
pyarrow's first use), the wall time of the build, and the time to gather
--batches batches of 32 random transcripts from the cache it wrote (``CacheRows.take``, the
training loader's read; the shards are in the page cache), and a sha256 of every item's rows
and mask as ``take`` reads them back (untimed): the bench says whether all writers and repeats
read back the same bytes. Cases are interleaved --repeat times.

The peak RSS is the child's own high-water mark, ``VmHWM`` in /proc/self/status, not
``ru_maxrss``: the kernel carries the parent's peak over the exec into ``ru_maxrss`` (a child
of a parent holding 800 MiB reports 811 MiB before it allocates anything, VmHWM 11 MiB), which
under a large parent hides the child's own growth. tests/unit/test_embed_process.py runs
CHILD under pytest, with ``batches`` 0: the build alone, no gather or read-back.

Run: .venv/bin/python bench/bench_embed_memory.py --sequences 1500 --shard-mb 64 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchcommon import old_tree, run_in_tree, scratch_in

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, resource, sys, time, numpy as np, torch
torch.set_num_threads(1)
from isoflow.embed import EmbeddingCache, build_cache

cfg = json.loads(sys.argv[1])


class StandIn(torch.nn.Module):
    modality, dim = "protein", 3072

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.generator = torch.Generator().manual_seed(0)

    def tokenize(self, batch):
        return {"lengths": torch.full((len(batch),), cfg["tokens"])}

    def forward(self, lengths):
        width = int(lengths.max())
        emb = torch.randn(len(lengths), width, self.dim, generator=self.generator)
        return emb, torch.ones(len(lengths), width, dtype=torch.bool)


def peak_kib():
    # this process's own peak RSS in KiB, VmHWM (ru_maxrss also holds the parent's at the
    # exec; it is the fallback where there is no /proc)
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


options = {"shard_mb": cfg["shard_mb"]} if cfg["shard_mb"] else {}
rng = np.random.default_rng(0)
letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
items = {f"T{i}": "".join(rng.choice(letters, 30)) for i in range(cfg["sequences"])}
build_cache(StandIn(), {"w": "MKV"}, cfg["out"] + "_warm", pool_to=cfg["pool_to"], **options)
before = peak_kib()
start = time.perf_counter()
build_cache(StandIn(), items, cfg["out"], pool_to=cfg["pool_to"], batch_size=8, **options)
seconds = time.perf_counter() - start
peak = peak_kib()
cache = EmbeddingCache(cfg["out"])
result = {"growth_mb": (peak - before) / 1024, "base_mb": before / 1024, "seconds": seconds,
          "shards": cache.meta["n_shards"]}
if not cfg["batches"]:  # the build alone
    print(json.dumps(result))
    sys.exit()
rows = cache.item_rows(list(items))
rows.take(np.arange(32))
start = time.perf_counter()
for _ in range(cfg["batches"]):
    rows.take(rng.choice(len(items), 32, replace=False))
gather = (time.perf_counter() - start) / cfg["batches"]
digest = hashlib.sha256()  # every item's rows as the loader reads them (untimed)
for first in range(0, len(items), 32):
    emb, mask = rows.take(np.arange(first, min(first + 32, len(items))))
    digest.update(emb.contiguous().numpy().tobytes() + mask.contiguous().numpy().tobytes())
order = "F" if np.load(cfg["out"] + "/shard_00000.npy", mmap_mode="r").flags.f_contiguous else "C"
print(json.dumps({**result, "gather_ms": gather * 1e3, "order": order,
                  "rows_sha256": digest.hexdigest()}))
"""


def run_child(cwd: Path, config: dict) -> dict:
    """CHILD on the isoflow of ``cwd`` only (benchcommon.run_in_tree: no module borrowed from
    this checkout; a failure ends the bench with the child's stderr)."""
    out = run_in_tree(cwd, CHILD, json.dumps(config))
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    with contextlib.ExitStack() as stack:
        _main(stack)


def _main(stack: contextlib.ExitStack) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1500)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--pool-to", type=int, default=64)
    parser.add_argument("--shard-mb", type=int, default=64)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old", default="a9aab12", help="git revision of the old writer")
    parser.add_argument("--work", type=Path, default=Path("/tmp/isoflow_bench_embed"))
    args = parser.parse_args()

    old_dir = stack.enter_context(old_tree(args.old))  # deleted at the end
    cases = {
        f"old ({args.old}): rows held, concatenated": (old_dir, 0),
        f"new: one {args.shard_mb} MiB shard buffer": (ROOT, args.shard_mb),
    }
    results: dict[str, list[dict]] = {name: [] for name in cases}
    # a folder of its own inside --work, removed at the end: the rest of --work stays
    with scratch_in(args.work, "bench_embed_memory_") as work:
        for _ in range(args.repeat):
            for name, (cwd, shard_mb) in cases.items():  # interleaved: load drift hits both
                case = Path(tempfile.mkdtemp(dir=work))
                run(results, name, cwd, shard_mb, args, case)
                shutil.rmtree(case)  # one case's cache on disk at a time
    report(results, args)


def run(results: dict, name: str, cwd: Path, shard_mb: int, args, work: Path) -> None:
    """One case in its own child process, writing under ``work`` (a new empty folder)."""
    config = {
        "out": str(work / "cache"),
        "sequences": args.sequences,
        "tokens": args.tokens,
        "pool_to": args.pool_to,
        "shard_mb": shard_mb,
        "batches": args.batches,
    }
    out = run_child(cwd, config)
    results[name].append(out)
    print(f"{name}: {out}", file=sys.stderr)


def report(results: dict, args) -> None:
    digests = {r["rows_sha256"] for runs in results.values() for r in runs}
    print(
        "rows read back: "
        + (
            "the same bytes from every writer and repeat"
            if len(digests) == 1
            else f"DIFFERENT ({len(digests)} distinct sha256 over the writers and repeats)"
        )
    )
    data_mb = args.sequences * args.pool_to * 3072 * 2 / 2**20
    print(
        f"\n{args.sequences} sequences x {args.pool_to} rows x 3,072 float16 = {data_mb:,.0f} "
        f"MiB of rows; median of {args.repeat}; load average {os.getloadavg()}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print("| writer | peak RSS growth (MiB) | build (s) | shards | layout | gather ms/batch |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():

        def median(key, runs=runs):
            return statistics.median(r[key] for r in runs)

        print(
            f"| {name} | {median('growth_mb'):,.0f} | {median('seconds'):.1f} | "
            f"{runs[0]['shards']} | {runs[0]['order']} | {median('gather_ms'):.2f} |"
        )


if __name__ == "__main__":
    main()
