"""The Python API: what `compbench` and `compbench-report` do, callable from a notebook or a script.

    from harness import api

    paths = api.run(["method=dynamic_int8", "task=sst2"])            # one cell -> its record path
    paths = api.run(["method=baseline,dynamic_int8"], sweep=True)     # a sweep, as `compbench -m`
    records = api.load_records("results/default")                    # one row per record (DataFrame)
    report = api.report(["results/default"], out_dir="results/default/report")

Cells are planned and validated exactly as on the command line (a bad override raises
harness.errors.ConfigError naming the field before anything runs); each cell then runs as
`compbench` runs it (isolated in a fresh process, resumed when its ok record exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.errors import ConfigError

__all__ = ["ConfigError", "plan", "run", "load_records", "report"]


def plan(overrides: Sequence[str], sweep: bool = False) -> list:
    """The planned cells (config, data fingerprints, record path) of `overrides`; nothing runs."""
    from harness.config import register_configs
    from harness.plan import plan_sweep

    register_configs()
    return plan_sweep([*(["-m"] if sweep else []), *overrides])


def run(overrides: Sequence[str], sweep: bool = False) -> list[Path]:
    """Run every planned cell in turn (skipping those already recorded here); their record paths.

    A cell that fails still writes its record (status "failed", with the reason): read it with
    `load_records`. Cells run one after another in this process's turn, never side by side, so
    their latency passes do not disturb one another."""
    from harness.sweep import run_and_record

    return [run_and_record(cell) for cell in plan(overrides, sweep)]


def load_records(*paths: str | Path):
    """Every record under `paths` (folders, globs or files) as a DataFrame, one row per configuration,
    seed and machine (the report's own rows). `.attrs["problems"]` names each file skipped and each
    record superseded by a newer re-run; finding no readable record at all raises ValueError."""
    from harness.report.load import load_records as load

    records, problems = load([str(p) for p in paths])
    if records.empty:
        raise ValueError("no readable record under " + ", ".join(map(str, paths)) + (": " + "; ".join(problems) if problems else ""))
    records.attrs["problems"] = problems
    return records


def report(paths: Sequence[str | Path], out_dir: str | Path | None = None, **options):
    """Table 1, plots and report.html from the records under `paths` (compbench-report's work);
    `options` are harness.report.build.build_report's (tasks, machine, published, ...)."""
    from harness.report.build import build_report

    return build_report([str(p) for p in paths], out_dir, **options)
