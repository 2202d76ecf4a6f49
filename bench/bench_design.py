"""ledidi 2.2.0 against isoflow.design's evolutionary search on the demo: the same start
(the demo design's cassette, repaired to pass every constraint), the same ensemble of
bundles, the same budget of model calls (one cassette predicted by one bundle), seeds fixed.
Prints per method and seed: the objective reached (every candidate re-scored by the full
bundles), whether the best passes every constraint, the edits and the wall time. Run after
``make demo`` from the repository root (or ``--root`` a folder holding its outputs):

    .venv/bin/python bench/bench_design.py --budget 240 --seeds 0 1 2

How ledidi is fed: ledidi edits a one-hot matrix through a differentiable oracle. The
bundles' DNA path is one (the frozen Enformer reads a one-hot window), but the RNA and
protein paths start with tokenizers (NT 6-mers, ESM residues), which gradients do not cross.
So the oracle sees the editable bases through the DNA window only, with the start's RNA and
protein embeddings held fixed; ledidi's final batch is then scored by the full bundles (RNA
re-encoded) and checked against the constraints, and those calls count against its budget.
Fixed positions are never in ledidi's matrix; nothing else of the constraints reaches it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from isoflow.constraints import Constraints, failed
from isoflow.constructs import read_background
from isoflow.design import Objective, Scorer, Settings, evolve, make_layout, pick_construct, repair
from isoflow.embed import pool_tokens
from isoflow.genome import encode

BASES = "ACGT"


class DnaOracle(torch.nn.Module):
    """One-hot editable sites ``(B, 4, n_sites)`` -> ``(B, M * T)`` predictions of every
    bundle, the sites placed in each bundle's DNA window (the rest as the start's), RNA and
    protein embeddings the start's."""

    def __init__(self, scorer: Scorer, start_inputs, sites: np.ndarray, first: int):
        super().__init__()
        self.scorer = scorer
        window = scorer.window
        tokens = torch.as_tensor(encode(start_inputs.dna).astype(np.int64))
        self.base = torch.nn.functional.one_hot(tokens.clamp(0, 4), 5)[:, :4].float()
        at = sites - first
        inside = (at >= 0) & (at < window)
        self.site_index = torch.as_tensor(np.flatnonzero(inside))
        self.window_index = torch.as_tensor(at[inside])
        self.parts = torch.nn.ModuleList([m.network for m in scorer.models])
        for p in self.parameters():
            p.requires_grad_(False)
        # the start's RNA and protein embeddings, held fixed (no gradient crosses a tokenizer)
        self.reference = [m.embed([start_inputs]) for m in scorer.models]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        window = self.base.expand(batch, -1, -1).clone()
        window[:, self.window_index] = x.permute(0, 2, 1)[:, self.site_index]
        out = []
        for k, model in enumerate(self.scorer.models):
            if "dna" in model.frozen:
                encoder, pool_to = model.frozen["dna"]
            else:
                encoder, pool_to = model.network.encoders["dna"], None
            emb = encoder.model(window, return_only_embeddings=True).float()
            if pool_to is not None:
                emb = torch.stack([pool_tokens(e, e.shape[0], pool_to) for e in emb])
                emb = (
                    emb + (emb.half().float() - emb).detach()
                )  # the cache's float16, straight through
            inputs = {"dna": (emb, torch.ones(emb.shape[:2], dtype=torch.bool))}
            for m in model.modalities:
                if m != "dna":
                    ref = self.reference[k][m][0]
                    inputs[m] = (
                        ref.expand(batch, -1, -1),
                        torch.ones((batch, ref.shape[0]), dtype=torch.bool),
                    )
            out.append(model.network(inputs).float())
        return torch.cat(out, dim=1)


