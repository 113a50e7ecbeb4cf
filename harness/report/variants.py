"""What makes one configuration of a method different from another, for rows, labels and curves.

A sweep (`compbench -m method=magnitude method.sparsity=0.3,0.6,0.9`) writes one record per
configuration; each is its own row, labelled by the parameters that differ from the method's
dataclass defaults, e.g. `magnitude (sparsity=0.6)`. Records that differ only in seed share a
`setting` (and a label) and are aggregated; a re-run of the very same configuration shares the
config hash and replaces the older record (see load.py).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Optional

# Not part of what a configuration *is*: where files go, run flags, and the seed (seeds aggregate).
NOT_SETTING = ("paths", "force", "isolate", "run_name", "allow_concurrent_latency", "seed")
NOT_PARAMETERS = ("_target_", "name")
# How many of the task's training examples a method trains on is a per-task budget, not a variant of
# the method: left out of labels so one method's row spans tasks whose budgets differ (SST-2's 20k
# subset beside the small tasks' full splits); a cell trained on a subset is marked instead (ᵗ).
DATA_BUDGET = ("train_samples",)
UNKNOWN = object()  # a default the source does not state as a literal: never reported as changed


def setting_key(config: dict) -> str:
    """Hash of everything in the record's config but paths, run flags and the seed."""
    semantic = {k: v for k, v in (config or {}).items() if k not in NOT_SETTING}
    finetune = (semantic.get("task") or {}).get("finetune") or {}
    if finetune.get("precision") == "fp32":  # records from before the field existed hold none: the same setting
        semantic["task"] = {**semantic["task"], "finetune": {k: v for k, v in finetune.items() if k != "precision"}}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def method_defaults(target: str) -> Optional[dict]:
    """The method config dataclass's defaults, or None when they cannot be found.

    Read from the class when its module is already imported; otherwise from the module's source
    (ast), because importing a method module imports torch and transformers, which would cost the
    report many seconds for a handful of literals."""
    module_name, _, class_name = target.rpartition(".")
    module = sys.modules.get(module_name)
    if module is not None and hasattr(getattr(module, class_name, None), "config_class"):
        return _defaults_of_dataclass(getattr(module, class_name).config_class)
    try:
        return _defaults_from_source(module_name, class_name)
    except (ImportError, OSError, SyntaxError, ValueError, AttributeError):
        return None


def _defaults_of_dataclass(config_class) -> dict:
    defaults = {}
    for field in dataclasses.fields(config_class):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


@functools.lru_cache(maxsize=None)
def _module_source(module_name: str) -> tuple[dict, dict]:
    """(class name -> ClassDef, imported name -> module) of a module, without importing it."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin:
        raise ImportError(module_name)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    imported = {alias.asname or alias.name: node.module for node in tree.body
                if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    constants = {}
    for node in tree.body:  # module-level NAME = literal, e.g. DEFAULT_INT8_BACKEND = "torchao"
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    classes["__constants__"] = constants
    return classes, imported


def _class_node(module_name: str, class_name: str) -> tuple[str, ast.ClassDef]:
    classes, imported = _module_source(module_name)
    if class_name in classes and class_name != "__constants__":
        return module_name, classes[class_name]
    if class_name in imported:
        return _class_node(imported[class_name], class_name)
    raise AttributeError(f"{class_name} not found in {module_name}")


def _defaults_from_source(module_name: str, class_name: str) -> dict:
    module_name, method_node = _class_node(module_name, class_name)
    config_name = _config_class_name(module_name, method_node)
    return _fields_from_source(module_name, config_name)


def _config_class_name(module_name: str, node: ast.ClassDef) -> str:
    for statement in node.body:
        targets = [statement.target] if isinstance(statement, ast.AnnAssign) else getattr(statement, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == "config_class" for t in targets) and isinstance(statement.value, ast.Name):
            return statement.value.id
    for base in node.bases:  # inherited config_class
        if isinstance(base, ast.Name):
            return _config_class_name(*_class_node(module_name, base.id))
    raise AttributeError(f"no config_class on {node.name}")


def _fields_from_source(module_name: str, class_name: str) -> dict:
    module_name, node = _class_node(module_name, class_name)
    classes, imported = _module_source(module_name)
    # a default may name a constant imported from another module (methods.base.RECOVERY_EPOCHS)
    constants = {name: _module_source(source)[0]["__constants__"].get(name, UNKNOWN)
                 for name, source in imported.items() if _is_local_module(source)}
    constants.update(classes["__constants__"])
    defaults: dict = {}
    for base in node.bases:  # dataclass fields of the bases come first, then are overridden
        if isinstance(base, ast.Name):
            defaults.update(_fields_from_source(module_name, base.id))
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and statement.value is not None:
            if "ClassVar" in ast.unparse(statement.annotation):
                continue
            try:
                defaults[statement.target.id] = _literal(statement.value, constants)
            except ValueError:
                defaults[statement.target.id] = UNKNOWN  # not a literal: left out of the comparison
    return defaults


def _is_local_module(module_name: str) -> bool:
    """A module of this project (methods, harness): its source can be read without importing it."""
    return module_name.split(".")[0] in ("methods", "harness")


def _literal(value: ast.expr, constants: dict) -> Any:
    """A literal default, or `field(default=...)` / `field(default_factory=...)` of one."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
        for keyword in value.keywords:
            if keyword.arg == "default":
                return ast.literal_eval(keyword.value)
            if keyword.arg == "default_factory":
                factory = keyword.value
                if isinstance(factory, ast.Lambda):
                    return ast.literal_eval(factory.body)
                if isinstance(factory, ast.Name) and factory.id in ("list", "dict", "tuple"):
                    return {"list": [], "dict": {}, "tuple": ()}[factory.id]
        raise ValueError("field() without a literal default")
    if isinstance(value, ast.Name) and value.id in constants:
        return constants[value.id]
    return ast.literal_eval(value)


def changed_parameters(method_config: dict) -> dict:
    """Parameters of `method_config` (the record's config.method) that differ from the defaults."""
    method_config = method_config or {}
    target = method_config.get("_target_")
    defaults = method_defaults(target) if isinstance(target, str) and "." in target else None
    if defaults is None:
        return {}
    return {k: v for k, v in method_config.items()
            if k not in NOT_PARAMETERS + DATA_BUDGET and defaults.get(k) is not UNKNOWN
            and (k not in defaults or not _same(defaults[k], v))}


def trains_on_subset(method_config: dict, train_examples: Optional[int]) -> bool:
    """Whether the method, or a step of its pipeline, trained on fewer examples than the split has."""
    method_config = method_config or {}
    budgets = [method_config.get(k) for k in DATA_BUDGET]
    budgets += [(step.get("params") or {}).get(k) for step in method_config.get("steps") or [] if isinstance(step, dict)
                for k in DATA_BUDGET]
    return any(isinstance(b, int) and not isinstance(b, bool) and (train_examples is None or b < train_examples) for b in budgets)


def variant_text(changed: dict) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(changed.items()))


def method_label(method: str, changed: dict) -> str:
    text = variant_text(changed)
    return f"{method} ({text})" if text else method


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _step(step: dict) -> str:
    """A pipeline step: its name, and its parameter overrides, so that two recipes differing only in a
    step's parameters (a 2-layer vs a 1-layer student) get rows and labels of their own."""
    params = {k: v for k, v in (step.get("params") or {}).items() if k not in DATA_BUDGET}
    return step.get("name", "?") + (_short(params) if params else "")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) if not isinstance(v, dict) else _step(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_short(v)}" for k, v in value.items()) + "}"
    return str(value)
