"""Steady-state latency: warmup, then time each call until a count AND a duration are reached.

CPU calls are timed with perf_counter. CUDA calls get a start/end torch.cuda.Event pair
each and a single synchronize at the end, so asynchronous execution (CUDA graphs,
overlapping launches) is not serialized by the timer itself (optimum-benchmark's tracker).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from typing import Any, Callable, Optional

import torch

from harness.errors import UnsupportedError
from harness.measure.stats import bootstrap_ci, summarize_ms
from harness.progress import progress as progress_bar

Batch = dict


def configure_threads(hardware) -> dict:
    """Apply intra/inter-op thread counts for this process; report what is in effect.

    Core pinning is not configured here: the process inherits its affinity (harness.sweep pins
    concurrent cells to disjoint cores), and the intra-op default follows it.
    """
    notes: list[str] = []
    intra = hardware.num_threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(int(intra))
    if hardware.interop_threads:
        try:
            torch.set_num_interop_threads(int(hardware.interop_threads))
        except RuntimeError as err:  # settable once, and only before any inter-op work
            notes.append(f"interop_threads={hardware.interop_threads} not applied: {err}")
    return {
        "intra_op": torch.get_num_threads(),
        "inter_op": torch.get_num_interop_threads(),
        "affinity": sorted(os.sched_getaffinity(0)),
        # OpenMP workers spin between parallel regions unless told otherwise; that is what makes a
        # foreign busy process so costly (BENCHMARKS.md, "Disturbance"). Recorded, not changed.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "notes": notes,
    }


def prepare_model(model: torch.nn.Module, hardware) -> tuple[Callable[[Batch], Any], str]:
    """Wrap `model` per hardware.compile into a callable taking one input dict."""
    mode = hardware.compile
    if mode == "eager":
        return _call_with(model), "eager"
    if mode == "compile":
        compiled = torch.compile(model)
        return _call_with(compiled), "torch.compile (inductor, default mode)"
    if mode == "cudagraphs":
        if hardware.device != "cuda" or not torch.cuda.is_available():
            raise UnsupportedError("unsupported on cpu: CUDA graphs need a CUDA device")
        compiled = torch.compile(model, mode="reduce-overhead")

        def run_graph(batch: Batch) -> Any:
            # Marks a new iteration so a replay may reuse the previous outputs' memory.
            torch.compiler.cudagraph_mark_step_begin()
            return compiled(**batch)

        return run_graph, "torch.compile (mode=reduce-overhead: CUDA graphs)"
    raise ValueError(f"unknown compile mode {mode!r}")


def _call_with(model: Callable[..., Any]) -> Callable[[Batch], Any]:
    def run(batch: Batch) -> Any:
        return model(**batch)

    return run


def _on_cuda(batch: Batch) -> bool:
    return any(isinstance(v, torch.Tensor) and v.is_cuda for v in batch.values())


def cold_start_ms(run: Callable[[Batch], Any], batch: Batch) -> float:
    """Wall time of one call, meant for the very first call after loading/compiling."""
    cuda = _on_cuda(batch)
    with torch.inference_mode():
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(batch)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3


def warm_up(run: Callable[[Batch], Any], batches: list[Batch], warmup: int, compile_mode: str = "eager") -> int:
    """`warmup` calls; then, if torch.compile is at work (hardware.compile, or a method that compiles
    in place, such as torchao int8, seen compiling during those calls), more calls of every distinct
    input shape: two (compile, then run the built graph), three in cudagraphs mode
    (see warm_up_every_shape).

    A compiled model builds graphs per shape whatever shapes the accuracy pass fed it before: the
    timed loop must find every graph built. Eager models skip the shape sweep, which would cost 64
    calls for 32 real-length batches. Returns the number of calls made.
    """
    frames_before = compiled_frames() or 0
    for i in range(warmup):
        run(batches[i % len(batches)])
    calls = warmup
    if compile_mode == "cudagraphs":
        calls += sum(warm_up_every_shape(run, batches).values())
    elif compile_mode == "compile" or (compiled_frames() or 0) > frames_before:
        calls += sum(warm_up_every_shape(run, batches, 2).values())
    return calls


def compiled_frames() -> Optional[int]:
    """Frames torch.compile has compiled so far in this process (None when dynamo is unavailable)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return None
    return int(sum(counters["frames"].values()))


def measure_latency(
    run: Callable[[Batch], Any],
    batches: list[Batch],
    hardware,
    batch_size: int,
    seq_len: Optional[int],
    label: str,
    progress: bool = True,
    n_bootstrap: int = 1000,
    canary=None,
    calibration: Optional[list] = None,
) -> dict:
    """Time `run(batch)` cycling through `batches` (already on the device) in order: call i times
    batches[i % len(batches)].

    Stops once count >= max(hardware.min_iterations, len(batches)) AND elapsed >=
    hardware.min_duration_s, or at hardware.max_duration_s regardless: every batch is timed at
    least once unless the time cap cuts the pass short. `n_bootstrap=0` skips the p50 CI.
    `canary` (CPU; harness.measure.stability.Canary): timed every CANARY_EVERY_S between calls, and
    the entry's "stability" judges the pass by it against `calibration`.
    """
    if not batches:
        raise ValueError("measure_latency needs at least one batch")
    cuda = hardware.device == "cuda"
    with torch.inference_mode():
        warmup_calls = warm_up(run, batches, hardware.warmup, hardware.compile)
        if cuda:
            torch.cuda.synchronize()
        frames_before = compiled_frames()
        canary_blocks: list = []
        with _gc_paused():
            if cuda:
                values_ms, elapsed_s, stopped_by = _cuda_event_loop(run, batches, hardware, desc=f"latency {label}", progress=progress)
            else:
                values_ms, elapsed_s, stopped_by = _perf_counter_loop(run, batches, hardware, desc=f"latency {label}", progress=progress,
                                                                      canary=canary, canary_blocks=canary_blocks)
        frames_after = compiled_frames()
    entry = latency_entry(values_ms, hardware, batch_size, seq_len, label, warmup_calls, elapsed_s, stopped_by,
                          frames_before, frames_after, n_bootstrap)
    if canary_blocks:
        from harness.measure.stability import judge_alone

        entry["stability"] = judge_alone(canary_blocks, calibration or [])
    return entry


