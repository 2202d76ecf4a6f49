"""Disk size of the embedding cache at full scale, adaptive against positional pooling.

From the real shapes: IsoFormer's dataset (~91k transcripts, --transcripts), the published
encoders' token counts and widths (Enformer 896 bins x 3,072; Borzoi 6,144 bins x 1,536;
NT-v2 250M up to 2,047 6-mer tokens x 768 for an RNA of at most rna.max_nt = 12,282 nt;
ESM-2 150M up to 1,022 residues x 640), float16. Rows per sequence come from
``isoflow.embed.pooled_rows`` (what ``pool_sequence`` keeps) at the longest input each encoder
reads, so every RNA / protein figure is an upper bound (every transcript at the length cap;
DNA windows all have the full length); distinct sequences are at most the transcripts.

Sanity check: for each encoder, ``isoflow.embed.build_cache`` (the real writer) caches
--check sequences of maximal length from a stand-in encoder of the real width and token count
(random values; the writer only sees shapes), and the shard bytes per sequence it wrote are
compared with ``rows * dim * 2``.

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
}
ADAPTIVE = 64  # config.yaml's pool_to before positional pooling became its default
POSITIONAL = {"mode": "positional", "dna_crop_bins": 128, "stride_nt": 96, "stride_aa": 16}


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
    parser.add_argument("--check", type=int, default=8, help="sequences per synthetic cache")
    args = parser.parse_args()
    n = args.transcripts
    print(
        f"| encoder | width | rows: full | adaptive {ADAPTIVE} | positional | GB at {n:,}: "
        "full | adaptive | positional | positional, measured bytes/seq (computed) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    totals = {"full": 0.0, "adaptive": 0.0, "positional": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, tokens, dim, _, _) in ENCODERS.items():
            counts = {"full": tokens, "adaptive": rows(ADAPTIVE, name)}
            counts["positional"] = rows(POSITIONAL, name)
            sizes = {k: n * r * dim * 2 / GB for k, r in counts.items()}
            if name != "borzoi":  # the default trio: Enformer, NT-v2, ESM-2
                for k in totals:
                    totals[k] += sizes[k]
            measured = measured_bytes_per_sequence(name, POSITIONAL, args.check, Path(tmp))
            computed = counts["positional"] * dim * 2
            print(
                f"| {name} | {dim:,} | {counts['full']:,} | {counts['adaptive']} | "
                f"{counts['positional']} | {sizes['full']:.1f} | {sizes['adaptive']:.1f} | "
                f"{sizes['positional']:.1f} | {measured:,.0f} ({computed:,}) |"
            )
    print(
        f"| Enformer + NT-v2 + ESM-2 | | | | | {totals['full']:.1f} | "
        f"{totals['adaptive']:.1f} | {totals['positional']:.1f} | |"
    )


if __name__ == "__main__":
    main()
