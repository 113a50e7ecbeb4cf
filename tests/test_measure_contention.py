"""Contention verdicts, re-measurement, interleaved speedups and compile-free timed loops."""

import multiprocessing
import time
from types import SimpleNamespace

import pytest
import torch

from harness.measure import contention
from harness.measure.contention import ContentionMonitor, until_clean, worst
from harness.measure.interleaved import measure_interleaved, ratio_ci
from timing_fakes import fake_monitor
from harness.measure.latency import compiled_frames, measure_latency

SETTINGS = SimpleNamespace(contention_retries=2, max_other_cores=0.25, max_steal_fraction=0.05)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def cpu_hog():
    """A busy-loop process beside the test, as a foreign job on a shared machine would be."""
    process = multiprocessing.get_context("spawn").Process(target=_spin, args=(120.0,), daemon=True)
    process.start()
    time.sleep(0.3)  # let it start spinning
    yield process
    process.terminate()
    process.join()


def test_a_busy_process_beside_the_pass_is_seen_and_named(cpu_hog):
    with ContentionMonitor(threads=1) as monitor:
        time.sleep(1.0)  # this process idles: everything busy is someone else
    report = monitor.report
    assert report["verdict"] == "contended"
    assert report["other_cores"] > 0.5
    named = [p["pid"] for p in report["top_others"]]
    # On an otherwise idle machine (CI) the hog is the heaviest; under other load it is among them.
    assert cpu_hog.pid in named or len(named) == 5
    assert "other processes used" in report["reasons"][0]


def test_verdict_thresholds_on_constructed_counters(monkeypatch):
    readings = iter([(100.0, 1.0, 400.0), (101.0, 1.0, 402.0)])  # busy, steal, total CPU seconds
    monkeypatch.setattr(contention, "_proc_stat", lambda: next(readings))
    monitor = ContentionMonitor(threads=1, max_other_cores=0.25)
    monitor._stat = (100.0, 1.0, 400.0)
    readings = iter([(101.0, 1.0, 402.0)])
    monitor._running_max, monitor._processes = 1, {}
    monkeypatch.setattr(contention, "_cpu_by_process", lambda: {})
    # 1 s of wall, this process used 0.9 s of the 1.0 busy second: others 0.1 cores -> clean.
    assert monitor._judge(1.0, 0.9, (101.0, 1.0, 402.0))["verdict"] == "clean"
    # Others used 0.6 cores -> contended, with the figure in the reason.
    report = monitor._judge(1.0, 0.4, (101.0, 1.0, 402.0))
    assert report["verdict"] == "contended" and report["other_cores"] == pytest.approx(0.6)
    # Steal of 10 % of machine time -> contended even with no other process.
    report = monitor._judge(1.0, 1.0, (101.0, 1.2, 402.0))
    assert report["verdict"] == "contended" and "stole" in report["reasons"][0]


def test_until_clean_remeasures_and_keeps_the_clean_pass(monkeypatch):
    monkeypatch.setattr(contention, "ContentionMonitor", fake_monitor(["contended", "contended", "clean"]))
    monkeypatch.setattr(contention, "RETRY_PAUSE_S", 0.0)
    calls = []
    result, summary = until_clean(lambda: calls.append(1) or len(calls), threads=1, settings=SETTINGS)
    assert result == 3 and summary["attempts"] == 3 and summary["verdict"] == "clean"


def test_until_clean_gives_up_and_says_contended(monkeypatch):
    monkeypatch.setattr(contention, "ContentionMonitor", fake_monitor(["contended"] * 2))
    monkeypatch.setattr(contention, "RETRY_PAUSE_S", 0.0)
    _, summary = until_clean(lambda: None, threads=1, settings=SimpleNamespace(**{**vars(SETTINGS), "contention_retries": 1}))
    assert summary["attempts"] == 2 and summary["verdict"] == "contended"
    assert worst(["clean", "contended"]) == "contended" and worst(["clean", "clean"]) == "clean"


HW = SimpleNamespace(device="cpu", compile="eager", warmup=2, min_iterations=20, min_duration_s=0.2, max_duration_s=5.0)


