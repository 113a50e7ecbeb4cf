"""Does this run's speedup agree with this cell's earlier runs on this machine? (issue 30)

Some slowdowns belong to a whole process: on the AVX-512 VNNI EPYC one fresh process in five gave
1.68x where the others gave 2.0x to 2.4x, every block of it agreeing with every other and every
pass judged clean. Nothing inside such a process can tell, and the canary only can when it slows
too; another process can. So the sweep keeps, per machine, the speedups each timed cell gave in
its earlier runs, and a run whose speedup lies further than `MAX_DEVIATION` from their median is
`unstable` with the figures: harness.sweep.fresh_processes then runs it again in a fresh process,
as it does for any unstable pass. With only one or two earlier runs, which of them is off cannot be
told yet, so only a run more than `MAX_DEVIATION` beyond all of them is unstable.

The history is a file per machine fingerprint and thread count under the cache directory
(`<cache_dir>/speedups/`), keyed by the cell's config hash, the code's commit and the entry's
label, so a change to the method, its settings or the code starts a new history rather than
being called unstable. It judges against the median from `MEDIAN_RUNS` earlier runs on, and keeps
the last `KEEP`.
Every run that was steady inside its own process is remembered, the ones this check flagged too:
an outlier moves a median of several runs little, and a lasting change of the machine (a new
kernel, a BIOS setting) moves the median over to it within a few runs instead of calling every
later run unstable.

A cell's first run on a machine has nothing to be judged against. The file also counts the runs
this check flagged (`disagreements`): on a machine whose processes have disagreed before, a cell's
first run is timed in `FIRST_RUN_PROCESSES` fresh processes and pooled (harness.sweep.fresh_processes),
which gives a figure that does not hang on one process and fills the cell's history at once. On a
machine whose processes agree that never happens, and a cell costs one process.

Runs in the sweep's parent, which never imports torch: json and the standard library only.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Optional, TypedDict

MAX_DEVIATION = 0.06  # |speedup / median of earlier runs - 1| beyond this is unstable; steady runs on machine C: CV 0.3-1.6 %
MEDIAN_RUNS = 3  # from this many earlier runs, judge against their median (one odd run among them moves it little)
KEEP = 20  # runs remembered per cell and setting
FIRST_RUN_PROCESSES = 3  # a cell's first run on a machine whose processes have disagreed: pooled over this many


class HistoryFigures(TypedDict):
    runs: int  # earlier runs of this cell and setting on this machine
    rule: str  # "median": |speedup / median - 1| > limit (MEDIAN_RUNS or more runs); "range": beyond all of them by the limit
    median: float  # their median speedup
    low: float  # their lowest speedup
    high: float  # their highest speedup
    deviation: float  # this run's speedup / median - 1 ("median"), or / the nearest earlier run - 1 ("range")
    limit: float  # MAX_DEVIATION


def history_path(cache_dir: str, record: dict) -> Optional[Path]:
    """This machine's file, or None for a record that does not say which machine made it."""
    environment = record.get("environment") or {}
    fingerprint, threads = environment.get("fingerprint"), environment.get("threads")
    if isinstance(threads, dict):  # a cell's record: {"intra_op": 2, "inter_op": 1, "affinity": [...], ...}
        threads = threads.get("intra_op")
    if not fingerprint or not isinstance(threads, int):
        return None
    return Path(os.path.expanduser(cache_dir)) / "speedups" / f"{fingerprint}-t{threads}.json"


def _key(record: dict, entry: dict) -> Optional[str]:
    git = (record.get("environment") or {}).get("git") or {}
    if not record.get("config_hash") or not entry.get("label"):
        return None
    return f"{record['config_hash']}|{git.get('commit', 'unknown')}{'+dirty' if git.get('dirty') else ''}|{entry['label']}"


def _entries(record: dict) -> list:
    """The record's interleaved entries that have a speedup."""
    latency = record.get("latency") if isinstance(record.get("latency"), dict) else {}
    return [e for key in ("fixed", "real_length") for e in latency.get(key) or [] if (e.get("speedup") or {}).get("value")]


def read_history(path: Optional[Path]) -> dict:
    """{"runs": {key: [speedup, ...]}, "disagreements": runs this check flagged on this machine}."""
    history: dict = {}
    if path is not None:
        try:
            history = json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    runs = history.get("runs") if isinstance(history, dict) else None
    disagreements = history.get("disagreements") if isinstance(history, dict) else None
    return {"runs": runs if isinstance(runs, dict) else {}, "disagreements": disagreements if isinstance(disagreements, int) else 0}


