"""Did the fine-tuned baseline learn? Its score against a constant guess's (issue #31 part 4).

A fine-tune that ends at the majority class (or, for a regression, uncorrelated with the targets)
makes every comparison against it meaningless: a compressed model "keeps its accuracy" by guessing
too. Each cell checks its baseline on the eval split: the score a constant prediction of the
majority label would get (0 correlation for a regression) is the chance score, and a baseline within
CHANCE_MARGIN points of it, or one that predicts a single class for nearly every example, is "at
chance". The verdict is written into the record's `training.baseline_check`, marked in Table 1 and
warned about on the console.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

CHANCE_MARGIN = 1.0  # points (0-100 scale) above the constant guess's score that still count as chance
COLLAPSED_SHARE = 0.98  # a classifier predicting one class for this share of the examples has collapsed
AT_CHANCE = "at chance"
LEARNED = "learned"


def baseline_check(task, scored) -> Optional[dict]:
    """The record's `training.baseline_check` for the baseline's scored eval split (predictions and
    references, comparison.ScoredSplit); None for a task this check does not cover (SQuAD's spans)."""
    from harness.metrics import compute_metric

    if task.metric != "glue" or not len(scored.references):
        return None
    predictions, references = list(scored.predictions), list(scored.references)
    primary = task.primary_metric
    score = _points(compute_metric(task.metric, task.metric_config, predictions, references).get(primary))
    if task.is_regression:
        chance, majority_share = 0.0, None  # a constant has no correlation with the targets
    else:
        majority = Counter(references).most_common(1)[0][0]
        chance = _points(compute_metric(task.metric, task.metric_config, [majority] * len(references), references).get(primary))
        majority_share = Counter(predictions).most_common(1)[0][1] / len(predictions)
    if score is None or chance is None:
        return None
    collapsed = majority_share is not None and majority_share >= COLLAPSED_SHARE
    verdict = AT_CHANCE if score <= chance + CHANCE_MARGIN or collapsed else LEARNED
    check = {"verdict": verdict, "metric": primary, "score": round(score, 4), "chance_score": round(chance, 4)}
    if majority_share is not None:
        check["most_common_prediction_share"] = round(majority_share, 4)
    return check


def warning(check: Optional[dict]) -> Optional[str]:
    """One console line when the baseline is at chance, else None."""
    if not check or check["verdict"] != AT_CHANCE:
        return None
    share = check.get("most_common_prediction_share")
    collapsed = f"; it predicts one class for {share:.0%} of the examples" if share is not None and share >= COLLAPSED_SHARE else ""
    return (f"warning: the fine-tuned baseline is at chance: {check['metric']} {check['score']:.2f} against "
            f"{check['chance_score']:.2f} for a constant guess{collapsed}. Every comparison against it is "
            "meaningless: train it longer or on more data (task.finetune.*)")


def _points(value) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value * 100.0 if -1.0 <= value <= 1.0 else value  # GLUE metrics are fractions or correlations
