"""`compbench`: Hydra entry point. Every cell of a sweep is planned and validated first
(harness.plan), so bad input fails in one line (exit 2) before any model is loaded and before
anything is written; the planned cells are then what runs.

    compbench [--dry-run] [-m] key=value ...

--dry-run validates, prints each planned cell (what would run, what is already done) and exits 0.
Exit codes (harness.sweep.summary): 0 all cells ok or unsupported, 1 a cell failed, 2 bad input,
3 a cell was not run (refused or crashed before writing), 130 interrupted.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from harness.compose import CONF_DIR, GROUPS, available, compose_cell, defer_swept_group_keys, is_multirun, sweep_cells  # noqa: F401 - public names
from harness.config import register_configs
from harness.errors import ConfigError

HYDRA_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--version")
DRY_RUN_FLAG = "--dry-run"
PLANNED: dict = {}  # overrides tuple -> PlannedCell, for the cells Hydra runs in this process
DEFERRED_KEYS: dict = {}  # override as Hydra got it -> as the user wrote it (compose.defer_swept_group_keys)


def validate(argv: list[str]) -> list:
    """Plan every cell (harness.plan.plan_sweep); keep the plans for hydra_main."""
    from harness.plan import plan_sweep

    plans = plan_sweep(argv)
    PLANNED.clear()
    PLANNED.update({plan.overrides: plan for plan in plans})
    return plans


def dry_run(plans: list) -> None:
    from harness.sweep.resume import resume_decision

    print(f"compbench: {len(plans)} cell(s) planned; nothing was run (--dry-run)")
    for plan in plans:
        done, rerun = resume_decision(plan.record_path, plan.cell.force)
        state = (f"unsupported: {plan.unsupported}" if plan.unsupported else
                 f"done ({done})" if done else f"would run ({rerun})" if rerun else "would run")
        print(f"  {plan.label} [{plan.config_hash[:12]}] {state} -> {plan.record_path}")


def main() -> None:
    import time

    from harness.sweep.summary import EXIT_BAD_INPUT, EXIT_INTERRUPTED

    register_configs()
    argv = sys.argv[1:]
    dry = DRY_RUN_FLAG in argv
    if dry:
        argv = [a for a in argv if a != DRY_RUN_FLAG]
        sys.argv = [sys.argv[0], *argv]
    plans = None
    if not any(flag in argv for flag in HYDRA_INFO_FLAGS):
        try:
            plans = validate(argv)
        except ConfigError as err:
            print(f"compbench: error: {err}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        if dry:
            dry_run(plans)
            sys.exit(0)
    hydra_argv, deferred = defer_swept_group_keys(argv)  # the cells planned above, as Hydra can sweep them
    sys.argv = [sys.argv[0], *hydra_argv]
    DEFERRED_KEYS.clear()
    DEFERRED_KEYS.update(deferred)
    started = time.time()
    interrupted = False
    try:
        hydra_main()
    except KeyboardInterrupt:
        interrupted = True
    code = 0
    if plans is not None:  # also after a failure or Ctrl-C: which cells are done, failed, or not run
        from harness.sweep import sweep_report

        lines, code = sweep_report([plan.record_path for plan in plans], started)
        if is_multirun(argv) or interrupted:
            print("\n".join(lines), flush=True)
    if interrupted:
        print("compbench: interrupted; finished cells are recorded, run the same command again to resume", file=sys.stderr, flush=True)
        code = EXIT_INTERRUPTED
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from harness.config import to_cell_config
    from harness.plan import plan_cell
    from harness.sweep import run_and_record

    overrides = tuple(DEFERRED_KEYS.get(o, o) for o in HydraConfig.get().overrides.task)
    plan = PLANNED.get(overrides)
    if plan is None:  # a launcher that runs cells in another process (joblib, submitit): plan it here
        plan = plan_cell(to_cell_config(cfg), overrides)
    run_and_record(plan)


if __name__ == "__main__":
    main()
