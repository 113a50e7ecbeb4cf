import pytest
import torch
from methods_helpers import FFN, HIDDEN, LAYERS, count_params, eval_batch, fake_ctx, logits, saved_and_reloaded, tiny_model

from harness.errors import ConfigError
from methods.base import build_method, build_method_config
from methods.anatomy import encoder_linear_names
from methods.decomposition import LOW_RANK_KEY, LowRankLinear, energy_rank, reduces_parameters


def low_rank(**params):
    # the factorisation alone (one-shot); the default's distillation recovery: test_methods_training.py
    params = {"recover_epochs": 0, **params}
    return build_method(build_method_config({"_target_": "methods.decomposition.LowRank", "name": "low_rank", **params}))


def test_full_rank_factorisation_reproduces_the_layer():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 16)
    x = torch.randn(5, 24)
    assert torch.allclose(LowRankLinear.from_linear(linear, 16)(x), linear(x), atol=1e-5)


def test_truncation_is_the_best_rank_r_approximation():
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 32, bias=False)
    approx = LowRankLinear.from_linear(linear, 4)
    product = approx.up.weight @ approx.down.weight
    s = torch.linalg.svdvals(linear.weight.detach())
    # Eckart-Young: the Frobenius error is the energy of the dropped singular values
    assert torch.allclose((linear.weight - product).norm(), s[4:].norm(), atol=1e-4)


def test_energy_rank_and_break_even():
    assert energy_rank(torch.tensor([2.0, 1.0, 1.0]), 0.6) == 1  # 4/6 of the energy in the first value
    assert energy_rank(torch.tensor([2.0, 1.0, 1.0]), 0.7) == 2
    assert energy_rank(torch.tensor([2.0, 1.0, 1.0]), 1.0) == 3
    assert reduces_parameters(31, 64, 64) and not reduces_parameters(32, 64, 64)  # 64*64/128 = 32


def test_rank_8_shapes_and_params():
    model = tiny_model()
    before = count_params(model)
    method = low_rank(rank=8)
    model = method.apply(model, fake_ctx())
    r = 8
    attention_saving = 4 * (HIDDEN * HIDDEN - r * 2 * HIDDEN)  # Q, K, V, O; biases unchanged
    ffn_saving = 2 * (HIDDEN * FFN - r * (HIDDEN + FFN))
    assert count_params(model) == before - LAYERS * (attention_saving + ffn_saving)
    assert len(method.info["ranks"]) == 6 * LAYERS and not method.info["skipped"]
    query = model.bert.encoder.layer[0].attention.self.query
    assert isinstance(query, LowRankLinear) and query.down.weight.shape == (r, HIDDEN) and query.up.weight.shape == (HIDDEN, r)
    logits(model, eval_batch())


def test_ranks_that_save_nothing_are_skipped():
    # 64x64 breaks even at 32, 64x128 at 42.7: rank 40 factorises only the FFN layers
    method = low_rank(rank=40)
    model = method.apply(tiny_model(), fake_ctx())
    assert len(method.info["ranks"]) == 2 * LAYERS
    assert len(method.info["skipped"]) == 4 * LAYERS
    assert all(n.endswith(".intermediate.dense") or (n.endswith(".output.dense") and ".attention." not in n) for n in method.info["ranks"])
    assert getattr(model.config, LOW_RANK_KEY) == method.info["ranks"]


def test_energy_one_keeps_everything_dense():
    method = low_rank(rank=None, energy=1.0)
    model = method.apply(tiny_model(), fake_ctx())
    assert method.info["factorised_layers"] == 0
    assert all(isinstance(model.get_submodule(n), torch.nn.Linear) for n in encoder_linear_names(model))


def test_save_reload_identical(tmp_path):
    method = low_rank(rank=None, energy=0.5)
    model = method.apply(tiny_model(), fake_ctx())
    assert method.info["factorised_layers"] > 0
    reloaded = saved_and_reloaded(method, model, tmp_path)
    batch = eval_batch()
    assert torch.equal(logits(reloaded, batch), logits(model, batch))


@pytest.mark.parametrize(
    "params,message",
    [
        ({"rank": 0}, "method.rank: must be an integer >= 1, got 0"),
        ({"rank": 8, "energy": 0.9}, "method.rank: give exactly one of method.rank and method.energy (set the other to null)"),
        ({"rank": None, "energy": 0.0}, "method.energy: must be in (0, 1], got 0.0"),
        ({"rank": None, "energy": 1.5}, "method.energy: must be in (0, 1], got 1.5"),
    ],
)
def test_config_errors(params, message):
    with pytest.raises(ConfigError) as err:
        low_rank(**params)
    assert str(err.value) == message
