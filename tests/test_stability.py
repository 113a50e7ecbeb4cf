"""The stability verdict (issue 30): a slowdown of some blocks only, invisible to the contention
monitor, is caught by the block pairs or the canary, re-measured, run again in a fresh process and
marked in the report."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.measure import contention, interleaved, stability
from harness.measure.contention import until_clean
from harness.measure.interleaved import measure_interleaved
from harness.measure.stability import StabilityLimits, judge
from timing_fakes import fake_monitor

HW = SimpleNamespace(device="cpu", compile="eager", warmup=2, min_iterations=20, min_duration_s=1.0, max_duration_s=10.0)
BATCHES = [{"x": torch.zeros(1)}]


class VirtualClock:
    """A clock the callables advance, so a loaded CI machine cannot decide these tests. `slow`:
    the method's calls inside these block-pair indices cost `factor` times more (the injection)."""

    def __init__(self, slow=(), factor=2.0):
        self.now, self.slow, self.factor = 0.0, set(slow), factor
        self.pair = 0

    def perf_counter(self):
        return self.now

    def model(self, ms, injectable=False):
        def run(batch):
            slowed = injectable and self.pair in self.slow
            self.now += ms / 1e3 * (self.factor if slowed else 1.0)
        return run


class FakeCanary:
    """A canary whose blocks report fixed times; `slow`: the blocks (in timing order) that run slow."""

    def __init__(self, clock: VirtualClock, fp32=0.6, int8=0.25, slow=(), factor=2.0):
        self.clock, self.fp32, self.int8, self.slow, self.factor = clock, fp32, int8, set(slow), factor
        self.blocks = 0

    def time_block(self):
        factor = self.factor if self.blocks in self.slow else 1.0
        self.blocks += 1
        if self.blocks % 2 == 0:
            self.clock.pair += 1  # two blocks (method's and reference's) per pair
        return self.fp32 * factor, self.int8 * factor


