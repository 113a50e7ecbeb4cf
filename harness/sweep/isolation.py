"""One fresh spawned process per cell, so a crash or an OOM-kill becomes a `failed` record.

The child writes its record into a scratch directory `<tmp>/compbench-cell-<parent pid>-*`; the
parent reads it and writes the real record. Interrupts lose nothing and leave nothing behind:

- the child ignores SIGINT (a Ctrl-C reaches the whole process group): the parent decides. On an
  interrupt the parent stops the child (SIGTERM, which the child turns into a normal exit, so its
  own `finally` blocks and temporary directories run) and, when the child had already finished,
  hands its record up in `CellInterrupted` so it is recorded before the sweep stops;
- the scratch directory is removed on every path; one whose owner was SIGKILLed (its pid is gone,
  or belongs to a process started after the directory) is removed by the next isolated cell;
- the kernel SIGKILLs the child when the parent dies (Linux PR_SET_PDEATHSIG): no orphan cell;
- the child runs under the cell's memory limit (harness.sweep.memory_watch): past it, it is killed
  and its record says so; a child that died otherwise is described as precisely as the parent can.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Optional

from harness.resources import limit_bytes, limit_source
from harness.sweep.memory_watch import MemoryWatch

SCRATCH_PREFIX = "compbench-cell-"
STOP_GRACE_S = 10.0  # how long a stopped child may take to exit before it is killed
JOIN_POLL_S = 0.2  # how often a waiting parent looks at STOP_REQUESTED
# Set by a parallel sweep (harness.sweep.parallel) when Ctrl-C or SIGTERM reached its main thread:
# the signal interrupts only that thread, so the threads waiting on other cells stop theirs on this.
STOP_REQUESTED = threading.Event()


class CellInterrupted(KeyboardInterrupt):
    """Ctrl-C while a cell ran; `record` is the cell's record when it had finished, else None."""

    def __init__(self, record: Optional[dict]):
        super().__init__()
        self.record = record


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


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(128 + signum)


def _child(executor: Callable, cell, chash: str, fingerprints: dict, out_path: str, parent_pid: int) -> None:
    from harness.record import write_json_atomic

    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C for both
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # unwinds with-blocks: the cell's temp dirs go
    # A process inherits its starter's signal mask, and a parallel sweep's worker threads hold Ctrl-C and
    # SIGTERM blocked (harness.sweep.parallel): unblocked here, or the parent's terminate() is never seen
    # and the cell is SIGKILLed STOP_GRACE_S later, its temp dirs left behind.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    write_json_atomic(out_path, executor(cell, chash, fingerprints))


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


def _owner_gone(path: Path) -> bool:
    """The process that made this scratch directory no longer exists."""
    import psutil

    pid = path.name[len(SCRATCH_PREFIX):].split("-")[0]
    if not pid.isdigit():
        return False  # not ours to judge
    try:
        return psutil.Process(int(pid)).create_time() > path.stat().st_mtime + 1  # pid reused since
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, OSError):
        return False


def remove_stale_scratch(root: Optional[str] = None) -> list[Path]:
    """Delete scratch directories left by SIGKILLed sweeps; returns what was removed."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        if path.is_dir() and _owner_gone(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _read(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _stop(process) -> None:
    if process.is_alive():
        process.terminate()
        process.join(STOP_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join()


def _join(process) -> None:
    """Wait for the child; KeyboardInterrupt when the sweep was asked to stop (from any thread)."""
    while process.is_alive():
        process.join(JOIN_POLL_S)
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt


def run_isolated(executor: Callable, plan, sharing: int = 1) -> tuple[Optional[dict], Optional[str]]:
    """(the child's record, None), or (None, why the child died without one). `sharing`: the cells
    running side by side, which split the default memory limit (harness.resources.limit_bytes)."""
    remove_stale_scratch()
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    try:
        out_path = os.path.join(scratch, "record.json")
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=_child, args=(executor, plan.cell, plan.config_hash, plan.fingerprints, out_path, os.getpid()))
        with _standard_start_method():
            process.start()
        limit = limit_bytes(plan.cell, sharing)
        with MemoryWatch(process.pid, limit, limit_source(plan.cell.memory_limit_gb, "when the cell started", sharing)) as watch:
            try:
                _join(process)
            except KeyboardInterrupt:
                _stop(process)
                raise CellInterrupted(_read(out_path)) from None
        record = _read(out_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if record is not None:
        return record, None
    return None, f"cell process died before writing its record: {watch.death_reason(process.exitcode)}"
