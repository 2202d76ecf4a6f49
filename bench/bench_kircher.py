"""Variant effects against a real experiment: the Kircher et al. 2019 saturation-mutagenesis
MPRA (Nat Commun 10:3583), promoter elements, GRCh38 rows of ``elements.tsv.gz``.

For each promoter element (``isoflow.variants.KIRCHER_PROMOTERS``): its reference rebuilt
from the ``Ref`` column, placed as the promoter of a fixed synthetic reporter
(``isoflow.variants.REPORTER``) with the TSS right after its 3' end, in the gene's
orientation and, as a control, the opposite one; every SNV scored as alt - ref with a model
bundle (1-bp deletions ``-`` skipped and counted); Spearman(predicted, measured
``Coefficient``) per element for the mean over tissues' predictions, the best tissue
(exploratory: chosen after looking) and a permutation null (measured values shuffled).

    python bench/bench_kircher.py --bundle results/models/RUN
    python bench/bench_kircher.py --tiny /tmp/kircher_tiny   # trains + exports a tiny bundle
    python bench/bench_kircher.py --bundle ... --genome GRCh38.fa   # genomic context

With ``--genome``, the DNA window is the element's own genomic neighbourhood (TSS at its 3'
end in the orientation, the alt allele substituted) and the RNA/protein the reporter's.
Not part of CI's test step (tests/unit/test_variants.py runs the path on a small subset).
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "real" / "kircher_mpra" / "elements.tsv.gz"


def tiny_bundle(out: Path, window: int = 2048) -> Path:
    """Train (1 epoch) and export a tiny model on tests/helpers/training.py's synthetic
    data, DNA windows of ``window`` bp (the demo's), RNA and protein through caches."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.training import TINY_CONFIG, make_dataset
    from isoflow.bundle import export_bundle
    from isoflow.embed import embed_dataset
    from isoflow.train import run_experiment

    out.mkdir(parents=True, exist_ok=True)
    dataset, fasta = make_dataset(out, window=window)
    config = copy.deepcopy(TINY_CONFIG)
    config["train"]["max_epochs"] = 2
    cached = {"rna": "nucleotide_transformer", "protein": "esm2"}
    config["model"]["cached_modalities"] = list(cached)
    caches = {}
    for modality, name in cached.items():
        config["encoders"][name]["pool_to"] = 4
        caches[modality] = out / "embeddings" / name
        if not caches[modality].exists():
            embed_dataset(dataset, name, config["encoders"][name], caches[modality])
    experiment = {"modalities": ["dna", "rna", "protein"], "aggregator": "cross_attention"}
    run_dir = out / "runs" / "tiny"
    run_experiment(config, experiment, dataset, run_dir, fasta, cache_dirs=caches)
    bundle = out / "model"
    if not bundle.exists():
        settings = {**config, "dna": {"window": window}, "dataset": {"name": "tiny"}}
        export_bundle(
            run_dir,
            bundle,
            config=settings,
            experiment=experiment,
            dataset_path=dataset,
            cache_dirs=caches,
            genome_fasta=fasta,
            check_n=8,
            device="cpu",
        )
    return bundle


def genomic_effects(model, genome, element, strand, subs, batch_size=None):
    """``(ref (tissues,), alt - ref (n, tissues))`` with the DNA window read from the genome
    around the element (TSS: the base after its 3' end in ``strand``'s orientation)."""
    from isoflow.constructs import ModelInputs
    from isoflow.sequences import window_bounds
    from isoflow.variants import REPORTER, SubstitutedGenome, _dna_text, effects

    chrom = element.chrom if element.chrom in genome.lengths else f"chr{element.chrom}"
    found = genome.fetch(chrom, element.start - 1, element.end).upper()
    if found != element.seq:
        raise SystemExit(f"{element.name}: the genome's bases differ from the Ref column")
    tss = element.end if strand == "+" else element.start - 2  # 0-based
    lo, hi = window_bounds(tss, strand, model.dna_window)
    rna = REPORTER["utr5"] + REPORTER["cds"] + REPORTER["utr3"]
    from isoflow.alphabet import translate_cds

    protein = translate_cds(REPORTER["cds"])

    def inputs(g, name):
        return ModelInputs(name, _dna_text(g.tokens(chrom, lo, hi, strand)), rna, protein)

    ref = inputs(genome, element.name)
    alts = []
    length = len(element.seq)
    for name, index, _ref, alt in subs:
        plus_index = index if strand == "+" else length - 1 - index
        plus_alt = alt if strand == "+" else _complement(alt)
        patched = SubstitutedGenome(genome, chrom, element.start - 1 + plus_index, plus_alt)
        alts.append((element.name, inputs(patched, name)))
    ref_pred, effect = effects(model, {element.name: ref}, alts, batch_size=batch_size)
    return ref_pred[0], effect


def _complement(base: str) -> str:
    from isoflow.alphabet import reverse_complement

    return reverse_complement(base)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--bundle", type=Path, help="a model bundle (results/models/RUN)")
    which.add_argument("--tiny", type=Path, help="train and export a tiny bundle in this folder")
    parser.add_argument("--data", type=Path, default=DATA, help="elements.tsv.gz")
    parser.add_argument("--genome", type=Path, help="GRCh38 FASTA: the elements in context")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64, help="inputs per forward pass")
    parser.add_argument(
        "--orientations",
        choices=("both", "gene"),
        default="both",
        help="score the opposite orientation too (a control for the recorded strand)",
    )
    args = parser.parse_args(argv)

    from isoflow.bundle import load_model
    from isoflow.genome import GenomeWindows
    from isoflow.variants import (
        KIRCHER_PROMOTERS,
        construct_variant_effects,
        element_reference,
        element_substitutions,
        kircher_construct,
        permutation_null,
        read_kircher,
        spearman,
    )

    started = time.perf_counter()
    bundle = args.bundle or tiny_bundle(args.tiny)
    model = load_model(bundle, device=args.device)
    genome = GenomeWindows(args.genome) if args.genome else None
    rows, no_position = read_kircher(args.data)
    card = model.card
    print(
        f"model: {bundle} (run {card['run']}, dataset {card['dataset']['name']}, "
        f"{len(model.tissues)} tissues, DNA window {model.dna_window:,} bp)"
    )
    if card.get("data") or "tiny" in {e["spec"].get("source") for e in card["encoders"].values()}:
        print(
            "NOTE: a demo-size model (synthetic data and/or tiny random encoders): its "
            "correlations say nothing about real models; compare them with the null below."
        )
    print(f"data: {args.data} (GRCh38; {no_position} rows without coordinates left out)")
    print(
        f"context: {'genome ' + str(args.genome) if genome else 'reporter construct, N elsewhere'}"
    )
    print(
        f"machine: {platform.node()} ({platform.processor() or platform.machine()}), "
        f"device {model.device}"
    )
    header = (
        f"{'element':<11} {'data name':<9} {'orient':<6} {'snv':>5} {'del':>4} "
        f"{'rho(mean)':>9} {'null sd':>7} {'null q95|rho|':>13} {'p(|rho|)':>8} "
        f"{'best tissue (exploratory)':>30}"
    )
    print(header)
    summary = []
    for element_name, (data_name, gene_strand, _tx) in KIRCHER_PROMOTERS.items():
        mine = rows[rows["Element"] == data_name]
        element = element_reference(mine, data_name)
        opposite = "-" if gene_strand == "+" else "+"
        orientations = [("gene", gene_strand), ("flip", opposite)]
        for label, strand in orientations[: 2 if args.orientations == "both" else 1]:
            subs, measured, deletions = element_substitutions(mine, element, strand)
            if genome is not None:
                _, effect = genomic_effects(model, genome, element, strand, subs, args.batch_size)
            else:
                construct = kircher_construct(element, strand)
                _, effect = construct_variant_effects(
                    model, construct, subs, batch_size=args.batch_size
                )
            mean = effect.mean(axis=1)
            rho = spearman(mean, measured)
            null = permutation_null(mean, measured, n=args.permutations)
            q95 = float(np.quantile(np.abs(null), 0.95))
            p = float((np.sum(np.abs(null) >= abs(rho)) + 1) / (len(null) + 1))
            per_tissue = {t: spearman(effect[:, k], measured) for k, t in enumerate(model.tissues)}
            best = max(per_tissue, key=lambda t: abs(np.nan_to_num(per_tissue[t])))
            print(
                f"{element_name:<11} {data_name:<9} {label}{strand:<2} {len(subs):>5} "
                f"{deletions:>4} {rho:>9.3f} {np.std(null):>7.3f} {q95:>13.3f} {p:>8.3f} "
                f"{best[:20] + f' {per_tissue[best]:+.3f}':>30}"
            )
            summary.append((label, rho, q95))
    for label in sorted({lab for lab, _, _ in summary}, reverse=True):
        rhos = np.array([r for lab, r, _ in summary if lab == label])
        above = sum(abs(r) > q for lab, r, q in summary if lab == label)
        print(
            f"summary ({label} orientation): median rho {np.nanmedian(rhos):+.3f}, mean "
            f"{np.nanmean(rhos):+.3f}; |rho| above the null's 95% quantile in {above} of "
            f"{len(rhos)} elements (about {0.05 * len(rhos):.1f} expected by chance)"
        )
    print(
        "null: measured values shuffled over single variants, which are not exchangeable "
        "(three alts per position, neighbouring positions alike): likely too narrow"
    )
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
