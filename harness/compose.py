"""Overrides -> validated CellConfig, through Hydra's own composition, with Hydra's and OmegaConf's
errors turned into one line that names the field (and, for a misspelled key, the closest real one).

Shared by the CLI and the pre-flight checks, so neither imports the other.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path

from harness.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent / "conf"  # package data: travels in the wheel
GROUPS = ("method", "model", "task", "hardware", "runtime")
OMEGACONF_TYPES = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false", "String": "a string"}


def available(group: str) -> list[str]:
    """The choices of a config group: its YAMLs, and for `method` every registered method and recipe."""
    names = set(_yaml_choices(group))
    if group == "method":
        from methods import registry

        names |= set(registry.names())
    return sorted(names)


@functools.lru_cache(maxsize=None)
def _yaml_choices(group: str) -> tuple:
    return tuple(p.stem for p in (CONF_DIR / group).glob("*.yaml"))  # package data: fixed while the process runs


@functools.lru_cache(maxsize=4096)
def _parsed(override: str):
    """One override as Hydra's grammar reads it; a sweep repeats the same few strings in every cell."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([override])[0]  # its errors say where the grammar is documented


def is_multirun(argv: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in argv)


def sweep_cells(argv: list[str]) -> list[list[str]]:
    """The override list of every cell, expanded by Hydra's own sweeper rules."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    overrides = [a for a in argv if not a.startswith("-")]
    if not is_multirun(argv):
        return [overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError("overrides", " ".join(str(err).split())) from None
    return [cell for batch in BasicSweeper.split_arguments(parsed, None) for cell in batch]


def defer_swept_group_keys(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv for Hydra's multirun, {rewritten override: the user's}): each plain `group.key=value` under
    a swept group (`method=a,b`) is handed to Hydra as the force-add `++group.key=value`.

    Why: before it sweeps, Hydra composes the primary config with every non-sweep override applied,
    so `-m method=kd_logits,kd_hidden method.epochs=3` failed on the default method, which has no
    `epochs`, although every planned cell is valid (the planner composed each with the plain form, so
    a key that a swept method lacks is still refused there). The mapping turns a job's overrides back
    into the planned cell's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not is_multirun(argv):
        return list(argv), {}
    plain = [a for a in argv if not a.startswith("-")]
    parsed = dict(zip(plain, OverridesParser.create().parse_overrides(plain)))
    swept = {o.key_or_group for o in parsed.values() if o.is_sweep_override() and o.key_or_group in GROUPS}
    out, original = [], {}
    for arg in argv:
        override = parsed.get(arg)
        if (override is not None and not override.is_sweep_override() and not arg.startswith(("+", "~"))
                and "." in override.key_or_group and override.key_or_group.split(".")[0] in swept):
            original["++" + arg] = arg
            arg = "++" + arg
        out.append(arg)
    return out, original


def check_choices(overrides: list[str]) -> None:
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key in GROUPS and value not in available(key):
            close = difflib.get_close_matches(value, available(key), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(key, f"unknown choice {value!r}{hint}", ", ".join(available(key)))


def compose_raw(overrides: list[str], hydra_config: bool = False):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra_config)


@functools.lru_cache(maxsize=None)
def _composed_once(overrides: tuple):
    return compose_raw(list(overrides))  # read-only to callers: they deepcopy what they change


def compose_sweep_cell(overrides: list[str]):
    """compose_raw(overrides), with Hydra's composition done once per distinct group choice.

    Hydra composes a config in ~0.1 s (its defaults tree, YAML merges and deep copies): a sweep of
    1,000 cells spent almost all of its planning there. A cell is the primary config with each
    group's node as Hydra composes it for that choice (`method=magnitude`: the method node of
    `compose(["method=magnitude"])`; each group has its own package and config.yaml sets nothing
    inside one), then its other overrides applied by Hydra's own rule
    (ConfigLoaderImpl._apply_overrides_to_config: the same errors and add/delete semantics).
    Anything else about groups (`+group=`, `~group`, `group@package=`, the hydra/ groups) goes
    through a full composition. tests/test_plan_scale.py checks the two agree."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.types import OverrideType

    parsed = [_parsed(override) for override in overrides]
    choices, values = [], []
    for override in parsed:
        key = override.key_or_group
        if key in GROUPS and override.type == OverrideType.CHANGE and override.package is None:
            choices.append(override)
        elif key in GROUPS or "/" in key or override.package is not None:
            return compose_raw(overrides)
        elif key == "hydra" or key.startswith("hydra."):
            continue  # Hydra's own settings, not the cell's (compose_raw leaves them out too; preflight checks them)
        else:
            values.append(override)
    cfg = copy.deepcopy(_with_choices(tuple((c.key_or_group, c.input_line) for c in choices)))
    ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    return cfg


@functools.lru_cache(maxsize=None)
def _with_choices(choices: tuple):
    """The primary config with each (group, "group=choice") node as Hydra composes it alone (read-only)."""
    import copy

    cfg = copy.deepcopy(_composed_once(()))
    for group, line in choices:
        cfg[group] = copy.deepcopy(_composed_once((line,))[group])
    return cfg


def compose_cell(overrides: list[str]):
    """The validated CellConfig of one cell (one line naming the field on bad input)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.config import to_cell_config

    check_choices(overrides)
    try:
        cfg = compose_sweep_cell(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise composition_error(err, overrides) from None
    return to_cell_config(cfg)


def composition_error(err: Exception, overrides: list[str]) -> ConfigError:
    """Hydra's message rewritten to name the field: a wrong value type says which type the field takes;
    a key that does not exist says which real key is closest."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    if isinstance(cause, ValidationError) and key:
        value = next((o.partition("=")[2] for o in overrides if o.lstrip("+~").partition("=")[0] == key), None)
        message = str(getattr(cause, "msg", None) or cause).splitlines()[0]
        kind = next((words for name, words in OMEGACONF_TYPES.items() if message.rstrip().endswith(name)), None)
        if kind:
            return ConfigError(key, f"expected {kind}, got {value!r}")
        return ConfigError(key, " ".join(message.split()))
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        return ConfigError(key, f"no such field{closest_key(key, overrides)}")
    message = str(err) or str(cause) or err.__class__.__name__
    return ConfigError("overrides", " ".join(message.split()))


def closest_key(full_key: str, overrides: list[str]) -> str:
    """'; did you mean <closest real key>?', found by composing the cell without the bad override."""
    from omegaconf import DictConfig, OmegaConf

    parent, _, leaf = full_key.rpartition(".")
    rest = [o for o in overrides if o.lstrip("+~").partition("=")[0] != full_key]
    try:
        node = OmegaConf.select(compose_raw(rest), parent) if parent else compose_raw(rest)
    except Exception:  # noqa: BLE001 - only a hint: the error itself is already known
        return ""
    if not isinstance(node, DictConfig):
        return ""
    known = [k for k in node.keys() if not str(k).startswith("_")]
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"{hint} (allowed: {', '.join(sorted(map(str, known)))})"
