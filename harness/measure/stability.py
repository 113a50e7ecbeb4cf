"""Was a timed pass steady? The stability verdict, from a canary and from the blocks.

The contention verdict (contention.py) sees other processes and the hypervisor's steal. It cannot
see a neighbour on the host's sibling thread of our vCPU, a frequency drop, or a disturbance too
short to move a whole pass's average (issue 30: five fresh processes, every pass "clean", speedups
1.68 to 2.42). Two detectors that do not depend on the cause:

- **the canary**: a fixed workload of known cost, an fp32 and an int8 linear layer shaped like
  MiniLM's feed-forward layer on one 128-token sequence, timed at the end of every block (the
  method's and the reference's). Its median over the pass must stay within `max_canary_slowdown`
  of this machine's calibrated time (the median of its recent steady passes, kept per machine
  fingerprint and thread count under the cache directory), and no more than `max_pair_outliers` of
  its blocks may run `max_canary_step` slower than the pass's own median: that is a step in time.
- **the block pairs**: the speedup is a ratio of two medians, and each (method block, reference
  block) pair, adjacent in time, gives its own ratio. On an undisturbed machine they agree within
  a few percent (BENCHMARKS.md, "Speedup repeatability on every machine kind"); a slowdown of some method blocks only moves
  theirs, whether or not the canary felt it. A step is either more than `max_pair_outliers` of
  the pairs further than `max_pair_deviation` from the median ratio, or a pass whose first and
  second halves give speedups more than `max_half_difference` apart. A lone odd pair (a burst
  that hit one side of one pair) moves neither the median nor the verdict. A pass over batches of
  different lengths (real-length latency), or of a method whose compute depends on its input (early
  exit, compared by means), times inputs of different cost in each pair and each half, so only the
  canary judges it.

A pass timed alone (the baseline's own cell, no reference beside it) has no block pairs: its canary,
timed every 0.2 s between calls, judges it alone. A pass failing either is `unstable`, with the
figures; harness.measure.contention.until_clean re-measures it, and harness.sweep.fresh_processes
re-runs the cell in a fresh process when it stays so. A slowdown of a whole process that the canary
does not feel is invisible here: harness.measure.speedup_history judges it against the cell's
earlier runs on this machine.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, Optional, TypedDict

import numpy as np
import torch

# The canary's shape: MiniLM-L6-H384's FFN up-projection on one sequence of 128 tokens. Fixed, so
# one calibration per machine serves every model; sized like a layer, so it contends for the same
# caches and vector units as the model.
CANARY_ROWS, CANARY_IN, CANARY_OUT = 128, 384, 1536
CANARY_CALLS = 3  # per kernel per block: 2.79 ms a block on machine C, 1.38 % of a pass (BENCHMARKS.md)
CALIBRATION_KEEP = 20  # steady passes remembered per machine and thread count
CALIBRATION_MIN = 3  # passes needed before the canary's throughput is judged against them


@dataclass(frozen=True)
class StabilityLimits:
    # canary median over the pass / calibrated: steady passes on machine C spread up to 1.19x (int8's
    # 0.3 ms calls) around their median; a process whose int8 kernels run twice as slow is 2x
    max_canary_slowdown: float = 1.35
    max_canary_step: float = 1.25  # one block's canary / the pass's median canary
    max_pair_deviation: float = 0.10  # a block pair's ratio this far from the median ratio is an outlier
    max_pair_outliers: float = 0.25  # share of outlier pairs tolerated (at least one pair always is)
    max_half_difference: float = 0.05  # the speedups of the pass's first and second halves may differ this much


class CanaryFigures(TypedDict):
    fp32_ms: float  # median time of one fp32 canary call over the pass
    int8_ms: float  # median time of one int8 canary call over the pass
    calibrated_fp32_ms: Optional[float]  # this machine's calibrated time (None: not yet calibrated)
    calibrated_int8_ms: Optional[float]
    calibration_passes: int  # steady passes behind the calibration
    slowest_block_ratio: float  # slowest block's canary (fp32 + int8) / the pass's median
    slow_blocks: int  # blocks whose canary ran more than max_canary_step x the pass's median
    blocks: int  # canary blocks timed
    method_blocks_ms: float  # canary median in the method's blocks (fp32 + int8); a pass timed alone: all its blocks
    reference_blocks_ms: Optional[float]  # canary median in the reference's blocks (fp32 + int8); None when timed alone


class StabilityReport(TypedDict):
    verdict: str  # "steady" | "unstable"
    reasons: list  # list[str]: why "unstable", each with its figures (empty when steady)
    pair_ratios: list  # reference / method median of each block pair, in time order
    pair_outliers: int  # pairs further than max_pair_deviation from the median ratio
    half_speedups: Optional[list]  # [first half, second half] speedup of the pass (None under 4 pairs)
    canary: Optional[dict]  # CanaryFigures; None when no canary ran (a CUDA pass: the block pairs alone judge it)
    limits: dict  # the StabilityLimits used
    # harness.measure.speedup_history.HistoryFigures: present only when the sweep found this speedup far
    # from the cell's earlier runs on this machine (set in the sweep's process, after the run)
    history: NotRequired[dict]


class Canary:
    """The fixed reference workload; `time_block()` returns one block's (fp32, int8) median ms."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.input = torch.randn(CANARY_ROWS, CANARY_IN, generator=generator)
        self.fp32 = torch.nn.Linear(CANARY_IN, CANARY_OUT).eval()
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao's eager int8 is deprecated, and still the int8 kernel to time here
            warnings.simplefilter("ignore")
            self.int8 = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(CANARY_IN, CANARY_OUT)), {torch.nn.Linear},
                                         dtype=torch.qint8).eval()
        with torch.inference_mode():
            for _ in range(CANARY_CALLS):
                self.fp32(self.input), self.int8(self.input)

    def time_block(self) -> tuple[float, float]:
        clock = time.perf_counter
        medians = []
        with torch.inference_mode():
            for layer in (self.fp32, self.int8):
                values = []
                for _ in range(CANARY_CALLS):
                    t0 = clock()
                    layer(self.input)
                    values.append((clock() - t0) * 1e3)
                medians.append(float(np.median(values)))
        return medians[0], medians[1]


