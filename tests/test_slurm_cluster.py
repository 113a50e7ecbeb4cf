"""Sweeps on a real SLURM cluster: the README's `hydra/launcher=slurm` command submitted through
submitit to a one-node cluster on this machine (`.ci/slurm_cluster.sh start`; CI starts it).

What is real: munge, slurmctld, slurmd, slurmdbd (sacct, which submitit polls), sbatch job arrays,
scancel, a node set DOWN and resumed, --exclusive allocations. What is not: the cell itself, which is
tests/fake_cells.py's synthetic executor (tests/fake_site first on PYTHONPATH, which sbatch exports to
the jobs with the rest of the environment), so a job takes seconds.

Without a cluster these tests fail in CI (CI=1) and skip elsewhere, naming the command that starts one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_cells import make_data
from test_sweeps import FAST, ROOT, argv, executions, records, sweep_env

README = ROOT / "README.md"
CLUSTER_GUIDE = ROOT / "docs" / "guides" / "cluster.md"
PARTITION = "debug"  # .ci/slurm_cluster.sh's partition
# What a one-node, 2-CPU cluster can give each cell (the README's defaults ask for 8 CPUs, a GPU, 32 GB)
CLUSTER_FIT = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=null", "hydra.launcher.mem_gb=1",
               "hydra.launcher.timeout_min=5"]
SHARED_NODES = "~hydra.launcher.additional_parameters.exclusive"  # accuracy-only cells: two run at once on the node
JOB_TIMEOUT = 240  # a safety net for one submitted sweep on a busy 2-core box


@dataclass
class Cluster:
    node: str
    cpus: int


def _cluster_missing() -> str | None:
    """Why no SLURM cluster can take the tests' jobs; None when one can."""
    if not shutil.which("sbatch"):
        return "no SLURM client (sbatch) on PATH"
    info = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%N %c %t"], capture_output=True, text=True)
    if info.returncode != 0 or not info.stdout.strip():
        return f"no SLURM cluster with a partition {PARTITION!r} answers ({(info.stderr or 'sinfo printed nothing').strip()})"
    state = info.stdout.split()[2]
    if state.rstrip("*~#") not in ("idle", "mix", "alloc"):
        return f"the node of partition {PARTITION!r} is {state}, not up"
    accounting = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True)
    if accounting.returncode != 0:  # submitit reads job states with sacct alone
        return f"sacct fails (no slurmdbd?): {accounting.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    reason = _cluster_missing()
    if reason:
        message = f"{reason}; start the test cluster with `bash .ci/slurm_cluster.sh start` (as root)"
        if os.environ.get("CI"):  # CI starts the cluster (.ci/run): a missing one is a broken setup
            pytest.fail(message)
        pytest.skip(message)
    node, cpus, _ = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%N %c %t"], capture_output=True, text=True,
                                   check=True).stdout.split()
    return Cluster(node, int(cpus))


@pytest.fixture
def data(tmp_path) -> Path:
    return make_data(tmp_path / "data")


def readme_cluster_command() -> list[str]:
    """The README's cluster command, as this cluster can run it: its partition instead of the
    README's placeholder, and hardware=cpu for hardware=cuda (the test node has no GPU)."""
    line = next(line for line in README.read_text().splitlines() if line.startswith("compbench -m hydra/launcher=slurm "))
    assert line in CLUSTER_GUIDE.read_text().splitlines()  # the guide shows the same command
    swaps = {"hydra.launcher.partition": PARTITION, "hardware": "cpu"}
    args = []
    for arg in shlex.split(line)[1:]:
        key, _, _ = arg.partition("=")
        args.append(f"{key}={swaps[key]}" if key in swaps else arg)
    assert [a for a in args if a.startswith("hydra.launcher.partition=")], line
    return args


def launcher_args() -> list[str]:
    """The README command's sweep flag and launcher part: every SLURM test submits through them."""
    return [a for a in readme_cluster_command() if a == "-m" or a.startswith(("hydra/launcher=", "hydra.launcher."))]


