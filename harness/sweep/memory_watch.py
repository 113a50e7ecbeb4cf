"""A running cell's memory, watched from the parent: the cell process (and any process it started,
such as torch.compile's workers) is SIGKILLed when its resident memory passes the cell's limit, so
a runaway cell fails alone, with its own reason, instead of taking a shared machine down.

The parent also keeps what it saw last (the cell's peak, the machine's available memory), so a cell
killed from outside is described honestly: the kernel's out-of-memory killer when the machine was
nearly out of memory, otherwise a kill by a person or a scheduler.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

import psutil

from harness.resources import GIB

POLL_S = 0.5  # ~0.6 ms of CPU per poll: 0.1 % of a core beside a latency pass; a runaway cell grows slower than this
NEARLY_OUT_OF_MEMORY = 0.05  # available share of the machine's memory below which an outside SIGKILL is likely the OOM killer


def resident_bytes(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass  # exited between listing and reading
    return total


class MemoryWatch:
    """Polls the cell's resident memory every POLL_S seconds while the `with` block runs."""

    def __init__(self, pid: int, limit_bytes: int, limit_source: str):
        self.pid = pid
        self.limit_bytes = limit_bytes
        self.limit_source = limit_source  # how the limit was set, for the failure reason
        self.peak_bytes = 0
        self.exceeded_bytes: Optional[int] = None  # the resident memory that made the watch kill the cell
        self.available_bytes = psutil.virtual_memory().available  # the machine's, at the last poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="compbench-memory-watch", daemon=True)

    def __enter__(self) -> "MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.wait(POLL_S):
            try:
                resident = resident_bytes(process)
            except psutil.Error:
                return  # the cell has exited
            self.peak_bytes = max(self.peak_bytes, resident)
            self.available_bytes = psutil.virtual_memory().available
            if resident > self.limit_bytes:
                self.exceeded_bytes = resident
                self._kill(process)
                return

    @staticmethod
    def _kill(process: psutil.Process) -> None:
        for member in [*process.children(recursive=True), process]:
            try:
                member.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass

    def death_reason(self, exitcode: Optional[int]) -> str:
        """Why the cell process ended without a record, as precisely as the parent can tell."""
        if self.exceeded_bytes is not None:
            return (f"exceeded its memory limit: {self.exceeded_bytes / GIB:.1f} GiB resident, limit {self.limit_bytes / GIB:.1f} GiB "
                    f"({self.limit_source}); compbench stopped it so the machine stays usable")
        if exitcode == 128 + signal.SIGTERM or exitcode == -signal.SIGTERM:  # the cell turns SIGTERM into this exit
            return "stopped by SIGTERM (scancel, a job's time limit, a shutdown or a kill)"
        if exitcode is None or exitcode >= 0:
            return f"exit code {exitcode}"
        name = _signal_name(-exitcode)
        if -exitcode != signal.SIGKILL:
            return f"ended by {name}"
        total = psutil.virtual_memory().total
        seen = f"its peak was {self.peak_bytes / GIB:.1f} GiB and the machine had {self.available_bytes / GIB:.1f} GiB available at the last check"
        if self.available_bytes < NEARLY_OUT_OF_MEMORY * total:
            return f"killed by SIGKILL from outside compbench, likely the kernel's out-of-memory killer: {seen}"
        return f"killed by SIGKILL from outside compbench (a person or a scheduler; memory was not short: {seen})"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
