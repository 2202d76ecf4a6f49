"""The real report rules on small generated inputs, then the HTML report in headless Chromium.

A tiny workflow in tmp includes rules/common.smk and rules/report.smk from this checkout,
runs them on inputs written in the DESIGN.md formats (tests/unit/test_report.py), and builds
``snakemake --report``. The report is a JavaScript app (first view: the rule graph; results
behind menu clicks, embedded as data URIs), so a copy of it gets a small script
(``tests/helpers/browser.py``) that clicks through the menus the way a reader would and writes what
it saw into the page; Chromium's ``--dump-dom`` then returns that, and ``--screenshot`` the
final view (the modality ablation table beside the paper's numbers).

Chromium: Debian's ``chromium`` (.ci/install-debian.sh). Without it the browser tests
skip, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
import textwrap
import urllib.parse
from pathlib import Path

import pytest
import yaml

from helpers import browser
from helpers.paths import REPO, SNAKEMAKE
from helpers.report_inputs import write_baseline, write_data_inputs, write_run
from isoflow import workflow
from isoflow.experiments import expand_experiments
from isoflow.report.figures import DEMO_MARK
from isoflow.report.tables import CONTROL_LABEL

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # tests that use it: needs("chromium")
PAPER = {
    "label": "IsoFormer paper (Garau-Luis et al. 2024), GTEx, DNA+RNA+protein",
    "r2": 0.53,
    "spearman": 0.72,
}
# A modality ablation (DNA+RNA+protein vs RNA+protein, three seeds each), an aggregator
# ablation, a data-scaling pair and a shuffled-target control of three seeds; demo data.
EXPERIMENTS = (
    [
        {"modalities": m, "seed": s}
        for m in (["dna", "rna", "protein"], ["rna", "protein"])
        for s in (0, 1, 2)
    ]
    + [
        {"modalities": ["dna", "rna", "protein"], "aggregator": "concat"},
        {"modalities": ["dna", "rna", "protein"], "fraction": 0.25},
    ]
    + [
        {"modalities": ["dna", "rna", "protein"], "shuffle_targets": True, "seed": s}
        for s in (0, 1, 2)
    ]
)
CONFIG = {
    "experiments": EXPERIMENTS,
    "demo": {"enabled": True},
    "report": {"paper": PAPER, "scatter_tissues": 4},
}


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """Run the report rules of this checkout on generated inputs; return report.html."""
    root = tmp_path_factory.mktemp("report_wf")
    write_data_inputs(root)
    for i, run in enumerate(expand_experiments(CONFIG)):
        quality = 0.02 if "shuffled" in run else 0.45 + 0.04 * i
        write_run(root, run, quality=quality, seed=i)
    write_baseline(root)
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (root / "Snakefile").write_text(
        textwrap.dedent(
            f"""\
            configfile: "config.yaml"
            report: "{REPO}/report/workflow.rst"
            include: "{REPO}/rules/common.smk"
            include: "{REPO}/rules/report.smk"
            rule all:
                input: report_outputs()
            # Stands in for rules/baseline.smk: its outputs are already written.
            rule baseline:
                output: "results/baseline/metrics.json"
                shell: "exit 1"
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


@pytest.mark.slow
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
        "report_bootstrap",  # logs/report_bootstrap/baseline.log (runs/{run}.log below it)
    }
    # every run's resamples made once, beside its predictions, for the tables to read
    assert all(
        (root / "results/runs" / run / "bootstrap.npz").exists()
        for run in expand_experiments({"experiments": EXPERIMENTS})
    )


@pytest.mark.slow
def test_report_embeds_every_result_with_its_category(report_html):
    html = report_html.read_text()
    match = re.search(r"var categories = (\{.*?\});\n", html, re.S)
    assert match, "no categories object in the report"
    categories = json.loads(match.group(1))
    assert set(categories) == {"1. Data", "2. Training runs", "3. Across experiments"}
    targets = set(categories["1. Data"]["Expression targets"])
    assert {"results/report/data/targets.svg", "results/report/data/isoforms.svg"} <= targets
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
    ("view", "ablation modalities vs the paper (figure)"),
    ("view", "ablation modalities vs the paper (table)"),
]


