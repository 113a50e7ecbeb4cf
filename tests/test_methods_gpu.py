"""CUDA-only methods: int4 weight-only, fp8, 2:4 sparsity, fp16.

Tests marked `gpu` skip without a CUDA device (and fail under COMPBENCH_REQUIRE_GPU=1, see
conftest.py); the others check, on the CPU, the parts of the GPU paths that need no GPU: imports,
shape rules, device placement, CUDA-graph warm-up, 2:4 size arithmetic. Sizes of the GPU models
are multiples of 128 so the int4 tinygemm groups and the semi-structured kernels' shapes are met.
"""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from methods_helpers import eval_batch, fake_ctx, saved_and_reloaded, tiny_model

from harness.errors import UnsupportedError
from methods.base import build_method, build_method_config

def no_cuda_reason() -> str:
    """Why CUDA is unusable here: a CPU-only torch build reads differently from a missing device."""
    if torch.version.cuda is None:
        return f"needs a CUDA device; this torch {torch.__version__} is a CPU-only build"
    return f"needs a CUDA device; torch {torch.__version__} (CUDA {torch.version.cuda}) sees none"



CUDA = SimpleNamespace(device="cuda", dtype="float32")


def method(target, name, **params):
    return build_method(build_method_config({"_target_": target, "name": name, **params}))


def gpu_model():
    return tiny_model(hidden_size=128, num_attention_heads=4, intermediate_size=256).cuda()


def cuda_logits(model, batch):
    with torch.no_grad():
        return model(**{k: v.cuda() for k, v in batch.items()}).logits.float()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=no_cuda_reason())
