"""How sure is each Pareto point? P(frontier) from a joint bootstrap of accuracy and cost.

Each bootstrap round redraws every point of one plot and recomputes the frontier; a point's P(frontier)
is the share of rounds in which it is on it.
  * Accuracy: when every point links a prediction file over the same eval examples, one set of example
    indices is drawn per round and all methods are re-scored on it (the comparison is paired, as it is
    in reality); otherwise a point is redrawn from a normal matching its 95 % CI, independently.
  * Latency: the point's raw batch-1 timings are resampled and the median retaken (independent across
    methods: they were timed separately); without raw timings, a normal matching the p50 CI.
  * Size and FLOPs are exact counts: they do not vary.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Optional

import numpy as np
import pandas as pd

from harness.report.pareto import AXES, CostAxis, pareto_front, plot_groups, point_labels, task_points

ROUNDS = 400
Z95 = 1.959963984540054


def frontier_probability(costs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """costs, values: (rounds, points) draws. Share of rounds in which each point is non-dominated."""
    costs, values = np.atleast_2d(costs), np.atleast_2d(values)
    hits = np.zeros(costs.shape[1])
    for cost, value in zip(costs, values):
        hits += pareto_front(cost, value)
    return hits / costs.shape[0]


def _normal_draws(centre: float, lo, hi, rounds: int, rng) -> np.ndarray:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return np.full(rounds, centre)
    return rng.normal(centre, (hi - lo) / (2 * Z95), rounds)


def _load(path: str) -> dict:
    try:
        return _load_cached(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return {}


@functools.lru_cache(maxsize=256)
def _load_cached(path: str, mtime_ns: int) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


# Every plot of a report (one per axis) redraws the same points: what a point needs from its record
# is kept per (version of a) file, for as many records as the report has; a cache smaller than that
# re-read and re-scored every record on every axis (issue #29: 1,000 configurations).
CACHED_RECORDS = 1 << 15


def _batch1_timings(path: str) -> tuple:
    """((p50_ms, raw timings) of each batch-1 fixed-length entry) of the record at `path`: all the
    latency draws need, without holding every record's JSON."""
    try:
        return _timings_of_version(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return ()


@functools.lru_cache(maxsize=CACHED_RECORDS)
def _timings_of_version(path: str, mtime_ns: int) -> tuple:
    entries = [e for e in ((_load(path).get("latency") or {}).get("fixed") or []) if isinstance(e, dict)]
    return tuple((e.get("p50_ms"), tuple(e["values_ms"])) for e in entries if e.get("batch_size") == 1 and e.get("values_ms"))


def _primary_statistic(record: dict, path: str, primary_metric: Optional[str]):
    """(example ids, f(index rows) -> primary metric in points) from the record's prediction file, or None."""
    from harness.comparison import metric_statistics
    from harness.predictions import linked_predictions, metric_suffix
    from harness.report.paired import points_scale

    try:
        splits = linked_predictions(record, path)
    except (OSError, ValueError):
        return None
    if not splits or not primary_metric:
        return None
    task = record["config"]["task"]
    for name, split in splits.items():
        suffix = metric_suffix(name, len(splits))
        statistics = metric_statistics(task["metric"], task["metric_config"], split["scored"])
        for key, statistic in statistics.items():
            if key + suffix == primary_metric:
                scale = points_scale(task["name"])
                return tuple(map(str, split["ids"])), (lambda idx, f=statistic, s=scale: s * f(idx))
    return None


def _cached_statistic(path: str, primary_metric: Optional[str]):
    try:
        return _statistic_of_version(str(path), os.stat(path).st_mtime_ns, primary_metric)
    except OSError:
        return None


@functools.lru_cache(maxsize=CACHED_RECORDS)
def _statistic_of_version(path: str, mtime_ns: int, primary_metric: Optional[str]):
    return _primary_statistic(_load(path), path, primary_metric)


def _latency_draws(timings_by_p50: tuple, p50: float, lo, hi, rounds: int, rng) -> np.ndarray:
    match = next((values for entry_p50, values in timings_by_p50 if entry_p50 == p50), None)
    if match is None:
        return _normal_draws(p50, lo, hi, rounds, rng)
    timings = np.asarray(match, dtype=np.float64)
    return np.median(timings[rng.integers(0, timings.size, size=(rounds, timings.size))], axis=1)


def point_probabilities(points: pd.DataFrame, cells: pd.DataFrame, axis: CostAxis, rounds: int = ROUNDS,
                        seed: int = 0) -> pd.Series:
    """P(frontier) for each row of `points` (from pareto.task_points over `cells`)."""
    rng = np.random.default_rng(seed)
    chosen = _cells_of(points, cells, axis)
    timings = [_batch1_timings(c["path"]) if c is not None else () for c in chosen]
    statistics = [_cached_statistic(c["path"], c["primary_metric"]) if c is not None else None for c in chosen]
    values = np.empty((rounds, len(points)))
    costs = np.empty((rounds, len(points)))
    paired = all(s is not None for s in statistics) and len({s[0] for s in statistics}) == 1
    if paired and statistics:
        index = rng.integers(0, len(statistics[0][0]), size=(rounds, len(statistics[0][0])))
    for i, (point, point_timings) in enumerate(zip(points.itertuples(index=False), timings)):
        if paired and statistics:
            values[:, i] = statistics[i][1](index)
        else:
            values[:, i] = _normal_draws(point.value, point.value_lo, point.value_hi, rounds, rng)
        if axis.column == "latency_p50_ms":
            p50 = point.cost / axis.scale
            costs[:, i] = axis.scale * _latency_draws(point_timings, p50, point.cost_lo / axis.scale, point.cost_hi / axis.scale, rounds, rng)
        else:
            costs[:, i] = point.cost
    return pd.Series(frontier_probability(costs, values) if len(points) else [], index=points.index, dtype=float)


def _cells_of(points: pd.DataFrame, cells: pd.DataFrame, axis: CostAxis) -> list:
    """For each point, the record task_points chose (same model, method, score and cost), or None."""
    # Matched on the point's label too (task_points' own: label, or method, [model] when several): on
    # method alone, a sweep of 1,000 configurations of one method merged into millions of candidate pairs.
    keyed = cells.assign(_row=np.arange(len(cells)), _cost=cells[axis.column].astype(float) * axis.scale,
                         label=point_labels(cells, cells["model"].nunique() > 1))
    merged = points[["model", "method", "label", "value", "cost"]].reset_index().merge(
        keyed[["model", "method", "label", "score", "_cost", "_row"]], on=["model", "method", "label"], how="left")
    same = np.isclose(merged["score"].astype(float), merged["value"].astype(float)) & np.isclose(merged["_cost"], merged["cost"].astype(float))
    first = merged[same].drop_duplicates("index").set_index("index")["_row"]
    return [cells.iloc[int(first[i])] if i in first.index else None for i in points.index]


def add_frontier_probabilities(df: pd.DataFrame, tasks, rounds: int = ROUNDS) -> pd.DataFrame:
    """A copy of the flat frame with `p_frontier_<axis>` for every plotted axis, and `p_frontier`: the
    one of the latency plot of the cell's own device (where both coordinates are noisy)."""
    out = df.copy()
    for axis in AXES:
        column = f"p_frontier_{axis.key}"
        out[column] = np.nan
        for _, cells in plot_groups(df, axis).items():
            for task in tasks:
                points = task_points(cells, axis, task)
                if points.empty:
                    continue
                probabilities = point_probabilities(points, cells, axis, rounds)
                for cell, probability in zip(_cells_of(points, cells, axis), probabilities):
                    if cell is not None:
                        out.loc[cell.name, column] = probability
    latency_columns = {"cpu": "p_frontier_cpu_latency", "cuda": "p_frontier_gpu_latency"}
    out["p_frontier"] = [row[latency_columns[row["device"]]] if row["device"] in latency_columns else np.nan
                         for _, row in out.iterrows()]
    return out


def with_probability_labels(points: pd.DataFrame, cells: pd.DataFrame, axis: CostAxis) -> pd.DataFrame:
    """`points` with P(frontier) computed and appended to each label, for the plots."""
    if points.empty:
        return points
    column = f"p_frontier_{axis.key}"
    if column in cells.columns:  # computed already for cells.csv (build_report): the same numbers
        probabilities = pd.Series([c[column] if c is not None else np.nan for c in _cells_of(points, cells, axis)], index=points.index)
    else:
        probabilities = point_probabilities(points, cells, axis)
    return points.assign(p_frontier=probabilities,
                         label=[f"{label} (P={p:.2f})" if np.isfinite(p) else label for label, p in zip(points["label"], probabilities)])
