"""Runtimes (harness/runtimes/) on a tiny BERT: the converted artifact is what is scored, timed and
sized; fp32 conversions match PyTorch; int8 uses each runtime's own quantizer and stays close to fp32;
a missing runtime or an unsupported method x runtime is one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.record import record_path
from harness.runner import cell_names, config_hash, execute, needs_train_data
from harness.tasks import check_task_data

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

RUNTIMES = ("onnxruntime", "openvino")
QUICK = ["task.finetune.max_train_samples=64", "task.finetune.epochs=1", "task.max_eval_samples=48",
         "hardware.batch_sizes=[1]", "hardware.min_iterations=2", "hardware.min_duration_s=0", "hardware.warmup=1",
         "measure.bootstrap=0", "measure.energy=false", "measure.memory=false", "measure.real_length_latency=false",
         "isolate=false"]


def tiny_cell(compose, tiny_bert_dir, *extra):
    return compose("model=local", f"model.path={tiny_bert_dir}", "task=sst2", *QUICK, *extra)


def run(cell):
    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    return execute(cell, config_hash(cell, fingerprints), fingerprints)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fp32_artifact_matches_pytorch_and_is_what_is_measured(compose, tiny_bert_dir, runtime):
    torch_record = run(tiny_cell(compose, tiny_bert_dir))
    record = run(tiny_cell(compose, tiny_bert_dir, f"runtime={runtime}"))
    assert record["status"] == "ok", record["reason"]
    section = record["runtime"]
    assert section["name"] == runtime and record["cell"]["runtime"] == runtime and record["config"]["runtime"]["name"] == runtime
    assert section["output_check"]["max_abs_diff"] < 1e-4
    assert section["output_check"]["prediction_agreement"] == 1.0
    assert section["dynamic_axes"]["input_ids"] == {0: "batch", 1: "sequence"}
    assert section["threads"]["intra_op"] == record["environment"]["threads"]["intra_op"]
    # Same predictions as PyTorch on the eval slice: the fp32 artifact is the same model.
    assert record["metrics"]["accuracy"] == pytest.approx(torch_record["metrics"]["accuracy"], abs=1e-9)
    # Size is the artifact's: a float32 graph weighs about what the float32 state dict does.
    assert record["size"]["disk_bytes"] >= record["size"]["bytes_dense"] > 0
    assert 95 < record["size"]["pct_of_baseline_with_emb"] < 105
    assert record["latency"]["fixed"][0]["p50_ms"] > 0 and record["latency"]["mode"] == runtime
    assert record["artifact"]["digest_before_accuracy"] == record["artifact"]["digest_after_measurement"]
    assert record["flops"]["flops_per_sample"] == torch_record["flops"]["flops_per_sample"]
