"""`compbench`: Hydra entry point. Every cell of a sweep is planned and validated first
(harness.plan), so bad input fails in one line (exit 2) before any model is loaded and before
anything is written; the planned cells are then what runs.

    compbench [--dry-run] [-m] key=value ...

--dry-run validates, prints each planned cell (what would run, what is already done) and exits 0.
Exit codes (harness.sweep.summary): 0 all cells ok or unsupported, 1 a cell failed, 2 bad input,
3 a cell was not run (refused or crashed before writing), 130 interrupted, 143 stopped by SIGTERM.
"""

from __future__ import annotations

import signal
import sys

import hydra
from omegaconf import DictConfig

from harness.compose import CONF_DIR, GROUPS, available, compose_cell, defer_swept_group_keys, is_multirun, sweep_cells  # noqa: F401 - public names
from harness.config import register_configs
from harness.errors import ConfigError

HELP_FLAGS = ("--help", "-h")
HYDRA_INFO_FLAGS = ("--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--version")
HELP = """\
compbench: measure compression methods of BERT-family encoders. One cell is one method x model x task
x hardware x runtime; it fine-tunes the baseline when needed (cached), applies the method and measures
accuracy, size, latency, memory, energy and FLOPs on the same artifact, into one JSON record.

usage:
  compbench [--dry-run] key=value ...             one cell
  compbench -m [--dry-run] key=a,b ...            a sweep: every combination of the listed values
  compbench --help | --hydra-help | --cfg job     this text | Hydra's own help | the composed config

config groups (group=choice):
{groups}

settings (key=value; a misspelled key is refused with the closest real one):
  method.<parameter>=v       a method's own parameters, e.g. method.sparsity=0.3 (see: compbench method=NAME --cfg job)
  task.finetune.*            the baseline fine-tune: epochs, learning_rate, batch_size, max_train_samples, precision
  task.max_eval_samples=N    evaluate on the first N dev examples (records and tables mark subsets)
  hardware.batch_sizes=[1,32] the latency batch sizes;  hardware.num_threads=N  the threads a cell uses
  measure.<pass>=false       skip a pass: accuracy, latency, real_length_latency, memory, energy, flops
  run_name=NAME              records go to results/NAME/records/ (or paths.results_dir=DIR)
  seed=N  force=true         the seed;  re-run a cell whose successful record exists
  memory_limit_gb=G          what a cell may use (default: 90 % of the memory available); past it the cell fails alone
  hydra.launcher.workers=N   -m: untimed cells run side by side (default auto: the cores and the memory),
                             timed cells one at a time after them; 1 runs every cell in turn
  hydra/launcher=joblib_local|slurm|slurm_local   run a -m sweep's cells in parallel or on a cluster

options:
  --dry-run   validate every cell (configs, data files, model files, memory), print what would run and what is
              already recorded, run nothing
  -m          sweep (Hydra multirun)

exit codes:
  0 every cell ok or unsupported   1 a cell failed   2 bad input (one line naming the field; nothing written)
  3 a cell was not run (refused: another timed cell held the machine; or crashed before writing)
  130 interrupted (Ctrl-C)   143 stopped by SIGTERM; finished cells stay recorded, the same command resumes

examples:
  compbench task=sst2 method=dynamic_int8 task.finetune.max_train_samples=2000 task.finetune.epochs=1 task.max_eval_samples=200
  compbench -m method=baseline,dynamic_int8,magnitude task=sst2,mrpc run_name=study
  compbench -m method=magnitude method.sparsity=0.3,0.6,0.9
  compbench model=bert_base_uncased model.init=random measure.accuracy=false    (size and latency only)
  compbench-report results/study --out results/study/report                      (Table 1, Pareto plots, report.html)

Documentation: README.md and docs/guides/running.md.
"""
DRY_RUN_FLAG = "--dry-run"
PLANNED: dict = {}  # job_key(overrides) -> PlannedCell, for the cells Hydra runs in this process
SIGTERM_RECEIVED = False  # the sweep was stopped by SIGTERM rather than Ctrl-C (exit 143, not 130)


def validate(argv: list[str]) -> list:
    """Plan every cell (harness.plan.plan_sweep); keep the plans for hydra_main."""
    from harness.plan import plan_sweep

    plans = plan_sweep(argv)
    PLANNED.clear()
    PLANNED.update({job_key(plan.overrides): plan for plan in plans})
    return plans


