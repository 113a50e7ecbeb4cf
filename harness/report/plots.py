"""Accuracy-vs-cost Pareto plots and the survey-style drop-vs-speedup chart, PNG + SVG.

Read at a glance:
  * one colour per method family (the record's category), the same in every figure;
  * the frontier as the attainable staircase: at any cost budget, the best score reachable with it;
  * a sweep of one parameter over >= 3 values as a connected dashed curve;
  * disturbed timings (contention verdict) ringed red, subset evaluations in a dashed square: marked,
    never hidden;
  * labels that never overlap each other: each is placed at the nearest free offset; where none is
    free the point gets a short number and its name is listed beside the plot.

Uses `matplotlib.figure.Figure` with the Agg canvas directly: no pyplot global state, so it works the
same from the CLI, from tests and inside a notebook whatever backend the notebook selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

from harness.report.display import TASK_LABELS
from harness.report.categories import CATEGORY_ORDER
from harness.report.frontier_uncertainty import with_probability_labels
from harness.report.machines import by_machine, machines, short_id
from harness.report.pareto import AXES, CostAxis, average_points, pareto_front, plot_groups, sweep_curves, task_points

FRONTIER = "#222222"
DISTURBED = "#d62728"
# One colour per survey category, in CATEGORY_ORDER: the same family has the same colour everywhere.
_PALETTE = ["#4d4d4d", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
            "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5"]
FAMILY_COLOURS = dict(zip(CATEGORY_ORDER, _PALETTE))
# Candidate label offsets (points): rings of growing radius, right of the dot first.
_OFFSETS = [(round(r * dx), round(r * dy)) for r in (7, 16, 28, 42, 58)
            for dx, dy in ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0.3, 1), (0.3, -1), (1, 0), (-1, 0))]
# Numbered tags of crowded points may sit further out, on a leader line.
_TAG_OFFSETS = _OFFSETS + [(round(r * dx), round(r * dy)) for r in (80, 105, 135, 170)
                           for dx, dy in ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0.3, 1), (0.3, -1),
                                          (0.7, -1), (1.2, -1), (0, -1), (0.7, 1), (1.2, 1), (0, 1))]
_KEY_WIDTH = 38  # characters of a name in the key beside the plot
# A plot names at most this many points (frontier first) and lists at most KEY_LIMIT in its key: past
# that, names are unreadable and placing them costs O(points^2). Every point keeps its marker, and its
# name is in report.html's interactive plot (hover) and in cells.csv; the plot says how many it left unnamed.
LABEL_LIMIT = 40
KEY_LIMIT = 20
_LEADER = {"arrowstyle": "-", "color": "#999999", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 3}
PUBLISHED_NOTE = "hollow: published (Ganesh et al. 2021), relative to BERT-base, on their hardware"


def family_colour(category: Optional[str]) -> str:
    return FAMILY_COLOURS.get(category, FAMILY_COLOURS["Other"])


@dataclass
class Panel:
    """One Pareto plot: its points on one axis, for one task (or the average) and one machine."""

    stem: str  # the file name without suffix
    axis: CostAxis
    title: str
    ylabel: str
    points: pd.DataFrame  # pareto.POINT_COLUMNS + p_frontier, labels carrying "(P=...)"


def pareto_panels(df: pd.DataFrame, tasks, include_average=True) -> list[Panel]:
    """Every plot that has data, one per machine (and hardware config where the cost depends on it:
    pareto.plot_groups); an axis without data has none. Drawn as PNG/SVG and as interactive plots."""
    panels: list[Panel] = []
    for axis in AXES:
        for suffix, cells in plot_groups(df, axis).items():  # one machine's cells (and one hardware config's)
            where = f" [{cells['hardware'].iloc[0]}]" if axis.per_hardware else ""
            machine = _machine_of(cells)
            where += f"\n{machine}" if machine else ""  # the plot names its machine, whatever the file is called
            for task in tasks:
                points = with_probability_labels(task_points(cells, axis, task), cells, axis)  # "(P=0.93)": P(frontier)
                title = f"{TASK_LABELS.get(task, task)}: score vs {axis.label.split(',')[0].split(' (')[0]}{where}"
                panels.append(Panel(_stem(task, axis, suffix), axis, title, f"{TASK_LABELS.get(task, task)} score (0-100)", points))
            points, used, left_out = average_points(cells, axis, tasks) if include_average else (None, [], 0)
            if len(used) > 1:  # an "average" of one task would only repeat that task's plot
                names = ", ".join(TASK_LABELS.get(t, t) for t in used)
                omitted = f"\n({left_out} method(s) lacking one of these tasks not shown)" if left_out else ""
                panels.append(Panel(_stem("avg", axis, suffix), axis, f"Average over {names}{where}{omitted}",
                                    "Mean score (0-100)", points))
    return [panel for panel in panels if not panel.points.empty]


def write_pareto_plots(panels: list[Panel], out_dir: str | Path) -> list[Path]:
    """Each panel as PNG and SVG in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for panel in panels:
        written += _save(plot_frontier(panel.points, panel.axis.label, panel.ylabel, panel.title), out_dir / panel.stem)
    return written


