"""Task metrics, loaded as local `evaluate` modules by absolute path so evaluate never asks the Hub.

`compute_metric` goes through evaluate's public `compute` (feature validation included);
`fast_metric` skips evaluate's per-call Arrow bookkeeping, for bootstrap loops that recompute a
metric hundreds of times on resampled data.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

from harness.errors import ConfigError

METRICS_DIR = Path(__file__).resolve().parent
KNOWN_METRICS = ("glue", "squad_v1")


def metric_script(name: str) -> Path:
    if name not in KNOWN_METRICS:
        raise ConfigError("task.metric", f"unknown metric {name!r}", KNOWN_METRICS)
    return METRICS_DIR / name / f"{name}.py"


@functools.lru_cache(maxsize=None)
def load_metric(name: str, config: str):
    """The loaded evaluate module for `name` ("glue" or "squad_v1") and its config name."""
    import evaluate

    try:
        return evaluate.load(str(metric_script(name)), config, keep_in_memory=True)
    except KeyError as err:  # the module rejects unknown configs in _info
        raise ConfigError("task.metric_config", str(err).strip("'\"")) from None


def _as_floats(result: dict) -> dict[str, float]:
    return {key: float(value) for key, value in result.items()}


def compute_metric(name: str, config: str, predictions: list, references: list) -> dict[str, float]:
    return _as_floats(load_metric(name, config).compute(predictions=predictions, references=references))


def fast_metric(name: str, config: str) -> Callable[[list, list], dict[str, float]]:
    """Same numbers as compute_metric, without evaluate's per-call Arrow table and file lock."""
    module = load_metric(name, config)
    # _compute is our own module's pure function; calling it directly is what makes bootstrap cheap.
    return lambda predictions, references: _as_floats(
        module._compute(predictions=predictions, references=references)
    )
