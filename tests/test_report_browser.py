"""report.html as a person sees it: rendered by a real headless Chromium, which must show the table,
load every plot (naturalWidth > 0) and log no error.

A small probe script is put at the top of a copy of the page: it records every error event (script
errors and failed image loads) and console.error call, and after `load` writes what it saw into the
DOM, which `chromium --dump-dom` prints. Outside CI the test skips when Chromium is absent; in CI
(`CI` set, as .ci/run does, which also installs Chromium) it fails instead.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "results" / "demo"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(e.message || ('failed to load ' + ((e.target && (e.target.src || e.target.href)) || '?'))), true);
const consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); consoleError(...args); };
window.addEventListener('load', () => {
  const images = [...document.images];
  const tables = [...document.querySelectorAll('table.results')];
  const result = {
    tables: tables.length,
    table_rows: tables.length ? tables[0].querySelectorAll('tbody tr').length : 0,
    header: tables.length ? [...tables[0].querySelectorAll('th')].map(th => th.textContent.trim()) : [],
    images: images.length,
    broken: images.filter(img => !img.complete || img.naturalWidth === 0).map(img => img.getAttribute('src')),
    errors: window.__errors,
  };
  const out = document.createElement('pre');
  out.id = 'compbench-probe';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        message = f"no headless browser ({', '.join(BROWSERS)}); .ci/run installs chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def render(page: Path, probe: bool = True) -> dict:
    """Load `page` (a copy with the probe, unless it carries its own) in headless Chromium; return
    what the probe saw."""
    probed = page.with_name("probed_" + page.name)
    text = page.read_text(encoding="utf-8")
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1) if probe else text, encoding="utf-8")
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--allow-file-access-from-files", f"--user-data-dir={page.parent / 'chromium-profile'}",
               "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="compbench-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the page never finished loading in Chromium (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from harness.report.build import build_report

    out = tmp_path_factory.mktemp("report")
    build_report([str(EXAMPLE)], out, ("sst2",), (), False, plots=True, embed_images=False)
    return out / "report.html"


def test_report_renders_with_its_table_and_plots_and_no_errors(report):
    seen = render(report)
    assert seen["errors"] == []
    assert seen["tables"] >= 1 and seen["table_rows"] == len(list((EXAMPLE / "records").glob("*.json")))
    assert "Method" in seen["header"] and "SST-2" in seen["header"]
    assert seen["images"] >= 4 and seen["broken"] == []


def test_the_probe_sees_a_broken_plot(report):
    """The check can fail: a plot that does not load is reported."""
    page = report.with_name("broken.html")
    page.write_text(report.read_text(encoding="utf-8").replace("src='pareto_", "src='missing_pareto_", 1), encoding="utf-8")
    seen = render(page)
    assert len(seen["broken"]) == 1 and seen["broken"][0].startswith("missing_pareto_")
    assert any("missing_pareto_" in error for error in seen["errors"])


INTERACTION_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(e.message || 'failed to load a resource'), true);
const consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); consoleError(...args); };
window.addEventListener('load', () => setTimeout(() => {
  const table = document.querySelector('table.results');
  const headers = [...table.querySelectorAll('th')];
  const column = headers.findIndex(th => th.textContent.trim() === 'Size w/ emb (%)');
  const sizes = () => [...table.tBodies[0].rows].map(r => parseFloat(r.cells[column].textContent));
  const before = sizes();
  headers[column].click();
  const ascending = sizes();
  headers[column].click();
  const descending = sizes();
  const filter = document.querySelector('input.table-filter');
  filter.value = 'baseline';
  filter.dispatchEvent(new Event('input'));
  const shown = [...table.tBodies[0].rows].filter(r => r.style.display !== 'none').length;
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  let hover = '', expected = '';
  if (plots.length) {
    const plot = plots[0];
    expected = plot.data[0].text[0];
    Plotly.Fx.hover(plot, [{curveNumber: 0, pointNumber: 0}]);
    hover = [...plot.querySelectorAll('.hovertext')].map(n => n.textContent).join(' ');
  }
  const out = document.createElement('pre');
  out.id = 'compbench-probe';
  out.textContent = JSON.stringify({before, ascending, descending, shown, plots: plots.length, hover, expected,
                                    errors: window.__errors});
  document.body.appendChild(out);
}, 500));
</script>"""


def test_the_table_sorts_and_filters_and_a_hover_names_the_point(report):
    """The interactive report: a click on a header sorts Table 1 by it (and again, the other way), the
    filter box keeps matching rows, and hovering a Pareto point shows that point's label."""
    page = report.with_name("interaction.html")
    page.write_text(report.read_text(encoding="utf-8").replace("<head>", "<head>" + INTERACTION_PROBE, 1), encoding="utf-8")
    seen = render(page, probe=False)
    assert seen["errors"] == []
    assert seen["ascending"] == sorted(seen["before"]) and seen["descending"] == sorted(seen["before"], reverse=True)
    assert seen["ascending"] != seen["before"] or seen["descending"] != seen["before"]
    assert seen["shown"] == 1  # only the baseline row matches "baseline"
    assert seen["plots"] >= 4 and seen["expected"] and seen["expected"] in seen["hover"]
