"""Accuracy-vs-cost Pareto plots, PNG + SVG, one file pair per (task or average, cost axis, machine).

Uses `matplotlib.figure.Figure` with the Agg canvas directly: no pyplot global state, so it works the
same from the CLI, from tests and inside a notebook whatever backend the notebook selected.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from harness.report.display import TASK_LABELS
from harness.report.frontier_uncertainty import with_probability_labels
from harness.report.pareto import AXES, CostAxis, average_points, pareto_front, plot_groups, task_points

FRONTIER, DOMINATED = "#1f5fa8", "#a8a8a8"
# Candidate label offsets (points): rings of growing radius, right of the dot first.
_OFFSETS = [(round(r * dx), round(r * dy)) for r in (7, 16, 28, 42)
            for dx, dy in ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0.3, 1), (0.3, -1), (1, 0), (-1, 0))]
_LEADER = {"arrowstyle": "-", "color": "#999999", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 3}


def write_pareto_plots(df: pd.DataFrame, out_dir: str | Path, tasks, include_average=True) -> list[Path]:
    """All plots that have data; an axis without data is skipped (no file, no error)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for axis in AXES:
        for suffix, cells in plot_groups(df, axis).items():
            where = f" [{suffix}]" if suffix else ""
            for task in tasks:
                points = with_probability_labels(task_points(cells, axis, task), cells, axis)  # "(P=0.93)": P(frontier)
                title = f"{TASK_LABELS.get(task, task)}: score vs {axis.label.split(',')[0].split(' (')[0]}{where}"
                written += _maybe_plot(points, axis, title, f"{TASK_LABELS.get(task, task)} score (0-100)",
                                       out_dir / _stem(task, axis, suffix))
            points, used, left_out = average_points(cells, axis, tasks) if include_average else (None, [], 0)
            if len(used) > 1:  # an "average" of one task would only repeat that task's plot
                names = ", ".join(TASK_LABELS.get(t, t) for t in used)
                omitted = f"\n({left_out} method(s) lacking one of these tasks not shown)" if left_out else ""
                written += _maybe_plot(points, axis, f"Average over {names}{where}{omitted}", "Mean score (0-100)",
                                       out_dir / _stem("avg", axis, suffix))
    return written


def _stem(task: str, axis: CostAxis, suffix: str) -> str:
    return "_".join(p for p in ("pareto", task, axis.key, suffix) if p)


def _maybe_plot(points: pd.DataFrame, axis: CostAxis, title: str, ylabel: str, stem: Path) -> list[Path]:
    if points.empty:
        return []
    fig = plot_frontier(points, axis.label, ylabel, title)
    paths = [stem.parent / (stem.name + ".png"), stem.parent / (stem.name + ".svg")]  # task names hold dots
    with matplotlib.rc_context({"svg.hashsalt": "compbench"}):  # stable SVG ids: reports diff cleanly
        fig.savefig(paths[0], dpi=130)
        fig.savefig(paths[1], metadata={"Date": None})
    return paths


def plot_frontier(points: pd.DataFrame, xlabel: str, ylabel: str, title: str) -> Figure:
    # Fixed margins instead of constrained layout / tight bbox: same look, a third of the drawing time.
    fig = Figure(figsize=(6.4, 4.6))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.86)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cost, value = points["cost"].to_numpy(float), points["value"].to_numpy(float)
    on_front = pareto_front(cost, value)
    for mask, colour, z in ((~on_front, DOMINATED, 2), (on_front, FRONTIER, 3)):
        sel = points[mask]
        ax.errorbar(sel["cost"], sel["value"], xerr=_err(sel, "cost"), yerr=_err(sel, "value"), fmt="o",
                    color=colour, ecolor=colour, elinewidth=0.8, capsize=2, markersize=6 if z == 3 else 5,
                    markeredgecolor="black" if z == 3 else colour, zorder=z,
                    label="Pareto frontier" if z == 3 else "dominated")
    front = points[on_front].sort_values(["cost", "value"])
    ax.plot(front["cost"], front["value"], drawstyle="steps-post", color=FRONTIER, linewidth=1.4, zorder=2.5)
    positive = cost[np.isfinite(cost) & (cost > 0)]
    if positive.size and positive.max() / positive.min() > 10:  # more than one order of magnitude
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.margins(x=0.15, y=0.15)  # room for the labels of the extreme points
    fig.draw_without_rendering()  # settle ticks and limits first, so label boxes are measured where they end up
    if (~on_front).any():
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    _place_labels(ax, points, on_front)
    return fig


def _err(points: pd.DataFrame, prefix: str):
    lo, hi = points[prefix + "_lo"].to_numpy(float), points[prefix + "_hi"].to_numpy(float)
    centre = points[prefix].to_numpy(float)
    if not np.isfinite(lo).any():
        return None
    # A missing or inverted interval draws no bar rather than a misleading one.
    below, above = np.nan_to_num(centre - lo, nan=0.0), np.nan_to_num(hi - centre, nan=0.0)
    return np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)])


def _place_labels(ax, points: pd.DataFrame, on_front: np.ndarray) -> None:
    """Greedy placement: frontier labels first, each at the nearest offset that overlaps no marker and
    no earlier label; far placements get a thin leader line so the name still points at its dot."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    xy = ax.transData.transform(points[["cost", "value"]].to_numpy(float))
    placed = [Bbox.from_bounds(x - 4, y - 4, 8, 8) for x, y in xy if np.isfinite(x) and np.isfinite(y)]
    for i in np.argsort(~on_front, kind="stable"):
        row = points.iloc[i]
        if not np.isfinite(xy[i]).all():
            continue
        style = {"fontsize": 8, "color": "black" if on_front[i] else "#666666", "zorder": 4}
        for dx, dy in _OFFSETS:
            text = ax.annotate(str(row["label"]), (row["cost"], row["value"]), xytext=(dx, dy),
                               textcoords="offset points", ha="left" if dx >= 0 else "right", va="center",
                               arrowprops=_LEADER if abs(dx) + abs(dy) > 20 else None, **style)
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()
        else:  # crowded: keep the first position rather than drop a method's name
            ax.annotate(str(row["label"]), (row["cost"], row["value"]), xytext=_OFFSETS[0],
                        textcoords="offset points", va="center", **style)
