"""A timed cell measured in more than one fresh process (issue 30).

Some slowdowns belong to a process, not to a moment: every block of it agrees with every other,
and only another process shows the figure was off. Two ways out, both here:

- **re-run while unstable**: a cell whose latency stays `unstable` after its in-process
  re-measurements (harness.measure.stability), or whose speedup lies far from this cell's earlier
  runs on this machine (harness.measure.speedup_history), runs again in a fresh process, up to
  `measure.fresh_process_retries` times; every try's figures stay in `latency.fresh_process_tries`.
- **pool several processes**: with `measure.latency_processes` = K > 1 (or K = 3 for a cell's first
  run on a machine whose processes have disagreed before: speedup_history), K - 1 more fresh processes
  time the same cell (latency only: accuracy, memory and the rest come from the first, measured on
  its artifact), and each interleaved speedup gets `speedup.pooled`: the median of the K
  processes' speedups with a CI from a two-level bootstrap (processes, then block pairs inside
  each), which carries the variance between processes as well as within one.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

# numpy only: this module runs in the sweep's parent, which never imports torch (an interrupt while
# torch imports would print a traceback; tests/test_sweeps.py)
from harness.measure import speedup_history
from harness.measure.stats import block_pairs, bootstrap_ratios

POOLED_DESIGN = ("median over fresh processes of each one's interleaved speedup; CI: percentile bootstrap that "
                 "resamples processes, then block pairs inside each")


def unstable(record: dict) -> bool:
    latency = record.get("latency")
    return record.get("status") == "ok" and isinstance(latency, dict) and (latency.get("contention") or {}).get("verdict") == "unstable"


def _entries(record: dict) -> list:
    latency = record.get("latency") or {}
    return [e for key in ("fixed", "real_length") for e in latency.get(key) or []]


def fresh_process_try(record: dict) -> dict:
    """What one fresh process's latency pass gave (harness.record.FreshProcessTry)."""
    entries = _entries(record)
    return {
        "verdict": (record["latency"].get("contention") or {}).get("verdict"),
        "speedups": {e["label"]: (e.get("speedup") or {}).get("value") for e in entries},
        "p50_ms": {e["label"]: e.get("p50_ms") for e in entries},
        "reasons": [reason for e in entries for reason in (e.get("stability") or {}).get("reasons") or []],
    }


def until_steady(run_once: Callable[[], dict], label: str, retries: int) -> dict:
    """`run_once()` (one isolated run of the cell), again while its latency is unstable, at most
    `retries` more times. The last record is kept, with every try listed when there was more than one."""
    earlier: list = []
    while True:
        record = run_once()
        if not unstable(record) or len(earlier) >= retries:
            break
        earlier.append(fresh_process_try(record))
        why = earlier[-1]["reasons"][0] if earlier[-1]["reasons"] else "see the record"
        print(f"[remeasure] {label}: latency unstable ({why}); fresh process, try {len(earlier) + 1} of {retries + 1}", flush=True)
    if earlier and isinstance(record.get("latency"), dict):
        record["latency"]["fresh_process_tries"] = earlier + [fresh_process_try(record)]
    return record


def latency_only(cell):
    """The same cell measuring latency alone: what the pooled processes after the first need."""
    measure = dataclasses.replace(cell.measure, accuracy=False, memory=False, energy=False, flops=False, latency_processes=1)
    return dataclasses.replace(cell, measure=measure)


def pooled_speedup(entries: list, statistic: str, n_bootstrap: int, seed: int = 0) -> dict:
    """harness.record.PooledSpeedup of one setting timed in several processes (`entries`: one
    interleaved latency entry per process, the cell's own first)."""
    values = [float(e["speedup"]["value"]) for e in entries]
    ci = None
    if n_bootstrap > 0 and len(entries) > 1:
        processes = [block_pairs(e) for e in entries]
        rng = np.random.default_rng(seed)
        estimates = np.empty(n_bootstrap)
        for k in range(n_bootstrap):  # processes resampled, then one resample of block pairs inside each
            picked = rng.integers(0, len(processes), size=len(processes))
            estimates[k] = np.median([bootstrap_ratios(processes[p], 1, rng, statistic)[0] for p in picked])
        ci = [float(v) for v in np.percentile(estimates, [2.5, 97.5])]
    spread = 100 * float(np.std(values, ddof=1) / np.mean(values)) if len(values) > 1 else None
    return {"value": float(np.median(values)), "ci95": ci, "per_process": values, "processes": len(values),
            "cv_pct": spread, "statistic": statistic, "design": POOLED_DESIGN}


def pool(record: dict, others: list, n_bootstrap: int) -> None:
    """Give each interleaved entry of `record` its `speedup.pooled` over `record` and `others` (the
    records of the extra processes), matching entries by label; list the processes' verdicts."""
    by_label: dict = {}
    for other in others:
        for entry in _entries(other):
            by_label.setdefault(entry["label"], []).append(entry)
    statistic = record["latency"].get("speedup_statistic") or "p50"
    for entry in _entries(record):
        if not entry.get("speedup"):
            continue
        matched = [e for e in by_label.get(entry["label"], []) if e.get("speedup")]
        entry["speedup"]["pooled"] = pooled_speedup([entry] + matched, statistic, n_bootstrap)
    record["latency"]["processes"] = [fresh_process_try(r) for r in [record] + others]


def run_timed(run_once: Callable[[object], dict], cell, label: str) -> dict:
    """The cell in fresh processes: retried while unstable, then pooled over measure.latency_processes.
    `run_once(cell)`: one isolated run of `cell`, returning its record."""
    cache_dir = getattr(getattr(cell, "paths", None), "cache_dir", None)
    first: dict = {}  # "pool": the cell's first run here, on a machine whose processes have disagreed

    def judged(one_cell) -> dict:
        """One run, its speedups judged against this cell's earlier runs here, then added to them."""
        record = run_once(one_cell)
        if cache_dir:
            first_on_a_disagreeing_machine = speedup_history.observe(record, cache_dir)
            first.setdefault("pool", first_on_a_disagreeing_machine)
        return record

    record = until_steady(lambda: judged(cell), label, cell.measure.fresh_process_retries)
    processes = cell.measure.latency_processes
    pooled_because = None
    if first.get("pool") and processes < speedup_history.FIRST_RUN_PROCESSES:
        processes = speedup_history.FIRST_RUN_PROCESSES
        pooled_because = (f"the cell's first run on a machine whose processes have disagreed before (speedup history): "
                          f"timed in {processes} fresh processes rather than {cell.measure.latency_processes}")
        print(f"[latency] {label}: {pooled_because}", flush=True)
    extra = processes - 1
    if extra <= 0 or record.get("status") != "ok" or not _entries(record):
        return record
    alone = latency_only(cell)
    others: list = []
    for k in range(extra):
        print(f"[latency] {label}: fresh process {k + 2} of {processes}", flush=True)
        other = until_steady(lambda: judged(alone), label, cell.measure.fresh_process_retries)
        if other.get("status") == "ok":
            others.append(other)
    pool(record, others, cell.measure.bootstrap)
    if pooled_because:
        record["latency"]["pooled_because"] = pooled_because
    return record

