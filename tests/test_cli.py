"""The CLI end to end: bad input fails in one line before anything is written; a real cell runs
through Hydra (fresh process, real MiniLM, real SST-2 slices) and its record has every field."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPBENCH = [sys.executable, "-c", "from harness.cli import main; main()"]
QUICK = [
    "task.finetune.max_train_samples=64", "task.finetune.epochs=1", "task.max_eval_samples=48",
    "hardware.batch_sizes=[1,4]", "hardware.min_iterations=3", "hardware.min_duration_s=0.1", "hardware.warmup=1",
    "measure.bootstrap=50",
]


def run_cli(args, tmp_path, data_root, cache_dir=None, timeout=600):
    env = {**os.environ, "COMPBENCH_DATA_ROOT": str(data_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "COMPBENCH_CACHE": str(cache_dir or tmp_path / "cache")}
    results = tmp_path / "results"
    return subprocess.run(COMPBENCH + [f"paths.results_dir={results}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout), results


BAD_INPUTS = [
    (["method=nope"], "compbench: error: method: unknown choice 'nope' (allowed: "),
    (["task=imdb"], "compbench: error: task: unknown choice 'imdb' (allowed: "),
    (["model=gpt9"], "compbench: error: model: unknown choice 'gpt9' (allowed: "),
    (["hardware=tpu"], "compbench: error: hardware: unknown choice 'tpu' (allowed: "),
    (["hardware.batch_sizes=[1,-4]"], "compbench: error: hardware.batch_sizes: every batch size must be a positive integer, got -4"),
    (["task.finetune.batch_size=-1"], "compbench: error: task.finetune.batch_size: must be a positive integer, got -1"),
    (["hardware.device=tpu"], "compbench: error: hardware.device: unknown device 'tpu' (allowed: ('cpu', 'cuda'))"),
    (["model.init=zeros"], "compbench: error: model.init: unknown init 'zeros' (allowed: ('pretrained', 'random'))"),
    (["model=local"], "compbench: error: model.path: is required when model.source=local"),
    (["-m", "task=sst2,nope"], "compbench: error: task: unknown choice 'nope' (allowed: "),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, data_root):
    proc, results = run_cli(args, tmp_path, data_root, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(message), proc.stderr[-2000:]
    assert len([line for line in lines if line.startswith("compbench: error:")]) == 1
    assert not results.exists()


def test_missing_data_file_names_the_file(tmp_path, data_root):
    empty = tmp_path / "data"
    empty.mkdir()
    proc, results = run_cli([f"paths.data_root={empty}", "task=rte"], tmp_path, data_root, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("compbench: error:")
    assert "glue/rte" in proc.stderr and "COMPBENCH_DATA_ROOT" in proc.stderr
    assert not results.exists()


def test_model_dir_without_weights(tmp_path, data_root):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    proc, results = run_cli(["model=local", f"model.path={model_dir}"], tmp_path, data_root, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"compbench: error: model.path: {model_dir} has no weights (model.safetensors or pytorch_model.bin)"
    (model_dir / "pytorch_model.bin").write_bytes(b"not really")
    proc, _ = run_cli(["model=local", f"model.path={model_dir}"], tmp_path, data_root, timeout=120)
    assert "pickle weights" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_real_cell_through_hydra_writes_a_complete_record(tmp_path, data_root):
    proc, results = run_cli(["task=sst2", "method=baseline", "model=minilm_l6", "hardware=cpu", *QUICK], tmp_path, data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((results / "records").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    for key in ("schema_version", "config", "config_hash", "metrics", "size", "latency", "environment", "status"):
        assert key in record
    assert record["status"] == "ok", record["reason"]
    assert record["cell"] == {"method": "baseline", "model": "minilm_l6", "task": "sst2", "hardware": "cpu", "runtime": "pytorch"}
    assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
    low, high = record["metrics"]["ci95"]["accuracy"]
    assert low <= record["metrics"]["accuracy"] <= high
    assert record["metrics"]["eval_examples"] == {"validation": 48}
    assert any("subset" in note for note in record["metrics_notes"])
    # MiniLM-L6-H384: 22.7M parameters, of which 11.9M are embeddings; fp32 bytes = 4 x params.
    assert record["size"]["params_total"] == 22_713_986
    assert record["size"]["bytes_dense"] == 4 * 22_713_986
    assert record["size"]["pct_of_baseline_with_emb"] == 100.0
    assert record["size"]["disk_bytes"] > 0.99 * record["size"]["bytes_dense"]
    fixed = {entry["batch_size"]: entry for entry in record["latency"]["fixed"]}
    assert set(fixed) == {1, 4} and fixed[1]["seq_len"] == 128
    assert fixed[1]["count"] >= 3 and len(fixed[1]["values_ms"]) == fixed[1]["count"]
    assert fixed[1]["p50_ms"] > 0 and record["latency"]["real_length"]
    assert record["energy"]["provenance"] in ("measured:rapl", "estimated:codecarbon-tdp", "measured:nvml")
    assert record["flops"]["flops_per_sample"] > 0
    assert set(record["data"]["fingerprints"]) == {"glue/sst2/train.tsv", "glue/sst2/dev.tsv"}
    assert record["training"]["finetuned"] is True and record["training"]["cache_hit"] is False
    assert record["environment"]["threads"]["intra_op"] >= 1

    # Same sweep again: the cell is skipped (resume), and nothing is fine-tuned twice.
    proc, _ = run_cli(["task=sst2", "method=baseline", "model=minilm_l6", "hardware=cpu", *QUICK], tmp_path, data_root)
    assert proc.returncode == 0 and "[skip]" in proc.stdout
    assert len(list((results / "records").glob("*.json"))) == 1
