"""One record -> one flat dict of the values the table and the plots use.

Every section of a record may be null, so every lookup here tolerates absence and yields None
(NaN in the frame): a missing value is shown as missing, never as 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Optional

from harness.report.method_catalog import method_category
from harness.report.variants import changed_parameters, method_label, setting_key, variant_text

COLUMNS = [
    "path", "task", "model", "method", "hardware", "device", "status", "reason", "seed",
    "category", "provenance", "config_hash", "created_at",
    "fingerprint", "cpu_model", "gpu_name",
    "primary_metric", "metric_value", "score", "ci_lo", "ci_hi",
    "subset", "train_subset", "random_init", "notes",
    "size_pct_with_emb", "size_pct_without_emb", "size_sparse", "bytes_dense", "bytes_sparse",
    "bytes_without_embeddings", "params_total",
    "seq_len", "latency_mode", "latency_p50_ms", "latency_p50_ci_lo_ms", "latency_p50_ci_hi_ms",
    "throughput_per_s", "energy_j_per_sample", "energy_provenance", "flops_per_sample",
    # one row per configuration (issue 11 part 6): label = method + what differs from its defaults
    "label", "variant", "parameters", "setting", "disturbed", "flops_method",
]


def flatten_record(record: dict, path: str | Path) -> dict:
    config = record.get("config") or {}
    cell = record.get("cell") or {}
    task_cfg, model_cfg, hw_cfg = (config.get(k) or {} for k in ("task", "model", "hardware"))
    method_cfg = config.get("method") or {}
    env = record.get("environment") or {}
    method_name = cell.get("method") or method_cfg.get("name") or "?"
    category, provenance = method_category(method_name, record.get("method"))
    task = cell.get("task") or task_cfg.get("name") or "?"
    metric, value, ci = primary_metric(record.get("metrics"), task, task_cfg.get("primary_metric"))
    row = {
        "path": str(path),
        "task": task,
        "model": cell.get("model") or model_cfg.get("name") or "?",
        "method": method_name,
        "hardware": cell.get("hardware") or hw_cfg.get("name") or "?",
        "device": hw_cfg.get("device") or ("cuda" if "cuda" in str(cell.get("hardware", "")) else "cpu"),
        "status": record.get("status"),
        "reason": record.get("reason"),
        "seed": config.get("seed"),
        "category": category,
        "provenance": provenance,
        "config_hash": record.get("config_hash"),
        "created_at": record.get("created_at"),
        "fingerprint": machine_fingerprint(env),
        "cpu_model": env.get("cpu_model") or _part(env.get("cpu"), "model"),
        "gpu_name": env.get("gpu_name") or _part(env.get("gpu"), "name"),
        "primary_metric": metric,
        "metric_value": value,
        "score": to_points(value, task, metric),
        "ci_lo": to_points(ci[0], task, metric) if ci else None,
        "ci_hi": to_points(ci[1], task, metric) if ci else None,
        "subset": is_subset(record),
        "train_subset": bool(((record.get("data") or {}).get("subset") or {}).get("train_subset", False))
        if isinstance((record.get("data") or {}).get("subset"), dict) else False,
        "random_init": model_cfg.get("init") == "random",
        "notes": "; ".join(str(n) for n in record.get("metrics_notes") or []),
    }
    row.update(_size(record.get("size")))
    row.update(_latency(record.get("latency"), task_cfg.get("max_seq_length"), hw_cfg.get("compile")))
    energy = record.get("energy") or {}
    row["energy_j_per_sample"] = _number(energy.get("joules_per_sample"))
    row["energy_provenance"] = energy.get("provenance")
    row["flops_per_sample"] = _number((record.get("flops") or {}).get("flops_per_sample"))
    row["flops_method"] = (record.get("flops") or {}).get("method")
    changed = changed_parameters(method_cfg)
    row.update(label=method_label(method_name, changed), variant=variant_text(changed),
               parameters=json.dumps(changed, sort_keys=True, default=str), setting=setting_key(config) if config else None,
               disturbed=is_disturbed(record.get("latency")))
    return row


def is_disturbed(latency: Optional[dict]) -> bool:
    """A timed pass the harness judged disturbed: a "contended" contention verdict (on the latency
    section or any of its passes), or a note that the machine was shared."""
    latency = latency if isinstance(latency, dict) else {}
    entries = [latency] + [e for key in ("fixed", "real_length") for e in latency.get(key) or [] if isinstance(e, dict)]
    for entry in entries:
        contention = entry.get("contention")
        if isinstance(contention, dict) and str(contention.get("verdict", "")).lower() == "contended":
            return True
    notes = " ".join(str(n) for n in latency.get("notes") or []).lower()
    return "shared machine" in notes or "contended" in notes


def primary_metric(metrics: Optional[dict], task: str, primary: Optional[str]) -> tuple[Optional[str], Optional[float], Optional[list]]:
    """(metric name, value, [lo, hi] or None), whatever shape the metrics take: flat ("accuracy_matched"),
    split-prefixed ("validation_matched/accuracy") or nested per split. SQuAD prefers F1 and MNLI its
    matched split, because those are the survey's columns."""
    if not isinstance(metrics, dict):
        return primary, None, None
    values = _flat({k: v for k, v in metrics.items() if k != "ci95"})
    cis = _flat(metrics.get("ci95") if isinstance(metrics.get("ci95"), dict) else {})
    candidates = ["f1"] if task.startswith("squad") else []
    if task.startswith("mnli"):
        candidates += ["accuracy_matched", "validation_matched/accuracy", "matched/accuracy"]
    candidates += [primary] if primary else []
    candidates += ["accuracy"]
    for name in candidates:
        # "x/accuracy" keys of a mismatched split match "/accuracy" too: they go last.
        suffixed = sorted((k for k in values if k.endswith("/" + name)), key=lambda k: "mismatched" in k)
        for key in [name] + suffixed:
            value = _number(values.get(key))
            if value is not None:
                ci = cis.get(key)
                ci = [_number(ci[0]), _number(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
                return name, value, ci if ci and None not in ci else None
    return primary, None, None


def _flat(nested: dict) -> dict:
    """One level of per-split nesting -> "split/metric" keys."""
    flat = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{inner}": v for inner, v in value.items()})
        else:
            flat[str(key)] = value
    return flat


def to_points(value: Optional[float], task: str, metric: Optional[str]) -> Optional[float]:
    """The survey's 0-100 scale. GLUE records hold fractions; SQuAD holds the official 0-100 scale."""
    if value is None:
        return None
    if task.startswith("squad") or abs(value) > 1.0:
        return float(value)
    return 100.0 * float(value)


def is_subset(record: dict) -> bool:
    """Evaluated on part of the eval split. The runner's structured flag wins; older or foreign
    records fall back to any subset flag or note."""
    data = record.get("data") or {}
    if isinstance(data.get("subset"), dict) and "eval_subset" in data["subset"]:
        return bool(data["subset"]["eval_subset"])
    flags = [v for k, v in data.items() if "subset" in str(k).lower() and not isinstance(v, dict)]
    flags += [v.get("subset") for v in data.values() if isinstance(v, dict)]
    notes = " ".join(str(n) for n in record.get("metrics_notes") or []).lower()
    return any(f is True for f in flags) or "subset" in notes


def machine_fingerprint(env: dict) -> str:
    """The runner's fingerprint; without one, a hash of the CPU and GPU names (same parts, same machine)."""
    if env.get("fingerprint"):
        return str(env["fingerprint"])
    parts = f"{env.get('cpu_model') or _part(env.get('cpu'), 'model')}|{env.get('gpu_name') or _part(env.get('gpu'), 'name')}"
    return "derived:" + hashlib.sha256(parts.encode()).hexdigest()[:12]


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
    return {
        "seq_len": best.get("seq_len"),
        "latency_mode": best.get("mode"),
        "latency_p50_ms": _number(best.get("p50_ms")),
        "latency_p50_ci_lo_ms": _number(ci[0]) if len(ci) == 2 else None,
        "latency_p50_ci_hi_ms": _number(ci[1]) if len(ci) == 2 else None,
        "throughput_per_s": _number(widest.get("throughput_per_s")),
    }


def _part(section: Any, key: str) -> Optional[str]:
    """environment.cpu / environment.gpu may be a dict, a list of dicts (several GPUs) or absent."""
    if isinstance(section, list) and section:
        section = section[0]
    return section.get(key) if isinstance(section, dict) else None


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
