"""The runner on a tiny local BERT: the scored artifact is the timed artifact, failures and
unsupported hardware become honest records, fine-tunes are cached."""

import pytest

from harness import stages
from harness.runner import config_hash, execute, needs_train_data
from harness.tasks import check_task_data

QUICK = ["task.finetune.max_train_samples=32", "task.finetune.epochs=1", "task.max_eval_samples=16",
         "hardware.batch_sizes=[1]", "hardware.min_iterations=2", "hardware.min_duration_s=0", "hardware.warmup=0",
         "measure.bootstrap=20", "measure.energy=false", "measure.memory=false", "isolate=false"]


def tiny_cell(compose, tiny_bert_dir, *extra):
    return compose("model=local", f"model.path={tiny_bert_dir}", "task=sst2", *QUICK, *extra)


def run(cell):
    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    return execute(cell, config_hash(cell, fingerprints), fingerprints)


def test_scored_model_is_the_timed_model(compose, tiny_bert_dir, monkeypatch):
    seen = {}
    for stage in ("accuracy", "latency", "flops"):
        original = getattr(stages, stage)

        def spy(cell, model, *args, _stage=stage, _original=original, **kwargs):
            seen[_stage] = id(model)
            return _original(cell, model, *args, **kwargs)

        monkeypatch.setattr(stages, stage, spy)
    record = run(tiny_cell(compose, tiny_bert_dir))
    assert record["status"] == "ok", record["reason"]
    assert seen["accuracy"] == seen["latency"] == seen["flops"]
    assert record["artifact"]["digest_before_accuracy"] == record["artifact"]["digest_after_measurement"]


def test_finetune_is_cached_across_methods(compose, tiny_bert_dir):
    first = run(tiny_cell(compose, tiny_bert_dir))
    second = run(tiny_cell(compose, tiny_bert_dir, "seed=42", "measure.flops=false"))
    assert first["training"]["cache_hit"] is False
    assert second["training"]["cache_hit"] is True
    assert second["training"]["key"] == first["training"]["key"]


def test_exception_in_a_stage_becomes_a_failed_record(compose, tiny_bert_dir, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash in latency")

    monkeypatch.setattr(stages, "latency", explode)
    record = run(tiny_cell(compose, tiny_bert_dir))
    assert record["status"] == "failed"
    assert record["reason"].startswith("RuntimeError: simulated crash in latency")
    assert record["metrics"] is None and record["environment"]


def test_random_init_has_no_accuracy_and_says_why(compose, tiny_bert_dir):
    record = run(tiny_cell(compose, tiny_bert_dir, "model.init=random"))
    assert record["status"] == "ok"
    assert record["metrics"] is None
    assert any("random init" in note for note in record["metrics_notes"])
    assert record["training"]["finetuned"] is False
    assert record["latency"]["fixed"][0]["p50_ms"] > 0
