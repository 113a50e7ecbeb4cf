"""One cell in one straight line: config -> model/task -> fine-tune -> method -> measure -> record."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import gc
import os
import sys
import time
import traceback
from contextlib import contextmanager
from typing import Optional

from harness.config import DEFAULT_RUNTIME, CellConfig, task_identity
from harness.errors import UnsupportedError
from harness.finetune import CACHE_VERSION, stable_hash
from harness.record import SCHEMA_VERSION, Record, record_path


MEASUREMENT_PASSES = ("latency", "memory", "energy", "flops")


def cell_names(cell: CellConfig) -> dict:
    return {"method": cell.method.name, "model": cell.model.name, "task": cell.task.name, "hardware": cell.hardware.name,
            "runtime": cell.runtime.name}


def config_dict(cell: CellConfig) -> dict:
    return dataclasses.asdict(cell)


# Settings of how a cell runs, not of what it measures: never hashed.
RUN_FLAGS = ("paths", "force", "isolate", "run_name", "memory_limit_gb")


def needs_train_data(cell: CellConfig, method=None) -> bool:
    """Decided from config alone (`needs_for` is a pure function of the method's config), so the
    pre-flight check and the run fingerprint the same files. `method` is accepted for callers that
    hold the built object; it is not needed."""
    from methods.base import method_class

    return finetunes_baseline(cell) or method_class(cell.method._target_).needs_for(cell.method) != "nothing"


def finetunes_baseline(cell: CellConfig) -> bool:
    """The cell fine-tunes its baseline (or loads that fine-tune from the cache)."""
    return cell.model.init == "pretrained" and cell.model.finetuned_task != cell.task.name


def times_against_reference(cell: CellConfig, method) -> bool:
    """Interleaved speedup: every timed cell except the PyTorch baseline itself (it is the reference;
    the baseline on another runtime is compared with it like any method)."""
    from methods.base import Baseline

    is_reference = isinstance(method, Baseline) and cell.runtime.name == DEFAULT_RUNTIME
    return cell.measure.latency and cell.measure.interleaved_speedup and not is_reference


# Measurement settings added after records existed, with the default that reproduces those records'
# behaviour (issue 30: fresh-process re-runs and pooling): hashed only when changed.
MEASURE_ADDED_AT_DEFAULT = {"fresh_process_retries": 2, "latency_processes": 1}


def config_hash(cell: CellConfig, fingerprints: dict) -> str:
    """What makes a measurement different. Paths and run flags do not; data contents and
    CACHE_VERSION do. The project's git commit is recorded but deliberately not hashed, so a
    documentation commit does not invalidate a sweep (bump CACHE_VERSION for code that changes numbers).
    The default runtime (pytorch) is left out, so cells recorded before the runtime axis existed keep
    their hashes; any other runtime, with all its settings, is hashed."""
    semantic = {k: v for k, v in config_dict(cell).items() if k not in RUN_FLAGS}
    semantic["task"] = task_identity(cell.task)  # fine-tune precision only when not fp32
    resolved_steps = getattr(cell.method, "step_configs", None)
    if resolved_steps:  # a pipeline's steps as they run (YAML defaults + params), not as named: a changed
        semantic["method"]["resolved_steps"] = [dataclasses.asdict(step) for step in resolved_steps]  # default re-measures
    if cell.runtime.name == DEFAULT_RUNTIME:
        semantic.pop("runtime")
    for key, default in MEASURE_ADDED_AT_DEFAULT.items():  # added later: at its default, old records keep their hash
        if semantic["measure"].get(key) == default:
            semantic["measure"].pop(key)
    return stable_hash({"config": semantic, "data": fingerprints, "cache_version": CACHE_VERSION})


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


def base_record(cell: CellConfig, cell_hash: str, fingerprints: dict, status: str, reason=None) -> Record:
    from harness.measure import collect_environment

    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "reason": reason,
        "cell": cell_names(cell),
        "config": config_dict(cell),
        "config_hash": cell_hash,
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
        "artifact": None,
        "timings": {},
        "data": {"fingerprints": fingerprints},
        "environment": collect_environment(cell.hardware),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runtime": {"name": cell.runtime.name},  # RuntimeSection; the conversion's details once converted
    }


def check_baseline(cell: CellConfig, baseline_scored: Optional[dict], training: Optional[dict]) -> None:
    """A fine-tuned baseline no better than a constant guess is marked in the record and on the console."""
    from harness.chance import baseline_check, warning

    if not baseline_scored or not training or not training.get("finetuned"):
        return
    first = next(iter(baseline_scored["splits"].values()))
    training["baseline_check"] = baseline_check(cell.task, first.scored)
    message = warning(training["baseline_check"])
    if message:
        print(f"[{cell.method.name}] {message}", file=sys.stderr, flush=True)


def described(method, cell: CellConfig) -> dict:
    """The record's method section: what the method says of itself, and the label the report shows
    (decided now, from the preset the user chose, so that later code never relabels it)."""
    from harness.labels import record_label

    description = method.describe()
    return {**description, "label": record_label(description["config"], cell.runtime.name)}


def run_cell(cell: CellConfig, cell_hash: str, fingerprints: dict) -> Record:
    """Measure one cell and return its record (not yet written)."""
    import torch  # noqa: F401 - imported before quieting: its logging setup resets levels

    from harness import measure, quiet_third_party_logs, stages
    from harness.runtimes import unsupported_reason as runtime_unsupported_reason
    from harness.baseline_reference import baseline_predictions, compare_with_baseline
    from harness.predictions import predictions_path, write_predictions
    from harness.progress import quiet_library_bars
    from methods.base import build_method

    quiet_third_party_logs()
    quiet_library_bars()
    method = build_method(cell.method)
    reason = method.unsupported_reason(cell.hardware) or runtime_unsupported_reason(method, cell.runtime, cell.hardware)
    record = base_record(cell, cell_hash, fingerprints, "unsupported" if reason else "ok", reason)
    record["method"] = described(method, cell)
    if reason:
        return record
    timer = StageTimer()
    record["environment"]["threads"] = measure.configure_threads(cell.hardware)
    stages.seed_everything(cell.seed)
    with timer("load_model"):
        loaded = stages.load(cell)
    with timer("load_data"):
        task_data = stages.load_data(cell, loaded.tokenizer, need_train=needs_train_data(cell), fingerprints=fingerprints)
    record["data"].update(counts=task_data.counts, notes=task_data.notes, subset=stages.subset_flags(cell))
    with timer("finetune"):
        model, record["training"] = stages.finetune_baseline(cell, loaded, task_data)
    baseline_size = measure.measure_size(model)
    with timer("baseline_accuracy"):  # before method.apply: methods may change the model in place
        baseline_scored = baseline_predictions(cell, model, loaded, task_data, record["training"])
    check_baseline(cell, baseline_scored, record["training"])
    # An untouched copy of the fine-tuned baseline, timed beside the method in the latency pass
    # (methods may modify `model` in place).
    reference = copy.deepcopy(model) if times_against_reference(cell, method) else None
    context = stages.method_context(cell, loaded.tokenizer, task_data, model)
    with timer("method"):
        try:
            # On onnxruntime/openvino an int8 method hands the fp32 model to the runtime's own quantizer.
            model, quantization = method.apply_for_runtime(model, context, cell.runtime.name)
        except UnsupportedError as err:
            record.update(status="unsupported", reason=str(err), method=described(method, cell))
            return record
    record["method"] = described(method, cell)
    if cell.runtime.name == DEFAULT_RUNTIME:
        with timer("save_artifact"):
            record["size"] = stages.measure_artifact(method, model, baseline_size)
        model = stages.to_device(model, cell.hardware)
        record["runtime"] = stages.pytorch_runtime_section(cell)
    else:  # the converted artifact replaces the PyTorch model for every measurement below
        with timer("convert"):
            model, record["size"], record["runtime"] = stages.convert_for_runtime(
                cell, record["environment"]["threads"], model, quantization, loaded.tokenizer, task_data, baseline_size)
    if reference is not None:
        reference = stages.to_device(reference, cell.hardware)
    # Accuracy and latency are measured on this same object (MLPerf TEST01's idea).
    record["artifact"] = {"digest_before_accuracy": stages.model_digest(model)}
    with timer("accuracy"):
        record["metrics"], record["metrics_notes"], scored = stages.accuracy(cell, model, loaded, task_data)
    if scored:
        path = record_path(cell.paths.results_dir, cell_names(cell), cell_hash)
        record["predictions"] = write_predictions(predictions_path(path), list(scored.values()), pending=True)  # lands with the record
        with timer("paired_comparison"):
            record["comparison"] = compare_with_baseline(cell, baseline_scored, scored)
    record["metrics_notes"] += loaded.notes
    # Each pass runs on its own so trackers never perturb each other's numbers.
    for measurement in MEASUREMENT_PASSES:
        if getattr(cell.measure, measurement):
            # The method says whether its compute depends on the input: its speedup is then a ratio of means.
            extra = {"reference": reference, "input_dependent_compute": method.input_dependent_compute} if measurement == "latency" else {}
            with timer(measurement):
                record[measurement] = getattr(stages, measurement)(cell, model, loaded.tokenizer, task_data, **extra)
        if measurement == "latency":
            reference = None  # free it before the memory pass reads peak RSS
            gc.collect()
    record["artifact"]["digest_after_measurement"] = stages.model_digest(model)
    record["timings"] = timer.seconds
    return record


def failed_record(cell: CellConfig, cell_hash: str, fingerprints: dict, error: str) -> Record:
    return base_record(cell, cell_hash, fingerprints, "failed", error)


def execute(cell: CellConfig, cell_hash: str, fingerprints: dict) -> Record:
    """run_cell, turning any exception into a failed record (the sweep goes on)."""
    try:
        return run_cell(cell, cell_hash, fingerprints)
    except Exception as err:  # noqa: BLE001 - every failure must become a record
        last = traceback.extract_tb(err.__traceback__)[-1]
        message = f"{err.__class__.__name__}: {err} (at {os.path.basename(last.filename)}:{last.lineno})"
        return failed_record(cell, cell_hash, fingerprints, message)
