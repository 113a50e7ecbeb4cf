"""Report commands fail closed (issue #31 part 2): a command that skipped a file, could not read one,
or matched nothing exits non-zero and says how many; a record holding a value no measurement can take
is refused on reading, named, and left out."""

import json
import shutil
from pathlib import Path

import pytest

from harness.record import load_record
from harness.report import load_records
from harness.report.cli import main as report_main

FIXTURES = Path(__file__).parent / "fixtures" / "records"
DEMO = Path(__file__).resolve().parents[1] / "examples" / "results" / "demo"


def copy_run(source: Path, target: Path) -> Path:
    records = target / "records"
    shutil.copytree(source / "records" if (source / "records").is_dir() else source, records,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def one_record(run: Path) -> Path:
    return sorted(p for p in (run / "records").glob("*.json"))[0]


@pytest.mark.parametrize("field,value,message", [
    (("size", "bytes_dense"), -1, "size.bytes_dense = -1 is not a size"),
    (("metrics", "accuracy"), 1.7, "metrics.accuracy = 1.7 is outside the metric's range [0, 1]"),
    (("latency", "fixed", 0, "p50_ms"), 0.0, "latency.fixed[0].p50_ms = 0.0 is not a latency"),
    (("latency", "fixed", 0, "p50_ms"), "fast", "latency.fixed[0].p50_ms = 'fast' is not a latency"),
])
def test_a_value_no_measurement_can_take_is_refused_and_named(tmp_path, field, value, message):
    run = copy_run(DEMO, tmp_path / "run")
    path = one_record(run)
    record = json.loads(path.read_text())
    node = record
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = value
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_record(path)
    records, problems = load_records([str(run)])
    assert str(path) not in set(records["path"]) and any(message in p for p in problems)
    assert report_main([str(run), "--out", str(tmp_path / "report"), "--no-plots"]) == 1  # left out: not exit 0


def test_every_committed_record_is_within_range():
    paths = [*Path(__file__).resolve().parents[1].glob("examples/results/**/records/*.json"), *FIXTURES.glob("*.json")]
    assert len(paths) > 100
    for path in paths:
        load_record(path)


def test_rescore_with_an_unreadable_record_exits_non_zero(tmp_path, capsys):
    run = copy_run(DEMO, tmp_path / "run")
    assert report_main([str(run), "--rescore"]) == 0  # the demo's records re-score exactly
    (run / "records" / "broken.json").write_text("{not json")
    assert report_main([str(run), "--rescore"]) == 1
    err = capsys.readouterr().err
    assert "broken.json" in err and "1 file(s) or pattern(s) skipped" in err


def test_compare_with_a_missing_folder_exits_non_zero(tmp_path, capsys):
    assert report_main(["--compare", str(DEMO), str(tmp_path / "missing")]) == 2
    assert "--compare B:" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main(["--compare", str(DEMO), str(empty)]) == 1  # matched nothing there: said, non-zero


def test_recommend_that_skipped_a_file_exits_non_zero(tmp_path):
    run = copy_run(DEMO, tmp_path / "run")
    assert report_main([str(run), "--recommend", "--max-drop", "1.5"]) == 0
    (run / "records" / "half.json").write_text('{"schema_version": "2.0"')
    assert report_main([str(run), "--recommend", "--max-drop", "1.5"]) == 1
