"""Pareto frontiers (minimise cost, maximise accuracy) and the points each frontier plot shows.

`pareto_front` defines the frontier precisely:
  * point i is dominated when some j has cost_j <= cost_i and value_j >= value_i, one of them strictly;
  * at equal cost only the best value survives; identical (cost, value) points do not dominate each
    other, so duplicates are all on the frontier together;
  * a point with a NaN or infinite cost or value is never on the frontier and dominates nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from harness.report.machines import by_machine, machines, short_id
from harness.report.table import TASK_ALIASES


def pareto_front(costs, values) -> np.ndarray:
    """Boolean mask of the non-dominated points: no other point costs no more and scores no less, and
    one of the two strictly. O(n log n) (P(frontier) calls it 400 times a plot, on 1,000-point plots):
    sorted by cost, a point is on the front when it has the best value of its cost and beats every
    cheaper point's value. Exact ties (same cost and value) do not dominate each other."""
    cost = np.asarray(costs, dtype=float).ravel()
    value = np.asarray(values, dtype=float).ravel()
    if cost.shape != value.shape:
        raise ValueError(f"costs and values differ in length ({cost.size} vs {value.size})")
    valid = np.flatnonzero(np.isfinite(cost) & np.isfinite(value))
    mask = np.zeros(cost.shape, dtype=bool)
    if valid.size == 0:
        return mask
    order = valid[np.lexsort((-value[valid], cost[valid]))]  # cost ascending, best value first within a cost
    c, v = cost[order], value[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])  # first point of each distinct cost
    best_of_cost = v[starts]
    best_cheaper = np.r_[-np.inf, np.maximum.accumulate(best_of_cost)[:-1]]
    group = np.cumsum(np.r_[True, c[1:] != c[:-1]]) - 1
    mask[order] = (v == best_of_cost[group]) & (v > best_cheaper[group])
    return mask


@dataclass(frozen=True)
class CostAxis:
    key: str  # file-name part
    column: str  # column of the flat records frame
    label: str
    device: Optional[str] = None  # latency/energy: only cells on this device
    per_hardware: bool = False  # costs that depend on the hardware config too: one plot per config (and machine)
    ci_columns: tuple = ()
    scale: float = 1.0  # plotted cost = column value x scale (FLOPs are plotted in GFLOPs)


AXES = (
    CostAxis("size_w_emb", "size_pct_with_emb", "Size with embeddings (% of baseline)"),
    CostAxis("size_wo_emb", "size_pct_without_emb", "Size without embeddings (% of baseline)"),
    CostAxis("cpu_latency", "latency_p50_ms", "CPU latency, p50 at batch 1 (ms)", "cpu", per_hardware=True,
             ci_columns=("latency_p50_ci_lo_ms", "latency_p50_ci_hi_ms")),
    CostAxis("gpu_latency", "latency_p50_ms", "GPU latency, p50 at batch 1 (ms)", "cuda", per_hardware=True,
             ci_columns=("latency_p50_ci_lo_ms", "latency_p50_ci_hi_ms")),
    CostAxis("energy", "energy_j_per_sample", "Energy per inference (J)", None, per_hardware=True),
    CostAxis("flops", "flops_per_sample", "GFLOPs per sample", scale=1e-9),
)
POINT_COLUMNS = ["label", "model", "method", "cost", "cost_lo", "cost_hi", "value", "value_lo", "value_hi",
                 "category", "parameters", "disturbed", "subset", "n"]


def plot_groups(df: pd.DataFrame, axis: CostAxis) -> dict[str, pd.DataFrame]:
    """Scored cells usable on `axis`, one group per machine (machines.py), and per hardware config where
    the cost depends on it. No plot mixes machines, whatever the axis: a point's score, its seeds and
    the frontier it is measured against are one machine's, as in Table 1. Key: the file-name suffix,
    the hardware config and/or the short fingerprint; the fingerprint appears whenever `df` holds
    several machines, so one machine's files are named alike on every axis."""
    usable = df[df["status"].eq("ok") & df["score"].notna() & ~df["random_init"].astype(bool) & df[axis.column].notna()]
    if axis.device:
        usable = usable[usable["device"].eq(axis.device)]
    several = len(machines(df)) > 1
    groups = {}
    for fingerprint, _, cells in by_machine(usable):
        machine = short_id(fingerprint) if several else ""
        if not axis.per_hardware:
            groups[machine] = cells
            continue
        for hardware, setup in cells.groupby("hardware", sort=True):
            groups["-".join(p for p in (str(hardware), machine) if p)] = setup
    return groups


