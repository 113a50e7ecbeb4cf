"""FLOPs of every artifact form a method can leave, against the closed form of the model's shapes.

The tiny classifier of methods_helpers: LAYERS encoder layers of width HIDDEN, FFN wide, HEADS heads,
a pooler and a 2-way classifier. Per sample at sequence length n, in MACs:
  layer  = n (3 h a + a h + 2 h f) + 2 n^2 a    (Q, K, V, O; FFN in and out; QK^T and AV; a = kept heads x head size)
  pooler = h^2 on the [CLS] token, classifier = 2 h.
"""

import math

import pytest
import torch
from methods_helpers import FFN, HEAD_SIZE, HEADS, HIDDEN, LAYERS, SEQ, eval_batch, fake_ctx, tiny_model
from torch import nn

from harness.measure.flops import average_flops, count_flops, register_flop_counter, weight_precision
from methods.base import build_method, build_method_config

BATCH = eval_batch()  # 6 samples of length SEQ
INPUTS = {k: BATCH[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def layer_macs(n=SEQ, attention_width=HIDDEN, ffn=FFN, h=HIDDEN):
    return n * (3 * h * attention_width + attention_width * h + 2 * h * ffn) + 2 * n * n * attention_width


def head_macs(h=HIDDEN, labels=2):
    return h * h + h * labels


def model_macs(layers=None):
    layers = layers if layers is not None else [layer_macs()] * LAYERS
    return sum(layers) + head_macs()


def linear_macs_quantized(layers=LAYERS, n=SEQ):
    """What the int8 schemes quantize: every encoder Linear and the pooler; attention and classifier stay float."""
    return layers * n * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) + HIDDEN * HIDDEN


def method(target, name, **params):
    return build_method(build_method_config({"_target_": target, "name": name, **params}))


def apply(target, name, **params):
    m = method(target, name, **params)
    return m, m.apply(tiny_model(), fake_ctx())


def test_eager_fp32_and_bf16_match_the_closed_form():
    fp32 = count_flops(tiny_model(), INPUTS)
    assert fp32["flops_per_sample"] == 2 * model_macs() and fp32["method"] == "hooks"
    assert fp32["macs_by_precision"] == {"fp32": model_macs()}
    bf16 = count_flops(tiny_model().to(torch.bfloat16), INPUTS)
    assert bf16["macs_by_precision"] == {"bf16": model_macs()} and bf16["reason"] is None


QUANTIZED_FORMS = {
    "torch_ao dynamic": ("methods.quantization.DynamicInt8", "dynamic_int8", {"backend": "torch_ao"}, "hooks"),
    "torchao dynamic": ("methods.quantization.DynamicInt8", "dynamic_int8", {"backend": "torchao", "compile": False}, "hooks"),
    "torchao weight-only": ("methods.quantization.WeightOnlyInt8", "weight_only_int8", {"compile": False}, "hooks"),
    "pt2e dynamic": ("methods.quantization.DynamicInt8", "dynamic_int8", {"backend": "pt2e", "compile": False}, "fx-graph"),
    "pt2e static": ("methods.quantization.StaticInt8", "static_int8",
                    {"compile": False, "calibration_samples": 8, "batch_size": 4}, "fx-graph"),
}


@pytest.mark.parametrize("form", list(QUANTIZED_FORMS))
def test_int8_forms_count_the_fp32_shapes_at_int8(form):
    target, name, params, counted_by = QUANTIZED_FORMS[form]
    _, model = apply(target, name, **params)
    result = count_flops(model, INPUTS)
    assert result["method"] == counted_by
    assert result["flops_per_sample"] == 2 * model_macs()  # same shapes, same FLOPs as fp32
    assert result["macs_by_precision"]["int8"] == linear_macs_quantized()
    assert result["macs_by_precision"]["fp32"] == model_macs() - linear_macs_quantized()


def test_compiled_modules_are_counted_on_their_original_graph():
    """Dynamo ignores hooks added after compilation: counting a compiled model used to give 0."""
    in_place = tiny_model()
    in_place.compile(backend="eager")
    in_place(**INPUTS)
    wrapped = torch.compile(tiny_model(), backend="eager")
    wrapped(**INPUTS)
    for model in (in_place, wrapped):
        assert count_flops(model, INPUTS)["flops_per_sample"] == 2 * model_macs()
    assert in_place._compiled_call_impl is not None  # the model is left compiled


def test_head_and_ffn_pruning_drop_by_the_exact_formula():
    pruner, model = apply("methods.structured.HeadPrune", "head_prune", fraction=0.5, calibration_samples=8, batch_size=4)
    kept = [len(k) for k in pruner.info["kept_heads"]]
    expected = model_macs([layer_macs(attention_width=k * HEAD_SIZE) for k in kept])
    assert count_flops(model, INPUTS)["macs_per_sample"] == expected < model_macs()
    pruner, model = apply("methods.structured.FfnPrune", "ffn_prune", fraction=0.25, calibration_samples=8, batch_size=4)
    widths = pruner.info["intermediate_sizes"]
    assert count_flops(model, INPUTS)["macs_per_sample"] == model_macs([layer_macs(ffn=w) for w in widths])


def test_layer_drop_and_low_rank_drop_by_the_exact_formula():
    _, model = apply("methods.structured.LayerDrop", "layer_drop", drop=2)
    assert count_flops(model, INPUTS)["macs_per_sample"] == model_macs([layer_macs()] * 2)
    factoriser, model = apply("methods.decomposition.LowRank", "low_rank", rank=8, recover_epochs=0)
    saved = 0
    for name, rank in factoriser.info["ranks"].items():
        module = model.get_submodule(name)
        saved += SEQ * (module.in_features * module.out_features - rank * (module.in_features + module.out_features))
    assert saved > 0
    assert count_flops(model, INPUTS)["macs_per_sample"] == model_macs() - saved


def test_early_exit_is_a_per_sample_average_over_the_exits():
    from methods.early_exit import EarlyExitModel, RampSet

    model = tiny_model()
    ramps = RampSet.from_model(model, pooling="mean")
    first_layer_only = EarlyExitModel(model, ramps, threshold=math.log(2) + 1)  # every sample exits after layer 1
    ramp = HIDDEN * HIDDEN + 2 * HIDDEN
    assert count_flops(first_layer_only, INPUTS)["macs_per_sample"] == layer_macs() + ramp
    never = EarlyExitModel(model, ramps, threshold=0.0)
    assert count_flops(never, INPUTS)["macs_per_sample"] == model_macs() + (LAYERS - 1) * ramp
    one, six = {k: v[:1] for k, v in INPUTS.items()}, INPUTS
    assert average_flops(first_layer_only, [one, six]) == pytest.approx(2 * (layer_macs() + ramp))


def test_an_uncountable_model_is_null_with_a_reason_never_zero():
    no_matmul = count_flops(nn.ReLU(), {"input": torch.randn(2, 3)})
    assert no_matmul["flops_per_sample"] is None and "no matmul" in no_matmul["reason"]

    class Broken(nn.Module):
        def forward(self, **inputs):
            raise RuntimeError("cannot run here")

    broken = count_flops(Broken(), INPUTS)
    assert broken["flops_per_sample"] is None and "cannot run here" in broken["reason"]
    assert average_flops(Broken(), [INPUTS]) is None


def test_a_registered_runtime_counter_is_used_and_named(monkeypatch):
    import harness.measure.flops as flops

    monkeypatch.setattr(flops, "_COUNTERS", list(flops._COUNTERS))  # registration does not leak into other tests

    class ForeignGraph:  # stands in for an ONNX / OpenVINO artifact
        def __call__(self, **inputs):
            raise AssertionError("the counter, not the model, is called")

    def count(model, inputs):
        from harness.measure.flops import _Macs

        macs = _Macs()
        macs.add("MatMul", "int8", 10 * inputs["input_ids"].shape[0])
        return macs

    register_flop_counter("test-graph", lambda m: isinstance(m, ForeignGraph), count)
    result = count_flops(ForeignGraph(), INPUTS)
    assert result["method"] == "test-graph" and result["flops_per_sample"] == 20
    assert result["macs_by_precision"] == {"int8": 10}


def test_weight_precision_of_plain_dtypes():
    assert weight_precision(torch.zeros(2, dtype=torch.float16)) == "fp16"
    assert weight_precision(torch.zeros(2, dtype=torch.float8_e4m3fn)) == "fp8"
    assert weight_precision(torch.zeros(2, dtype=torch.int8)) == "int8"
