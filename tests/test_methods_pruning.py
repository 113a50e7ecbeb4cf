import pytest
import torch
from methods_helpers import FakeFinetune, eval_batch, fake_ctx, logits, saved_and_reloaded, tiny_model

from harness.config import HardwareConfig
from harness.errors import ConfigError
from methods.base import build_method, build_method_config
from methods.pruning import apply_2of4_masks, prunable_tensors, two_of_four_mask
from methods.anatomy import encoder_linear_names


def magnitude(**params):
    # the pruning alone (one-shot) unless a test asks for recovery: the default retrains (RECOVERY_EPOCHS)
    params = {"recover_epochs": 0, **params}
    return build_method(build_method_config({"_target_": "methods.pruning.Magnitude", "name": "magnitude", **params}))


def weights(model, include_embeddings=False):
    return [m.weight for _, m in prunable_tensors(model, include_embeddings)]


def test_global_magnitude_hits_the_target_with_one_threshold():
    model = tiny_model()
    classifier = model.classifier.weight.clone()
    method = magnitude(sparsity=0.6)
    model = method.apply(model, fake_ctx())
    tensors = weights(model)
    total = sum(w.numel() for w in tensors)
    zeros = sum(int((w == 0).sum()) for w in tensors)
    assert zeros == round(0.6 * total)
    assert method.info["achieved_sparsity"] == pytest.approx(zeros / total)
    assert method.sparse is True and method.describe()["sparse"] is True and method.info["latency_note"] == "dense kernels: zeros are still multiplied"
    kept_min = min(w[w != 0].abs().min() for w in tensors)
    original = weights(tiny_model())
    pruned_max = max(o[w == 0].abs().max() for o, w in zip(original, tensors))
    assert pruned_max <= kept_min  # a single global |w| threshold
    assert torch.equal(model.classifier.weight, classifier)
    assert not any(name.endswith("weight_orig") for name, _ in model.named_parameters())  # masks baked in


def test_per_layer_scope_prunes_each_tensor_equally():
    model = magnitude(sparsity=0.3, scope="per_layer").apply(tiny_model(), fake_ctx())
    for w in weights(model):
        assert int((w == 0).sum()) == round(0.3 * w.numel())


def test_embeddings_only_when_asked():
    def zeros(model):
        return int((model.bert.embeddings.word_embeddings.weight == 0).sum())

    padding_zeros = zeros(tiny_model())  # the [PAD] row starts at zero
    model = magnitude(sparsity=0.5).apply(tiny_model(), fake_ctx())
    assert zeros(model) == padding_zeros
    method = magnitude(sparsity=0.5, include_embeddings=True)
    model = method.apply(tiny_model(), fake_ctx())
    assert method.info["pruned_tensors"] == len(encoder_linear_names(model)) + 3  # word, position, token type
    assert zeros(model) > padding_zeros


def test_masks_hold_through_recovery_fine_tune():
    finetune = FakeFinetune(steps=2)
    method = magnitude(sparsity=0.5, recover_epochs=1)
    assert type(method).needs_for(method.config) == "training"
    model = method.apply(tiny_model(), fake_ctx(finetune=finetune))
    assert finetune.calls == [1]
    tensors = weights(model)
    assert sum(int((w == 0).sum()) for w in tensors) == round(0.5 * sum(w.numel() for w in tensors))


def test_save_reload_identical(tmp_path):
    method = magnitude(sparsity=0.7)
    model = method.apply(tiny_model(), fake_ctx())
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert torch.equal(logits(reloaded, eval_batch()), logits(model, eval_batch()))


def test_two_of_four_mask_keeps_the_two_largest_of_every_four():
    weight = torch.tensor([[0.1, -4.0, 3.0, 0.2, 1.0, 2.0, -5.0, 0.0]])
    assert two_of_four_mask(weight).tolist() == [[False, True, True, False, False, True, True, False]]
    torch.manual_seed(0)
    mask = two_of_four_mask(torch.randn(16, 32))
    assert (mask.view(16, 8, 4).sum(-1) == 2).all()
    with pytest.raises(ValueError):
        two_of_four_mask(torch.randn(4, 6))


def test_2of4_masks_on_cpu_model():
    model = tiny_model()
    masked, skipped = apply_2of4_masks(model)
    assert len(masked) == len(encoder_linear_names(model)) and not skipped
    for name in masked:
        w = model.get_submodule(name).weight
        assert ((w != 0).view(w.shape[0], -1, 4).sum(-1) <= 2).all()
        assert int((w == 0).sum()) == w.numel() // 2


def test_2of4_is_unsupported_on_cpu():
    method = build_method(build_method_config({"_target_": "methods.pruning.Sparse2of4", "name": "sparse_2of4"}))
    assert method.unsupported_reason(HardwareConfig(device="cpu")) == "unsupported on cpu: no 2:4 sparse kernels on CPU"


@pytest.mark.parametrize(
    "params,message",
    [
        ({"sparsity": 1.5}, "method.sparsity: must be in [0, 1), got 1.5"),
        ({"sparsity": -0.1}, "method.sparsity: must be in [0, 1), got -0.1"),
        ({"scope": "local"}, "method.scope: unknown scope 'local' (allowed: ('global', 'per_layer'))"),
        ({"density": 0.5}, "method.density: is not a parameter of magnitude (allowed: ['include_embeddings', 'name', 'recover_epochs', 'scope', 'sparsity'])"),
    ],
)
def test_config_errors(params, message):
    with pytest.raises(ConfigError) as err:
        magnitude(**params)
    assert str(err.value) == message


def test_2of4_config_error():
    with pytest.raises(ConfigError) as err:
        build_method_config({"_target_": "methods.pruning.Sparse2of4", "name": "sparse_2of4", "dtype": "float32"})
    assert str(err.value) == "method.dtype: unknown dtype 'float32' (allowed: ('float16', 'bfloat16'))"


def test_random_pruning_control_hits_the_sparsity_without_the_magnitude_criterion():
    # ShrinkBench's control: same sparsity and recovery as magnitude, weights chosen at random (seeded)
    random_control = build_method(build_method_config({"_target_": "methods.pruning.RandomPrune", "name": "random_prune",
                                                       "sparsity": 0.6, "recover_epochs": 0}))
    model = random_control.apply(tiny_model(), fake_ctx())
    tensors, original = weights(model), weights(tiny_model())
    total = sum(w.numel() for w in tensors)
    assert sum(int((w == 0).sum()) for w in tensors) == round(0.6 * total)
    kept_min = min(w[w != 0].abs().min() for w in tensors)
    pruned_max = max(o[w == 0].abs().max() for o, w in zip(original, tensors))
    assert pruned_max > kept_min  # not a magnitude threshold
    again = weights(random_control.apply(tiny_model(), fake_ctx()))
    assert all(torch.equal(a == 0, b == 0) for a, b in zip(tensors, again))  # the same seed draws the same mask
    assert random_control.describe()["reference"]["paper"].startswith("Blalock")
