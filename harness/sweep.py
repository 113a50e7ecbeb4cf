"""Per-cell orchestration: resume, process isolation, atomic record, one-line summary."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path

from harness.config import CellConfig
from harness.record import record_path, write_json_atomic
from harness.runner import cell_names, config_hash, execute, existing_success, failed_record, needs_train_data


def run_and_record(cell: CellConfig) -> Path:
    from harness.tasks import check_task_data

    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    chash = config_hash(cell, fingerprints)
    path = record_path(cell.paths.results_dir, cell_names(cell), chash)
    if existing_success(path) and not cell.force:
        print(f"[skip] {_label(cell)}: a successful record exists ({path}); force=true re-runs it", flush=True)
        return path
    record = run_isolated(cell, chash, fingerprints) if cell.isolate else execute(cell, chash, fingerprints)
    write_json_atomic(path, record)
    print(summary_line(record, path), flush=True)
    return path


def _child(cell: CellConfig, chash: str, fingerprints: dict, out_path: str) -> None:
    write_json_atomic(out_path, execute(cell, chash, fingerprints))


def run_isolated(cell: CellConfig, chash: str, fingerprints: dict) -> dict:
    """A fresh spawned process per cell: a crash or OOM-kill becomes a failed record."""
    import json

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="compbench-cell-") as scratch:
        out_path = os.path.join(scratch, "record.json")
        process = context.Process(target=_child, args=(cell, chash, fingerprints, out_path))
        process.start()
        process.join()
        if os.path.exists(out_path):
            with open(out_path) as handle:
                return json.load(handle)
    cause = "killed by signal %d (out of memory?)" % -process.exitcode if process.exitcode and process.exitcode < 0 else f"exit code {process.exitcode}"
    return failed_record(cell, chash, fingerprints, f"cell process died before writing its record: {cause}")


def _label(cell: CellConfig) -> str:
    return " ".join(cell_names(cell).values())


def summary_line(record: dict, path: Path) -> str:
    names = " ".join(record["cell"].values())
    if record["status"] != "ok":
        return f"[{record['status']}] {names}: {record['reason']} -> {path}"
    parts = [f"[ok] {names}"]
    primary = record["config"]["task"]["primary_metric"]
    metrics = record.get("metrics") or {}
    value = metrics.get(primary, metrics.get(f"{primary}_matched"))
    parts.append(f"{primary} {value:.4f}" if isinstance(value, (int, float)) else f"{primary} n/a")
    size = record.get("size") or {}
    if size.get("pct_of_baseline_with_emb") is not None:
        parts.append(f"size {size['pct_of_baseline_with_emb']:.1f}%")
    fixed = (record.get("latency") or {}).get("fixed") or []
    if fixed:
        parts.append(f"p50 bs={fixed[0]['batch_size']} {fixed[0]['p50_ms']:.2f} ms")
    parts.append(f"{sum(record.get('timings', {}).values()):.0f} s")
    return " | ".join(parts) + f" -> {path}"
