"""Summary statistics and percentile-bootstrap confidence intervals (scipy.stats.bootstrap).

No torch, so the aggregator can import it cheaply.
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
    """Percentile-bootstrap CI of `statistic` over `values`, by `scipy.stats.bootstrap`.

    `statistic` is applied to whole blocks of resamples when it accepts `axis` (np.median, np.mean, ...),
    otherwise once per resample. Percentile, not BCa: BCa's jackknife costs n evaluations of n-1 values,
    which for a long latency run (100k+ timings) is far more than the resampling itself.
    """
    from scipy import stats

    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    if data.size == 1 or np.all(data == data[0]):  # scipy needs two distinct values; the CI is the point
        point = float(_rowwise(statistic, data[None, :])[0])
        return point, point
    result = stats.bootstrap((data,), _vectorised(statistic), n_resamples=n_resamples, batch=_batch(data.size),
                             vectorized=True, method="percentile", confidence_level=confidence,
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _batch(n: int) -> int:
    return max(1, _MAX_BLOCK_ELEMENTS // max(n, 1))


def _vectorised(statistic: Callable[..., Any]) -> Callable[..., np.ndarray]:
    # scipy hands over (batch, n) blocks with the resampled axis last.
    return lambda sample, axis=-1: _rowwise(statistic, sample.reshape(-1, sample.shape[-1])).reshape(sample.shape[:-1])


def _rowwise(statistic: Callable[..., Any], sample: np.ndarray) -> np.ndarray:
    try:
        out = np.asarray(statistic(sample, axis=1), dtype=np.float64)
        if out.shape == (sample.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([statistic(row) for row in sample], dtype=np.float64)


def bootstrap_metric_ci(
    predictions: Sequence[Any],
    references: Sequence[Any],
    metric_fn: Callable[[Any, Any], dict],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, list]:
    """Percentile-bootstrap CI for every numeric entry of `metric_fn(preds, refs)`, by `scipy.stats.bootstrap`.

    The example index vector is what scipy resamples, so predictions and references stay paired and
    every metric of one resample comes from the same examples. Numeric/string inputs are passed to
    metric_fn as numpy arrays; ragged or object inputs (e.g. SQuAD dicts) as plain lists, which is what
    `evaluate`-style metrics expect. Percentile rather than BCa: BCa's jackknife would call metric_fn
    once per example on top of the resamples.
    """
    from scipy import stats

    preds = _as_indexable(predictions)
    refs = _as_indexable(references)
    n = len(preds)
    if n != len(refs):
        raise ValueError(f"predictions ({n}) and references ({len(refs)}) differ in length")
    if n == 0:
        raise ValueError("bootstrap_metric_ci needs at least one example")
    take_preds, take_refs = _taker(preds), _taker(refs)
    names = [k for k, v in metric_fn(take_preds(np.arange(n)), take_refs(np.arange(n))).items() if _is_number(v)]
    if not names:
        return {}

    def metrics_of(index_rows, axis=-1):
        rows = np.atleast_2d(index_rows)
        found = np.full((len(names), rows.shape[0]), np.nan)
        for j, row in enumerate(rows):
            result = metric_fn(take_preds(row), take_refs(row))
            found[:, j] = [float(result[k]) if _is_number(result.get(k)) else np.nan for k in names]
        return found

    if n == 1:
        point = metrics_of(np.zeros((1, 1), dtype=int))[:, 0]
        return {name: [float(v), float(v)] for name, v in zip(names, point)}
    result = stats.bootstrap((np.arange(n),), metrics_of, n_resamples=n_resamples, batch=_batch(n), vectorized=True,
                             method="percentile", confidence_level=confidence, rng=np.random.default_rng(seed))
    draws = np.asarray(result.bootstrap_distribution).reshape(len(names), -1)
    # nan-aware percentiles: a metric undefined on some resample (e.g. Pearson of a constant) skips it.
    tail = (1.0 - confidence) / 2.0 * 100.0
    return {name: [float(v) for v in np.nanpercentile(draws[i], [tail, 100.0 - tail])] for i, name in enumerate(names)}


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


# What an interleaved speedup is a ratio of (harness.measure.interleaved): p50 for a method whose cost
# does not depend on its input, mean (cost per example over the sample) for one whose cost does.
SPEEDUP_STATISTICS = {"p50": np.median, "mean": np.mean}


def bootstrap_ratios(pairs: list, n_resamples: int, rng, statistic: str = "p50") -> np.ndarray:
    """`n_resamples` bootstrap estimates of statistic(reference)/statistic(method), block pairs resampled."""
    summary = SPEEDUP_STATISTICS[statistic]
    method = [np.asarray(m) for m, _ in pairs]
    reference = [np.asarray(r) for _, r in pairs]
    estimates = np.empty(n_resamples)
    for k in range(n_resamples):
        pick = rng.integers(0, len(pairs), size=len(pairs))
        estimates[k] = summary(np.concatenate([reference[i] for i in pick])) / summary(np.concatenate([method[i] for i in pick]))
    return estimates


def ratio_ci(pairs: list[tuple[list[float], list[float]]], n_resamples: int, seed: int = 0, statistic: str = "p50") -> list:
    """Percentile-bootstrap 95% CI of statistic(reference)/statistic(method) over block pairs
    (`statistic`: a key of SPEEDUP_STATISTICS)."""
    low, high = np.percentile(bootstrap_ratios(pairs, n_resamples, np.random.default_rng(seed), statistic), [2.5, 97.5])
    return [float(low), float(high)]


def block_pairs(entry: dict) -> list:
    """(method calls, reference calls) per block pair of a recorded interleaved entry, from its raw values."""
    speedup = entry["speedup"]
    block = int(speedup["block_calls"])
    method, reference = entry["values_ms"], speedup["reference_values_ms"]
    return [(method[i:i + block], reference[i:i + block]) for i in range(0, min(len(method), len(reference)), block)]
