"""Every registered method and recipe builds and describes itself: a survey category, a provenance,
its needs, its reference; and none is a YAML that repeats its defaults (methods.registry)."""

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from methods.base import NEEDS, PROVENANCES, SURVEY_CATEGORIES, Method, build_method, build_method_config, method_class
from harness.compose import CONF_DIR
from methods import registry

REGISTERED = registry.names()
SHIPPED_METHODS = {
    "baseline", "dynamic_int8", "static_int8", "fp16", "bf16", "weight_only_int8", "int4_weight_only", "fp8",
    "magnitude", "sparse_2of4", "head_prune", "ffn_prune", "layer_drop", "low_rank", "vocab_prune", "pipeline", "random_prune",
    "kd_logits", "kd_hidden", "kd_attention", "early_exit", "gradual_magnitude", "movement_prune", "qat_int8",
}
RECIPES = {"recipe_prune_int8", "recipe_kd_prune_int8", "recipe_gmp_kd_qat"}
SURVEY_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ganesh2021_table1.csv"  # ../shared beside the checkout

def test_every_shipped_method_and_recipe_is_registered():
    assert SHIPPED_METHODS | RECIPES <= set(REGISTERED)

@pytest.mark.parametrize("name", REGISTERED)
def test_registered_method_builds_and_describes_itself(name):
    raw = registry.preset_values(name)
    assert raw["name"] == name
    cls = method_class(raw["_target_"])
    assert cls.category in SURVEY_CATEGORIES and cls.provenance in PROVENANCES
    config = build_method_config(raw)
    assert cls.needs_for(config) in NEEDS
    described = build_method(config).describe()
    assert (described["category"], described["provenance"], described["name"]) == (cls.category, cls.provenance, name)
    json.dumps(described)  # the record must serialise
    # every method states the paper it follows, that paper's recipe, and compbench's deviations
    reference = described["reference"]
    assert reference is not None and reference["paper"] and reference["recipe"], f"{name} declares no reference"

def test_no_method_yaml_repeats_a_default():
    """Defaults live in the dataclasses alone: `method=<name>` composes from the registry."""
    assert not list((CONF_DIR / "method").glob("*.yaml"))

def test_a_name_registered_twice_for_two_classes_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_method("magnitude")(type("Impostor", (Method,), {"category": "Quantization",
                                                                            "config_class": method_class("methods.pruning.Magnitude").config_class}))

def test_defaults_follow_the_papers_where_this_machine_allows():
    from methods.base import RECOVERY_EPOCHS

    def defaults(name):
        return build_method_config(registry.preset_values(name))

    # magnitude and low-rank retrain on the one shared recovery budget; low-rank distils as Noach & Goldberg
    assert defaults("magnitude").recover_epochs == defaults("low_rank").recover_epochs == RECOVERY_EPOCHS > 0
    assert defaults("low_rank").distill
    assert build_method(defaults("magnitude")).needs_for(defaults("magnitude")) == "training"
    # movement pruning in Sanh et al.'s regime: from the pre-trained model, 3-15 % kept, distilled (alpha 0.9, T 2)
    movement = defaults("movement_prune")
    assert movement.start == "pretrained" and 0.85 <= movement.sparsity <= 0.97
    assert (movement.distill, movement.alpha, movement.temperature, movement.score_init) == (True, 0.9, 2.0, "constant")
    # PKD's beta grid {10, 100, 500, 1000}
    assert defaults("kd_hidden").beta in (10, 100, 500, 1000)
    # task-only distillation never passes for the published rows distilled during pre-training
    for name in ("kd_logits", "kd_hidden", "kd_attention"):
        assert not method_class(registry.preset_values(name)["_target_"]).reference.comparable_to_published
    assert "recipe_pruneofa" not in REGISTERED  # named for what it does (recipe_gmp_kd_qat)

def test_survey_categories_are_the_survey_tables():
    import csv

    from harness.report.published import survey_table

    packaged = set(survey_table()["category"])
    assert set(SURVEY_CATEGORIES) == packaged
    if SURVEY_CSV.exists():  # the reference copy in ../shared (CI and developers have it; a bare clone may not)
        with SURVEY_CSV.open() as handle:
            assert set(SURVEY_CATEGORIES) == {row["category"] for row in csv.DictReader(handle)}

class NoCategory(Method):
    """A method that forgot to declare its survey family."""

def test_a_method_without_a_category_is_refused():
    with pytest.raises(ConfigError, match="method._target_: 'test_methods_configs.NoCategory' declares no survey category"):
        method_class("test_methods_configs.NoCategory")

def test_a_category_outside_the_survey_is_refused_at_class_definition():
    with pytest.raises(TypeError, match="not a survey category"):
        type("Misfiled", (Method,), {"category": "Other"})

def test_needs_is_a_function_of_the_config_alone():
    from methods.pipeline import Pipeline

    def pipeline(steps, **params):
        return build_method_config({"_target_": "methods.pipeline.Pipeline", "name": "pipeline", "steps": steps, **params})

    eager_int8 = {"name": "dynamic_int8", "params": {"backend": "torch_ao"}}  # auto's pt2e traces on training inputs
    assert Pipeline.needs_for(pipeline(["layer_drop", eager_int8])) == "nothing"
    assert Pipeline.needs_for(pipeline(["layer_drop", {"name": "dynamic_int8", "params": {"backend": "pt2e"}}])) == "calibration"
    assert Pipeline.needs_for(pipeline(["head_prune", "dynamic_int8"])) == "calibration"
    assert Pipeline.needs_for(pipeline(["layer_drop"], recover_epochs=1)) == "training"
    assert Pipeline.needs_for(pipeline(["kd_logits", "dynamic_int8"])) == "training"
    layer_drop = method_class("methods.structured.LayerDrop")
    assert layer_drop.needs_for(build_method_config({"_target_": "methods.structured.LayerDrop", "recover_epochs": 0.5})) == "training"
    assert layer_drop.needs_for(build_method_config({"_target_": "methods.structured.LayerDrop"})) == "nothing"
