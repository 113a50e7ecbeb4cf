import copy

import pytest
import torch
from methods_helpers import (
    FFN,
    HEAD_SIZE,
    HEADS,
    HIDDEN,
    LAYERS,
    FakeFinetune,
    count_params,
    eval_batch,
    fake_batches,
    fake_ctx,
    logits,
    saved_and_reloaded,
    tiny_model,
)

from harness.errors import ConfigError
from methods.base import build_method, build_method_config
from methods.anatomy import encoder_layers, layer_parts
from methods.importance import head_scores, select_global
from methods.structured import layers_to_keep
from methods.surgery import SHAPES_KEY, keep_heads, keep_neurons


def method(name, **params):
    target = {"head_prune": "HeadPrune", "ffn_prune": "FfnPrune", "layer_drop": "LayerDrop"}[name]
    return build_method(build_method_config({"_target_": f"methods.structured.{target}", "name": name, **params}))


def params_per_head() -> int:
    # Q, K, V each lose head_size output rows (weights + bias); O loses head_size input columns
    return 3 * (HEAD_SIZE * HIDDEN + HEAD_SIZE) + HEAD_SIZE * HIDDEN


def params_per_neuron() -> int:
    return (HIDDEN + 1) + HIDDEN  # one row (+ bias) of the FFN input, one column of the FFN output


def params_per_layer() -> int:
    attention = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN  # Q, K, V, O + LayerNorm
    ffn = (HIDDEN * FFN + FFN) + (FFN * HIDDEN + HIDDEN) + 2 * HIDDEN
    return attention + ffn


# -- heads ---------------------------------------------------------------------------------------


def test_head_slicing_equals_zeroing_the_heads_output_columns():
    model = tiny_model()
    reference = copy.deepcopy(model)
    batch = eval_batch()
    removed = {0: [1, 3], 2: [0]}
    for index, heads in removed.items():
        out = layer_parts(encoder_layers(reference)[index]).out
        with torch.no_grad():
            for h in heads:
                out.weight[:, h * HEAD_SIZE : (h + 1) * HEAD_SIZE] = 0
        keep_heads(encoder_layers(model)[index], [h for h in range(HEADS) if h not in heads])
    assert torch.allclose(logits(model, batch), logits(reference, batch), atol=1e-5)
    assert layer_parts(encoder_layers(model)[0]).attention.num_attention_heads == 2
    assert layer_parts(encoder_layers(model)[0]).attention.all_head_size == 2 * HEAD_SIZE


def test_head_score_is_the_gradient_of_a_head_gate():
    """sum over a head's columns of W_O * dL/dW_O equals dL/dxi_h for a gate on that head's context."""
    model = tiny_model()
    parts = layer_parts(encoder_layers(model)[1])
    gate = torch.ones(HEADS, requires_grad=True)

    def gated(module, args):
        context = args[0]
        shape = context.shape
        return (context.view(*shape[:-1], HEADS, HEAD_SIZE) * gate[:, None]).view(shape)

    parts.out.register_forward_pre_hook(gated)
    batch = fake_batches(4, 4)[0]
    model(**batch).loss.backward()
    assert torch.allclose(head_scores(parts), gate.grad, atol=1e-6)


def test_head_prune_shapes_params_and_info():
    model = tiny_model()
    before = count_params(model)
    pruner = method("head_prune", fraction=0.5, calibration_samples=8, batch_size=4)
    model = pruner.apply(model, fake_ctx())
    kept = [len(k) for k in pruner.info["kept_heads"]]
    assert sum(kept) == LAYERS * HEADS // 2 and min(kept) >= 1
    assert pruner.info["pruned_heads"] == LAYERS * HEADS // 2
    assert count_params(model) == before - (LAYERS * HEADS - sum(kept)) * params_per_head()
    for layer, n in zip(encoder_layers(model), kept):
        parts = layer_parts(layer)
        assert parts.query.weight.shape == (n * HEAD_SIZE, HIDDEN)
        assert parts.out.weight.shape == (HIDDEN, n * HEAD_SIZE)
        assert parts.attention.num_attention_heads == n
    assert [s["heads"] for s in getattr(model.config, SHAPES_KEY)] == kept
    logits(model, eval_batch())  # still runs


def test_head_prune_keeps_one_head_per_layer():
    pruner = method("head_prune", fraction=0.99, calibration_samples=4, batch_size=4)
    pruner.apply(tiny_model(), fake_ctx())
    assert pruner.info["heads_per_layer"] == [1] * LAYERS


def test_select_global_respects_min_keep_and_ranking():
    scores = [torch.tensor([0.1, 0.9, 0.2]), torch.tensor([0.05, 0.06])]
    assert select_global(scores, 0.6) == [[1], [1]]  # 3 of 5 dropped; the second layer keeps one
    assert select_global(scores, 0.0) == [[0, 1, 2], [0, 1]]


def test_head_prune_save_reload_identical(tmp_path):
    pruner = method("head_prune", fraction=0.4, calibration_samples=8, batch_size=4)
    model = pruner.apply(tiny_model(), fake_ctx())
    reloaded = saved_and_reloaded(pruner, model, tmp_path)
    batch = eval_batch()
    assert torch.equal(logits(reloaded, batch), logits(model, batch))
    assert [layer_parts(l).attention.num_attention_heads for l in encoder_layers(reloaded)] == pruner.info["heads_per_layer"]


