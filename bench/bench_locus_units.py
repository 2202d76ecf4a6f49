"""What the locus map costs a bootstrap job under ``split.scheme: locus`` at GENCODE scale
(docs/benchmarks.md, "The locus map in the report's bootstrap jobs").

Rules ``report_bootstrap`` / ``report_bootstraps`` rebuild the gene -> locus map
(``bootstrap.split_units``: ``pd.read_parquet`` of ``transcripts.parquet``'s six columns, then
``splits.locus_units``) from the whole annotation in every job, then resample the run
(``bootstrap.write_run``). This bench writes, into a scratch folder:

- a synthetic ``transcripts.parquet`` of GENCODE v39's size (``--genes`` genes, ~4 transcripts
  each, ~6 exons a transcript: ~61k genes, ~250k transcripts, ~1.5 M exons), genes placed at
  random on GRCh38's chromosomes (``make_gencode_scale.GRCH38``) on either strand, so genes
  overlap, nest and meet head to head as GENCODE's do; introns log-normal (median 1.5 kb),
  alternative first exons up to 30 kb into the gene;
- one run's ``predictions.parquet`` (``bench_bootstrap_scale.synthetic``: ``--transcripts``
  test transcripts x ``--tissues`` tissues), its genes the annotation's first genes;

and times, each in a fresh interpreter (as a job runs) after the import of
``isoflow.report.bootstrap``, alternating ``--repeat`` times:

- ``job``: the job's work, ``split_units(annotation, "locus")`` then ``write_run`` with those
  units (wall and CPU of each part, the process's peak RSS after each);
- ``reference``: ``write_run`` alone, the units read from a small file the first ``job`` wrote
  (the job without the locus map: its peak RSS is the job's without the annotation).

The ratio to keep: the locus map's CPU over ``write_run``'s in the same job. Checks first that
the map is right: equal to an independent union-find over the same annotation (a Python loop
over sorted TSSs and exons, not ``locus_units``' numpy chains and scipy components), every
unit on one side of ``split_transcripts(scheme="locus")``, and both children's ``.npz``
files byte-identical.

Run: .venv/bin/python bench/bench_locus_units.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from bench_bootstrap_scale import synthetic
from benchcommon import scratch_in, timed
from make_gencode_scale import GRCH38

CHILD = "--child"


def annotation(genes: int, seed: int = 0) -> pd.DataFrame:
    """transcript_id, gene_id, chrom, strand, tx_start, tx_end, tss, exon_starts, exon_ends
    (DESIGN.md's types and conventions: 0-based half-open, exons in genomic order, sorted by
    chrom, tx_start, transcript_id) of ``genes`` genes, as arrow-backed columns."""
    rng = np.random.default_rng(seed)
    chroms = [c for c in GRCH38 if c != "chrM"]
    length = np.array([GRCH38[c] for c in chroms], dtype=np.int64)
    gene_chrom = rng.choice(len(chroms), genes, p=length / length.sum())
    gene_start = 10_000 + (rng.random(genes) * (length[gene_chrom] - 1_000_000)).astype(np.int64)
    gene_minus = rng.random(genes) < 0.5
    coding = rng.random(genes) < 0.33
    n_tx = 1 + rng.poisson(np.where(coding, 6.0, 1.6))
    tx_gene = np.repeat(np.arange(genes), n_tx)
    n = len(tx_gene)
    alternative = rng.random(n) < 0.3  # an alternative first exon further into the gene
    offset = np.where(alternative, rng.integers(0, 30_000, n), rng.integers(0, 2_000, n))
    tx_start = gene_start[tx_gene] + offset
    tx_coding = coding[tx_gene] & (rng.random(n) < 0.62)
    names = np.array([f"ENST{t:011d}.{t % 7 + 1}" for t in range(n)], dtype=object)
    order = np.lexsort((names, tx_start, gene_chrom[tx_gene]))  # chroms in GRCH38's order
    tx_gene, tx_start, tx_coding, names = (a[order] for a in (tx_gene, tx_start, tx_coding, names))

    n_exons = np.maximum(1, rng.poisson(np.where(tx_coding, 8.3, 3.4)) + tx_coding + 1)
    n_exons = np.minimum(n_exons, 40)
    total = int(n_exons.sum())
    exon_tx = np.repeat(np.arange(n), n_exons)
    exon_len = rng.integers(60, 320, total)
    intron = np.clip(rng.lognormal(np.log(1_500), 1.2, total), 80, 20_000).astype(np.int64)
    step = exon_len + intron
    before = np.cumsum(step) - step  # each exon's offset from the first exon of all
    first = np.concatenate([[0], np.cumsum(n_exons)[:-1]])
    starts = tx_start[exon_tx] + before - before[first][exon_tx]
    ends = starts + exon_len
    tx_end = ends[np.cumsum(n_exons) - 1]
    minus = gene_minus[tx_gene]
    offsets = pa.array(np.concatenate([[0], np.cumsum(n_exons)]), type=pa.int32())
    frame = pd.DataFrame(
        {
            "transcript_id": names,
            "gene_id": [f"ENSG{g:011d}.{g % 9 + 1}" for g in tx_gene],
            "chrom": np.array(chroms, dtype=object)[gene_chrom[tx_gene]],
            "strand": np.where(minus, "-", "+").astype(object),
            "tx_start": tx_start,
            "tx_end": tx_end,
            "tss": np.where(minus, tx_end - 1, tx_start),
        }
    )
    frame["exon_starts"] = pd.arrays.ArrowExtensionArray(
        pa.ListArray.from_arrays(offsets, pa.array(starts, type=pa.int64()))
    )
    frame["exon_ends"] = pd.arrays.ArrowExtensionArray(
        pa.ListArray.from_arrays(offsets, pa.array(ends, type=pa.int64()))
    )
    return frame


def write_annotation(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, path)


def reference_units(frame: pd.DataFrame, tss_distance: int) -> dict[str, str]:
    """Gene key -> smallest gene key of its unit, by union-find over Python loops: TSSs sorted
    per contig joined to the previous one within ``tss_distance``; exons sorted per contig and
    strand joined to the gene of the exon reaching furthest right before them when they
    overlap it (half-open). The definition of ``splits.locus_units``, computed another way."""
    keys = [g.split(".", 1)[0].removesuffix("_PAR_Y") for g in frame["gene_id"]]
    parent: dict[str, str] = {k: k for k in keys}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    chrom = frame["chrom"].tolist()
    tss = frame["tss"].tolist()
    previous: tuple[str, int, str] | None = None
    for i in sorted(range(len(keys)), key=lambda i: (chrom[i], tss[i])):
        if previous and previous[0] == chrom[i] and tss[i] - previous[1] <= tss_distance:
            union(previous[2], keys[i])
        previous = (chrom[i], tss[i], keys[i])

    strand = frame["strand"].tolist()
    exons = [
        (chrom[i], strand[i], s, e, keys[i])
        for i, (starts, ends) in enumerate(
            zip(frame["exon_starts"].tolist(), frame["exon_ends"].tolist(), strict=True)
        )
        for s, e in zip(starts, ends, strict=True)
    ]
    exons.sort()
    group, reach, reach_key = None, -1, ""
    for c, s, start, end, key in exons:
        if (c, s) != group:
            group, reach, reach_key = (c, s), -1, ""
        elif start < reach:
            union(reach_key, key)
        if end > reach:
            reach, reach_key = end, key
    return {k: find(k) for k in parent}


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM: ``ru_maxrss`` keeps the parent's peak across the
    fork and exec of a child, so a child would report the bench's own)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status: this bench reads Linux's")


def child(spec: dict) -> None:
    """One job in this fresh interpreter: prints its timings as JSON."""
    started = time.perf_counter(), time.process_time()
    from isoflow.report import bootstrap
    from isoflow.splits import LOCUS_COLUMNS

    out = {"import": (time.perf_counter() - started[0], time.process_time() - started[1])}
    out["rss_imported_kb"] = peak_rss_kb()
    holder: dict = {}
    if spec["units_from"]:
        units = pd.read_parquet(spec["units_from"])["unit"]
    else:
        out["split_units"] = timed(
            lambda: holder.update(units=bootstrap.split_units(spec["annotation"], "locus", 1000))
        )
        units = holder["units"]
        out["rss_units_kb"] = peak_rss_kb()
        if spec["units_to"]:
            units.to_frame().to_parquet(spec["units_to"])
    out["write_run"] = timed(
        lambda: bootstrap.write_run(
            spec["predictions"], spec["npz"], spec["resamples"], spec["seed"], units
        )
    )
    out["rss_peak_kb"] = peak_rss_kb()
    if not spec["units_from"]:  # split_units' read alone, after the job's work
        out["read"] = timed(
            lambda: pd.read_parquet(spec["annotation"], columns=["gene_id", *LOCUS_COLUMNS])
        )
    print(json.dumps(out))


def run_child(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, CHILD, json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"child failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == CHILD:
        child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=61_000, help="annotation genes")
    parser.add_argument("--transcripts", type=int, default=9000, help="test transcripts")
    parser.add_argument("--per-gene", type=float, default=4.66, help="test transcripts a gene")
    parser.add_argument("--tissues", type=int, default=30)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="alternations of the two jobs")
    parser.add_argument("--scratch", type=Path, help="folder for the scratch files")
    args = parser.parse_args()

    from isoflow.splits import LOCUS_COLUMNS, locus_units, split_transcripts

    with scratch_in(args.scratch or Path(os.environ.get("TMPDIR", "/tmp"))) as work:
        made = time.perf_counter()
        frame = annotation(args.genes)
        path = work / "transcripts.parquet"
        write_annotation(frame, path)
        size = path.stat().st_size
        predictions = synthetic(work, 1, args.transcripts, args.per_gene, args.tissues, zeros=0.1)[
            "run0"
        ]
        made = time.perf_counter() - made
        exons = int(frame["exon_starts"].list.len().sum())
        genes = frame["gene_id"].nunique()

        # The map is right before anything is timed.
        checked = time.perf_counter()
        units = locus_units(frame[["gene_id", *LOCUS_COLUMNS]], 1000)
        if units.to_dict() != reference_units(frame, 1000):
            raise SystemExit("locus_units differs from the union-find reference")
        split = split_transcripts(frame, scheme="locus", source=path)
        unit_of = pd.Series(split["gene_id"].str.split(".").str[0]).map(units)
        if split.groupby(unit_of)["split"].nunique().max() != 1:
            raise SystemExit("a locus lies on two sides of the split")
        checked = time.perf_counter() - checked
        sizes = units.value_counts()

        spec = {"annotation": str(path), "predictions": str(predictions), "seed": 0}
        spec["resamples"] = args.resamples
        rows: dict[str, list[dict]] = {"job": [], "reference": []}
        units_file = work / "units.parquet"
        for i in range(args.repeat):
            rows["job"].append(
                run_child(
                    spec
                    | {
                        "units_from": None,
                        "units_to": str(units_file) if i == 0 else None,
                        "npz": str(work / "job.npz"),
                    }
                )
            )
            if i == 0 and not pd.read_parquet(units_file)["unit"].equals(units):
                raise SystemExit("the job's units differ from locus_units' in this process")
            rows["reference"].append(
                run_child(
                    spec
                    | {
                        "units_from": str(units_file),
                        "units_to": None,
                        "npz": str(work / "ref.npz"),
                    }
                )
            )
            if (work / "job.npz").read_bytes() != (work / "ref.npz").read_bytes():
                raise SystemExit("the two jobs wrote different bootstrap.npz files")

    def median(name: str, part: str, which: int) -> float:
        return statistics.median(r[part][which] for r in rows[name])

    def peak(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[name]) / 1024

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; annotation {genes:,} genes, {len(frame):,} transcripts, "
        f"{exons:,} exons, {len(sizes):,} loci (the largest of {sizes.iloc[0]} genes; "
        f"{int((sizes > 1).sum()):,} of 2+ genes), {size / 2**20:.0f} MiB; "
        f"test set {args.transcripts:,} transcripts x {args.tissues} tissues, "
        f"{args.resamples:,} resamples (inputs written in {made:.0f} s, map checked in "
        f"{checked:.0f} s: equal to the union-find, one side per locus, .npz identical)"
    )
    print(f"medians of {args.repeat}, each job in its own interpreter:")
    for name, part in [
        ("job", "import"),
        ("job", "split_units"),
        ("job", "read"),
        ("job", "write_run"),
        ("reference", "write_run"),
    ]:
        print(
            f"{name + ' ' + part:>22}: wall {median(name, part, 0):6.2f} s, "
            f"cpu {median(name, part, 1):6.2f} s"
        )
    print(
        f"locus map / write_run in the job: wall "
        f"{median('job', 'split_units', 0) / median('job', 'write_run', 0):.1%}, cpu "
        f"{median('job', 'split_units', 1) / median('job', 'write_run', 1):.1%}"
    )
    print(
        f"peak RSS (MiB): after the imports {peak('job', 'rss_imported_kb'):.0f}, after the "
        f"locus map {peak('job', 'rss_units_kb'):.0f}, the job's {peak('job', 'rss_peak_kb'):.0f};"
        f" reference after the imports {peak('reference', 'rss_imported_kb'):.0f}, its peak "
        f"{peak('reference', 'rss_peak_kb'):.0f}"
    )


if __name__ == "__main__":
    main()
