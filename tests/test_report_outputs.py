"""End to end: the CLI's files, the plots, the HTML page (in Chromium when installed), the notebook."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "records"


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One CLI run over a results-style copy of the fixtures plus one corrupt file."""
    base = tmp_path_factory.mktemp("results")
    records = base / "demo" / "records"
    shutil.copytree(FIXTURES, records, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (records / "half_written.json").write_text('{"schema_version": "1.0"')
    out = base / "demo" / "report"
    proc = subprocess.run([sys.executable, "-m", "harness.report.cli", str(base / "demo"), "--out", str(out),
                           "--extra-tasks", "rte", "--published"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    return proc, out


def test_cli_writes_tables_and_reports_skipped_files(cli_run):
    proc, out = cli_run
    assert proc.returncode == 1, proc.stderr  # fail closed: the half-written file was left out
    assert "1 file(s) or pattern(s) skipped" in proc.stderr
    for name in ("table1.md", "table1.csv", "table1.tex", "table1_numeric.csv", "cells.csv", "report.html"):
        assert (out / name).stat().st_size > 0, name
    # one Table 1 per machine, each headed by the machine's name (the fixtures hold two)
    lines = proc.stdout.splitlines()
    assert lines[0] == "## Table 1 on Test EPYC B (AVX2, 2 cores) + NVIDIA H200 [fpB-0002]"
    assert sum(line.startswith("## Table 1 on ") for line in lines) == 2
    assert lines[2].startswith("| Category | Method |") and "| RTE |" in lines[2]
    # no --tasks: a column per task measured (the fixtures hold no QQP), the survey's order, the extra after
    assert "| MNLI | SST-2 | SQuAD v1.1 (F1) | RTE | Avg. drop |" in lines[2] and "QQP" not in proc.stdout
    assert "- Avg. drop: mean over MNLI, SST-2, SQuAD v1.1 (F1) of" in proc.stdout
    assert "half_written.json" in proc.stderr and "skipped" in proc.stderr


def test_plots_written_for_axes_with_data_and_skipped_otherwise(cli_run):
    _, out = cli_run
    pngs = {p.name for p in out.glob("pareto_*.png")}
    assert {p.with_suffix(".svg").name for p in out.glob("pareto_*.png")} == {p.name for p in out.glob("pareto_*.svg")}
    # Two machines: every file names its machine (short fingerprint), latency and energy also the hardware config.
    for expected in ("pareto_sst2_size_w_emb_fpA-0001.png", "pareto_sst2_size_wo_emb_fpA-0001.png",
                     "pareto_sst2_flops_fpA-0001.png", "pareto_sst2_energy_cpu-fpA-0001.png",
                     "pareto_sst2_cpu_latency_cpu-fpA-0001.png", "pareto_squad_v1.1_size_w_emb_fpA-0001.png",
                     "pareto_avg_size_w_emb_fpA-0001.png", "pareto_sst2_size_w_emb_fpB-0002.png",
                     "pareto_sst2_cpu_latency_cpu-fpB-0002.png"):
        assert expected in pngs
    assert not any("gpu_latency" in name or "_qqp_" in name or "_rte_" in name for name in pngs)
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)


def test_html_links_every_plot_relatively(cli_run):
    _, out = cli_run
    page = (out / "report.html").read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    assert sources and all(not s.startswith(("/", "file:")) and (out / s).exists() for s in sources)
    assert "<table" in page and "half_written.json" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed; HTML render check skipped")
def test_html_renders_in_headless_chromium(cli_run):
    _, out = cli_run
    probe = out / "render_probe.html"  # beside report.html, so its relative image links resolve
    script = ("<script>addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images=i.length;"
              "document.body.dataset.loaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;"
              "document.body.dataset.rows=document.querySelectorAll('table.results tbody tr').length;});</script>")
    probe.write_text((out / "report.html").read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=60).stdout
    body = re.search(r'<body data-images="(\d+)" data-loaded="(\d+)" data-rows="(\d+)"', dom)
    assert body, dom[:500]
    images, loaded, rows = map(int, body.groups())
    assert images > 0 and loaded == images and rows >= 7


def test_cli_exits_2_with_one_line_when_nothing_found(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    (tmp_path / "broken.json").write_text("{")
    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("compbench-report: no records found") for line in err)
    assert "1 unreadable" in err[1] and "broken.json" in err[1]
    assert not (tmp_path / "report" / "table1.md").exists()


def test_notebook_executes_against_the_fixtures():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(ROOT / "notebooks" / "pareto.ipynb", as_version=4)
    os.environ["COMPBENCH_RESULTS"] = str(FIXTURES)  # the kernel inherits it; the notebook reads it
    try:
        nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        os.environ.pop("COMPBENCH_RESULTS", None)
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "15 cells from" in text and "plots" in text
    html = "".join(str(o.get("data", {}).get("text/html", "")) for c in notebook.cells for o in c.get("outputs", []))
    assert "dynamic_int8" in html


def test_every_mark_in_the_latex_table_has_a_latex_form():
    """table1.tex compiles as written: each marker the tables use (ᶜ ᵏ ᵐ ᵗ ± Δ × ...) has a LaTeX form,
    so no raw Unicode reaches a paper. Every mark and symbol a cell can carry is tried."""
    import pandas as pd

    from harness.report.render import to_latex
    from harness.report import display, table as table_module

    marks = {v for module in (display, table_module) for k, v in vars(module).items() if k.startswith("MARK_") and isinstance(v, str)}
    assert {"ᶜ", "ᵏ", "ᵐ", "ᵗ", "†"} <= marks
    cell = "83.1" + "".join(sorted(marks)) + " ±2.5 (Δ−1.3 [−3.2, +0.2]) 1.51× ≥256 magnitude #3fa1 ·ab12 –"
    latex = to_latex(pd.DataFrame({"Method": ["kd+hp+int8 #3265 [ort]"], "SST-2": [cell]}))
    assert latex.isascii(), sorted({ch for ch in latex if not ch.isascii()})
