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
    report = root / "report.html"
    run = subprocess.run(
        [*base, "--report", str(report)], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-5000:]
    return report


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

# Clicks through the report like a reader; records the navbar text and what the content
# pane shows after each step into <pre id="isoflow-drive">. Ends on the ablation table.
DRIVER = """
<script>
(function () {
  const log = [];
  const pause = (ms) => new Promise((r) => setTimeout(r, ms));
  function byText(text, root) {
    const all = Array.from((root || document).querySelectorAll("a, li, span, td"));
    const hits = all.filter((el) => el.textContent.trim() === text);
    return hits.length ? hits[hits.length - 1] : null;
  }
  async function click(text) {
    const el = byText(text);
    if (!el) { log.push({ step: "click", text, ok: false }); return false; }
    el.click();
    await pause(300);
    log.push({ step: "click", text, ok: true });
    return true;
  }
  async function category(name) {
    // The breadcrumb "Results" leads back to the list of categories.
    const crumb = byText("Results");
    if (crumb) { crumb.click(); await pause(300); }
    return click(name);
  }
  async function view(label) {
    const row = Array.from(document.querySelectorAll("tr")).find(
      (tr) => tr.cells.length && tr.cells[0].textContent.trim() === label);
    if (!row) { log.push({ step: "view", text: label, ok: false }); return; }
    row.querySelector("a").click();
    await pause(600);
    // The largest embedded image: the result, not the logo or icons.
    const img = Array.from(document.querySelectorAll("img[src^='data:image']")).sort(
      (a, b) => b.naturalWidth * b.naturalHeight - a.naturalWidth * a.naturalHeight)[0];
    const frame = document.querySelector("iframe[src^='data:text/html']");
    log.push({ step: "view", text: label, ok: true,
               img: img ? [img.naturalWidth, img.naturalHeight] : null,
               iframe: frame ? frame.getAttribute("src").length : null });
  }
  function nav(name) { log.push({ step: "nav", name, text: document.body.innerText }); }
  async function drive() {
    try {
      await pause(500);
      nav("start");
      STEPS
    } catch (err) {
      log.push({ step: "error", text: String(err), ok: false });
    }
    const pre = document.createElement("pre");
    pre.id = "isoflow-drive";
    pre.style.display = "none";
    pre.textContent = JSON.stringify(log);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", drive);
})();
</script>
"""


def _driven_copy(report: Path, steps: str, name: str) -> Path:
    html = report.read_text()
    driven = report.with_name(name)
    # The last </body>: embedded libraries contain the string too.
    cut = html.rindex("</body>")
    driven.write_text(html[:cut] + DRIVER.replace("STEPS", steps) + html[cut:])
    return driven


def _chromium(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        "--window-size=1600,1000",
        "--virtual-time-budget=30000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


ACROSS_STEPS = """
    await category("1. Data"); nav("data");
    await click("Annotation"); await view("transcripts by biotype (figure)");
    await category("1. Data"); await click("Sequences"); await view("sequence lengths (figure)");
    await category("2. Training runs"); nav("runs");
    await click("dna+rna+protein_enformer_cross_attention_s0"); nav("one run");
    await view("4. predicted vs observed");
    await category("3. Across experiments"); nav("across");
    await click("Data scaling"); await view("data scaling (figure)");
    await category("3. Across experiments");
    await click("Ablation: modalities"); nav("ablation");
    await view("ablation modalities vs the paper (table)");
"""


@pytest.fixture(scope="module")
def driven(report_html, tmp_path_factory):
    chromium = _chromium_or_skip()
    tmp = tmp_path_factory.mktemp("chromium")
    page = _driven_copy(report_html, ACROSS_STEPS, "driven.html")
    dom = _chromium(chromium, tmp, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-3000:]
    match = re.search(r'<pre id="isoflow-drive"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    assert match, "the driver script did not finish: " + dom.stderr[-2000:]
    log = json.loads(_unescape(match.group(1)))
    shot = tmp / "report.png"
    run = _chromium(chromium, tmp, f"--screenshot={shot}", page.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-3000:]
    if os.environ.get("ISOFLOW_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["ISOFLOW_REPORT_SCREENSHOT"])
    return {"log": log, "dom": dom.stdout, "screenshot": shot}


def _unescape(text: str) -> str:
    return (
        text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


def _nav(log, name):
    return next(step["text"] for step in log if step["step"] == "nav" and step["name"] == name)


def test_browser_clicks_reach_every_section(driven):
    log = driven["log"]
    failed = [s for s in log if s["step"] in ("click", "view", "error") and not s["ok"]]
    assert not failed, failed
    assert "Workflow" in _nav(log, "start")
    data = _nav(log, "data")
    for section in ("Annotation", "Expression targets", "Splits", "Sequences"):
        assert section in data
    runs = _nav(log, "runs")
    for run in expand_experiments({"experiments": EXPERIMENTS}):
        assert run in runs
    one_run = _nav(log, "one run")
    for result in (
        "1. training curves",
        "2. per-tissue metrics (table)",
        "3. per-tissue metrics (figure)",
        "4. predicted vs observed",
        "5. within-gene isoform ranking",
    ):
        assert result in one_run
    across = _nav(log, "across")
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
    view = next(s for s in driven["log"] if s.get("text", "").startswith("ablation modalities"))
    assert view["iframe"], "the ablation table is not shown in the content pane"
    match = re.search(r'<iframe[^>]+src="data:text/html[^"]*?base64,([^"]+)"', driven["dom"])
    assert match, "no embedded HTML table in the final view"
    table = base64.b64decode(urllib.parse.unquote(match.group(1))).decode()
    assert "<h2>Ablation: modalities</h2>" in table
    assert "dna+rna+protein" in table and "rna+protein" in table
    assert '<tr class="paper"><td>reported in paper</td>' in table
    assert PAPER["label"] in table
    png = driven["screenshot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
