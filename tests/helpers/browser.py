"""A built report (``snakemake --report``) in headless Chromium, for the browser tests
(``tests/workflow/test_report_browser.py``) and the README screenshot (``docs/screenshot.py``).

``browse_report`` clicks through the report's menus the way a reader would and returns what
each step saw (and optionally a screenshot of the last view); ``svg_text_overflow`` renders
matplotlib SVGs and lists the texts whose box reaches outside the image. Chromium: Debian's
``chromium`` (.ci/install-debian.sh).
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The report (snakemake --report) is a JavaScript app: results sit behind menu clicks. A copy
# of it gets this script, which clicks through it like a reader and writes what it saw
# (navbar text, size of the image or table shown) into <pre id="isoflow-drive">, read back
# from Chromium's --dump-dom. The same copy under --screenshot shows the last view.
_DRIVER = """
<script>
(function () {
  const log = [];
  const pause = (ms) => new Promise((r) => setTimeout(r, ms));
  function byText(text) {
    const all = Array.from(document.querySelectorAll("a, li, span, td"));
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
               iframe: frame ? frame.getAttribute("src") : null });
  }
  function nav(text) { log.push({ step: "nav", text, seen: document.body.innerText }); }
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
BROWSER_STEPS = ("category", "click", "view", "nav")


def _headless(chromium: str, workdir: Path, *flags: str) -> list[str]:
    """A headless Chromium command with a profile of its own under ``workdir``."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={workdir / 'chromium-profile'}",
        *flags,
    ]


def _dom_json(command: list[str], page: Path, pre_id: str, timeout_s: float, what: str) -> Any:
    """Load ``page`` with ``command``; the JSON its script left in ``<pre id=pre_id>``."""
    dom = subprocess.run(
        [*command, "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    match = re.search(rf'<pre id="{pre_id}"[^>]*>(.*?)</pre>', dom.stdout, re.S)
    if dom.returncode != 0 or not match:
        raise RuntimeError(f"chromium did not {what}: {dom.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))


def browse_report(
    report_html: str | Path,
    steps: Iterable[tuple[str, str]],
    workdir: str | Path,
    chromium: str = "chromium",
    screenshot: str | Path | None = None,
    window: tuple[int, int] = (1600, 1000),
    timeout_s: float = 180,
) -> list[dict[str, Any]]:
    """Click through a built report in headless Chromium; return what each step saw.

    ``steps``: ``("category", name)`` opens a top-level result category, ``("click", text)``
    any menu entry, ``("view", label)`` shows the result whose first label is ``label``,
    ``("nav", name)`` records the page text. Each log entry has ``step``, ``text`` and
    ``ok``; a view also ``img`` ([width, height] of the image shown) and ``iframe`` (the
    data URI of an HTML table shown); a nav ``seen`` (the page's visible text).
    ``screenshot``: also save a PNG of the last view.
    """
    js = []
    for kind, text in steps:
        if kind not in BROWSER_STEPS:
            raise ValueError(f"unknown browser step {kind!r}; one of {BROWSER_STEPS}")
        js.append(f"await {kind}({json.dumps(text)});")
    source = Path(report_html).read_text()
    cut = source.rindex("</body>")  # the last one: embedded libraries contain the string
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    page = workdir / "driven-report.html"
    page.write_text(source[:cut] + _DRIVER.replace("STEPS", "\n      ".join(js)) + source[cut:])
    base = _headless(
        chromium,
        workdir,
        "--hide-scrollbars",
        f"--window-size={window[0]},{window[1]}",
        "--virtual-time-budget=30000",
    )
    log = _dom_json(base, page, "isoflow-drive", timeout_s, "finish the report walk")
    if screenshot is not None:
        shot = subprocess.run(
            [*base, f"--screenshot={Path(screenshot).resolve()}", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if shot.returncode != 0 or not Path(screenshot).exists():
            raise RuntimeError(f"chromium screenshot failed: {shot.stderr[-2000:]}")
    return log


_SVG_CHECK = """
<script>
window.addEventListener("load", () => {
  const out = {};
  for (const holder of document.querySelectorAll("div[data-file]")) {
    const svg = holder.querySelector("svg");
    const box = svg.getBoundingClientRect();
    const outside = [];
    for (const group of svg.querySelectorAll("g[id^='text_']")) {
      const r = group.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < box.left - 1 || r.top < box.top - 1 ||
          r.right > box.right + 1 || r.bottom > box.bottom + 1) {
        const note = Array.from(group.childNodes).find((n) => n.nodeType === 8);
        outside.push(note ? note.textContent.trim() : group.id);
      }
    }
    out[holder.dataset.file] = {texts: svg.querySelectorAll("g[id^='text_']").length, outside};
  }
  const pre = document.createElement("pre");
  pre.id = "isoflow-svg";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def svg_text_overflow(
    svgs: Iterable[str | Path],
    workdir: str | Path,
    chromium: str = "chromium",
    timeout_s: float = 180,
) -> dict[str, dict[str, Any]]:
    """Render matplotlib SVGs in headless Chromium; per file, how many text groups it has
    and the texts whose rendered box reaches outside the image (``outside``)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parts = []
    for svg in svgs:
        source = Path(svg).read_text()
        parts.append(
            f'<div data-file="{html.escape(str(svg))}">{source[source.index("<svg") :]}</div>'
        )
    page = workdir / "svg-check.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        + "".join(parts)
        + _SVG_CHECK
        + "</body></html>"
    )
    command = _headless(chromium, workdir, "--virtual-time-budget=10000")
    return _dom_json(command, page, "isoflow-svg", timeout_s, "check the SVGs")
