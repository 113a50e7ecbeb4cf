from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from methods_helpers import eval_batch, fake_batches, fake_ctx, logits, saved_and_reloaded, tiny_model

import methods.quantization as quantization
from harness.config import HardwareConfig
from harness.errors import ConfigError
from methods.base import build_method, build_method_config
from methods.quantization import ExportedModel
from methods.anatomy import base_linear_names

CPU = HardwareConfig(device="cpu")
TARGETS = {
    "dynamic_int8": "DynamicInt8",
    "static_int8": "StaticInt8",
    "fp16": "Fp16",
    "bf16": "Bf16",
    "weight_only_int8": "WeightOnlyInt8",
    "int4_weight_only": "Int4WeightOnly",
    "fp8": "Fp8",
}


def quant(name, **params):
    return build_method(build_method_config({"_target_": f"methods.quantization.{TARGETS[name]}", "name": name, **params}))


def close_to_float(model, quantized, batch):
    reference = logits(model, batch)
    scale = reference.abs().max()
    return (logits(quantized, batch) - reference).abs().max() <= 0.1 * scale + 1e-3


def big_logit_model():
    # a random tiny BERT has near-constant logits; a larger head makes quantization error visible
    model = tiny_model()
    with torch.no_grad():
        model.classifier.weight.mul_(50)
    return model


def test_dynamic_int8_torch_ao_quantizes_the_encoder_not_the_head(tmp_path):
    float_model = big_logit_model()
    method = quant("dynamic_int8", backend="torch_ao")
    model = method.apply(big_logit_model(), fake_ctx())
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    assert all(isinstance(model.get_submodule(n), dynamic_linear) for n in base_linear_names(float_model))
    assert type(model.classifier) is torch.nn.Linear
    assert method.info["backend"] == "torch_ao" and method.info["compiled"] is False
    batch = eval_batch()
    assert close_to_float(float_model, model, batch)
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert torch.equal(logits(reloaded, batch), logits(model, batch))
    assert (tmp_path / "quantized_state.pt").is_file() and (tmp_path / "config.json").is_file()


def test_dynamic_int8_torchao_backend(tmp_path):
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor

    float_model = big_logit_model()
    method = quant("dynamic_int8", backend="torchao", compile=False)
    model = method.apply(big_logit_model(), fake_ctx())
    assert isinstance(model.bert.encoder.layer[0].attention.self.query.weight, Int8Tensor)
    assert not isinstance(model.classifier.weight, Int8Tensor)
    batch = eval_batch()
    assert close_to_float(float_model, model, batch)
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert isinstance(reloaded.bert.encoder.layer[0].attention.self.query.weight, Int8Tensor)
    assert torch.equal(logits(reloaded, batch), logits(model, batch))


def shapes_batch(batch_size, seq_len):
    batch = fake_batches(batch_size, batch_size, seed=5, seq_len=seq_len)[0]
    return batch  # keeps labels: the exported model must ignore them


@pytest.mark.parametrize("name", ["dynamic_int8", "static_int8"])
def test_pt2e_backends_take_any_shape_and_reload(name, tmp_path):
    float_model = big_logit_model()
    params = {"backend": "pt2e", "compile": False} if name == "dynamic_int8" else {"compile": False, "calibration_samples": 16, "batch_size": 8}
    method = quant(name, **params)
    model = method.apply(big_logit_model(), fake_ctx())
    assert isinstance(model, ExportedModel) and model.config is not None
    for batch_size, seq_len in [(1, 9), (5, 16), (3, 30)]:  # export kept batch and sequence dims dynamic
        batch = shapes_batch(batch_size, seq_len)
        assert logits(model, batch).shape == (batch_size, 2)
    batch = eval_batch()
    assert close_to_float(float_model, model, batch)
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert torch.equal(logits(reloaded, batch), logits(model, batch))
    assert (tmp_path / "model.pt2").is_file()


def test_weight_only_int8_reload(tmp_path):
    float_model = big_logit_model()
    method = quant("weight_only_int8", compile=False)
    model = method.apply(big_logit_model(), fake_ctx())
    batch = eval_batch()
    assert close_to_float(float_model, model, batch)
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert torch.equal(logits(reloaded, batch), logits(model, batch))


def test_bf16_needs_native_bf16_on_cpu(monkeypatch):
    method = quant("bf16")
    monkeypatch.setattr(quantization, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert method.unsupported_reason(CPU).startswith("unsupported on cpu: bf16 needs avx512_bf16 or amx_bf16")
    monkeypatch.setattr(quantization, "cpu_flags", lambda: {"avx512_bf16"})
    assert method.unsupported_reason(CPU) is None


def test_bf16_cast_and_reload(tmp_path):
    method = quant("bf16")
    model = method.apply(tiny_model(), fake_ctx())
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert all(p.dtype == torch.bfloat16 for p in reloaded.parameters())
    assert torch.equal(logits(reloaded, eval_batch()), logits(model, eval_batch()))


@pytest.mark.parametrize("name", ["fp16", "int4_weight_only", "fp8"])
def test_gpu_only_methods_are_unsupported_on_cpu(name):
    reason = quant(name).unsupported_reason(CPU)
    assert reason.startswith(f"unsupported on cpu: {name} runs on cuda only")


@pytest.mark.parametrize("name", ["dynamic_int8", "static_int8"])
def test_cpu_only_int8_is_unsupported_on_cuda(name):
    assert quant(name).unsupported_reason(SimpleNamespace(device="cuda")).startswith("unsupported on cuda")


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("dynamic_int8", {"backend": "onnx"}, "method.backend: unknown backend 'onnx' (allowed: ('auto', 'torch_ao', 'torchao', 'pt2e'))"),
        ("static_int8", {"calibration_samples": 0}, "method.calibration_samples: must be >= 1, got 0"),
        ("int4_weight_only", {"group_size": 100}, "method.group_size: must be one of [32, 64, 128, 256], got 100"),
        ("fp8", {"granularity": "block"}, "method.granularity: unknown granularity 'block' (allowed: ('row', 'tensor'))"),
    ],
)
def test_config_errors(name, params, message):
    with pytest.raises(ConfigError) as err:
        quant(name, **params)
    assert str(err.value) == message


def test_default_backend_is_the_registered_default():
    from methods import registry

    assert registry.preset_values("dynamic_int8")["backend"] == quantization.DEFAULT_INT8_BACKEND


@pytest.mark.parametrize("flags,expected", [({"avx2"}, "torch_ao"), ({"avx2", "avx512f", "avx512_vnni"}, "pt2e"),
                                            ({"avx2", "avx_vnni"}, "pt2e"), ({"amx_int8"}, "pt2e"), (set(), "torch_ao")])
def test_auto_backend_is_chosen_by_the_cpu(flags, expected, monkeypatch):
    monkeypatch.setattr(quantization, "cpu_flags", lambda: flags)
    assert quantization.resolve_int8_backend("auto") == expected
    # a pipeline step keeps an HF model for the steps around it: torchao where pt2e would be fastest
    assert quantization.resolve_int8_backend("auto", in_pipeline=True) == ("torchao" if expected == "pt2e" else expected)
    assert quantization.resolve_int8_backend("pt2e") == "pt2e"  # an explicit choice is kept
    method = quant("dynamic_int8", compile=False)  # the YAML default: auto
    method.apply(tiny_model(), fake_ctx())
    assert method.info["backend"] == expected and method.info["backend_choice"].startswith(f"auto: {expected}")
    # pt2e traces on training inputs: the plan loads them
    assert type(method).needs_for(method.config) == ("calibration" if expected == "pt2e" else "nothing")
