"""stats.py and latency.py: summaries, bootstrap CIs, stop rules, timers."""

import math
import os
import time

import numpy as np
import pytest
import torch

from harness.config import HardwareConfig
from harness.errors import UnsupportedError
from harness.measure.latency import cold_start_ms, configure_threads, measure_latency, prepare_model
from harness.measure.stats import bootstrap_ci, bootstrap_metric_ci, mean_std, summarize_ms

def needs_cuda(test):
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
    return pytest.mark.gpu(skip(test))


def hw(**overrides) -> HardwareConfig:
    settings = dict(warmup=1, min_iterations=5, min_duration_s=0.0, max_duration_s=5.0)
    settings.update(overrides)
    return HardwareConfig(**settings)


# --- stats ---------------------------------------------------------------------------------


def test_summarize_ms_matches_hand_computation():
    s = summarize_ms([1.0, 2.0, 3.0, 4.0, 10.0], batch_size=4)
    assert s["count"] == 5
    assert s["mean_ms"] == pytest.approx(4.0)
    assert s["p50_ms"] == pytest.approx(3.0)
    assert s["p90_ms"] == pytest.approx(7.6)  # linear interpolation: 4 + 0.6 * (10 - 4)
    assert s["p99_ms"] == pytest.approx(9.76)
    assert s["stdev_ms"] == pytest.approx(math.sqrt(50 / 4))  # sample stdev
    assert s["throughput_per_s"] == pytest.approx(1000.0)  # 4 samples / 4 ms
    assert s["values_ms"] == [1.0, 2.0, 3.0, 4.0, 10.0]


def test_summarize_ms_single_value_has_no_stdev_and_empty_raises():
    assert summarize_ms([5.0], 1)["stdev_ms"] is None
    with pytest.raises(ValueError):
        summarize_ms([], 1)


def test_bootstrap_ci_covers_true_median_and_narrows_with_n():
    rng = np.random.default_rng(123)
    small = rng.normal(100.0, 10.0, size=100)
    large = rng.normal(100.0, 10.0, size=4000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= 100.0 <= hi_s
    assert lo_l <= 100.0 <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3  # width ~ 1/sqrt(n): 40x samples, ~6x narrower
    assert bootstrap_ci(small) == (lo_s, hi_s)  # seeded: reproducible


def test_bootstrap_ci_accepts_statistics_without_axis():
    data = np.arange(50, dtype=float)
    lo, hi = bootstrap_ci(data, statistic=lambda x: float(np.max(x)), n_resamples=200)
    assert lo <= hi <= 49.0


def test_bootstrap_metric_ci_accuracy_is_fast_and_sensible():
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 2, size=872)
    preds = np.where(rng.random(872) < 0.9, refs, 1 - refs)

    def metric_fn(p, r):
        return {"accuracy": float((p == r).mean()), "label": "ignored (not numeric)"}

    start = time.perf_counter()
    ci = bootstrap_metric_ci(preds, refs, metric_fn, n_resamples=1000)
    assert time.perf_counter() - start < 5.0
    point = float((preds == refs).mean())
    assert set(ci) == {"accuracy"}
    lo, hi = ci["accuracy"]
    assert lo < point < hi
    assert 0.02 < hi - lo < 0.06  # ~ 2 * 1.96 * sqrt(0.9 * 0.1 / 872) = 0.04


def test_bootstrap_metric_ci_passes_lists_for_object_predictions():
    preds = [{"id": str(i), "text": "a" if i % 4 else "b"} for i in range(40)]
    refs = [{"id": str(i), "text": "a"} for i in range(40)]
    seen_types = set()

    def exact_match(p, r):
        seen_types.add(type(p))
        return {"exact_match": 100.0 * sum(x["text"] == y["text"] for x, y in zip(p, r)) / len(p)}

    ci = bootstrap_metric_ci(preds, refs, exact_match, n_resamples=100)
    assert seen_types == {list}
    assert ci["exact_match"][0] <= 75.0 <= ci["exact_match"][1]


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, None)


# --- latency ---------------------------------------------------------------------------------


