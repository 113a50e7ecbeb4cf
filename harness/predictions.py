"""Per-example predictions: scored once per cell, saved beside the record, re-scored by the report.

File: `<record stem>.predictions.jsonl.gz`, one JSON object per eval example:
    {"split": "validation", "id": "56be4db0...", "prediction": 1, "references": 0, "probabilities": [0.2, 0.8]}
`id` is the SQuAD question id, or the example's index in the GLUE eval split (the row the GLUE
submission format numbers). `prediction` is the label id, the STS-B score or the SQuAD answer text;
`references` is the gold label/score or the SQuAD answer list; `probabilities` (classification only)
is the softmax of the logits. The record links the file by a path relative to itself and its sha256.

`export_official` writes what third-party scorers read: SQuAD v1.1 `{question_id: answer_text}` for
evaluate-v1.1.py, and GLUE submission TSVs (`index<TAB>prediction`, label names as GLUE expects).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from harness.comparison import ScoredSplit
from harness.record import write_bytes_atomic

FORMAT = "compbench-predictions/1 (gzip JSON lines)"
SUFFIX = ".predictions.jsonl.gz"


@dataclass
class SplitResult:
    """One eval split scored by one model: the record's metrics plus what produced them."""

    name: str
    metrics: dict
    scored: ScoredSplit
    ids: list


def metric_suffix(split_name: str, split_count: int) -> str:
    """How a split's metrics are keyed in the record: bare for one split, `_matched` etc. for MNLI's two."""
    return "" if split_count == 1 else f"_{split_name.replace('validation_', '')}"


def score_split(model, split, tokenizer, device: str) -> SplitResult:
    """Run the model over one eval split and score it with the official metric (via evaluate)."""
    from harness.metrics import compute_metric
    from harness.tasks.evaluation import predict

    outputs = predict(model, split, tokenizer, device=device)
    predictions, references = split.postprocess(outputs)
    metrics = compute_metric(split.task.metric, split.task.metric_config, predictions, references)
    probabilities = None
    if split.task.metric == "glue" and not split.task.is_regression:
        logits = np.asarray(outputs["logits"], dtype=np.float64).reshape(len(split.examples), -1)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    ids = [str(example["id"]) if "id" in example else index for index, example in enumerate(split.examples)]
    return SplitResult(split.name, metrics, ScoredSplit(predictions, references, probabilities), ids)


# ---- the file -------------------------------------------------------------------------------------


def predictions_path(record_file: str | os.PathLike) -> Path:
    record_file = Path(record_file)
    return record_file.with_name(record_file.stem + SUFFIX)


def pending_path(predictions_file: str | os.PathLike) -> Path:
    """Where a cell writes its predictions until its record lands: dot-named, so no reader opens it."""
    predictions_file = Path(predictions_file)
    return predictions_file.with_name(f".{predictions_file.name}.pending")


def land_with_record(record_file: str | os.PathLike, record: dict) -> None:
    """Called just before the record is written: its pending predictions take their real name when the
    record links them, and are deleted when it does not (a failed or interrupted cell). A record and
    its predictions so land together; a kill between the two renames leaves at worst a prediction
    file that the cell's re-run replaces, never a record whose predictions are missing."""
    final = predictions_path(record_file)
    pending = pending_path(final)
    link = record.get("predictions") if record else None
    if isinstance(link, dict) and link.get("path") and pending.exists():
        os.replace(pending, final)
    else:
        pending.unlink(missing_ok=True)


