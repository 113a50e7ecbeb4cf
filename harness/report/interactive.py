"""report.html's interactive half: the Pareto plots drawn with Plotly, and Table 1 sortable and filterable.

A point's hover shows its label (with P(frontier)), its measured cost and score with their intervals,
and the parameters changed from its preset; clicking a family in a plot's legend isolates it (a
second click brings the others back). The static PNG/SVG plots and the LaTeX table stay for papers.
plotly.js is written once beside the page (or inlined in a self-contained page), never fetched: the
report opens offline.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from harness.report.categories import CATEGORY_ORDER
from harness.report.pareto import pareto_front
from harness.report.plots import family_colour

PLOTLY_JS = "plotly.min.js"

# Click a header to sort (numbers by value, "–" last; again to reverse); type to keep matching rows.
TABLE_SCRIPT = """
function compbenchCell(td) {
  const text = td.textContent.trim();
  const number = text.replace(/\u2212/g, '-').match(/^[-+]?\\d+(\\.\\d+)?/);
  if (number) return parseFloat(number[0]);
  return text === '' || text.startsWith('\u2013') ? null : text.toLowerCase();
}
function compbenchSort(table, index, th) {
  const ascending = th.dataset.sort !== 'asc';
  table.querySelectorAll('th').forEach(h => delete h.dataset.sort);
  th.dataset.sort = ascending ? 'asc' : 'desc';
  const body = table.tBodies[0];
  const rows = [...body.rows].sort((a, b) => {
    const x = compbenchCell(a.cells[index]), y = compbenchCell(b.cells[index]);
    if (x === null || y === null) return (x === null) - (y === null);
    if (typeof x !== typeof y) return typeof x === 'number' ? -1 : 1;
    return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
  });
  rows.forEach(row => body.appendChild(row));
}
document.querySelectorAll('table.results').forEach(table => {
  const filter = document.createElement('input');
  filter.type = 'search'; filter.className = 'table-filter'; filter.placeholder = 'Filter rows\u2026';
  table.before(filter);
  filter.addEventListener('input', () => {
    const query = filter.value.toLowerCase();
    [...table.tBodies[0].rows].forEach(row => { row.style.display = row.textContent.toLowerCase().includes(query) ? '' : 'none'; });
  });
  table.querySelectorAll('th').forEach((th, index) => {
    th.classList.add('sortable'); th.title = 'Click to sort';
    th.addEventListener('click', () => compbenchSort(table, index, th));
  });
});
"""
CSS = """
input.table-filter { margin: 0.5em 0 0; padding: 3px 6px; width: 18em; }
th.sortable { cursor: pointer; }
th[data-sort=asc]::after { content: ' \u25b2'; }
th[data-sort=desc]::after { content: ' \u25bc'; }
.interactive { display: flex; flex-wrap: wrap; gap: 12px; }
.interactive .plot { width: 640px; height: 430px; border: 1px solid #eee; }
"""


def plotly_script(out_dir: Path, embed: bool) -> str:
    """The tag that loads plotly.js: inlined, or a file written beside the page."""
    from plotly.offline import get_plotlyjs

    if embed:
        return f"<script>{get_plotlyjs()}</script>"
    (out_dir / PLOTLY_JS).write_text(get_plotlyjs(), encoding="utf-8")
    return f"<script src='{PLOTLY_JS}'></script>"


def panel_html(points: pd.DataFrame, xlabel: str, ylabel: str, title: str, div_id: str) -> str:
    """One interactive Pareto plot: a trace per family (legend click isolates it) and the frontier."""
    import plotly.graph_objects as go

    points = points.reset_index(drop=True)
    figure = go.Figure()
    order = {name: i for i, name in enumerate(CATEGORY_ORDER)}
    categories = points["category"].fillna("Other").astype(str)
    for category in sorted(categories.unique(), key=lambda c: order.get(c, len(order))):
        rows = points[categories.eq(category)]
        figure.add_trace(go.Scatter(
            x=rows["cost"], y=rows["value"], mode="markers", name=category, text=rows["label"],
            customdata=[[_interval(r.cost_lo, r.cost_hi), _interval(r.value_lo, r.value_hi), _parameters(r.parameters),
                         f"{r.n} seeds" if r.n > 1 else "1 seed"] for r in rows.itertuples()],
            hovertemplate=("<b>%{text}</b><br>" + html.escape(xlabel) + ": %{x:.4g} %{customdata[0]}<br>"
                           "score: %{y:.2f} %{customdata[1]}<br>changed: %{customdata[2]}<br>%{customdata[3]}"
                           "<extra>%{fullData.name}</extra>"),
            marker={"size": 9, "color": family_colour(category), "line": {"width": 1, "color": "#333"}},  # the PNGs' colours
        ))
    front = points[pareto_front(points["cost"].to_numpy(float), points["value"].to_numpy(float))].sort_values("cost")
    figure.add_trace(go.Scatter(x=front["cost"], y=front["value"], mode="lines", name="Pareto frontier",
                                line={"dash": "dot", "color": "#888"}, hoverinfo="skip"))
    figure.update_layout(title={"text": html.escape(title).replace("\n", "<br>"), "font": {"size": 13}},
                         xaxis_title=xlabel, yaxis_title=ylabel, margin={"l": 60, "r": 10, "t": 60, "b": 50},
                         legend={"itemclick": "toggleothers", "itemdoubleclick": "toggle", "font": {"size": 10}},
                         template="plotly_white")
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                          default_width="100%", default_height="100%", config={"displaylogo": False})


def _interval(low, high) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{low:.4g}, {high:.4g}]"


def _parameters(text) -> str:
    changed = json.loads(text) if isinstance(text, str) and text else {}
    return html.escape(", ".join(f"{k}={v}" for k, v in sorted(changed.items()))) or "nothing (the preset's defaults)"
