"""memory.py and energy.py: known allocations, fake energy counters, RAPL wraparound."""

import os
import time

import numpy as np
import pytest
import torch

from harness.measure import energy as energy_mod
from harness.measure import memory as memory_mod
from harness.measure.energy import CodecarbonSource, EnergyMeter, RaplEnergySource, measure_energy, rapl_delta_uj
from harness.measure.memory import measure_memory

def needs_cuda(test):
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
    return pytest.mark.gpu(skip(test))
MB = 2**20


def allocate_200mb():
    buffer = np.ones(200 * MB // 8)  # ones, not empty: pages must be touched to count in RSS
    time.sleep(0.05)
    return float(buffer[-1])


# --- memory -----------------------------------------------------------------------------------


def test_memory_sees_a_200mb_allocation():
    r = measure_memory(allocate_200mb, "cpu", repeats=2)
    assert r["delta_rss_bytes"] >= 180 * MB
    assert r["peak_rss_bytes"] - r["baseline_rss_bytes"] == r["delta_rss_bytes"]
    assert r["cuda_max_allocated_bytes"] is None and r["nvml_process_peak_bytes"] is None


def test_memory_sampler_alone_sees_the_allocation(monkeypatch):
    monkeypatch.setattr(memory_mod, "_reset_rss_high_water_mark", lambda: False)
    r = measure_memory(allocate_200mb, "cpu", repeats=1)
    assert r["rss_peak_method"] == "sampled" and r["rss_samples"] >= 3
    assert r["delta_rss_bytes"] >= 180 * MB


@needs_cuda
def test_memory_cuda_allocator_and_nvml():
    r = measure_memory(lambda: torch.empty(256 * MB, dtype=torch.uint8, device="cuda"), "cuda", repeats=1)
    assert r["cuda_max_allocated_bytes"] >= 256 * MB
    assert r["cuda_max_reserved_bytes"] >= r["cuda_max_allocated_bytes"]
    assert r["nvml_device_peak_bytes"] is None or r["nvml_device_peak_bytes"] >= 256 * MB


# --- energy -----------------------------------------------------------------------------------


class FakeCounter:
    """A source whose counter advances by `joules_per_call` every time the workload runs."""

    provenance = "measured:fake"

    def __init__(self, name="fake", joules_per_call=2.0, available=True, fail_on_stop=False):
        self.name, self.joules_per_call = name, joules_per_call
        self._available, self.fail_on_stop = available, fail_on_stop
        self.counter = 0.0
        self.reason = None if available else "fake says no"

    def tick(self):
        self.counter += self.joules_per_call

    def available(self):
        return self._available

    def start(self):
        self._start = self.counter

    def stop(self):
        if self.fail_on_stop:
            raise OSError("counter vanished")
        return self.counter - self._start


def test_measure_energy_divides_by_samples():
    fake = FakeCounter(joules_per_call=2.0)
    r = measure_energy(fake.tick, samples_per_call=8, device="cpu", min_duration_s=0.05, sources=[fake])
    assert r["calls"] >= 1 and r["samples"] == 8 * r["calls"]
    assert r["joules_total"] == pytest.approx(2.0 * r["calls"])
    assert r["joules_per_sample"] == pytest.approx(0.25)
    assert r["provenance"] == "measured:fake" and r["source"] == "fake"
    assert r["duration_s"] >= 0.05
    assert r["co2_kg"] is None


def test_headline_falls_back_in_priority_order():
    missing = FakeCounter("missing", available=False)
    broken = FakeCounter("broken", fail_on_stop=True)
    backup = FakeCounter("backup", joules_per_call=1.0)

    def work():
        for source in (broken, backup):
            source.tick()

    r = measure_energy(work, 1, "cpu", min_duration_s=0.0, sources=[missing, broken, backup])
    assert r["source"] == "backup" and r["joules_total"] == pytest.approx(r["calls"])
    assert r["sources"]["missing"] == {**r["sources"]["missing"], "available": False, "reason": "fake says no"}
    assert "counter vanished" in r["sources"]["broken"]["reason"]


def test_no_usable_source_is_reported_not_raised():
    r = measure_energy(lambda: None, 1, "cpu", min_duration_s=0.0, sources=[FakeCounter(available=False)])
    assert r["joules_total"] is None and r["joules_per_sample"] is None and r["reason"]


def test_energy_meter_context_manager():
    fake = FakeCounter(joules_per_call=3.0)
    with EnergyMeter("cpu", sources=[fake]) as meter:
        for _ in range(4):
            fake.tick()
    assert meter.result["joules_total"] == pytest.approx(12.0)
    assert meter.result["joules_per_sample"] is None  # no sample count given
    meter.samples = 6
    assert meter.result["joules_per_sample"] == pytest.approx(2.0)


def test_rapl_delta_wraparound():
    assert rapl_delta_uj(100, 350, 1000) == 250
    assert rapl_delta_uj(900, 100, 1000) == 200  # wrapped once: 900 -> 1000 -> 100


def write_zone(root, zone, energy_uj, max_range=1_000_000):
    path = root / zone
    path.mkdir(exist_ok=True)
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    (path / "name").write_text("package-0\n")


def test_rapl_source_sums_packages_and_handles_wraparound(tmp_path):
    write_zone(tmp_path, "intel-rapl:0", 900_000)
    write_zone(tmp_path, "intel-rapl:1", 10_000)
    write_zone(tmp_path, "intel-rapl:0:0", 5)  # core sub-zone: already inside package 0
    source = RaplEnergySource(root=str(tmp_path))
    assert source.available()
    source.start()
    write_zone(tmp_path, "intel-rapl:0", 400_000)  # wrapped: +500_000 uJ
    source.poll()
    write_zone(tmp_path, "intel-rapl:0", 100_000)  # wrapped again: +700_000 uJ
    write_zone(tmp_path, "intel-rapl:1", 60_000)  # +50_000 uJ
    write_zone(tmp_path, "intel-rapl:0:0", 999_999)
    assert source.stop() == pytest.approx((500_000 + 700_000 + 50_000) / 1e6)


def test_rapl_permission_denied_is_unavailable(tmp_path, monkeypatch):
    write_zone(tmp_path, "intel-rapl:0", 1)

    def deny(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(energy_mod, "_read_int", deny)
    source = RaplEnergySource(root=str(tmp_path))
    assert not source.available() and "not readable" in source.reason
    assert not RaplEnergySource(root=str(tmp_path / "absent")).available()


def test_codecarbon_estimate_is_offline_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = CodecarbonSource(measure_power_secs=0.2)
    r = measure_energy(lambda: sum(range(10_000)), 1, "cpu", min_duration_s=0.3, sources=[source])
    entry = r["sources"]["codecarbon"]
    if not entry["available"]:
        pytest.skip(f"codecarbon unavailable here: {entry['reason']}")
    assert r["provenance"] == "estimated:codecarbon-tdp"
    # 0.3 s of a busy core at the TDP estimate: strictly positive energy and emissions
    assert r["joules_total"] > 0 and r["co2_kg"] > 0 and r["duration_s"] >= 0.3
    assert os.listdir(tmp_path) == []


@needs_cuda
def test_nvml_energy_counter():
    from harness.measure.energy import NvmlEnergySource

    source = NvmlEnergySource()
    if not source.available():
        pytest.skip(source.reason)
    x = torch.randn(4096, 4096, device="cuda")
    r = measure_energy(lambda: x @ x, 1, "cuda", min_duration_s=1.0, sources=[source])
    assert r["provenance"] == "measured:nvml" and r["joules_total"] > 0


def test_codecarbon_init_failure_is_reported_not_raised(monkeypatch):
    source = CodecarbonSource()

    def broken():
        raise RuntimeError("no CPU power data")

    monkeypatch.setattr(source, "_new_tracker", broken)
    r = measure_energy(lambda: None, 1, "cpu", min_duration_s=0.0, sources=[source])
    assert r["joules_total"] is None
    assert "failed to initialise" in r["sources"]["codecarbon"]["reason"]
