"""Paired comparison of a compressed model with its baseline on the same eval examples.

Both models answered the same questions, so their scores are compared example by example:
  * accuracy: McNemar's exact test (a two-sided binomial test on the discordant pairs);
  * every official metric (accuracy, F1, Matthews correlation, Pearson/Spearman, SQuAD EM/F1): a
    paired bootstrap of the difference, where each resample draws one set of example indices and
    scores both models on it (`scipy.stats.bootstrap` over the index vector, BCa when feasible);
  * agreement: how often the compressed model predicts what the baseline predicts, and for
    classification how far its probabilities moved (KL divergence, max-probability shift).

Numpy/scipy only: the report imports it to re-derive comparisons from prediction files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from scipy import stats

# BCa needs a jackknife: n statistic evaluations of n-1 examples. Above this many examples that
# costs more than the resampling itself, and with that many examples percentile and BCa agree closely.
BCA_MAX_EXAMPLES = 4000
# Caps one batch of resampled index rows (rows x examples) so large eval sets stay in bounded memory.
MAX_BATCH_ELEMENTS = 2_000_000
CONFIDENCE = 0.95


@dataclass
class ScoredSplit:
    """What one model predicted on one eval split, in the form the paired statistics need."""

    predictions: list  # labels (int), scores (float, STS-B) or {"id", "prediction_text"} (SQuAD)
    references: list
    probabilities: Optional[np.ndarray] = None  # (N, C) softmax of the logits, classification only


# ---- per-metric statistics on a batch of resampled index rows ---------------------------------------


def _rows_mean(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda idx: values[idx].mean(axis=-1)


def _binary_f1(preds: np.ndarray, refs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    # Same definition as harness/metrics/glue binary_f1: F1 of label 1, 0 when undefined.
    true_pos = ((preds == 1) & (refs == 1)).astype(np.float64)
    false_pos = ((preds == 1) & (refs != 1)).astype(np.float64)
    false_neg = ((preds != 1) & (refs == 1)).astype(np.float64)

    def f1(idx):
        tp, fp, fn = true_pos[idx].sum(-1), false_pos[idx].sum(-1), false_neg[idx].sum(-1)
        denominator = 2 * tp + fp + fn
        return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)

    return f1


def _matthews(preds: np.ndarray, refs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    # Multiclass MCC from per-row confusion counts, as harness/metrics/glue matthews_correlation.
    classes = np.union1d(preds, refs)
    k = len(classes)
    codes = np.searchsorted(classes, refs) * k + np.searchsorted(classes, preds)

    def mcc(idx):
        confusion = (codes[idx][..., None] == np.arange(k * k)).sum(axis=-2).reshape(*idx.shape[:-1], k, k).astype(np.float64)
        n = confusion.sum(axis=(-2, -1))
        correct = np.trace(confusion, axis1=-2, axis2=-1)
        pred_totals, ref_totals = confusion.sum(axis=-2), confusion.sum(axis=-1)
        covariance = correct * n - (pred_totals * ref_totals).sum(-1)
        denominator = np.sqrt((n * n - (pred_totals**2).sum(-1)) * (n * n - (ref_totals**2).sum(-1)))
        return np.divide(covariance, denominator, out=np.zeros_like(n), where=denominator > 0)

    return mcc


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    return np.divide((x * y).sum(-1), denominator, out=np.full(denominator.shape, np.nan), where=denominator > 0)


def _pearson(preds: np.ndarray, refs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda idx: _pearson_rows(preds[idx], refs[idx])


def _spearman(preds: np.ndarray, refs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    # Average ranks for ties within each resample, as scipy.stats.spearmanr.
    return lambda idx: _pearson_rows(stats.rankdata(preds[idx], axis=-1), stats.rankdata(refs[idx], axis=-1))


def metric_statistics(metric: str, config: str, split: ScoredSplit) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Official metric name -> f(index rows) giving the metric on each row, on the record's scale."""
    if metric == "squad_v1":
        from harness.metrics.squad_v1.squad_v1 import _pair_scores

        answer = {p["id"]: p["prediction_text"] for p in split.predictions}
        pairs = [_pair_scores(answer[r["id"]], tuple(r["answers"]["text"])) if r["id"] in answer and r["answers"]["text"]
                 else (0.0, 0.0) for r in split.references]
        exact, f1 = (100.0 * np.array(column, dtype=np.float64) for column in zip(*pairs)) if pairs else (np.zeros(0),) * 2
        return {"exact_match": _rows_mean(exact), "f1": _rows_mean(f1)}
    if config == "stsb":
        preds, refs = np.asarray(split.predictions, np.float64), np.asarray(split.references, np.float64)
        return {"pearson": _pearson(preds, refs), "spearmanr": _spearman(preds, refs)}
    preds, refs = np.asarray(split.predictions, np.int64), np.asarray(split.references, np.int64)
    if config == "cola":
        return {"matthews_correlation": _matthews(preds, refs)}
    found = {"accuracy": _rows_mean((preds == refs).astype(np.float64))}
    if config in ("mrpc", "qqp"):
        found["f1"] = _binary_f1(preds, refs)
    return found


# ---- tests ----------------------------------------------------------------------------------------


