"""`compbench-report --compare A B`: two result sets (two commits, machines, library versions), cell by cell.

Cells are matched by configuration hash (the resolved config + data fingerprints + cache version; paths
and the git commit are not in it). For each matched cell:
  * accuracy change B - A on the primary metric: paired (same examples re-scored from both prediction
    files: McNemar for accuracy, paired bootstrap otherwise) when both files exist, else the plain
    difference with no test;
  * latency change: p50 ratio B / A at batch 1, with a 95 % bootstrap CI from both runs' raw timings;
  * speedup change, when both records timed the method interleaved with its baseline: speedup B / A,
    each run's block pairs resampled. It cancels what drifts between processes and runs (the
    absolute p50 of one cell moves by up to 4.5 % between fresh processes on an idle machine:
    BENCHMARKS.md, "Speedup repeatability on every machine kind"), so it decides the latency flag;
  * whether either run's timing was disturbed (a `contended` or `unstable` verdict): then no
    latency regression is judged, and the line says why;
  * what changed in the environment (package versions, CPU, GPU, commit).
A regression is flagged when B is significantly worse after Holm correction over the matched cells
(accuracy), or, for latency, when the whole speedup-change CI lies below 1 - `latency_tolerance` (or,
for a cell without interleaved speedups such as the baseline, the whole latency-ratio CI above
1 + `latency_tolerance`), and neither run's timing was disturbed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from harness.comparison import compare_split, holm_adjust
from harness.measure.stats import block_pairs, bootstrap_ratios
from harness.report.load import load_records
from harness.report.paired import paired_test_label, points_scale

ROUNDS = 2000
ENVIRONMENT_KEYS = ("packages", "python", "os")


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


DISTURBED = ("contended", "unstable")


def _batch1_entry(record: dict, seq_len) -> Optional[dict]:
    entries = [e for e in ((record.get("latency") or {}).get("fixed") or []) if isinstance(e, dict)]
    entries = [e for e in entries if e.get("batch_size") == 1 and e.get("values_ms")]
    entries.sort(key=lambda e: e.get("seq_len") != seq_len)
    return entries[0] if entries else None


def _verdict(entry: Optional[dict]) -> Optional[str]:
    return ((entry or {}).get("contention") or {}).get("verdict")


def speedup_change(entry_a: dict, entry_b: dict, seed: int = 0) -> Optional[dict]:
    """speedup(B) / speedup(A) of two interleaved entries, with a percentile-bootstrap 95 % CI (each
    run's block pairs resampled independently); None unless both hold their raw block pairs."""
    try:
        pairs_a, pairs_b = block_pairs(entry_a), block_pairs(entry_b)
    except (KeyError, TypeError, ValueError):
        return None
    statistic_a = entry_a["speedup"].get("statistic") or "p50"
    statistic_b = entry_b["speedup"].get("statistic") or "p50"
    if not pairs_a or not pairs_b or statistic_a != statistic_b:
        return None
    rng = np.random.default_rng(seed)
    changes = bootstrap_ratios(pairs_b, ROUNDS, rng, statistic_b) / bootstrap_ratios(pairs_a, ROUNDS, rng, statistic_a)
    low, high = np.percentile(changes, [2.5, 97.5])
    a, b = float(entry_a["speedup"]["value"]), float(entry_b["speedup"]["value"])
    return {"a": a, "b": b, "change": b / a, "ci": [float(low), float(high)]}


def latency_ratio(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """p50(B) / p50(A) and a percentile-bootstrap 95 % CI, the two runs resampled independently."""
    rng = np.random.default_rng(seed)
    med_a = np.median(a[rng.integers(0, a.size, size=(ROUNDS, a.size))], axis=1)
    med_b = np.median(b[rng.integers(0, b.size, size=(ROUNDS, b.size))], axis=1)
    low, high = np.percentile(med_b / med_a, [2.5, 97.5])
    return {"ratio": float(np.median(b) / np.median(a)), "ci": [float(low), float(high)]}


def accuracy_change(record_a: dict, path_a: str, record_b: dict, path_b: str, primary: str, seed: int = 0) -> Optional[dict]:
    """Paired B - A on the primary metric from both prediction files (points), or None when unavailable."""
    from harness.predictions import linked_predictions, metric_suffix

    try:
        split_a, split_b = linked_predictions(record_a, path_a), linked_predictions(record_b, path_b)
    except (OSError, ValueError):
        return None
    if not split_a or not split_b:
        return None
    task = record_a["config"]["task"]
    for name in split_a:
        if name not in split_b or split_a[name]["ids"] != split_b[name]["ids"]:
            continue
        suffix = metric_suffix(name, len(split_a))
        found = compare_split(task["metric"], task["metric_config"], split_a[name]["scored"], split_b[name]["scored"], ROUNDS, seed)
        for key, entry in found["metrics"].items():
            if key + suffix == primary:
                scale = points_scale(task["name"])
                ci = entry.get("ci95") or [np.nan, np.nan]
                return {"change": scale * entry["difference"], "ci_lo": scale * ci[0], "ci_hi": scale * ci[1],
                        "p": entry["p_value"], "test": entry["test"],
                        "same_prediction": found["agreement"]["same_prediction"]}
    return None


def _flatten_env(env: dict) -> dict:
    flat = {f"packages.{k}": v for k, v in (env.get("packages") or {}).items()} if isinstance(env.get("packages"), dict) else {}
    flat.update({k: env.get(k) for k in ENVIRONMENT_KEYS if k != "packages"})
    cpu, gpu, git = env.get("cpu") or {}, env.get("gpu") or {}, env.get("git") or {}
    flat["cpu"] = cpu.get("model") if isinstance(cpu, dict) else cpu
    flat["gpu"] = gpu.get("name") if isinstance(gpu, dict) else gpu
    flat["commit"] = git.get("commit") if isinstance(git, dict) else git
    flat["torch_cpu_capability"] = cpu.get("torch_cpu_capability") if isinstance(cpu, dict) else None
    return flat


def environment_changes(env_a: dict, env_b: dict) -> list[str]:
    a, b = _flatten_env(env_a or {}), _flatten_env(env_b or {})
    return [f"{key}: {a.get(key)} → {b.get(key)}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def compare_results(paths_a: list[str], paths_b: list[str], latency_tolerance: float = 0.02) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(one row per matched cell, lines to print, files of either side skipped or superseded)."""
    a, problems_a = load_records(paths_a)
    b, problems_b = load_records(paths_b)
    a, b = a[a["status"].eq("ok")], b[b["status"].eq("ok")]
    matched = a.merge(b, on="config_hash", suffixes=("_a", "_b"))
    rows = []
    environment: dict[str, set] = {}
    for _, cell in matched.iterrows():
        record_a, record_b = _load(cell["path_a"]), _load(cell["path_b"])
        row = {"task": cell["task_a"], "model": cell["model_a"], "method": cell["method_a"], "hardware": cell["hardware_a"],
               "score_a": cell["score_a"], "score_b": cell["score_b"], "accuracy_change": cell["score_b"] - cell["score_a"],
               "accuracy_ci_lo": np.nan, "accuracy_ci_hi": np.nan, "accuracy_p": np.nan, "accuracy_test": None,
               "same_prediction": np.nan, "p50_ms_a": cell["latency_p50_ms_a"], "p50_ms_b": cell["latency_p50_ms_b"],
               "latency_ratio": np.nan, "latency_ratio_ci_lo": np.nan, "latency_ratio_ci_hi": np.nan,
               "speedup_a": np.nan, "speedup_b": np.nan, "speedup_change": np.nan, "speedup_change_ci_lo": np.nan,
               "speedup_change_ci_hi": np.nan, "verdict_a": None, "verdict_b": None}
        paired = accuracy_change(record_a, cell["path_a"], record_b, cell["path_b"], cell["primary_metric_a"])
        if paired:
            row.update(accuracy_change=paired["change"], accuracy_ci_lo=paired["ci_lo"], accuracy_ci_hi=paired["ci_hi"],
                       accuracy_p=paired["p"], accuracy_test=paired["test"], same_prediction=paired["same_prediction"])
        entry_a, entry_b = _batch1_entry(record_a, cell["seq_len_a"]), _batch1_entry(record_b, cell["seq_len_b"])
        if entry_a is not None and entry_b is not None:
            ratio = latency_ratio(np.asarray(entry_a["values_ms"], dtype=np.float64), np.asarray(entry_b["values_ms"], dtype=np.float64))
            row.update(latency_ratio=ratio["ratio"], latency_ratio_ci_lo=ratio["ci"][0], latency_ratio_ci_hi=ratio["ci"][1],
                       verdict_a=_verdict(entry_a), verdict_b=_verdict(entry_b))
            if entry_a.get("speedup") and entry_b.get("speedup"):
                change = speedup_change(entry_a, entry_b)
                if change:
                    row.update(speedup_a=change["a"], speedup_b=change["b"], speedup_change=change["change"],
                               speedup_change_ci_lo=change["ci"][0], speedup_change_ci_hi=change["ci"][1])
        for change in environment_changes(record_a.get("environment"), record_b.get("environment")):
            environment.setdefault(change, set()).add(cell["hardware_a"])
        rows.append(row)
    table = pd.DataFrame(rows)
    lines = [f"Matched {len(table)} cell(s) by config hash; {len(a) - len(table)} only in A, {len(b) - len(table)} only in B."]
    if table.empty:
        return table, lines, problems_a + problems_b
    table["accuracy_p_holm"] = holm_adjust(table["accuracy_p"].to_numpy(float))
    table["accuracy_regression"] = (table["accuracy_p_holm"] < 0.05) & (table["accuracy_change"] < 0)
    disturbed = table["verdict_a"].isin(DISTURBED) | table["verdict_b"].isin(DISTURBED)
    by_speedup = table["speedup_change"].notna()
    table["latency_regression"] = ~disturbed & np.where(by_speedup, table["speedup_change_ci_hi"] < 1.0 - latency_tolerance,
                                                       table["latency_ratio_ci_lo"] > 1.0 + latency_tolerance)
    for _, row in table.iterrows():
        accuracy = f"{row['accuracy_change']:+.2f} pt"
        if np.isfinite(row["accuracy_ci_lo"]):
            test = paired_test_label(row["accuracy_test"])  # the CI is the paired bootstrap's whatever the test
            accuracy += (f" [{row['accuracy_ci_lo']:+.2f}, {row['accuracy_ci_hi']:+.2f}] (paired bootstrap 95% CI), "
                         f"{test + ' ' if test else ''}p_holm={row['accuracy_p_holm']:.3g}")
        else:
            accuracy += " (unpaired: prediction files missing)"
        latency = (f"latency ×{row['latency_ratio']:.3f} [{row['latency_ratio_ci_lo']:.3f}, {row['latency_ratio_ci_hi']:.3f}]"
                   if np.isfinite(row["latency_ratio"]) else "latency not comparable (no raw timings)")
        if np.isfinite(row["speedup_change"]):
            latency += (f"; speedup {row['speedup_a']:.3f}× → {row['speedup_b']:.3f}× (×{row['speedup_change']:.3f} "
                        f"[{row['speedup_change_ci_lo']:.3f}, {row['speedup_change_ci_hi']:.3f}])")
        disturbed_sides = [f"{side}: {row['verdict_' + side.lower()]}" for side in ("A", "B") if row["verdict_" + side.lower()] in DISTURBED]
        if disturbed_sides:
            latency += f"; latency not judged (timing disturbed, {', '.join(disturbed_sides)})"
        flags = [f for f, on in (("ACCURACY REGRESSION", row["accuracy_regression"]), ("LATENCY REGRESSION", row["latency_regression"])) if on]
        lines.append(f"- {row['task']} / {row['model']} / {row['method']} / {row['hardware']}: accuracy {accuracy}; {latency}"
                     + (f"  **{', '.join(flags)}**" if flags else ""))
    lines.append("Environment changes (A → B): " + ("none" if not environment else ""))
    lines += [f"  - {change}" for change in sorted(environment)]
    lines += [f"skipped: {p}" for p in problems_a + problems_b if not p.endswith("superseded by a newer record of the same cell on the same machine")]
    return table, lines, problems_a + problems_b
