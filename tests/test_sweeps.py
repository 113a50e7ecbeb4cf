"""Sweeps at scale: resume, force, failed re-runs, failure isolation, concurrent writers, machine
leases, the joblib and submitit launchers, and SIGKILL crash safety.

The CLI runs for real (Hydra, validation, launchers, spawned cell processes, atomic records) but
the cell itself is tests/fake_cells.py's synthetic executor (put in place of harness.runner.execute by
tests/fake_site/sitecustomize.py, first on the sweep's PYTHONPATH), so no model is loaded and each cell
takes milliseconds. Production code has no test hook.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import multiprocessing.resource_tracker
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from fake_cells import execute as fake_execute
from fake_cells import make_data

from harness.record import load_record

ROOT = Path(__file__).resolve().parents[1]
COMPBENCH = [sys.executable, "-c", "from harness.cli import main; main()"]
FAST = ["model.init=random", "measure.latency=false", "measure.energy=false"]  # nothing timed: cells may share the machine


@pytest.fixture
def data(tmp_path) -> Path:
    return make_data(tmp_path / "data")


FAKE_SITE = ROOT / "tests" / "fake_site"


@functools.cache
def this_machine() -> str:
    from harness.sweep.resume import this_machine as identity

    return json.dumps(identity())


def sweep_env(tmp_path, data_root, plan=None, sleep=0.0, fake=True) -> dict:
    env = {**os.environ, "COMPBENCH_DATA_ROOT": str(data_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "COMPBENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": f"{FAKE_SITE}:{ROOT}" if fake else str(ROOT),
           "COMPBENCH_FAKE_LOG": str(tmp_path / "executions.log"), "COMPBENCH_FAKE_PLAN": json.dumps(plan or {}),
           "COMPBENCH_FAKE_SLEEP": str(sleep), "COMPBENCH_FAKE_MACHINE": this_machine(), "TMPDIR": str(scratch_root(tmp_path))}
    return env


def scratch_root(tmp_path) -> Path:
    """Each test's own temp dir, so checks that no compbench-cell-* directory is left see only this test's."""
    root = tmp_path / "tmp"
    root.mkdir(exist_ok=True)
    return root


def argv(args, tmp_path) -> list[str]:
    flags = [a for a in args if a.startswith("-")]  # Hydra's argparse wants -m before the overrides
    return COMPBENCH + flags + [f"paths.results_dir={tmp_path / 'results'}"] + [a for a in args if not a.startswith("-")]


def compbench(args, tmp_path, data_root, timeout=600, **env):  # a safety net: a busy 2-core box is slow
    proc = subprocess.run(argv(args, tmp_path), cwd=ROOT,
                          env=sweep_env(tmp_path, data_root, **env), capture_output=True, text=True, timeout=timeout)
    return proc


def records(tmp_path) -> dict[str, dict]:
    """Every record file by name; each must load as a valid record."""
    return {p.name: load_record(p) for p in sorted((tmp_path / "results" / "records").glob("*.json"))}


def executions(tmp_path) -> list[list[str]]:
    log = tmp_path / "executions.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def summary(proc) -> str:
    return next(line for line in proc.stdout.splitlines() if line.startswith("compbench: sweep of"))


# ----------------------------------------------------------------------------------------- resume
def test_resume_skips_done_cells_reruns_failed_ones_and_force_redoes_all(tmp_path, data):
    cells = ["-m", "task=sst2,rte", "seed=1,2", "isolate=false", *FAST]
    first = compbench(cells, tmp_path, data, plan={"rte/2": "raise", "sst2/2": "unsupported"})
    assert first.returncode == 1, first.stderr[-3000:]  # a failed cell: exit 1 (harness.sweep.summary)
    assert summary(first) == "compbench: sweep of 4 cells: 2 ok, 1 unsupported, 1 failed, 0 not run (0 recorded by earlier runs)"
    failed = [line for line in first.stdout.splitlines() if line.startswith("  failed:")]
    assert len(failed) == 1 and "baseline minilm_l6 rte cpu pytorch: RuntimeError: synthetic failure in rte ->" in failed[0]
    before = records(tmp_path)
    assert sorted(r["status"] for r in before.values()) == ["failed", "ok", "ok", "unsupported"]

    second = compbench(cells, tmp_path, data)  # the failure is gone now; ok and unsupported are final
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("[skip]") == 3 and second.stdout.count("[rerun]") == 1
    assert summary(second) == "compbench: sweep of 4 cells: 3 ok, 1 unsupported, 0 failed, 0 not run (3 recorded by earlier runs)"
    after = records(tmp_path)
    assert set(after) == set(before)
    for name, record in after.items():  # done cells untouched, the failed one replaced
        assert (record["fake"]["run_id"] == before[name]["fake"]["run_id"]) == (before[name]["status"] != "failed")
    assert len(executions(tmp_path)) == 5

    third = compbench([*cells, "force=true"], tmp_path, data)
    assert third.returncode == 0 and "[skip]" not in third.stdout
    assert len(executions(tmp_path)) == 9 and set(records(tmp_path)) == set(before)


def test_a_record_from_another_machine_is_measured_again(tmp_path, data):
    """Resume never reuses another machine's timings: an ok record whose machine fingerprint (or host)
    differs from this one's is re-run here and replaced; this machine's own record is then skipped."""
    from harness.record import write_json_atomic

    base = ["task=sst2", "isolate=false", *FAST]
    assert compbench(base, tmp_path, data).returncode == 0
    (path,) = (tmp_path / "results" / "records").glob("*.json")
    for field, foreign in (("fingerprint", "0123456789abcdef"), ("hostname_hash", "elsewhere000")):
        record = load_record(path)
        record["environment"][field] = foreign
        write_json_atomic(path, record)
        proc = compbench(base, tmp_path, data)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "[rerun] baseline minilm_l6 sst2 cpu pytorch: recorded on another machine" in proc.stdout and "[ok]" in proc.stdout
        assert load_record(path)["environment"][field] != foreign
    assert "[skip]" in compbench(base, tmp_path, data).stdout
    assert len(executions(tmp_path)) == 3


def test_config_hash_policy(tmp_path, data):
    """Paths and run flags do not change a cell's identity; config values and data contents do."""
    base = ["task=sst2", "isolate=false", *FAST]
    assert compbench(base, tmp_path, data).returncode == 0
    assert "[skip]" in compbench([*base, "run_name=other", "isolate=true"], tmp_path, data).stdout
    assert len(records(tmp_path)) == 1
    assert "[ok]" in compbench([*base, "task.max_eval_samples=2"], tmp_path, data).stdout
    with open(data / "glue" / "sst2" / "dev.tsv", "a") as handle:
        handle.write("one more row \t1\n")
    assert "[ok]" in compbench(base, tmp_path, data).stdout
    found = records(tmp_path)
    assert len(found) == 3 and len({r["config_hash"] for r in found.values()}) == 3
    for name, record in found.items():
        assert name.endswith(f"__{record['config_hash'][:12]}.json")


