"""Energy of inference or training, from the best counter this machine offers.

Sources share one small protocol (`EnergySource`). All available sources bracket the same
work; the headline figure comes from the first usable one in priority order:
  cuda: measured:nvml (GPU board only), then RAPL / codecarbon for the host;
  cpu:  measured:rapl, then estimated:codecarbon-tdp.
Software meters are not MLPerf-grade power analyzers, so every figure carries its provenance.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import threading
import time
from typing import Any, Callable, Optional, Protocol, runtime_checkable

from harness.measure import nvml

JOULES_PER_KWH = 3.6e6


@runtime_checkable
class EnergySource(Protocol):
    name: str
    provenance: str  # measured:nvml | measured:rapl | estimated:codecarbon-tdp

    def available(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules since start()."""
        ...


class NvmlEnergySource:
    """GPU board energy from NVML's cumulative counter (mJ, Volta and newer)."""

    name = "nvml"
    provenance = "measured:nvml"
    scope = "gpu board"

    def __init__(self, device_index: Optional[int] = None):
        self.device_index = device_index
        self.reason: Optional[str] = None
        self._handle = None
        self._start_mj: Optional[int] = None

    def available(self) -> bool:
        try:
            import torch

            if not torch.cuda.is_available():
                self.reason = "no CUDA device"
                return False
        except ImportError:
            self.reason = "torch not importable"
            return False
        self._handle = nvml.handle_for_torch_device(self.device_index)
        if self._handle is None:
            self.reason = f"NVML unavailable: {nvml.nvml_error() or 'no handle for this device'}"
            return False
        if nvml.total_energy_mj(self._handle) is None:
            self.reason = "nvmlDeviceGetTotalEnergyConsumption not supported on this GPU"
            return False
        return True

    def start(self) -> None:
        self._start_mj = nvml.total_energy_mj(self._handle)

    def stop(self) -> float:
        end_mj = nvml.total_energy_mj(self._handle)
        if end_mj is None or self._start_mj is None:
            raise RuntimeError("NVML energy counter could not be read")
        return (end_mj - self._start_mj) / 1e3


class RaplEnergySource:
    """CPU package energy from Linux powercap (intel-rapl zones; AMD exposes the same names).

    Sums the top-level package zones only: sub-zones (core, uncore) are already included in
    their package. Counters wrap at max_energy_range_uj; `poll()` (called by EnergyMeter every
    few seconds) accumulates often enough that at most one wrap happens between reads.
    """

    name = "rapl"
    provenance = "measured:rapl"
    scope = "cpu packages"

    def __init__(self, root: str = "/sys/class/powercap"):
        self.root = root
        self.reason: Optional[str] = None
        self._zones: list[str] = []
        self._max_range: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._total_uj = 0
        self._lock = threading.Lock()

    def available(self) -> bool:
        zones = sorted(p for p in glob.glob(os.path.join(self.root, "intel-rapl:*")) if os.path.basename(p).count(":") == 1)
        if not zones:
            self.reason = f"no RAPL zones under {self.root}"
            return False
        try:
            for zone in zones:
                _read_int(os.path.join(zone, "energy_uj"))
                self._max_range[zone] = _read_int(os.path.join(zone, "max_energy_range_uj"))
        except PermissionError:
            self.reason = "RAPL energy_uj is not readable (needs root or a chmod of /sys/class/powercap)"
            return False
        except (OSError, ValueError) as err:
            self.reason = f"RAPL unreadable: {err}"
            return False
        self._zones = zones
        return True

    def _read_all(self) -> dict[str, int]:
        return {zone: _read_int(os.path.join(zone, "energy_uj")) for zone in self._zones}

    def start(self) -> None:
        with self._lock:
            self._last = self._read_all()
            self._total_uj = 0

    def poll(self) -> None:
        with self._lock:
            now = self._read_all()
            for zone, value in now.items():
                self._total_uj += rapl_delta_uj(self._last[zone], value, self._max_range[zone])
            self._last = now

    def stop(self) -> float:
        self.poll()
        return self._total_uj / 1e6


