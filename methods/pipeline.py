"""Several methods applied in order, e.g. `method.steps=[layer_drop,head_prune,dynamic_int8]`.

A step is either the name of a registered method (methods.registry: its defaults), or a dict
`{name: <method name>, params: {...}}` / `{_target_: ..., name: ..., params: {...}}` overriding them.
Every step config is built (and validated) when the pipeline config is, so a bad step fails
before any model is loaded with a ConfigError naming `method.steps[i].<field>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from harness.errors import ConfigError, check
from harness.runtime_names import DEFAULT_RUNTIME
from methods.base import NEEDS, Method, MethodConfig, Reference, build_method, build_method_config, method_class, sum_budgets
from methods.registry import preset_values, register_method


def to_python_containers(value):
    """OmegaConf containers (what Hydra passes) -> plain Python lists and dicts."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:
        pass
    return value


def _registered_defaults(name: str, where: str) -> dict:
    """The parameters a registered method (or recipe) stands for (methods.registry)."""
    check(name != "pipeline", where, "pipelines cannot be nested")
    return preset_values(name, where)


def step_config(step, index: int) -> MethodConfig:
    where = f"method.steps[{index}]"
    step = to_python_containers(step)
    if isinstance(step, str):
        raw = _registered_defaults(step, where)
    elif isinstance(step, dict):
        unknown = set(step) - {"_target_", "name", "params"}
        check(not unknown, where, f"unknown keys {sorted(unknown)}", ["_target_", "name", "params"])
        check("_target_" in step or "name" in step, where, "needs a name (a registered method) or a _target_")
        raw = _registered_defaults(step["name"], where) if "_target_" not in step else {"_target_": step["_target_"], "name": step.get("name", step["_target_"].rpartition(".")[2])}
        raw.update(step.get("params") or {})
    else:
        raise ConfigError(where, f"must be a method name or a dict, got {type(step).__name__}")
    check(not raw.get("_target_", "").endswith(".Pipeline"), where, "pipelines cannot be nested")
    # The pipeline owns the recovery fine-tune (method.recover_epochs, run once before the first
    # weight-freezing step): a step recovers on its own only where its params say so, never by the
    # default a method has when it runs alone (magnitude, low_rank), or a compound would retrain twice.
    step_params = (step.get("params") or {}) if isinstance(step, dict) else {}
    if "recover_epochs" not in step_params:
        raw["recover_epochs"] = 0
    try:
        return build_method_config(raw)
    except ConfigError as err:
        problem = str(err)[len(err.field) + 2 :]
        field_name = where if err.field == "method" else f"{where}.{err.field.removeprefix('method.')}"
        raise ConfigError(field_name, problem) from None


@dataclass
class PipelineConfig(MethodConfig):
    _target_: str = "methods.pipeline.Pipeline"
    name: str = "pipeline"
    steps: list = field(default_factory=lambda: ["layer_drop", "head_prune", "dynamic_int8"])

    def __post_init__(self):
        super().__post_init__()
        self.steps = to_python_containers(self.steps)
        check(isinstance(self.steps, list) and len(self.steps) > 0, "method.steps", "must be a non-empty list of method names or dicts")
        self.step_configs = [step_config(step, i) for i, step in enumerate(self.steps)]


@register_method("pipeline")
class Pipeline(Method):
    config_class = PipelineConfig
    reference = Reference(
        paper='compound of its steps (each step cites its own paper)',
        recipe='the steps run in order, quantization last; an optional recovery fine-tune before the first weight-freezing step',
        changes='no single paper: compare its steps with their own references',
    )
    category = "Compound"
    needs = "training"  # the most any step may need; needs_for(config) is exact

    def __init__(self, config):
        super().__init__(config)
        self.steps: list[Method] = [build_method(c) for c in config.step_configs]
        for step in self.steps:
            step.in_pipeline = True
        devices = [d for d in ("cpu", "cuda") if all(d in s.devices for s in self.steps)]
        self.devices = tuple(devices)
        # one input-dependent step (early exit) makes the whole model's cost depend on the input
        self.input_dependent_compute = any(step.input_dependent_compute for step in self.steps)

    @classmethod
    def needs_for(cls, config, in_pipeline: bool = False) -> str:
        if config.recover_epochs > 0:
            return "training"
        return max((method_class(c._target_).needs_for(c, in_pipeline=True) for c in config.step_configs), key=NEEDS.index)

    def unsupported_reason(self, hardware) -> Optional[str]:
        for i, step in enumerate(self.steps):
            reason = step.unsupported_reason(hardware)
            if reason:
                return f"step {i} ({step.config.name}): {reason}"
        return None

    def apply(self, model, ctx):
        return self.apply_for_runtime(model, ctx, DEFAULT_RUNTIME)[0]

    def apply_for_runtime(self, model, ctx, runtime):
        """Every step in order. On onnxruntime/openvino the last step may hand its quantization to the
        runtime's own quantizer (runtime_unsupported_reason allows that on the last step only), so the
        float steps before it shape the model the runtime converts and quantizes."""
        recovered, quantization = False, None
        for step in self.steps:
            if step.freezes_weights and not recovered:
                model, recovered = self.recover(model, ctx), True  # fine-tune before weights freeze
            quantization = step.runtime_quantization(runtime, ctx)
            if quantization is None:
                model = step.apply(model, ctx)
        if not recovered:
            model = self.recover(model, ctx)
        self.info["steps"] = [step.describe() for step in self.steps]
        self.sparse = any(step.sparse for step in self.steps)  # the runner reports sparse bytes then
        return model, quantization

    def spent_budget(self):
        """The pipeline's own recovery plus every step's training: what the compound cost to train."""
        return sum_budgets([super().spent_budget(), *(step.spent_budget() for step in self.steps)])

    def runtime_unsupported_reason(self, runtime):
        if runtime == DEFAULT_RUNTIME:
            return None
        for i, step in enumerate(self.steps):
            reason = step.runtime_unsupported_reason(runtime)
            if reason:
                return f"step {i} ({step.config.name}): {reason}"
            if step.freezes_weights and i < len(self.steps) - 1:
                return (f"unsupported on runtime {runtime}: step {i} ({step.config.name}) quantizes or casts before the last step; "
                        "the runtime's quantizer can only take the pipeline's last step")
        return None

    def save(self, model, directory: str) -> None:
        # the last step knows the final tensor format; structural records travel in model.config
        self.steps[-1].save(model, directory)
