"""`compbench`: Hydra entry point. Every cell of a sweep is composed and validated first, so bad
input fails in one line (exit 2) before any model is loaded and before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from harness.config import register_configs, to_cell_config
from harness.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("method", "model", "task", "hardware", "runtime")
HYDRA_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--version")


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def sweep_cells(argv: list[str]) -> list[list[str]]:
    """The override list of every cell, expanded by Hydra's own sweeper rules."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in argv if not a.startswith("-")]
    if not any(a in ("-m", "--multirun") for a in argv):
        return [overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [cell for batch in BasicSweeper.split_arguments(parsed, None) for cell in batch]


def check_choices(overrides: list[str]) -> None:
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key in GROUPS and value not in available(key):
            raise ConfigError(key, f"unknown choice {value!r}", ", ".join(available(key)))


def compose_cell(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_choices(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        message = str(err) or str(err.__cause__) or err.__class__.__name__
        raise ConfigError("overrides", " ".join(message.split())) from None
    return to_cell_config(cfg)


def validate(argv: list[str]) -> list:
    """Compose and validate every cell, checking data files and model directories (cheap), then the
    launcher and output directories (harness.preflight). Returns each cell's planned record path."""
    from harness import preflight
    from harness.models import resolve_location
    from harness.runner import needs_train_data
    from harness.sweep import measures_timing, planned_record
    from harness.tasks import check_task_data

    cells = sweep_cells(argv)
    multirun = any(a in ("-m", "--multirun") for a in argv)
    launcher = preflight.describe_launcher(cells[0])
    composed, planned = [], []
    for overrides in cells:
        cell = compose_cell(overrides)
        fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
        resolve_location(cell.model)
        if not multirun:
            preflight.check_supported(cell)
        composed.append(cell)
        planned.append(planned_record(cell, fingerprints))
    preflight.check_launcher(launcher, composed, measures_timing)
    preflight.check_output_dirs(composed)
    return planned


def main() -> None:
    import time

    register_configs()
    argv = sys.argv[1:]
    planned = None
    if not any(flag in argv for flag in HYDRA_INFO_FLAGS):
        try:
            planned = validate(argv)
        except ConfigError as err:
            print(f"compbench: error: {err}", file=sys.stderr)
            sys.exit(2)
    started = time.time()
    code = 0
    try:
        hydra_main()
    finally:  # also after a failure or Ctrl-C: which cells are done, failed, or not run
        if planned is not None:
            from harness.sweep import sweep_report

            lines, code = sweep_report(planned, started)
            if any(a in ("-m", "--multirun") for a in argv):
                print("\n".join(lines), flush=True)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    from harness.sweep import run_and_record

    run_and_record(to_cell_config(cfg))


if __name__ == "__main__":
    main()
