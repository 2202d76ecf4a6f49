"""Cache-mode loader at real encoder widths: batches/s of the old path against the new one.

Builds (in a folder of its own inside --work, default /tmp/isoflow_bench_loader, removed at
the end with the extracted old tree; the rest of --work is left alone) a dataset parquet of
--transcripts synthetic transcripts (all in the train split but for one valid and one test
transcript; about 30% without a protein, as non-coding ones) and three embedding caches in the
real on-disk format, written by isoflow.embed.build_cache (float16 shards, index and items
parquet, meta.json) from a stand-in encoder that returns random embeddings of the widths the
workflow's encoders give (bench/gpu.py's WIDTHS): Enformer 3072 (DNA, 896 tokens pooled to
--pool-to), NT-v2 250M 768 (RNA, up to 2,048 tokens) and ESM-2 150M 640 (protein, one token
per residue; proteins of 20-1,000 residues, so some are shorter than --pool-to and are padded
in a batch). (Before 2026-11-28 it used 1536 and 1280, NT 2.5B's and ESM-2 650M's widths:
docs/benchmarks.md's figures from then say so.)

Then, each in its own child process, the same loop over IsoformDataModule's train loader
(batch --batch-size, num_workers 0, one untimed warm-up epoch so the memory maps are in the
page cache, then --epochs timed epochs): the isoflow package of git revision --old (default
c40b196: per-item DataFrame access, per-row float16 -> float32 copies into zeroed tensors)
and this checkout's (whole-batch gather, float16). Interleaved --repeat times. Reports the
median batches/s of each, their ratio, and the GPU step time the new loader keeps up with
(its time per batch: with num_workers 0 the next batch is gathered while the GPU runs the
current step's queued kernels).

Answers first: each child also reads one more epoch (epoch 1's order, untimed) and hashes
every batch as the model receives it: indices, targets, and per modality each item's
length and its valid rows as float32 (the old path's float32 rows against the new float16
ones widened; the conversion is exact). Padding is left out: its width is the batch's
layout, not data. Every run of both loaders must give the same sha256, or the bench stops
before reporting a time.

Run: .venv/bin/python bench/bench_loader.py --transcripts 768 --epochs 3 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
from benchcommon import old_tree, run_in_tree, scratch_in

ROOT = Path(__file__).resolve().parents[1]
# the workflow's encoders' widths: Enformer's trunk, NT-v2 250M, ESM-2 150M (= bench/gpu.py's
# WIDTHS, which imports torch; tests/unit/test_bench_scripts.py holds the two together)
WIDTHS = {"dna": ("enformer", 3072), "rna": ("nucleotide_transformer", 768)}
WIDTHS["protein"] = ("esm2", 640)
TISSUES = [f"tissue_{i:02d}" for i in range(30)]

CHILD = """
import hashlib, json, sys, time
import torch
try:
    import isoflow.loader as data
except ModuleNotFoundError as error:  # older trees (c40b196) call the module isoflow.data
    if error.name != "isoflow.loader":
        raise
    import isoflow.data as data
cfg = json.loads(sys.argv[1])
if cfg["torch_threads"]:
    torch.set_num_threads(cfg["torch_threads"])
module = data.IsoformDataModule(
    cfg["dataset"], ["dna", "rna", "protein"], cache_dirs=cfg["caches"],
    batch_size=cfg["batch_size"], num_workers=0,
)
module.setup()
loader = module.train_dataloader()
def epoch():
    n = 0
    floats = 0
    for batch in loader:
        n += 1
        for emb, mask in batch["inputs"].values():
            floats += emb.numel()
    return n, floats
epoch()  # warm-up: page cache, first allocations
times, cpu = [], []
for e in range(cfg["epochs"]):
    loader.sampler.set_epoch(e + 1)
    start, start_cpu = time.perf_counter(), time.process_time()
    n, floats = epoch()
    times.append((time.perf_counter() - start) / n)
    cpu.append((time.process_time() - start_cpu) / n)