def _machine_of(rows: pd.DataFrame) -> str:
    names = rows["machine"].dropna().unique() if "machine" in rows else []
    return names[0] if len(names) == 1 else ""


def _stem(task: str, axis: CostAxis, suffix: str) -> str:
    return "_".join(p for p in ("pareto", task, axis.key, suffix) if p)


# Above this many points a plot's markers and error bars go into its SVG as one embedded image (text,
# axes, frontier and labels stay vector): thousands of them as SVG elements took ~1 s a plot to write
# and made files of megabytes that browsers draw slowly. The PNG is the same either way.
RASTER_POINTS = 300
SVG_IMAGE_DPI = 130  # the embedded image's resolution, as the PNG's


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = [stem.parent / (stem.name + ".png"), stem.parent / (stem.name + ".svg")]  # task names hold dots
    with matplotlib.rc_context({"svg.hashsalt": "compbench"}):  # stable SVG ids: reports diff cleanly
        fig.savefig(paths[0], dpi=130)
        fig.savefig(paths[1], metadata={"Date": None}, dpi=SVG_IMAGE_DPI)
    return paths


def _new_figure() -> tuple[Figure, "matplotlib.axes.Axes"]:
    # Fixed margins instead of constrained layout / tight bbox: same look, a third of the drawing time.
    # The right quarter holds the legend, so it never covers a point or a label.
    fig = Figure(figsize=(9.0, 4.8))
    fig.subplots_adjust(left=0.085, right=0.665, bottom=0.12, top=0.86)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _column(points: pd.DataFrame, name: str, default) -> pd.Series:
    return points[name].fillna(default) if name in points else pd.Series(default, index=points.index)


def plot_frontier(points: pd.DataFrame, xlabel: str, ylabel: str, title: str) -> Figure:
    fig, ax = _new_figure()
    points = points.reset_index(drop=True)
    cost, value = points["cost"].to_numpy(float), points["value"].to_numpy(float)
    on_front = pareto_front(cost, value)
    categories = _column(points, "category", "Other").astype(str)
    colours = [family_colour(c) for c in categories]
    for curve in sweep_curves(points):  # under the dots
        ax.plot(curve["cost"], curve["value"], linestyle="--", linewidth=1.0, color=family_colour(curve["category"].iloc[0]),
                alpha=0.8, zorder=1.5)
    xerr, yerr = _errors(points, "cost"), _errors(points, "value")
    dense = len(points) > RASTER_POINTS
    for colour, front in sorted({(c, bool(f)) for c, f in zip(colours, on_front)}):  # one call per look, not per point
        rows = np.array([c == colour and bool(f) == front for c, f in zip(colours, on_front)])
        bars = ax.errorbar(cost[rows], value[rows], xerr=xerr[:, rows], yerr=yerr[:, rows], fmt="o", color=colour, ecolor=colour,
                           elinewidth=0.7, capsize=2, markersize=7 if front else 5.5, alpha=1.0 if front else 0.65,
                           markeredgecolor=FRONTIER if front else colour, markeredgewidth=1.2 if front else 0.5, zorder=3 if front else 2)
        for artist in bars.get_children():
            artist.set_rasterized(dense)
    disturbed = _column(points, "disturbed", False).astype(bool).to_numpy()
    subset = _column(points, "subset", False).astype(bool).to_numpy()
    if disturbed.any():
        ax.scatter(cost[disturbed], value[disturbed], s=170, facecolors="none", edgecolors=DISTURBED, linewidths=1.4, zorder=3.5,
                   rasterized=dense)
    if subset.any():
        ax.scatter(cost[subset], value[subset], s=150, marker="s", facecolors="none", edgecolors="#555555",
                   linestyles="--", linewidths=0.9, zorder=3.5, rasterized=dense)
    positive = cost[np.isfinite(cost) & (cost > 0)]
    if positive.size and positive.max() / positive.min() > 10:  # more than one order of magnitude
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.margins(x=0.15, y=0.15)  # room for the labels of the extreme points
    fig.draw_without_rendering()  # settle ticks and limits first, so label boxes are measured where they end up
    _staircase(ax, points[on_front])
    handles = _legend_handles(categories, on_front.any(), disturbed.any(), subset.any(), bool(sweep_curves(points)))
    unplaced = _place_labels(ax, points, on_front)
    _legend(fig, ax, handles, unplaced)
    return fig