def latency_entry(values_ms, hardware, batch_size, seq_len, label, warmup_calls, elapsed_s, stopped_by,
                  frames_before, frames_after, n_bootstrap) -> dict:
    """One record entry of latency.fixed / latency.real_length from the timed calls (milliseconds)."""
    return {
        "label": label,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "mode": hardware.compile,
        "timer": "cuda_event" if hardware.device == "cuda" else "perf_counter",
        **summarize_ms(values_ms, batch_size),
        "p50_ci95_ms": list(bootstrap_ci(values_ms, n_resamples=n_bootstrap)) if n_bootstrap > 0 else None,
        "warmup": warmup_calls,
        "duration_s": elapsed_s,
        "stopped_by": stopped_by,
        # torch.compile frames compiled inside the timed loop: must be 0 (warm_up covers every shape).
        "compiled_during_timing": None if frames_before is None else frames_after - frames_before,
    }


@contextlib.contextmanager
def _gc_paused():
    """Collector pauses are not the model's latency; timeit disables gc for the same reason."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Inductor's CUDA-graph trees keep one graph per input shape: its first call runs eagerly, the
# second records, the third is the first replay. Every shape the timed loop will see gets these
# calls before timing, or the real-length pass (32 batches, as many shapes) times the recordings.
CUDA_GRAPH_CALLS_PER_SHAPE = 3


def batch_shape(batch: Batch) -> tuple:
    return tuple(sorted((k, tuple(v.shape)) for k, v in batch.items() if isinstance(v, torch.Tensor)))


def warm_up_every_shape(run: Callable[[Batch], Any], batches: list[Batch], calls: int = CUDA_GRAPH_CALLS_PER_SHAPE) -> dict:
    """Call `run` `calls` times on one batch of each distinct shape in `batches`; returns {shape: calls}."""
    firsts: dict[tuple, Batch] = {}
    for batch in batches:
        firsts.setdefault(batch_shape(batch), batch)
    for batch in firsts.values():
        for _ in range(calls):
            run(batch)
    return {shape: calls for shape in firsts}


def _stop_reason(count: int, elapsed: float, hardware, n_batches: int = 1) -> Optional[str]:
    # At least one call per batch: the batches are a sample of the eval set, and a pass that stops
    # after its first few inputs times those inputs, not the set (an input-dependent method's cost
    # varies with them: issue 27).
    if count >= max(hardware.min_iterations, n_batches) and elapsed >= hardware.min_duration_s:
        return "min_iterations_and_duration"
    if elapsed >= hardware.max_duration_s:
        return "max_duration"
    return None


CANARY_EVERY_S = 0.2  # a pass timed alone times its canary this often (the interleaved pass: after every block)


def _perf_counter_loop(run, batches, hardware, desc: str, progress: bool, canary=None, canary_blocks=None) -> tuple[list[float], float, str]:
    values: list[float] = []
    n_batches = len(batches)
    clock = time.perf_counter
    with progress_bar(desc=desc, unit="call", leave=False, enabled=progress) as bar:
        start = last_canary = clock()
        while True:
            batch = batches[len(values) % n_batches]
            t0 = clock()
            run(batch)
            t1 = clock()
            values.append((t1 - t0) * 1e3)
            bar.update()
            stop = _stop_reason(len(values), t1 - start, hardware, n_batches)
            if stop:
                return values, t1 - start, stop
            if canary is not None and t1 - last_canary >= CANARY_EVERY_S:
                canary_blocks.append(canary.time_block())  # between calls, outside any call's timing
                last_canary = clock()


def _cuda_event_loop(run, batches, hardware, desc: str, progress: bool) -> tuple[list[float], float, str]:
    pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    n_batches = len(batches)
    clock = time.perf_counter
    with progress_bar(desc=desc, unit="call", leave=False, enabled=progress) as bar:
        start = clock()
        while True:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            run(batches[len(pairs) % n_batches])
            end.record()
            pairs.append((begin, end))
            bar.update()
            # Host-side elapsed time: launches run ahead of the GPU by at most the queue
            # depth, and the final synchronize below waits for the remainder.
            stop = _stop_reason(len(pairs), clock() - start, hardware, n_batches)
            if stop:
                break
    torch.cuda.synchronize()
    elapsed = clock() - start
    return [b.elapsed_time(e) for b, e in pairs], elapsed, stop
