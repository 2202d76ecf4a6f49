"""``isoflow variants``: peak memory of the all-at-once scorer (every pair's alt inputs, each a
whole DNA window, and every reference built before the first is scored) against the streamed
one (a round of ``variants.CHUNK`` pairs built, scored and dropped at a time), same input.

The tiny bundle the tests build (``tests/helpers/bundles.py``: DNA raw through a tiny
Enformer, RNA and protein through frozen tiny NT / ESM-2 caches), trained and exported with a
--window bp DNA window (default Enformer's 196,608), on its 40 kb synthetic chr1; an
annotation of --transcripts non-coding two-exon transcripts spread along chr1 (every window
holds the whole contig, so each variant pairs with each transcript) and --variants SNVs at
random positions: variants x transcripts pairs. Each case runs ``variant_effects`` in its own
child process on the isoflow package of git revision --old (default 11a1996, before
streaming) or of this checkout, one thread, both in rounds of --chunk pairs
(``variants.CHUNK``, 256 by default; a small one shows the difference on few pairs); the
child reports the peak of the Python objects it allocates while scoring (``tracemalloc``:
the sequences and the rows, not torch's tensors), the growth of its peak RSS (``ru_maxrss``)
over a warm-up run of one pair (imports, the model, the genome: the tiny Enformer's forward
on a 196,608-bp window peaks at several GiB, which hides the inputs until they pass it), the
wall time, and the sha256 of the table ``write_table`` writes: the bench stops before
reporting when the two differ. Cases alternate --repeat times.

Run: nice -n 10 .venv/bin/python bench/bench_variants_memory.py --variants 16 --transcripts 5 \
    --chunk 8
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

from benchcommon import old_tree, run_in_tree, scratch_in

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, resource, sys, time, tracemalloc
import pandas as pd, torch
torch.set_num_threads(1)
import isoflow.variants
from isoflow.bundle import load_model
from isoflow.genome import GenomeWindows
from isoflow.variants import read_variants, variant_effects, write_table

cfg = json.loads(sys.argv[1])
isoflow.variants.CHUNK = cfg["chunk"]  # both trees score in rounds of CHUNK pairs
model = load_model(cfg["bundle"], device="cpu")
annotation = pd.read_parquet(cfg["annotation"])
variants = read_variants(cfg["variants"]).variants
with GenomeWindows(cfg["fasta"]) as genome:
    variant_effects(model, variants[:1], annotation.iloc[:1], genome)  # warm-up: one pair
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()  # Python objects (the sequences), not torch's tensors
    start = time.perf_counter()
    frame = variant_effects(model, variants, annotation, genome)
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
write_table(frame, cfg["out"])
digest = hashlib.sha256(open(cfg["out"], "rb").read()).hexdigest()
print(json.dumps({"growth_mb": (peak - before) / 1024, "base_mb": before / 1024,
                  "traced_mb": traced / 2**20,
                  "seconds": seconds, "rows": len(frame), "sha256": digest}))
"""


def inputs(work: Path, args) -> dict:
    """The bundle, the annotation and the variant table the children read (made once)."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.bundles import tiny_bundles

    (work / "bundle").mkdir()
    built = tiny_bundles(work / "bundle", window=args.window, device="cpu", check_n=1)
    fasta = built["fasta"]
    seq = "".join(line.strip() for line in fasta.read_text().splitlines()[1:])
    rng = np.random.default_rng(0)
    rows = []
    for k, tss in enumerate(np.linspace(2_000, len(seq) - 2_000, args.transcripts).astype(int)):
        plus = k % 2 == 0
        exons = (
            [(tss, tss + 150), (tss + 400, tss + 700)]
            if plus
            else [
                (tss - 699, tss - 399),
                (tss - 149, tss + 1),
            ]
        )
        rows.append(
            {
                "transcript_id": f"T{k}.1",
                "gene_id": f"G{k}.1",
                "gene_name": f"G{k}",
                "transcript_type": "lncRNA",
                "chrom": "chr1",
                "strand": "+" if plus else "-",
                "tss": int(tss),
                "exon_starts": [int(s) for s, _ in exons],
                "exon_ends": [int(e) for _, e in exons],
                "cds_start": None,
                "cds_end": None,
                "cds_phase": None,
                "selenocysteines": [],
                "tags": [],
            }
        )
    annotation = pd.DataFrame(rows)
    for column, dtype in (("cds_start", "Int64"), ("cds_end", "Int64"), ("cds_phase", "Int8")):
        annotation[column] = annotation[column].astype(dtype)
    annotation.to_parquet(work / "transcripts.parquet", index=False)
    positions = np.sort(rng.choice(len(seq), args.variants, replace=False))
    lines = ["chrom\tpos\tref\talt"]
    for p in positions:
        ref = seq[p].upper()
        lines.append(f"chr1\t{p + 1}\t{ref}\t{'C' if ref == 'A' else 'A'}")
    (work / "variants.tsv").write_text("\n".join(lines) + "\n")
    return {
        "bundle": str(built["paths"][0]),
        "fasta": str(fasta),
        "annotation": str(work / "transcripts.parquet"),
        "variants": str(work / "variants.tsv"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=500)
    parser.add_argument("--transcripts", type=int, default=10)
    parser.add_argument("--window", type=int, default=196_608)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=256, help="variants.CHUNK in both trees")
    parser.add_argument("--old", default="11a1996", help="git revision of the all-at-once scorer")
    parser.add_argument("--work", type=Path, default=Path("/tmp/isoflow_bench_variants"))
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        # a folder of its own inside --work, removed at the end: the rest of --work stays
        work = stack.enter_context(scratch_in(args.work, "bench_variants_memory_"))
        old_dir = stack.enter_context(old_tree(args.old, work))
        config = inputs(work, args)
        cases = {f"old ({args.old}): all at once": old_dir, "new: streamed rounds": ROOT}
        results: dict[str, list[dict]] = {name: [] for name in cases}
        for r in range(args.repeat):
            for name, tree in cases.items():  # alternating: load drift hits both
                child = {**config, "out": str(work / "t.tsv"), "chunk": args.chunk}
                out = run_in_tree(tree, CHILD, json.dumps(child))
                results[name].append(json.loads(out.strip().splitlines()[-1]))
                print(f"{name} #{r}: {results[name][-1]}", file=sys.stderr)
    report(results, args)


def report(results: dict, args) -> None:
    digests = {r["sha256"] for runs in results.values() for r in runs}
    if len(digests) != 1:
        raise SystemExit(f"the tables differ: {len(digests)} distinct sha256; no figure reported")
    rows = next(iter(results.values()))[0]["rows"]
    print(
        f"\n{rows:,} pairs ({args.variants} variants x {args.transcripts} transcripts), "
        f"{args.window:,} bp windows, rounds of {args.chunk} pairs; the same table bytes from "
        "every case and repeat; "
        f"median of {args.repeat}; load average {os.getloadavg()}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print("| scorer | peak traced Python memory (MiB) | peak RSS growth (MiB) | wall (s) |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        traced = statistics.median(r["traced_mb"] for r in runs)
        growth = statistics.median(r["growth_mb"] for r in runs)
        seconds = statistics.median(r["seconds"] for r in runs)
        print(f"| {name} | {traced:,.1f} | {growth:,.0f} | {seconds:,.1f} |")


if __name__ == "__main__":
    main()
