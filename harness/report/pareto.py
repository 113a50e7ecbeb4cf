"""Pareto frontiers (minimise cost, maximise accuracy) and the points each frontier plot shows.

`pareto_front` defines the frontier precisely:
  * point i is dominated when some j has cost_j <= cost_i and value_j >= value_i, one of them strictly;
  * at equal cost only the best value survives; identical (cost, value) points do not dominate each
    other, so duplicates are all on the frontier together;
  * a point with a NaN or infinite cost or value is never on the frontier and dominates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from harness.report.table import TASK_ALIASES


def pareto_front(costs, values) -> np.ndarray:
    """Boolean mask of the non-dominated points. O(n^2) memory: fine for the hundreds of cells a run has."""
    cost = np.asarray(costs, dtype=float).ravel()
    value = np.asarray(values, dtype=float).ravel()
    if cost.shape != value.shape:
        raise ValueError(f"costs and values differ in length ({cost.size} vs {value.size})")
    valid = np.isfinite(cost) & np.isfinite(value)
    c, v = cost[valid], value[valid]
    no_worse = (c[None, :] <= c[:, None]) & (v[None, :] >= v[:, None])  # [i, j]: j is at least as good as i
    strictly = (c[None, :] < c[:, None]) | (v[None, :] > v[:, None])
    mask = np.zeros(cost.shape, dtype=bool)
    mask[valid] = ~(no_worse & strictly).any(axis=1)
    return mask


@dataclass(frozen=True)
class CostAxis:
    key: str  # file-name part
    column: str  # column of the flat records frame
    label: str
    device: Optional[str] = None  # latency/energy: only cells on this device
    per_machine: bool = False  # costs that depend on the machine are never mixed in one plot
    ci_columns: tuple = ()
    scale: float = 1.0  # plotted cost = column value x scale (FLOPs are plotted in GFLOPs)


AXES = (
    CostAxis("size_w_emb", "size_pct_with_emb", "Size with embeddings (% of baseline)"),
    CostAxis("size_wo_emb", "size_pct_without_emb", "Size without embeddings (% of baseline)"),
    CostAxis("cpu_latency", "latency_p50_ms", "CPU latency, p50 at batch 1 (ms)", "cpu", True,
             ("latency_p50_ci_lo_ms", "latency_p50_ci_hi_ms")),
    CostAxis("gpu_latency", "latency_p50_ms", "GPU latency, p50 at batch 1 (ms)", "cuda", True,
             ("latency_p50_ci_lo_ms", "latency_p50_ci_hi_ms")),
    CostAxis("energy", "energy_j_per_sample", "Energy per inference (J)", None, True),
    CostAxis("flops", "flops_per_sample", "GFLOPs per sample", scale=1e-9),
)
POINT_COLUMNS = ["label", "model", "method", "cost", "cost_lo", "cost_hi", "value", "value_lo", "value_hi"]


def plot_groups(df: pd.DataFrame, axis: CostAxis) -> dict[str, pd.DataFrame]:
    """Scored cells usable on `axis`, split by machine when the cost depends on it. Key: file-name suffix."""
    usable = df[df["status"].eq("ok") & df["score"].notna() & ~df["random_init"].astype(bool) & df[axis.column].notna()]
    if axis.device:
        usable = usable[usable["device"].eq(axis.device)]
    if not axis.per_machine or usable.empty:
        return {"": usable} if not usable.empty else {}
    setups = usable[["hardware", "fingerprint"]].drop_duplicates()
    ambiguous = setups["hardware"].duplicated(keep=False)
    groups = {}
    for (hardware, fingerprint), cells in usable.groupby(["hardware", "fingerprint"], sort=True):
        suffix = hardware + (f"-{str(fingerprint).split(':')[-1][:8]}" if ambiguous[setups["hardware"].eq(hardware)].any() else "")
        groups[suffix] = cells
    return groups


def task_points(cells: pd.DataFrame, axis: CostAxis, task: str) -> pd.DataFrame:
    """One point per (model, method) on one task: its best record (full eval, exact task, newest)."""
    multi_model = cells["model"].nunique() > 1  # decided before filtering, so labels agree across tasks
    cells = cells[cells["task"].eq(task) | cells["task"].map(TASK_ALIASES).eq(task)]
    cells = cells.assign(_variant=cells["task"].ne(task), _age=cells["created_at"].fillna(""))
    cells = cells.sort_values(["subset", "_variant", "_age"], ascending=[True, True, False], kind="stable")
    best = cells.drop_duplicates(["model", "method"], keep="first")
    lo, hi = axis.ci_columns or (None, None)
    return pd.DataFrame({
        "label": _labels(best, multi_model), "model": best["model"], "method": best["method"],
        "cost": best[axis.column] * axis.scale,
        "cost_lo": best[lo] * axis.scale if lo else np.nan, "cost_hi": best[hi] * axis.scale if hi else np.nan,
        "value": best["score"], "value_lo": best["ci_lo"], "value_hi": best["ci_hi"],
    }, columns=POINT_COLUMNS).reset_index(drop=True)


def average_points(cells: pd.DataFrame, axis: CostAxis, tasks) -> tuple[pd.DataFrame, list[str], int]:
    """Mean score (and cost) over the tasks that have any point, for rows having all of them, since a
    mean over different task sets is not comparable. Returns (points, tasks used, rows left out)."""
    per_task = {t: task_points(cells, axis, t) for t in tasks}
    used = [t for t, p in per_task.items() if not p.empty]
    if not used:
        return pd.DataFrame(columns=POINT_COLUMNS), [], 0
    stacked = pd.concat([per_task[t] for t in used])
    counts = stacked.groupby(["model", "method"])["value"].transform("size")
    complete = stacked[counts.eq(len(used))]
    mean = complete.groupby(["model", "method"], as_index=False).agg(
        label=("label", "first"), cost=("cost", "mean"), value=("value", "mean"))
    left_out = stacked[["model", "method"]].drop_duplicates().shape[0] - len(mean)
    return mean.reindex(columns=POINT_COLUMNS), used, left_out


def _labels(cells: pd.DataFrame, multi_model: bool) -> pd.Series:
    if multi_model:
        return cells["method"] + " (" + cells["model"] + ")"
    return cells["method"].astype(str)
