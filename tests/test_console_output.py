"""Output for people (issue #31 part 6): `compbench --help` for this tool, progress as bars on a terminal
and as plain lines in a log, one result line per cell that says what varies, no library noise."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from harness.progress import PlainProgress, mode, progress

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_groups_options_and_exit_codes_without_internal_schemas():
    proc = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    for expected in ("--dry-run", "exit codes:", "143 stopped by SIGTERM", "examples:", "memory_limit_gb", "recipe_prune_int8",
                     "squad_v1.1", "onnxruntime", "cuda_graphs"):
        assert expected in text, expected
    assert not any(f"base_{group}" in text for group in ("model", "task", "hardware", "runtime", "method")) and "Powered by Hydra" not in text
    assert max(len(line) for line in text.splitlines()) <= 130


def test_off_a_terminal_progress_is_plain_lines(monkeypatch, capsys):
    monkeypatch.delenv("COMPBENCH_PROGRESS", raising=False)
    assert mode() == "lines"  # pytest captures stderr: not a terminal
    now = [0.0]
    monkeypatch.setattr("harness.progress.time.monotonic", lambda: now[0])
    with progress(total=100, desc="eval validation", unit="ex") as bar:
        for at in (10.0, 31.0, 45.0, 62.0, 70.0):
            now[0] = at
            bar.update(20)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == ["  eval validation: 40/100 ex (40%), 31 s", "  eval validation: 80/100 ex (80%), 62 s",
                                "  eval validation: done, 100/100 ex (100%), 70 s"]


def test_progress_can_be_forced_either_way(monkeypatch, capsys):
    monkeypatch.setenv("COMPBENCH_PROGRESS", "bars")
    from tqdm.auto import tqdm

    with progress(total=3, desc="x") as bar:
        assert isinstance(bar, tqdm)
    capsys.readouterr()
    monkeypatch.setenv("COMPBENCH_PROGRESS", "off")
    with progress(total=3, desc="x") as bar:
        bar.update(3)
    assert isinstance(bar, PlainProgress)
    assert capsys.readouterr().err.count("x:") == 0


def test_a_training_run_off_a_terminal_reports_plain_lines_not_a_dict(monkeypatch):
    from transformers import PrinterCallback

    from harness.progress import trainer_progress

    monkeypatch.delenv("COMPBENCH_PROGRESS", raising=False)
    disable_bar, callbacks = trainer_progress()
    assert disable_bar and len(callbacks) == 1 and not isinstance(callbacks[0], PrinterCallback)


def test_the_load_report_of_a_new_task_head_is_dropped_and_any_other_kept():
    from harness import NewTaskHeadReport

    def record(message):
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, message, None, None)

    head_only = ("BertForSequenceClassification LOAD REPORT from: x\nKey               | Status  | \n------------------+---------+-\n"
                 "classifier.bias   | MISSING | \nclassifier.weight | MISSING | \n\nNotes:\n- MISSING: newly initialized")
    keep = head_only.replace("classifier.bias  ", "bert.pooler.dense")
    unexpected = head_only.replace("MISSING | \nclassifier.weight", "UNEXPECTED | \nclassifier.weight")
    report = NewTaskHeadReport()
    assert not report.filter(record(head_only))
    assert report.filter(record(keep)) and report.filter(record(unexpected)) and report.filter(record("another warning"))


def test_a_real_load_of_the_embedded_encoder_prints_no_report(caplog):
    import transformers

    from harness import quiet_third_party_logs
    from harness.models import embedded_model_dir

    quiet_third_party_logs()
    with caplog.at_level(logging.WARNING, logger="transformers.modeling_utils"):
        transformers.AutoModelForSequenceClassification.from_pretrained(str(embedded_model_dir()), num_labels=2)
    assert not [r for r in caplog.records if "LOAD REPORT" in r.getMessage()]


@pytest.mark.parametrize("status", ["ok", "failed"])
def test_each_cell_of_a_parameter_sweep_has_its_own_result_line(status):
    from harness.sweep.summary import cell_title

    cell = {"method": "magnitude", "model": "minilm_l6", "task": "sst2", "hardware": "cpu", "runtime": "pytorch"}
    titles = set()
    for sparsity in (0.3, 0.5, 0.9):
        config = {"method": {"_target_": "methods.pruning.Magnitude", "name": "magnitude", "sparsity": sparsity,
                             "recover_epochs": 1.0, "scope": "global", "include_embeddings": False}}
        record = {"cell": cell, "config": config, "status": status}
        if status == "ok":
            from harness.labels import record_label

            record["method"] = {"label": record_label(config["method"])}
        titles.add(cell_title(record))
    assert titles == {"magnitude (sparsity=0.3) minilm_l6 sst2 cpu pytorch", "magnitude minilm_l6 sst2 cpu pytorch",
                      "magnitude (sparsity=0.9) minilm_l6 sst2 cpu pytorch"}
