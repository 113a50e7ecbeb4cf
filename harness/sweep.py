"""Per-cell orchestration: resume, machine leases, process isolation, atomic record, summary lines.

Resume. A cell's record lives at `<results_dir>/records/<task>__<model>__<method>__<hw>__<hash12>.json`,
where the hash (runner.config_hash) covers the resolved config except paths and run flags, the
sha256 of every data file the cell reads, and CACHE_VERSION (bumped by hand for code changes that
move numbers; the git commit is recorded, not hashed). The fine-tune cache key uses the same data
fingerprints and CACHE_VERSION. A re-run skips a cell whose record is `ok` or `unsupported` (both
are final for that hash), re-runs `failed` ones, and treats an unreadable file as absent;
`force=true` re-runs everything. Records are written to a temp file, fsynced and renamed, so a
killed sweep leaves either the whole record or none (plus, at worst, a dot-named `.tmp` file that
no reader opens).

Machine leases. Every running cell holds a lease file in `<cache_dir>/leases/<host>/` (sweeps that
share a cache dir, as they do by default, see each other). A cell that measures latency or energy
holds the machine exclusively: it refuses to start while any other cell runs, and no cell starts
while it runs, unless `allow_concurrent_latency=true`. Either way the record says how many cells
shared the machine (`environment.concurrent_cells`, sampled at start, every second, and at the
end), and a latency section measured in company carries a note saying so.

Threads per worker. A parallel local launcher with N workers (joblib n_jobs, or submitit's local
executor by cpus_per_task) gives each running cell its own block of floor(cores / N) cores via CPU
affinity (its lease's slot); with `hardware.num_threads=null` the cell then uses that many threads.

TEST-ONLY hook: `COMPBENCH_TEST_EXECUTOR=module:function` replaces `harness.runner.execute`, so the
sweep tests run many synthetic cells without loading a model. Records made under it carry
`environment.test_executor`; never set it for real measurements.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from harness.config import CellConfig
from harness.record import load_record, record_path, write_json_atomic
from harness.runner import cell_names, config_hash, execute, failed_record, needs_train_data

FINAL_STATUSES = ("ok", "unsupported")  # a record with one of these is not re-run without force=true
LEASE_POLL_S = 1.0
TEST_EXECUTOR_ENV = "COMPBENCH_TEST_EXECUTOR"


# ----------------------------------------------------------------------------------------- resume
def previous_status(path: Path) -> Optional[str]:
    """Status of the record at `path`, or None when absent or unreadable (then the cell runs)."""
    try:
        return load_record(path)["status"]
    except (ValueError, FileNotFoundError):
        return None


def planned_record(cell: CellConfig, fingerprints: dict) -> Path:
    """Where this cell's record will be: the CLI checks these after a sweep to list its outcome."""
    return record_path(cell.paths.results_dir, cell_names(cell), config_hash(cell, fingerprints))


def run_and_record(cell: CellConfig) -> Path:
    from harness.tasks import check_task_data

    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    chash = config_hash(cell, fingerprints)
    path = record_path(cell.paths.results_dir, cell_names(cell), chash)
    previous = previous_status(path)
    if previous in FINAL_STATUSES and not cell.force:
        print(f"[skip] {_label(cell)}: already recorded as {previous} ({path}); force=true re-runs it", flush=True)
        return path
    if previous == "failed" and not cell.force:
        print(f"[rerun] {_label(cell)}: the previous attempt failed; running it again", flush=True)
    lease = MachineLease.acquire(cell)
    if isinstance(lease, str):
        print(f"[refused] {_label(cell)}: {lease}", file=sys.stderr, flush=True)
        return path
    with lease:
        record = run_isolated(cell, chash, fingerprints) if cell.isolate else _executor()(cell, chash, fingerprints)
    annotate(record, lease)
    try:
        write_json_atomic(path, record)
    except OSError as err:
        print(f"compbench: error: cannot write the record of {_label(cell)} to {path}: {err.strerror or err}", file=sys.stderr, flush=True)
        raise
    print(summary_line(record, path), flush=True)
    return path


def annotate(record: dict, lease: "MachineLease") -> None:
    environment = record.get("environment") or {}
    record["environment"] = environment
    environment["concurrent_cells"] = lease.peak
    environment["concurrency"] = lease.describe()
    if lease.peak > 1 and isinstance(record.get("latency"), dict):
        record["latency"].setdefault("notes", []).append(
            f"{lease.peak} cells shared this machine while this cell ran (allow_concurrent_latency=true): "
            "latency and energy are not isolated measurements")
    if os.environ.get(TEST_EXECUTOR_ENV):
        environment["test_executor"] = os.environ[TEST_EXECUTOR_ENV]


def _executor():
    """harness.runner.execute, or (TEST-ONLY) the `module:function` named by COMPBENCH_TEST_EXECUTOR."""
    spec = os.environ.get(TEST_EXECUTOR_ENV)
    if not spec:
        return execute
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


