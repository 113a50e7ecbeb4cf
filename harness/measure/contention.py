"""What else the machine did while a pass was being timed: the contention verdict.

A latency taken beside another busy process is not the model's latency. On a 2-core box with
2 intra-op threads, one foreign busy process makes every OpenMP parallel region wait for a
descheduled peer thread, and a 16 ms forward pass can take 900 ms (BENCHMARKS.md, "Disturbance").
Leases only see compbench cells; this monitor sees everything, from the kernel's own counters:

- `/proc/stat`: CPU time the whole machine spent busy, and steal (time the hypervisor gave our
  vCPUs to another guest). Busy time minus this process's own CPU time is what *others* used.
- this process's CPU time against wall time x threads (`busy_ratio`): OpenMP workers spin, so an
  undisturbed CPU pass sits near 1.0; a foreign process pushes it down (1.99/2 -> 1.27/2 measured).
- `/proc/loadavg`'s running-task count, sampled every 0.25 s by a background thread.
- psutil per-process CPU time, to name the heaviest other processes in the record.

The verdict is `contended` when other processes used more than `max_other_cores` cores on
average or steal exceeded `max_steal_fraction`; `busy_ratio` is reported, not judged on, because
a GPU pass or a runtime with a sleeping thread pool is legitimately below 1.0.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional, TypedDict

import psutil

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SAMPLE_INTERVAL_S = 0.25


class ProcessShare(TypedDict):
    pid: int  # the other process
    name: str  # its executable name (psutil)
    cpu_s: float  # CPU seconds it used during the pass


class ContentionReport(TypedDict):
    verdict: str  # "clean" | "contended" | "unknown" (no /proc/stat: not Linux)
    wall_s: float  # duration of the monitored pass
    threads: int  # intra-op threads the pass was meant to use
    own_cpu_s: float  # CPU seconds of this process during the pass
    busy_ratio: Optional[float]  # own_cpu_s / (wall_s * threads); ~1.0 undisturbed on CPU
    other_cores: Optional[float]  # average cores used by other processes (busy - own) / wall
    steal_fraction: Optional[float]  # share of the machine's CPU time stolen by the hypervisor
    running_tasks_max: Optional[int]  # most runnable tasks seen in /proc/loadavg (all processes)
    top_others: list  # list[ProcessShare]: the heaviest other processes, CPU seconds during the pass
    thresholds: dict  # {"max_other_cores", "max_steal_fraction"} the verdict used
    reasons: list  # list[str]: why the verdict is "contended" (empty when clean)


def _proc_stat() -> Optional[tuple[float, float, float]]:
    """(busy, steal, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    total = busy + idle + iowait + steal
    return busy / _CLOCK_TICKS, steal / _CLOCK_TICKS, total / _CLOCK_TICKS


def _running_tasks() -> Optional[int]:
    try:
        with open("/proc/loadavg") as handle:
            return int(handle.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    own = os.getpid()
    table = {}
    for process in psutil.process_iter(["pid", "name", "cpu_times"]):
        info = process.info
        if info["pid"] == own or info["cpu_times"] is None:
            continue
        table[info["pid"]] = (info["name"] or "?", info["cpu_times"].user + info["cpu_times"].system)
    return table


class ContentionMonitor:
    """Context manager around one timed pass; `.report` holds the ContentionReport afterwards."""

    def __init__(self, threads: int, max_other_cores: float = 0.25, max_steal_fraction: float = 0.05):
        self.threads = max(1, int(threads))
        self.max_other_cores = max_other_cores
        self.max_steal_fraction = max_steal_fraction
        self.report: Optional[ContentionReport] = None
        self._stop = threading.Event()
        self._running_max: Optional[int] = None

    def __enter__(self) -> "ContentionMonitor":
        self._processes = _cpu_by_process()
        self._stat = _proc_stat()
        self._own = psutil.Process().cpu_times()
        self._wall = time.perf_counter()
        self._sampler = threading.Thread(target=self._sample, name="compbench-contention", daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            running = _running_tasks()
            if running is not None:
                self._running_max = max(self._running_max or 0, running)

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._wall
        own_times = psutil.Process().cpu_times()
        own_cpu = (own_times.user - self._own.user) + (own_times.system - self._own.system)
        stat = _proc_stat()
        self._stop.set()
        self._sampler.join()
        self.report = self._judge(wall, own_cpu, stat)

    def _judge(self, wall: float, own_cpu: float, stat) -> ContentionReport:
        other_cores = steal_fraction = None
        if self._stat is not None and stat is not None and wall > 0:
            busy = stat[0] - self._stat[0]
            steal = stat[1] - self._stat[1]
            total = stat[2] - self._stat[2]
            # Clock ticks are 10 ms: a short pass can read slightly less machine time than its own.
            other_cores = max(0.0, busy - own_cpu) / wall
            steal_fraction = steal / total if total > 0 else 0.0
        reasons = []
        if other_cores is not None and other_cores > self.max_other_cores:
            reasons.append(f"other processes used {other_cores:.2f} cores on average (limit {self.max_other_cores:g})")
        if steal_fraction is not None and steal_fraction > self.max_steal_fraction:
            reasons.append(f"the hypervisor stole {steal_fraction:.1%} of CPU time (limit {self.max_steal_fraction:.0%})")
        if other_cores is None:
            verdict = "unknown"
        else:
            verdict = "contended" if reasons else "clean"
        return ContentionReport(
            verdict=verdict,
            wall_s=round(wall, 3),
            threads=self.threads,
            own_cpu_s=round(own_cpu, 3),
            busy_ratio=round(own_cpu / (wall * self.threads), 3) if wall > 0 else None,
            other_cores=None if other_cores is None else round(other_cores, 3),
            steal_fraction=None if steal_fraction is None else round(steal_fraction, 4),
            running_tasks_max=self._running_max,
            top_others=self._top_others(),
            thresholds={"max_other_cores": self.max_other_cores, "max_steal_fraction": self.max_steal_fraction},
            reasons=reasons,
        )

    def _top_others(self, count: int = 5) -> list:
        after = _cpu_by_process()
        used = []
        for pid, (name, cpu) in after.items():
            # A process started during the pass spent all of its CPU time in it.
            before = self._processes[pid][1] if pid in self._processes else 0.0
            delta = cpu - before
            if delta >= 0.05:
                used.append(ProcessShare(pid=pid, name=name, cpu_s=round(delta, 2)))
        return sorted(used, key=lambda p: -p["cpu_s"])[:count]


def worst(verdicts: list[str]) -> str:
    """The verdict of a set of passes: contended if any was, then unstable (harness.measure.stability),
    then unknown if any could not be judged."""
    for verdict in ("contended", "unstable", "unknown"):
        if verdict in verdicts:
            return verdict
    return "clean" if verdicts else "unknown"


RETRY_PAUSE_S = 2.0  # let a passing disturbance end before the next try


class ContentionSummary(TypedDict):
    # the kept pass's verdict: "clean"; "contended" or "unstable" (every try was); "unknown".
    # "unstable": other processes were quiet but the pass itself was not steady (its entry's
    # "stability", harness.measure.stability); absent before issue 30.
    verdict: str
    attempts: int  # passes made: 1 + re-measurements
    passes: list  # list[ContentionReport], one per attempt, the kept one last
    unstable_attempts: list  # list[list[str]]: the stability reasons of each attempt judged unstable


def until_clean(measure_once, threads: int, settings, stability_of=None) -> tuple:
    """Run `measure_once()` under a ContentionMonitor, re-running it while the verdict is
    "contended" or, with `stability_of(result)` giving the pass's StabilityReport, "unstable" (up to
    settings.contention_retries more times). Returns (result, summary) of the last attempt; a pass
    that stays disturbed is kept and says so, never silently."""
    reports: list = []
    unstable: list = []
    for attempt in range(1 + settings.contention_retries):
        if attempt:
            time.sleep(RETRY_PAUSE_S)
        with ContentionMonitor(threads, settings.max_other_cores, settings.max_steal_fraction) as monitor:
            result = measure_once()
        reports.append(monitor.report)
        stability = stability_of(result) if stability_of else None
        verdict = monitor.report["verdict"]
        if verdict == "clean" and stability and stability["verdict"] == "unstable":
            verdict = "unstable"
        if stability and stability["verdict"] == "unstable":
            unstable.append(stability["reasons"])
        if verdict not in ("contended", "unstable"):
            break
    return result, ContentionSummary(verdict=verdict, attempts=len(reports), passes=reports, unstable_attempts=unstable)
