"""CUDA-only methods: int4 weight-only, fp8, 2:4 sparsity, fp16. Skipped without a GPU.

Sizes are multiples of 128 so the int4 tinygemm groups and the semi-structured kernels' minimum
shapes are met.
"""

from types import SimpleNamespace

import pytest
import torch
from methods_helpers import eval_batch, fake_ctx, saved_and_reloaded, tiny_model

from methods.base import build_method, build_method_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = SimpleNamespace(device="cuda", dtype="float32")


def method(target, name, **params):
    return build_method(build_method_config({"_target_": target, "name": name, **params}))


def gpu_model():
    return tiny_model(hidden_size=128, num_attention_heads=4, intermediate_size=256).cuda()


def cuda_logits(model, batch):
    with torch.no_grad():
        return model(**{k: v.cuda() for k, v in batch.items()}).logits.float()


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
