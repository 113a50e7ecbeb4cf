"""The results schema (one JSON object per cell) and its atomic writer.

Readers (the aggregator) glob `<results_dir>/records/*.json` and check `schema_version`.
Optional sections are present as null when not measured; a value is never invented.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, Optional, TypedDict

SCHEMA_VERSION = "1.0"
STATUSES = ("ok", "failed", "unsupported")


class LatencyStats(TypedDict, total=False):
    batch_size: int
    seq_len: Optional[int]  # None for real-length batches
    mode: str  # eager | compile | cudagraphs
    timer: str  # perf_counter | cuda_event
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    stdev_ms: float
    throughput_per_s: float  # samples / s
    p50_ci95_ms: list  # bootstrap [low, high]
    values_ms: list  # raw samples


class SizeSection(TypedDict, total=False):
    params_total: int
    params_without_embeddings: int
    nonzero_params_total: int
    bytes_dense: int  # in-memory bytes of all tensors as stored (quantized weights count as int8)
    bytes_without_embeddings: int
    bytes_sparse: Optional[int]  # bitmask + non-zero values, when the method makes weights sparse
    disk_bytes: Optional[int]  # the saved artifact on disk
    pct_of_baseline_with_emb: Optional[float]  # the survey's "w/ emb" column, by bytes
    pct_of_baseline_without_emb: Optional[float]
    baseline_bytes_dense: int
    baseline_bytes_without_embeddings: int


class Record(TypedDict):
    schema_version: str
    status: Literal["ok", "failed", "unsupported"]
    reason: Optional[str]  # why failed / unsupported / accuracy null
    cell: dict  # {method, model, task, hardware}: short names for tables
    config: dict  # the resolved config
    config_hash: str
    metrics: Optional[dict]  # task metrics (+ "ci95": {metric: [lo, hi]}), None when not measured
    metrics_notes: list  # e.g. "evaluated on a 200-sample subset", "random init: accuracy not meaningful"
    size: Optional[SizeSection]
    latency: Optional[dict]  # {"fixed": [LatencyStats...], "real_length": [...], "notes": [...]}
    memory: Optional[dict]
    energy: Optional[dict]
    flops: Optional[dict]
    method: Optional[dict]  # what the method did (Method.describe())
    training: Optional[dict]  # fine-tune / method training cost: wall time, cache hit, energy
    timings: dict  # stage -> seconds
    data: dict  # file -> sha256, sample counts, subset flags
    environment: dict
    created_at: str
    predictions: Optional["PredictionsLink"]  # per-example predictions file; None when accuracy was not measured
    comparison: Optional["ComparisonSection"]  # paired statistics against the baseline; None without a baseline eval


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write to a temp file in the same directory, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=1, sort_keys=False, default=_jsonable)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _jsonable(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def record_path(results_dir: str | os.PathLike, cell: dict, config_hash: str) -> Path:
    name = "__".join([cell["task"], cell["model"], cell["method"], cell["hardware"], config_hash[:12]])
    return Path(results_dir) / "records" / f"{name}.json"


def load_record(path: str | os.PathLike) -> dict:
    """Read and minimally validate a record; raises ValueError naming the file otherwise."""
    try:
        with open(path) as handle:
            obj = json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON record ({err.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a record (top level is not an object)")
    missing = [k for k in ("schema_version", "config", "config_hash", "metrics", "size", "latency", "environment", "status") if k not in obj]
    if missing:
        raise ValueError(f"{path}: not a record (missing {', '.join(missing)})")
    if str(obj["schema_version"]).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(f"{path}: schema_version {obj['schema_version']} is not supported (expected {SCHEMA_VERSION})")
    if obj["status"] not in STATUSES:
        raise ValueError(f"{path}: unknown status {obj['status']!r}")
    return obj


# ---- per-example predictions and the paired comparison with the baseline (harness/predictions.py,
# harness/comparison.py). Older records lack both keys; readers treat absence as None.


class PredictionsLink(TypedDict):
    path: str  # the gzip JSON-lines file, relative to the record's directory
    sha256: str  # of the file's bytes; the report refuses a file that no longer matches
    format: str  # "compbench-predictions/1 (gzip JSON lines)"
    examples: dict  # eval split -> number of examples in the file


class PairedMetric(TypedDict):
    baseline: float  # the baseline's metric on the same examples, on the record's scale
    method: float  # this cell's metric (equals metrics[<key>])
    difference: float  # method - baseline
    ci95: Optional[list]  # paired-bootstrap 95 % CI [low, high] of the difference; None when bootstrap=0
    ci_method: Optional[str]  # "BCa", or "percentile" (large eval sets, or BCa undefined)
    p_value: Optional[float]  # two-sided: McNemar exact for accuracy, paired bootstrap otherwise
    test: Optional[str]  # "mcnemar_exact" | "paired_bootstrap"
    discordant: list  # accuracy only: [baseline right & method wrong, baseline wrong & method right]


class Agreement(TypedDict):
    examples: int  # eval examples compared
    same_prediction: Optional[float]  # share with the baseline's label / normalised answer; None for regression
    mean_kl_baseline_to_method: Optional[float]  # classification: mean KL(p_baseline || p_method), nats
    mean_max_probability_shift: Optional[float]  # classification: mean |max p_method - max p_baseline|
    mean_abs_score_change: Optional[float]  # regression (STS-B): mean |score_method - score_baseline|


class ComparisonSection(TypedDict):
    baseline_key: str  # cache key of the baseline's predictions (weights, task, eval data, device, dtype)
    baseline_cache_hit: bool  # the baseline's predictions came from an earlier cell of the sweep
    resamples: int  # paired bootstrap resamples (measure.bootstrap)
    confidence: float  # 0.95
    metrics: dict  # metric key as in `metrics` (e.g. "accuracy_matched") -> PairedMetric
    agreement: dict  # eval split -> Agreement
