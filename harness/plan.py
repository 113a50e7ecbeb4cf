"""A sweep planned once: every cell composed, validated, fingerprinted and hashed a single time.

`plan_sweep(argv)` turns the command line into one `PlannedCell` per sweep cell (its resolved
config, the fingerprints of the data it reads, what its method needs, why it cannot run if it
cannot, and where its record goes), runs the once-per-sweep checks (launcher, output directories),
and refuses bad input with a one-line `ConfigError` before anything is written or any model loads.
The CLI hands the very same objects to `harness.sweep.run_and_record`; a cell is only planned again
when a launcher runs it in another process (joblib, submitit), which cannot share these objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.config import CellConfig
from harness.errors import ConfigError


@dataclass(frozen=True)
class PlannedCell:
    overrides: tuple  # this cell's overrides, as Hydra's sweeper expanded them
    cell: CellConfig  # the resolved, validated config
    fingerprints: dict  # data file (relative to the data root) or Hub id -> sha256 or revision
    needs_train: bool  # the cell reads training data (fine-tune, calibration or method training)
    needs: str  # what the method needs: nothing | calibration | training
    unsupported: Optional[str]  # why the method cannot run on the cell's hardware or runtime, else None
    timed: bool  # measures latency or energy (and can run): holds the machine exclusively
    config_hash: str  # runner.config_hash: what makes this measurement different from another
    record_path: Path  # where the cell's record is (or will be) written
    unsupported_field: str = "method"  # the field a single-cell refusal names: method, or runtime
    peak_bytes: Optional[int] = None  # harness.resources' estimate of the cell's peak memory (None: shape unknown)

    @property
    def label(self) -> str:
        from harness.runner import cell_names

        return " ".join(cell_names(self.cell).values())


def _keys(overrides) -> list[str]:
    return [o.lstrip("+~").partition("=")[0] for o in overrides]


def explicit_data_root(overrides) -> bool:
    """The user named the data root (paths.data_root or COMPBENCH_DATA_ROOT): if it does not exist that
    is a typo to name, not a reason to fall back to the Hub."""
    return bool(os.environ.get("COMPBENCH_DATA_ROOT")) or "paths.data_root" in _keys(overrides)


def explicit_local_files(overrides) -> bool:
    """The user named a task's local files (task.local.*): a missing one is named, never fetched instead."""
    return any(k.startswith("task.local.") for k in _keys(overrides))


def plan_cell(cell: CellConfig, overrides=()) -> PlannedCell:
    """Everything about one validated cell that is known before it runs (cheap: no model loads)."""
    from harness.models import resolve_location
    from harness.resources import check_memory
    from harness.runner import cell_names, config_hash, finetunes_baseline, needs_train_data
    from harness.record import record_path
    from harness.tasks import check_task_data
    from harness.runtimes import unsupported_reason as runtime_unsupported_reason
    from methods.base import build_method

    method = build_method(cell.method)
    unsupported = method.unsupported_reason(cell.hardware)
    runtime_reason = None if unsupported else runtime_unsupported_reason(method, cell.runtime, cell.hardware)
    needs_train = needs_train_data(cell, method)
    if explicit_data_root(overrides):
        check_data_root(cell.paths.data_root)
    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train, explicit_local=explicit_local_files(overrides))
    location = resolve_location(cell.model)
    estimate = None
    if unsupported is None and runtime_reason is None:  # bounded before anything runs (harness.resources)
        estimate = check_memory(cell, location, trains=finetunes_baseline(cell) or method.needs == "training")
    chash = config_hash(cell, fingerprints)
    unsupported = unsupported or runtime_reason
    timed = bool(cell.measure.latency or cell.measure.energy) and unsupported is None
    return PlannedCell(tuple(overrides), cell, fingerprints, needs_train, method.needs, unsupported, timed,
                       chash, record_path(cell.paths.results_dir, cell_names(cell), chash),
                       unsupported_field="runtime" if runtime_reason else "method",
                       peak_bytes=int(estimate.peak_bytes) if estimate else None)


def check_data_root(data_root: str) -> None:
    if not Path(data_root).is_dir():
        raise ConfigError("paths.data_root", f"{data_root} is not a directory (a typo? it comes from paths.data_root or COMPBENCH_DATA_ROOT)")


def plan_sweep(argv: list[str]) -> list[PlannedCell]:
    """Every cell of the command line, planned and checked (see the module docstring)."""
    from harness import preflight
    from harness.compose import compose_cell, is_multirun, sweep_cells

    cells = sweep_cells(argv)
    launcher = preflight.describe_launcher(cells[0])
    plans = []
    for overrides in cells:
        plan = plan_cell(compose_cell(overrides), overrides)
        if plan.unsupported and not is_multirun(argv):
            preflight.refuse_unsupported(plan.unsupported, plan.unsupported_field)
        plans.append(plan)
    preflight.check_launcher(launcher, plans)
    preflight.check_output_dirs([plan.cell for plan in plans])
    return plans