def _verdict(entry: dict) -> Optional[str]:
    return (entry.get("contention") or {}).get("verdict")


def observe(record: dict, cache_dir: str) -> bool:
    """What the sweep does with each timed run, reading and writing the file once: judge `record`
    against its history (judge_record), add it (remember), and return whether it was its cell's first
    run on this machine while this machine's processes had disagreed before."""
    path = history_path(cache_dir, record)
    if path is None or record.get("status") != "ok":
        return False
    history = read_history(path)
    keys = [key for key in (_key(record, entry) for entry in _entries(record)) if key]
    first_on_a_disagreeing_machine = history["disagreements"] > 0 and bool(keys) and not any(history["runs"].get(k) for k in keys)
    steady_inside = steady_labels(record)
    _judge(record, history["runs"])
    _add(record, history, steady_inside, path)
    return first_on_a_disagreeing_machine


def judge_record(record: dict, cache_dir: str) -> list[str]:
    """Judge each interleaved speedup of `record` against its history; mark the ones too far from it
    unstable in place (entry, its stability report and the record's verdict) and return the reasons."""
    if record.get("status") != "ok":
        return []
    return _judge(record, read_history(history_path(cache_dir, record))["runs"])


def _judge(record: dict, history: dict) -> list[str]:
    reasons = []
    for entry in _entries(record):
        earlier = history.get(_key(record, entry) or "", [])
        if not earlier or _verdict(entry) == "contended":
            continue
        value, median, low, high = float(entry["speedup"]["value"]), statistics.median(earlier), min(earlier), max(earlier)
        rule = "median" if len(earlier) >= MEDIAN_RUNS else "range"
        if rule == "median":
            deviation = value / median - 1
            against = f"from the median {median:.3f} of this cell's {len(earlier)} earlier runs on this machine (range {low:.3f} to {high:.3f}"
        else:
            deviation = value / high - 1 if value > high else value / low - 1 if value < low else 0.0
            runs = " and ".join(f"{v:.3f}" for v in earlier)
            against = f"beyond this cell's {len(earlier)} earlier run{'s' if len(earlier) > 1 else ''} on this machine ({runs}"
        if abs(deviation) <= MAX_DEVIATION:
            continue
        reason = f"{entry['label']}: speedup {value:.3f} is {deviation:+.0%} {against}; limit {MAX_DEVIATION:.0%})"
        reasons.append(reason)
        stability = entry.setdefault("stability", {})
        stability["verdict"] = "unstable"
        stability.setdefault("reasons", []).append(reason)
        stability["history"] = HistoryFigures(runs=len(earlier), rule=rule, median=round(median, 4), low=round(low, 4),
                                              high=round(high, 4), deviation=round(deviation, 4), limit=MAX_DEVIATION)
        entry.setdefault("contention", {})["verdict"] = "unstable"
    if reasons:
        record["latency"].setdefault("contention", {})
        if record["latency"]["contention"].get("verdict") != "contended":
            record["latency"]["contention"]["verdict"] = "unstable"
    return reasons


def remember(record: dict, cache_dir: str, steady_inside: set) -> None:
    """Add the speedups of `record`'s entries whose labels are in `steady_inside` (the entries its own
    process judged clean) to the history, and count the run if judge_record flagged it (atomically; a
    lost update between two sweeps loses one run)."""
    path = history_path(cache_dir, record)
    if path is None or record.get("status") != "ok":
        return
    _add(record, read_history(path), steady_inside, path)


def _add(record: dict, history: dict, steady_inside: set, path: Path) -> None:
    from harness.record import write_json_atomic

    added = False
    for entry in _entries(record):
        key = _key(record, entry)
        if key and entry["label"] in steady_inside:
            history["runs"][key] = (history["runs"].get(key, []) + [round(float(entry["speedup"]["value"]), 4)])[-KEEP:]
            added = True
    if any("history" in (entry.get("stability") or {}) for entry in _entries(record)):
        history["disagreements"] += 1
        added = True
    if added:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, history)


def steady_labels(record: dict) -> set:
    """The labels of the entries the run's own process judged clean (before this history judged them)."""
    return {e["label"] for e in _entries(record) if _verdict(e) == "clean"}

