"""The order of a sweep on one machine (the default launcher, hydra/launcher=compbench): cells that
time nothing run side by side, timed cells one at a time.

A cell that measures latency or energy needs the machine to itself (harness.sweep.leases). A cell
that measures only accuracy, size, memory or FLOPs does not: none of those figures depends on what
else runs. So a sweep runs in three steps:

1. leaders: one untimed cell per baseline group (the cells that share a fine-tune and the baseline's
   predictions: same model, task, seed, device, dtype and data), side by side. Each builds what its
   group shares, once: the fine-tune (harness.finetune) and the baseline's predictions
   (harness.baseline_reference), cached under a key; any other process needing that key waits for it
   and then reads it (finetune.once_per_key);
2. the other untimed cells, side by side, reading those caches;
3. the timed cells, one at a time, on a machine no other cell of this sweep is using.

"Side by side" is up to `workers` cells at once; `auto` is the usable cores, no more than the cells,
and no more than fit in memory (each cell's estimated peak, harness.resources, against
DEFAULT_LIMIT_FRACTION of the memory available). Each running cell gets its own block of cores (its
lease's slot) and an equal share of the default memory limit. Ctrl-C or SIGTERM reaches only the main
thread: it sets isolation.STOP_REQUESTED, every running cell is stopped (one that had finished is
still recorded), cells not started stay unstarted, and the interrupt goes on up.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from harness.sweep.isolation import STOP_REQUESTED

AUTO = "auto"
WAIT_POLL_S = 0.5  # the main thread wakes this often, so a Ctrl-C is seen at once
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@dataclass
class Step:
    jobs: list[int]  # indices into the sweep's jobs, in the order given
    side_by_side: bool  # run them at once (up to the workers), or one after another


def runs_side_by_side(plan) -> bool:
    """Times nothing, and runs in its own process (isolate=true: a crash or a kill stays its own)."""
    return plan is not None and not plan.timed and plan.cell.isolate


def baseline_group(plan) -> tuple:
    """The cells that share one fine-tune and one set of baseline predictions (their cache keys are
    built from these; a finer key only makes more leaders, never a wrong share)."""
    cell = plan.cell
    return (repr(cell.model), repr(cell.task), cell.seed, cell.hardware.device, cell.hardware.dtype,
            tuple(sorted(plan.fingerprints.items())))


def plan_steps(plans: Sequence) -> list[Step]:
    """Leaders, then the other untimed cells, side by side; then every other job one at a time (a
    timed cell, or one that was not planned in this process and plans itself)."""
    leaders, followers, alone, seen = [], [], [], set()
    for index, plan in enumerate(plans):
        if not runs_side_by_side(plan):
            alone.append(index)
        elif baseline_group(plan) in seen:
            followers.append(index)
        else:
            seen.add(baseline_group(plan))
            leaders.append(index)
    steps = [Step(leaders, True), Step(followers, True), Step(alone, False)]
    return [step for step in steps if step.jobs]


def worker_count(requested, plans: Sequence, cores: Optional[int] = None, available_bytes: Optional[int] = None) -> int:
    """How many untimed cells run at once: `requested` (an int), or for `auto` the usable cores, no
    more than such cells and no more than fit in memory side by side."""
    from harness.preflight import usable_cores
    from harness.resources import DEFAULT_LIMIT_FRACTION

    if requested != AUTO:
        return max(1, int(requested))
    side = [plan for plan in plans if runs_side_by_side(plan)]
    cores = cores or usable_cores()
    peaks = [plan.peak_bytes for plan in side if plan.peak_bytes]
    fit = len(side)
    if peaks:
        if available_bytes is None:
            import psutil

            available_bytes = psutil.virtual_memory().available
        fit = int(DEFAULT_LIMIT_FRACTION * available_bytes // max(peaks))
    return max(1, min(cores, len(side), fit))


@contextlib.contextmanager
def plain_progress_lines(side_by_side: int):
    """Cells running at once would draw their progress bars over each other: plain lines meanwhile,
    unless the user chose (COMPBENCH_PROGRESS; the spawned cells inherit the environment)."""
    if side_by_side <= 1 or "COMPBENCH_PROGRESS" in os.environ:
        yield
        return
    os.environ["COMPBENCH_PROGRESS"] = "lines"
    try:
        yield
    finally:
        os.environ.pop("COMPBENCH_PROGRESS", None)


def run_side_by_side(jobs: dict, workers: int, run: Callable) -> dict:
    """`run(job, side_by_side)` for each job (index -> job) with up to `workers` at once; returns
    index -> ("ok", value) or ("error", exception). Raises KeyboardInterrupt after stopping them all."""
    at_once = max(1, min(workers, len(jobs)))
    results = {}
    pool = concurrent.futures.ThreadPoolExecutor(at_once, thread_name_prefix="compbench-cell")
    futures: dict = {}
    with plain_progress_lines(at_once):
        try:
            # A signal handled while a worker thread starts would leave that thread out of the pool's
            # list, unstopped and unjoined: hold Ctrl-C and SIGTERM until every job is submitted (the
            # threads inherit the mask, so they never take them; the main thread gets them on unblocking).
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                for index, job in jobs.items():
                    futures[pool.submit(run, job, at_once)] = index
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            pending = set(futures)
            while pending:
                _, pending = concurrent.futures.wait(pending, timeout=WAIT_POLL_S)
        except KeyboardInterrupt:
            STOP_REQUESTED.set()  # every running cell stops its child; finished ones are recorded
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
            STOP_REQUESTED.clear()
    for future, index in futures.items():
        error = future.exception()
        results[index] = ("error", error) if error is not None else ("ok", future.result())
    return results
