"""isoflow.download.fetch (streamed sha256, atomic rename) against curl on the same local file.

A random file is served by http.server on 127.0.0.1 (a thread of this process); each run
downloads it with `curl -s -o` then `sha256sum` of the result (the reference: verifying by
hand), with `curl` alone (no check), and with `fetch(url, dest, sha256=...)`. Prints a
Markdown table; ratios are to the reference.

    .venv/bin/python bench/bench_download.py --scratch /tmp/bench_download --mb 256 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

from isoflow.download import fetch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    serve = args.scratch / "serve"
    serve.mkdir(parents=True, exist_ok=True)
    payload = serve / "payload.bin"
    payload.write_bytes(os.urandom(args.mb << 20))
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(serve))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/payload.bin"
    out = args.scratch / "out"
    out.mkdir(exist_ok=True)

    def curl() -> None:
        dest = out / "curl.bin"
        subprocess.run(["curl", "-sf", "-o", str(dest), url], check=True)
        got = subprocess.run(["sha256sum", str(dest)], check=True, capture_output=True, text=True)
        assert got.stdout.split()[0] == sha
        dest.unlink()

    def curl_only() -> None:
        dest = out / "curl.bin"
        subprocess.run(["curl", "-sf", "-o", str(dest), url], check=True)
        dest.unlink()

    def isoflow_fetch() -> None:
        dest = out / "fetch.bin"
        fetch(url, dest, sha256=sha, retries=0)
        dest.unlink()

    runners = {
        "curl + sha256sum": curl,
        "curl alone (no check)": curl_only,
        "isoflow fetch (sha256 while streaming)": isoflow_fetch,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    httpd.shutdown()
    shutil.rmtree(args.scratch)
    ref = statistics.median(times["curl + sha256sum"])
    print(
        f"| tool | median of {args.repeats} (s) | MB/s | ratio to curl + sha256sum | all runs (s) |"
    )
    print("|---|---|---|---|---|")
    for name, runs in times.items():
        med = statistics.median(runs)
        all_runs = ", ".join(f"{t:.2f}" for t in runs)
        print(f"| {name} | {med:.2f} | {args.mb / med:.0f} | {med / ref:.2f} | {all_runs} |")


if __name__ == "__main__":
    main()
