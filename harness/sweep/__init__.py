"""Per-cell orchestration of a planned cell (harness.plan): resume, machine lease, process isolation,
atomic record, summary line. Each concern lives in its own module:

    resume     which cells are already done, on this machine
    leases     which cells run on this machine now; exclusive timing; core blocks per worker
    isolation  a fresh spawned process per cell; interrupts; scratch clean-up
    fresh_processes  a cell whose latency stays unstable runs again; a speedup pooled over processes
    parallel   the default launcher's order: untimed cells side by side, timed cells alone
    summary    the per-cell line, the end-of-sweep report and the exit codes

Records are written to a temp file, fsynced and renamed, so a killed sweep leaves either the whole
record or none (plus, at worst, a dot-named `.tmp` file that no reader opens).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional

from harness.predictions import land_with_record
from harness.record import write_json_atomic
from harness.runner import execute, failed_record
from harness.sweep.fresh_processes import run_timed
from harness.sweep.isolation import CellInterrupted, run_isolated
from harness.sweep.leases import MachineLease
from harness.sweep.resume import FINAL_STATUSES, resume_decision
from harness.sweep.summary import summary_line, sweep_report

__all__ = ["FINAL_STATUSES", "run_and_record", "sweep_report", "write_record"]


def run_and_record(plan, side_by_side: Optional[int] = None) -> Path:
    """Run one planned cell unless it is already done here, and write its record. `side_by_side`: the
    cells this process runs at once (harness.sweep.parallel), which share the cores and the memory;
    None: as the Hydra launcher says (joblib and submitit workers each run one, leases.current_launcher_workers)."""
    path = plan.record_path
    done, rerun_reason = resume_decision(path, plan.cell.force)
    if done:
        print(f"[skip] {plan.label}: already recorded as {done} ({path}); force=true re-runs it", flush=True)
        return path
    if rerun_reason:
        print(f"[rerun] {plan.label}: {rerun_reason}", flush=True)
    lease = MachineLease.acquire(plan, slots=side_by_side)
    if isinstance(lease, str):
        print(f"[refused] {plan.label}: {lease}", file=sys.stderr, flush=True)
        return path
    with lease:
        try:
            record = _run(plan, side_by_side)
        except BaseException as interrupt:
            if isinstance(interrupt, CellInterrupted) and interrupt.record is not None:
                _write(plan, interrupt.record, lease)  # it finished before the interrupt: keep the measurement
            else:
                land_with_record(path, None)  # no record: its pending predictions go too
            raise
    _write(plan, record, lease)
    return path


def write_record(path, record: dict) -> Path:
    """The record and the predictions it links land together (harness.predictions.land_with_record)."""
    land_with_record(path, record)
    return write_json_atomic(path, record)


def _run(plan, side_by_side: Optional[int]) -> dict:
    if not plan.cell.isolate:
        return execute(plan.cell, plan.config_hash, plan.fingerprints)

    def run_once(cell) -> dict:
        record, death = run_isolated(execute, dataclasses.replace(plan, cell=cell), sharing=side_by_side or 1)
        return record if record is not None else failed_record(cell, plan.config_hash, plan.fingerprints, death)

    return run_timed(run_once, plan.cell, plan.label)


def _write(plan, record: dict, lease: MachineLease) -> None:
    lease.annotate(record)
    try:
        write_record(plan.record_path, record)
    except OSError as err:
        print(f"compbench: error: cannot write the record of {plan.label} to {plan.record_path}: {err.strerror or err}", file=sys.stderr, flush=True)
        raise
    print(summary_line(record, plan.record_path), flush=True)