def _staircase(ax, front: pd.DataFrame) -> None:
    """Best score attainable within each cost budget: flat from a frontier point to the next one's
    cost, then up; flat again to the right edge after the last."""
    front = front.sort_values(["cost", "value"])
    if front.empty:
        return
    right = ax.get_xlim()[1]
    xs = list(front["cost"]) + [right]
    ys = list(front["value"]) + [front["value"].iloc[-1]]
    ax.plot(xs, ys, drawstyle="steps-post", color=FRONTIER, linewidth=1.2, alpha=0.8, zorder=2.5)
    ax.set_xlim(right=right)


def _legend_handles(categories: pd.Series, frontier: bool, disturbed: bool, subset: bool, curves: bool) -> list:
    handles = [Line2D([], [], marker="o", linestyle="", color=family_colour(c), label=c)
               for c in CATEGORY_ORDER if c in set(categories)]
    handles += [Line2D([], [], marker="o", linestyle="", color=family_colour(c), label=c)
                for c in sorted(set(categories) - set(CATEGORY_ORDER))]
    if frontier:
        handles.append(Line2D([], [], color=FRONTIER, drawstyle="steps-post", marker="o", markerfacecolor="white",
                              markeredgecolor=FRONTIER, label="Pareto frontier (attainable)"))
    if curves:
        handles.append(Line2D([], [], color="#777777", linestyle="--", label="sweep of one parameter"))
    if disturbed:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=DISTURBED,
                              markersize=11, label="disturbed timing (contended or unstable)"))
    if subset:
        handles.append(Line2D([], [], marker="s", linestyle="", markerfacecolor="none", markeredgecolor="#555555",
                              markersize=10, label="evaluated on a subset"))
    return handles


def _legend(fig: Figure, ax, handles: list, unplaced: list[tuple[str, str]]) -> None:
    legend = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.68, 0.86), fontsize=7.5, frameon=False)
    if unplaced:
        renderer = fig.canvas.get_renderer()
        bottom = fig.transFigure.inverted().transform(legend.get_window_extent(renderer))[0][1]
        key = "\n".join(f"{tag} {_shorten(name)}" if tag else name for tag, name in unplaced)
        fig.text(0.69, bottom - 0.02, key, fontsize=7, va="top", ha="left", color="#333333")


def _shorten(name: str) -> str:
    return name if len(name) <= _KEY_WIDTH else name[: _KEY_WIDTH - 1] + "…"


def _errors(points: pd.DataFrame, prefix: str) -> np.ndarray:
    """(2, n) distances below and above each point for errorbar; NaN (no bar, no cap) where the record
    has no interval. A missing side or an inverted interval draws no bar rather than a misleading one."""
    centre = points[prefix].to_numpy(float)
    lo = _column(points, prefix + "_lo", np.nan).to_numpy(float)
    hi = _column(points, prefix + "_hi", np.nan).to_numpy(float)
    below, above = np.clip(centre - lo, 0.0, None), np.clip(hi - centre, 0.0, None)
    below[~np.isfinite(below)], above[~np.isfinite(above)] = 0.0, 0.0
    neither = ~(np.isfinite(lo) | np.isfinite(hi))
    below[neither], above[neither] = np.nan, np.nan
    return np.vstack([below, above])