def _run(monkeypatch, slow_method_pairs=(), canary_slow_blocks=(), calibration=None, canary_factor=2.0, canary_fp32=0.6):
    clock = VirtualClock(slow=slow_method_pairs)
    monkeypatch.setattr(interleaved, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    canary = FakeCanary(clock, fp32=canary_fp32, slow=canary_slow_blocks, factor=canary_factor)
    entry, speedup = measure_interleaved(clock.model(10, injectable=True), clock.model(15), BATCHES, HW, 1, None,
                                         label="virtual", n_bootstrap=0, canary=canary, calibration=calibration)
    return entry, speedup


def test_an_undisturbed_pass_is_steady(monkeypatch):
    entry, speedup = _run(monkeypatch)
    report = entry["stability"]
    assert report["verdict"] == "steady" and report["reasons"] == []
    assert speedup["value"] == pytest.approx(1.5)
    assert len(report["pair_ratios"]) == speedup["block_pairs"] >= 5
    assert report["canary"]["fp32_ms"] == pytest.approx(0.6) and report["canary"]["calibration_passes"] == 0


def test_a_slowdown_of_the_method_blocks_alone_is_caught(monkeypatch):
    """The issue's case: the method's blocks slow down in part of the pass, the reference's and the
    canary do not, and no other process ran (the contention monitor would say clean)."""
    entry, speedup = _run(monkeypatch, slow_method_pairs=range(2, 4))  # two pairs in the middle of six
    report = entry["stability"]
    assert report["verdict"] == "unstable"
    assert report["pair_ratios"] == pytest.approx([1.5, 1.5, 0.75, 0.75, 1.5, 1.5]) and report["pair_outliers"] == 2
    assert "2 of 6 block pairs gave a speedup more than 10% from the pass's median 1.500" in report["reasons"][0]


def test_a_step_in_the_method_blocks_is_caught(monkeypatch):
    """From the middle of the pass on, the method runs twice as slow: the halves disagree."""
    entry, _ = _run(monkeypatch, slow_method_pairs=range(3, 100))
    report = entry["stability"]
    assert report["verdict"] == "unstable" and report["half_speedups"] == pytest.approx([1.5, 0.75])
    assert any("first half gave 1.500x and its second half 0.750x" in r for r in report["reasons"])


def test_one_odd_pair_is_tolerated(monkeypatch):
    entry, _ = _run(monkeypatch, slow_method_pairs=[4])
    assert entry["stability"]["verdict"] == "steady" and entry["stability"]["pair_outliers"] == 1


def test_a_canary_step_in_time_is_caught(monkeypatch):
    """Something slowed the whole machine for a while: the canary's blocks say so."""
    entry, _ = _run(monkeypatch, canary_slow_blocks=range(4, 10))
    report = entry["stability"]
    assert report["verdict"] == "unstable" and report["canary"]["slow_blocks"] == 6
    assert "the canary ran more than 1.25x its pass median in 6 of" in report["reasons"][0]


def test_a_canary_below_the_machines_calibration_is_caught(monkeypatch):
    """A process whose every block is slow (placement, frequency) agrees with itself; only the
    machine's calibrated canary time shows it."""
    entry, _ = _run(monkeypatch, canary_fp32=0.9, calibration=[[0.6, 0.25]] * 5)
    report = entry["stability"]
    assert report["verdict"] == "unstable"
    assert report["canary"]["calibrated_fp32_ms"] == pytest.approx(0.6)
    assert "fp32 canary took 0.900 ms, 1.50x this machine's calibrated 0.600 ms" in report["reasons"][0]
    # Too few calibrated passes: not judged against them.
    entry, _ = _run(monkeypatch, canary_fp32=0.9, calibration=[[0.6, 0.25]] * 2)
    assert entry["stability"]["verdict"] == "steady"


def test_judge_uses_the_speedups_statistic():
    pairs = [([1.0, 1.0, 9.0], [2.0, 2.0, 2.0])] * 4
    assert judge(pairs, None, [], StabilityLimits(), np.median)["pair_ratios"][0] == pytest.approx(2.0)
    assert judge(pairs, None, [], StabilityLimits(), np.mean)["pair_ratios"][0] == pytest.approx(6 / 11, abs=1e-3)


def test_calibration_remembers_steady_passes(tmp_path):
    path = tmp_path / "canary" / "machine-t2.json"
    assert stability.read_calibration(path) == []
    for k in range(stability.CALIBRATION_KEEP + 3):
        stability.remember(path, {"fp32_ms": 0.6 + k, "int8_ms": 0.25})
    passes = stability.read_calibration(path)
    assert len(passes) == stability.CALIBRATION_KEEP and passes[-1][0] == pytest.approx(0.6 + stability.CALIBRATION_KEEP + 2)
    path.write_text("not json")
    assert stability.read_calibration(path) == []


def test_the_real_canary_times_both_kernels():
    fp32, int8 = stability.Canary().time_block()
    assert fp32 > 0 and int8 > 0


def test_until_clean_remeasures_an_unstable_pass(monkeypatch):
    monkeypatch.setattr(contention, "ContentionMonitor", fake_monitor())
    monkeypatch.setattr(contention, "RETRY_PAUSE_S", 0.0)
    verdicts = iter(["unstable", "steady"])
    settings = SimpleNamespace(contention_retries=2, max_other_cores=0.25, max_steal_fraction=0.05)
    result, summary = until_clean(lambda: {"verdict": next(verdicts), "reasons": ["moved"]}, 1, settings, stability_of=lambda r: r)
    assert summary["verdict"] == "clean" and summary["attempts"] == 2 and summary["unstable_attempts"] == [["moved"]]
    stays = lambda: {"verdict": "unstable", "reasons": ["moved"]}  # noqa: E731
    _, summary = until_clean(stays, 1, settings, stability_of=lambda r: r)
    assert summary["verdict"] == "unstable" and summary["attempts"] == 3


def _record(verdict: str, speedup: float) -> dict:
    entry = {"label": "fixed bs=1 n=128", "p50_ms": 10.0, "speedup": {"value": speedup},
             "stability": {"reasons": ["moved"] if verdict == "unstable" else []}}
    return {"status": "ok", "latency": {"fixed": [entry], "real_length": [], "contention": {"verdict": verdict}}}


@pytest.mark.parametrize("verdicts, runs, kept", [
    (["unstable", "clean"], 2, "clean"),
    (["unstable", "unstable", "unstable", "clean"], 3, "unstable"),  # bounded: 1 + fresh_process_retries
    (["clean"], 1, "clean"),
])
def test_an_unstable_cell_runs_again_in_a_fresh_process(verdicts, runs, kept):
    from harness.sweep.fresh_processes import run_timed

    calls = []

    def run_once(cell):
        calls.append(cell)
        return _record(verdicts[len(calls) - 1], 1.5 + len(calls) / 10)

    cell = SimpleNamespace(measure=SimpleNamespace(fresh_process_retries=2, latency_processes=1))
    record = run_timed(run_once, cell, "cell")
    assert len(calls) == runs and record["latency"]["contention"]["verdict"] == kept
    tries = record["latency"].get("fresh_process_tries")
    if runs == 1:
        assert tries is None
    else:
        assert [t["verdict"] for t in tries] == verdicts[:runs]
        assert tries[0]["speedups"] == {"fixed bs=1 n=128": pytest.approx(1.6)} and tries[0]["reasons"] == ["moved"]


def _interleaved_record(method_ms: float, pairs: int = 6, block: int = 4) -> dict:
    entry = {"label": "fixed bs=1 n=128", "p50_ms": method_ms, "values_ms": [method_ms] * pairs * block,
             "speedup": {"value": 15.0 / method_ms, "block_calls": block, "reference_values_ms": [15.0] * pairs * block},
             "stability": {"reasons": []}}
    return {"status": "ok", "latency": {"fixed": [entry], "real_length": [], "contention": {"verdict": "clean"},
                                        "speedup_statistic": "p50"}}


def _pooled_cell(cache_dir=None, latency_processes: int = 1, bootstrap: int = 200):
    """A cell as run_timed reads it; a dataclass, since the pooled processes' copy is made with dataclasses.replace."""
    @dataclasses.dataclass
    class Measure:
        fresh_process_retries: int = 0
        latency_processes: int = 1
        bootstrap: int = 200
        accuracy: bool = True
        memory: bool = True
        energy: bool = True
        flops: bool = True

    @dataclasses.dataclass
    class Cell:
        measure: Measure
        paths: SimpleNamespace

    return Cell(Measure(latency_processes=latency_processes, bootstrap=bootstrap), SimpleNamespace(cache_dir=cache_dir))


def test_a_speedup_pooled_over_fresh_processes_carries_their_spread():
    """Three processes, each steady inside (every block pair agrees), that disagree with each other:
    the pooled CI spans them, where each one's own CI would be a point."""
    from harness.sweep import fresh_processes

    records = iter([_interleaved_record(10.0), _interleaved_record(12.5), _interleaved_record(10.2)])
    seen = []

    def run_once(cell):
        seen.append(cell)
        return next(records)

    cell = _pooled_cell(latency_processes=3, bootstrap=400)
    record = fresh_processes.run_timed(run_once, cell, "cell")
    pooled = record["latency"]["fixed"][0]["speedup"]["pooled"]
    assert pooled["processes"] == 3 and pooled["value"] == pytest.approx(15.0 / 10.2)
    assert pooled["ci95"][0] == pytest.approx(1.2) and pooled["ci95"][1] == pytest.approx(1.5)
    assert pooled["cv_pct"] > 5
    # the extra processes measure latency only, once each
    assert seen[0] is cell and not seen[1].measure.accuracy and seen[1].measure.latency_processes == 1 and len(seen) == 3
    assert [p["speedups"]["fixed bs=1 n=128"] for p in record["latency"]["processes"]] == pytest.approx([1.5, 1.2, 15 / 10.2])


def test_the_report_marks_an_unstable_speedup():
    from harness.report.flatten import is_disturbed

    assert is_disturbed({"fixed": [{"contention": {"verdict": "unstable"}}]})
    assert not is_disturbed({"fixed": [{"contention": {"verdict": "clean"}}]})


def test_the_cells_line_says_its_timing_stayed_unstable(tmp_path):
    from harness.sweep.summary import summary_line

    record = _record("unstable", 1.5)
    record["latency"]["fixed"][0]["batch_size"] = 1
    record.update(cell={"method": "dynamic_int8", "model": "minilm_l6", "task": "sst2", "hardware": "cpu", "runtime": "pytorch"},
                  config={"task": {"primary_metric": "accuracy"}}, metrics={"accuracy": 0.9}, timings={"latency": 3.0})
    assert "timing unstable (see latency.notes)" in summary_line(record, tmp_path / "r.json")
    record["latency"]["contention"]["verdict"] = "clean"
    assert "timing" not in summary_line(record, tmp_path / "r.json")


def test_a_pass_timed_alone_is_judged_by_its_canary(monkeypatch):
    """The baseline's own cell has no reference beside it: its canary alone judges the pass."""
    from harness.measure import latency as latency_module
    from harness.measure.latency import measure_latency

    hardware = SimpleNamespace(**{**vars(HW), "min_duration_s": 2.0})

    def timed(**canary_options):
        clock = VirtualClock()
        monkeypatch.setattr(latency_module, "time", SimpleNamespace(perf_counter=clock.perf_counter))
        return measure_latency(clock.model(10), BATCHES, hardware, 1, None, label="alone", progress=False, n_bootstrap=0,
                               canary=FakeCanary(clock, **{k: v for k, v in canary_options.items() if k != "calibration"}),
                               calibration=canary_options.get("calibration"))

    steady = timed()["stability"]
    assert steady["verdict"] == "steady" and steady["canary"]["blocks"] >= 9 and steady["pair_ratios"] == []
    assert steady["canary"]["reference_blocks_ms"] is None
    stepped = timed(slow=range(2, 5))["stability"]
    assert stepped["verdict"] == "unstable" and stepped["canary"]["slow_blocks"] == 3
    slow_process = timed(fp32=0.9, calibration=[[0.6, 0.25]] * 5)["stability"]
    assert slow_process["verdict"] == "unstable" and "1.50x this machine's calibrated" in slow_process["reasons"][0]


def test_batches_of_different_lengths_are_judged_by_the_canary_alone():
    """Real-length batches: int8's speedup grows with length, so pairs and halves that time other
    lengths differ by design (the demo's real-length pass read 1.575x then 1.671x, steady)."""
    pairs = [([10.0], [15.0])] * 4 + [([10.0], [17.0])] * 4  # the longer batches come last
    assert judge(pairs, None, [], StabilityLimits(), np.median)["verdict"] == "unstable"
    report = judge(pairs, None, [], StabilityLimits(), np.median, uniform_inputs=False)
    assert report["verdict"] == "steady" and report["half_speedups"] == pytest.approx([1.5, 1.7])


# ---------------------------------------------------------------- across processes: the speedup history
def _machine_record(speedup: float, verdict: str = "clean", commit: str = "abc") -> dict:
    """A cell's record as the sweep's parent sees it: which machine, which code, one interleaved entry."""
    record = _record("clean", speedup)
    record["latency"]["fixed"][0]["contention"] = {"verdict": verdict}
    record["latency"]["contention"]["verdict"] = verdict
    record.update(config_hash="c0ffee", environment={"fingerprint": "machine-x", "threads": {"intra_op": 2, "inter_op": 1, "affinity": [0, 1]},
                                                     "git": {"commit": commit, "dirty": False}})
    return record


def _history_cell(tmp_path, retries: int = 2):
    return SimpleNamespace(paths=SimpleNamespace(cache_dir=str(tmp_path / "cache")),
                           measure=SimpleNamespace(fresh_process_retries=retries, latency_processes=1))


def test_a_whole_process_slower_than_the_cells_earlier_runs_is_caught_and_run_again(tmp_path):
    """The EPYC's case (issue 30): speedups 2.30, 2.24, 2.24 in three processes, then a process at 1.68
    whose every block agrees with every other (clean inside). It is unstable with the figures, runs again
    in a fresh process, and the record kept is the steady one, with the slow try listed."""
    from harness.sweep.fresh_processes import run_timed

    speedups = iter([2.297, 2.238, 2.235, 1.679, 2.246])
    cell = _history_cell(tmp_path)
    records = [run_timed(lambda c: _machine_record(next(speedups)), cell, "cell") for _ in range(4)]
    assert [r["latency"]["contention"]["verdict"] for r in records] == ["clean"] * 4
    assert "fresh_process_tries" not in records[2]["latency"]
    tries = records[3]["latency"]["fresh_process_tries"]
    assert [t["verdict"] for t in tries] == ["unstable", "clean"]
    assert tries[0]["speedups"] == {"fixed bs=1 n=128": pytest.approx(1.679)}
    assert tries[0]["reasons"] == ["fixed bs=1 n=128: speedup 1.679 is -25% from the median 2.238 of this cell's 3 earlier runs "
                                   "on this machine (range 2.235 to 2.297; limit 6%)"]
    assert records[3]["latency"]["fixed"][0]["speedup"]["value"] == pytest.approx(2.246)


def test_a_speedup_that_stays_far_from_its_history_is_marked_with_the_figures(tmp_path):
    from harness.measure import speedup_history

    cache = str(tmp_path / "cache")
    for value in (2.0, 2.1, 2.05):
        speedup_history.remember(_machine_record(value), cache, {"fixed bs=1 n=128"})
    slow = _machine_record(1.5)
    assert speedup_history.judge_record(slow, cache)
    entry = slow["latency"]["fixed"][0]
    assert slow["latency"]["contention"]["verdict"] == "unstable" and entry["contention"]["verdict"] == "unstable"
    assert entry["stability"]["verdict"] == "unstable"
    assert entry["stability"]["history"] == {"runs": 3, "rule": "median", "median": 2.05, "low": 2.0, "high": 2.1, "deviation": pytest.approx(-0.2683, abs=1e-4),
                                             "limit": speedup_history.MAX_DEVIATION}
    assert not speedup_history.judge_record(_machine_record(2.12), cache)  # within 6 % of 2.05
    contended = _machine_record(1.5, verdict="contended")
    assert not speedup_history.judge_record(contended, cache) and contended["latency"]["contention"]["verdict"] == "contended"
    assert not speedup_history.judge_record(_machine_record(1.5, commit="def"), cache)  # other code: a history of its own


def test_against_one_or_two_earlier_runs_only_a_run_beyond_all_of_them_is_unstable(tmp_path):
    """The EPYC's second try (issue 30): 2.297, 2.238, then 1.679. With two earlier runs their median could
    be an odd one's half-way point, so the rule is the range: 1.679 is 25 % below both."""
    from harness.measure import speedup_history

    cache = str(tmp_path / "cache")
    assert not speedup_history.judge_record(_machine_record(2.297), cache)  # the first run: nothing to judge against
    speedup_history.remember(_machine_record(2.297), cache, {"fixed bs=1 n=128"})
    assert not speedup_history.judge_record(_machine_record(2.238), cache)
    speedup_history.remember(_machine_record(2.238), cache, {"fixed bs=1 n=128"})
    slow = _machine_record(1.679)
    assert speedup_history.judge_record(slow, cache) == [
        "fixed bs=1 n=128: speedup 1.679 is -25% beyond this cell's 2 earlier runs on this machine (2.297 and 2.238; limit 6%)"]
    assert slow["latency"]["fixed"][0]["stability"]["history"]["rule"] == "range"
    assert not speedup_history.judge_record(_machine_record(2.15), cache)  # within 6 % of 2.238, the nearer one


def test_the_history_keeps_the_recent_runs_and_follows_a_lasting_change(tmp_path):
    from harness.measure import speedup_history

    cache = str(tmp_path / "cache")
    for value in (2.0, 2.1):
        speedup_history.remember(_machine_record(value), cache, {"fixed bs=1 n=128"})
    speedup_history.remember(_machine_record(9.9), cache, set())  # disturbed inside its process: not remembered
    for k in range(30):
        speedup_history.remember(_machine_record(3.0 + k / 1000), cache, {"fixed bs=1 n=128"})
    path = speedup_history.history_path(cache, _machine_record(1.0))
    assert path.name == "machine-x-t2.json"
    (values,) = speedup_history.read_history(path)["runs"].values()
    assert len(values) == speedup_history.KEEP and values[-1] == 3.029 and 9.9 not in values
    # a lasting change of the machine moves the median over to it: the new level is no longer unstable
    assert not speedup_history.judge_record(_machine_record(3.02), cache)


def test_the_epyc_first_try_replayed(tmp_path):
    """Issue 30's first try, 1.954, 2.422, 2.289, 2.213, 2.205 (a retry drawing 2.250): 2.422 is 24 % beyond
    the one run before it, so it is unstable and runs again; the first run has nothing to be judged against."""
    from harness.sweep.fresh_processes import run_timed

    speedups = iter([1.954, 2.422, 2.250, 2.289, 2.213, 2.205])
    cell = _history_cell(tmp_path)
    records = [run_timed(lambda c: _machine_record(next(speedups)), cell, "cell") for _ in range(5)]
    assert ["fresh_process_tries" in r["latency"] for r in records] == [False, True, False, False, False]
    assert [t["speedups"]["fixed bs=1 n=128"] for t in records[1]["latency"]["fresh_process_tries"]] == pytest.approx([2.422, 2.250])
    assert [r["latency"]["fixed"][0]["speedup"]["value"] for r in records] == pytest.approx([1.954, 2.250, 2.289, 2.213, 2.205])


def _timed_record(method_ms: float, config_hash: str) -> dict:
    record = _interleaved_record(method_ms)
    record["latency"]["fixed"][0]["contention"] = {"verdict": "clean"}
    record.update(config_hash=config_hash, environment={"fingerprint": "machine-x", "threads": {"intra_op": 2},
                                                        "git": {"commit": "abc", "dirty": False}})
    return record


@pytest.mark.parametrize("disagreed, processes", [(False, 1), (True, 3)])
def test_a_cells_first_run_is_pooled_only_on_a_machine_whose_processes_disagreed(tmp_path, disagreed, processes):
    """Nothing can judge a cell's first run on a machine. Where an earlier cell's processes disagreed (a run the
    history flagged), the first run of a new cell is timed in three fresh processes and pooled; where they never
    did, it costs one process."""
    from harness.measure import speedup_history
    from harness.sweep.fresh_processes import run_timed

    cache = str(tmp_path / "cache")
    earlier = [10.0, 10.1, 10.0] + ([13.0] if disagreed else [10.05])  # another cell: 1.5x, then 1.15x in one process
    for ms in earlier:
        record = _timed_record(ms, "other-cell")
        steady = speedup_history.steady_labels(record)
        speedup_history.judge_record(record, cache)
        speedup_history.remember(record, cache, steady)
    assert speedup_history.read_history(speedup_history.history_path(cache, record))["disagreements"] == int(disagreed)
    calls = []

    def run_once(one_cell):
        calls.append(one_cell)
        return _timed_record([10.0, 10.4, 10.2][len(calls) - 1], "new-cell")

    cell = _pooled_cell(cache)
    result = run_timed(run_once, cell, "cell")
    assert len(calls) == processes
    if disagreed:
        assert result["latency"]["fixed"][0]["speedup"]["pooled"]["processes"] == 3
        assert result["latency"]["pooled_because"].startswith("the cell's first run on a machine whose processes have disagreed")
        assert not calls[1].measure.accuracy  # the extra processes time latency only
        calls.clear()
        run_timed(run_once, cell, "cell")  # its second run: judged against the three, one process
        assert len(calls) == 1
    else:
        assert "pooled" not in result["latency"]["fixed"][0]["speedup"] and "pooled_because" not in result["latency"]
