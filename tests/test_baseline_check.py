"""A baseline that did not learn is marked, not silently compared with (issue #31 part 4): its record
says "at chance", Table 1 marks every score compared with it, and the console warns."""

from types import SimpleNamespace

import pytest

from harness.chance import AT_CHANCE, LEARNED, baseline_check, warning
from harness.comparison import ScoredSplit
from harness.report.table import MARK_CHANCE

SST2 = SimpleNamespace(metric="glue", metric_config="sst2", primary_metric="accuracy", is_regression=False)
COLA = SimpleNamespace(metric="glue", metric_config="cola", primary_metric="matthews_correlation", is_regression=False)
STSB = SimpleNamespace(metric="glue", metric_config="stsb", primary_metric="pearson", is_regression=True)
REFERENCES = [1] * 56 + [0] * 44  # 56 % majority class


def test_a_collapsed_classifier_is_at_chance_and_a_good_one_learned():
    collapsed = baseline_check(SST2, ScoredSplit([1] * 100, REFERENCES))
    assert collapsed["verdict"] == AT_CHANCE and collapsed["chance_score"] == pytest.approx(56.0)
    assert collapsed["most_common_prediction_share"] == 1.0 and "at chance" in warning(collapsed)
    good = baseline_check(SST2, ScoredSplit(REFERENCES[:90] + [1 - r for r in REFERENCES[90:]], REFERENCES))
    assert good["verdict"] == LEARNED and good["score"] == pytest.approx(90.0) and warning(good) is None


def test_the_chance_score_is_the_metrics_own():
    """MCC of a constant guess is 0, not the majority rate: a CoLA baseline at MCC 0.3 learned."""
    predictions = [1] * 40 + [0] * 4 + [1] * 44 + [0] * 12  # mixed predictions, some signal
    check = baseline_check(COLA, ScoredSplit(predictions, [1] * 44 + [0] * 56))
    assert check["chance_score"] == pytest.approx(0.0) and check["verdict"] == LEARNED
    uncorrelated = baseline_check(STSB, ScoredSplit([2.5 + 0.01 * (i % 3) for i in range(30)], [float(i % 5) for i in range(30)]))
    assert uncorrelated["verdict"] == AT_CHANCE and uncorrelated["chance_score"] == 0.0


def test_squad_is_not_checked():
    squad = SimpleNamespace(metric="squad_v1", metric_config="plain_text", primary_metric="f1", is_regression=False)
    assert baseline_check(squad, ScoredSplit([{"id": "a", "prediction_text": "x"}], [{"id": "a", "answers": {}}])) is None


@pytest.mark.slow  # a tiny BERT fine-tuned on 64 sentences, scored, timed: ~15 s
def test_a_baseline_fine_tuned_on_64_sentences_is_marked_in_its_record_and_in_table1(compose, tiny_bert_dir, capfd):
    from test_runner import QUICK, run

    from harness.report import load_records, table1
    from harness.record import record_path, write_json_atomic

    cell = compose("model=local", f"model.path={tiny_bert_dir}", "task=sst2", *QUICK, "task.finetune.max_train_samples=64",
                   "task.max_eval_samples=64", "method=dynamic_int8", "method.backend=torch_ao", "method.compile=false")
    record = run(cell)
    assert record["status"] == "ok", record["reason"]
    assert record["training"]["baseline_check"]["verdict"] == AT_CHANCE
    assert "the fine-tuned baseline is at chance" in capfd.readouterr().err
    write_json_atomic(record_path(cell.paths.results_dir, record["cell"], record["config_hash"]), record)
    records, _ = load_records([str(cell.paths.results_dir)])
    (row,) = [r for _, r in table1(records, tasks=("sst2",)).iterrows() if r["Method"].startswith("dynamic_int8")]
    assert MARK_CHANCE in row["SST-2"]


def test_table1_marks_scores_compared_with_a_baseline_at_chance(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from harness.report import load_records, table1

    demo = Path(__file__).resolve().parents[1] / "examples" / "results" / "demo" / "records"
    shutil.copytree(demo, tmp_path / "records")
    path = next((tmp_path / "records").glob("*dynamic_int8*.json"))
    record = json.loads(path.read_text())
    record["training"]["baseline_check"] = {"verdict": AT_CHANCE, "metric": "accuracy", "score": 50.9, "chance_score": 50.9}
    path.write_text(json.dumps(record))
    records, _ = load_records([str(tmp_path)])
    rows = {r["Method"]: r for _, r in table1(records, tasks=("sst2",)).iterrows()}
    assert MARK_CHANCE in rows["dynamic_int8 (be=torch_ao,cmp=false)"]["SST-2"]
    assert MARK_CHANCE not in rows["ffn_prune"]["SST-2"]
