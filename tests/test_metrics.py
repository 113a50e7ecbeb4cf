"""Metric modules against hand-computed values (every expected number is worked out in a comment)."""

import math

import pytest

from harness.errors import ConfigError
from harness.metrics import compute_metric, fast_metric, load_metric


def glue(config, predictions, references):
    return compute_metric("glue", config, predictions, references)


def squad(predictions, references):
    return compute_metric("squad_v1", "default", predictions, references)


def ref(qid, *golds):
    return {"id": qid, "answers": {"text": list(golds), "answer_start": [0] * len(golds)}}


def pred(qid, text):
    return {"id": qid, "prediction_text": text}


def test_accuracy_tasks_report_accuracy_only():
    # 2 of 4 correct.
    for config in ("sst2", "rte", "qnli", "wnli", "mnli", "mnli_matched", "mnli_mismatched"):
        assert glue(config, [1, 0, 1, 1], [1, 1, 1, 0]) == {"accuracy": 0.5}


def test_mnli_matched_and_mismatched_are_three_way_accuracy():
    # labels 0/1/2; 3 of 5 correct.
    for config in ("mnli_matched", "mnli_mismatched"):
        assert glue(config, [0, 1, 2, 2, 1], [0, 1, 2, 0, 0]) == {"accuracy": pytest.approx(0.6)}


def test_mrpc_and_qqp_f1_by_hand():
    # TP = 2 (idx 0, 3), FP = 1 (idx 1), FN = 1 (idx 4): P = R = 2/3, F1 = 2/3; 4 of 6 correct.
    for config in ("mrpc", "qqp"):
        result = glue(config, [1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 0])
        assert result == {"accuracy": pytest.approx(4 / 6), "f1": pytest.approx(2 / 3)}


def test_f1_without_positive_predictions_or_labels_is_zero():
    assert glue("mrpc", [0, 0], [0, 0])["f1"] == 0.0


def test_matthews_by_hand():
    # TP = 2, FP = 1, TN = 2, FN = 0: (2*2 - 1*0) / sqrt(3 * 2 * 3 * 2) = 4 / 6.
    assert glue("cola", [1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == {"matthews_correlation": pytest.approx(2 / 3)}
    # Perfectly wrong predictions give -1.
    assert glue("cola", [0, 1, 0, 1], [1, 0, 1, 0])["matthews_correlation"] == pytest.approx(-1.0)


def test_matthews_constant_prediction_is_zero_not_nan():
    assert glue("cola", [1, 1, 1, 1], [1, 0, 1, 0])["matthews_correlation"] == 0.0


def test_pearson_by_hand():
    # dx = [-1.5, -.5, .5, 1.5], dy = [-3, -1, 0, 4]: cov sum 11, Sxx 5, Syy 26 -> 11 / sqrt(130).
    result = glue("stsb", [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0])
    assert result["pearson"] == pytest.approx(11 / math.sqrt(130))
    assert result["spearmanr"] == pytest.approx(1.0)  # both strictly increasing


def test_spearman_with_ties_uses_average_ranks():
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]: cov sum 4.5, Sxx 4.5, Syy 5 -> 4.5 / sqrt(22.5).
    result = glue("stsb", [1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0])
    assert result["spearmanr"] == pytest.approx(4.5 / math.sqrt(22.5))


def test_stsb_keeps_float64_precision():
    # Pearson of [.1, .5, .3] vs [1, 2, 3] is exactly 0.5; float32 inputs would give 0.50000003.
    assert glue("stsb", [0.1, 0.5, 0.3], [1, 2, 3])["pearson"] == pytest.approx(0.5, abs=1e-12)


def test_unknown_glue_config_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown GLUE config 'sts'"):
        load_metric("glue", "sts")
    with pytest.raises(ConfigError, match="task.metric"):
        load_metric("bleu", "default")


def test_squad_normalization_edge_cases():
    module = __import__(type(load_metric("squad_v1", "default")).__module__, fromlist=["normalize_answer"])
    normalize = module.normalize_answer
    assert normalize("The  Cat!") == "cat"  # case, punctuation, article, whitespace
    assert normalize("an apple, a pear & THE plum.") == "apple pear plum"
    assert normalize("Theory of anything") == "theory of anything"  # articles only as whole words
    assert normalize("  \tDenver\n Broncos ") == "denver broncos"
    assert normalize("A") == ""


def test_squad_exact_match_ignores_case_articles_punctuation():
    result = squad([pred("q1", "the Eiffel Tower.")], [ref("q1", "Eiffel Tower")])
    assert result == {"exact_match": 100.0, "f1": 100.0}


def test_squad_takes_the_best_gold_answer():
    # EM: matches the second gold. F1: "red dog" vs "red cat" = 0.5, vs "big red dog" = P 1, R 2/3 -> 0.8.
    assert squad([pred("q", "Denver Broncos")], [ref("q", "Broncos", "Denver Broncos")])["exact_match"] == 100.0
    result = squad([pred("q", "red dog")], [ref("q", "red cat", "big red dog")])
    assert result["exact_match"] == 0.0
    assert result["f1"] == pytest.approx(80.0)


def test_squad_partial_overlap_f1_and_average():
    # q2: prediction tokens [big, red, dog, barked], gold [red, dog]: P = 2/4, R = 1 -> F1 = 2/3.
    # Average over q1 (EM 1, F1 1) and q2 (EM 0, F1 2/3): EM 50, F1 83.33.
    result = squad(
        [pred("q1", "Paris"), pred("q2", "the big red dog barked")],
        [ref("q1", "paris"), ref("q2", "a red dog")],
    )
    assert result["exact_match"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_squad_unanswered_question_scores_zero():
    # evaluate needs as many predictions as references, so the extra prediction answers no reference.
    result = squad([pred("q1", "Paris"), pred("q3", "Rome")], [ref("q1", "Paris"), ref("q2", "Rome")])
    assert result == {"exact_match": 50.0, "f1": 50.0}


def test_fast_metric_matches_compute_metric():
    predictions, references = [1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 0]
    assert fast_metric("glue", "mrpc")(predictions, references) == glue("mrpc", predictions, references)
    squad_preds, squad_refs = [pred("q", "red dog")], [ref("q", "red cat", "big red dog")]
    assert fast_metric("squad_v1", "default")(squad_preds, squad_refs) == squad(squad_preds, squad_refs)