def rapl_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Counter difference allowing for one wraparound at max_energy_range_uj."""
    if after >= before:
        return after - before
    return after + max_range_uj - before


def _read_int(path: str) -> int:
    with open(path) as handle:
        return int(handle.read().strip())


class CodecarbonSource:
    """codecarbon's offline estimate: CPU by TDP x load (RAPL if it can read it), RAM by size,
    GPU via NVML. Also the only source of a CO2 figure. Never touches the network or disk."""

    name = "codecarbon"
    provenance = "estimated:codecarbon-tdp"
    scope = "cpu + ram (+ gpu)"

    def __init__(self, country_iso_code: Optional[str] = None, tracking_mode: str = "process", measure_power_secs: float = 1.0):
        self.country_iso_code = country_iso_code or os.environ.get("COMPBENCH_COUNTRY_ISO_CODE") or os.environ.get("CODECARBON_COUNTRY_ISO_CODE") or "USA"
        self.tracking_mode = tracking_mode
        self.measure_power_secs = measure_power_secs
        self.reason: Optional[str] = None
        self.details: dict = {}
        self._tracker = None

    def available(self) -> bool:
        try:
            self._tracker = self._new_tracker()
        except Exception as err:  # import errors, hardware probing failures
            self.reason = f"codecarbon failed to initialise: {type(err).__name__}: {err}"
            return False
        return True

    def _new_tracker(self):
        os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")  # read once, at codecarbon import
        from codecarbon import OfflineEmissionsTracker

        _silence_codecarbon()
        return OfflineEmissionsTracker(
            country_iso_code=self.country_iso_code,
            log_level="error",
            save_to_file=False,
            save_to_logger=False,
            tracking_mode=self.tracking_mode,
            measure_power_secs=self.measure_power_secs,
            allow_multiple_runs=True,  # no lock file: parallel cells must not block each other
        )

    def start(self) -> None:
        if self._tracker is None:
            self._tracker = self._new_tracker()
        self._tracker.start()

    def stop(self) -> float:
        tracker, self._tracker = self._tracker, None  # a tracker is single-use
        co2_kg = tracker.stop()
        data = getattr(tracker, "final_emissions_data", None)
        # codecarbon swallows its own exceptions and returns None instead.
        if co2_kg is None or data is None or data.energy_consumed is None:
            raise RuntimeError("codecarbon returned no measurement")
        self.details = {
            "co2_kg": float(co2_kg),
            "country_iso_code": self.country_iso_code,
            "tracking_mode": self.tracking_mode,
            "cpu_joules": float(data.cpu_energy) * JOULES_PER_KWH,
            "ram_joules": float(data.ram_energy) * JOULES_PER_KWH,
            "gpu_joules": float(data.gpu_energy) * JOULES_PER_KWH,
            "cpu_model": getattr(data, "cpu_model", None),
            "cpu_power_w": getattr(data, "cpu_power", None),
        }
        return float(data.energy_consumed) * JOULES_PER_KWH


def _silence_codecarbon() -> None:
    # Its INFO/WARNING lines are emitted during construction, before log_level applies, and
    # importing codecarbon resets the level, so this runs after the import.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)


def default_sources(device: str) -> list:
    """Priority order: the first usable source provides the headline figure."""
    if device == "cuda":
        return [NvmlEnergySource(), RaplEnergySource(), CodecarbonSource()]
    return [RaplEnergySource(), CodecarbonSource()]


class EnergyMeter:
    """Context manager bracketing arbitrary work (e.g. fine-tuning) with every usable source.

    `with EnergyMeter("cuda", samples=n) as meter: train()` then `meter.result`; `samples`
    may also be set after the block. Source failures are recorded, never raised: energy
    must not fail a cell.
    """

    POLL_INTERVAL_S = 5.0

    def __init__(self, device: str, sources: Optional[list] = None, samples: Optional[int] = None):
        self.device = device
        self.sources = default_sources(device) if sources is None else list(sources)
        self.samples = samples
        self.duration_s: Optional[float] = None
        self._running: list = []
        self._report: dict[str, dict] = {}
        self._stop_polling = threading.Event()
        self._poller: Optional[threading.Thread] = None
        self._start = 0.0

    def __enter__(self) -> "EnergyMeter":
        for source in self.sources:
            entry = {"provenance": source.provenance, "scope": getattr(source, "scope", None)}
            try:
                if source.available():
                    self._running.append(source)
                else:
                    entry.update(available=False, reason=getattr(source, "reason", None) or "unavailable")
            except Exception as err:
                entry.update(available=False, reason=f"{type(err).__name__}: {err}")
            self._report[source.name] = entry
        _synchronize(self.device)
        for source in list(self._running):
            try:
                source.start()
            except Exception as err:
                self._running.remove(source)
                self._report[source.name].update(available=False, reason=f"start failed: {type(err).__name__}: {err}")
        self._start = time.perf_counter()
        if any(hasattr(s, "poll") for s in self._running):
            self._poller = threading.Thread(target=self._poll_loop, name="energy-poll", daemon=True)
            self._poller.start()
        return self

    def _poll_loop(self) -> None:
        while not self._stop_polling.wait(self.POLL_INTERVAL_S):
            for source in self._running:
                if hasattr(source, "poll"):
                    with contextlib.suppress(Exception):
                        source.poll()

    def __exit__(self, *exc) -> None:
        _synchronize(self.device)
        self.duration_s = time.perf_counter() - self._start
        self._stop_polling.set()
        if self._poller is not None:
            self._poller.join()
        for source in self._running:
            entry = self._report[source.name]
            try:
                joules = float(source.stop())
                entry.update(available=True, joules=joules, **getattr(source, "details", {}))
            except Exception as err:
                entry.update(available=False, reason=f"stop failed: {type(err).__name__}: {err}")

    @property
    def result(self) -> Optional[dict]:
        """The energy section; None until the block has exited."""
        if self.duration_s is None:
            return None
        samples = self.samples
        per_sample = lambda j: j / samples if j is not None and samples else None  # noqa: E731
        sources = {name: {**e, "joules_per_sample": per_sample(e.get("joules"))} for name, e in self._report.items()}
        headline = next((name for name, e in sources.items() if e.get("joules") is not None), None)
        joules = sources[headline]["joules"] if headline else None
        return {
            "joules_total": joules,
            "joules_per_sample": per_sample(joules),
            "samples": samples,
            "duration_s": self.duration_s,
            "provenance": sources[headline]["provenance"] if headline else None,
            "source": headline,
            "scope": sources[headline]["scope"] if headline else None,
            "reason": None if headline else "no energy source usable on this machine",
            "sources": sources,
            # codecarbon's own figure (its energy estimate x grid intensity), whatever the headline
            "co2_kg": next((e["co2_kg"] for e in sources.values() if e.get("co2_kg") is not None), None),
        }


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def measure_energy(
    run: Callable[[], Any],
    samples_per_call: int,
    device: str,
    min_duration_s: float = 2.0,
    sources: Optional[list] = None,
    inference_mode: bool = True,
) -> dict:
    """Repeat `run()` for at least min_duration_s inside one EnergyMeter; per-sample = total / samples."""
    import torch

    grad_context = torch.inference_mode() if inference_mode else contextlib.nullcontext()
    calls = 0
    meter = EnergyMeter(device, sources=sources)
    with grad_context, meter:
        start = time.perf_counter()
        while calls == 0 or time.perf_counter() - start < min_duration_s:
            run()
            calls += 1
    meter.samples = calls * samples_per_call
    return {**meter.result, "calls": calls}
