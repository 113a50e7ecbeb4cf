"""Machine leases: which cells run on this machine right now.

Every running cell holds a lease file in one directory per machine, `<tmp>/compbench-leases/`
(`COMPBENCH_LEASE_DIR` overrides it), whatever cache dir or checkout its sweep uses: a timed cell of
one sweep must see a cell of any other. (Before, leases lived under the cache dir, and a sweep with
another cache dir went unseen: its cell turned a 16 ms latency into 881 ms.) Processes that are not
compbench cells are seen by the contention monitor instead (harness.measure.contention).

A cell that measures latency or energy holds the machine
exclusively: it refuses to start while any other cell runs, and no cell starts while it runs, unless
`allow_concurrent_latency=true`. Either way the record says how many cells shared the machine
(`environment.concurrent_cells`, sampled at start, every second, and at the end), and a latency
section measured in company carries a note saying so.

Threads per worker. A parallel local launcher with N workers (the default launcher's side-by-side
cells, joblib n_jobs, or submitit's local executor by cpus_per_task) gives each running cell its own block of floor(cores / N) cores via CPU
affinity (its lease's slot); with `hardware.num_threads=null` the cell then uses that many threads.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from harness.record import write_json_atomic

LEASE_POLL_S = 1.0


def current_launcher_workers() -> int:
    """Cells the running Hydra launcher runs at once on this machine (1 outside a Hydra job)."""
    from omegaconf import OmegaConf

    from harness.preflight import launcher_workers

    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = OmegaConf.to_container(HydraConfig.get().launcher, resolve=False)
    except (ValueError, ImportError):
        return 1
    return launcher_workers(str(launcher.get("_target_", "")), launcher)


LEASE_DIR_ENV = "COMPBENCH_LEASE_DIR"


def lease_dir() -> Path:
    """The machine-wide lease directory (see the module docstring)."""
    override = os.environ.get(LEASE_DIR_ENV)
    return Path(override) if override else Path(tempfile.gettempdir()) / "compbench-leases"


def make_lease_dir(directory: Path) -> None:
    """Created world-writable and sticky (like /tmp itself) so every user's cells share it."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        try:
            directory.chmod(0o1777)
        except OSError:
            pass


def _alive(lease: dict) -> bool:
    import psutil

    try:
        return abs(psutil.Process(int(lease["pid"])).create_time() - float(lease["create_time"])) < 0.01
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def live_leases(directory: Path, own: Optional[Path] = None) -> list[dict]:
    """Leases of running cells in `directory` (others than `own`); stale ones are deleted."""
    leases = []
    for path in directory.glob("*.json"):
        if own is not None and path == own:
            continue
        try:
            lease = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # vanished between glob and read
        if _alive(lease):
            leases.append(lease)
        else:
            try:
                path.unlink(missing_ok=True)
            except OSError:  # another user's stale lease in the shared directory
                pass
    return leases


class MachineLease:
    """The running cell's claim on this machine (see the module docstring)."""

    def __init__(self, directory: Path, path: Path, lease: dict, others: list[dict], slots: int):
        self.directory, self.path, self.lease, self.slots = directory, path, lease, slots
        self.peak = 1 + len(others)
        self.seen = {other["cell"] for other in others}
        self._stop = threading.Event()
        self._thread = None
        self._affinity = None  # the affinity to restore after the cell
        self.cores = None  # the core block this cell was pinned to

    @classmethod
    def acquire(cls, plan, slots: Optional[int] = None):
        """A lease for the planned cell, or the reason (a string) why it may not start now. `slots`: the
        cells this process runs at once (harness.sweep.parallel); else the Hydra launcher's workers."""
        import fcntl
        import psutil

        cell = plan.cell
        directory = lease_dir()
        make_lease_dir(directory)
        exclusive = plan.timed and not cell.allow_concurrent_latency
        slots = slots or current_launcher_workers()
        with open(directory / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            others = live_leases(directory)
            blocker = next((o for o in others if o.get("exclusive")), None) or (others[0] if exclusive and others else None)
            if blocker is not None:
                who = f"{blocker['cell']} (pid {blocker['pid']})"
                if blocker.get("exclusive"):
                    return f"{who} is measuring latency/energy on this machine; wait for it, or run this cell with allow_concurrent_latency=true on both"
                return f"this cell measures latency/energy and {who} is running on this machine; run timed cells one at a time, or set allow_concurrent_latency=true"
            used = [o.get("slot", 0) for o in others]
            slot = min(range(slots), key=lambda s: (used.count(s), s))
            lease = {
                "pid": os.getpid(), "create_time": psutil.Process().create_time(), "host": socket.gethostname(),
                "cell": plan.label, "timing": plan.timed, "exclusive": exclusive, "slot": slot, "slots": slots,
                "started": time.time(),
            }
            path = write_json_atomic(directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json", lease)
        return cls(directory, path, lease, others, slots)

    def __enter__(self) -> "MachineLease":
        self._pin()
        self._thread = threading.Thread(target=self._watch, name="compbench-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.path.unlink(missing_ok=True)
        if self._affinity is not None:
            os.sched_setaffinity(0, self._affinity)

    def _sample(self) -> None:
        try:
            others = live_leases(self.directory, own=self.path)
        except OSError:
            return
        self.peak = max(self.peak, 1 + len(others))
        self.seen.update(other["cell"] for other in others)

    def _watch(self) -> None:
        while not self._stop.wait(LEASE_POLL_S):
            self._sample()

    def _pin(self) -> None:
        """With N workers on this machine, this cell (and its spawned child) gets core block `slot`.
        (Linux: the calling thread's affinity, which a child spawned from that thread inherits.)"""
        if self.slots <= 1 or not hasattr(os, "sched_setaffinity"):
            return
        self._affinity = sorted(os.sched_getaffinity(0))
        per_slot = max(1, len(self._affinity) // self.slots)
        start = (self.lease["slot"] * per_slot) % len(self._affinity)
        self.cores = self._affinity[start:start + per_slot]
        os.sched_setaffinity(0, self.cores)

    def describe(self) -> dict:
        return {
            "concurrent_cells": self.peak,
            "other_cells": sorted(self.seen),
            "exclusive": self.lease["exclusive"],
            "workers": self.slots,
            "slot": self.lease["slot"],
            "cpu_affinity": self.cores,  # None: not pinned (one worker per machine)
            "sampled": f"at start, every {LEASE_POLL_S:g} s, at end",
        }

    def annotate(self, record: dict) -> None:
        """Say in the record how many cells shared the machine, and warn in its latency section."""
        environment = record.get("environment") or {}
        record["environment"] = environment
        environment["concurrent_cells"] = self.peak
        environment["concurrency"] = self.describe()
        if self.peak > 1 and isinstance(record.get("latency"), dict):
            record["latency"].setdefault("notes", []).append(
                f"{self.peak} cells shared this machine while this cell ran (allow_concurrent_latency=true): "
                "latency and energy are not isolated measurements")