def test_interleaved_speedup_of_a_twice_as_fast_callable(monkeypatch):
    """On a virtual clock (a loaded machine must not decide the test): the method costs 10 ms,
    the reference 20 ms, with one slow outlier block that hits both alike."""
    from harness.measure import interleaved

    clock = {"now": 0.0, "calls": 0}

    def advance(ms):
        def run(batch):
            clock["calls"] += 1
            clock["now"] += ms / 1e3 * (3.0 if 40 <= clock["calls"] < 48 else 1.0)  # drift burst
        return run

    monkeypatch.setattr(interleaved, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    batches = [{"x": torch.zeros(1)}]
    entry, speedup = measure_interleaved(advance(10), advance(20), batches, HW, 1, None, label="virtual", n_bootstrap=200)
    assert speedup["value"] == pytest.approx(2.0)
    low, high = speedup["ci95"]
    assert low <= 2.0 <= high
    assert entry["interleaved"] and entry["count"] >= 20 and speedup["reference_count"] == entry["count"]
    assert entry["p50_ms"] == pytest.approx(10.0) and speedup["reference_p50_ms"] == pytest.approx(20.0)
    assert speedup["block_pairs"] >= 2


def test_ratio_ci_of_identical_blocks_is_a_point():
    pairs = [([2.0, 2.0], [4.0, 4.0])] * 5
    assert ratio_ci(pairs, n_resamples=50) == [2.0, 2.0]


def test_a_compiled_model_is_timed_on_graphs_already_built():
    """The accuracy pass fed other shapes; the timed loop must still compile nothing."""
    torch._dynamo.reset()
    model = torch.nn.Linear(8, 4)
    compiled = torch.compile(model, backend="eager", dynamic=False)

    def run(batch):
        return compiled(batch["x"])

    run({"x": torch.zeros(3, 8)})  # "accuracy pass": a shape the timed loop never uses
    batches = [{"x": torch.zeros(n, 8)} for n in (1, 2, 5, 7)]
    hw = SimpleNamespace(**{**vars(HW), "warmup": 1, "min_iterations": 8, "min_duration_s": 0.0})
    entry = measure_latency(run, batches, hw, 1, None, label="compiled", progress=False, n_bootstrap=0)
    assert entry["compiled_during_timing"] == 0
    assert entry["warmup"] >= 1 + 2 * len(batches)
    # Control: without the warm-up sweep a new shape does compile inside a loop (the test can fail).
    before = compiled_frames()
    run({"x": torch.zeros(11, 8)})
    assert compiled_frames() > before


def test_a_cell_timed_beside_a_hog_is_marked_or_remeasured(compose, tiny_bert_dir, cpu_hog, monkeypatch):
    """Done-when of issue #11: never an unmarked number; every timed entry has a verdict and an
    interleaved speedup with its CI."""
    from harness.runner import config_hash, execute, needs_train_data
    from harness.tasks import check_task_data

    monkeypatch.setattr(contention, "RETRY_PAUSE_S", 0.0)
    cell = compose("model=local", f"model.path={tiny_bert_dir}", "task=sst2", "method=magnitude",
                   "task.finetune.max_train_samples=32", "task.finetune.epochs=1", "task.max_eval_samples=16",
                   "hardware.batch_sizes=[1]", "hardware.min_iterations=4", "hardware.min_duration_s=0",
                   "hardware.warmup=1", "measure.bootstrap=50", "measure.energy=false", "measure.memory=false",
                   "measure.flops=false", "measure.contention_retries=1", "isolate=false")
    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    record = execute(cell, config_hash(cell, fingerprints), fingerprints)
    assert record["status"] == "ok", record["reason"]
    entries = record["latency"]["fixed"] + record["latency"]["real_length"]
    assert entries
    for entry in entries:
        verdict = entry["contention"]["verdict"]
        assert verdict == "contended" or (verdict == "clean" and entry["contention"]["attempts"] > 1)
        assert entry["speedup"]["value"] > 0 and len(entry["speedup"]["ci95"]) == 2
    if any(e["contention"]["verdict"] == "contended" for e in entries):
        assert record["latency"]["contention"]["verdict"] == "contended"
        assert any(note.startswith("contended") for note in record["latency"]["notes"])


def test_leases_of_sweeps_with_different_cache_dirs_see_each_other(compose, tmp_path):
    """The 881 ms case of issue #11: a timed cell must not start beside a cell of another sweep,
    even one that uses another cache directory."""
    from harness.plan import plan_cell
    from harness.sweep.leases import MachineLease

    first = plan_cell(compose("measure.latency=false", "measure.energy=false", f"paths.cache_dir={tmp_path / 'cache_a'}"))
    timed = plan_cell(compose(f"paths.cache_dir={tmp_path / 'cache_b'}"))
    lease = MachineLease.acquire(first)
    assert not isinstance(lease, str)
    with lease:
        refusal = MachineLease.acquire(timed)
        assert isinstance(refusal, str) and "running on this machine" in refusal
    after = MachineLease.acquire(timed)
    assert not isinstance(after, str)
    after.path.unlink()