def test_head_prune_recover_calls_finetune():
    finetune = FakeFinetune(steps=1)
    pruner = method("head_prune", fraction=0.25, calibration_samples=4, batch_size=4, recover_epochs=1.5)
    assert type(pruner).needs_for(pruner.config) == "training"
    pruner.apply(tiny_model(), fake_ctx(finetune=finetune))
    assert finetune.calls == [1.5] and pruner.info["recovered_epochs"] == 1.5


# -- FFN -----------------------------------------------------------------------------------------


def test_ffn_slicing_equals_zeroing_the_neurons_output_columns():
    model = tiny_model()
    reference = copy.deepcopy(model)
    keep = list(range(0, FFN, 3))
    with torch.no_grad():
        dropped = [j for j in range(FFN) if j not in keep]
        layer_parts(encoder_layers(reference)[3]).ffn_out.weight[:, dropped] = 0
    keep_neurons(encoder_layers(model)[3], keep)
    batch = eval_batch()
    assert torch.allclose(logits(model, batch), logits(reference, batch), atol=1e-5)


@pytest.mark.parametrize("importance,scope", [("taylor", "global"), ("magnitude", "per_layer")])
def test_ffn_prune_shapes_params_and_reload(importance, scope, tmp_path):
    model = tiny_model()
    before = count_params(model)
    pruner = method("ffn_prune", fraction=0.25, importance=importance, scope=scope, calibration_samples=8, batch_size=4)
    model = pruner.apply(model, fake_ctx())
    sizes = pruner.info["intermediate_sizes"]
    assert sum(sizes) == LAYERS * FFN - LAYERS * FFN // 4
    if scope == "per_layer":
        assert sizes == [FFN - FFN // 4] * LAYERS
    assert count_params(model) == before - (LAYERS * FFN - sum(sizes)) * params_per_neuron()
    assert [layer_parts(l).ffn_in.out_features for l in encoder_layers(model)] == sizes
    reloaded = saved_and_reloaded(pruner, model, tmp_path)
    batch = eval_batch()
    assert torch.equal(logits(reloaded, batch), logits(model, batch))


# -- layers --------------------------------------------------------------------------------------


def test_layers_to_keep_strategies():
    assert layers_to_keep(12, 8, "top") == list(range(8))
    assert layers_to_keep(12, 8, "bottom") == list(range(4, 12))
    assert layers_to_keep(12, 8, "alternate") == [0, 1, 2, 3, 4, 6, 8, 10]  # drops 11, 9, 7, 5
    assert layers_to_keep(4, 1, "alternate") == [0]  # past half: continues with the even layers from the top


@pytest.mark.parametrize("strategy", ["top", "bottom", "alternate"])
def test_layer_drop_params_and_reload(strategy, tmp_path):
    model = tiny_model()
    before = count_params(model)
    dropper = method("layer_drop", keep_layers=None, drop=2, strategy=strategy)
    model = dropper.apply(model, fake_ctx())
    assert model.config.num_hidden_layers == LAYERS - 2 == len(encoder_layers(model))
    assert count_params(model) == before - 2 * params_per_layer()
    reloaded = saved_and_reloaded(dropper, model, tmp_path)
    batch = eval_batch()
    assert torch.equal(logits(reloaded, batch), logits(model, batch))


def test_layer_drop_top_equals_truncated_encoder():
    model, reference = tiny_model(), tiny_model()
    method("layer_drop", keep_layers=3, drop=None).apply(model, fake_ctx())
    reference.bert.encoder.layer = reference.bert.encoder.layer[:3]
    batch = eval_batch()
    assert torch.equal(logits(model, batch), logits(reference, batch))


def test_layer_drop_then_head_prune_reload(tmp_path):
    model = method("layer_drop", keep_layers=None, drop=1, strategy="bottom").apply(tiny_model(), fake_ctx())
    pruner = method("head_prune", fraction=0.5, calibration_samples=4, batch_size=4)
    model = pruner.apply(model, fake_ctx())
    assert len(getattr(model.config, SHAPES_KEY)) == LAYERS - 1
    reloaded = saved_and_reloaded(pruner, model, tmp_path)
    assert torch.equal(logits(reloaded, eval_batch()), logits(model, eval_batch()))


# -- config errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("head_prune", {"fraction": 1.0}, "method.fraction: must be in [0, 1), got 1.0"),
        ("head_prune", {"calibration_samples": 0}, "method.calibration_samples: must be >= 1, got 0"),
        ("ffn_prune", {"scope": "layer"}, "method.scope: unknown scope 'layer' (allowed: ('global', 'per_layer'))"),
        ("ffn_prune", {"importance": "random"}, "method.importance: unknown importance 'random' (allowed: ('taylor', 'magnitude'))"),
        ("layer_drop", {"keep_layers": 3}, "method.keep_layers: give exactly one of method.keep_layers and method.drop (set the other to null)"),
        ("layer_drop", {"drop": -1}, "method.drop: must be an integer >= 0, got -1"),
        ("layer_drop", {"strategy": "middle"}, "method.strategy: unknown strategy 'middle' (allowed: ('top', 'bottom', 'alternate'))"),
        ("layer_drop", {"recover_epochs": -1}, "method.recover_epochs: must be >= 0, got -1"),
    ],
)
def test_config_errors(name, params, message):
    with pytest.raises(ConfigError) as err:
        method(name, **params)
    assert str(err.value) == message


def test_layer_drop_too_many_layers_for_the_model():
    with pytest.raises(ConfigError) as err:
        method("layer_drop", keep_layers=None, drop=4).apply(tiny_model(), fake_ctx())
    assert str(err.value) == "method.drop: must leave between 1 and 4 of the model's 4 layers, got 4"
