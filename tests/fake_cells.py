"""TEST-ONLY synthetic cell executor for the sweep tests (put in place by tests/fake_site/sitecustomize.py).

`execute(cell, cell_hash, fingerprints)` stands in for `harness.runner.execute`: it loads no model and
returns a schema-valid record in milliseconds, so the tests can run, kill and resume many cells.
What a cell does is chosen per task (or "task/seed") by the JSON in COMPBENCH_FAKE_PLAN:

    ok (default) | unsupported | raise | memoryerror | oom (SIGKILLs its own process, as the OOM killer would)
    | grow (allocates 64 MiB every 50 ms up to 8 GiB: a runaway cell for the memory limit)
    | pending (writes pending predictions, then raises KeyboardInterrupt as a Ctrl-C would)
    | held (waits, at most 120 s, until the file COMPBENCH_FAKE_RELEASE names exists, then ok: one cell
      keeps running while the others finish)

COMPBENCH_FAKE_MACHINE: the JSON of harness.sweep.resume.this_machine() computed once by
the test, so records count as made on this machine (resume) without importing torch in every cell.
COMPBENCH_FAKE_UNTIL: a path; each cell then also waits (at most 120 s) until that file exists.
COMPBENCH_FAKE_SLEEP: seconds each cell sleeps (default 0). COMPBENCH_FAKE_LOG: a file to which
every finished execution appends one line (task, seed, run id), to count executions.
COMPBENCH_FAKE_STARTED: a file to which every execution appends one line as it starts (task, seed,
pid, SLURM job as scancel names it: <array job>_<task> in an array, else the job id, or -), so a test
knows that a cell is running, and in which job.

`make_data(root)` writes a valid tiny data root (SST-2 and RTE TSVs, a SQuAD v1.1 dev file).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
import uuid
from pathlib import Path

SST2_TSV = "sentence\tlabel\nit 's a charming journey . \t1\nunflinchingly bleak \t0\na gorgeous film \t1\n"
RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
RTE_ROWS = "".join(f"{i}\tA man walks {i}.\tA person moves.\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(6))
SQUAD = {"version": "1.1", "data": [{"title": f"T{a}", "paragraphs": [{"context": "Denver Broncos won the game.", "qas": [
    {"id": f"q{a}", "question": "Who won?", "answers": [{"answer_start": 0, "text": "Denver Broncos"}]}]}]} for a in range(10)]}


def make_data(root: Path) -> Path:
    for task, text in (("sst2", SST2_TSV), ("rte", RTE_HEADER + RTE_ROWS)):
        (root / "glue" / task).mkdir(parents=True)
        (root / "glue" / task / "train.tsv").write_text(text)
        (root / "glue" / task / "dev.tsv").write_text(text)
    (root / "squad_v1.1").mkdir()
    (root / "squad_v1.1" / "dev-v1.1.json").write_text(json.dumps(SQUAD))
    return root


def _behaviour(cell) -> str:
    plan = json.loads(os.environ.get("COMPBENCH_FAKE_PLAN", "{}"))
    return plan.get(f"{cell.task.name}/{cell.seed}", plan.get(cell.task.name, "ok"))


def record(cell, cell_hash: str, fingerprints: dict, status: str, reason=None, started=None) -> dict:
    from harness.measure.environment import slurm_allocation
    from harness.record import SCHEMA_VERSION
    from harness.runner import cell_names, config_dict

    now = time.time()
    return {
        "schema_version": SCHEMA_VERSION, "status": status, "reason": reason, "cell": cell_names(cell),
        "config": config_dict(cell), "config_hash": cell_hash,
        "metrics": {cell.task.primary_metric: 0.5} if status == "ok" else None, "metrics_notes": ["synthetic test cell"],
        "size": None, "latency": {"fixed": [], "real_length": [], "notes": []} if status == "ok" and cell.measure.latency else None,
        "memory": None, "energy": None, "flops": None, "method": None, "training": None,
        "timings": {"fake": round(now - (started or now), 3)}, "data": {"fingerprints": fingerprints},
        "environment": {"synthetic": True, "affinity": sorted(os.sched_getaffinity(0)), "slurm": slurm_allocation(),
                        **json.loads(os.environ.get("COMPBENCH_FAKE_MACHINE", "{}"))},
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fake": {"run_id": uuid.uuid4().hex, "pid": os.getpid(), "started": started, "ended": now},
    }


def execute(cell, cell_hash: str, fingerprints: dict) -> dict:
    started = time.time()
    behaviour = _behaviour(cell)
    _append(os.environ.get("COMPBENCH_FAKE_STARTED"), f"{cell.task.name} {cell.seed} {os.getpid()} {_slurm_job()}")
    time.sleep(float(os.environ.get("COMPBENCH_FAKE_SLEEP", "0")))
    _hold(os.environ.get("COMPBENCH_FAKE_UNTIL"))
    if behaviour == "held":
        _hold(os.environ.get("COMPBENCH_FAKE_RELEASE"))
    try:
        if behaviour == "raise":
            raise RuntimeError(f"synthetic failure in {cell.task.name}")
        if behaviour == "memoryerror":
            raise MemoryError("synthetic: CUDA out of memory")
        if behaviour == "oom":
            os.kill(os.getpid(), signal.SIGKILL)
        if behaviour == "grow":
            held = []
            for _ in range(128):
                held.append(bytearray(64 * 2**20))  # zero-filled: resident at once
                time.sleep(0.05)
        if behaviour == "pending":
            from harness.predictions import pending_path, predictions_path
            from harness.record import record_path
            from harness.runner import cell_names

            path = pending_path(predictions_path(record_path(cell.paths.results_dir, cell_names(cell), cell_hash)))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"predictions of a cell that never finished")
            raise KeyboardInterrupt
        if behaviour == "unsupported":
            result = record(cell, cell_hash, fingerprints, "unsupported", "synthetic: no kernel for this hardware", started=started)
        else:
            result = record(cell, cell_hash, fingerprints, "ok", started=started)
    except Exception as err:  # noqa: BLE001 - as harness.runner.execute does
        result = record(cell, cell_hash, fingerprints, "failed", f"{err.__class__.__name__}: {err}", started=started)
    _append(os.environ.get("COMPBENCH_FAKE_LOG"), f"{cell.task.name} {cell.seed} {result['fake']['run_id']}")
    return result


def hold_until_released(cell, cell_hash: str, fingerprints: dict) -> dict:
    """An executor that only waits for the file COMPBENCH_FAKE_UNTIL: a cell that is still running."""
    _hold(os.environ.get("COMPBENCH_FAKE_UNTIL"))
    return {}


def _slurm_job() -> str:
    """The id that scancel takes for this job alone: an array's first task has the array's own id as
    SLURM_JOB_ID, so `scancel <SLURM_JOB_ID>` would cancel every cell of the sweep."""
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID", "-")


def _hold(release) -> None:
    """Wait until the test creates the file `release` (at most 120 s)."""
    deadline = time.monotonic() + 120
    while release and not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)


def _append(log, line: str) -> None:
    if log:
        with open(log, "a") as handle:  # one short O_APPEND write per line: atomic between processes
            handle.write(line + "\n")