@pytest.mark.parametrize(
    "target,name,params",
    [
        ("methods.quantization.Fp16", "fp16", {}),
        ("methods.quantization.Bf16", "bf16", {}),
        ("methods.quantization.Int4WeightOnly", "int4_weight_only", {"compile": False}),
        ("methods.quantization.Fp8", "fp8", {"compile": False}),
        ("methods.quantization.WeightOnlyInt8", "weight_only_int8", {"compile": False}),
        ("methods.pruning.Sparse2of4", "sparse_2of4", {}),
        ("methods.pruning.Sparse2of4", "sparse_2of4", {"backend": "semi_structured"}),
    ],
)
def test_gpu_method_runs_close_to_float_and_reloads(target, name, params, tmp_path):
    m = method(target, name, **params)
    reason = m.unsupported_reason(CUDA)
    if reason:
        pytest.skip(reason)
    reference = gpu_model()
    batch = eval_batch()
    expected = cuda_logits(reference, batch)
    model = m.apply(gpu_model(), fake_ctx(device="cuda"))
    got = cuda_logits(model, batch)
    assert (got - expected).abs().max() <= 0.1 * expected.abs().max() + 0.05
    reloaded = saved_and_reloaded(m, model, tmp_path).cuda()
    if name == "sparse_2of4":  # reloads as the dense 2:4-masked fp16 model; 2 of every 4 weights are zero
        assert m.sparse and m.info["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3)
        assert torch.allclose(cuda_logits(reloaded, batch), got, atol=1e-2)
    else:
        assert torch.allclose(cuda_logits(reloaded, batch), got, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=no_cuda_reason())
def test_cuda_device_is_usable():
    """Runs a matmul on the device: a visible GPU whose kernels do not run fails here, not later."""
    a = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
    assert torch.allclose((a @ a).float().cpu(), a.float().cpu() @ a.float().cpu(), atol=1.0, rtol=0.05)


# --------------------------------------------------------------------------------------------
# GPU paths checked on the CPU
# --------------------------------------------------------------------------------------------

TINYBERT = {"hidden_size": 312, "num_attention_heads": 12, "intermediate_size": 1200}  # TinyBERT-4L-312D's widths


def test_torchao_2of4_config_comes_from_public_names():
    from torchao.quantization.transform_module import _QUANTIZE_CONFIG_HANDLER

    from methods.pruning import torchao_semi_sparse

    sparsify, config = torchao_semi_sparse()
    assert callable(sparsify) and type(config()) in _QUANTIZE_CONFIG_HANDLER  # sparsify_ finds its handler


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_2of4_shape_rule_refuses_tinybert_widths_and_takes_bert_base(dtype):
    from methods.pruning import semi_structured_shape_problem

    assert semi_structured_shape_problem(768, 768, dtype) is None
    assert semi_structured_shape_problem(3072, 768, dtype) is None
    assert "312" in semi_structured_shape_problem(312, 312, dtype)
    assert semi_structured_shape_problem(1200, 312, dtype) is not None  # 1200 = 16 x 75 fits, 312 does not


def test_2of4_skips_and_records_layers_the_kernels_refuse():
    from methods.pruning import attach_2of4_masks, semi_structured_shape_problem
    from methods.anatomy import encoder_linear_names

    model = tiny_model(hidden_size=128, num_attention_heads=4, intermediate_size=312)  # FFN in/out at 312
    masked, skipped = attach_2of4_masks(model, lambda l: semi_structured_shape_problem(l.out_features, l.in_features, torch.float16))
    assert masked == [n for n in encoder_linear_names(model) if ".attention." in n]  # 128 x 128: packable
    assert len(skipped) == 2 * 4 and all("312" in entry for entry in skipped)  # 4 layers x FFN in and out


def test_2of4_refuses_a_model_with_no_packable_layer_before_touching_cuda():
    m = method("methods.pruning.Sparse2of4", "sparse_2of4")
    with pytest.raises(UnsupportedError, match="2:4 kernels"):
        m.apply(tiny_model(**TINYBERT), fake_ctx(device="cuda"))


def test_fp8_shape_rule_matches_torchao():
    from torchao.quantization.utils import _fp8_mm_compat

    from methods.quantization import fp8_shape_problem

    for out_features, in_features in [(768, 768), (312, 312), (1200, 312), (3072, 768), (16, 24)]:
        linear = torch.nn.Linear(in_features, out_features)
        assert (fp8_shape_problem(linear) is None) == _fp8_mm_compat(linear.weight)


def test_fp8_refuses_when_no_layer_would_be_quantized():
    m = method("methods.quantization.Fp8", "fp8", compile=False)
    with pytest.raises(UnsupportedError, match="fp8-compatible"):
        m.apply(tiny_model(**TINYBERT), fake_ctx(device="cpu"))


def int8_where(rule):
    """A stand-in for torchao's fp8 quantize_ on the CPU: real torchao int8 weight-only tensors
    on the layers `rule` accepts, so the method's bookkeeping sees genuine tensor subclasses."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    def fake(model, scheme, **options):
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda module, fqn: isinstance(module, torch.nn.Linear) and "classifier" not in fqn and rule(module))
        return model

    return fake


def test_fp8_records_quantized_and_bf16_layers(monkeypatch):
    import methods.quantization as quantization

    monkeypatch.setattr(quantization, "quantize_torchao", int8_where(lambda linear: quantization.fp8_shape_problem(linear) is None))
    m = method("methods.quantization.Fp8", "fp8", compile=False)
    m.apply(tiny_model(hidden_size=128, num_attention_heads=4, intermediate_size=312), fake_ctx(device="cpu"))
    layers = 4
    assert m.info["quantized_linears"] == layers * 4 + 1  # q, k, v, attention output per layer + pooler
    assert len(m.info["bf16_linears"]) == layers * 2 and m.info["all_linears_fp8"] is False


def test_fp8_fails_loudly_when_torchao_skips_a_layer_the_rule_expected(monkeypatch):
    import methods.quantization as quantization

    monkeypatch.setattr(quantization, "quantize_torchao", int8_where(lambda linear: linear.in_features != linear.out_features))
    m = method("methods.quantization.Fp8", "fp8", compile=False)
    with pytest.raises(RuntimeError, match="different set of Linears"):
        m.apply(tiny_model(hidden_size=128, num_attention_heads=4, intermediate_size=256), fake_ctx(device="cpu"))


def test_early_exit_puts_ramps_and_batches_on_the_backbone_device():
    from methods.early_exit import EarlyExitConfig, RampSet, assemble, device_of, on_device

    backbone = tiny_model().to("meta")  # stands for a GPU: a device other than the CPU the ramps load on
    ramps = RampSet.from_model(tiny_model(), "mean")
    assert device_of(ramps).type == "cpu"
    early = assemble(backbone, ramps, EarlyExitConfig())
    assert {p.device.type for p in early.parameters()} == {"meta"}
    batch = on_device(eval_batch(), device_of(early.model))
    assert {v.device.type for v in batch.values()} == {"meta"}


def test_cuda_graph_warm_up_covers_every_shape_before_timing(monkeypatch):
    """The real-length pass: more distinct shapes than warm-up calls. Every shape must have been
    called (eager, record, replay) before the first timed call."""
    import harness.measure.latency as latency
    from harness.config import HardwareConfig

    calls: dict = {}

    def run(batch):
        shape = latency.batch_shape(batch)
        calls[shape] = calls.get(shape, 0) + 1

    seen_at_timing: dict = {}
    timed_loop = latency._perf_counter_loop

    def spy(*args, **kwargs):
        seen_at_timing.update(calls)
        return timed_loop(*args, **kwargs)

    monkeypatch.setattr(latency, "_perf_counter_loop", spy)
    batches = [{"input_ids": torch.zeros(4, 8 + i, dtype=torch.long)} for i in range(32)]
    hardware = HardwareConfig(device="cpu", compile="cudagraphs", warmup=20, min_iterations=5, min_duration_s=0.0)
    latency.measure_latency(run, batches, hardware, 4, None, "real-length", progress=False, n_bootstrap=0)
    assert len(seen_at_timing) == 32
    assert min(seen_at_timing.values()) >= 2  # at least the eager call and the recording


def test_cuda_graph_warm_up_is_only_for_cuda_graphs(monkeypatch):
    import harness.measure.latency as latency
    from harness.config import HardwareConfig

    called = []
    monkeypatch.setattr(latency, "warm_up_every_shape", lambda run, batches: called.append(len(batches)))
    hardware = HardwareConfig(device="cpu", compile="eager", warmup=1, min_iterations=1, min_duration_s=0.0)
    latency.measure_latency(lambda batch: None, [{"x": torch.zeros(1)}], hardware, 1, None, "eager", progress=False, n_bootstrap=0)
    assert called == []


def semi_structured(values: torch.Tensor, meta_elements: int = 64):
    """A cuSPARSELt 2:4 tensor built on the CPU: `values` (rows x cols/2 kept values) then metadata."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT

    rows, half = values.shape
    packed = torch.cat([values.reshape(-1), torch.ones(meta_elements, dtype=values.dtype)])
    return SparseSemiStructuredTensorCUSPARSELT(torch.Size([rows, 2 * half]), packed, None, None, None, None)


def test_2of4_size_counts_kept_values_and_dense_layout():
    from harness.measure.size import _tensor_size

    values = torch.randn(32, 32, dtype=torch.float16)
    values[:4] = 0  # more zeros than 2:4 forces: counted as zeros
    size = _tensor_size(semi_structured(values))
    assert size.params == 32 * 64
    assert size.nonzero == 28 * 32
    assert size.bytes_dense == 32 * 64 * 2  # the dense fp16 layout, as the saved artifact stores it
    assert size.bytes_sparse == (32 * 32 + 64) * 2  # packed values + metadata


def test_2of4_model_reports_its_sparsity(tmp_path):
    from harness.measure import measure_size
    from methods.pruning import save_float_state

    model = tiny_model(hidden_size=128, num_attention_heads=4, intermediate_size=256).half()
    dense = model.bert.encoder.layer[0].intermediate.dense
    weight = dense.weight.detach().clone()
    before = measure_size(model)
    kept = weight[:, : weight.shape[1] // 2].contiguous()  # stands for the 2:4-packed values
    dense.weight = torch.nn.Parameter(semi_structured(kept), requires_grad=False)
    size = measure_size(model)
    assert size["params_total"] == before["params_total"]
    assert size["nonzero_params_total"] == before["nonzero_params_total"] - int(weight.count_nonzero()) + int(kept.count_nonzero())
    assert size["bytes_dense"] == before["bytes_dense"]
    # the artifact sparse_2of4 saves holds this layer dense: disk and bytes_dense count the same bytes
    save_float_state(model, str(tmp_path), {"bert.encoder.layer.0.intermediate.dense.weight": weight})
    on_disk = measure_size(model, artifact_dir=str(tmp_path))
    assert on_disk["bytes_dense"] <= on_disk["disk_bytes"] < on_disk["bytes_dense"] * 1.05 + 8192


# --------------------------------------------------------------------------------------------
# COMPBENCH_REQUIRE_GPU
# --------------------------------------------------------------------------------------------

SKIPPING_GPU_TEST = """
import pytest

@pytest.mark.gpu
def test_skips_in_its_body():
    pytest.skip("needs a CUDA device")

@pytest.mark.gpu
@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_skipped_by_its_mark():
    pass

def test_plain():
    pytest.skip("not a GPU test")
"""


@pytest.mark.parametrize("require", ["1", "0"])
def test_require_gpu_turns_gpu_skips_into_failures(tmp_path, require):
    (tmp_path / "conftest.py").write_text(Path(__file__).with_name("conftest.py").read_text())
    (tmp_path / "test_fake.py").write_text(SKIPPING_GPU_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a CUDA device\n")
    # Without CI=true: pytest then repeats each skip reason in its summary, and the count below is exact.
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"COMPBENCH_REQUIRE_GPU": require}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    if require == "1":  # a skip in the body fails the test; a skip mark fails its setup (an error)
        assert result.returncode == 1 and "1 failed, 1 skipped, 1 error" in result.stdout, result.stdout
        assert result.stdout.count("COMPBENCH_REQUIRE_GPU=1 but this GPU test was skipped") == 2
    else:
        assert result.returncode == 0 and "3 skipped" in result.stdout, result.stdout
