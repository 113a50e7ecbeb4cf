"""SQuAD v1.1 exact match and F1 as a local `evaluate` module (loaded by path, no network).

Follows the official v1.1 evaluation script: answers are normalized (lowercase, punctuation and
the articles a/an/the removed, whitespace collapsed), each prediction is scored against every
gold answer and the best score counts, and both metrics are averaged over all references on a
0-100 scale. A reference with no prediction scores 0, as in the official script.
"""

import collections
import functools
import re
import string

import datasets
import evaluate

_DESCRIPTION = "SQuAD v1.1 exact match and token-level F1 (0-100)."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"id": str, "prediction_text": str}.
    references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}.
Returns: {"exact_match": float, "f1": float}, both in [0, 100].
"""

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    overlap = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(score_fn, prediction: str, golds: list) -> float:
    return max(score_fn(prediction, gold) for gold in golds)


@functools.lru_cache(maxsize=1 << 16)
def _pair_scores(prediction: str, golds: tuple) -> tuple[float, float]:
    # Bootstrap resampling scores the same (prediction, golds) pairs over and over: memoize them.
    return best_over_golds(exact_match_score, prediction, golds), best_over_golds(f1_score, prediction, golds)


def squad_metrics(predictions: list, references: list) -> dict:
    """The pure computation, reusable without evaluate's caching (e.g. for bootstrap resampling)."""
    prediction_by_id = {p["id"]: p["prediction_text"] for p in predictions}
    exact_total = f1_total = 0.0
    for ref in references:
        golds = tuple(ref["answers"]["text"])
        if ref["id"] not in prediction_by_id or not golds:
            continue  # counts as 0, like an unanswered question in the official script
        exact, f1 = _pair_scores(prediction_by_id[ref["id"]], golds)
        exact_total += exact
        f1_total += f1
    count = max(len(references), 1)
    return {"exact_match": 100.0 * exact_total / count, "f1": 100.0 * f1_total / count}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SquadV1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension of Text, 2016.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references):
        return squad_metrics(predictions, references)