def job_key(overrides) -> tuple:
    """A cell's overrides as planned and as a Hydra job sees them (hydra.overrides.task) meet here:
    without Hydra's own settings (hydra/launcher=..., hydra.*), which Hydra keeps apart from the task's,
    and without the `++` that compose.defer_swept_group_keys adds for Hydra. (Both sides are Hydra's
    serialisation of the user's values, `1e-4` as `0.0001`: mapping the user's spelling back missed.)"""
    return tuple(o[2:] if o.startswith("++") else o for o in overrides if not o.lstrip("+~").startswith("hydra"))


def planned(overrides):
    """The cell planned before Hydra started for a job with these overrides, or None."""
    return PLANNED.get(job_key(overrides))


def dry_run(plans: list) -> None:
    from harness.sweep.resume import resume_decision

    print(f"compbench: {len(plans)} cell(s) planned; nothing was run (--dry-run)")
    for plan in plans:
        done, rerun = resume_decision(plan.record_path, plan.cell.force)
        state = (f"unsupported: {plan.unsupported}" if plan.unsupported else
                 f"done ({done})" if done else f"would run ({rerun})" if rerun else "would run")
        print(f"  {plan.label} [{plan.config_hash[:12]}] {state} -> {plan.record_path}")


def help_text() -> str:
    """HELP with every group's choices (the registry's methods included; Hydra's base_* schemas left out)."""
    import textwrap

    lines = []
    for group in GROUPS:
        choices = ", ".join(name for name in available(group) if not name.startswith("base_"))
        lines += textwrap.wrap(choices, width=100, initial_indent=f"  {group:<10}", subsequent_indent=" " * 12)
    return HELP.format(groups="\n".join(lines))


def main() -> None:
    import time

    from harness.sweep.summary import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED

    register_configs()
    argv = sys.argv[1:]
    if any(flag in argv for flag in HELP_FLAGS):
        print(help_text(), end="")
        sys.exit(0)
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
    hydra_argv, _ = defer_swept_group_keys(argv)  # the cells planned above, as Hydra can sweep them
    sys.argv = [sys.argv[0], *hydra_argv]
    started = time.time()
    interrupted = False
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    launcher_error = None
    try:
        hydra_main()
    except KeyboardInterrupt:
        interrupted = True
    except Exception as err:  # noqa: BLE001 - a launcher gave up (submitit: a job past its time limit): still say where every cell stands
        launcher_error = f"{err.__class__.__name__}: {' '.join(str(err).split())}"
    except SystemExit as stop:  # Hydra reports a launcher's exception itself, then exits 1
        if stop.code in (0, None) or plans is None:
            raise
        launcher_error = f"exit code {stop.code} (its error is above)"
    code = 0
    if plans is not None:  # also after a failure or Ctrl-C: which cells are done, failed, or not run
        from harness.sweep import sweep_report

        lines, code = sweep_report([plan.record_path for plan in plans], started)
        if is_multirun(argv) or interrupted or launcher_error:
            print("\n".join(lines), flush=True)
    if launcher_error:
        print(f"compbench: error: the launcher stopped the sweep: {launcher_error}", file=sys.stderr, flush=True)
        code = max(code, EXIT_FAILED)
    if interrupted:
        how = "terminated (SIGTERM)" if SIGTERM_RECEIVED else "interrupted"
        print(f"compbench: {how}; finished cells are recorded, run the same command again to resume", file=sys.stderr, flush=True)
        code = EXIT_TERMINATED if SIGTERM_RECEIVED else EXIT_INTERRUPTED
    sys.exit(code)


def _interrupt_on_sigterm(signum, frame) -> None:
    """A kill, a job scheduler or a container stop ends the sweep as Ctrl-C does: the running cell is
    stopped, its scratch and lease go, finished cells stay recorded and the summary is printed."""
    global SIGTERM_RECEIVED
    SIGTERM_RECEIVED = True
    raise KeyboardInterrupt


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from harness.config import to_cell_config
    from harness.plan import plan_cell
    from harness.sweep import run_and_record

    overrides = HydraConfig.get().overrides.task
    plan = planned(overrides)
    if plan is None:  # a launcher that runs cells in another process (joblib, submitit): plan it here
        plan = plan_cell(to_cell_config(cfg), job_key(overrides))
    run_and_record(plan)


if __name__ == "__main__":
    main()
