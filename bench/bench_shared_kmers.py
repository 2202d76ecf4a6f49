"""The shared-k-mer check of ``isoflow finetune`` (``isoflow.finetune.shared_kmers``: groups
sharing most of their own sequence on either strand, any length) against its first
prototype (the reference: ``bench/shared_kmers_prototype.py``, or ``--reference PATH``), the
same tables in the same run, each timed (wall and this process's CPU), pairs compared.

    python bench/bench_shared_kmers.py [--elements PATH] [--reference PATH] [--repeat 2]

Tables: Kircher et al. 2019's SNVs (GRCh38, 1-bp deletions left out) each as isoflow's
reporter construct with the element as promoter (a ``-flip`` element reversed), grouped by
element, all 39,170 and a first 20,000; the first 3,000 each its own group. The reference
is run once per table (it is slow). Results: docs/benchmarks.md ("Groups sharing
sequence"). Exits 1 when the two give different pairs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from isoflow.constructs import Construct
from isoflow.finetune import shared_kmers
from isoflow.variants import (
    REPORTER,
    element_reference,
    element_substitutions,
    kircher_construct,
    read_kircher,
)

REPO = Path(__file__).resolve().parents[1]
ELEMENTS = REPO.parent / "shared" / "data" / "real" / "kircher_mpra" / "elements.tsv.gz"


def kircher_table(path: Path) -> tuple[list[str], list[str]]:
    rows, _ = read_kircher(path)
    seqs, groups = [], []
    for name in sorted(set(rows["Element"])):
        mine = rows[rows["Element"] == name]
        element = element_reference(mine, name)
        strand = "-" if name.endswith("flip") else "+"
        promoter = kircher_construct(element, strand).parts["promoter"]
        subs, _, _ = element_substitutions(mine, element, strand)
        for _, i, _, alt in subs:
            parts = {"promoter": promoter[:i] + alt + promoter[i + 1 :], **REPORTER}
            seqs.append(Construct(name, parts).cassette)
            groups.append(name)
    return seqs, groups


def load_reference(path: Path):
    """The ``shared_kmers`` of the module at ``path``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("shared_kmers_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module.shared_kmers


def timed(function, seqs, groups):
    wall, cpu = time.perf_counter(), time.process_time()
    pairs = function(seqs, groups).pairs
    return pairs, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=Path, default=ELEMENTS)
    parser.add_argument(
        "--reference", type=Path, default=REPO / "bench" / "shared_kmers_prototype.py"
    )
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(
        f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores), "
        f"load average {load:.1f}"
    )
    reference = load_reference(args.reference)
    seqs, groups = kircher_table(args.elements)
    tables = {
        f"Kircher SNVs by element ({len(seqs):,})": (seqs, groups),
        "first 20,000 by element": (seqs[:20000], groups[:20000]),
        "first 3,000, one group each": (seqs[:3000], list(range(3000))),
    }
    same = True
    for name, (s, g) in tables.items():
        mine = [timed(shared_kmers, s, g) for _ in range(args.repeat)]
        theirs = timed(reference, s, g)
        agree = all(m[0] == theirs[0] for m in mine)
        same &= agree
        times = ", ".join(f"{w:.2f} s ({c:.2f} CPU-s)" for _, w, c in mine)
        print(
            f"{name}: shared_kmers {times}; reference {theirs[1]:.2f} s "
            f"({theirs[2]:.2f} CPU-s); {len(mine[0][0])} pairs, "
            f"{'the same' if agree else 'DIFFERENT'}: {mine[0][0][:3]}"
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