def run_ledidi(scorer, layout, seed_seq, objective, constraints, budget, seed, batch_size):
    from ledidi import Ledidi

    tissues = scorer.tissues
    n_models, n_tissues = len(scorer.models), len(tissues)
    parts = layout.parts(seed_seq)
    start_inputs = scorer.inputs([parts])[0]
    first = len(parts.get("upstream", "")) + len(parts["promoter"]) - scorer.window // 2
    oracle = DnaOracle(scorer, start_inputs, layout.sites, first)
    letters = seed_seq[layout.sites].tobytes().decode()
    x = torch.zeros(1, 4, len(letters))
    x[0, [BASES.index(b) for b in letters], torch.arange(len(letters))] = 1

    def loss(y_hat, _y_bar):
        pred = y_hat.reshape(y_hat.shape[0], n_models, n_tissues).permute(1, 0, 2)
        is_target = torch.tensor([t in objective.targets for t in tissues])
        rest = pred[..., ~is_target]
        other = rest.max(dim=-1).values if objective.others == "max" else rest.mean(dim=-1)
        per_model = pred[..., is_target].mean(dim=-1) - other
        sd = per_model.std(dim=0) if n_models > 1 else torch.zeros_like(per_model[0])
        return -(per_model.mean(dim=0) - objective.k * sd).mean()

    final = batch_size * n_models  # the final batch re-scored by the full bundles
    iters = max(1, (budget - final - n_models) // (batch_size * n_models))
    designer = Ledidi(
        oracle,
        shape=(4, len(letters)),
        output_loss=loss,
        l=0.0,
        batch_size=batch_size,
        max_iter=iters,
        early_stopping_iter=iters,
        verbose=False,
        random_state=seed,
    )
    with torch.enable_grad():
        samples = designer.fit_transform(x, torch.zeros(1, n_models * n_tissues))
    spent = n_models + iters * batch_size * n_models  # the initial call, then each step's batch
    seqs = []
    for row in samples.detach().argmax(dim=1).numpy():
        seq = seed_seq.copy()
        seq[layout.sites] = np.frombuffer("".join(BASES[i] for i in row).encode(), np.uint8)
        seqs.append(seq)
    calls_before = scorer.calls
    pred = scorer([layout.parts(s) for s in seqs])
    spent += scorer.calls - calls_before
    score = objective.score(pred, tissues)
    ok = np.array([not failed(layout.check(layout.parts(s), constraints)) for s in seqs])
    best = int(np.argmax(score))
    valid = np.flatnonzero(ok)
    best_valid = float(score[valid].max()) if len(valid) else float("nan")
    return {
        "objective": float(score[best]),
        "passes": bool(ok[best]),
        "best_valid": best_valid,
        "valid": f"{len(valid)}/{len(seqs)}",
        "edits": int((seqs[best] != seed_seq).sum()),
        "calls": spent,
        "iters": iters,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--config", type=Path, default=Path("config/demo.yaml"))
    parser.add_argument("--budget", type=int, default=240)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=8, help="ledidi's samples per step")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = yaml.safe_load(args.config.read_text())
    section, constructs = config["design"], config["constructs"]
    start = pick_construct(args.root / section["construct"], section["id"])
    constraints = Constraints.from_config(section.get("constraints"))
    layout = make_layout(start, section.get("editable", ["utr5", "utr3"]), (), constraints)
    objective = Objective(tuple(section["target_tissues"]), section.get("others", "max"), 1.0)
    bundles = [args.root / "results" / "models" / run for run in constructs["models"]]
    placement = {"background": read_background(args.root / constructs["background"])}
    scorer = Scorer(bundles, start, layout, placement=placement, device="cpu")
    print(f"start {start.id}: {len(layout.sites)} editable sites, {len(bundles)} bundles, "
          f"budget {args.budget} model calls, torch threads 2")  # fmt: skip
    print("method\tseed\tobjective\tbest_passes\tbest_valid\tvalid\tedits\tcalls\tseconds")
    for seed in args.seeds:
        t0 = time.perf_counter()
        out = evolve(
            scorer,
            scorer.tissues,
            layout,
            objective,
            constraints,
            Settings(budget=args.budget, population=8, seed=seed),
            calls_per_candidate=len(bundles),
        )
        seconds = time.perf_counter() - t0
        best = out["seqs"][0]
        passes = not failed(layout.check(layout.parts(best), constraints))
        edits = int((best != out["seed"]).sum())
        best_obj, n = out["objective"][0], len(out["seqs"])
        print(f"evolution\t{seed}\t{best_obj:.4f}\t{passes}\t{best_obj:.4f}\t{n}/{n}\t"
              f"{edits}\t{out['calls']}\t{seconds:.1f}")  # fmt: skip
        rng = np.random.default_rng(seed)
        seed_seq, _ = repair(layout.start, layout, constraints, rng, 20 * Settings.repair_steps)
        assert (seed_seq == out["seed"]).all()  # both start from the same repaired cassette
        t0 = time.perf_counter()
        led = run_ledidi(
            scorer, layout, seed_seq, objective, constraints, args.budget, seed, args.batch_size
        )
        seconds = time.perf_counter() - t0
        print(f"ledidi\t{seed}\t{led['objective']:.4f}\t{led['passes']}\t{led['best_valid']:.4f}\t"
              f"{led['valid']}\t{led['edits']}\t{led['calls']}\t{seconds:.1f}")  # fmt: skip
        start_obj = objective.score(scorer([layout.parts(seed_seq)]), scorer.tissues)[0]
        print(f"start\t{seed}\t{start_obj:.4f}\t(repaired start, the reference both begin at)")


if __name__ == "__main__":
    main()
