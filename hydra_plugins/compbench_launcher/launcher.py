"""The Hydra side of harness.sweep.parallel: which planned cell each job is, and JobReturns for Hydra.

Timed cells, and jobs not planned in this process, go through Hydra's BasicLauncher one at a time,
exactly as with hydra/launcher=basic (a Hydra job directory each). Untimed cells run side by side on
threads that each wait on the cell's own spawned process (harness.sweep.isolation); Hydra's job
machinery holds global state (HydraConfig, logging), so those cells skip it and get no Hydra job
directory: their record holds the resolved config.
"""

# no `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules, where
# dataclasses cannot resolve string annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus


@dataclass
class CompbenchLauncherConf:
    _target_: str = "hydra_plugins.compbench_launcher.launcher.CompbenchLauncher"
    # untimed cells at once: auto = the usable cores, no more than the cells or than fit in memory; 1 = one at a time
    workers: Any = "auto"


ConfigStore.instance().store(group="hydra/launcher", name="compbench", node=CompbenchLauncherConf, provider="compbench")


class CompbenchLauncher(BasicLauncher):
    def __init__(self, workers: Any = "auto") -> None:
        super().__init__()
        self.workers = workers

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from harness import cli
        from harness.sweep import run_and_record
        from harness.sweep.parallel import plan_steps, run_side_by_side, worker_count

        plans = [cli.planned(overrides) for overrides in job_overrides]
        if cli.PLANNED and None in plans:  # a planned sweep whose job Hydra spells otherwise: say so, never guess
            unmatched = sum(plan is None for plan in plans)
            print(f"compbench: warning: {unmatched} job(s) were not matched to a planned cell; they run one at a time "
                  "and are planned again", file=sys.stderr, flush=True)
        workers = worker_count(self.workers, [plan for plan in plans if plan is not None])
        returns: dict[int, JobReturn] = {}
        for step in plan_steps(plans):
            if step.side_by_side and workers > 1:
                outcomes = run_side_by_side({index: plans[index] for index in step.jobs}, workers, run_and_record)
                returns.update({index: _job_return(job_overrides[index], outcome) for index, outcome in outcomes.items()})
                continue
            for index in step.jobs:
                returns[index] = super().launch([job_overrides[index]], initial_job_idx + index)[0]
        return [returns[index] for index in range(len(job_overrides))]


def _job_return(overrides: Sequence[str], outcome: tuple) -> JobReturn:
    state, value = outcome
    status = JobStatus.COMPLETED if state == "ok" else JobStatus.FAILED
    return JobReturn(overrides=list(overrides), status=status, _return_value=value, task_name="compbench")
