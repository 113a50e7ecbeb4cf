"""flops.py, size.py, environment.py against hand counts."""

import math

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, BertModel

from harness.measure.environment import ISA_FLAGS, collect_environment
from harness.measure.flops import average_flops, count_flops
from harness.measure.size import measure_size

H, LAYERS, HEADS, INTER, VOCAB = 32, 2, 4, 64, 100


def tiny_config(**overrides):
    settings = dict(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=INTER, vocab_size=VOCAB)
    settings.update(overrides)
    return BertConfig(**settings)


def encoder_flops(n, h=H, i=INTER, layers=LAYERS, inner=None):
    """Closed form per sample: Q,K,V,O projections + FFN + QK^T and AV matmuls."""
    inner = h if inner is None else inner
    per_layer = 2 * n * (3 * h * inner + inner * h + 2 * h * i) + 2 * 2 * n * n * inner
    return layers * per_layer


def ids(batch, n):
    return {"input_ids": torch.randint(0, VOCAB, (batch, n))}


# --- flops ------------------------------------------------------------------------------------


def test_single_linear():
    r = count_flops(nn.Linear(16, 8), {"input": torch.randn(3, 5, 16)})
    assert r["flops_per_sample"] == 2 * 16 * 8 * 15 / 3
    assert r["macs_per_sample"] * 2 == r["flops_per_sample"]


def test_tiny_bert_matches_closed_form():
    n = 10
    model = BertModel(tiny_config()).eval()
    r = count_flops(model, ids(3, n))
    assert r["flops_per_sample"] == encoder_flops(n) + 2 * H * H  # pooler on the [CLS] token
    assert r["by_module_type"]["attention_matmul"] == LAYERS * 2 * 2 * n * n * H
    assert r["seq_len"] == n and r["batch_size"] == 3

    no_pooler = BertModel(tiny_config(), add_pooling_layer=False).eval()
    assert count_flops(no_pooler, ids(1, n))["flops_per_sample"] == encoder_flops(n)


def test_sequence_classifier_adds_pooler_and_head():
    model = BertForSequenceClassification(tiny_config(num_labels=3)).eval()
    r = count_flops(model, ids(2, 16))
    assert r["flops_per_sample"] == encoder_flops(16) + 2 * H * H + 2 * H * 3


def test_pruned_heads_are_seen_at_run_time():
    model = BertModel(tiny_config(), add_pooling_layer=False).eval()
    head_size = H // HEADS
    kept = 2 * head_size
    layer = model.encoder.layer[0]
    attn = layer.attention.self
    # What head pruning leaves behind: narrower projections and updated head count.
    attn.query, attn.key, attn.value = nn.Linear(H, kept), nn.Linear(H, kept), nn.Linear(H, kept)
    attn.num_attention_heads, attn.all_head_size = 2, kept
    layer.attention.output.dense = nn.Linear(kept, H)
    n = 12
    expected = encoder_flops(n, layers=1) + encoder_flops(n, layers=1, inner=kept)
    assert count_flops(model, ids(1, n))["flops_per_sample"] == expected


def test_dynamic_quantized_linear_counts_the_same_flops():
    model = BertForSequenceClassification(tiny_config()).eval()
    dense = count_flops(model, ids(1, 8))
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    r = count_flops(quantized, ids(1, 8))
    assert r["flops_per_sample"] == dense["flops_per_sample"]
    assert "DynamicQuantizedLinear" in r["by_module_type"]


def test_average_flops_weights_by_batch_size():
    model = BertModel(tiny_config(), add_pooling_layer=False).eval()
    avg = average_flops(model, [ids(1, 8), ids(3, 16)])
    assert avg == pytest.approx((encoder_flops(8) + 3 * encoder_flops(16)) / 4)


# --- size -------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = nn.Embedding(10, 4)
        self.dense = nn.Linear(4, 3)
        self.decoder = nn.Linear(4, 10, bias=False)
        self.decoder.weight = self.embeddings.weight  # tied: stored once


