"""torch's CPU kernels held to AVX2 (``resources.cpu_kernels: avx2``, isoflow.cpu) against the
CPU's own (``native``): an encoder's forward at real size, each side in its own process (the
kernels are chosen when a process starts), alternating, in the same run; the time ratio and
whether the outputs are the same bytes.

    python bench/bench_cpu_kernels.py --encoders esm2,nucleotide_transformer \\
        --batch 2 --length 1024 --repeats 3 --threads 2
    python bench/bench_cpu_kernels.py --encoders enformer --batch 1 --length 131072

(Enformer at real size crops to 896 bins of 128 bp, so it needs at least 114,688 bp.)

Random weights at real size (``random_encoder(real_size=True)``, NT-v2 250M through
bench/gpu.py's stand-in), fp32, batch of random
sequences (seed 0). On an AVX2 machine both sides run the same kernels (ratio ~1, same
bytes); on an AVX-512 one the native side's outputs differ in the last bits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

from isoflow.cpu import MARKER, VARIABLES, kernel_env

CHILD = "--child"


def spec_for(name: str) -> dict:
    """The encoder's spec at real size: bench/gpu.py's SPECS where it has one (NT-v2 250M's
    weights in a plain feed-forward; without it the class builds a 173.3 M plain NT)."""
    from gpu import SPECS  # this script's folder: bench/

    return {"source": "tiny", **SPECS.get(name, {})}


def child(args: argparse.Namespace) -> None:
    import time

    import torch
    from bench_compile import random_tokens  # this script's folder: bench/

    from isoflow.model.encoders import random_encoder

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = random_encoder(args.encoder, spec_for(args.encoder), real_size=True).eval()
    tokens = random_tokens(encoder, args.batch, args.length)
    times = []
    with torch.no_grad():
        out, _ = encoder(**tokens)  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            out, _ = encoder(**tokens)
            times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "kernels": torch.backends.cpu.get_cpu_capability(),
                "best_s": min(times),
                "runs": [round(t, 3) for t in times],
                "sha256": hashlib.sha256(out.float().numpy().tobytes()).hexdigest(),
                "params_m": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 1),
            }
        )
    )


def run_side(args: argparse.Namespace, encoder: str, held: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (*VARIABLES, MARKER)}
    if held:
        env.update(kernel_env("avx2")[0])
    cmd = [sys.executable, __file__, CHILD, "--encoders", encoder]
    cmd += ["--batch", str(args.batch), "--length", str(args.length)]
    cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench_cpu_kernels: {encoder} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="esm2,nucleotide_transformer")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=1024, help="residues, nt or bp")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process")
    parser.add_argument("--rounds", type=int, default=2, help="process pairs per encoder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.encoder = args.encoders
        child(args)
        return
    if not kernel_env("avx2")[0]:
        sys.exit(f"bench_cpu_kernels: {kernel_env('avx2')[1]}")
    print(
        "| encoder | params (M) | kernels native / held | native best (s) | avx2 best (s) "
        "| avx2 / native | same bytes |"
    )
    print("|---|---|---|---|---|---|---|")
    for encoder in args.encoders.split(","):
        native, held = [], []
        for _ in range(args.rounds):  # alternating, so drift of the machine hits both sides
            native.append(run_side(args, encoder, held=False))
            held.append(run_side(args, encoder, held=True))
        n = min(r["best_s"] for r in native)
        h = min(r["best_s"] for r in held)
        same = len({r["sha256"] for r in native + held}) == 1
        print(
            f"| {encoder} | {native[0]['params_m']} | {native[0]['kernels']} / "
            f"{held[0]['kernels']} | {n:.3f} | {h:.3f} | {h / n:.2f} | {'yes' if same else 'no'} |"
        )


if __name__ == "__main__":
    main()
