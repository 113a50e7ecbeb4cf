"""A cell's memory is bounded before it runs (harness.resources; issue #31 part 3). The run-time
limit is tested in tests/test_sweeps.py (a runaway cell fails alone)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.resources import GIB, Shape, check_memory, estimate_peak, model_shape, read_model_config

ROOT = Path(__file__).resolve().parents[1]


def _embedded_location() -> str:
    from harness.models import embedded_model_dir

    return str(embedded_model_dir())


def test_the_parameter_count_is_the_models(compose):
    import transformers

    config = json.loads((Path(_embedded_location()) / "config.json").read_text())
    shape = model_shape(config)
    model = transformers.BertModel(transformers.BertConfig(**{k: v for k, v in config.items() if not k.startswith("_")}))
    assert shape.parameters == sum(p.numel() for p in model.parameters()) == 22_713_216


def test_distilbert_names_its_dimensions_its_own_way():
    shape = model_shape({"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "vocab_size": 30522})
    assert shape == Shape(hidden=768, layers=6, heads=12, intermediate=3072, vocab=30522)
    assert model_shape({"model_type": "mobilebert"}) is None  # not enough to estimate: the cell runs, guarded at run time


def test_the_default_cell_fits_and_a_huge_batch_does_not(compose):
    cell = compose("method=dynamic_int8", "memory_limit_gb=16")
    estimate = check_memory(cell, _embedded_location(), trains=True)
    assert 1 * GIB < estimate.peak_bytes < 4 * GIB  # errs high: a magnitude cell with its fine-tune peaked at 1.2 GiB (/usr/bin/time -v)
    huge = compose("hardware.batch_sizes=[1,100000]", "memory_limit_gb=16")
    with pytest.raises(ConfigError) as refused:
        check_memory(huge, _embedded_location(), trains=True)
    assert refused.value.field == "hardware.batch_sizes" and "inference at batch 100000 x 128 tokens" in str(refused.value)


def test_training_and_the_model_itself_name_their_own_fields(compose):
    training = compose("task.finetune.batch_size=4096", "memory_limit_gb=16")
    with pytest.raises(ConfigError) as refused:
        check_memory(training, _embedded_location(), trains=True)
    assert refused.value.field == "task.finetune.batch_size"
    check_memory(training, _embedded_location(), trains=False)  # a cell that does not train is not bounded by it
    with pytest.raises(ConfigError) as refused:
        check_memory(compose("memory_limit_gb=0.5"), _embedded_location(), trains=False)
    assert refused.value.field == "memory_limit_gb"


def test_architecture_overrides_count_for_a_hub_model_without_a_cached_config(compose):
    cell = compose("model=bert_large_uncased", "model.init=random", "hardware.batch_sizes=[4096]", "memory_limit_gb=16")
    config = read_model_config(cell.model, cell.model.hub_id)
    assert model_shape(config).hidden == 1024
    assert estimate_peak(cell, model_shape(config), trains=False).peak_bytes > 16 * GIB


def test_a_gpu_cell_is_bounded_by_the_gpus_memory(compose, monkeypatch):
    from harness import resources

    cell = compose("hardware.batch_sizes=[20000]")
    cell.hardware.device = "cuda"  # composing hardware=cuda needs a GPU; the bound does not
    monkeypatch.setattr(resources, "device_memory_bytes", lambda: 80 * GIB)
    with pytest.raises(ConfigError, match="of the GPU's memory"):
        check_memory(cell, _embedded_location(), trains=False)
    cell.hardware.batch_sizes = [256]
    check_memory(cell, _embedded_location(), trains=False)


@pytest.mark.parametrize("value", ["-1", "0", "abc", "true"])
def test_a_bad_memory_limit_is_named(compose, value):
    with pytest.raises(ConfigError) as refused:
        compose(f"memory_limit_gb={value}")
    assert refused.value.field == "memory_limit_gb"


def test_a_batch_that_cannot_fit_is_refused_in_one_line_before_anything_runs(tmp_path, data_root):
    results = tmp_path / "results"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "hardware.batch_sizes=[100000]",
                           f"paths.results_dir={results}", f"paths.cache_dir={tmp_path / 'cache'}", f"paths.data_root={data_root}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("compbench: error: hardware.batch_sizes: this cell would need about ")
    assert not results.exists() and not (tmp_path / "cache").exists()