# -------------------------------------------------------------------------------------- isolation
def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel SIGKILLs this process when its parent dies, so a killed sweep leaves no
    orphan cell burning the CPU (and writing nothing: the parent writes the record)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child(cell: CellConfig, chash: str, fingerprints: dict, out_path: str, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    write_json_atomic(out_path, _executor()(cell, chash, fingerprints))


@contextlib.contextmanager
def _standard_start_method():
    """A spawned child re-applies its parent's *default* start method. Inside a joblib (loky)
    worker that is 'loky', which a fresh interpreter does not know: make it 'spawn' meanwhile."""
    method = multiprocessing.get_start_method(allow_none=True)
    if method in (None, "spawn", "fork", "forkserver"):
        yield
        return
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(method, force=True)


def run_isolated(cell: CellConfig, chash: str, fingerprints: dict) -> dict:
    """A fresh spawned process per cell: a crash or OOM-kill becomes a failed record."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="compbench-cell-") as scratch:
        out_path = os.path.join(scratch, "record.json")
        process = context.Process(target=_child, args=(cell, chash, fingerprints, out_path, os.getpid()))
        with _standard_start_method():
            process.start()
        process.join()
        if os.path.exists(out_path):
            with open(out_path) as handle:
                return json.load(handle)
    cause = "killed by signal %d (out of memory?)" % -process.exitcode if process.exitcode and process.exitcode < 0 else f"exit code {process.exitcode}"
    return failed_record(cell, chash, fingerprints, f"cell process died before writing its record: {cause}")


# ------------------------------------------------------------------------------------ concurrency
def measures_timing(cell: CellConfig) -> bool:
    """Latency and energy are timed, so other work on the machine distorts them; an unsupported
    cell measures nothing."""
    if not (cell.measure.latency or cell.measure.energy):
        return False
    from methods.base import build_method

    return build_method(cell.method).unsupported_reason(cell.hardware) is None


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


def lease_dir(cell: CellConfig) -> Path:
    return Path(cell.paths.cache_dir) / "leases" / socket.gethostname()


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
            path.unlink(missing_ok=True)
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
    def acquire(cls, cell: CellConfig):
        """A lease, or the reason (a string) why this cell may not start now."""
        import fcntl
        import psutil

        directory = lease_dir(cell)
        directory.mkdir(parents=True, exist_ok=True)
        timing = measures_timing(cell)
        exclusive = timing and not cell.allow_concurrent_latency
        slots = current_launcher_workers()
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
                "cell": _label(cell), "timing": timing, "exclusive": exclusive, "slot": slot, "slots": slots,
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
        """With N workers on this machine, this cell (and its spawned child) gets core block `slot`."""
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


# ---------------------------------------------------------------------------------------- summary
def _label(cell: CellConfig) -> str:
    return " ".join(cell_names(cell).values())


def summary_line(record: dict, path: Path) -> str:
    names = " ".join(record["cell"].values())
    if record["status"] != "ok":
        return f"[{record['status']}] {names}: {record['reason']} -> {path}"
    parts = [f"[ok] {names}"]
    primary = record["config"]["task"]["primary_metric"]
    metrics = record.get("metrics") or {}
    value = metrics.get(primary, metrics.get(f"{primary}_matched"))
    parts.append(f"{primary} {value:.4f}" if isinstance(value, (int, float)) else f"{primary} n/a")
    size = record.get("size") or {}
    if size.get("pct_of_baseline_with_emb") is not None:
        parts.append(f"size {size['pct_of_baseline_with_emb']:.1f}%")
    fixed = (record.get("latency") or {}).get("fixed") or []
    if fixed:
        parts.append(f"p50 bs={fixed[0]['batch_size']} {fixed[0]['p50_ms']:.2f} ms")
    parts.append(f"{sum(record.get('timings', {}).values()):.0f} s")
    if (record.get("environment") or {}).get("concurrent_cells", 1) > 1:
        parts.append(f"shared with {record['environment']['concurrent_cells'] - 1} other cell(s)")
    return " | ".join(parts) + f" -> {path}"


def sweep_report(planned: list[Path], started: float) -> tuple[list[str], int]:
    """Lines listing how every planned cell ended, and the exit code (3 when a cell has no record)."""
    counts = {"ok": 0, "unsupported": 0, "failed": 0}
    earlier, problems = 0, []
    for path in planned:
        try:
            record = load_record(path)
        except (ValueError, FileNotFoundError):
            problems.append(f"  not run: {path.name} (refused, interrupted or crashed before writing; re-run the sweep)")
            continue
        counts[record["status"]] += 1
        earlier += path.stat().st_mtime < started
        if record["status"] == "failed":
            problems.append(f"  failed: {' '.join(record['cell'].values())}: {record['reason']} -> {path}")
    head = (f"compbench: sweep of {len(planned)} cells: {counts['ok']} ok, {counts['unsupported']} unsupported, "
            f"{counts['failed']} failed, {len(planned) - sum(counts.values())} not run ({earlier} recorded by earlier runs)")
    return [head, *problems], 3 if sum(counts.values()) < len(planned) else 0