def task_points(cells: pd.DataFrame, axis: CostAxis, task: str) -> pd.DataFrame:
    """One point per (model, configuration) on one task: its best records (full eval, exact task), the
    seeds of that configuration averaged (n > 1: the bars show ± one sd instead of a CI)."""
    multi_model = cells["model"].nunique() > 1  # decided before filtering, so labels agree across tasks
    cells = cells[cells["task"].eq(task) | cells["task"].map(TASK_ALIASES).eq(task)]
    cells = cells.assign(_variant=cells["task"].ne(task), _age=cells["created_at"].fillna(""),
                         label=point_labels(cells, multi_model))
    cells = cells.sort_values(["subset", "_variant", "_age"], ascending=[True, True, False], kind="stable")
    best = cells.drop_duplicates(["model", "label"], keep="first")[["model", "label", "subset", "_variant", "setting"]]
    # Every seed of the chosen configuration (same setting, same eval subset and task variant).
    chosen = cells.merge(best, on=["model", "label", "subset", "_variant", "setting"], how="inner")
    chosen = chosen.drop_duplicates(["model", "label", "seed"], keep="first")
    if chosen.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    # One grouped pass (a loop over configurations cost ~0.1 s a plot per 100 of them, issue #29)
    lo, hi = axis.ci_columns or (None, None)
    # scaled after averaging, as a point's cost always was: equal costs (dense FLOPs) must stay exactly equal
    chosen = chosen.assign(_cost=chosen[axis.column].astype(float), _score=chosen["score"].astype(float),
                           _disturbed=chosen["disturbed"].fillna(False).astype(bool) if "disturbed" in chosen else False,
                           _subset=chosen["subset"].astype(bool))
    grouped = chosen.groupby(["model", "label"], sort=False)
    first = grouped.nth(0).reset_index(drop=True)  # each configuration's first record, NaNs kept, in group order
    n = grouped.size().to_numpy()
    cost, value = grouped["_cost"].mean().to_numpy() * axis.scale, grouped["_score"].mean().to_numpy()
    cost_sd, value_sd = grouped["_cost"].std().to_numpy() * axis.scale, grouped["_score"].std().to_numpy()
    seeds = n > 1  # several seeds: the bars show ± one sd instead of the one record's CI
    one_lo = first[lo].astype(float).to_numpy() * axis.scale if lo else np.full(len(first), np.nan)
    one_hi = first[hi].astype(float).to_numpy() * axis.scale if hi else np.full(len(first), np.nan)
    parameters = first["parameters"] if "parameters" in first else pd.Series(None, index=first.index, dtype=object)
    return pd.DataFrame({
        "label": first["label"], "model": first["model"], "method": first["method"], "cost": cost,
        "cost_lo": np.where(seeds, cost - cost_sd, one_lo), "cost_hi": np.where(seeds, cost + cost_sd, one_hi),
        "value": value, "value_lo": np.where(seeds, value - value_sd, first["ci_lo"].astype(float)),
        "value_hi": np.where(seeds, value + value_sd, first["ci_hi"].astype(float)),
        "category": first["category"] if "category" in first else None,
        "parameters": [p if isinstance(p, str) and p else "{}" for p in parameters],
        "disturbed": grouped["_disturbed"].any().to_numpy(), "subset": grouped["_subset"].any().to_numpy(), "n": n,
    }, columns=POINT_COLUMNS).reset_index(drop=True)


def average_points(cells: pd.DataFrame, axis: CostAxis, tasks) -> tuple[pd.DataFrame, list[str], int]:
    """Mean score (and cost) over the tasks that have any point, for rows having all of them, since a
    mean over different task sets is not comparable. Returns (points, tasks used, rows left out)."""
    per_task = {t: task_points(cells, axis, t) for t in tasks}
    used = [t for t, p in per_task.items() if not p.empty]
    if not used:
        return pd.DataFrame(columns=POINT_COLUMNS), [], 0
    stacked = pd.concat([per_task[t] for t in used])
    counts = stacked.groupby(["model", "label"])["value"].transform("size")
    complete = stacked[counts.eq(len(used))]
    mean = complete.groupby(["model", "label"], as_index=False, sort=False).agg(
        method=("method", "first"), cost=("cost", "mean"), value=("value", "mean"), category=("category", "first"),
        parameters=("parameters", "first"), disturbed=("disturbed", "any"), subset=("subset", "any"), n=("n", "min"))
    left_out = stacked[["model", "label"]].drop_duplicates().shape[0] - len(mean)
    return mean.reindex(columns=POINT_COLUMNS), used, left_out


def sweep_curves(points: pd.DataFrame) -> list[pd.DataFrame]:
    """Points of one (model, method) that differ in exactly one numeric parameter, over >= 3 values,
    sorted by it: a sweep the plots draw as a connected curve."""
    curves = []
    for _, group in points.groupby(["model", "method"], sort=False):
        if len(group) < 3:
            continue
        parameters = [json.loads(p) if isinstance(p, str) and p else {} for p in group["parameters"]]
        keys = set().union(*parameters)
        varying = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in parameters}) > 1]
        if len(varying) != 1:
            continue
        values = [p.get(varying[0]) for p in parameters]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) or len(set(values)) < 3:
            continue
        curves.append(group.assign(_swept=values).sort_values("_swept").drop(columns="_swept"))
    return curves


def point_labels(cells: pd.DataFrame, multi_model: bool) -> pd.Series:
    """The label a cell's point carries: its record's label (else its method), with [model] when a plot holds several."""
    labels = cells["label"].fillna(cells["method"]) if "label" in cells else cells["method"]
    labels = labels.astype(str)
    if multi_model:
        return labels + " [" + cells["model"].astype(str) + "]"
    return labels
