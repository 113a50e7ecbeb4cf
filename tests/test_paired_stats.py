"""Paired statistics against the baseline and P(frontier), on constructed cases with known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.comparison import (ScoredSplit, agreement, compare_split, holm_adjust, mcnemar_exact, metric_statistics,
                                paired_bootstrap)
from harness.metrics.glue.glue import glue_metrics
from harness.metrics.squad_v1.squad_v1 import squad_metrics
from harness.report.frontier_uncertainty import frontier_probability, point_probabilities
from harness.report.pareto import AXES


def _labels(n=300, seed=0, accuracy=0.85):
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, 2, n)
    return np.where(rng.random(n) < accuracy, refs, 1 - refs), refs


def test_identical_predictions_give_p_one_and_a_zero_interval():
    preds, refs = _labels()
    split = ScoredSplit(preds.tolist(), refs.tolist())
    result = compare_split("glue", "mrpc", split, split, n_resamples=300, seed=0)
    for name in ("accuracy", "f1"):
        entry = result["metrics"][name]
        assert entry["difference"] == 0.0 and entry["ci95"] == [0.0, 0.0] and entry["p_value"] == 1.0
    assert result["metrics"]["accuracy"]["discordant"] == [0, 0]
    assert result["agreement"]["same_prediction"] == 1.0


def test_one_flipped_prediction():
    preds, refs = _labels(n=200)
    flipped = preds.copy()
    wrong_after = np.flatnonzero(preds == refs)[0]
    flipped[wrong_after] = 1 - flipped[wrong_after]
    result = compare_split("glue", "sst2", ScoredSplit(preds.tolist(), refs.tolist()),
                           ScoredSplit(flipped.tolist(), refs.tolist()), n_resamples=300, seed=0)
    entry = result["metrics"]["accuracy"]
    assert entry["difference"] == pytest.approx(-1 / 200)
    assert entry["discordant"] == [1, 0]
    assert entry["p_value"] == 1.0  # one discordant pair: Binomial(1, 0.5) cannot reject
    assert result["agreement"]["same_prediction"] == pytest.approx(199 / 200)


def test_mcnemar_matches_scipy_binomtest_on_a_known_table():
    # 10 examples only the baseline gets right, 2 only the method gets right, 50 both, 8 neither.
    base = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 8, bool)
    method = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 8, bool)
    result = mcnemar_exact(base, method)
    assert result["discordant"] == [10, 2]
    assert result["p_value"] == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue, rel=1e-12)
    assert result["p_value"] == pytest.approx(0.0385742, abs=1e-6)  # 2 * P(X <= 2), X ~ Binomial(12, 0.5)


def test_a_real_drop_is_detected_and_its_interval_covers_it():
    preds, refs = _labels(n=1000, accuracy=0.9)
    rng = np.random.default_rng(1)
    worse = np.where(rng.random(1000) < 0.1, 1 - preds, preds)  # flips 10 % of the predictions
    entry = compare_split("glue", "qqp", ScoredSplit(preds.tolist(), refs.tolist()),
                          ScoredSplit(worse.tolist(), refs.tolist()), n_resamples=500, seed=0)["metrics"]
    for name in ("accuracy", "f1"):
        low, high = entry[name]["ci95"]
        assert low < entry[name]["difference"] < high < 0
        assert entry[name]["p_value"] < 0.01


@pytest.mark.parametrize("config", ["mrpc", "cola", "stsb", "mnli"])
def test_vectorised_statistics_equal_the_official_metric_on_any_resample(config):
    rng = np.random.default_rng(2)
    n = 120
    if config == "stsb":
        refs = rng.uniform(0, 5, n)
        preds = refs + rng.normal(0, 1, n)
        preds[:10] = preds[0]  # ties, ranked as scipy.stats.spearmanr does
    else:
        classes = 3 if config == "mnli" else 2
        refs = rng.integers(0, classes, n)
        preds = np.where(rng.random(n) < 0.7, refs, rng.integers(0, classes, n))
    statistics = metric_statistics("glue", config, ScoredSplit(preds.tolist(), refs.tolist()))
    rows = rng.integers(0, n, size=(3, n))
    for row in rows:
        official = glue_metrics(config, preds[row], refs[row])
        for name, statistic in statistics.items():
            assert statistic(row[None, :])[0] == pytest.approx(official[name], abs=1e-12)


def test_squad_statistics_equal_the_official_metric():
    references = [{"id": str(i), "answers": {"text": [t, t + " x"], "answer_start": [0, 0]}}
                  for i, t in enumerate(["the cat", "a dog", "Paris", "1990", "blue whale"])]
    predictions = [{"id": str(i), "prediction_text": t} for i, t in enumerate(["cat", "dog barks", "paris.", "1991", ""])]
    statistics = metric_statistics("squad_v1", "plain_text", ScoredSplit(predictions, references))
    official = squad_metrics(predictions, references)
    index = np.arange(5)[None, :]
    assert statistics["exact_match"](index)[0] == pytest.approx(official["exact_match"])
    assert statistics["f1"](index)[0] == pytest.approx(official["f1"])


def test_agreement_measures_probability_shift():
    base = ScoredSplit([0, 1], [0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]))
    same = agreement("glue", base, base)
    assert same["same_prediction"] == 1.0 and same["mean_kl_baseline_to_method"] == pytest.approx(0.0, abs=1e-9)
    moved = agreement("glue", base, ScoredSplit([0, 0], [0, 1], np.array([[0.6, 0.4], [0.7, 0.3]])))
    assert moved["same_prediction"] == 0.5
    kl = 0.9 * np.log(0.9 / 0.6) + 0.1 * np.log(0.1 / 0.4) + 0.2 * np.log(0.2 / 0.7) + 0.8 * np.log(0.8 / 0.3)
    assert moved["mean_kl_baseline_to_method"] == pytest.approx(kl / 2)
    assert moved["mean_max_probability_shift"] == pytest.approx((0.3 + 0.1) / 2)


def test_holm_adjustment():
    assert holm_adjust([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm_adjust([0.2, np.nan, 0.001])
    assert adjusted[0] == pytest.approx(0.2) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.002)


def test_bootstrap_p_value_is_one_for_a_constant_difference_of_zero():
    values = np.linspace(0, 1, 50)
    result = paired_bootstrap(lambda idx: values[idx].mean(-1), lambda idx: values[idx].mean(-1), 50, 200, 0)
    assert result == {"difference": 0.0, "ci95": [0.0, 0.0], "ci_method": "percentile", "p_value": 1.0}


def _points(values, cis, costs):
    return pd.DataFrame({"label": list("ABCD"[: len(values)]), "model": "m", "method": list("ABCD"[: len(values)]),
                         "cost": costs, "cost_lo": np.nan, "cost_hi": np.nan, "value": values,
                         "value_lo": [v - c for v, c in zip(values, cis)], "value_hi": [v + c for v, c in zip(values, cis)]})


def test_p_frontier_far_apart_and_within_noise():
    size_axis = next(a for a in AXES if a.key == "size_w_emb")
    empty = pd.DataFrame(columns=["model", "method", "score", "size_pct_with_emb", "path", "primary_metric"])
    # B costs more and scores far less than A: A is always on the frontier, B never.
    far = point_probabilities(_points([90.0, 70.0], [0.5, 0.5], [40.0, 60.0]), empty, size_axis, rounds=500)
    assert far.iloc[0] == 1.0 and far.iloc[1] == 0.0
    # B costs more and scores 0.1 pt more, with CIs of ±1 pt: each is on the frontier in some rounds only.
    close = point_probabilities(_points([90.0, 90.1], [1.0, 1.0], [40.0, 60.0]), empty, size_axis, rounds=500)
    assert close.iloc[0] == 1.0  # the cheapest point is never dominated
    assert 0.2 < close.iloc[1] < 0.8


def test_frontier_probability_counts_rounds():
    costs = np.array([[1.0, 2.0], [1.0, 2.0]])
    values = np.array([[1.0, 0.5], [1.0, 2.0]])  # round 1: B dominated; round 2: both on the frontier
    assert frontier_probability(costs, values).tolist() == [1.0, 0.5]