def test_sleep_latency_p50_and_stop_rule():
    hardware = hw(warmup=2, min_iterations=5, min_duration_s=0.2)
    r = measure_latency(lambda batch: time.sleep(0.01), [{}], hardware, batch_size=1, seq_len=None, label="sleep", progress=False)
    assert r["p50_ms"] == pytest.approx(10.0, abs=3.0)
    assert r["count"] >= 5 and r["duration_s"] >= 0.2
    assert r["timer"] == "perf_counter" and r["mode"] == "eager" and r["label"] == "sleep"
    assert r["p50_ci95_ms"][0] <= r["p50_ms"] <= r["p50_ci95_ms"][1]
    assert len(r["values_ms"]) == r["count"]
    assert r["stopped_by"] == "min_iterations_and_duration"


def test_min_iterations_is_exact_when_duration_is_already_met():
    calls = []
    hardware = hw(warmup=3, min_iterations=7, min_duration_s=0.0)
    r = measure_latency(lambda b: calls.append(b["i"]), [{"i": 0}, {"i": 1}], hardware, 2, 8, "count", progress=False)
    assert r["count"] == 7
    assert calls == [0, 1, 0] + [0, 1, 0, 1, 0, 1, 0]  # warmup untimed, batches cycled


def test_min_duration_keeps_iterating_past_min_iterations():
    r = measure_latency(lambda b: time.sleep(0.01), [{}], hw(min_iterations=1, min_duration_s=0.15), 1, None, "d", progress=False)
    assert r["duration_s"] >= 0.15
    assert r["count"] >= 10


def test_max_duration_stops_regardless():
    hardware = hw(min_iterations=10**9, min_duration_s=0.0, max_duration_s=0.1)
    r = measure_latency(lambda b: time.sleep(0.005), [{}], hardware, 1, None, "max", progress=False)
    assert r["stopped_by"] == "max_duration"
    assert 0.1 <= r["duration_s"] < 0.5


def test_measure_latency_runs_under_inference_mode_and_can_skip_ci():
    modes = []
    r = measure_latency(lambda b: modes.append(torch.is_inference_mode_enabled()), [{}], hw(), 1, None, "x", progress=False, n_bootstrap=0)
    assert all(modes) and r["p50_ci95_ms"] is None


def test_prepare_model_eager_and_cudagraphs_on_cpu():
    model = torch.nn.Linear(4, 2)
    run, note = prepare_model(model, hw())
    assert note == "eager"
    assert run({"input": torch.ones(1, 4)}).shape == (1, 2)
    with pytest.raises(UnsupportedError, match="unsupported on cpu: CUDA graphs need a CUDA device"):
        prepare_model(model, hw(compile="cudagraphs"))
    _, note = prepare_model(model, hw(compile="compile"))  # compiled lazily: not invoked here
    assert "torch.compile" in note


def test_cold_start_times_one_call():
    assert cold_start_ms(lambda b: time.sleep(0.02), {}) == pytest.approx(20.0, abs=10.0)


def test_configure_threads_reports_what_is_in_effect():
    before = torch.get_num_threads()
    try:
        info = configure_threads(hw(num_threads=1, interop_threads=1))
        assert info["intra_op"] == 1
        # inter-op threads are settable once per process: either applied, or a note says why not
        assert info["inter_op"] == 1 or any("interop_threads=1 not applied" in n for n in info["notes"])
        assert info["affinity"] == sorted(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


@needs_cuda
def test_cuda_event_timing():
    x = torch.randn(1024, 1024, device="cuda")
    r = measure_latency(lambda b: b["x"] @ b["x"], [{"x": x}], hw(device="cuda", min_iterations=20), 1, None, "mm", progress=False)
    assert r["timer"] == "cuda_event"
    assert r["count"] >= 20 and all(v > 0 for v in r["values_ms"])


@needs_cuda
def test_cudagraphs_mode_wraps_on_cuda():
    model = torch.nn.Linear(64, 64).cuda()
    run, note = prepare_model(model, hw(device="cuda", compile="cudagraphs"))
    assert "reduce-overhead" in note
