"""The embedding cache's bounded memory and resumption measured on real processes: the peak
RSS of a build in a fresh interpreter (bench/bench_embed_memory.py's child), and a build
killed with SIGKILL then resumed by another process (test_embed.py tests both inside pytest's
process: traced allocations, and a raised exception as the kill)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.paths import REPO, bench_module


@pytest.mark.slow
def test_peak_rss_of_a_build_is_one_shard_not_the_cache(tmp_path):
    """A cache of 375 MiB of float16 rows (1,000 sequences x 64 rows x 3,072) built with a
    16 MiB shard budget grows the builder's own peak RSS (VmHWM, over a warm-up build in the
    same child: imports, the stand-in encoder, pyarrow) by less than one shard plus a fixed
    96 MiB: one batch's encoder output (8 x 64 x 3,072 float32 = 6 MiB), its pooled copy and
    the allocator's slack, none of which grows with the shard or the cache (27-42 MiB in all,
    in steps of ~6 MiB, over 32 runs on the loaded 2-core dev machine: 32 MiB, the first
    margin, would have failed about a third of them). The control (388-399 MiB), a budget
    that holds the whole cache (the writer holding every row, as before the bounded writer),
    must break the same bound, so the measurement is seen to catch a writer that holds the
    cache."""
    bench = bench_module("bench_embed_memory")
    shard_mb, sequences, pool_to = 16, 1000, 64
    cache_mb = sequences * pool_to * 3072 * 2 / 2**20
    bound = shard_mb + 96

    def growth(budget_mb):
        config = {
            "out": str(tmp_path / f"shard{budget_mb}" / "cache"),
            "sequences": sequences,
            "tokens": pool_to,  # no pooling reduction: the rows are the output, cheaply
            "pool_to": pool_to,
            "shard_mb": budget_mb,
            "batches": 0,  # the build alone
        }
        return bench.run_child(REPO, config)

    bounded = growth(shard_mb)
    assert bounded["shards"] >= cache_mb // shard_mb  # several times the budget
    assert bounded["growth_mb"] < bound, bounded
    held = growth(1024)  # the whole cache fits one shard: every row held
    assert held["shards"] == 1
    assert held["growth_mb"] > max(bound, 0.9 * cache_mb), held


CHILD = r"""
import json, logging, sys, time
import numpy as np, torch
torch.set_num_threads(1)  # the same threads (and meta.json) in every child
from isoflow.embed import build_cache
from isoflow.model.encoders import build_encoder

cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")


class Paced(torch.nn.Module):
    # the tiny ESM-2 (seeded: the same weights in every process), counting the sequences it
    # encodes; with stall_after, each forward takes 20 ms more and forward stall_after + 1
    # never returns, so the build is still running whenever the parent's SIGKILL lands
    def __init__(self, inner, stall_after):
        super().__init__()
        self.inner, self.dim, self.modality = inner, inner.dim, inner.modality
        self.stall_after, self.forwards, self.encoded = stall_after, 0, 0

    def tokenize(self, batch):
        self.encoded += len(batch)
        return self.inner.tokenize(batch)

    def forward(self, **tokens):
        self.forwards += 1
        if self.stall_after is not None:
            time.sleep(3600 if self.forwards > self.stall_after else 0.02)
        return self.inner(**tokens)


rng = np.random.default_rng(0)
letters = list("ACDEFGHIKLMNPQRSTVWY")
items = {f"p{i}": "".join(rng.choice(letters, 5 + (7 * i) % 23)) for i in range(160)}
items["dup"], items["none"] = items["p3"], None
options = dict(pool_to=8, batch_size=4, shard_rows=60, meta={"spec": {"a": 1}})
esm = build_encoder("esm2", {"source": "tiny"}).eval()
for out in cfg["outs"]:
    encoder = Paced(esm, cfg.get("stall_after"))
    build_cache(encoder, items, out, **options)
    print(json.dumps({"out": out, "encoded": encoder.encoded}), flush=True)
"""


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_a_build_killed_by_sigkill_resumes_to_identical_files(tmp_path):
    """A child building a cache of 160 sequences in about 20 shards is killed (SIGKILL: no
    exception handler, no flush, possibly mid-write) once its first shard is recorded; a
    second child resumes from the finished shards it left, encodes only the rest, and ends
    with the files of an uninterrupted build in another folder, byte for byte."""
    from isoflow.embed import partial_dir

    out, whole = tmp_path / "resumed", tmp_path / "whole"
    work = partial_dir(out)
    with open(tmp_path / "killed.err", "w") as stderr:
        killed = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps({"outs": [str(out)], "stall_after": 30})],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 300
        while not (work / "shard_00000.json").exists():
            assert killed.poll() is None, (tmp_path / "killed.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "no shard recorded in 300 s"
            time.sleep(0.005)
        os.kill(killed.pid, signal.SIGKILL)
    finally:
        killed.kill()  # ours; a no-op once it is dead
        killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists() and (work / "shard_00000.npy").exists()

    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({"outs": [str(out), str(whole)]})],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    resumed, uninterrupted = (json.loads(line) for line in done.stdout.splitlines())
    assert files_of(out) == files_of(whole)  # shards, index, items and meta.json
    assert not work.exists() and json.loads((out / "meta.json").read_text())["n_shards"] >= 10
    # it took the killed child's finished shards: the log says how many sequences they hold,
    # and it encoded only the rest, from the batch (of 4) that straddles their end
    resuming = [line for line in done.stderr.splitlines() if line.startswith("resuming")]
    assert len(resuming) == 1, done.stderr[-3000:]
    reused, total = map(int, resuming[0].split(" hold ")[1].split(" distinct")[0].split(" of "))
    assert reused >= 1 and total == uninterrupted["encoded"] == 160
    assert total - reused <= resumed["encoded"] < total - reused + 4
