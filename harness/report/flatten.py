"""One record -> one flat dict of the values the table and the plots use.

Reads exactly what harness.runner writes (harness.record.Record, schema 2.x; older versions are
migrated by harness.record.load_record first). Sections that were not measured are null, so those
lookups yield None (NaN in the frame): a missing value is shown as missing, never as 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Optional

from harness.record import record_runtime
from harness.report.categories import UNCATEGORISED
from harness.report.machines import machine_name
from harness.report.variants import setting_key, trains_on_subset, variant_text

COLUMNS = [
    "path", "task", "model", "method", "runtime", "hardware", "device", "status", "reason", "seed",
    "category", "provenance", "config_hash", "created_at",
    "fingerprint", "machine", "cpu_model", "gpu_name",
    "primary_metric", "metric_value", "score", "ci_lo", "ci_hi",
    "subset", "train_subset", "random_init", "notes",
    "size_pct_with_emb", "size_pct_without_emb", "size_sparse", "bytes_dense", "bytes_sparse",
    "bytes_without_embeddings", "params_total",
    "seq_len", "latency_mode", "latency_p50_ms", "latency_p50_ci_lo_ms", "latency_p50_ci_hi_ms",
    "throughput_per_s", "speedup_interleaved", "speedup_interleaved_ci_lo", "speedup_interleaved_ci_hi",
    # issue 27: what the speedup is a ratio of ("mean" for input-dependent compute, else "p50"), and the means
    "speedup_statistic", "speedup_interleaved_mean", "latency_mean_ms",
    "latency_verdict", "energy_j_per_sample", "energy_provenance", "flops_per_sample",
    # one row per configuration (issue 11 part 6): label = the record's short label (harness.labels),
    # preset = the registered name the user chose, variant/parameters = what was changed from it
    "label", "preset", "variant", "parameters", "setting", "disturbed", "flops_method",
    # issue 27: the paper the method follows (the legend) and what its training cost (Table 1's Training)
    "reference_paper", "reference_recipe", "reference_changes", "comparable_to_published",
    "baseline_at_chance",  # issue 31: training.baseline_check says the baseline did not learn
    "train_examples_seen", "train_steps", "train_wall_s",
]


def flatten_record(record: dict, path: str | Path) -> dict:
    config = record["config"]
    names = record["cell"]
    task_cfg, model_cfg, hw_cfg = config["task"], config["model"], config["hardware"]
    env = record["environment"]
    described = record.get("method") or {}
    task = names["task"]
    # Records from before the runtime axis ran on PyTorch. Another runtime is part of the method's label,
    # so every grouping by method (table rows, plot points, duplicates) keeps runtimes apart.
    runtime = record_runtime(record)
    metric, value, ci = primary_metric(record.get("metrics"), task, task_cfg.get("primary_metric"))
    gpu = env.get("gpu") or {}
    subset = record["data"].get("subset") or {}  # absent when the cell failed before loading data
    row = {
        "path": str(path),
        "task": task,
        "model": names["model"],
        "method": names["method"] if runtime == "pytorch" else f"{names['method']} [{runtime}]",
        "runtime": runtime,
        "hardware": names["hardware"],
        "device": hw_cfg["device"],
        "status": record.get("status"),
        "reason": record.get("reason"),
        "seed": config.get("seed"),
        "category": described.get("category") or UNCATEGORISED,
        "provenance": described.get("provenance") or "",
        "config_hash": record.get("config_hash"),
        "created_at": record.get("created_at"),
        "fingerprint": env["fingerprint"],  # the machine: every table row, plot and recommendation is per fingerprint
        "machine": machine_name(env),
        "cpu_model": (env.get("cpu") or {}).get("model"),
        "gpu_name": gpu.get("name"),
        "primary_metric": metric,
        "metric_value": value,
        "score": to_points(value, task, metric),
        "ci_lo": to_points(ci[0], task, metric) if ci else None,
        "ci_hi": to_points(ci[1], task, metric) if ci else None,
        "subset": bool(subset.get("eval_subset")),
        "train_subset": bool(subset.get("train_subset"))
        or trains_on_subset(config.get("method"), ((record.get("data") or {}).get("counts") or {}).get("train")),
        "random_init": model_cfg.get("init") == "random",
        "baseline_at_chance": ((record.get("training") or {}).get("baseline_check") or {}).get("verdict") == "at chance",
        "notes": "; ".join(str(n) for n in record.get("metrics_notes") or []),
    }
    row.update(_reference(described.get("reference")))
    row.update(_training_budget(described.get("training_budget")))
    row.update(_size(record.get("size")))
    row.update(_latency(record.get("latency"), task_cfg.get("max_seq_length"), hw_cfg.get("compile")))
    energy = record.get("energy") or {}
    row["energy_j_per_sample"] = _number(energy.get("joules_per_sample"))
    row["energy_provenance"] = energy.get("provenance")
    row["flops_per_sample"] = _number((record.get("flops") or {}).get("flops_per_sample"))
    row["flops_method"] = (record.get("flops") or {}).get("method")
    # The label the record was written with (harness.labels): never re-derived from today's defaults.
    # A record from before labels, not yet migrated (harness.record_migration), is its method's name.
    label = described.get("label") or {}
    changed = label.get("changed") or {}
    row.update(label=label.get("short") or row["method"], preset=label.get("preset"),
               variant=variant_text(changed), parameters=json.dumps(changed, sort_keys=True, default=str),
               setting=setting_key(config) if config else None, disturbed=is_disturbed(record.get("latency")))
    return row


def _reference(reference: Optional[dict]) -> dict:
    """The paper a record's method follows, as the record says (harness.record_migration for old ones)."""
    reference = reference if isinstance(reference, dict) else {}
    return {"reference_paper": reference.get("paper"), "reference_recipe": reference.get("recipe"),
            "reference_changes": reference.get("changes"),
            # a record that says nothing is not held back from the published rows
            "comparable_to_published": bool(reference.get("comparable_to_published", True))}