def calibration_path(cache_dir: str, threads: int) -> Path:
    from harness.measure.environment import cpu_fingerprint

    return Path(os.path.expanduser(cache_dir)) / "canary" / f"{cpu_fingerprint()}-t{threads}.json"


def read_calibration(path: Optional[Path]) -> list:
    """The steady passes' canary medians remembered for this machine: [[fp32_ms, int8_ms], ...]."""
    if path is None:
        return []
    try:
        passes = json.loads(path.read_text())["passes"]
        return [[float(a), float(b)] for a, b in passes]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def remember(path: Optional[Path], canary: dict) -> None:
    """Add a steady pass's canary to the calibration (atomically; a lost update only loses one pass)."""
    if path is None:
        return
    from harness.record import write_json_atomic

    passes = read_calibration(path) + [[canary["fp32_ms"], canary["int8_ms"]]]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"shape": [CANARY_ROWS, CANARY_IN, CANARY_OUT], "passes": passes[-CALIBRATION_KEEP:]})


def _canary_figures(method_blocks: list, reference_blocks: list, calibration: list, limits: StabilityLimits) -> CanaryFigures:
    blocks = np.asarray(method_blocks + reference_blocks)  # rows: (fp32, int8); no reference blocks in a pass timed alone
    medians = np.median(blocks, axis=0)
    per_block = blocks.sum(axis=1)
    calibrated = np.median(np.asarray(calibration), axis=0) if len(calibration) >= CALIBRATION_MIN else None
    return CanaryFigures(
        fp32_ms=round(float(medians[0]), 4),
        int8_ms=round(float(medians[1]), 4),
        calibrated_fp32_ms=None if calibrated is None else round(float(calibrated[0]), 4),
        calibrated_int8_ms=None if calibrated is None else round(float(calibrated[1]), 4),
        calibration_passes=len(calibration),
        slowest_block_ratio=round(float(per_block.max() / np.median(per_block)), 3),
        slow_blocks=int((per_block > limits.max_canary_step * np.median(per_block)).sum()),
        blocks=len(blocks),
        method_blocks_ms=round(float(np.median(np.asarray(method_blocks).sum(axis=1))), 4),
        reference_blocks_ms=round(float(np.median(np.asarray(reference_blocks).sum(axis=1))), 4) if reference_blocks else None,
    )


