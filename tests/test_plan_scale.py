"""Planning a sweep composes each group choice once (harness.compose.compose_sweep_cell), and the
config it builds is the one Hydra composes for the cell, for every choice of every group."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.compose import GROUPS, available, compose_raw, compose_sweep_cell
from harness.config import register_configs
from harness.errors import ConfigError

register_configs()


def _both(overrides) -> tuple[dict, dict]:
    """(the sweep path's config, Hydra's own composition) of one cell, unresolved."""
    return (OmegaConf.to_container(compose_sweep_cell(overrides), resolve=False),
            OmegaConf.to_container(compose_raw(overrides), resolve=False))


@pytest.mark.parametrize("group", GROUPS)
def test_every_choice_of_every_group_composes_as_hydra_does(group):
    for choice in available(group):
        fast, reference = _both([f"{group}={choice}"])
        assert fast == reference, choice
        assert fast[group] != {}  # the group's node is really there


@pytest.mark.parametrize("overrides", [
    ["method=magnitude", "method.sparsity=0.3", "task=mrpc", "seed=3"],
    ["task=stsb", "task.finetune.epochs=1", "hardware.batch_sizes=[1,8]", "run_name=x", "+method.extra=1", "model=local"],
    ["method=pipeline", "~measure.flops", "++paths.cache_dir=/tmp/c", "memory_limit_gb=2"],
    ["method=recipe_prune_int8", "runtime=onnxruntime", "runtime.opset=18", "model=bert_base_uncased", "model.init=random"],
])
def test_values_on_top_of_choices_compose_as_hydra_does(overrides):
    fast, reference = _both(overrides)
    assert fast == reference


def test_the_same_errors_as_hydra_name_the_field(compose):
    with pytest.raises(ConfigError) as bad_key:
        compose("method=magnitude", "method.sparsty=0.3")
    assert bad_key.value.field == "method.sparsty" and "did you mean method.sparsity" in str(bad_key.value)
    with pytest.raises(ConfigError) as bad_type:
        compose("task.finetune.epochs=abc")
    assert bad_type.value.field == "task.finetune.epochs"
