from pathlib import Path

import pytest
import torch
from methods_helpers import HEADS, LAYERS, FakeFinetune, eval_batch, fake_ctx, logits, saved_and_reloaded, tiny_model
from omegaconf import OmegaConf

import methods.quantization as quantization
from harness.config import HardwareConfig
from harness.errors import ConfigError
from methods.base import build_method, build_method_config
from methods.anatomy import encoder_layers, layer_parts
from harness.compose import CONF_DIR



def pipeline(steps, **params):
    return build_method(build_method_config({"_target_": "methods.pipeline.Pipeline", "name": "pipeline", "steps": steps, **params}))


EAGER_INT8 = {"name": "dynamic_int8", "params": {"compile": False}}  # the default backend, without the compile cost


def small(name, **params):
    # the YAML defaults calibrate on 256 samples; 8 keep the test fast
    return {"name": name, "params": {"calibration_samples": 8, "batch_size": 4, **params}}


def test_default_yaml_steps_apply_and_reload(tmp_path):
    method = pipeline(["layer_drop", small("head_prune", fraction=0.5), EAGER_INT8])
    model = method.apply(tiny_model(), fake_ctx())
    assert [s["name"] for s in method.info["steps"]] == ["layer_drop", "head_prune", "dynamic_int8"]
    assert method.info["steps"][0]["kept_layers"] == [0, 1]
    assert method.info["steps"][2]["backend"] == quantization.resolve_int8_backend("auto", in_pipeline=True)
    assert len(encoder_layers(model)) == LAYERS - 2
    assert type(method).needs_for(method.config) == "calibration" and method.devices == ("cpu",)
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert torch.equal(logits(reloaded, eval_batch()), logits(model, eval_batch()))


def test_every_structural_record_survives_one_reload(tmp_path):
    steps = ["vocab_prune", small("ffn_prune", fraction=0.25), small("head_prune", fraction=0.25), "low_rank", {"name": "layer_drop", "params": {"drop": 1, "strategy": "alternate"}}, {"name": "low_rank", "params": {"rank": 4}}]
    method = pipeline(steps)
    model = method.apply(tiny_model(), fake_ctx())
    reloaded = saved_and_reloaded(method, model, tmp_path)
    assert torch.equal(logits(reloaded, eval_batch()), logits(model, eval_batch()))


def test_hydra_list_of_names_and_dict_params():
    steps = OmegaConf.create(["layer_drop", {"name": "magnitude", "params": {"sparsity": 0.9}}])
    method = pipeline(steps)
    assert [s.config.name for s in method.steps] == ["layer_drop", "magnitude"]
    assert method.steps[1].config.sparsity == 0.9


def test_command_line_override_composes():
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs, to_cell_config

    register_configs()  # the hardware yaml extends a ConfigStore schema
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=["method=pipeline", "method.steps=[layer_drop,head_prune,dynamic_int8]"])
    cell = to_cell_config(cfg)
    assert [c.name for c in cell.method.step_configs] == ["layer_drop", "head_prune", "dynamic_int8"]


def test_a_changed_step_default_changes_the_cells_hash(monkeypatch):
    """Steps named without params run with their registered defaults; the hash covers those resolved values,
    so a changed default (dynamic_int8's backend became `auto`) re-measures the cell instead of resuming."""
    import methods.pipeline as pipeline_module
    from harness.compose import compose_cell
    from harness.runner import config_hash

    overrides = ["method=pipeline", "method.steps=[layer_drop,dynamic_int8]"]
    before = config_hash(compose_cell(overrides), {})
    registered_defaults = pipeline_module._registered_defaults

    def other_backend(name, where):
        raw = registered_defaults(name, where)
        return {**raw, "backend": "torch_ao"} if name == "dynamic_int8" else raw

    monkeypatch.setattr(pipeline_module, "_registered_defaults", other_backend)
    changed = compose_cell(overrides)
    assert changed.method.steps == ["layer_drop", "dynamic_int8"]  # the command line is the same
    assert config_hash(changed, {}) != before


def test_unsupported_when_any_step_is():
    method = pipeline(["head_prune", "sparse_2of4"])
    assert method.unsupported_reason(HardwareConfig(device="cpu")) == "step 1 (sparse_2of4): unsupported on cpu: no 2:4 sparse kernels on CPU"


def test_recovery_runs_before_quantization():
    finetune = FakeFinetune(steps=1)
    method = pipeline(["layer_drop", "dynamic_int8"], recover_epochs=2)
    assert type(method).needs_for(method.config) == "training"
    method.apply(tiny_model(), fake_ctx(finetune=finetune))  # FakeFinetune would fail on int8 weights
    assert finetune.calls == [2]


@pytest.mark.parametrize(
    "steps,message",
    [
        (["layer_drop", "nope"], "method.steps[1]: unknown method 'nope' (allowed: "),
        ([{"name": "magnitude", "params": {"sparsity": 1.5}}], "method.steps[0].sparsity: must be in [0, 1), got 1.5"),
        ([{"name": "magnitude", "sparsity": 0.5}], "method.steps[0]: unknown keys ['sparsity'] (allowed: ['_target_', 'name', 'params'])"),
        ([], "method.steps: must be a non-empty list of method names or dicts"),
        (["pipeline"], "method.steps[0]: pipelines cannot be nested"),
        (["magnitud"], "method.steps[0]: unknown method 'magnitud'; did you mean magnitude? (allowed: "),
    ],
)
def test_config_errors(steps, message):
    with pytest.raises(ConfigError) as err:
        pipeline(steps)
    assert str(err.value).startswith(message)


