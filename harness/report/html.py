"""A single self-describing HTML page: Table 1 per machine, its footnotes, failed cells, the plots, skipped files."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from harness.report.interactive import CSS as INTERACTIVE_CSS
from harness.report.interactive import TABLE_SCRIPT, panel_html, plotly_script
from harness.report.render import to_html_table

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table.results { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
table.results th, table.results td { border-bottom: 1px solid #ddd; padding: 3px 8px; }
table.results th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.notes li, .problems li { font-size: 13px; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plots figure { margin: 0; width: 600px; }
.plots img { width: 100%; border: 1px solid #eee; }
"""


def write_html_report(path: str | Path, tables: list[tuple[str, pd.DataFrame]], notes: list[str], failed: pd.DataFrame,
                      references: pd.DataFrame, labels: pd.DataFrame, plots: list[Path], problems: list[str], sources: list[str],
                      embed_images=False, panels=()) -> Path:
    """`tables`: (machine name, its Table 1) each; `plots` are PNG paths, linked relative to the page or
    inlined as base64 with `embed_images`; `panels` (plots.Panel) are drawn again as interactive plots,
    with plotly.js beside the page (inlined with `embed_images`). Every table sorts and filters."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sum(len(table) for _, table in tables)
    parts = [f"<h1>Compression benchmark: Table 1 and Pareto frontiers</h1>",
             f"<p>Records from: {html.escape(', '.join(sources))}. {rows} table rows from {len(tables)} machine(s); "
             "each machine has a table of its own: no speedup, drop or frontier combines two machines.</p>",
             "<h2>Table 1 (after Ganesh et al. 2021)</h2>"]
    for name, table in tables:
        parts += [f"<h3>Measured on {html.escape(name)}</h3>", to_html_table(table)]
    parts.append("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    if labels is not None and not labels.empty:
        parts += ["<h2>Labels: each row's preset and what was changed from it</h2>", to_html_table(labels, css_class="results labels")]
    if references is not None and not references.empty:
        parts += ["<h2>Methods and the papers they follow</h2>", to_html_table(references, css_class="results references")]
    if not failed.empty:
        parts += ["<h2>Failed and unsupported cells</h2>", to_html_table(failed, css_class="results failed")]
    head_script = ""  # plotly.js, which the plots' own scripts call as they load
    if panels:
        parts.append("<h2>Pareto frontiers, interactive</h2><p>Hover a point for its label, configuration and "
                     "intervals; click a family in a legend to isolate it, again to bring the others back.</p>"
                     "<div class='interactive'>")
        parts += [f"<div class='plot'>{panel_html(panel.points, panel.axis.label, panel.ylabel, panel.title, f'pareto-{i}')}</div>"
                  for i, panel in enumerate(panels)]
        parts.append("</div>")
        head_script = plotly_script(path.parent, embed_images)
    if plots:
        parts.append("<h2>Accuracy drop vs speedup, and Pareto frontiers (static, as in the PNG/SVG files)</h2><div class='plots'>")
        for png in plots:
            parts.append(f"<figure><img src='{_image_source(png, path.parent, embed_images)}' "
                         f"alt='{html.escape(png.stem)}'><figcaption>{html.escape(png.stem)}</figcaption></figure>")
        parts.append("</div>")
    if problems:
        parts += ["<h2>Skipped files</h2>",
                  "<ul class='problems'>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>"]
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>compbench report</title>"
            f"<style>{_CSS}{INTERACTIVE_CSS}</style>{head_script}</head><body>\n" + "\n".join(parts)
            + f"\n<script>{TABLE_SCRIPT}</script>\n</body></html>\n")  # the tables exist when it runs
    path.write_text(page, encoding="utf-8")
    return path


def _image_source(png: Path, page_dir: Path, embed: bool) -> str:
    if embed:
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    try:
        return html.escape(png.resolve().relative_to(page_dir.resolve()).as_posix())
    except ValueError:  # the plot lives elsewhere: an absolute file URL still renders locally
        return html.escape(png.resolve().as_uri())
