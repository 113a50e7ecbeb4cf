"""One cell in one straight line: config -> model/task -> fine-tune -> method -> measure -> record."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from harness.config import CellConfig
from harness.errors import UnsupportedError
from harness.finetune import CACHE_VERSION, stable_hash
from harness.record import SCHEMA_VERSION, load_record, record_path, write_json_atomic


MEASUREMENT_PASSES = ("latency", "memory", "energy", "flops")


def cell_names(cell: CellConfig) -> dict:
    return {"method": cell.method.name, "model": cell.model.name, "task": cell.task.name, "hardware": cell.hardware.name}


def config_dict(cell: CellConfig) -> dict:
    return dataclasses.asdict(cell)


def needs_train_data(cell: CellConfig) -> bool:
    """Decided from config alone, so the pre-flight check and the run fingerprint the same files."""
    from methods.base import build_method

    finetunes = cell.model.init == "pretrained" and cell.model.finetuned_task != cell.task.name
    return finetunes or build_method(cell.method).needs != "nothing" or cell.method.recover_epochs > 0


def config_hash(cell: CellConfig, fingerprints: dict) -> str:
    """What makes a measurement different. Paths and run flags do not; data contents and
    CACHE_VERSION do. The project's git commit is recorded but deliberately not hashed, so a
    documentation commit does not invalidate a sweep (bump CACHE_VERSION for code that changes numbers)."""
    semantic = {k: v for k, v in config_dict(cell).items() if k not in ("paths", "force", "isolate", "run_name")}
    return stable_hash({"config": semantic, "data": fingerprints, "cache_version": CACHE_VERSION})


def existing_success(path: Path) -> bool:
    try:
        return load_record(path)["status"] == "ok"
    except (ValueError, FileNotFoundError):
        return False


class StageTimer:
    def __init__(self):
        self.seconds: dict = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - start, 3)


def base_record(cell: CellConfig, chash: str, fingerprints: dict, status: str, reason=None) -> dict:
    from harness.measure import collect_environment

    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "reason": reason,
        "cell": cell_names(cell),
        "config": config_dict(cell),
        "config_hash": chash,
        "metrics": None,
        "metrics_notes": [],
        "size": None,
        "latency": None,
        "memory": None,
        "energy": None,
        "flops": None,
        "predictions": None,
        "comparison": None,
        "method": None,
        "training": None,
        "timings": {},
        "data": {"fingerprints": fingerprints},
        "environment": collect_environment(cell.hardware),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_cell(cell: CellConfig, chash: str, fingerprints: dict) -> dict:
    """Measure one cell and return its record (not yet written)."""
    import torch  # noqa: F401 - imported before quieting: its logging setup resets levels

    from harness import measure, quiet_third_party_logs, stages as steps
    from harness.baseline_reference import baseline_predictions, compare_with_baseline
    from harness.predictions import predictions_path, write_predictions
    from methods.base import build_method

    quiet_third_party_logs()
    method = build_method(cell.method)
    reason = method.unsupported_reason(cell.hardware)
    record = base_record(cell, chash, fingerprints, "unsupported" if reason else "ok", reason)
    record["method"] = method.describe()
    if reason:
        return record
    timer = StageTimer()
    record["environment"]["threads"] = measure.configure_threads(cell.hardware)
    steps.seed_everything(cell.seed)
    with timer("load_model"):
        loaded = steps.load(cell)
    with timer("load_data"):
        task_data = steps.load_data(cell, loaded.tokenizer, need_train=needs_train_data(cell))
    record["data"].update(counts=task_data.counts, notes=task_data.notes, subset=steps.is_subset(cell, task_data))
    with timer("finetune"):
        model, record["training"] = steps.finetune_baseline(cell, loaded, task_data)
    baseline_size = measure.measure_size(model)
    with timer("baseline_accuracy"):  # before method.apply: methods may change the model in place
        reference = baseline_predictions(cell, model, loaded, task_data, record["training"])
    context = steps.method_context(cell, loaded.tokenizer, task_data, model)
    with timer("method"):
        try:
            model = method.apply(model, context)
        except UnsupportedError as err:
            record.update(status="unsupported", reason=str(err), method=method.describe())
            return record
    record["method"] = method.describe()
    with timer("save_artifact"):
        record["size"] = steps.measure_artifact(method, model, baseline_size)
    model = steps.to_device(model, cell.hardware)
    # Accuracy and latency are measured on this same object (MLPerf TEST01's idea).
    record["artifact"] = {"digest_before_accuracy": steps.model_digest(model)}
    with timer("accuracy"):
        record["metrics"], record["metrics_notes"], scored = steps.accuracy(cell, model, loaded, task_data)
    if scored:
        path = record_path(cell.paths.results_dir, cell_names(cell), chash)
        record["predictions"] = write_predictions(predictions_path(path), list(scored.values()))
        with timer("paired_comparison"):
            record["comparison"] = compare_with_baseline(cell, reference, scored)
    record["metrics_notes"] += loaded.notes
    # Each pass runs on its own so trackers never perturb each other's numbers.
    for measurement in MEASUREMENT_PASSES:
        if getattr(cell.measure, measurement):
            with timer(measurement):
                record[measurement] = getattr(steps, measurement)(cell, model, loaded.tokenizer, task_data)
    record["artifact"]["digest_after_measurement"] = steps.model_digest(model)
    record["timings"] = timer.seconds
    return record


def failed_record(cell: CellConfig, chash: str, fingerprints: dict, error: str) -> dict:
    return base_record(cell, chash, fingerprints, "failed", error)


def execute(cell: CellConfig, chash: str, fingerprints: dict) -> dict:
    """run_cell, turning any exception into a failed record (the sweep goes on)."""
    try:
        return run_cell(cell, chash, fingerprints)
    except Exception as err:  # noqa: BLE001 - every failure must become a record
        last = traceback.extract_tb(err.__traceback__)[-1]
        message = f"{err.__class__.__name__}: {err} (at {os.path.basename(last.filename)}:{last.lineno})"
        return failed_record(cell, chash, fingerprints, message)
