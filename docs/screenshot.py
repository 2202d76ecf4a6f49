"""Take the README's screenshot (docs/report.png) from a built report in headless Chromium.

    snakemake --configfile config/demo.yaml --report results/report.html
    python docs/screenshot.py                      # results/report.html -> docs/report.png
    python docs/screenshot.py REPORT.html OUT.png --chromium /usr/bin/chromium

Opens "3. Across experiments", then "Ablation: modalities", then its figure, the way a reader
would, with the browser driver the report tests use (tests/helpers/browser.py), and saves that view.
Stops with one line, leaving OUT as it was, when a step finds nothing to open (a report
without that ablation).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = [
    ("category", "3. Across experiments"),
    ("click", "Ablation: modalities"),
    # the figure's label as rules/report.smk writes it: " vs the paper" only where
    # report.paper holds the paper's numbers (the shipped configs leave it empty)
    ("view", "ablation modalities (figure)"),
]


def _browser():
    """tests/helpers/browser.py, loaded by path (the tests folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "isoflow_test_browser", REPO / "tests/helpers/browser.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", default="results/report.html")
    parser.add_argument("out", nargs="?", default=str(REPO / "docs/report.png"))
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        shot = Path(workdir) / "report.png"
        log = _browser().browse_report(
            args.report, STEPS, workdir, chromium=args.chromium, screenshot=shot
        )
        failed = [step for step in log if step["step"] != "nav" and not step.get("ok")]
        if failed:  # the last view is not the figure: leave the old screenshot as it is
            print(f"screenshot: {args.report}: no {failed[0]['text']!r} to open", file=sys.stderr)
            return 1
        shutil.copyfile(shot, args.out)
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