@pytest.fixture(scope="module")
def driven(report_html, tmp_path_factory):
    chromium = CHROMIUM
    tmp = tmp_path_factory.mktemp("chromium")
    shot = tmp / "report.png"
    log = browser.browse_report(report_html, STEPS, tmp, chromium=chromium, screenshot=shot)
    if os.environ.get("ISOFLOW_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["ISOFLOW_REPORT_SCREENSHOT"])
    return {"log": log, "screenshot": shot}


def _seen(log, name):
    return next(step["seen"] for step in log if step["step"] == "nav" and step["text"] == name)


@pytest.mark.slow
@pytest.mark.needs("chromium")
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
        "6. error by biotype and length",
    ):
        assert result in one_run
    across = _seen(log, "across")
    for section in ("All runs", "Ablation: modalities", "Ablation: aggregator", "Data scaling"):
        assert section in across
    assert "Within-gene isoform ranking" in across


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_browser_renders_figures(driven):
    views = {s["text"]: s for s in driven["log"] if s["step"] == "view"}
    for figure in (
        "transcripts by biotype (figure)",
        "sequence lengths (figure)",
        "4. predicted vs observed",
        "data scaling (figure)",
        "ablation modalities vs the paper (figure)",
    ):
        width, height = views[figure]["img"]
        assert width > 300 and height > 200, (figure, width, height)


@pytest.mark.slow
@pytest.mark.needs("chromium")
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
        browser.browse_report(tmp_path / "r.html", [("scroll", "x")], tmp_path)


# ---------------------------------------------------------------- a report that cannot flatter


def _embedded(html: str) -> dict[str, dict]:
    """The report's results: path -> {mime_type, data_uri, ...}."""
    match = re.search(r"var results = (\{.*?\});\n", html, re.S)
    assert match, "no results object in the report"
    return json.loads(match.group(1))


def _figures(report_html: Path) -> list[Path]:
    return sorted((report_html.parent / "results/report").rglob("*.svg"))


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_landing_page_states_data_config_commit_versions_date(driven):
    from importlib.metadata import version

    start = _seen(driven["log"], "start")
    assert "SYNTHETIC DEMO DATA" in start
    assert re.search(r"Data:\s*synthetic demo data \(generated by isoflow\.demo", start), start
    assert re.search(r"Config files:\s*\S*config\.yaml", start)
    commit = workflow.git_commit(REPO)
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{40}( \+ uncommitted changes)?", commit)
    assert re.search(r"Git commit:\s*" + re.escape(commit), start)
    software = re.search(r"^Software:\s*(.*)$", start, re.M).group(1)
    assert "Report built" not in software
    for package in workflow.VERSIONED:
        assert f"{package} {version(package)}" in software
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    assert re.search(rf"^Report built:\s*{day} \d\d:\d\d UTC$", start, re.M)


@pytest.mark.slow
def test_every_figure_says_synthetic_demo_data(report_html):
    figures = _figures(report_html)
    assert len(figures) >= 20
    for svg in figures:
        assert DEMO_MARK in svg.read_text(), svg
    # ... also as embedded in the report a reader opens.
    embedded = {
        path: base64.b64decode(result["data_uri"].partition("base64,")[2]).decode()
        for path, result in _embedded(report_html.read_text()).items()
        if result["mime_type"] == "image/svg+xml"
    }
    assert len(embedded) == len(figures)
    for path, svg in embedded.items():
        assert DEMO_MARK in svg, path


@pytest.mark.slow
def test_across_figures_have_error_bars_control_band_and_baseline(report_html):
    across = report_html.parent / "results/report/experiments"
    for name in ("runs.svg", "within_gene.svg", "ablation_modalities.svg", "scaling.svg"):
        svg = (across / name).read_text()
        assert 'id="LineCollection_' in svg, f"{name}: no error bars"
        assert f"<!-- {CONTROL_LABEL}" in svg, f"{name}: no control band"
        assert "sequence-free baseline" in svg, f"{name}: no baseline"
    table = (across / "ablation_modalities.html").read_text()
    # mean ± sd over seeds, then the 95 % interval over test genes (isoflow.report.bootstrap)
    cell = r"<td class=\"num\">\d\.\d{3} ± \d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]</td>"
    assert re.search(cell, table), table[-3000:]
    assert '<tr class="control">' in table and '<tr class="baseline">' in table
    assert '<td class="num">3</td>' in table  # seeds


@pytest.mark.slow
@pytest.mark.needs("chromium")
def test_no_label_is_clipped_in_the_browser(report_html, tmp_path):
    chromium = CHROMIUM
    checked = browser.svg_text_overflow(_figures(report_html), tmp_path, chromium=chromium)
    assert len(checked) == len(_figures(report_html))
    for svg, seen in checked.items():
        assert seen["texts"] > 3 and seen["outside"] == [], (svg, seen)
    # The check sees a label that runs past the edge (saved without the report's layout).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.barh([0], [0.72])
    ax.text(0.72, 0, " Spearman 0.72 (paper, reported in the paper)")
    fig.savefig(tmp_path / "clipped.svg")
    seen = browser.svg_text_overflow([tmp_path / "clipped.svg"], tmp_path, chromium=chromium)
    assert seen[str(tmp_path / "clipped.svg")]["outside"] == [
        "Spearman 0.72 (paper, reported in the paper)"
    ]
