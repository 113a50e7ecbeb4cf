"""Summary statistics and percentile-bootstrap confidence intervals.

Kept numpy-only (no torch) so the aggregator can import it cheaply.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

# Caps the size of one resampled block (resamples x values) so a long latency run
# (100k+ samples) bootstraps in bounded memory.
_MAX_BLOCK_ELEMENTS = 4_000_000


def summarize_ms(values_ms: Sequence[float], batch_size: int) -> dict:
    """Latency summary in milliseconds; percentiles use numpy's linear interpolation."""
    values = np.asarray(values_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("summarize_ms needs at least one timing")
    mean_ms = float(values.mean())
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
    return {
        "count": int(values.size),
        "mean_ms": mean_ms,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        # Sample stdev (ddof=1); undefined for one value, so null rather than an invented 0.
        "stdev_ms": float(values.std(ddof=1)) if values.size > 1 else None,
        "throughput_per_s": batch_size / (mean_ms / 1e3) if mean_ms > 0 else None,
        "values_ms": [float(v) for v in values],
    }


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[..., Any] = np.median,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic` over `values`.

    `statistic` is called with `axis=1` on a block of resamples when it accepts it
    (np.median, np.mean, ...), otherwise once per resample.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    rng = np.random.default_rng(seed)
    n = data.size
    block = max(1, min(n_resamples, _MAX_BLOCK_ELEMENTS // n))
    estimates = np.empty(n_resamples, dtype=np.float64)
    done = 0
    while done < n_resamples:
        rows = min(block, n_resamples - done)
        sample = data[rng.integers(0, n, size=(rows, n))]
        estimates[done : done + rows] = _rowwise(statistic, sample)
        done += rows
    return _percentile_interval(estimates, confidence)


def _rowwise(statistic: Callable[..., Any], sample: np.ndarray) -> np.ndarray:
    try:
        out = np.asarray(statistic(sample, axis=1), dtype=np.float64)
        if out.shape == (sample.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([statistic(row) for row in sample], dtype=np.float64)


def _percentile_interval(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.nanpercentile(estimates, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_metric_ci(
    predictions: Sequence[Any],
    references: Sequence[Any],
    metric_fn: Callable[[Any, Any], dict],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, list]:
    """Percentile-bootstrap CI for every numeric entry of `metric_fn(preds, refs)`.

    Example indices are resampled with replacement; predictions and references are
    indexed together. Numeric/string inputs are passed to metric_fn as numpy arrays;
    ragged or object inputs (e.g. SQuAD dicts) as plain lists, which is what
    `evaluate`-style metrics expect.
    """
    preds = _as_indexable(predictions)
    refs = _as_indexable(references)
    n = len(preds)
    if n != len(refs):
        raise ValueError(f"predictions ({n}) and references ({len(refs)}) differ in length")
    if n == 0:
        raise ValueError("bootstrap_metric_ci needs at least one example")
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, size=(n_resamples, n))
    take_preds, take_refs = _taker(preds), _taker(refs)
    per_metric: dict[str, list[float]] = {}
    for row in indices:
        result = metric_fn(take_preds(row), take_refs(row))
        for name, value in result.items():
            if _is_number(value):
                per_metric.setdefault(name, []).append(float(value))
    return {
        name: list(_percentile_interval(np.asarray(vals), confidence)) for name, vals in per_metric.items()
    }


def _as_indexable(values: Sequence[Any]) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    try:
        arr = np.asarray(values)
        if arr.dtype != object:
            return arr
    except ValueError:  # ragged nested lists
        pass
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _taker(arr: np.ndarray) -> Callable[[np.ndarray], Any]:
    if arr.dtype == object:
        return lambda idx: arr[idx].tolist()
    return lambda idx: arr[idx]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return math.isfinite(float(value))
    return False


def mean_std(values: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample stdev (ddof=1) over repeated seeds; stdev is None for one value."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if data.size == 0:
        return None, None
    std = float(data.std(ddof=1)) if data.size > 1 else None
    return float(data.mean()), std