def _place_labels(ax, points: pd.DataFrame, on_front: np.ndarray, names: Optional[list[str]] = None) -> list[tuple[str, str]]:
    """Greedy placement: frontier labels first, each at the nearest offset that overlaps no marker and
    no earlier label; far placements get a thin leader line. A point whose name fits nowhere gets a
    number ("[1]") instead; the (number, name) pairs are returned for the key beside the plot. At most
    LABEL_LIMIT points are named (frontier first); the key's last line counts the others."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    xy = ax.transData.transform(points[["cost", "value"]].to_numpy(float))
    placed = _Occupied([Bbox.from_bounds(x - 4, y - 4, 8, 8) for x, y in xy if np.isfinite(x) and np.isfinite(y)])
    names = names if names is not None else [str(v) for v in points["label"]]
    unplaced: list[tuple[str, str]] = []
    order = [i for i in np.argsort(~on_front, kind="stable") if np.isfinite(xy[i]).all()]
    for i in order[:LABEL_LIMIT]:
        style = {"fontsize": 8, "color": "black" if on_front[i] else "#555555", "zorder": 4}
        if _try_place(ax, names[i], points.iloc[i], xy[i], style, frame, placed, renderer):
            continue
        tag = f"[{len(unplaced) + 1}]"
        if _try_place(ax, tag, points.iloc[i], xy[i], style, frame, placed, renderer, _TAG_OFFSETS):
            unplaced.append((tag, names[i]))
        else:  # nowhere free even for a number: listed without a tag rather than drawn over another label
            unplaced.append(("[–]", names[i]))
    unnamed = len(order) - min(len(order), LABEL_LIMIT) + max(0, len(unplaced) - KEY_LIMIT)
    unplaced = unplaced[:KEY_LIMIT]
    if unnamed:
        unplaced.append(("", f"+{unnamed} more unnamed (report.html)"))
    return unplaced


class _Occupied:
    """Boxes already taken on a plot (markers, placed labels) as one array: each candidate is tested
    against all of them in one vectorised step (a Python loop of Bbox.overlaps was 3 million calls at
    100 configurations)."""

    def __init__(self, boxes: list[Bbox]):
        self.extents = np.array([box.extents for box in boxes], dtype=float).reshape(-1, 4)

    def overlaps(self, box: Bbox) -> bool:
        x0, y0, x1, y1 = self.extents.T
        return bool(np.any((x0 < box.x1) & (box.x0 < x1) & (y0 < box.y1) & (box.y0 < y1)))

    def add(self, box: Bbox) -> None:
        self.extents = np.vstack([self.extents, box.extents])


def _try_place(ax, text: str, row: pd.Series, anchor: np.ndarray, style: dict, frame: Bbox, placed: _Occupied, renderer,
               offsets=_OFFSETS) -> bool:
    """The label's size is measured once; each candidate offset moves that box (an Annotation is made
    only where it fits: making and measuring one per offset was most of a large report's time)."""
    probe = ax.text(0, 0, text, fontsize=style["fontsize"])
    width, height = _box_size(probe, renderer)
    probe.remove()
    points_to_pixels = ax.figure.dpi / 72
    for dx, dy in offsets:
        x, y = anchor[0] + dx * points_to_pixels, anchor[1] + dy * points_to_pixels
        box = Bbox.from_bounds(x - width if dx < 0 else x, y - height / 2, width, height).padded(1)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        if inside and not placed.overlaps(box):
            ax.annotate(text, (row["cost"], row["value"]), xytext=(dx, dy), textcoords="offset points",
                        ha="left" if dx >= 0 else "right", va="center",
                        arrowprops=_LEADER if abs(dx) + abs(dy) > 20 else None, **style)
            placed.add(box)
            return True
    return False


def _box_size(text: Text, renderer) -> tuple[float, float]:
    extent = text.get_window_extent(renderer)
    return extent.width, extent.height


def label_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """(text, window extent) of every point label in `fig`: what a test checks for overlaps."""
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), _text_box(t, renderer)) for ax in fig.axes for t in ax.texts if isinstance(t, Annotation)]


def _text_box(annotation: Annotation, renderer) -> Bbox:
    """The label's text only: an Annotation's own extent includes its leader line's bounding box,
    which may cross other points (a line, not a label) and would block every far placement."""
    annotation.update_positions(renderer)  # places the text at its offset, as Annotation.get_window_extent does
    return Text.get_window_extent(annotation, renderer)


# --------------------------------------------------------------------------------------------
# The survey's own view: average accuracy drop against speedup, one point per method
# --------------------------------------------------------------------------------------------

# Columns a paired comparison may add to Table 1 (the `comparison` section); used when present.
_PAIRED_DROP_CI = (("avg_drop_ci_lo", "avg_drop_ci_hi"), ("paired_drop_ci_lo", "paired_drop_ci_hi"))