def mcnemar_exact(baseline_correct, method_correct) -> dict:
    """McNemar's exact test: under H0 the discordant pairs split 50/50, so the count of
    'baseline wrong, method right' among them is Binomial(b + c, 0.5). Two-sided; p = 1 with no discordance."""
    base, method = np.asarray(baseline_correct, bool), np.asarray(method_correct, bool)
    only_baseline = int(np.sum(base & ~method))
    only_method = int(np.sum(~base & method))
    discordant = only_baseline + only_method
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(only_method, discordant, 0.5).pvalue)
    return {"p_value": p_value, "discordant": [only_baseline, only_method]}


def paired_bootstrap(baseline: Callable, method: Callable, n: int, n_resamples: int, seed: int,
                     confidence: float = CONFIDENCE) -> dict:
    """CI and two-sided p-value of method - baseline, both scored on the same resampled examples.

    The p-value is the share of centred bootstrap differences at least as far from 0 as the observed one
    ((1 + count) / (1 + B)): identical predictions give p = 1.
    """
    index = np.arange(n)
    observed = float(method(index) - baseline(index))

    def difference(idx, axis=-1):
        return method(idx) - baseline(idx)

    batch = max(1, MAX_BATCH_ELEMENTS // max(n, 1))
    ci_method = "BCa" if n <= BCA_MAX_EXAMPLES else "percentile"
    result = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate distributions warn; the nan check below handles them
        if ci_method == "BCa":
            result = stats.bootstrap((index,), difference, n_resamples=n_resamples, batch=batch, vectorized=True,
                                     method="BCa", confidence_level=confidence, rng=np.random.default_rng(seed))
            if not np.all(np.isfinite([result.confidence_interval.low, result.confidence_interval.high])):
                result = None
        if result is None:
            ci_method = "percentile"
            result = stats.bootstrap((index,), difference, n_resamples=n_resamples, batch=batch, vectorized=True,
                                     method="percentile", confidence_level=confidence, rng=np.random.default_rng(seed))
    draws = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    low, high = result.confidence_interval.low, result.confidence_interval.high
    if np.allclose(draws, observed, rtol=0, atol=1e-12):  # every resample gives the same difference
        low = high = observed
    extreme = int(np.sum(np.abs(draws - observed) >= abs(observed) - 1e-12))
    return {"difference": observed, "ci95": [float(low), float(high)], "ci_method": ci_method,
            "p_value": float(min(1.0, (1 + extreme) / (1 + draws.size)))}


def _same(metric: str, base: ScoredSplit, method: ScoredSplit) -> Optional[np.ndarray]:
    if metric == "squad_v1":
        from harness.metrics.squad_v1.squad_v1 import normalize_answer

        answer = {p["id"]: normalize_answer(p["prediction_text"]) for p in method.predictions}
        return np.array([answer.get(p["id"]) == normalize_answer(p["prediction_text"]) for p in base.predictions])
    if isinstance(base.predictions[0], float):  # regression scores: no notion of the same prediction
        return None
    return np.asarray(base.predictions) == np.asarray(method.predictions)


def agreement(metric: str, base: ScoredSplit, method: ScoredSplit) -> dict:
    """Fidelity to the baseline: share of identical predictions; for classification the mean
    KL(baseline || method) in nats and the mean absolute change of the top probability; for
    regression the mean absolute score change."""
    same = _same(metric, base, method) if base.predictions else None
    found = {"same_prediction": float(same.mean()) if same is not None and same.size else None,
             "mean_kl_baseline_to_method": None, "mean_max_probability_shift": None, "mean_abs_score_change": None}
    if base.probabilities is not None and method.probabilities is not None:
        p = np.clip(np.asarray(base.probabilities, np.float64), 1e-12, 1.0)
        q = np.clip(np.asarray(method.probabilities, np.float64), 1e-12, 1.0)
        found["mean_kl_baseline_to_method"] = float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))
        found["mean_max_probability_shift"] = float(np.mean(np.abs(q.max(-1) - p.max(-1))))
    elif same is None and base.predictions:
        found["mean_abs_score_change"] = float(np.mean(np.abs(np.subtract(method.predictions, base.predictions))))
    return found


def compare_split(metric: str, config: str, base: ScoredSplit, method: ScoredSplit, n_resamples: int, seed: int) -> dict:
    """{"metrics": {name: paired result}, "agreement": {...}} for one eval split."""
    n = len(method.references)
    if len(base.references) != n:
        raise ValueError(f"baseline scored {len(base.references)} examples, the method {n}: not paired")
    base_stats, method_stats = metric_statistics(metric, config, base), metric_statistics(metric, config, method)
    results = {}
    for name in method_stats:
        index = np.arange(n)
        entry = {"baseline": float(base_stats[name](index)), "method": float(method_stats[name](index))}
        if n_resamples > 0 and n > 1:
            entry.update(paired_bootstrap(base_stats[name], method_stats[name], n, n_resamples, seed))
            entry["test"] = "paired_bootstrap"
        else:
            entry.update(difference=entry["method"] - entry["baseline"], ci95=None, ci_method=None, p_value=None, test=None)
        if name == "accuracy":
            refs = np.asarray(method.references)
            entry.update(mcnemar_exact(np.asarray(base.predictions) == refs, np.asarray(method.predictions) == refs))
            entry["test"] = "mcnemar_exact"  # the CI stays the paired bootstrap's
        results[name] = entry
    return {"metrics": results, "agreement": agreement(metric, base, method)}


def holm_adjust(p_values) -> np.ndarray:
    """Holm's step-down adjustment (controls the family-wise error rate); NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    if valid.size == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted
