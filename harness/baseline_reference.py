"""The baseline's own predictions on the eval set, taken before a method touches the model.

Methods may modify the model in place, so the runner scores the fine-tuned baseline first, on the
cell's hardware and dtype (a copy is moved, the original stays on the CPU for the method). Every cell
of a sweep shares the baseline, so its predictions are cached under a key of the weights, the task
config, the eval data, the device/dtype and CACHE_VERSION: one evaluation per sweep, not per cell;
cells running side by side wait for the one that scores it (finetune.once_per_key).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

from harness.config import task_identity
from harness.finetune import CACHE_VERSION, once_per_key, stable_hash
from harness.predictions import SplitResult, metric_suffix, read_predictions, score_split, write_predictions


def reference_key(cell, training: dict, fingerprints: dict) -> str:
    from harness.models import describe_source

    weights = training.get("key") if training and training.get("finetuned") else describe_source(cell.model)
    return stable_hash({"weights": weights, "task": task_identity(cell.task), "data": fingerprints,
                        "device": [cell.hardware.device, cell.hardware.dtype], "cache_version": CACHE_VERSION})


def baseline_predictions(cell, model, loaded, task_data, training: dict) -> Optional[dict]:
    """{"key", "cache_hit", "splits": {name: SplitResult}}; None when accuracy is not measured."""
    if loaded.random_init or not cell.measure.accuracy:
        return None
    key = reference_key(cell, training, task_data.fingerprints)
    root = Path(cell.paths.cache_dir).expanduser() / "baseline_predictions"
    path = root / f"{key}.jsonl.gz"  # written atomically: complete once it exists
    # cells running at once: one scores, the others wait for it and read
    return once_per_key(root, key, path, lambda: _cached_predictions(path, key, cell, model, loaded, task_data),
                        doing="scoring this baseline")


def _cached_predictions(path: Path, key: str, cell, model, loaded, task_data) -> dict:
    from harness.stages import to_device

    if path.is_file():
        stored = read_predictions(path)
        splits = {name: SplitResult(name, {}, split["scored"], split["ids"]) for name, split in stored.items()}
        return {"key": key, "cache_hit": True, "splits": splits}
    on_cpu_fp32 = cell.hardware.device == "cpu" and cell.hardware.dtype == "float32"
    reference = model if on_cpu_fp32 else to_device(copy.deepcopy(model), cell.hardware)
    splits = {name: score_split(reference, split, loaded.tokenizer, cell.hardware.device) for name, split in task_data.eval.items()}
    write_predictions(path, list(splits.values()))
    return {"key": key, "cache_hit": False, "splits": splits}


def compare_with_baseline(cell, reference: Optional[dict], results: dict) -> Optional[dict]:
    """The record's `comparison` section: paired statistics of each split's metrics against the baseline."""
    from harness.comparison import compare_split

    if reference is None or not results:
        return None
    section = {"baseline_key": reference["key"], "baseline_cache_hit": reference["cache_hit"],
               "resamples": cell.measure.bootstrap, "confidence": 0.95, "metrics": {}, "agreement": {}}
    for name, result in results.items():
        base = reference["splits"].get(name)
        if base is None:
            continue
        found = compare_split(cell.task.metric, cell.task.metric_config, base.scored, result.scored,
                              cell.measure.bootstrap, cell.seed)
        suffix = metric_suffix(name, len(results))
        section["metrics"].update({key + suffix: value for key, value in found["metrics"].items()})
        section["agreement"][name] = {"examples": len(result.ids), **found["agreement"]}
    return section
