"""Checks that run once per sweep, after every cell's config is validated and before anything is
written: the results and cache directories can take files, the launcher is installed, does not
run latency cells side by side and, on SLURM, asks for whole nodes for them, and a single cell's
method can run on its hardware.

Each check raises a one-line `ConfigError`; none of them leaves a file or directory behind
(writability is probed with an anonymous temporary file in the nearest existing directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError

MIN_FREE_MB = 64  # below this a sweep would fail writing records or caches: call the disk full
LAUNCHER_PLUGINS = {  # our conf/hydra/launcher/*.yaml -> (plugin module, pip package)
    "joblib_local": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "slurm_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
}


def nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_writable(directory: str, field: str, subdir: str = "") -> None:
    """`directory` (and its `subdir`, where files go) takes files or can be created; its disk has
    MIN_FREE_MB free."""
    target = Path(directory)
    anchor = nearest_existing(target / subdir)
    if not anchor.is_dir():
        raise ConfigError(field, f"{directory} cannot be created: {anchor} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=anchor):
            pass
    except OSError as err:
        raise ConfigError(field, f"{directory} is not writable ({err.strerror or err.__class__.__name__} in {anchor})") from None
    free_mb = shutil.disk_usage(anchor).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise ConfigError(field, f"only {free_mb:.0f} MiB free on the disk holding {directory} (disk full?); compbench needs at least {MIN_FREE_MB} MiB")


def check_output_dirs(cells) -> None:
    """Every distinct results and cache directory of the sweep."""
    checked = set()
    for cell in cells:
        for directory, field, subdir in ((cell.paths.results_dir, "paths.results_dir", "records"), (cell.paths.cache_dir, "paths.cache_dir", "")):
            if (directory, field) not in checked:
                checked.add((directory, field))
                check_writable(directory, field, subdir)


def refuse_unsupported(reason: str, field: str = "method") -> None:
    """A single cell (no -m) whose method cannot run on its hardware is a user error; in a sweep
    the same cell is recorded as `unsupported`, so tables show the gap."""
    choices = "method, runtime or hardware" if field == "runtime" else "method or hardware"
    raise ConfigError(field, f"{reason}; pick another {choices} (a -m sweep records this cell as unsupported)")


@dataclass
class LauncherInfo:
    name: str  # the hydra/launcher choice (compbench when not overridden)
    target: str
    workers: int  # cells that may run at once on this machine (1: sequential or on other machines)
    exclusive: bool = False  # SLURM: each cell's job asks for a whole node (additional_parameters.exclusive)


def launcher_choice(overrides: list[str]) -> str:
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "hydra/launcher":
            return value
    return "compbench"


def describe_launcher(overrides: list[str]) -> LauncherInfo:
    """Compose the Hydra part of the config once to see which launcher the sweep uses."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from harness.compose import CONF_DIR

    name = launcher_choice(overrides)
    plugin, package = LAUNCHER_PLUGINS.get(name, (None, None))
    if plugin and not _importable(plugin):
        raise ConfigError("hydra/launcher", f"{name} needs the {package} plugin: pip install -e '.[cluster]'")
    hydra_overrides = [o for o in overrides if o.lstrip("+~").startswith(("hydra/", "hydra."))]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=hydra_overrides, return_hydra_config=True)
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
        target = str(launcher.get("_target_", ""))
    except (HydraException, OmegaConfBaseException) as err:
        message = str(err) or str(err.__cause__) or err.__class__.__name__
        raise ConfigError("overrides", " ".join(message.split())) from None
    # --exclusive=user would still let the sweep's own array tasks share a node: only a bare --exclusive counts
    exclusive = (launcher.get("additional_parameters") or {}).get("exclusive") is True
    return LauncherInfo(name, target, launcher_workers(target, launcher), exclusive)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def launcher_workers(target: str, launcher: dict) -> int:
    """How many cells a launcher runs at once on the machine that runs them.

    joblib: n_jobs (negative counts back from the core count, as joblib does); submitit's local
    executor starts every cell at once, so it shares the machine by cpus_per_task; SLURM and the
    basic and compbench launchers: 1 (compbench runs untimed cells side by side and gives each its core
    block itself, harness.sweep.parallel; SLURM cells get their own allocation, `--exclusive` in
    conf/hydra/launcher/slurm.yaml).
    """
    cores = usable_cores()
    if target.endswith("JoblibLauncher"):
        n_jobs = int(launcher.get("n_jobs", -1) or -1)
        return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    if target.endswith("submitit_launcher.LocalLauncher"):
        per_task = int(launcher.get("cpus_per_task") or 1)
        return max(2, cores // per_task)
    return 1


def check_launcher(info: LauncherInfo, plans) -> None:
    """Parallel local launchers may not run latency/energy cells side by side, and SLURM jobs of such
    cells must ask for a whole node, unless the user opts in."""
    timed = [plan for plan in plans if plan.timed and not plan.cell.allow_concurrent_latency]
    if info.target.endswith("submitit_launcher.SlurmLauncher") and timed and not info.exclusive:
        # On a shared node another job's threads would run inside this cell's timed loop, and the
        # lease (harness.sweep.leases) only sees compbench cells, not the other jobs on the node.
        raise ConfigError(
            "hydra.launcher.additional_parameters",
            "timed cells on SLURM need a node to themselves: keep exclusive: true (conf/hydra/launcher/slurm.yaml); "
            "add measure.latency=false measure.energy=false for an accuracy-only sweep on shared nodes, "
            "or allow_concurrent_latency=true to measure anyway",
        )
    parallel = min(info.workers, len(plans))
    if parallel <= 1:
        return
    if timed:
        raise ConfigError(
            "hydra/launcher",
            f"{info.name} runs up to {parallel} cells at once on this machine, which distorts latency and energy; "
            "add measure.latency=false measure.energy=false for a parallel accuracy sweep, or allow_concurrent_latency=true "
            "to measure anyway (records then say how many cells shared the machine)",
        )


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
