"""The method registry: every method and named recipe under the name a command line gives it.

A method registers itself beside its code, with the dataclass that holds its defaults:

    @register_method("magnitude")
    class Magnitude(Method):
        config_class = MagnitudeConfig

and a named recipe (a preset: a method with some of its parameters set) in methods/presets.py:

    register_preset("recipe_prune_int8", PipelineConfig, steps=[...])

Both are stored in Hydra's ConfigStore (group `method`, harness.config.register_configs), so
`method=<name>` composes from the dataclass's own defaults and no YAML repeats one. Pipeline steps
name the same entries. Methods of other packages register through the entry-point group
`compbench.methods` (each entry point names a module whose import runs its decorators) and work
everywhere a shipped one does: cells, sweeps, pipeline steps, reports.

Nothing here imports a method family: `load_all()` imports every module of the `methods` package
and every entry point once, when a name is first looked up (lm-evaluation-harness's registry, after
its plugin mechanism).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Callable, Optional

from harness.errors import ConfigError

ENTRY_POINT_GROUP = "compbench.methods"
# name -> (the class path its config's _target_ names, a function building its MethodConfig). Built on
# request, not at registration: a recipe's steps name methods whose modules may not be imported yet.
_ENTRIES: dict[str, tuple[str, Callable]] = {}
_LOADED = False


def register_method(name: str):
    """Class decorator: `name` composes to `cls.config_class`'s defaults, with `_target_` naming `cls`."""

    def decorate(cls):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(getattr(cls, "config_class", None))
                and callable(getattr(cls, "apply", None))):
            raise TypeError(f"@register_method({name!r}): {cls!r} is not a Method with a config_class dataclass")
        target = f"{cls.__module__}.{cls.__qualname__}"
        _add(name, target, lambda: cls.config_class(_target_=target, name=name))
        return cls

    return decorate


def register_preset(name: str, config_class, **params) -> None:
    """A named recipe: `config_class` (a registered method's config dataclass) with `params` set."""
    target = next(f.default for f in dataclasses.fields(config_class) if f.name == "_target_")
    _add(name, target, lambda: config_class(name=name, **params))


def _add(name: str, target: str, build: Callable) -> None:
    existing = _ENTRIES.get(name)
    if existing is not None and existing[0] != target:
        raise ValueError(f"method name {name!r} registered twice: {existing[0]} and {target}")
    _ENTRIES[name] = (target, build)


def load_all() -> None:
    """Import every module of the `methods` package and every `compbench.methods` entry point, once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import methods

    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"methods.{module.name}")
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()


def reload_plugins() -> None:
    """Look for entry points again (a distribution installed since the first lookup: tests, notebooks)."""
    global _LOADED
    _LOADED = False
    load_all()


def names() -> list[str]:
    load_all()
    return sorted(_ENTRIES)


def target_of(name: str) -> Optional[str]:
    """The class path a registered name's config names (its `_target_`), without building the config."""
    load_all()
    entry = _ENTRIES.get(name)
    return entry[0] if entry is not None else None


def preset(name: str) -> Optional[object]:
    """A fresh MethodConfig of `name`, or None when no method or recipe has that name."""
    load_all()
    entry = _ENTRIES.get(name)
    return entry[1]() if entry is not None else None


def preset_values(name: str, where: str = "method") -> dict:
    """The parameters `name` stands for, as a plain dict; a ConfigError naming `where` if unknown."""
    config = preset(name)
    if config is None:
        import difflib

        close = difflib.get_close_matches(name, names(), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(where, f"unknown method {name!r}{hint}", ", ".join(names()))
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}


def store(config_store) -> None:
    """Every registered method and recipe into Hydra's ConfigStore, group `method`.

    Stored as the dataclass's values, not as a structured node: OmegaConf would coerce an override's
    `1` to `1.0` in a float field, and a record's config hash (JSON of the values) would no longer
    match the cell it names. harness.config checks each value against its field's type instead, with
    a message naming the field."""
    load_all()
    for name in sorted(_ENTRIES):
        config_store.store(group="method", name=name, node=preset_values(name))
