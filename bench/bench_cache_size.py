"""Disk size of the embedding cache at full scale, adaptive against positional pooling.

From the real shapes: IsoFormer's dataset (~91k transcripts, --transcripts), the published
encoders' token counts and widths (Enformer 896 bins x 3,072; Borzoi 6,144 bins x 1,536;
NT-v2 250M up to 2,047 6-mer tokens x 768 for an RNA of at most rna.max_nt = 12,282 nt;
ESM-2 150M up to 1,022 residues x 640), float16. Rows per sequence come from
``isoflow.embed.pooled_rows`` (what ``pool_sequence`` keeps) at the longest input each encoder
reads, so every RNA / protein figure is an upper bound (every transcript at the length cap;
DNA windows all have the full length); distinct sequences are at most the transcripts.

nt_dna is NT-v2 250M on the DNA window (the ablation grid's DNA encoder): it reads the centre
12,282 bp as 2,047 6-mers, and the positional cache keeps dna_crop_bins of them.

Sanity check: for each encoder, ``isoflow.embed.build_cache`` (the real writer) caches
--check sequences of maximal length from a stand-in encoder of the real width and token count
(random values; the writer only sees shapes), and the shard bytes per sequence it wrote are
compared with ``rows * dim * 2``; --check 0 skips it (the sizes alone).

A second table sums the caches each preset writes in its results folder (the embedding store
is per folder, so the Borzoi preset's --directory encodes its RNA and protein caches again).

Run: .venv/bin/python bench/bench_cache_size.py [--transcripts 91000] [--check 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

GB = 1e9

# name: (modality, tokens of the longest input, width, letters per token, input letters)
ENCODERS = {
    "enformer": ("dna", 896, 3072, 128, 196_608),
    "borzoi": ("dna", 6144, 1536, 32, 524_288),
    "nucleotide_transformer": ("rna", 2047, 768, 6, 12_282),
    "esm2": ("protein", 1022, 640, 1, 1022),
    "nt_dna": ("dna", 2047, 768, 6, 12_282),
}
ADAPTIVE = 64  # config.yaml's pool_to before positional pooling became its default
POSITIONAL = {"mode": "positional", "dna_crop_bins": 128, "stride_nt": 96, "stride_aa": 16}
# the caches (encoder, pooling) each preset's results folder holds (its dry run's embed jobs)
DEFAULT = [("enformer", "positional"), ("nucleotide_transformer", "positional")]
DEFAULT += [("esm2", "positional")]
PRESETS = {
    "config.yaml (isoformer.yaml: the same caches, at its transcripts)": DEFAULT,
    "config.yaml + borzoi.yaml (its own --directory)": [("borzoi", "positional")] + DEFAULT[1:],
    "config.yaml + ablations.yaml": DEFAULT
    + [("enformer", "adaptive"), ("nucleotide_transformer", "adaptive"), ("esm2", "adaptive")]
    + [("nt_dna", "positional")],
}


def check_count(text: str) -> int:
    """--check: sequences per synthetic cache, 0 to skip the check."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no check) or more, got {value}")
    return value


class StandIn:
    """What build_cache needs of an encoder: the real width and token count, random values."""

    def __init__(self, modality: str, dim: int, tokens: int, letters_per_token: int):
        import torch

        self.torch = torch
        self.modality, self.dim, self.tokens = modality, dim, tokens
        # NT's tokens are 6-mers (stride_nt in tokens); a DNA encoder's bins need no stride
        self.letters_per_token = letters_per_token if modality == "rna" else 1
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
        return {"n": self.torch.tensor([self.tokens] * len(sequences))}

    def __call__(self, n):
        torch = self.torch
        emb = torch.randn(len(n), self.tokens, self.dim)
        return emb, torch.ones(len(n), self.tokens, dtype=torch.bool)


def rows(pooling, name: str) -> int:
    from isoflow.embed import pooled_rows

    modality, tokens, _, per_token, _ = ENCODERS[name]
    return pooled_rows(pooling, modality, tokens, per_token if modality == "rna" else 1)


def measured_bytes_per_sequence(name: str, pooling, n: int, work: Path) -> float:
    """Shard bytes per sequence that build_cache writes for ``n`` maximal sequences."""
    from isoflow.embed import build_cache

    modality, tokens, dim, per_token, letters = ENCODERS[name]
    encoder = StandIn(modality, dim, tokens, per_token)
    # n distinct sequences of the real input length (the writer sizes its buffer by it)
    items = {f"t{i}": f"{i:08d}".rjust(letters, "A") for i in range(n)}
    kind = "positional" if isinstance(pooling, dict) else "adaptive"
    out = work / f"{name}-{kind}"
    extra = {"pooling": pooling} if isinstance(pooling, dict) else {}
    build_cache(encoder, items, out, pool_to=ADAPTIVE, batch_size=4, **extra)
    return sum(p.stat().st_size for p in out.glob("shard_*.npy")) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=int, default=91_000)
    parser.add_argument(
        "--check", type=check_count, default=8, help="sequences per synthetic cache (0: skip)"
    )
    args = parser.parse_args()
    n = args.transcripts
    print(
        f"| encoder | width | rows: full | adaptive {ADAPTIVE} | positional | GB at {n:,}: "
        "full | adaptive | positional | positional, measured bytes/seq (computed) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, tokens, dim, _, _) in ENCODERS.items():
            counts = {"full": tokens, "adaptive": rows(ADAPTIVE, name)}
            counts["positional"] = rows(POSITIONAL, name)
            sizes[name] = {k: n * r * dim * 2 / GB for k, r in counts.items()}
            computed = counts["positional"] * dim * 2
            if args.check:
                measured = measured_bytes_per_sequence(name, POSITIONAL, args.check, Path(tmp))
                written = f"{measured:,.0f} ({computed:,})"
            else:
                written = f"not checked ({computed:,})"
            print(
                f"| {name} | {dim:,} | {counts['full']:,} | {counts['adaptive']} | "
                f"{counts['positional']} | {sizes[name]['full']:.1f} | "
                f"{sizes[name]['adaptive']:.1f} | {sizes[name]['positional']:.1f} | {written} |"
            )
    trio = ("enformer", "nucleotide_transformer", "esm2")
    totals = {k: sum(sizes[name][k] for name in trio) for k in ("full", "adaptive", "positional")}
    print(
        f"| Enformer + NT-v2 + ESM-2 | | | | | {totals['full']:.1f} | "
        f"{totals['adaptive']:.1f} | {totals['positional']:.1f} | |"
    )
    print(f"\n| preset | caches | GB at {n:,} |\n|---|---|---|")
    for preset, caches in PRESETS.items():
        listed = ", ".join(f"{name} {kind} {sizes[name][kind]:.1f}" for name, kind in caches)
        print(f"| {preset} | {listed} | {sum(sizes[a][b] for a, b in caches):.1f} |")


if __name__ == "__main__":
    main()