emb, _ = next(iter(loader))["inputs"]["dna"]
digest = hashlib.sha256()  # epoch 1's batches as the model gets them (untimed)
loader.sampler.set_epoch(1)
for batch in loader:
    digest.update(batch["index"].numpy().astype("<i8").tobytes())
    digest.update(batch["target"].numpy().astype("<f4").tobytes())
    for modality in sorted(batch["inputs"]):
        emb, mask = batch["inputs"][modality]
        mask = mask.bool()
        digest.update(mask.sum(1).numpy().astype("<i8").tobytes())
        digest.update(emb.float()[mask].contiguous().numpy().tobytes())
print(json.dumps({"s_per_batch": times, "cpu_per_batch": cpu, "batches": n,
                  "dtype": str(emb.dtype), "file": data.__file__,
                  "batches_sha256": digest.hexdigest()}))
"""


class StandInEncoder:
    """What build_cache needs of an encoder: ``dim``, ``modality``, ``tokenize``, a forward
    returning ``(emb (B, L, D), mask)``; random embeddings, at most ``pool_to`` tokens each
    (longer ones would only be pooled down to that by the writer)."""

    def __init__(self, modality: str, dim: int, pool_to: int, seed: int):
        import torch

        self.torch = torch
        self.modality, self.dim, self.pool_to = modality, dim, pool_to
        self.generator = torch.Generator().manual_seed(seed)
        self.training = False
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self.weight])

    def state_dict(self):  # what the cache's weights_sha256 hashes
        return {"weight": self.weight}

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def tokenize(self, sequences) -> dict:
        if self.modality == "dna":
            tokens = [896] * len(sequences)
        elif self.modality == "rna":
            tokens = [min(len(s) // 6, 2048) for s in sequences]
        else:
            tokens = [len(s) for s in sequences]
        return {"lengths": self.torch.tensor([min(t, self.pool_to) for t in tokens])}

    def __call__(self, lengths):
        torch = self.torch
        width = int(lengths.max())
        emb = torch.randn(len(lengths), width, self.dim, generator=self.generator)
        mask = torch.arange(width)[None, :] < lengths[:, None]
        return emb, mask


def build_inputs(work: Path, n: int, pool_to: int, seed: int = 0) -> dict:
    """The dataset parquet and the three caches, written into ``work``: a new empty folder
    (benchcommon.scratch_in's, removed by the caller)."""
    import pandas as pd

    from isoflow.dataset import write_dataset
    from isoflow.embed import build_cache, dataset_items

    paths = {
        "dataset": str(work / "dataset.parquet"),
        "caches": {m: str(work / "embeddings" / name) for m, (name, _) in WIDTHS.items()},
    }
    if any(work.iterdir()):
        raise ValueError(f"{work}: build_inputs writes into a new empty folder only")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rna = "".join(rng.choice(list("ACGT"), int(rng.integers(300, 12000))))
        coding = rng.random() > 0.3
        protein = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(rng.integers(20, 1000))))
        tss = int(rng.integers(100_000, 1_000_000))
        rows.append(
            {
                "transcript_id": f"ENST{i:011d}.1",
                "gene_id": f"ENSG{i // 3:011d}.1",
                "gene_name": f"G{i // 3}",
                "transcript_type": "protein_coding" if coding else "lncRNA",
                "chrom": "chr1",
                "strand": "+",
                "tss": tss,
                "window_start": tss - 98_304,
                "window_end": tss + 98_304,
                "rna_seq": rna,
                "protein_seq": protein if coding else None,
                "split": "valid" if i == 0 else "test" if i == 1 else "train",
                **{t: np.float32(rng.normal()) for t in TISSUES},
            }
        )
    frame = pd.DataFrame(rows)
    write_dataset(frame, TISSUES, work / "absent_genome.fa", work / "dataset.parquet")
    for modality, (name, dim) in WIDTHS.items():
        out = work / "embeddings" / name
        if modality == "dna":  # DNA windows stand in as their transcript IDs: one key each
            items = dict(zip(frame["transcript_id"], frame["transcript_id"], strict=True))
        else:
            items = dataset_items(frame, modality)
        encoder = StandInEncoder(modality, dim, pool_to, seed)
        build_cache(encoder, items, out, pool_to=pool_to, batch_size=32, meta={"encoder": name})
    return paths


