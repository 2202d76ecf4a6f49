"""Ridge probes for the demo's promoter-GC term: the DNA cache vs the head's input of a run.

Says whether a DNA-only run's head sees the planted promoter-GC signal, and at what scale
(docs/model.md, "What was wrong"): the cache's feature offset and spread across
transcripts, a ridge probe of GC on the mean-pooled cache and on the head's input (the
pooled aggregator output of the run's best checkpoint), the norm of the least-squares
readout of the head input that fits the targets vs the trained head's, and sd(predicted) /
sd(observed). Probes: ridge on features z-scored on the 1,080 training transcripts, Pearson
r on the valid + test transcripts. Needs the demo's DNA-only run:

    .venv/bin/snakemake --cores 2 --configfile config/demo.yaml -- \\
        results/runs/dna_enformer_cross_attention_s0/metrics.json
    .venv/bin/python bench/probe_collapse.py results/runs/dna_enformer_cross_attention_s0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from isoflow.embed import EmbeddingCache
from isoflow.lightning import IsoFormerModule
from isoflow.model.aggregators import masked_mean


def ridge_r(x, y, fit, held, alpha=1.0):
    """Pearson r on ``held`` of a ridge on features z-scored on ``fit``."""
    x = (x - x[fit].mean(0)) / (x[fit].std(0) + 1e-30)
    a = x[fit]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y[fit] - y[fit].mean()))
    return np.corrcoef(x[held] @ w, y[held])[0, 1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a DNA-only run folder (results/runs/{run})")
    parser.add_argument("--dataset", default="results/dataset/demo.parquet")
    parser.add_argument("--cache", default="results/embeddings/enformer", help="DNA cache")
    parser.add_argument("--planted", default="resources/demo/planted_signal.tsv")
    args = parser.parse_args(argv)

    df = pd.read_parquet(args.dataset)
    planted = pd.read_csv(args.planted, sep="\t", comment="#")
    gc = df.merge(planted, on="transcript_id", how="left")["dna_value"].to_numpy()
    fit, held = (df["split"] == "train").to_numpy(), (df["split"] != "train").to_numpy()
    emb, mask = EmbeddingCache(args.cache).lookup_items(df["transcript_id"])
    pooled = masked_mean(emb, mask).double().numpy()
    print(
        f"cache: mean |x| {np.abs(pooled.mean(0)).mean():.3g}, "
        f"sd (median) {np.median(pooled.std(0)):.3g}"
    )
    print(f"ridge on mean-pooled cache -> GC: r = {ridge_r(pooled, gc, fit, held):.3f}")

    ckpt = next((args.run / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    hp = state["hyper_parameters"]
    module = IsoFormerModule(hp["config"], hp["experiment"], hp["tissues"], hp["cached_dims"])
    module.load_state_dict(state["state_dict"])
    module.eval()
    with torch.no_grad():
        head_input = masked_mean(*module.model.aggregator({"dna": (emb, mask)}))
        predicted = module.model.head(head_input).double().numpy()
    head_input = head_input.double().numpy()
    observed = df[hp["tissues"]].to_numpy()
    x = head_input[fit] - head_input[fit].mean(0)
    lstsq = np.linalg.lstsq(x, observed[fit] - observed[fit].mean(0), rcond=None)[0]
    head = module.model.head.weight.detach().double().numpy()
    print(f"checkpoint: {ckpt}")
    print(f"head input: sd (median) {np.median(head_input.std(0)):.3g}")
    print(f"ridge on head input -> GC: r = {ridge_r(head_input, gc, fit, held):.3f}")
    print(
        f"readout norm needed {np.median(np.linalg.norm(lstsq, axis=0)):.3g}, "
        f"head's {np.median(np.linalg.norm(head, axis=1)):.3g}"
    )
    print(f"sd(pred) / sd(obs): {np.median(predicted.std(0) / observed.std(0)):.3g}")


if __name__ == "__main__":
    main()
