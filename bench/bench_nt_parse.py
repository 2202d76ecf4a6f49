"""Parse cost of the NT-v2 remote-code check (``isoflow.config.check_nt_remote_code``).

``snakemake -n --configfile config/config.yaml`` in a working folder whose
``resources/models/nucleotide_transformer`` holds a tiny NT-v2 snapshot as rule
download_encoders leaves it (weights, tokenizer, remote code, ``isoflow_source.json``),
against the reference: the same dry run in an empty working folder (nothing downloaded,
nothing imported). The NT folder is timed twice a round: at a first parse (no
``.isoflow/remote_code`` record: torch and transformers' modules imported) and at a later
one (the record there: the import skipped). Turns alternate round by round, so a load change
on a shared machine hits them alike. Every dry run must plan (exit 0). Prints a Markdown
table of medians.

    .venv/bin/python bench/bench_nt_parse.py --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchcommon import scratch_in

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def dry_run(workdir: Path) -> float:
    args = [SNAKEMAKE, "-n", "-s", REPO / "Snakefile", "-d", workdir]
    args += ["--configfile", REPO / "config" / "config.yaml"]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0 or "This was a dry-run" not in done.stdout:
        sys.exit(f"dry run in {workdir} failed:\n{done.stderr[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests" / "helpers"))
    import yaml
    from encoders import record_nt_download, save_tiny_nt_snapshot

    repo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["encoders"]
    with scratch_in(args.scratch) as work:
        empty, with_nt = work / "empty", work / "nt"
        empty.mkdir()
        folder = with_nt / "resources" / "models" / "nucleotide_transformer"
        save_tiny_nt_snapshot(folder)
        record_nt_download(folder, repo["nucleotide_transformer"]["repo"])
        times: dict[str, list[float]] = {"reference": [], "first": [], "recorded": []}
        for _ in range(args.repeats):
            shutil.rmtree(with_nt / ".isoflow", ignore_errors=True)
            times["reference"].append(dry_run(empty))
            times["first"].append(dry_run(with_nt))
            if not any((with_nt / ".isoflow" / "remote_code").glob("*.json")):
                sys.exit("the first parse recorded no import in .isoflow/remote_code")
            times["recorded"].append(dry_run(with_nt))
    rows = {
        "reference": "no NT download (empty working folder)",
        "first": "NT download, first parse (imports its remote code)",
        "recorded": "NT download, later parse (import recorded, skipped)",
    }
    ref = statistics.median(times["reference"])
    print("| dry run of config/config.yaml | wall (s), each | median (s) | vs reference |")
    print("|---|---|---|---|")
    for key, label in rows.items():
        each = ", ".join(f"{t:.2f}" for t in times[key])
        median = statistics.median(times[key])
        print(f"| {label} | {each} | {median:.2f} | {median - ref:+.2f} s |")


if __name__ == "__main__":
    main()
