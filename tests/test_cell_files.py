"""The files a cell leaves, under faults (issue #31 part 5): every file follows the umask, a record and
its predictions land together or not at all, and two processes fine-tuning one key train it once."""

from __future__ import annotations

import os
import stat
import threading
import time

import numpy as np
import pytest

from harness.comparison import ScoredSplit
from harness.predictions import SplitResult, land_with_record, pending_path, predictions_path, write_predictions


@pytest.fixture
def umask_002():
    previous = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(previous)


def _results() -> list[SplitResult]:
    return [SplitResult("validation", {}, ScoredSplit([1, 0], [1, 1], np.array([[0.2, 0.8], [0.6, 0.4]])), [0, 1])]


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_prediction_files_and_records_follow_the_umask(tmp_path, umask_002):
    from harness.record import write_json_atomic

    predictions = tmp_path / "cell.predictions.jsonl.gz"
    write_predictions(predictions, _results())  # also how the baseline-prediction cache is written
    assert _mode(predictions) == 0o664
    assert _mode(write_json_atomic(tmp_path / "cell.json", {"status": "ok"})) == 0o664


def test_pending_predictions_land_with_the_record_that_links_them(tmp_path):
    from harness.sweep import write_record

    record_file = tmp_path / "cell.json"
    link = write_predictions(predictions_path(record_file), _results(), pending=True)
    final = predictions_path(record_file)
    assert not final.exists() and pending_path(final).exists()  # no reader sees predictions before the record
    assert link["path"] == final.name
    write_record(record_file, {"status": "ok", "predictions": link})
    assert final.exists() and not pending_path(final).exists() and record_file.exists()


def test_predictions_of_a_cell_without_a_record_are_removed(tmp_path):
    record_file = tmp_path / "cell.json"
    write_predictions(predictions_path(record_file), _results(), pending=True)
    land_with_record(record_file, {"status": "failed", "predictions": None})  # a failed record links none
    assert not list(tmp_path.iterdir())


def test_an_interrupted_cell_leaves_neither_record_nor_predictions(tmp_path, monkeypatch):
    """Ctrl-C after the cell wrote its predictions but before its record: both are absent."""
    from fake_cells import execute as fake_execute
    from fake_cells import make_data

    from harness import sweep
    from harness.compose import compose_cell
    from harness.config import register_configs
    from harness.plan import plan_cell

    register_configs()
    data = make_data(tmp_path / "data")
    cell = compose_cell([f"paths.data_root={data}", f"paths.results_dir={tmp_path / 'results'}", f"paths.cache_dir={tmp_path / 'cache'}",
                         "model.init=random", "measure.latency=false", "measure.energy=false", "isolate=false"])
    plan = plan_cell(cell)
    monkeypatch.setenv("COMPBENCH_FAKE_PLAN", '{"sst2": "pending"}')
    monkeypatch.setattr(sweep, "execute", fake_execute)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_and_record(plan)
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()], "a prediction file outlived its cell"


def test_two_fine_tunes_of_one_key_train_once_and_the_second_reuses_the_first(tmp_path):
    from harness.finetune import cached_finetune

    builds = []

    class Saved:
        def save_pretrained(self, directory, **kwargs):
            (directory / "weights").write_text("trained")

    def build():
        builds.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the second process to arrive while this one trains
        return Saved(), Saved(), {}

    results = []

    def fine_tune():
        results.append(cached_finetune("k" * 64, str(tmp_path), build, load=lambda entry: entry))

    workers = [threading.Thread(target=fine_tune) for _ in range(2)]  # flock excludes separate opens, threads too
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(builds) == 1
    assert sorted(info["cache_hit"] for _, info in results) == [False, True]
    entry = tmp_path / "finetuned" / ("k" * 64)
    assert (entry / "weights").read_text() == "trained" and (entry / "meta.json").is_file()
