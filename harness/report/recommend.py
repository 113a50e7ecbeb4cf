"""`compbench-report RESULTS --recommend`: the best method(s) under a user's budget, per task and machine.

Machines are answered one at a time, each under a heading naming it (machines.py): a candidate only
ever competes with cells of its own machine, whose speedups, drops and seeds are measured there.

A candidate qualifies when its measured accuracy drop vs the baseline of the same model (paired, on the
same examples, when the record carries the comparison), its p50 latency at batch 1 and its size are
within the limits given. Qualifiers are ranked by their speedup over the fp32 baseline as each cell
measured it side by side (interleaved blocks in one process), then by accuracy; absolute latency only
orders cells with no speedup, and the answer says which figure ranked. It names the best and the
runner-up with the evidence: drop and paired CI, speedup and its CI, P(frontier). It says so plainly
when nothing qualifies, and when the data cannot separate the best from the runner-up (overlapping
speedup CIs and no significant accuracy difference between them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from harness.report.display import signed_points
from harness.report.frontier_uncertainty import add_frontier_probabilities
from harness.report.machines import by_machine, machines
from harness.report.paired import add_paired_columns, paired_test_label
from harness.report.speedup import add_speedups, is_baseline


@dataclass(frozen=True)
class Budget:
    max_drop: Optional[float] = None  # points of the task's primary metric (0-100 scale)
    max_latency_ms: Optional[float] = None  # p50 at batch 1
    max_size_pct: Optional[float] = None  # size with embeddings, % of the baseline
    device: Optional[str] = None  # cpu | cuda; None: every device

    def describe(self) -> str:
        parts = [f"drop ≤ {self.max_drop:g} pt" if self.max_drop is not None else None,
                 f"p50 latency ≤ {self.max_latency_ms:g} ms" if self.max_latency_ms is not None else None,
                 f"size ≤ {self.max_size_pct:g} % of baseline" if self.max_size_pct is not None else None,
                 f"device {self.device}" if self.device else None]
        return ", ".join(p for p in parts if p) or "no constraint"


def candidates(df: pd.DataFrame, tasks=()) -> pd.DataFrame:
    """Scored cells with drop (points, positive = worse), its CI, speedup CI and P(frontier)."""
    ok = df[df["status"].eq("ok") & df["score"].notna() & ~df["random_init"].astype(bool)]
    if ok.empty:
        return ok.assign(drop=[], drop_lo=[], drop_hi=[], drop_paired=[], speedup=[], speedup_lo=[], speedup_hi=[])
    ok = add_paired_columns(add_speedups(ok))
    if "p_frontier" not in ok.columns:
        ok = add_frontier_probabilities(ok, tuple(tasks) or tuple(ok["task"].unique()))
    keys = ["model", "task", "hardware", "fingerprint"]
    base = ok[is_baseline(ok)].drop_duplicates(keys, keep="last")[keys + ["score", "latency_p50_ci_lo_ms", "latency_p50_ci_hi_ms"]]
    base = base.rename(columns={"score": "_base_score", "latency_p50_ci_lo_ms": "_base_lo", "latency_p50_ci_hi_ms": "_base_hi"})
    out = ok.merge(base, on=keys, how="left")
    paired = out["paired_drop"].notna()
    out["drop_paired"] = paired
    out["drop"] = np.where(paired, -out["paired_drop"], out["_base_score"] - out["score"])
    out["drop_lo"] = np.where(paired, -out["paired_ci_hi"], np.nan)
    out["drop_hi"] = np.where(paired, -out["paired_ci_lo"], np.nan)
    out.loc[is_baseline(out), ["drop", "drop_lo", "drop_hi"]] = 0.0
    # The interleaved CI the cell measured (harness.measure.interleaved); for records without one, a
    # conservative interval from the two cells' p50 CIs (no joint samples in the flat frame).
    measured = out["speedup_ci_lo"].notna() & out["speedup_ci_hi"].notna()
    out["speedup_lo"] = np.where(measured, out["speedup_ci_lo"], out["_base_lo"] / out["latency_p50_ci_hi_ms"])
    out["speedup_hi"] = np.where(measured, out["speedup_ci_hi"], out["_base_hi"] / out["latency_p50_ci_lo_ms"])
    return out


# One configuration: same setting (config hash without the seed), task, machine and eval subset.
CONFIGURATION = ["task", "hardware", "fingerprint", "setting", "subset"]


def _over_seeds(cells: pd.DataFrame) -> pd.DataFrame:
    """One candidate per configuration: a configuration measured under several seeds competes with its
    mean over them (drop, score, latency, speedup), never with its luckiest seed. The mean has no paired
    CI (one seed's does not describe it) and no P(frontier); `seed_drops` keeps each seed's drop."""
    cells = cells.assign(n_seeds=1, seed_drops=None)
    if cells.empty or "setting" not in cells or "seed" not in cells:
        return cells
    keyed = cells["setting"].notna()
    # Grouped in one pass (a loop over configurations took 12 s at 1,000 of them, issue #29).
    seeds = cells[keyed].drop_duplicates(CONFIGURATION + ["seed"], keep="last")  # a re-run seed: its newest record
    configuration = seeds.groupby(CONFIGURATION, dropna=False, sort=False)
    several = configuration["seed"].transform("size").ge(2)
    single, multi = seeds[~several], seeds[several].copy()
    averaged = ("drop", "score", "latency_p50_ms", "speedup")
    joined = (("latency_p50_ci_lo_ms", "min"), ("latency_p50_ci_hi_ms", "max"), ("speedup_lo", "min"), ("speedup_hi", "max"))
    multi[[*averaged, *(column for column, _ in joined)]] = multi[[*averaged, *(column for column, _ in joined)]].astype(float)
    grouped = multi.groupby(CONFIGURATION, dropna=False, sort=False)
    group_ids = grouped.ngroup()
    seed_drops: dict = {}  # each seed's own drop, kept before the drop column becomes their mean
    for group_id, seed, drop in zip(group_ids, multi["seed"], multi["drop"]):
        seed_drops.setdefault(group_id, []).append((seed, drop))
    # The means, and the seeds' latency and speedup CIs joined: no joint samples over seeds in the flat frame.
    statistics = {column: grouped[column].transform("mean") for column in averaged}
    statistics |= {column: grouped[column].transform(pick) for column, pick in joined}
    if "latency_verdict" in multi:  # the worst seed's timing verdict: one disturbed seed disturbs the mean
        worst = multi["latency_verdict"].map({"contended": 2, "unstable": 1}).fillna(0).groupby(group_ids).transform("max")
        statistics["latency_verdict"] = np.where(worst.eq(2), "contended", np.where(worst.eq(1), "unstable", multi["latency_verdict"]))
    mean = multi.assign(**statistics, n_seeds=grouped["seed"].transform("size"), _group=group_ids).groupby("_group", sort=False).tail(1)
    mean = mean.assign(seed_drops=[tuple(seed_drops[g]) for g in mean["_group"]]).drop(columns="_group")
    mean[["drop_lo", "drop_hi", "paired_p", "p_frontier"]] = np.nan
    return pd.concat([cells[~keyed], single, mean]).sort_index()


# What ordered the qualifiers, said with every answer.
RANKING_TEXT = {
    "interleaved": "the side-by-side speedup (each method timed in alternating blocks with the fp32 baseline, in its own cell)",
    "mixed": "the speedup: side by side where the record has it, else the ratio of two cells of this machine timed "
             "apart (marked ᶜ in Table 1; less trustworthy)",
    "latency": "absolute p50 latency at batch 1 (a fallback: no speedup was measured for these cells)",
}


def _ranked(cells: pd.DataFrame) -> pd.DataFrame:
    """Qualifiers, best first: by speedup over the fp32 baseline (the figure each cell measured side by
    side, which two cells timed apart cannot distort), then by score; cells with no speedup at all
    after them, by absolute latency."""
    return cells.assign(_no_speedup=~np.isfinite(cells["speedup"].astype(float))).sort_values(
        ["_no_speedup", "speedup", "latency_p50_ms", "score"], ascending=[True, False, True, False],
        na_position="last").drop(columns="_no_speedup")


def _ranking_figure(ranked: pd.DataFrame) -> str:
    sources = set(ranked["speedup_source"].dropna()) if "speedup_source" in ranked else set()
    if not np.isfinite(ranked["speedup"].astype(float)).any():
        return "latency"
    return "interleaved" if sources <= {"interleaved", "reference"} and ranked["speedup"].notna().all() else "mixed"


def _qualifies(cells: pd.DataFrame, budget: Budget) -> tuple[pd.Series, pd.Series]:
    """(mask, reason each failing cell fails first)."""
    reasons = pd.Series("", index=cells.index)
    checks = [
        ("drop", budget.max_drop, "drop"),
        ("latency_p50_ms", budget.max_latency_ms, "latency"),
        ("size_pct_with_emb", budget.max_size_pct, "size"),
    ]
    for column, limit, name in checks:
        if limit is None:
            continue
        values = cells[column]
        failing = reasons.eq("") & ~(values <= limit)  # NaN (not measured) cannot be shown to fit
        texts = pd.Series([f"{name} not measured" if pd.isna(v) else f"{name} {v:.2f} > {limit:g}" for v in values],
                          index=cells.index)
        reasons = reasons.mask(failing, texts)
    return reasons.eq(""), reasons


def _overlap(a_lo, a_hi, b_lo, b_hi) -> bool:
    if not all(np.isfinite(v) for v in (a_lo, a_hi, b_lo, b_hi)):
        return True  # no interval: no evidence of a difference
    return a_lo <= b_hi and b_lo <= a_hi


def _name(cell) -> str:
    """The row label of Table 1 (method, runtime and what differs from its defaults): two pipelines
    or two sparsities must not both read as the bare method name."""
    label = cell.get("label")
    return label if isinstance(label, str) and label else cell["method"]


def _evidence(cell) -> str:
    drop = f"drop {signed_points(cell['drop'])} pt"
    if cell["category"] == "Baseline":
        drop = "the baseline itself"
    elif cell.get("n_seeds", 1) > 1:
        drop += (f" (mean over {cell['n_seeds']} seeds; per seed "
                 + ", ".join(f"{signed_points(d)} (seed {int(s)})" for s, d in cell["seed_drops"]) + ")")
    elif np.isfinite(cell["drop_lo"]):
        # The CI is always the paired bootstrap's; the p is the record's test, which for accuracy is
        # McNemar's: named, so a p above 0.05 beside a CI clear of 0 reads as two methods, not an error.
        drop += f" (paired bootstrap 95% CI [{signed_points(cell['drop_lo'])}, {signed_points(cell['drop_hi'])}]"
        test = paired_test_label(cell.get("paired_test"))
        drop += (f"; {test + ' ' if test else ''}p={cell['paired_p']:.3g})"
                 if np.isfinite(cell.get("paired_p", np.nan)) else ")")
    elif not cell["drop_paired"]:
        drop += " (unpaired: no comparison in the record)"
    latency = f"p50 {cell['latency_p50_ms']:.2f} ms" if np.isfinite(cell["latency_p50_ms"]) else "latency not measured"
    speed = (f"speedup {cell['speedup']:.2f}× [{cell['speedup_lo']:.2f}, {cell['speedup_hi']:.2f}]"
             if np.isfinite(cell.get("speedup", np.nan)) and np.isfinite(cell["speedup_lo"]) else
             f"speedup {cell['speedup']:.2f}×" if np.isfinite(cell.get("speedup", np.nan)) else "no speedup (no baseline timed)")
    verdict = cell.get("latency_verdict")
    if verdict in ("contended", "unstable"):  # the figure stands, marked: acting on it needs a steady re-measurement
        speed += f" (timing {verdict}: re-measure on an idle machine before acting on it)"
    size = f"size {cell['size_pct_with_emb']:.1f} %" if np.isfinite(cell["size_pct_with_emb"]) else "size not measured"
    frontier = f"P(frontier) {cell['p_frontier']:.2f}" if np.isfinite(cell.get("p_frontier", np.nan)) else "P(frontier) –"
    return "; ".join([drop, latency, speed, size, frontier])


def recommend(df: pd.DataFrame, budget: Budget, tasks=()) -> tuple[pd.DataFrame, list[str]]:
    """(one row per task and machine with best/runner-up, the lines to print)."""
    cells = _over_seeds(candidates(df, tasks))
    if budget.device:
        cells = cells[cells["device"].eq(budget.device)]
    if tasks:
        cells = cells[cells["task"].isin(tasks)]
    lines = [f"Budget: {budget.describe()}."]
    rows = []
    if cells.empty:
        lines.append("No scored cells match (check --device and --tasks).")
        return pd.DataFrame(rows), lines
    found = machines(cells)
    if len(found) > 1:
        lines.append(f"Records from {len(found)} machines: each is answered on its own, never ranked with another's "
                     "(--machine answers for one).")
    for fingerprint, name, on_machine in by_machine(cells):
        lines.append(f"\n# Machine: {name}")
        for (task, hardware), group in on_machine.groupby(["task", "hardware"], sort=True):
            lines.append(f"\n## {task} on {hardware}")
            row = {"machine": name, "task": task, "hardware": hardware, "fingerprint": fingerprint, "best": None,
                   "runner_up": None, "separable": None, "qualifying": 0, "ranked_by": None}
            rows.append(_answer(group, budget, row, lines))
    return pd.DataFrame(rows), lines


def _answer(group: pd.DataFrame, budget: Budget, row: dict, lines: list[str]) -> dict:
    """The answer for one task and hardware config on one machine: `row` filled in, the lines appended."""
    mask, reasons = _qualifies(group, budget)
    ranked = _ranked(group[mask])
    # The reference baseline (drop 0, 100 % size) meets every drop and latency budget its speedups were
    # measured against, so a method measured slower than it (whole speedup CI below 1) is never the
    # answer unless the size limit rules the baseline out, even when no baseline record is here.
    baseline_fits = budget.max_size_pct is None or budget.max_size_pct >= 100.0
    slower = ranked["speedup_hi"].lt(1.0) & ~is_baseline(ranked) if baseline_fits else pd.Series(False, index=ranked.index)
    if slower.any():
        lines.append("Left out, measured slower than the fp32 baseline: "
                     + ", ".join(f"{_name(c)} ({c['speedup']:.2f}× [{c['speedup_lo']:.2f}, {c['speedup_hi']:.2f}])"
                                 for _, c in ranked[slower].iterrows()) + ".")
        ranked = ranked[~slower]
    row["qualifying"] = len(ranked)
    if ranked.empty and slower.any():
        lines.append("Best: **the fp32 baseline itself**: no method measured here is faster within the budget.")
        row["best"] = "baseline"
        return row
    if ranked.empty:
        failing = "; ".join(f"{_name(c)} ({r})" for (_, c), r in zip(group.iterrows(), reasons[group.index]))
        lines.append(f"Nothing qualifies. Every candidate breaks a limit: {failing}.")
        return row
    best = ranked.iloc[0]
    row["best"] = _name(best)
    row["ranked_by"] = _ranking_figure(ranked)
    lines.append(f"Ranked by {RANKING_TEXT[row['ranked_by']]}.")
    lines.append(f"Best: **{_name(best)}** ({best['model']}): {_evidence(best)}.")
    if best["drop_paired"] and np.isfinite(best["drop_hi"]) and budget.max_drop is not None and best["drop_hi"] > budget.max_drop:
        lines.append(f"  Caution: its drop CI reaches {best['drop_hi']:+.2f} pt, beyond the {budget.max_drop:g} pt limit.")
    worst_seed = max((d for _, d in best["seed_drops"]), default=np.nan) if best["n_seeds"] > 1 else np.nan
    if budget.max_drop is not None and worst_seed > budget.max_drop:
        lines.append(f"  Caution: one of its seeds dropped {worst_seed:+.2f} pt, beyond the {budget.max_drop:g} pt limit.")
    if len(ranked) > 1:
        second = ranked.iloc[1]
        row["runner_up"] = _name(second)
        if row["ranked_by"] == "latency":
            same_speed = _overlap(best["latency_p50_ci_lo_ms"], best["latency_p50_ci_hi_ms"],
                                  second["latency_p50_ci_lo_ms"], second["latency_p50_ci_hi_ms"])
        else:
            same_speed = _overlap(best["speedup_lo"], best["speedup_hi"], second["speedup_lo"], second["speedup_hi"])
        same_accuracy = _overlap(best["drop_lo"], best["drop_hi"], second["drop_lo"], second["drop_hi"])
        row["separable"] = not (same_speed and same_accuracy)
        lines.append(f"Runner-up: {_name(second)} ({second['model']}): {_evidence(second)}.")
        if not row["separable"]:
            figure = "latency" if row["ranked_by"] == "latency" else "speedup"
            lines.append(f"  The data cannot separate {_name(best)} and {_name(second)}: their {figure} CIs "
                         "overlap and so do their paired accuracy CIs; either is a defensible choice.")
    else:
        lines.append("Runner-up: none (only one candidate qualifies).")
    return row
