"""The real report rules on small generated inputs, then the HTML report in headless Chromium.

A tiny workflow in tmp includes rules/common.smk and rules/report.smk from this checkout,
runs them on inputs written in the DESIGN.md formats (tests/test_report.py), and builds
``snakemake --report``. The report is a JavaScript app (first view: the rule graph; results
behind menu clicks, embedded as data URIs), so a copy of it gets a small script that clicks
through the menus the way a reader would and writes what it saw into the page; Chromium's
``--dump-dom`` then returns that, and ``--screenshot`` the final view (the modality
ablation table beside the paper's numbers).

Chromium: Debian's ``chromium`` (.ci/install-debian.sh). Without it the browser tests
skip, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest
import yaml
from test_report import EXPERIMENTS_CONFIG, write_data_inputs, write_run

from isoflow import report
from isoflow.experiments import expand_experiments

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAPER = {
    "label": "IsoFormer paper (Garau-Luis et al. 2024), GTEx, DNA+RNA+protein",
    "r2": 0.53,
    "spearman": 0.72,
}
# Four runs: a modality ablation (DNA+RNA+protein vs RNA+protein, two seeds of the first),
# an aggregator ablation, and a data-scaling pair.
EXPERIMENTS = [
    e
    for e in EXPERIMENTS_CONFIG["experiments"]
    if e.get("dna_encoder") is None and e["modalities"] != ["dna"]
]


def _chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} missing: CI must install chromium (.ci/install-debian.sh)")
    pytest.skip("chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """Run the report rules of this checkout on generated inputs; return report.html."""
    root = tmp_path_factory.mktemp("report_wf")
    write_data_inputs(root)
    config = {"experiments": EXPERIMENTS, "report": {"paper": PAPER, "scatter_tissues": 4}}
    for i, run in enumerate(expand_experiments(config)):
        write_run(root, run, quality=0.45 + 0.1 * i, seed=i)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "Snakefile").write_text(
        textwrap.dedent(
            f"""\
            configfile: "config.yaml"
            report: "{REPO}/report/workflow.rst"
            include: "{REPO}/rules/common.smk"
            include: "{REPO}/rules/report.smk"
            rule all:
                input: report_outputs()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [str(SNAKEMAKE), "-s", str(root / "Snakefile"), "-d", str(root)]
    run = subprocess.run(
        [*base, "--cores", "2"], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    html = root / "report.html"
    run = subprocess.run(
        [*base, "--report", str(html)], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-5000:]
    return html


def test_every_rule_logged_and_every_report_output_made(report_html):
    root = report_html.parent
    made = sorted(p.relative_to(root).as_posix() for p in (root / "results/report").rglob("*.*"))
    assert "results/report/experiments/ablation_modalities.html" in made
    assert "results/report/experiments/ablation_aggregator.html" in made
    assert "results/report/experiments/scaling.svg" in made
    # No DNA-encoder pair among these runs: no such ablation is requested.
    assert "results/report/experiments/ablation_dna_encoder.html" not in made
    runs = {p.parent.name for p in (root / "results/report/runs").glob("*/scatter.png")}
    assert runs == set(expand_experiments({"experiments": EXPERIMENTS}))
    logs = list((root / "logs").rglob("*.log"))
    assert {p.parent.name for p in logs} >= {
        "report_biotypes",
        "report_tissues",
        "report_splits",
        "report_lengths",
        "report_run",
        "report_experiments",
        "report_ablation",
        "report_scaling",
    }


def test_report_embeds_every_result_with_its_category(report_html):
    html = report_html.read_text()
    match = re.search(r"var categories = (\{.*?\});\n", html, re.S)
    assert match, "no categories object in the report"
    categories = json.loads(match.group(1))
    assert set(categories) == {"1. Data", "2. Training runs", "3. Across experiments"}
    assert set(categories["1. Data"]) == {
        "Annotation",
        "Expression targets",
        "Splits",
        "Sequences",
    }
    across = set(categories["3. Across experiments"])
    assert {"All runs", "Ablation: modalities", "Ablation: aggregator", "Data scaling"} <= across


# ---------------------------------------------------------------- in the browser

STEPS = [
    ("category", "1. Data"),
    ("nav", "data"),
    ("click", "Annotation"),
    ("view", "transcripts by biotype (figure)"),
    ("category", "1. Data"),
    ("click", "Sequences"),
    ("view", "sequence lengths (figure)"),
    ("category", "2. Training runs"),
    ("nav", "runs"),
    ("click", "dna+rna+protein_enformer_cross_attention_s0"),
    ("nav", "one run"),
    ("view", "4. predicted vs observed"),
    ("category", "3. Across experiments"),
    ("nav", "across"),
    ("click", "Data scaling"),
    ("view", "data scaling (figure)"),
    ("category", "3. Across experiments"),
    ("click", "Ablation: modalities"),
    ("view", "ablation modalities vs the paper (table)"),
]


@pytest.fixture(scope="module")
def driven(report_html, tmp_path_factory):
    chromium = _chromium_or_skip()
    tmp = tmp_path_factory.mktemp("chromium")
    shot = tmp / "report.png"
    log = report.browse_report(report_html, STEPS, tmp, chromium=chromium, screenshot=shot)
    if os.environ.get("ISOFLOW_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["ISOFLOW_REPORT_SCREENSHOT"])
    return {"log": log, "screenshot": shot}


def _seen(log, name):
    return next(step["seen"] for step in log if step["step"] == "nav" and step["text"] == name)


def test_browser_clicks_reach_every_section(driven):
    log = driven["log"]
    failed = [s for s in log if s["step"] in ("click", "view", "error") and not s["ok"]]
    assert not failed, failed
    assert "Workflow" in _seen(log, "start")
    data = _seen(log, "data")
    for section in ("Annotation", "Expression targets", "Splits", "Sequences"):
        assert section in data
    runs = _seen(log, "runs")
    for run in expand_experiments({"experiments": EXPERIMENTS}):
        assert run in runs
    one_run = _seen(log, "one run")
    for result in (
        "1. training curves",
        "2. per-tissue metrics (table)",
        "3. per-tissue metrics (figure)",
        "4. predicted vs observed",
        "5. within-gene isoform ranking",
    ):
        assert result in one_run
    across = _seen(log, "across")
    for section in ("All runs", "Ablation: modalities", "Ablation: aggregator", "Data scaling"):
        assert section in across
    assert "Within-gene isoform ranking" in across


def test_browser_renders_figures(driven):
    views = {s["text"]: s for s in driven["log"] if s["step"] == "view"}
    for figure in (
        "transcripts by biotype (figure)",
        "sequence lengths (figure)",
        "4. predicted vs observed",
        "data scaling (figure)",
    ):
        width, height = views[figure]["img"]
        assert width > 300 and height > 200, (figure, width, height)


def test_browser_shows_the_ablation_table_beside_the_paper(driven):
    view = driven["log"][-1]
    assert view["text"] == "ablation modalities vs the paper (table)" and view["ok"]
    uri = view["iframe"]
    assert uri and uri.startswith("data:text/html"), "no HTML table in the content pane"
    header, _, payload = uri.partition(",")
    if header.endswith(";base64"):
        table = base64.b64decode(urllib.parse.unquote(payload)).decode()
    else:
        table = urllib.parse.unquote(payload)
    assert "<h2>Ablation: modalities</h2>" in table
    assert "<td>dna+rna+protein</td>" in table and "<td>rna+protein</td>" in table
    assert '<tr class="paper"><td>reported in paper</td>' in table
    assert PAPER["label"] in table
    png = driven["screenshot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_browse_report_rejects_an_unknown_step(tmp_path):
    with pytest.raises(ValueError, match="unknown browser step 'scroll'"):
        report.browse_report(tmp_path / "r.html", [("scroll", "x")], tmp_path)
