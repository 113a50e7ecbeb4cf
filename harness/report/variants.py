"""What makes one configuration of a method different from another, for rows, labels and curves.

A sweep (`compbench -m method=magnitude method.sparsity=0.3,0.6,0.9`) writes one record per
configuration; each is its own row, labelled by the parameters that differ from the method's
dataclass defaults, e.g. `magnitude (sparsity=0.6)`. Records that differ only in seed share a
`setting` (and a label) and are aggregated; a re-run of the very same configuration shares the
config hash and replaces the older record (see load.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any, Optional

# Not part of what a configuration *is*: where files go, run flags, and the seed (seeds aggregate).
NOT_SETTING = ("paths", "force", "isolate", "run_name", "allow_concurrent_latency", "seed")
NOT_PARAMETERS = ("_target_", "name")


def setting_key(config: dict) -> str:
    """Hash of everything in the record's config but paths, run flags and the seed."""
    semantic = {k: v for k, v in (config or {}).items() if k not in NOT_SETTING}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def method_defaults(target: str) -> Optional[dict]:
    """The method config dataclass's defaults, or None when the class cannot be imported here
    (a record from a newer version, or a report built without the methods package)."""
    try:
        from methods.base import method_class

        config_class = method_class(target).config_class
    except Exception:  # any import problem only costs the label its defaults
        return None
    defaults = {}
    for field in dataclasses.fields(config_class):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


def changed_parameters(method_config: dict) -> dict:
    """Parameters of `method_config` (the record's config.method) that differ from the defaults."""
    method_config = method_config or {}
    target = method_config.get("_target_")
    defaults = method_defaults(target) if isinstance(target, str) else None
    if defaults is None:
        return {}
    return {k: v for k, v in method_config.items()
            if k not in NOT_PARAMETERS and (k not in defaults or not _same(defaults[k], v))}


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


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) if not isinstance(v, dict) else v.get("name", "?") for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_short(v)}" for k, v in value.items()) + "}"
    return str(value)