def same_batches(digests: dict[str, set[str]]) -> str:
    """The answers' line for the report; SystemExit when the loaders' batches (sha256 of
    epoch 1's, every run) are not all the same bytes: timing them would mean nothing."""
    seen = set().union(*digests.values())
    if len(seen) != 1:
        runs = "; ".join(f"{name}: {sorted(d)}" for name, d in digests.items())
        raise SystemExit(f"the loaders' batches differ ({len(seen)} distinct sha256): {runs}")
    return f"answers: the same batches (sha256 {seen.pop()[:16]}) from every loader and run"


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
    parser.add_argument("--transcripts", type=int, default=768)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool-to", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old", default="c40b196", help="git revision of the old loader")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch.set_num_threads in each child (0: torch's default); 1 keeps OpenMP "
        "threads from spinning against other jobs on a shared machine",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/isoflow_bench_loader"))
    args = parser.parse_args()

    # a folder of its own inside --work (data and old tree), removed at the end
    work = stack.enter_context(scratch_in(args.work, "bench_loader_"))
    paths = build_inputs(work, args.transcripts, args.pool_to)
    old_dir = stack.enter_context(old_tree(args.old, work))
    config = {**paths, "batch_size": args.batch_size, "epochs": args.epochs}
    config["torch_threads"] = args.torch_threads
    cases = {f"old ({args.old}): per item, float32": old_dir, "new: whole batch, float16": ROOT}
    results: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    digests: dict[str, set[str]] = {name: set() for name in cases}
    for _ in range(args.repeat):
        for name, cwd in cases.items():  # interleaved, so load drift hits both alike
            out = run_child(cwd, config)
            results[name] += out["s_per_batch"]
            cpu[name] += out["cpu_per_batch"]
            digests[name].add(out["batches_sha256"])
            print(
                f"{name}: {[round(t * 1e3, 2) for t in out['s_per_batch']]} ms/batch, CPU "
                f"{[round(t * 1e3, 2) for t in out['cpu_per_batch']]} ms/batch, "
                f"{out['batches']} batches/epoch, {out['dtype']}, {out['file']}",
                file=sys.stderr,
            )
    print(same_batches(digests))
    per_batch = {name: statistics.median(times) for name, times in results.items()}
    cpu_batch = {name: statistics.median(times) for name, times in cpu.items()}
    old_name, new_name = cases
    ratio = per_batch[old_name] / per_batch[new_name]
    floats = args.batch_size * args.pool_to * sum(d for _, d in WIDTHS.values())
    print(
        f"\n{args.transcripts} transcripts, batch {args.batch_size}, pool_to {args.pool_to}, "
        f"widths {', '.join(f'{n} {d}' for n, d in WIDTHS.values())}; median of "
        f"{args.repeat} x {args.epochs} epochs; torch threads {args.torch_threads or 'default'}; "
        f"load average {os.getloadavg()}"
    )
    print("| loader | ms per batch | batches/s | vs old | CPU ms per batch | CPU vs old |")
    print("|---|---|---|---|---|---|")
    for name, seconds in per_batch.items():
        print(
            f"| {name} | {seconds * 1e3:.2f} | {1 / seconds:.1f} | "
            f"{per_batch[old_name] / seconds:.1f}x | {cpu_batch[name] * 1e3:.2f} | "
            f"{cpu_batch[old_name] / cpu_batch[name]:.1f}x |"
        )
    print(
        f"\nThe new loader gathers a batch ({floats * 2 / 2**20:.1f} MiB of float16 at these "
        f"widths) in {per_batch[new_name] * 1e3:.1f} ms on one process (num_workers 0): it "
        f"keeps up with any GPU step of {per_batch[new_name] * 1e3:.1f} ms or more."
    )
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    summary = {
        "transcripts": args.transcripts,
        "batch_size": args.batch_size,
        "pool_to": args.pool_to,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "torch_threads": args.torch_threads,
        "load_average": os.getloadavg(),
        "s_per_batch": per_batch,
        "cpu_s_per_batch": cpu_batch,
        "all_runs": results,
        "all_runs_cpu": cpu,
        "ratio": ratio,
    }
    (out_dir / "loader.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
