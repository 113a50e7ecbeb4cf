"""Measurement passes for one cell; each runs separately so that trackers do not perturb timings.

- latency.py: thread setup, compile wrapping, cold start and steady-state latency
- memory.py: peak RSS / CUDA allocator / NVML per-process memory
- energy.py: NVML, RAPL and codecarbon energy sources, EnergyMeter, measure_energy
- flops.py: dense forward FLOPs via hooks
- contention.py: what else the machine did during a timed pass (the contention verdict)
- stability.py: whether a timed pass was steady (canary and block pairs: the stability verdict)
- interleaved.py: method and baseline timed in alternating blocks: speedup with a CI
- size.py: parameter and byte counts from the state dict
- stats.py: summaries and bootstrap CIs (numpy only)
- environment.py: machine/software description and the cross-machine fingerprint

Submodules are imported lazily (`harness.measure.measure_latency` works) so that importing
the package does not pull in torch for the aggregator.
"""

from __future__ import annotations

import importlib
import os

# Must be set before CUDA initialises so torch and NVML number GPUs the same way.
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

_EXPORTS = {
    "configure_threads": "latency",
    "prepare_model": "latency",
    "measure_latency": "latency",
    "cold_start_ms": "latency",
    "measure_interleaved": "interleaved",
    "ContentionMonitor": "contention",
    "measure_memory": "memory",
    "measure_energy": "energy",
    "EnergyMeter": "energy",
    "count_flops": "flops",
    "average_flops": "flops",
    "measure_size": "size",
    "summarize_ms": "stats",
    "bootstrap_ci": "stats",
    "bootstrap_metric_ci": "stats",
    "mean_std": "stats",
    "collect_environment": "environment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
