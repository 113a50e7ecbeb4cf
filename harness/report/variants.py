"""What makes one configuration of a method different from another, for rows and curves.

A sweep (`compbench -m method=magnitude method.sparsity=0.3,0.6,0.9`) writes one record per
configuration; each is its own row, labelled when its record was written (harness.labels), e.g.
`magnitude (sparsity=0.6)`. Records that differ only in seed share a `setting` (and a label) and are
aggregated; a re-run of the very same configuration shares the config hash and replaces the older
record (see load.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from harness.labels import DATA_BUDGET

# Not part of what a configuration *is*: where files go, run flags, and the seed (seeds aggregate).
NOT_SETTING = ("paths", "force", "isolate", "run_name", "allow_concurrent_latency", "memory_limit_gb", "seed")


def setting_key(config: dict) -> str:
    """Hash of everything in the record's config but paths, run flags and the seed."""
    semantic = {k: v for k, v in (config or {}).items() if k not in NOT_SETTING}
    finetune = (semantic.get("task") or {}).get("finetune") or {}
    if finetune.get("precision") == "fp32":  # records from before the field existed hold none: the same setting
        semantic["task"] = {**semantic["task"], "finetune": {k: v for k, v in finetune.items() if k != "precision"}}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:12]


def trains_on_subset(method_config: dict, train_examples: Optional[int]) -> bool:
    """Whether the method, or a step of its pipeline, trained on fewer examples than the split has."""
    method_config = method_config or {}
    budgets = [method_config.get(k) for k in DATA_BUDGET]
    budgets += [(step.get("params") or {}).get(k) for step in method_config.get("steps") or [] if isinstance(step, dict)
                for k in DATA_BUDGET]
    return any(isinstance(b, int) and not isinstance(b, bool) and (train_examples is None or b < train_examples) for b in budgets)


def variant_text(changed: dict) -> str:
    """A record's changed parameters in full, for the label legend (steps as name{param:value})."""
    return ", ".join(f"{k}={_full(v)}" for k, v in sorted(changed.items()))


def _full(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_full(v) for v in value) + "]"
    if isinstance(value, dict):
        if set(value) == {"name", "params"}:  # a pipeline step as harness.labels writes it
            return value["name"] + (_full(value["params"]) if value["params"] else "")
        return "{" + ",".join(f"{k}:{_full(v)}" for k, v in value.items()) + "}"
    return str(value)
