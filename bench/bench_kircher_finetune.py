"""Fine-tuning on a real construct table: the Kircher et al. 2019 saturation-mutagenesis MPRA
(Nat Commun 10:3583), promoter elements, GRCh38 rows of ``elements.tsv.gz`` (issue 12 item 3).

Each SNV of each promoter element (``isoflow.variants.KIRCHER_PROMOTERS``, the gene's
orientation) becomes a construct: the element with the alt allele as the promoter of the
fixed reporter (``isoflow.variants.REPORTER``, as bench/bench_kircher.py builds it), its
measured value the ``Coefficient`` (log2 effect). ``isoflow.finetune.run_finetune`` then
cross-validates fine-tuning of a bundle on them, twice: folds grouped by element (a model
must carry over to an unseen element) and grouped by position blocks of ``--block`` bp
within each element (unseen stretches of seen elements). Baselines on the same folds:
zero-shot = the bundle's ISM effect (alt - ref, mean over tissues), a ridge on k-mer counts
of the promoter (and with ``--shuffled``, fine-tuning on shuffled labels).

    python bench/bench_kircher_finetune.py --bundle results/models/RUN --per-element 60

``--per-element``: SNVs drawn per element (seeded; 0 = all, ~25k rows: hours on 2 cores).
Not part of CI's test step.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "real" / "kircher_mpra" / "elements.tsv.gz"


def kircher_table(data: Path, per_element: int, seed: int, block: int, window: int):
    """``(ids, alt inputs, ref inputs, measured (n, 1), element groups, block groups,
    promoter sequences)`` of the SNVs drawn."""
    from isoflow.constructs import Construct, construct_inputs
    from isoflow.variants import (
        KIRCHER_PROMOTERS,
        element_reference,
        element_substitutions,
        kircher_construct,
        read_kircher,
        substitute,
    )

    rows, _ = read_kircher(data)
    rng = np.random.default_rng(seed)
    ids, alts, refs, values, by_element, by_block, seqs = [], [], [], [], [], [], []
    for name, (data_name, strand, _tx) in KIRCHER_PROMOTERS.items():
        mine = rows[rows["Element"] == data_name]
        element = element_reference(mine, data_name)
        construct = kircher_construct(element, strand)
        ref = construct_inputs(construct, window=window)
        subs, measured, _ = element_substitutions(mine, element, strand)
        keep = np.arange(len(subs))
        if per_element and len(subs) > per_element:
            keep = np.sort(rng.choice(len(subs), per_element, replace=False))
        for i in keep:
            sub_id, index, r, a = subs[i]
            parts = dict(construct.parts)
            parts["promoter"] = substitute(parts["promoter"], index, r, a)
            alt = Construct(f"{name}:{sub_id}", parts)
            ids.append(alt.id)
            alts.append(construct_inputs(alt, window=window))
            refs.append(ref)
            values.append(measured[i])
            by_element.append(name)
            by_block.append(f"{name}:{index // block}")
            seqs.append(parts["promoter"])
    return (
        ids,
        alts,
        refs,
        np.asarray(values)[:, None],
        np.asarray(by_element, dtype=object),
        np.asarray(by_block, dtype=object),
        seqs,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle to fine-tune")
    parser.add_argument("--data", type=Path, default=DATA, help="elements.tsv.gz")
    parser.add_argument("--per-element", type=int, default=60, help="SNVs per element; 0: all")
    parser.add_argument("--block", type=int, default=25, help="bp per position block")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/kircher_finetune"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="frozen")
    parser.add_argument(
        "--shuffled", action="store_true", help="also the shuffled-label control (twice the time)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from isoflow.bundle import read_manifest
    from isoflow.finetune import run_finetune

    started = time.perf_counter()
    card = read_manifest(args.bundle)
    window = int(card["dna"]["window"])
    ids, alts, refs, values, by_element, by_block, seqs = kircher_table(
        args.data, args.per_element, args.seed, args.block, window
    )
    print(
        f"model: {args.bundle} (run {card['run']}, dataset {card['dataset']['name']}, "
        f"DNA window {window:,} bp; {card.get('data') or ''})"
    )
    print(
        f"data: {args.data}: {len(ids)} SNVs ({args.per_element or 'all'} per element, seed "
        f"{args.seed}) of {len(set(by_element))} promoter elements"
    )
    print(f"machine: {platform.node()} ({platform.machine()}), device {args.device}")
    settings = {
        "mode": args.mode,
        "folds": args.folds,
        "max_epochs": args.max_epochs,
        "batch_size": args.batch_size,
        "patience": 6,
        "seed": args.seed,
        "shuffled_control": args.shuffled,
    }
    for scheme, groups in (("element", by_element), (f"block{args.block}", by_block)):
        t0 = time.perf_counter()
        result = run_finetune(
            args.bundle,
            ids,
            alts,
            values,
            ["effect"],
            groups,
            seqs,
            args.out / scheme,
            settings=settings,
            reference_inputs=refs,
            source={"table": str(args.data), "scheme": scheme},
            device=args.device,
            grouping=scheme,
        )
        print(f"\nfolds grouped by {scheme} ({len(set(groups))} groups, {args.folds} folds):")
        print(f"{'method':<11} {'Spearman':>17} {'Pearson':>17} {'R2':>17}")
        for row in result.summary.itertuples():
            cells = [
                f"{getattr(row, m + '_mean'):+.3f} ± {getattr(row, m + '_sd'):.3f}"
                for m in ("spearman", "pearson", "r2")
            ]
            print(f"{row.method:<11} {cells[0]:>17} {cells[1]:>17} {cells[2]:>17}")
        print(f"({time.perf_counter() - t0:.0f} s)")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
