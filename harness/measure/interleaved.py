"""Speedup against the baseline, timed in alternating blocks in one process.

A speedup computed from two cells measured minutes apart inherits the machine's drift (fp32 p50
of the same model moves 25 -> 36 ms within a minute on a shared 2-core VM). Here the method and
the reference (the fine-tuned fp32 baseline, PyTorch eager) run on the same inputs, with the
same threads, in ABBA-ordered blocks of a few calls each, so slow drift hits both alike and
cancels in the ratio. The CI resamples *block pairs* (a block of each, adjacent in time), which
keeps that pairing: a percentile bootstrap of median(reference) / median(method).

Both sides cycle through the same batches in the same order (call i of either side times batch
i mod len(batches)), and the pass lasts until every batch was timed at least once. A method whose
compute depends on its input (early exit: `Method.input_dependent_compute`) is compared by the
ratio of *mean* latencies, its cost per example over the sampled inputs: its median is the cost of
whichever inputs happen to be the middle of the sample (issue 27: p50 5.10x, mean 3.0x on SST-2).
The other ratio is recorded too.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NotRequired, Optional, TypedDict

import numpy as np
import torch

from harness.measure.latency import _gc_paused, batch_shape, compiled_frames, latency_entry, warm_up
from harness.measure.stability import Canary, StabilityLimits, judge
from harness.measure.stats import SPEEDUP_STATISTICS, ratio_ci  # noqa: F401 - ratio_ci: part of this module's API

Batch = dict
BLOCK_TARGET_S = 0.2  # one block lasts about this long: short against drift, long against switching cost
MAX_BLOCK_CALLS = 32
REFERENCE = "the fine-tuned fp32 baseline in PyTorch eager on the same device, inputs and threads"


class Speedup(TypedDict):
    value: float  # reference <statistic> / method <statistic> (> 1: the method is faster)
    statistic: str  # "p50" | "mean": what `value` and `ci95` are ratios of; absent in older records (p50)
    value_p50: float  # reference p50 / method p50, whichever the statistic
    value_mean: float  # reference mean / method mean, whichever the statistic
    ci95: Optional[list]  # [low, high] of `value`, bootstrap over block pairs; None with n_bootstrap=0
    reference_p50_ms: float  # p50 of the reference's calls, interleaved with the method's
    method_p50_ms: float  # p50 of the method's calls in the same run
    reference_mean_ms: float  # mean of the reference's calls
    method_mean_ms: float  # mean of the method's calls
    reference_values_ms: list  # the reference's raw per-call times in call order (the method's: the entry's values_ms)
    reference_count: int  # timed reference calls
    block_pairs: int  # (method block, reference block) pairs, ABBA order
    block_calls: int  # calls per block
    reference: str  # what the reference model is
    design: str  # how the two were timed
    # harness.record.PooledSpeedup: present only with measure.latency_processes > 1 (added by
    # harness.sweep.fresh_processes in the sweep's process; reports prefer it to `value`)
    pooled: NotRequired[dict]


def _time_block(run: Callable[[Batch], Any], batches: list[Batch], start: int, count: int, cuda: bool) -> list[float]:
    """`count` timed calls cycling through `batches` from index `start`, in milliseconds."""
    values = []
    if cuda:
        events = []
        for i in range(count):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            run(batches[(start + i) % len(batches)])
            end.record()
            events.append((begin, end))
        torch.cuda.synchronize()
        return [b.elapsed_time(e) for b, e in events]
    clock = time.perf_counter
    for i in range(count):
        t0 = clock()
        run(batches[(start + i) % len(batches)])
        values.append((clock() - t0) * 1e3)
    return values


def _block_calls(run_method, run_reference, batches, cuda: bool) -> int:
    probe = max(np.median(_time_block(run_method, batches, 0, 3, cuda)), np.median(_time_block(run_reference, batches, 0, 3, cuda)))
    return int(min(MAX_BLOCK_CALLS, max(1, BLOCK_TARGET_S * 1e3 // max(probe, 1e-3))))


def measure_interleaved(
    run_method: Callable[[Batch], Any],
    run_reference: Callable[[Batch], Any],
    batches: list[Batch],
    hardware,
    batch_size: int,
    seq_len: Optional[int],
    label: str,
    n_bootstrap: int = 1000,
    statistic: str = "p50",
    canary: Optional[Canary] = None,
    calibration: Optional[list] = None,
    limits: StabilityLimits = StabilityLimits(),
) -> tuple[dict, Speedup]:
    """Time the method and the reference alternately; return (the method's latency entry, speedup).

    Stops once each side has max(hardware.min_iterations, len(batches)) calls and the run has
    lasted 2 x hardware.min_duration_s, or at 2 x hardware.max_duration_s regardless.
    `statistic` ("p50" | "mean"): what the speedup and its CI are a ratio of. `canary`: timed at
    the end of every block; the entry's "stability" judges the pass (harness.measure.stability)
    against `calibration`, this machine's remembered canary times.
    """
    if statistic not in SPEEDUP_STATISTICS:
        raise ValueError(f"unknown speedup statistic {statistic!r} (one of {', '.join(SPEEDUP_STATISTICS)})")
    cuda = hardware.device == "cuda"
    with torch.inference_mode():
        warmup_calls = warm_up(run_method, batches, hardware.warmup, hardware.compile)
        warm_up(run_reference, batches, hardware.warmup)
        block = _block_calls(run_method, run_reference, batches, cuda)
        frames_before = compiled_frames()
        pairs: list[tuple[list[float], list[float]]] = []
        canary_blocks: list = []  # per pair: (canary after the method's block, after the reference's)
        stopped_by = None
        with _gc_paused():
            start = time.perf_counter()
            while stopped_by is None:
                # ABBA: method first in even pairs, reference first in odd ones, so a linear
                # drift within a pair favours neither.
                index = len(pairs) * block
                sides = {}
                for side in (("method", "reference") if len(pairs) % 2 == 0 else ("reference", "method")):
                    run = run_method if side == "method" else run_reference
                    sides[side] = _time_block(run, batches, index, block, cuda)
                    sides[side + "_canary"] = canary.time_block() if canary else None
                pairs.append((sides["method"], sides["reference"]))
                if canary:
                    canary_blocks.append((sides["method_canary"], sides["reference_canary"]))
                elapsed = time.perf_counter() - start
                calls = len(pairs) * block
                # every batch timed at least once on each side (see latency._stop_reason)
                if calls >= max(hardware.min_iterations, len(batches)) and elapsed >= 2 * hardware.min_duration_s and len(pairs) >= 2:
                    stopped_by = "min_iterations_and_duration"
                elif elapsed >= 2 * hardware.max_duration_s:
                    stopped_by = "max_duration"
        frames_after = compiled_frames()
    method_values = [v for m, _ in pairs for v in m]
    reference_values = [v for _, r in pairs for v in r]
    entry = latency_entry(method_values, hardware, batch_size, seq_len, label, warmup_calls, elapsed, stopped_by,
                          frames_before, frames_after, n_bootstrap)
    entry["interleaved"] = True
    # Pairs and halves compare like with like only when every input costs the same: one shape (fixed
    # length) and a method whose cost does not depend on its input (the p50 statistic).
    uniform = statistic == "p50" and len({batch_shape(b) for b in batches}) == 1
    entry["stability"] = judge(pairs, canary_blocks or None, calibration or [], limits, SPEEDUP_STATISTICS[statistic], uniform)
    reference_p50, reference_mean = float(np.median(reference_values)), float(np.mean(reference_values))
    ratios = {"p50": reference_p50 / entry["p50_ms"], "mean": reference_mean / entry["mean_ms"]}
    speedup = Speedup(
        value=ratios[statistic],
        statistic=statistic,
        value_p50=ratios["p50"],
        value_mean=ratios["mean"],
        ci95=ratio_ci(pairs, n_bootstrap, statistic=statistic) if n_bootstrap > 0 else None,
        reference_p50_ms=reference_p50,
        method_p50_ms=entry["p50_ms"],
        reference_mean_ms=reference_mean,
        method_mean_ms=entry["mean_ms"],
        reference_values_ms=[float(v) for v in reference_values],
        reference_count=len(reference_values),
        block_pairs=len(pairs),
        block_calls=block,
        reference=REFERENCE,
        design="interleaved ABBA blocks in one process; CI: percentile bootstrap over block pairs",
    )
    return entry, speedup