def write_drop_vs_speedup(numeric: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """One chart per machine and device with measured speedups: drop_vs_speedup_{cpu,gpu}[_<machine>].{png,svg},
    the short fingerprint in the name when the table holds several machines."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    tables = list(by_machine(numeric))
    for fingerprint, _, rows in tables:
        machine = f"_{short_id(fingerprint)}" if len(tables) > 1 else ""
        for device in ("cpu", "gpu"):
            fig = plot_drop_vs_speedup(rows, device)
            if fig is not None:
                written += _save(fig, out_dir / f"drop_vs_speedup_{device}{machine}")
    return written


def plot_drop_vs_speedup(numeric: pd.DataFrame, device: str = "cpu") -> Optional[Figure]:
    """Measured rows of one machine's Table 1 (filled, by family colour) against the survey's rows of the
    same families (hollow, labelled as published). None when no measured row has both a drop and a
    speedup; a ValueError for rows of several machines, whose speedups are not on one scale."""
    from harness.report.published import survey_table

    column = f"speedup_{device}"
    measured = numeric[numeric["source"].eq("measured") & numeric["avg_drop"].notna() & numeric[column].notna()]
    measured = measured[measured["category"].ne("Baseline")]
    if len(machines(measured)) > 1:
        raise ValueError("Table 1 rows of several machines: plot each machine's rows (write_drop_vs_speedup does)")
    if measured.empty:
        return None
    survey = survey_table()
    survey = survey[survey["category"].isin(set(measured["category"])) & survey["avg_drop"].notna() & survey[column].notna()]
    lo_hi = next((pair for pair in _PAIRED_DROP_CI if set(pair) <= set(numeric.columns)), None)
    fig, ax = _new_figure()
    for _, row in measured.iterrows():
        yerr = None
        if lo_hi and pd.notna(row[lo_hi[0]]) and pd.notna(row[lo_hi[1]]):
            yerr = np.array([[max(row["avg_drop"] - row[lo_hi[0]], 0)], [max(row[lo_hi[1]] - row["avg_drop"], 0)]])
        colour = family_colour(row["category"])
        ax.errorbar([row[column]], [row["avg_drop"]], yerr=yerr, fmt="o", color=colour, ecolor=colour, markersize=6.5,
                    markeredgecolor=FRONTIER, markeredgewidth=0.6, capsize=2, elinewidth=0.8, zorder=3)
    for _, row in survey.iterrows():
        ax.scatter([row[column]], [row["avg_drop"]], s=55, facecolors="none", edgecolors=family_colour(row["category"]),
                   linewidths=1.5, marker="D", zorder=2.5)
    ax.axhline(0, color="#999999", linewidth=0.7, zorder=1)
    ax.axvline(1, color="#999999", linewidth=0.7, zorder=1)
    speedups = pd.concat([measured[column], survey[column]]).astype(float)
    if speedups.max() / max(speedups.min(), 1e-9) > 8:
        ax.set_xscale("log")
    # Table 1's Avg. drop CI (table.average_drop_ci): one task's paired bootstrap CI, or several tasks' combined
    drop_kind = "paired bootstrap 95% CI" if lo_hi else "unpaired difference of means, no CI"
    machine = _machine_of(measured)
    ax.set(xlabel=f"{device.upper()} speedup over the baseline (×)", ylabel="Average accuracy drop (points)",
           title=f"Accuracy drop vs {device.upper()} speedup ({drop_kind})\n{PUBLISHED_NOTE}"
           + (f"\nmeasured on {machine}" if machine else ""))
    ax.title.set_fontsize(9)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.margins(x=0.15, y=0.2)
    fig.draw_without_rendering()
    points = pd.DataFrame({
        "cost": list(measured[column]) + list(survey[column]), "value": list(measured["avg_drop"]) + list(survey["avg_drop"]),
        "label": [f"{m} [{model}]" if measured["model"].nunique() > 1 else str(m) for m, model in zip(measured["method"], measured["model"])]
        + [f"{m.split(' (')[0]} (published)" for m in survey["method"]],
    })
    is_measured = np.array([True] * len(measured) + [False] * len(survey))
    categories = list(measured["category"]) + list(survey["category"])
    handles = _legend_handles(pd.Series(categories), False, False, False, False)
    handles += [Line2D([], [], marker="o", linestyle="", color="#777777", markeredgecolor=FRONTIER, label="measured here"),
                Line2D([], [], marker="D", linestyle="", markerfacecolor="none", markeredgecolor="#777777",
                       label="published, BERT-base,\ntheir hardware")]
    unplaced = _place_labels(ax, points, is_measured)
    _legend(fig, ax, handles, unplaced)
    return fig