def _env(tmp_path, data, plan=None) -> dict:
    return {**sweep_env(tmp_path, data, plan=plan), "COMPBENCH_FAKE_RELEASE": str(tmp_path / "release"),
            "COMPBENCH_FAKE_STARTED": str(tmp_path / "started.log")}


def submit(args, tmp_path, data, plan=None) -> subprocess.Popen:
    return subprocess.Popen(argv(args, tmp_path), cwd=ROOT, env=_env(tmp_path, data, plan), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(sweep: subprocess.Popen) -> tuple[str, str]:
    return sweep.communicate(timeout=JOB_TIMEOUT)


def run(args, tmp_path, data, plan=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv(args, tmp_path), cwd=ROOT, env=_env(tmp_path, data, plan), capture_output=True, text=True,
                          timeout=JOB_TIMEOUT)


def summary(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("compbench: sweep of"))


def started(tmp_path) -> list[list[str]]:
    """Each execution that started: [task, seed, pid, SLURM job as scancel names it]."""
    log = tmp_path / "started.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def wait_until(condition, what: str, timeout: float = 120.0, sweep: subprocess.Popen | None = None):
    """condition()'s first true value; fails at the timeout, or at once when `sweep` ended meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if sweep is not None and sweep.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {sweep.returncode}) before {what}: {sweep.stderr.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def job_of(tmp_path, task: str, sweep: subprocess.Popen) -> str:
    """The SLURM job (<array>_<index>) running `task`'s cell, once the cell has started."""
    return wait_until(lambda: next((row[3] for row in started(tmp_path) if row[0] == task), None), f"the {task} cell started",
                      sweep=sweep)


def queue_state(job: str) -> str:
    """The job's state in squeue (RUNNING, PENDING, ...); empty once it has left the queue."""
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def accounting(array_job: str) -> dict[str, dict]:
    """sacct's allocations of an array job by <array>_<index>: State, AllocCPUS, NodeList, Start, End."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", array_job, "-o", "JobID,State,AllocCPUS,NodeList,Start,End"],
                         capture_output=True, text=True, check=True).stdout
    rows = (line.split("|") for line in out.splitlines() if line)
    return {row[0]: dict(zip(("State", "AllocCPUS", "NodeList", "Start", "End"), row[1:])) for row in rows}


def cancel_leftovers(tmp_path) -> None:
    """A failed test leaves no job behind for the next one."""
    arrays = {row[3].split("_")[0] for row in started(tmp_path) if row[3] != "-"}
    if arrays:
        subprocess.run(["scancel", *sorted(arrays)], capture_output=True)


def dry_run(args, tmp_path, data) -> dict[str, str]:
    """What `--dry-run` of the same command says of each cell, by record file name."""
    proc = run(["--dry-run", *args], tmp_path, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = {}
    for line in proc.stdout.splitlines()[1:]:
        state, _, path = line.rpartition(" -> ")
        states[Path(path).name] = state.split("] ", 1)[1]
    return states


# ------------------------------------------------------------------------- the README's command
def test_readme_cluster_command_lands_records_from_exclusive_nodes(cluster, tmp_path, data):
    """The README's command, timed cells as it has them: each cell is one array task holding the whole
    node (--exclusive), its record lands in paths.results_dir under the name a local run gives it, and
    the record names the cluster, partition, node and allocation that measured it."""
    command = [*readme_cluster_command(), *CLUSTER_FIT, "model.init=random"]
    local = [a for a in command if not a.startswith(("hydra/launcher=", "hydra.launcher."))]
    try:
        proc = run(command, tmp_path, data)
    finally:
        cancel_leftovers(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(proc.stdout) == "compbench: sweep of 3 cells: 3 ok, 0 unsupported, 0 failed, 0 not run (0 recorded by earlier runs)"
    found = records(tmp_path)  # method=baseline,bf16,fp8
    assert set(dry_run(local, tmp_path, data)) == set(found)  # the files a local run of these cells writes

    submissions = list((tmp_path / "results" / "hydra").glob("*/.submitit/*/*_submission.sh"))
    assert len(submissions) == 1 and "#SBATCH --exclusive" in submissions[0].read_text().splitlines()
    allocations = {r["environment"]["slurm"]["array_job_id"] for r in found.values()}
    assert len(allocations) == 1  # one array job for the sweep
    jobs = accounting(allocations.pop())
    assert len(jobs) == 3
    for record in found.values():
        slurm = record["environment"]["slurm"]
        job = jobs[f"{slurm['array_job_id']}_{slurm['array_task_id']}"]
        where = (slurm["cluster"], slurm["partition"], slurm["node"], slurm["nodelist"])
        assert where == ("compbench", PARTITION, cluster.node, cluster.node)
        assert slurm["job_id"].isdigit() and job["State"] == "COMPLETED" and job["NodeList"] == cluster.node
        # --exclusive: the allocation holds every CPU of the node although the cell asked for one
        assert slurm["cpus_on_node"] == int(job["AllocCPUS"]) == cluster.cpus > 1
        assert record["latency"] is not None  # a timed cell
    spans = sorted((job["Start"], job["End"]) for job in jobs.values())
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))  # one cell on the node at a time


# --------------------------------------------------------------------------------- cancel, resume
def test_a_cell_cancelled_with_scancel_is_failed_and_the_same_command_resumes_it(cluster, tmp_path, data):
    cells = [*launcher_args(), *CLUSTER_FIT, SHARED_NODES, "task=sst2,rte", *FAST]
    sweep = submit(cells, tmp_path, data, plan={"rte": "held"})
    try:
        job = job_of(tmp_path, "rte", sweep)
        assert queue_state(job) == "RUNNING"
        subprocess.run(["scancel", job], check=True)
        out, err = finish(sweep)
    finally:
        cancel_leftovers(tmp_path)
    assert sweep.returncode == 1, err[-3000:]  # a failed cell (harness.sweep.summary)
    assert summary(out) == "compbench: sweep of 2 cells: 1 ok, 0 unsupported, 1 failed, 0 not run (0 recorded by earlier runs)"
    cancelled = {r["cell"]["task"]: r for r in records(tmp_path).values()}["rte"]
    # scancel's SIGTERM stops the cell's process; the job's parent process records why before SIGKILL
    assert cancelled["status"] == "failed" and cancelled["reason"] == ("cell process died before writing its record: "
                                                                    "stopped by SIGTERM (scancel, a job's time limit, a shutdown or a kill)")
    slurm = cancelled["environment"]["slurm"]
    assert f"{slurm['array_job_id']}_{slurm['array_task_id']}" == job
    assert wait_until(lambda: accounting(job.split("_")[0]).get(job, {}).get("State", "").startswith("CANCELLED") or None,
                      f"sacct to show {job} cancelled", timeout=30)

    (tmp_path / "release").touch()  # the re-run's rte cell runs to the end
    again = run(cells, tmp_path, data, plan={"rte": "held"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert summary(again.stdout) == "compbench: sweep of 2 cells: 2 ok, 0 unsupported, 0 failed, 0 not run (1 recorded by earlier runs)"
    assert sorted(row[0] for row in executions(tmp_path)) == ["rte", "sst2"]  # sst2 once: skipped by the re-run
    assert sorted(row[0] for row in started(tmp_path)) == ["rte", "rte", "sst2"]


# ------------------------------------------------------------------------------------ node failure
def test_a_node_taken_down_mid_sweep_loses_no_finished_record(cluster, tmp_path, data):
    """The node goes DOWN while one cell runs and another has finished: SLURM kills and requeues the
    running job; the finished record stays as it was, and the requeued job completes the sweep once
    the node is back."""
    cells = [*launcher_args(), *CLUSTER_FIT, SHARED_NODES, "task=sst2,rte", *FAST]
    sweep = submit(cells, tmp_path, data, plan={"rte": "held"})
    node_down = False
    try:
        job = job_of(tmp_path, "rte", sweep)
        sst2 = job_of(tmp_path, "sst2", sweep)
        wait_until(lambda: not queue_state(sst2), f"{sst2} (sst2) to finish")
        (finished,) = (tmp_path / "results" / "records").glob("sst2*.json")
        before = finished.read_bytes()

        subprocess.run(["scontrol", "update", f"nodename={cluster.node}", "state=down", "reason=compbench test"], check=True)
        node_down = True
        wait_until(lambda: queue_state(job) == "PENDING", f"{job} to be requeued", timeout=60)
        out, err = finish(sweep)  # the killed attempt's parent recorded the cell as failed before it ended
        assert sweep.returncode == 1, err[-3000:]
        assert summary(out) == "compbench: sweep of 2 cells: 1 ok, 0 unsupported, 1 failed, 0 not run (0 recorded by earlier runs)"
        assert finished.read_bytes() == before

        (tmp_path / "release").touch()
        subprocess.run(["scontrol", "update", f"nodename={cluster.node}", "state=resume"], check=True)
        node_down = False
        wait_until(lambda: not queue_state(job), f"the requeued {job} to run", timeout=JOB_TIMEOUT)
    finally:
        if node_down:
            subprocess.run(["scontrol", "update", f"nodename={cluster.node}", "state=resume"], capture_output=True)
        cancel_leftovers(tmp_path)
    after = {r["cell"]["task"]: r for r in records(tmp_path).values()}
    assert finished.read_bytes() == before and after["rte"]["status"] == "ok"
    assert sorted(row[0] for row in executions(tmp_path)) == ["rte", "sst2"]  # the finished cell never ran again
    assert sorted(row[0] for row in started(tmp_path)) == ["rte", "rte", "sst2"]  # rte: killed, then requeued
    slurm = after["rte"]["environment"]["slurm"]
    assert f"{slurm['array_job_id']}_{slurm['array_task_id']}" == job  # a requeued job keeps its id
    assert set(dry_run(cells, tmp_path, data).values()) == {"done (ok)"}


# ------------------------------------------------------------------------- checks without a cluster
def test_timed_cells_on_slurm_without_exclusive_are_refused(tmp_path, data):
    proc = run([*launcher_args(), SHARED_NODES, "model.init=random", "task=sst2,rte"], tmp_path, data)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "compbench: error: hydra.launcher.additional_parameters: timed cells on SLURM need a node to themselves: keep exclusive: true "
        "(conf/hydra/launcher/slurm.yaml); add measure.latency=false measure.energy=false for an accuracy-only sweep on shared "
        "nodes, or allow_concurrent_latency=true to measure anyway")
    assert not (tmp_path / "results").exists()


def test_records_name_the_slurm_allocation_only_inside_one(monkeypatch):
    from harness.measure.environment import SLURM_VARIABLES, collect_environment, slurm_allocation

    for variable in SLURM_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    assert slurm_allocation() is None and collect_environment()["slurm"] is None
    job = {"SLURM_CLUSTER_NAME": "c", "SLURM_JOB_PARTITION": "gpu", "SLURM_JOB_ID": "1043", "SLURM_ARRAY_JOB_ID": "1040",
           "SLURM_ARRAY_TASK_ID": "3", "SLURMD_NODENAME": "gpu07", "SLURM_JOB_NODELIST": "gpu07", "SLURM_CPUS_ON_NODE": "64"}
    for variable, value in job.items():
        monkeypatch.setenv(variable, value)
    assert collect_environment()["slurm"] == {"cluster": "c", "partition": "gpu", "job_id": "1043", "array_job_id": "1040",
                                              "array_task_id": "3", "node": "gpu07", "nodelist": "gpu07", "cpus_on_node": 64}