def _training_budget(budget: Optional[dict]) -> dict:
    """What the method's own training or recovery spent (methods.base.Method.spent_budget); None for
    records written before the budget was recorded, and for methods that do not train."""
    budget = budget if isinstance(budget, dict) else {}
    return {"train_steps": _number(budget.get("optimizer_steps")), "train_examples_seen": _number(budget.get("examples_seen")),
            "train_wall_s": _number(budget.get("wall_s"))}


def is_disturbed(latency: Optional[dict]) -> bool:
    """A timed pass the harness judged disturbed: a "contended" or "unstable" verdict (on the latency
    section or any of its passes), or a note that the machine was shared."""
    latency = latency if isinstance(latency, dict) else {}
    entries = [latency] + [e for key in ("fixed", "real_length") for e in latency.get(key) or [] if isinstance(e, dict)]
    for entry in entries:
        contention = entry.get("contention")
        if isinstance(contention, dict) and str(contention.get("verdict", "")).lower() in ("contended", "unstable"):
            return True
    notes = " ".join(str(n) for n in latency.get("notes") or []).lower()
    return "shared machine" in notes or "contended" in notes


def primary_metric(metrics: Optional[dict], task: str, primary: Optional[str]) -> tuple[Optional[str], Optional[float], Optional[list]]:
    """(metric name, value, [lo, hi] or None). Metrics are flat; a task with several eval splits
    suffixes them ("accuracy_matched"). SQuAD prefers F1 and MNLI its matched split, because those
    are the survey's columns."""
    if not isinstance(metrics, dict):
        return primary, None, None
    cis = metrics.get("ci95") or {}
    candidates = ["f1"] if task.startswith("squad") else []
    if task.startswith("mnli"):
        candidates.append("accuracy_matched")
    candidates += [primary] if primary else []
    candidates.append("accuracy")
    for name in candidates:
        value = _number(metrics.get(name))
        if value is not None:
            ci = cis.get(name)
            ci = [_number(ci[0]), _number(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
            return name, value, ci if ci and None not in ci else None
    return primary, None, None


def to_points(value: Optional[float], task: str, metric: Optional[str]) -> Optional[float]:
    """The survey's 0-100 scale. GLUE records hold fractions; SQuAD holds the official 0-100 scale."""
    if value is None:
        return None
    if task.startswith("squad") or abs(value) > 1.0:
        return float(value)
    return 100.0 * float(value)


def _size(size: Optional[dict]) -> dict:
    """Sizes in % of the baseline. When the sparse form (bitmask + non-zero values) is smaller than the
    dense one, that is the size the survey reports for pruned models, so w/ emb uses it and is flagged;
    the record has no sparse figure without embeddings, so w/o emb stays dense."""
    size = size or {}
    dense, sparse = _number(size.get("bytes_dense")), _number(size.get("bytes_sparse"))
    base_dense, base_noemb = _number(size.get("baseline_bytes_dense")), _number(size.get("baseline_bytes_without_embeddings"))
    with_emb = _number(size.get("pct_of_baseline_with_emb"))
    without = _number(size.get("pct_of_baseline_without_emb"))
    if with_emb is None and dense and base_dense:
        with_emb = 100.0 * dense / base_dense
    if without is None and _number(size.get("bytes_without_embeddings")) and base_noemb:
        without = 100.0 * size["bytes_without_embeddings"] / base_noemb
    sparse_smaller = bool(sparse and dense and sparse < dense and base_dense)
    if sparse_smaller:
        with_emb = 100.0 * sparse / base_dense
    return {
        "size_pct_with_emb": with_emb,
        "size_pct_without_emb": without,
        "size_sparse": sparse_smaller,
        "bytes_dense": dense,
        "bytes_sparse": sparse,
        "bytes_without_embeddings": _number(size.get("bytes_without_embeddings")),
        "params_total": _number(size.get("params_total")),
    }


def _latency(latency: Optional[dict], seq_len: Optional[int], mode: Optional[str]) -> dict:
    """p50 at batch 1 on the fixed-length inputs (the survey's protocol); throughput at the largest batch."""
    fixed = [e for e in (latency or {}).get("fixed") or [] if isinstance(e, dict)]
    batch1 = [e for e in fixed if e.get("batch_size") == 1 and _number(e.get("p50_ms")) is not None]
    batch1.sort(key=lambda e: (e.get("seq_len") != seq_len, e.get("mode") != mode))
    best = batch1[0] if batch1 else {}
    ci = best.get("p50_ci95_ms") if isinstance(best.get("p50_ci95_ms"), (list, tuple)) else [None, None]
    with_tp = [e for e in fixed if _number(e.get("throughput_per_s")) is not None]
    widest = max(with_tp, key=lambda e: e.get("batch_size") or 0) if with_tp else {}
    speedup = best.get("speedup") if isinstance(best.get("speedup"), dict) else {}
    if isinstance(speedup.get("pooled"), dict):  # timed in several fresh processes: the pooled figure (issue 30)
        speedup = {**speedup, **{k: speedup["pooled"][k] for k in ("value", "ci95")}}
    speedup_ci = speedup.get("ci95") if isinstance(speedup.get("ci95"), (list, tuple)) and len(speedup["ci95"]) == 2 else [None, None]
    contention = (latency or {}).get("contention") if isinstance((latency or {}).get("contention"), dict) else {}
    # The timed speedup says which statistic it used; without one, the method's declaration (a
    # cross-cell ratio then uses the same statistic); records before issue 27 used p50 throughout.
    statistic = speedup.get("statistic") or (latency or {}).get("speedup_statistic") or "p50"
    return {
        "seq_len": best.get("seq_len"),
        "latency_mode": best.get("mode"),
        "latency_p50_ms": _number(best.get("p50_ms")),
        "latency_p50_ci_lo_ms": _number(ci[0]) if len(ci) == 2 else None,
        "latency_p50_ci_hi_ms": _number(ci[1]) if len(ci) == 2 else None,
        "throughput_per_s": _number(widest.get("throughput_per_s")),
        # The speedup this cell timed itself, interleaved with the baseline (schema >= 1.1).
        "speedup_interleaved": _number(speedup.get("value")),
        "speedup_interleaved_ci_lo": _number(speedup_ci[0]),
        "speedup_interleaved_ci_hi": _number(speedup_ci[1]),
        "speedup_statistic": statistic,
        # reference mean / method mean, recorded whichever the statistic (absent before issue 27)
        "speedup_interleaved_mean": _number(speedup.get("value_mean")),
        "latency_mean_ms": _number(best.get("mean_ms")),
        # "clean" | "contended" | "unstable" | "unknown" over every timed pass; None for records before verdicts.
        "latency_verdict": contention.get("verdict"),
    }


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
