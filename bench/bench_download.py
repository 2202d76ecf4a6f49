"""isoflow.download.fetch (streamed sha256, atomic rename) against curl on the same local file.

A random file is served by http.server on 127.0.0.1 (a thread of this process); each run
downloads it with `curl -s -o` then `sha256sum` of the result (the reference: verifying by
hand), with `curl` alone (no check), and with `fetch(url, dest, sha256=...)`. Prints a
Markdown table; ratios are to the reference.

With --gzip the payload is a gzip file of GTF-like text (--mb compressed megabytes, served
under a .gz URL), which fetch also decompresses through to validate it; the reference then
adds `gzip -t` (verifying a .gz by hand).

    .venv/bin/python bench/bench_download.py --scratch /tmp/bench_download --mb 256 --repeats 3
    .venv/bin/python bench/bench_download.py --scratch /tmp/bench_download --mb 64 --gzip
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import http.server
import os
import random
import statistics
import subprocess
import threading
import time
from pathlib import Path

from benchcommon import scratch_in

from isoflow.download import fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gzip", action="store_true", help="a .gz payload of GTF-like text")
    args = parser.parse_args()
    # a folder of its own inside --scratch, removed at the end: the rest of --scratch stays
    with scratch_in(args.scratch, "bench_download_") as scratch:
        run(args, scratch)


def run(args: argparse.Namespace, scratch: Path) -> None:
    serve = scratch / "serve"
    serve.mkdir(parents=True, exist_ok=True)
    payload = serve / ("payload.gtf.gz" if args.gzip else "payload.bin")
    if args.gzip:
        write_gtf_gz(payload, args.mb << 20)
    else:
        payload.write_bytes(os.urandom(args.mb << 20))
    mb = payload.stat().st_size / (1 << 20)
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(serve))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{payload.name}"
    out = scratch / "out"
    out.mkdir(exist_ok=True)

    def curl() -> None:
        dest = out / "curl.bin"
        subprocess.run(["curl", "-sf", "-o", str(dest), url], check=True)
        got = subprocess.run(["sha256sum", str(dest)], check=True, capture_output=True, text=True)
        assert got.stdout.split()[0] == sha
        if args.gzip:
            subprocess.run(["gzip", "-t", str(dest)], check=True)
        dest.unlink()

    def curl_only() -> None:
        dest = out / "curl.bin"
        subprocess.run(["curl", "-sf", "-o", str(dest), url], check=True)
        dest.unlink()

    def isoflow_fetch() -> None:
        dest = out / "fetch.bin"
        fetch(url, dest, sha256=sha, retries=0)
        dest.unlink()

    reference = "curl + sha256sum + gzip -t" if args.gzip else "curl + sha256sum"
    runners = {
        reference: curl,
        "curl alone (no check)": curl_only,
        "isoflow fetch (sha256 + validation while streaming)": isoflow_fetch,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    httpd.shutdown()
    ref = statistics.median(times[reference])
    print(f"payload: {payload.name}, {mb:.0f} MB")
    print(f"| tool | median of {args.repeats} (s) | MB/s | ratio to {reference} | all runs (s) |")
    print("|---|---|---|---|---|")
    for name, runs in times.items():
        med = statistics.median(runs)
        all_runs = ", ".join(f"{t:.2f}" for t in runs)
        print(f"| {name} | {med:.2f} | {mb / med:.0f} | {med / ref:.2f} | {all_runs} |")


def write_gtf_gz(path: Path, size: int) -> None:
    """About ``size`` bytes of gzip holding GTF-like lines (random coordinates and IDs)."""
    rng = random.Random(0)
    with gzip.open(path, "wb", compresslevel=6) as out:
        while path.stat().st_size < size:
            lines = []
            for _ in range(10_000):
                start = rng.randrange(1, 248_000_000)
                end = start + rng.randrange(50, 3000)
                lines.append(
                    f"chr{rng.randrange(1, 23)}\tHAVANA\texon\t{start}\t{end}"
                    f'\t.\t+\t.\tgene_id "ENSG{rng.randrange(10**10):011d}.{rng.randrange(1, 9)}"; '
                    f'transcript_id "ENST{rng.randrange(10**10):011d}.1";\n'
                )
            out.write("".join(lines).encode())


if __name__ == "__main__":
    main()