def test_half_written_record_is_never_read_as_a_record(tmp_path, data):
    base = ["task=sst2", "isolate=false", *FAST]
    assert compbench(base, tmp_path, data).returncode == 0
    (path,) = (tmp_path / "results" / "records").glob("*.json")
    path.write_text(path.read_text()[:200])  # what a non-atomic writer would leave after a crash
    (path.parent / f".{path.name}.x1y2z3.tmp").write_text('{"status": "ok"')  # an atomic write killed before its rename
    proc = compbench(base, tmp_path, data)
    assert "[skip]" not in proc.stdout and "[ok]" in proc.stdout
    assert load_record(path)["status"] == "ok"

    from harness.report.load import load_records

    frame, problems = load_records([str(tmp_path / "results")])
    assert len(frame) == 1 and problems == []


# -------------------------------------------------------------------------------------- isolation
def test_failures_are_isolated_and_listed(tmp_path, data):
    plan = {"sst2/2": "raise", "rte/1": "memoryerror", "rte/2": "oom"}
    proc = compbench(["-m", "task=sst2,rte", "seed=1,2", *FAST], tmp_path, data, plan=plan)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert summary(proc) == "compbench: sweep of 4 cells: 1 ok, 0 unsupported, 3 failed, 0 not run (0 recorded by earlier runs)"
    reasons = sorted(r["reason"] for r in records(tmp_path).values() if r["status"] == "failed")
    assert reasons[:2] == ["MemoryError: synthetic: CUDA out of memory", "RuntimeError: synthetic failure in sst2"]
    # The cell SIGKILLed itself with memory to spare: not blamed on the out-of-memory killer.
    assert reasons[2].startswith("cell process died before writing its record: killed by SIGKILL from outside compbench "
                                 "(a person or a scheduler; memory was not short: its peak was "), reasons[2]
    listed = [line for line in proc.stdout.splitlines() if line.startswith("  failed:")]
    assert len(listed) == 3 and any("killed by SIGKILL" in line for line in listed)


