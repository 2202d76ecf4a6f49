"""The data half at GENCODE scale: the annotation and sequences rules' functions against
gffread -w/-y on the same GTF and genome, old code (an extracted tree) against new.

Each measurement is one child process under ``/usr/bin/time`` (wall, user + system CPU, peak
RSS of that child alone), run in turns so old, new and gffread see the same load. The
annotation step is ``read_annotation`` + ``write_transcripts`` (scripts/annotation.py), the
sequences step ``pd.read_parquet`` + ``build_sequences`` with the config's 196,608 bp window
(scripts/sequences.py); gffread writes the spliced RNA and protein FASTA (``-w``, ``-y``)
from the same GTF and genome. Old and new outputs are compared byte for byte.

    .venv/bin/python bench/make_gencode_scale.py /tmp/ann14/gencode_scale.gtf \\
        --spacing 12000 --genome /tmp/ann14/genome.fa
    samtools faidx /tmp/ann14/genome.fa
    mkdir -p /tmp/ann14/old && git archive c40b196 isoflow | tar -x -C /tmp/ann14/old
    .venv/bin/python bench/bench_data_half.py /tmp/ann14/gencode_scale.gtf \\
        /tmp/ann14/genome.fa --old /tmp/ann14/old --work /tmp/ann14/bench --repeats 2
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ANNOTATION = """
import sys
import isoflow
print(isoflow.__file__)
from isoflow.annotation import read_annotation, write_transcripts
write_transcripts(read_annotation(sys.argv[1]), sys.argv[2])
"""

SEQUENCES = """
import sys
import pandas as pd
from isoflow.sequences import build_sequences
out = sys.argv[3]
build_sequences(pd.read_parquet(sys.argv[1]), sys.argv[2], 196_608, f"{out}/rna.fa.gz",
                f"{out}/protein.fa.gz", f"{out}/dna_windows.bed")
"""


def measure(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """(wall s, CPU s = user + system, peak RSS GiB) of one child process, run in ``cwd``
    (not the checkout: ``python -c`` puts the working folder first on sys.path, which would
    import the checkout's isoflow whatever PYTHONPATH says)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %S %M", "-o", timing.name, *command],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
        )
        wall, user, system, rss_kb = timing.read().split()[-4:]
    if done.stdout:
        print(f"  {command[0]} ran {done.stdout.strip()}", flush=True)
    return float(wall), float(user) + float(system), int(rss_kb) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gtf", type=Path)
    parser.add_argument("genome", type=Path)
    parser.add_argument("--old", type=Path, required=True, help="tree holding the old isoflow/")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for outputs")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    trees = {"old": args.old, "new": REPO}
    results: dict[str, list[tuple[float, float, float]]] = {}
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    for _ in range(args.repeats):
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            out = args.work / name
            out.mkdir(parents=True, exist_ok=True)
            parquet = out / "transcripts.parquet"
            command = [sys.executable, "-c", ANNOTATION, str(args.gtf), str(parquet)]
            results.setdefault(f"{name} annotation", []).append(measure(command, out, env))
            command = [sys.executable, "-c", SEQUENCES, str(parquet), str(args.genome), str(out)]
            results.setdefault(f"{name} sequences", []).append(measure(command, out, env))
        gff = args.work / "gffread"
        gff.mkdir(parents=True, exist_ok=True)
        command = ["gffread", "-w", str(gff / "rna.fa"), "-y", str(gff / "protein.fa")]
        command += ["-g", str(args.genome), str(args.gtf)]
        results.setdefault("gffread -w -y", []).append(measure(command, gff))
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| what | runs wall (s) | median wall | median CPU | peak RSS |")
    print("|---|---|---|---|---|")
    median = {}
    for what, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        median[what] = (wall, cpu, rss)
        walls = ", ".join(f"{r[0]:.1f}" for r in runs)
        print(f"| {what} | {walls} | {wall:.1f} s | {cpu:.1f} s | {rss:.2f} GiB |")
    ref_wall, ref_cpu, _ = median["gffread -w -y"]
    for name in trees:
        wall = median[f"{name} annotation"][0] + median[f"{name} sequences"][0]
        cpu = median[f"{name} annotation"][1] + median[f"{name} sequences"][1]
        print(
            f"{name}: annotation + sequences / gffread: {wall / ref_wall:.2f}x wall, "
            f"{cpu / ref_cpu:.2f}x CPU"
        )
    for output in ("transcripts.parquet", "rna.fa.gz", "protein.fa.gz", "dna_windows.bed"):
        same = filecmp.cmp(args.work / "old" / output, args.work / "new" / output, shallow=False)
        print(f"{output}: old and new {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
