"""Peak memory of a callable, measured in its own pass (the sampler would perturb latency).

Views reported (optimum-benchmark's set):
- process RSS: a background thread samples psutil RSS every few ms; on Linux the kernel's
  exact high-water mark (VmHWM, reset through /proc/self/clear_refs) is used as well, so
  short spikes between samples are not missed;
- CUDA: torch max_memory_allocated / max_memory_reserved after reset_peak_memory_stats;
- NVML: this process's used GPU memory (driver view, includes the CUDA context), sampled.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import psutil

from harness.measure import nvml


@dataclass
class _Peaks:
    rss: int = 0
    nvml_process: Optional[int] = None
    nvml_device: Optional[int] = None
    samples: int = 0


@dataclass
class _Sampler:
    """Polls RSS (and NVML when given a handle) until stopped; keeps only the peaks."""

    interval_s: float
    nvml_handle: Any = None
    peaks: _Peaks = field(default_factory=_Peaks)

    def __post_init__(self):
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        peaks = self.peaks
        peaks.rss = max(peaks.rss, self._process.memory_info().rss)
        if self.nvml_handle is not None:
            peaks.nvml_process = _max(peaks.nvml_process, nvml.process_used_bytes(self.nvml_handle))
            peaks.nvml_device = _max(peaks.nvml_device, nvml.device_used_bytes(self.nvml_handle))
        peaks.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "_Sampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _max(current: Optional[int], new: Optional[int]) -> Optional[int]:
    if new is None:
        return current
    return new if current is None else max(current, new)


def _reset_rss_high_water_mark() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _rss_high_water_mark() -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def measure_memory(
    run: Callable[[], Any],
    device: str,
    repeats: int = 3,
    interval_s: float = 0.005,
    inference_mode: bool = True,
) -> dict:
    """Call `run()` `repeats` times and report peak memory views (bytes).

    CUDA/NVML fields are None on CPU. `inference_mode=False` for callables that need autograd.
    """
    import torch

    cuda = device == "cuda" and torch.cuda.is_available()
    notes: list[str] = []
    handle = nvml.handle_for_torch_device() if cuda else None
    if cuda and handle is None:
        notes.append(f"NVML unavailable: {nvml.nvml_error() or 'no handle for this device'}")

    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline_rss = psutil.Process().memory_info().rss
    hwm_reset = _reset_rss_high_water_mark()

    grad_context = torch.inference_mode() if inference_mode else contextlib.nullcontext()
    start = time.perf_counter()
    with _Sampler(interval_s, handle) as sampler, grad_context:
        for _ in range(repeats):
            run()
            if cuda:
                torch.cuda.synchronize()
    duration_s = time.perf_counter() - start

    peak_rss = sampler.peaks.rss
    method = "sampled"
    hwm = _rss_high_water_mark() if hwm_reset else None
    if hwm is not None and hwm >= peak_rss:
        peak_rss, method = hwm, "kernel_high_water_mark"
    if sampler.peaks.samples < 3 and method == "sampled":
        notes.append("run was shorter than the sampling interval: RSS peak may be missed")

    result = {
        "device": device,
        "repeats": repeats,
        "duration_s": duration_s,
        "baseline_rss_bytes": baseline_rss,
        "peak_rss_bytes": peak_rss,
        "delta_rss_bytes": peak_rss - baseline_rss,
        "rss_peak_method": method,
        "rss_samples": sampler.peaks.samples,
        "sample_interval_ms": interval_s * 1e3,
        "cuda_max_allocated_bytes": None,
        "cuda_max_reserved_bytes": None,
        "nvml_process_peak_bytes": None,
        "nvml_device_peak_bytes": None,
        "notes": notes,
    }
    if cuda:
        result["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        result["cuda_max_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        result["nvml_process_peak_bytes"] = sampler.peaks.nvml_process
        result["nvml_device_peak_bytes"] = sampler.peaks.nvml_device
        if handle is not None and sampler.peaks.nvml_process is None:
            notes.append("NVML could not attribute GPU memory to this PID (PID namespace?); see nvml_device_peak_bytes")
    return result
