"""A record's label, decided when the record is written and never re-derived from later code.

The user chose a preset (a registered name, methods.registry: a method at its defaults, such as
`magnitude`, or a named recipe, such as `recipe_prune_int8`) and maybe changed some of its
parameters. The record's `method.label` says which preset, what changed from it, and a short label
for Table 1 (at most MAX_LENGTH characters). Left out of `changed`: the per-task training-data
budget (a cell trained on a subset is marked ᵗ instead) and parameters that have no effect on the
runtime used (an int8 step's PyTorch backend when ONNX Runtime's own quantizer ran). Because the
report reads the label from the record, a default changed in code later neither relabels nor splits
an old row; `harness.record_migration` labelled the records written before labels existed.

    magnitude                      a preset at its defaults
    magnitude (sparsity=0.7)       a parameter changed
    ld+int8 (recover_epochs=1) [ort]   a compound given on the command line: named by its steps
    kd+hp+ffn+int8 #3fa1 [ort]     too long with its parameters: the legend gives them in full
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Optional

MAX_LENGTH = 40
NOT_PARAMETERS = ("_target_", "name")
# How many of the task's training examples a method trains on is a per-task budget, not a variant:
# one method's row spans tasks whose budgets differ (SST-2's 20k subset beside the small tasks).
DATA_BUDGET = ("train_samples",)
RUNTIME_TAGS = {"onnxruntime": "ort", "openvino": "ov"}
# Shorter names of the parameters that vary most, tried when the full names do not fit.
SHORT_KEYS = {"recover_epochs": "rec", "sparsity": "s", "fraction": "f", "student_layers": "layers", "epochs": "ep",
              "learning_rate": "lr", "keep_layers": "keep", "temperature": "T", "calibration_samples": "calib",
              "include_embeddings": "emb", "threshold": "thr", "backend": "be", "compile": "cmp"}


def record_label(method_config: dict, runtime: str = "pytorch") -> dict:
    """The record's `method.label` (harness.record.LabelSection) for a method config as recorded."""
    preset = str(method_config.get("name") or method_config.get("_target_", "?").rpartition(".")[2])
    cls = _method_class(method_config.get("_target_"))
    changed = changed_from_preset(method_config, preset, cls, runtime)
    abbreviation = (cls.abbreviation if cls is not None else "") or preset
    return {"preset": preset, "changed": changed, "short": short_label(preset, changed, runtime, abbreviation)}


def changed_from_preset(method_config: dict, preset: str, cls, runtime: str) -> dict:
    ignored = _without_effect(cls, runtime)
    base = preset_values(preset, cls)
    changed = {}
    for key, value in method_config.items():
        if key in NOT_PARAMETERS or key in DATA_BUDGET or key in ignored:
            continue
        if key == "steps":
            value = [_step(step, runtime) for step in value or []]
            if key in base and _same([_step(s, runtime) for s in base[key] or []], value):
                continue
        elif key in base and _same(base[key], value):
            continue
        changed[key] = value
    return changed


def preset_values(preset: str, cls) -> dict:
    """The preset's parameters (methods.registry); for a name no longer registered, the defaults of
    the config dataclass of the class its record names."""
    from methods import registry

    if registry.target_of(preset) is not None:
        return registry.preset_values(preset)
    return dataclasses.asdict(cls.config_class()) if cls is not None else {}


def short_label(preset: str, changed: dict, runtime: str, abbreviation: str = "") -> str:
    """The first that fits MAX_LENGTH of: the preset's name with every change under its full key;
    with short keys; the method's abbreviation with short keys; the abbreviation (a compound: its
    steps' abbreviations) and a 4-character digest of the change, cut to fit (the legend gives the
    change in full)."""
    tag = f" [{RUNTIME_TAGS.get(runtime, runtime)}]" if runtime != "pytorch" else ""
    rest = {k: v for k, v in changed.items() if k != "steps"}
    steps = changed.get("steps")
    abbreviation = abbreviation or preset
    candidates = []
    for name, keys, separator in ((preset, {}, ", "), (preset, SHORT_KEYS, ","), (abbreviation, SHORT_KEYS, ",")):
        if steps:  # a compound given on the command line: named by its steps
            name = "+".join(_step_text(s, keys) for s in steps)
        candidates.append(name + (f" ({_pairs(rest, keys, separator)})" if rest else "") + tag)
    fitting = next((c for c in candidates if len(c) <= MAX_LENGTH), None)
    if fitting:
        return fitting
    digest = " #" + hashlib.sha1(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:4]
    name = "+".join(_abbreviation(s) for s in steps) if steps else abbreviation
    return name[: MAX_LENGTH - len(digest) - len(tag)] + digest + tag


def _step(step: Any, runtime: str) -> dict:
    """A pipeline step as {name, params}: params without the data budget and without what has no
    effect on `runtime`."""
    if isinstance(step, str):
        step = {"name": step}
    name = step.get("name") or str(step.get("_target_", "?")).rpartition(".")[2]
    ignored = _without_effect(_method_class(step.get("_target_") or _preset_target(name)), runtime)
    params = {k: v for k, v in (step.get("params") or {}).items() if k not in DATA_BUDGET and k not in ignored}
    return {"name": name, "params": params}


def _without_effect(cls, runtime: str) -> set:
    """Parameters that select PyTorch kernels only: nothing on another runtime (Method.pytorch_only_parameters)."""
    return set(cls.pytorch_only_parameters) if cls is not None and runtime != "pytorch" else set()


def _preset_target(name: str) -> Optional[str]:
    from methods import registry

    return registry.target_of(name)


def _abbreviation(step: dict) -> str:
    cls = _method_class(_preset_target(step["name"]))
    return (cls.abbreviation if cls is not None else "") or step["name"]


def _step_text(step: dict, keys: dict) -> str:
    params = step.get("params")
    return _abbreviation(step) + (f"({_pairs(params, keys, ',')})" if params else "")


def _pairs(values: dict, keys: dict, separator: str) -> str:
    return separator.join(f"{keys.get(k, k)}={_short(v)}" for k, v in sorted(values.items()))


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"  # as a command line writes it
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _method_class(target: Optional[str]):
    """The method class a config names, or None (a record of a method no longer importable)."""
    from harness.errors import ConfigError
    from methods.base import method_class

    if not isinstance(target, str) or "." not in target:
        return None
    try:
        return method_class(target)
    except ConfigError:
        return None