def test_a_cell_past_its_memory_limit_fails_alone_with_that_reason(tmp_path, data):
    """A runaway cell is stopped at memory_limit_gb by the parent's watch; the next cell still runs."""
    proc = compbench(["-m", "task=sst2,rte", "memory_limit_gb=1.5", *FAST], tmp_path, data, plan={"sst2": "grow"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert summary(proc).startswith("compbench: sweep of 2 cells: 1 ok, 0 unsupported, 1 failed")
    (failed,) = [r for r in records(tmp_path).values() if r["status"] == "failed"]
    assert failed["cell"]["task"] == "sst2"
    assert "exceeded its memory limit" in failed["reason"] and "limit 1.5 GiB (memory_limit_gb)" in failed["reason"], failed["reason"]


def test_gpu_only_method_is_an_unsupported_record_in_a_sweep(tmp_path, data):
    """The real executor: a single fp16 cell on CPU is a one-line error (test_bad_inputs); in a sweep it is recorded."""
    cells = ["-m", "method=fp16,sparse_2of4", "hardware=cpu", "isolate=false", *FAST]
    proc = compbench(cells, tmp_path, data, fake=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(proc) == "compbench: sweep of 2 cells: 0 ok, 2 unsupported, 0 failed, 0 not run (0 recorded by earlier runs)"
    found = records(tmp_path)
    assert sorted(r["reason"] for r in found.values()) == ["unsupported on cpu: fp16 runs on cuda only",
                                                            "unsupported on cpu: no 2:4 sparse kernels on CPU"]
    assert all("synthetic" not in r["environment"] for r in found.values())


# ------------------------------------------------------------------------------------ concurrency
def _writer(directory: str, worker: int, barrier) -> None:
    from harness.record import write_json_atomic

    barrier.wait()
    for i in range(25):
        write_json_atomic(Path(directory) / f"cell_{worker}_{i}.json", {"worker": worker, "i": i, "payload": "x" * 20_000})
        write_json_atomic(Path(directory) / "shared.json", {"worker": worker, "i": i, "payload": "y" * 20_000})


def test_concurrent_writers_never_lose_or_corrupt_a_record(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(6)
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, barrier)) for w in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 6 * 25 + 1 and not [f for f in files if f.startswith(".")]
    for path in tmp_path.iterdir():
        assert len(json.loads(path.read_text())["payload"]) == 20_000


def test_joblib_launcher_runs_cells_in_parallel_with_valid_records(tmp_path, data):
    cells = ["-m", "hydra/launcher=joblib_local", "hydra.launcher.n_jobs=3", "task=sst2,rte", "seed=1,2,3", *FAST]
    proc = compbench(cells, tmp_path, data, sleep=1.0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(proc) == "compbench: sweep of 6 cells: 6 ok, 0 unsupported, 0 failed, 0 not run (0 recorded by earlier runs)"
    found = list(records(tmp_path).values())
    spans = [(r["fake"]["started"], r["fake"]["ended"]) for r in found]
    overlap = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert overlap >= 2, spans  # cells really ran side by side
    assert len({r["environment"]["concurrency"]["slot"] for r in found}) >= 2
    assert all(r["environment"]["concurrency"]["workers"] == 3 for r in found)
    assert max(r["environment"]["concurrent_cells"] for r in found) >= 2
    # threads-per-worker rule: 3 workers on the usable cores -> each cell pinned to floor(cores / 3) (>= 1) cores
    cores = len(os.sched_getaffinity(0))
    assert all(len(r["environment"]["affinity"]) == max(1, cores // 3) for r in found)


def _wait_for_lease(tmp_path, timeout=60.0) -> None:
    leases = Path(os.environ["COMPBENCH_LEASE_DIR"])  # tests/conftest.py: this test's own lease directory
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(leases.glob("*.json")):
            return
        time.sleep(0.05)
    raise AssertionError("the first cell never took its lease")


def _start_cell(tmp_path, data, overrides):
    """A cell that holds its lease until `_release(tmp_path)` (however slowly the box starts the next CLI)."""
    env = {**sweep_env(tmp_path, data), "COMPBENCH_FAKE_UNTIL": str(tmp_path / "release")}
    cell = subprocess.Popen(argv(overrides, tmp_path), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lease(tmp_path)
    return cell


def _release(tmp_path, cell):
    (tmp_path / "release").touch()
    cell.communicate(timeout=120)


def assert_refused(proc, tmp_path, message):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert lines[-1] == message and sum(line.startswith(("[refused]", "compbench")) for line in lines) == 1
    assert not list((tmp_path / "results" / "records").glob("rte*"))


TIMED = ["model.init=random", "isolate=false"]  # measure.latency and measure.energy stay true
UNTIMED = ["model.init=random", "isolate=false", "measure.latency=false", "measure.energy=false"]


def test_latency_cell_holds_the_machine_exclusively(tmp_path, data):
    first = _start_cell(tmp_path, data, ["task=sst2", *TIMED])
    try:
        blocked = (f"[refused] baseline minilm_l6 rte cpu pytorch: baseline minilm_l6 sst2 cpu pytorch (pid {first.pid}) is measuring latency/energy "
                   "on this machine; wait for it, or run this cell with allow_concurrent_latency=true on both")
        assert_refused(compbench(["task=rte", *UNTIMED], tmp_path, data), tmp_path, blocked)
        assert_refused(compbench(["task=rte", *TIMED, "allow_concurrent_latency=true"], tmp_path, data), tmp_path, blocked)
    finally:
        _release(tmp_path, first)
    assert first.returncode == 0
    (record,) = records(tmp_path).values()
    assert record["environment"]["concurrent_cells"] == 1 and record["environment"]["concurrency"]["exclusive"] is True


def test_latency_cell_refuses_to_start_beside_another_cell(tmp_path, data):
    first = _start_cell(tmp_path, data, ["task=sst2", *UNTIMED])
    try:
        assert_refused(compbench(["task=rte", *TIMED], tmp_path, data), tmp_path,
                       f"[refused] baseline minilm_l6 rte cpu pytorch: this cell measures latency/energy and baseline minilm_l6 sst2 cpu pytorch "
                       f"(pid {first.pid}) is running on this machine; run timed cells one at a time, or set allow_concurrent_latency=true")
    finally:
        _release(tmp_path, first)
    assert first.returncode == 0


def test_allowed_concurrent_latency_cells_say_how_many_shared_the_machine(tmp_path, data):
    timed = [*TIMED, "allow_concurrent_latency=true"]
    first = _start_cell(tmp_path, data, ["task=sst2", *timed])
    second = compbench(["task=rte", *timed], tmp_path, data, sleep=1.5)
    _release(tmp_path, first)
    assert first.returncode == 0 and second.returncode == 0, second.stderr[-3000:]
    found = list(records(tmp_path).values())
    assert [r["environment"]["concurrent_cells"] for r in found] == [2, 2]
    for record in found:
        assert record["environment"]["concurrency"]["exclusive"] is False
        assert record["latency"]["notes"] == ["2 cells shared this machine while this cell ran (allow_concurrent_latency=true): "
                                              "latency and energy are not isolated measurements"]
    assert not list(Path(os.environ["COMPBENCH_LEASE_DIR"]).glob("*.json"))  # released


def test_stale_lease_of_a_killed_cell_does_not_block(tmp_path, data):
    from harness.record import write_json_atomic

    leases = Path(os.environ["COMPBENCH_LEASE_DIR"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_json_atomic(leases / f"{dead.pid}-deadbeef.json", {"pid": dead.pid, "create_time": 1.0, "cell": "ghost", "exclusive": True, "slot": 0})
    proc = compbench(["task=sst2", "model.init=random", "isolate=false"], tmp_path, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(leases.glob("*.json"))


# -------------------------------------------------------------------------------------- launchers
def test_submitit_local_executor_runs_the_sweep(tmp_path, data):
    proc = compbench(["-m", "hydra/launcher=slurm_local", "task=sst2,rte", "seed=1,2", *FAST], tmp_path, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(proc) == "compbench: sweep of 4 cells: 4 ok, 0 unsupported, 0 failed, 0 not run (0 recorded by earlier runs)"
    found = list(records(tmp_path).values())
    assert len({r["fake"]["pid"] for r in found}) == 4  # one job process each
    assert list((tmp_path / "results" / "hydra").glob("*/.submitit/*/*_result.pkl"))


def test_slurm_launcher_config_renders_an_sbatch_script(tmp_path, monkeypatch):
    """No SLURM here: compose conf/hydra/launcher/slurm.yaml and let submitit write the sbatch file."""
    import submitit
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from harness.cli import CONF_DIR
    from harness.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params.pop("_target_") == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))  # pretend srun exists
    # What hydra_submitit_launcher's BaseSubmititLauncher.launch does with these parameters:
    params["submitit_folder"], params["name"] = str(tmp_path / "%j"), "compbench"
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    executor = executor._executor
    text = executor._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in ("#SBATCH --exclusive", "#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=240", "#SBATCH --mem=32GB", "#SBATCH --ntasks-per-node=1"):
        assert line in text.splitlines(), text


# ---------------------------------------------------------------------------------- crash safety
def test_sigkill_at_random_points_then_resume(tmp_path, data):
    """Kill the sweep (the main process only: spawned cells must die with it) at random moments,
    resume, repeat. No record is lost, duplicated, rewritten or half-written."""
    cells = ["-m", "task=sst2,rte", "seed=range(1,5)", *FAST]  # 8 cells, each in a spawned process
    env = sweep_env(tmp_path, data, sleep=0.2)
    rng = random.Random(1234)
    seen: dict[str, str] = {}  # record file -> run id; must never change once written

    def check_invariants():
        found = records(tmp_path)  # every file loads as a record
        for name, record in found.items():
            assert record["status"] == "ok" and name.endswith(f"__{record['config_hash'][:12]}.json")
            assert seen.setdefault(name, record["fake"]["run_id"]) == record["fake"]["run_id"], f"{name} was re-run"
        assert len({(r["cell"]["task"], r["config"]["seed"]) for r in found.values()}) == len(found)
        return found

    log = open(tmp_path / "rounds.log", "a")  # what each killed round printed, for a failing assertion
    for _ in range(3):
        sweep = subprocess.Popen(argv(cells, tmp_path), cwd=ROOT, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(rng.uniform(2.0, 5.0))
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        try:
            deadline = time.time() + 5
            while time.time() < deadline and _group_members(sweep.pid):
                time.sleep(0.1)
            assert not _group_members(sweep.pid), "a spawned cell outlived its killed sweep"
        finally:
            _kill_group(sweep.pid)
        check_invariants()

    log.close()
    final = compbench(cells, tmp_path, data)
    assert final.returncode == 0, final.stderr[-3000:]
    assert summary(final).startswith("compbench: sweep of 8 cells: 8 ok, 0 unsupported, 0 failed, 0 not run")
    assert len(check_invariants()) == 8
    run_ids = {run_id for _, _, run_id in executions(tmp_path)}
    assert set(seen.values()) <= run_ids
    assert not list(scratch_root(tmp_path).glob("compbench-cell-*")), "a killed sweep's scratch directory was never cleaned"


# ------------------------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("sent, code, how", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_ends_with_the_summary_and_one_line(tmp_path, data, sent, code, how):
    """Ctrl-C (or a SIGTERM, from a kill or a scheduler) reaches the whole process group (the sweep and its
    spawned cell): the cell is stopped, the sweep prints its summary and one line, no traceback, exit 130
    (143), no scratch directory and no lease left."""
    cells = ["-m", "task=sst2,rte", *FAST]  # isolated: each cell in a spawned process
    env = {**sweep_env(tmp_path, data), "COMPBENCH_FAKE_UNTIL": str(tmp_path / "never")}
    sweep = subprocess.Popen(argv(cells, tmp_path), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        _wait_for_lease(tmp_path)
        deadline = time.monotonic() + 60
        while not list(scratch_root(tmp_path).glob("compbench-cell-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the cell process is running (importing) by now
        os.killpg(sweep.pid, sent)
        out, err = sweep.communicate(timeout=60)
    finally:
        _kill_group(sweep.pid)
    assert sweep.returncode == code, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == f"compbench: {how}; finished cells are recorded, run the same command again to resume"
    assert not list(Path(os.environ["COMPBENCH_LEASE_DIR"]).glob("*.json")), "the lease outlived the sweep"
    assert summary(subprocess.CompletedProcess([], 0, out, err)).startswith("compbench: sweep of 2 cells: 0 ok, 0 unsupported, 0 failed, 2 not run")
    assert not list(scratch_root(tmp_path).glob("compbench-cell-*"))
    # multiprocessing's helper processes (its resource tracker) exit on their own once the sweep has: give them a moment
    deadline = time.monotonic() + 10
    while _group_members(sweep.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_members(sweep.pid), [psutil.Process(pid).cmdline() for pid in _group_members(sweep.pid)]


def test_a_cell_started_from_a_worker_thread_stops_on_sigterm(tmp_path, monkeypatch):
    """A parallel sweep's worker threads hold Ctrl-C and SIGTERM blocked (harness.sweep.parallel), and a
    process inherits its starter's mask: the cell unblocks them, so the parent's terminate() ends it through
    its handler (exit 143, temp dirs removed) rather than a SIGKILL after isolation.STOP_GRACE_S."""
    from fake_cells import hold_until_released

    from harness.sweep import isolation

    monkeypatch.setenv("COMPBENCH_FAKE_UNTIL", str(tmp_path / "never"))
    # Started here first: a thread that starts the resource tracker unblocks both signals on its way
    # (multiprocessing.resource_tracker), which is why a sweep's first cell escaped this and its later ones did not.
    multiprocessing.resource_tracker.ensure_running()
    started = {}

    def start_from_a_worker_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        process = multiprocessing.get_context("spawn").Process(
            target=isolation._child, args=(hold_until_released, None, "hash", {}, str(tmp_path / "record.json"), os.getpid()))
        process.start()
        started["process"] = process

    worker = threading.Thread(target=start_from_a_worker_thread)
    worker.start()
    worker.join()
    process = started["process"]
    try:
        process.terminate()  # pending while the child still imports, taken once _child unblocks it
        process.join(isolation.STOP_GRACE_S)
        assert process.exitcode == 128 + signal.SIGTERM, f"exit code {process.exitcode}: SIGTERM stayed blocked in the cell"
    finally:
        if process.is_alive():
            process.kill()
            process.join()


def test_a_cell_that_finished_is_recorded_when_the_sweep_is_interrupted(tmp_path, data, monkeypatch):
    """The parent is interrupted while it waits, after its cell wrote its record: the record is kept."""
    import multiprocessing.process

    from harness import sweep
    from harness.compose import compose_cell
    from harness.config import register_configs
    from harness.plan import plan_cell

    register_configs()
    cell = compose_cell([f"paths.data_root={data}", f"paths.results_dir={tmp_path / 'results'}", f"paths.cache_dir={tmp_path / 'cache'}", *FAST])
    plan = plan_cell(cell)
    monkeypatch.setenv("COMPBENCH_FAKE_MACHINE", this_machine())
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root(tmp_path)))
    join = multiprocessing.process.BaseProcess.join

    interrupted = []

    def join_then_interrupt(self, timeout=None):
        join(self, timeout)
        if self.exitcode is not None and not interrupted:  # the child has finished: Ctrl-C arrives now, once
            interrupted.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "join", join_then_interrupt)
    monkeypatch.setattr(sweep, "execute", fake_execute)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_and_record(plan)
    assert load_record(plan.record_path)["status"] == "ok"
    assert not list(scratch_root(tmp_path).glob("compbench-cell-*"))


def test_stale_scratch_of_a_killed_sweep_is_removed(tmp_path, data):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = scratch_root(tmp_path) / f"compbench-cell-{dead.pid}-abcd1234"
    stale.mkdir()
    (stale / "record.json").write_text("{}")
    alive = scratch_root(tmp_path) / f"compbench-cell-{os.getpid()}-efgh5678"  # this test process is alive: kept
    alive.mkdir()
    proc = compbench(["task=sst2", *FAST], tmp_path, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not stale.exists() and alive.exists()


def _group_members(pgid: int) -> list[int]:
    members = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return members


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
