"""The default launcher's order (harness.sweep.parallel, hydra/launcher=compbench): untimed cells side by
side up to the cores and the memory, one leader per baseline group first, timed cells alone after; one
baseline scoring shared by cells that need it at once; Ctrl-C stops every running cell.

The CLI test runs the real sweep with tests/fake_cells.py's synthetic executor (see tests/test_sweeps.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_cells import make_data
from test_sweeps import compbench, records, summary

from harness.sweep import parallel
from harness.sweep.isolation import STOP_REQUESTED


def fake_plan(task="sst2", seed=42, timed=False, isolate=True, peak_bytes=None):
    cell = SimpleNamespace(model="minilm_l6", task=task, seed=seed, isolate=isolate,
                           hardware=SimpleNamespace(device="cpu", dtype="float32"))
    return SimpleNamespace(cell=cell, timed=timed, fingerprints={f"glue/{task}/dev.tsv": "sha"}, peak_bytes=peak_bytes)


# ------------------------------------------------------------------------------------------ order
def test_one_leader_per_baseline_group_first_then_the_rest_side_by_side_then_timed_cells_alone():
    plans = [fake_plan("sst2"), fake_plan("sst2", timed=True), fake_plan("rte"), fake_plan("sst2"),
             fake_plan("sst2", seed=1), fake_plan("rte"), fake_plan("rte", isolate=False), None]
    steps = parallel.plan_steps(plans)
    assert [(step.jobs, step.side_by_side) for step in steps] == [
        ([0, 2, 4], True),  # sst2/42, rte/42, sst2/1: each builds its group's fine-tune and baseline scores
        ([3, 5], True),  # they read them
        ([1, 6, 7], False),  # timed; in-process (isolate=false); not planned here (plans itself)
    ]


def test_workers_are_the_cores_the_cells_and_what_fits_in_memory():
    gib = 2**30
    untimed = [fake_plan(peak_bytes=3 * gib) for _ in range(6)]
    assert parallel.worker_count("auto", untimed, cores=4, available_bytes=100 * gib) == 4  # the cores
    assert parallel.worker_count("auto", untimed[:2], cores=4, available_bytes=100 * gib) == 2  # the cells
    assert parallel.worker_count("auto", untimed, cores=4, available_bytes=8 * gib) == 2  # 0.9 x 8 GiB holds two 3-GiB cells
    assert parallel.worker_count("auto", untimed, cores=4, available_bytes=2 * gib) == 1  # never zero
    assert parallel.worker_count("auto", [fake_plan(timed=True)] * 3, cores=4) == 1  # nothing to run side by side
    assert parallel.worker_count("3", untimed, cores=4) == 3 and parallel.worker_count(0, untimed, cores=4) == 1


# ---------------------------------------------------------------------------------- side by side
def test_side_by_side_runs_up_to_the_workers_at_once_and_returns_errors_per_job():
    running, peak, lock = [0], [0], threading.Lock()

    def run(job, at_once):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        if job == "bad":
            raise OSError("disk full")
        return (job, at_once)

    outcomes = parallel.run_side_by_side({0: "a", 1: "b", 2: "bad", 3: "c"}, 2, run)
    assert peak[0] == 2
    assert outcomes[0] == ("ok", ("a", 2)) and outcomes[3] == ("ok", ("c", 2))
    assert outcomes[2][0] == "error" and str(outcomes[2][1]) == "disk full"


def test_ctrl_c_stops_the_running_cells_and_starts_no_other():
    started, stopped = [], []

    def run(job, at_once):
        started.append(job)
        if job == "first":
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C reaches the main thread only
        while not STOP_REQUESTED.is_set():  # as isolation._join waits on a cell
            time.sleep(0.01)
        stopped.append(job)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        parallel.run_side_by_side({0: "first", 1: "second", 2: "never", 3: "never either"}, 2, run)
    assert sorted(started) == sorted(stopped) and "never" not in started and len(started) <= 2
    assert not STOP_REQUESTED.is_set()  # cleared for the next sweep in this process


# ------------------------------------------------------------------------------ shared baseline
def test_cells_at_once_score_the_baseline_once(tmp_path, monkeypatch):
    """Two cells of a new sweep need the same baseline predictions at once: one scores, the other waits and reads."""
    from harness import baseline_reference
    from harness.comparison import ScoredSplit
    from harness.predictions import SplitResult

    scorings = []

    def score(model, split, tokenizer, device):
        scorings.append(split)
        time.sleep(0.5)
        return SplitResult(split, {}, ScoredSplit([1], [1], None), ["0"])

    monkeypatch.setattr(baseline_reference, "score_split", score)
    monkeypatch.setattr(baseline_reference, "reference_key", lambda cell, training, fingerprints: "k" * 64)
    cell = SimpleNamespace(measure=SimpleNamespace(accuracy=True), paths=SimpleNamespace(cache_dir=str(tmp_path)),
                           hardware=SimpleNamespace(device="cpu", dtype="float32"))
    task_data = SimpleNamespace(fingerprints={}, eval={"validation": "validation"})
    loaded = SimpleNamespace(random_init=False, tokenizer=None)
    found = []
    threads = [threading.Thread(target=lambda: found.append(baseline_reference.baseline_predictions(cell, None, loaded, task_data, {})))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(scorings) == 1
    assert sorted(result["cache_hit"] for result in found) == [False, True]
    assert [result["splits"]["validation"].ids for result in found] == [["0"], ["0"]]


# --------------------------------------------------------------------------------- the real CLI
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="side by side needs two usable cores")
@pytest.mark.parametrize("named", [[], ["hydra/launcher=compbench"]], ids=["default", "named"])
def test_default_sweep_runs_untimed_cells_side_by_side_and_timed_cells_alone(tmp_path, named):
    """Also with the launcher named on the command line: Hydra keeps its own overrides out of a job's,
    and the planned cells must still be found (they were not, and every cell ran alone)."""
    data = make_data(tmp_path / "data")
    cells = ["-m", *named, "task=sst2,rte", "model.init=random", "measure.energy=false", "measure.latency=false,true",
             "task.finetune.learning_rate=1e-4"]  # a key under a swept group, which Hydra re-spells (0.0001): still found
    proc = compbench(cells, tmp_path, data, sleep=1.0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not matched" not in proc.stdout + proc.stderr
    assert summary(proc) == "compbench: sweep of 4 cells: 4 ok, 0 unsupported, 0 failed, 0 not run (0 recorded by earlier runs)"
    found = list(records(tmp_path).values())
    untimed = [r for r in found if not r["config"]["measure"]["latency"]]
    timed = [r for r in found if r["config"]["measure"]["latency"]]
    spans = [(r["fake"]["started"], r["fake"]["ended"]) for r in untimed]
    assert max(sum(start <= t < end for start, end in spans) for t, _ in spans) == 2  # side by side, two cores
    assert all(len(r["environment"]["affinity"]) == len(os.sched_getaffinity(0)) // 2 for r in untimed)  # a core block each
    assert all(r["environment"]["concurrency"]["workers"] == 2 for r in untimed)
    last_untimed = max(end for _, end in spans)
    for record in timed:  # alone, after every untimed cell, with every core
        assert record["fake"]["started"] >= last_untimed and record["environment"]["concurrent_cells"] == 1
        assert record["environment"]["concurrency"]["exclusive"] is True
    timed_spans = sorted((r["fake"]["started"], r["fake"]["ended"]) for r in timed)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(timed_spans, timed_spans[1:]))


def test_workers_one_runs_the_sweep_one_cell_at_a_time(tmp_path):
    data = make_data(tmp_path / "data")
    proc = compbench(["-m", "task=sst2,rte", "model.init=random", "measure.energy=false", "measure.latency=false",
                      "hydra.launcher.workers=1"], tmp_path, data, sleep=0.5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spans = sorted((r["fake"]["started"], r["fake"]["ended"]) for r in records(tmp_path).values())
    assert len(spans) == 2 and spans[0][1] <= spans[1][0]
    assert all(r["environment"]["concurrent_cells"] == 1 for r in records(tmp_path).values())
    assert Path(tmp_path / "results" / "hydra").is_dir()  # one at a time: Hydra's own job directories, as with basic