def _lines(results: list[SplitResult]):
    for result in results:
        probabilities = result.scored.probabilities
        for i, example_id in enumerate(result.ids):
            line = {"split": result.name, "id": example_id, "prediction": result.scored.predictions[i],
                    "references": result.scored.references[i]}
            if isinstance(line["prediction"], dict):  # SQuAD: the answer text; the id is already there
                line["prediction"] = line["prediction"]["prediction_text"]
                line["references"] = line["references"]["answers"]
            if probabilities is not None:
                line["probabilities"] = [float(p) for p in probabilities[i]]
            yield json.dumps(line, default=_plain) + "\n"


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def write_predictions(path: str | os.PathLike, results: list[SplitResult], relative_to: Optional[Path] = None, pending: bool = False) -> dict:
    """Write atomically (temp file, fsync, rename); return the record's link to the file.
    `pending`: write under pending_path(path) until the record lands (land_with_record); the link
    names `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    # mtime=0 and no file name in the header: the same predictions give the same bytes (and sha256).
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as handle:
        for line in _lines(results):
            handle.write(line.encode("utf-8"))
    data = buffer.getvalue()
    write_bytes_atomic(pending_path(path) if pending else path, data)
    base = relative_to if relative_to is not None else path.parent
    return {"path": os.path.relpath(path, base), "sha256": hashlib.sha256(data).hexdigest(), "format": FORMAT,
            "examples": {r.name: len(r.ids) for r in results}}


def read_predictions(path: str | os.PathLike, sha256: Optional[str] = None) -> dict[str, dict]:
    """split -> {"ids", "scored": ScoredSplit}, in file order. Raises ValueError on a checksum mismatch."""
    data = Path(path).read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path}: sha256 differs from the record's (file changed after the run)")
    splits: dict[str, dict] = {}
    for raw in gzip.decompress(data).decode("utf-8").splitlines():
        line = json.loads(raw)
        split = splits.setdefault(line["split"], {"ids": [], "predictions": [], "references": [], "probabilities": []})
        split["ids"].append(line["id"])
        if isinstance(line["references"], dict):  # SQuAD: rebuild the metric's input shape
            split["predictions"].append({"id": line["id"], "prediction_text": line["prediction"]})
            split["references"].append({"id": line["id"], "answers": line["references"]})
        else:
            split["predictions"].append(line["prediction"])
            split["references"].append(line["references"])
        if "probabilities" in line:
            split["probabilities"].append(line["probabilities"])
    return {name: {"ids": s["ids"], "scored": ScoredSplit(s["predictions"], s["references"],
                                                         np.asarray(s["probabilities"]) if s["probabilities"] else None)}
            for name, s in splits.items()}


def linked_predictions(record: dict, record_file: str | os.PathLike) -> Optional[dict[str, dict]]:
    """The record's prediction file, read and checksum-verified; None when the record links none."""
    link = record.get("predictions")
    if not isinstance(link, dict) or not link.get("path"):
        return None
    return read_predictions(Path(record_file).parent / link["path"], link.get("sha256"))


# ---- re-scoring and official formats ----------------------------------------------------------------


def rescore(record: dict, record_file: str | os.PathLike) -> list[str]:
    """Recompute every metric from the prediction file with the official metric modules; return one
    line per difference from the record (empty when every number matches exactly)."""
    from harness.metrics import compute_metric

    task = record["config"]["task"]
    splits = linked_predictions(record, record_file)
    if splits is None:
        return [f"{record_file}: links no prediction file"]
    metrics = record.get("metrics") or {}
    problems = []
    for name, split in splits.items():
        scored = split["scored"]
        found = compute_metric(task["metric"], task["metric_config"], scored.predictions, scored.references)
        suffix = metric_suffix(name, len(splits))
        for key, value in found.items():
            recorded = metrics.get(key + suffix)
            if recorded is None or float(recorded) != float(value):
                problems.append(f"{record_file}: {key + suffix} is {recorded} in the record, {value} from the predictions")
    return problems


# GLUE's submission files name the label for the entailment tasks and use 0/1 for the others.
GLUE_NAMED_LABELS = ("mnli", "mnli_matched", "mnli_mismatched", "rte", "qnli", "ax")


def _glue_label(task: dict, label):
    if isinstance(label, float):
        return f"{label:.3f}"  # STS-B scores
    names = task.get("label_names") or []
    named = task.get("metric_config") in GLUE_NAMED_LABELS and 0 <= label < len(names)
    return names[label] if named else label


def export_official(record: dict, record_file: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write the official per-split formats for one record; returns the files written."""
    task = record["config"]["task"]
    splits = linked_predictions(record, record_file)
    if splits is None:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(record_file).stem
    written = []
    for name, split in splits.items():
        scored = split["scored"]
        if task["metric"] == "squad_v1":
            path = out_dir / f"{stem}.{name}.json"
            path.write_text(json.dumps({p["id"]: p["prediction_text"] for p in scored.predictions}), encoding="utf-8")
        else:
            path = out_dir / f"{stem}.{name}.tsv"
            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                writer.writerow(["index", "prediction"])
                writer.writerows([i, _glue_label(task, p)] for i, p in zip(split["ids"], scored.predictions))
        written.append(path)
    return written