def test_head_prune_after_low_rank_is_refused():
    with pytest.raises(ConfigError, match="run low_rank after it"):
        pipeline([{"name": "low_rank", "params": {"rank": 4}}, small("head_prune")]).apply(tiny_model(), fake_ctx())


def test_heads_kept_after_pipeline_are_original_ids():
    method = pipeline([small("head_prune", fraction=0.25), small("head_prune", fraction=0.25)])
    model = method.apply(tiny_model(), fake_ctx())
    kept = model.config.compbench_kept_heads
    assert all(set(k) <= set(range(HEADS)) for k in kept)
    assert [len(k) for k in kept] == [layer_parts(l).num_heads for l in encoder_layers(model)]


def tiny_distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=200, dim=64, n_layers=4, n_heads=4, hidden_dim=128, max_position_embeddings=64, num_labels=2)
    return DistilBertForSequenceClassification(config).eval()


def tiny_qa():
    from transformers import BertForQuestionAnswering

    from methods_helpers import tiny_config

    torch.manual_seed(0)
    return BertForQuestionAnswering(tiny_config()).eval()


def qa_batches(num_samples, batch_size):
    from methods_helpers import fake_batches

    batches = fake_batches(num_samples, batch_size)
    for batch in batches:
        n = len(batch.pop("labels"))
        batch["start_positions"], batch["end_positions"] = torch.randint(0, 16, (n,)), torch.randint(0, 16, (n,))
    return batches


@pytest.mark.parametrize("family", ["distilbert", "qa"])
def test_other_families_through_every_structural_step(family, tmp_path):
    model = tiny_distilbert() if family == "distilbert" else tiny_qa()
    ctx = fake_ctx()
    if family == "qa":
        ctx.calibration_batches = qa_batches
    steps = ["vocab_prune", small("ffn_prune", fraction=0.3), small("head_prune", fraction=0.3), {"name": "layer_drop", "params": {"drop": 1}}, {"name": "low_rank", "params": {"rank": 8}}, EAGER_INT8]
    method = pipeline(steps)
    model = method.apply(model, ctx)
    assert len(encoder_layers(model)) == LAYERS - 1
    batch = eval_batch()
    if family == "distilbert":
        batch.pop("token_type_ids")
    output_key = "logits" if family == "distilbert" else "start_logits"
    reloaded = saved_and_reloaded(method, model, tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch)[output_key], model(**batch)[output_key])


def only_float_linears(model) -> bool:
    linears = [m for m in model.modules() if "Linear" in type(m).__name__]
    return bool(linears) and all(type(m) is torch.nn.Linear and type(m.weight) is torch.nn.Parameter for m in linears)


def test_on_a_runtime_the_float_steps_shape_the_model_and_the_last_int8_step_goes_to_its_quantizer():
    method = pipeline(["layer_drop", small("head_prune", fraction=0.5), EAGER_INT8])
    assert method.runtime_unsupported_reason("onnxruntime") is None
    model, quantization = method.apply_for_runtime(tiny_model(), fake_ctx(), "onnxruntime")
    assert quantization.scheme == "int8_dynamic"
    assert len(encoder_layers(model)) == LAYERS - 2  # the float steps ran
    assert only_float_linears(model)  # quantizing is left to the runtime
    assert [s["name"] for s in method.info["steps"]] == ["layer_drop", "head_prune", "dynamic_int8"]
    assert method.info["steps"][2]["backend"] == "onnxruntime"
    # on PyTorch the same pipeline quantizes itself and hands nothing on
    torch_model, none = pipeline(["layer_drop", EAGER_INT8]).apply_for_runtime(tiny_model(), fake_ctx(), "pytorch")
    assert none is None and not only_float_linears(torch_model)


@pytest.mark.parametrize("steps, problem", [
    ([EAGER_INT8, "layer_drop"], "step 0 (dynamic_int8) quantizes or casts before the last step"),
    (["layer_drop", "weight_only_int8"], "step 1 (weight_only_int8): unsupported on runtime onnxruntime"),
])
def test_a_runtime_refuses_pipelines_it_cannot_quantize(steps, problem):
    method = pipeline(steps)
    assert problem in method.runtime_unsupported_reason("onnxruntime")
    assert method.runtime_unsupported_reason("pytorch") is None


def test_a_pipelines_int8_step_keeps_an_hf_model_where_a_cell_of_its_own_gets_pt2e(monkeypatch):
    """auto on a VNNI/AMX CPU: pt2e for a dynamic_int8 cell (fastest, needs a traced batch), torchao as
    a pipeline step (the steps around it need an HF model), and the plan's needs say so exactly."""
    monkeypatch.setattr(quantization, "cpu_flags", lambda: {"avx512_vnni", "amx_int8"})
    method = pipeline(["layer_drop", EAGER_INT8])
    assert type(method).needs_for(method.config) == "nothing"
    method.apply(tiny_model(), fake_ctx())
    assert method.info["steps"][1]["backend"] == "torchao"
    assert "pipeline step" in method.info["steps"][1]["backend_choice"]