def _half_speedups(pairs: list, statistic) -> Optional[list]:
    """The speedup over the first and over the second half of the block pairs: a step in time that
    moves the pass's figure splits them; a lone odd block does not."""
    if len(pairs) < 4:
        return None
    middle = len(pairs) // 2
    halves = []
    for part in (pairs[:middle], pairs[middle:]):
        reference = np.concatenate([np.asarray(r, dtype=float) for _, r in part])
        method = np.concatenate([np.asarray(m, dtype=float) for m, _ in part])
        halves.append(round(float(statistic(reference) / statistic(method)), 4))
    return halves


def _canary_reasons(canary: CanaryFigures, limits: StabilityLimits) -> list:
    reasons = []
    for kind in ("fp32", "int8"):
        calibrated = canary[f"calibrated_{kind}_ms"]
        if calibrated and canary[f"{kind}_ms"] > limits.max_canary_slowdown * calibrated:
            reasons.append(f"the {kind} canary took {canary[f'{kind}_ms']:.3f} ms, {canary[f'{kind}_ms'] / calibrated:.2f}x "
                           f"this machine's calibrated {calibrated:.3f} ms (limit {limits.max_canary_slowdown:g}x)")
    slow, blocks = canary["slow_blocks"], canary["blocks"]
    if slow > max(1, int(limits.max_pair_outliers * blocks)):
        reasons.append(f"the canary ran more than {limits.max_canary_step:g}x its pass median in {slow} of {blocks} blocks "
                       f"(slowest {canary['slowest_block_ratio']:.2f}x)")
    return reasons


def judge_alone(canary_blocks: list, calibration: list, limits: StabilityLimits = StabilityLimits()) -> StabilityReport:
    """The verdict of a pass timed alone (no reference beside it: the baseline's own cell): its canary only."""
    canary = _canary_figures(list(canary_blocks), [], calibration, limits)
    reasons = _canary_reasons(canary, limits)
    return StabilityReport(verdict="unstable" if reasons else "steady", half_speedups=None, reasons=reasons, pair_ratios=[],
                           pair_outliers=0, canary=canary, limits=limits.__dict__.copy())


def judge(pairs: list, canary_blocks: Optional[list], calibration: list, limits: StabilityLimits = StabilityLimits(),
          statistic=np.median, uniform_inputs: bool = True) -> StabilityReport:
    """The verdict of one interleaved pass. `pairs`: [(method ms list, reference ms list)] per block
    pair in time order; `canary_blocks`: [((fp32, int8) after the method block, (fp32, int8) after
    the reference block)] per pair, or None; `calibration`: read_calibration()'s list; `statistic`:
    the speedup's (np.median, or np.mean for input-dependent compute); `uniform_inputs`: every input
    costs the same (fixed length, input-independent compute), so pairs and halves may be compared."""
    ratios = np.array([statistic(r) / statistic(m) for m, r in pairs])
    deviation = np.abs(ratios / np.median(ratios) - 1)
    outliers = int((deviation > limits.max_pair_deviation).sum())
    reasons = []
    allowed = max(1, int(limits.max_pair_outliers * len(pairs)))
    # Batches of different lengths (the real-length pass), or a method whose cost depends on its
    # input (compared by means), give each pair and each half other inputs of other costs: their
    # ratios differ by design (int8's speedup grows with length), so only the canary judges them.
    if outliers > allowed and uniform_inputs:
        reasons.append(f"{outliers} of {len(pairs)} block pairs gave a speedup more than {limits.max_pair_deviation:.0%} "
                       f"from the pass's median {np.median(ratios):.3f} (range {ratios.min():.3f} to {ratios.max():.3f})")
    halves = _half_speedups(pairs, statistic)
    if uniform_inputs and halves and abs(halves[1] / halves[0] - 1) > limits.max_half_difference:
        reasons.append(f"the pass's first half gave {halves[0]:.3f}x and its second half {halves[1]:.3f}x "
                       f"(limit {limits.max_half_difference:.0%} apart)")
    canary = None
    if canary_blocks:
        canary = _canary_figures([m for m, _ in canary_blocks], [r for _, r in canary_blocks], calibration, limits)
        reasons += _canary_reasons(canary, limits)
    return StabilityReport(verdict="unstable" if reasons else "steady", half_speedups=halves, reasons=reasons, pair_ratios=[round(float(r), 4) for r in ratios],
                           pair_outliers=outliers, canary=canary, limits=limits.__dict__.copy())
