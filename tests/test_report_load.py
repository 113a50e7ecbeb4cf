"""Loading records for the report: discovery, validation, skipping bad files by name, flattening."""

import json
import shutil
from pathlib import Path

import pytest

from harness.report import load_records

FIXTURES = Path(__file__).parent / "fixtures" / "records"


def _copy_run(tmp_path: Path, run="demo") -> Path:
    records = tmp_path / run / "records"
    records.mkdir(parents=True)
    for path in FIXTURES.glob("*.json"):
        shutil.copy(path, records / path.name)
    return tmp_path / run


def _by_cell(df, task, method, hardware="cpu"):
    rows = df[(df.task == task) & (df.method == method) & (df.hardware == hardware)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_fixture_directory_loads_every_record():
    df, problems = load_records([str(FIXTURES)])
    assert problems == []
    assert len(df) == 15
    assert set(df.status) == {"ok", "failed", "unsupported"}


def test_results_layout_and_globs(tmp_path):
    run = _copy_run(tmp_path)
    by_dir, _ = load_records([str(tmp_path)])  # <dir>/**/records/*.json
    by_glob, _ = load_records([str(run / "records" / "sst2__*.json")])
    assert len(by_dir) == 15
    assert set(by_glob.task) == {"sst2"}
    # The same file reached twice is one row.
    twice, _ = load_records([str(run), str(run / "records")])
    assert len(twice) == 15


def test_corrupt_foreign_and_wrong_version_files_are_skipped_and_named(tmp_path):
    run = _copy_run(tmp_path)
    (run / "records" / "corrupt.json").write_text('{"schema_version": "1.0", "status": ')
    (run / "records" / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (run / "records" / "list.json").write_text("[1, 2]")
    old = json.loads(next(FIXTURES.glob("sst2__*baseline__cpu*.json")).read_text())
    (run / "records" / "old_schema.json").write_text(json.dumps(dict(old, schema_version="0.3")))
    (run / "records" / "future_schema.json").write_text(json.dumps(dict(old, schema_version="3.0")))
    broken = dict(old, environment={"fingerprint": "fp"}, config=dict(old["config"], task=None), cell=dict(old["cell"], task="rte"))
    (run / "records" / "odd_inner_shape.json").write_text(json.dumps(broken))

    df, problems = load_records([str(run)])

    joined = "\n".join(problems)
    for name in ("corrupt.json", "foreign.json", "list.json", "old_schema.json", "future_schema.json", "odd_inner_shape.json"):
        assert name in joined
    assert "odd_inner_shape.json: malformed record" in joined
    assert len(df) == 15 and "rte" not in set(df.task)


def test_schema_1_records_are_migrated_with_the_category_their_class_declares(tmp_path):
    from harness.record import SCHEMA_VERSION, load_record

    current = json.loads(next(FIXTURES.glob("sst2__*magnitude__cpu*.json")).read_text())
    method = {k: v for k, v in current["method"].items() if k not in ("category", "provenance", "sparse")}
    old = dict(current, schema_version="1.0", method=dict(method, sparse=True))
    del old["artifact"]  # 1.0 records that failed early had none
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    migrated = load_record(path)
    assert migrated["schema_version"] == SCHEMA_VERSION and migrated["artifact"] is None
    assert (migrated["method"]["category"], migrated["method"]["provenance"]) == ("Unstructured Pruning", "S")
    assert migrated["method"]["sparse"] is True and migrated["method"]["name"] == "magnitude"
    gone = dict(old, config=dict(old["config"], method=dict(old["config"]["method"], _target_="methods.removed.Gone")))
    path.write_text(json.dumps(gone))
    assert load_record(path)["method"]["category"] == ""  # the report groups it under "Other"
    df, problems = load_records([str(path)])
    assert problems == [] and list(df.category) == ["Other"]


def test_missing_pattern_is_a_problem_not_a_crash(tmp_path):
    df, problems = load_records([str(tmp_path / "nothing_here")])
    assert df.empty
    assert problems and "nothing_here" in problems[0]


def test_flattened_values_and_scales():
    df, _ = load_records([str(FIXTURES)])
    sst2 = _by_cell(df, "sst2", "baseline")
    assert sst2.score == pytest.approx(92.0)  # GLUE fractions -> survey points
    assert (sst2.ci_lo, sst2.ci_hi) == (pytest.approx(90.2), pytest.approx(93.8))
    assert sst2.latency_p50_ms == 20.0 and sst2.seq_len == 128
    assert sst2.energy_provenance == "estimated:codecarbon-tdp"
    squad = _by_cell(df, "squad_v1.1_devsplit", "baseline")
    assert squad.score == pytest.approx(88.0) and squad.primary_metric == "f1"  # SQuAD already 0-100
    # MNLI: the matched split of the suffixed per-split metrics, never the mismatched one.
    assert _by_cell(df, "mnli", "dynamic_int8").primary_metric == "accuracy_matched"
    mnli = _by_cell(df, "mnli", "layer_drop")
    assert mnli.score == pytest.approx(81.5) and "mismatched" not in mnli.primary_metric and mnli.subset
    matched = _by_cell(df, "mnli", "baseline")
    assert (matched.score, matched.ci_lo) == (pytest.approx(84.0), pytest.approx(83.3))
    assert sst2.cpu_model == "Test Xeon A" and _by_cell(df, "sst2", "head_prune").cpu_model == "Test EPYC B"
    random = _by_cell(df, "sst2", "low_rank", "cuda")
    assert random.random_init and random.score != random.score  # NaN: not measured, never 0
    failed = _by_cell(df, "squad_v1.1_devsplit", "layer_drop")
    assert failed.status == "failed" and "fixture failure" in failed.reason


def test_newest_record_of_a_cell_wins_and_the_older_is_named(tmp_path):
    run = _copy_run(tmp_path)
    path = next((run / "records").glob("sst2__*dynamic_int8__cpu*.json"))
    newer = json.loads(path.read_text())
    newer["config_hash"] = "f" * 64
    newer["created_at"] = "2026-02-01T00:00:00+00:00"
    newer["metrics"]["accuracy"] = 0.905
    (run / "records" / "rerun.json").write_text(json.dumps(newer))
    df, problems = load_records([str(run)])
    assert _by_cell(df, "sst2", "dynamic_int8").score == pytest.approx(90.5)
    assert any(path.name in p and "superseded" in p for p in problems)


def test_every_flattened_field_reaches_the_records_frame():
    """A key flatten_record writes but COLUMNS lacks is silently dropped by the DataFrame: the papers'
    legend and the training budgets were, until this test."""
    from harness.record import load_record
    from harness.report.flatten import COLUMNS, flatten_record

    for path in sorted(FIXTURES.glob("*.json")):
        assert set(flatten_record(load_record(path), path)) <= set(COLUMNS), path.name
    records, _ = load_records([str(FIXTURES)])
    assert records["reference_paper"].notna().any()