def sparse_bytes(numel, nonzero, width=4):
    return math.ceil(numel / 8) + nonzero * width


def test_size_hand_count_with_tied_weights(tmp_path):
    model = Tiny()
    (tmp_path / "model.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.json").write_bytes(b"y" * 23)
    s = measure_size(model, artifact_dir=str(tmp_path))
    assert s["params_total"] == 40 + 15
    assert s["params_without_embeddings"] == 15
    assert s["bytes_dense"] == 55 * 4
    assert s["bytes_without_embeddings"] == 15 * 4
    assert s["nonzero_params_total"] == 55
    assert s["bytes_sparse"] == sparse_bytes(40, 40) + sparse_bytes(12, 12) + sparse_bytes(3, 3)
    assert s["disk_bytes"] == 123
    assert s["pct_of_baseline_with_emb"] is None and s["baseline_bytes_dense"] is None


def test_magnitude_zeroed_tensor_shrinks_sparse_bytes_and_baseline_pct():
    model = Tiny()
    before = measure_size(model)
    with torch.no_grad():
        model.dense.weight[:, :2] = 0.0  # 6 of 12 weights
    after = measure_size(model, baseline_sizes=before)
    assert after["nonzero_params_total"] == 55 - 6
    assert after["bytes_sparse"] == before["bytes_sparse"] - 6 * 4
    assert after["bytes_dense"] == before["bytes_dense"]  # dense storage does not shrink
    assert after["pct_of_baseline_with_emb"] == pytest.approx(100.0)
    assert after["baseline_bytes_without_embeddings"] == 60
    half = measure_size(model, baseline_sizes={"bytes_dense": 440, "bytes_without_embeddings": 120})
    assert half["pct_of_baseline_with_emb"] == pytest.approx(50.0)
    assert half["pct_of_baseline_without_emb"] == pytest.approx(50.0)


def test_dynamic_quantized_weights_count_one_byte_each():
    model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear}, dtype=torch.qint8)
    s = measure_size(model)
    # int8 weight 32 B + fp32 bias 16 B; plus the module's unused 0-d output scale (fp32) and
    # zero_point (int64) tensors, which are stored bytes but not params.
    assert s["bytes_dense"] == 32 + 16 + 4 + 8
    assert s["params_total"] == 32 + 4


def test_torchao_int8_counts_inner_storage():
    quant = pytest.importorskip("torchao.quantization")
    model = nn.Sequential(nn.Linear(64, 32))
    quant.quantize_(model, quant.Int8WeightOnlyConfig())
    s = measure_size(model)
    inner = sum(getattr(model[0].weight, n).nbytes for n in model[0].weight.__tensor_flatten__()[0])
    assert s["bytes_dense"] == inner + 32 * 4
    assert s["bytes_dense"] < (64 * 32 + 32) * 4 / 2  # well under the fp32 size
    assert s["params_total"] == 64 * 32 + 32


# --- environment ------------------------------------------------------------------------------


def test_environment_keys_and_fingerprint():
    import socket

    env = collect_environment()
    for key in ("cpu", "ram_bytes", "os", "python", "packages", "gpu", "git", "hostname_hash", "threads", "fingerprint"):
        assert key in env
    assert set(env["cpu"]["isa"]) == set(ISA_FLAGS)
    assert env["cpu"]["logical_cores"] >= 1 and env["cpu"]["torch_cpu_capability"]
    assert env["packages"]["torch"] == torch.__version__
    assert set(env["git"]) == {"commit", "dirty"} and env["git"]["commit"]
    assert "hostname" not in env and env["hostname_hash"] != socket.gethostname()
    assert len(env["hostname_hash"]) == 12
    assert env["fingerprint"] == collect_environment()["fingerprint"]
    if not torch.cuda.is_available():
        assert env["gpu"] is None
