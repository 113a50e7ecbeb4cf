"""GLUE metrics as a local `evaluate` module (loaded by path, so no network is needed).

One official metric set per config, matching the GLUE leaderboard:
accuracy (sst2, rte, qnli, wnli, mnli*), accuracy + F1 (mrpc, qqp), Matthews correlation (cola),
Pearson + Spearman correlation (stsb). Written with numpy/scipy only: sklearn is not a dependency.
"""

import datasets
import evaluate
import numpy as np
from scipy import stats

_CONFIG_METRICS = {
    "sst2": ("accuracy",),
    "rte": ("accuracy",),
    "qnli": ("accuracy",),
    "wnli": ("accuracy",),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "cola": ("matthews_correlation",),
    "stsb": ("pearson", "spearmanr"),
}

_DESCRIPTION = "Official GLUE metric for each task (config name = task name)."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels (ints), or scores (floats) for stsb.
    references: gold labels (ints), or gold scores (floats) for stsb.
Returns: a dict with the task's metrics, e.g. {"accuracy": 0.9} or {"pearson": .., "spearmanr": ..}.
"""


def accuracy(preds: np.ndarray, refs: np.ndarray) -> float:
    return float((preds == refs).mean())


def binary_f1(preds: np.ndarray, refs: np.ndarray) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    true_pos = float(np.sum((preds == 1) & (refs == 1)))
    false_pos = float(np.sum((preds == 1) & (refs != 1)))
    false_neg = float(np.sum((preds != 1) & (refs == 1)))
    denominator = 2 * true_pos + false_pos + false_neg
    return 2 * true_pos / denominator if denominator else 0.0


def matthews_correlation(preds: np.ndarray, refs: np.ndarray) -> float:
    """Multiclass MCC from the confusion matrix (Gorodkin 2004); 0 when undefined, like sklearn."""
    classes = np.union1d(preds, refs)
    pred_idx = np.searchsorted(classes, preds)
    ref_idx = np.searchsorted(classes, refs)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (ref_idx, pred_idx), 1)
    n = confusion.sum()
    correct = np.trace(confusion)
    pred_totals = confusion.sum(axis=0)
    ref_totals = confusion.sum(axis=1)
    covariance = correct * n - pred_totals @ ref_totals
    denominator = np.sqrt((n * n - pred_totals @ pred_totals) * (n * n - ref_totals @ ref_totals))
    return float(covariance / denominator) if denominator else 0.0


def pearson(preds: np.ndarray, refs: np.ndarray) -> float:
    return float(stats.pearsonr(preds, refs)[0])


def spearman(preds: np.ndarray, refs: np.ndarray) -> float:
    # Ties get average ranks, as in the reference implementation.
    return float(stats.spearmanr(preds, refs)[0])


def glue_metrics(config_name: str, predictions, references) -> dict:
    """The pure computation, reusable without evaluate's caching (e.g. for bootstrap resampling)."""
    if config_name == "stsb":
        preds = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.float64)
        return {"pearson": pearson(preds, refs), "spearmanr": spearman(preds, refs)}
    preds = np.asarray(predictions, dtype=np.int64)
    refs = np.asarray(references, dtype=np.int64)
    if config_name == "cola":
        return {"matthews_correlation": matthews_correlation(preds, refs)}
    result = {"accuracy": accuracy(preds, refs)}
    if config_name in ("mrpc", "qqp"):
        result["f1"] = binary_f1(preds, refs)
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in _CONFIG_METRICS:
            raise KeyError(f"unknown GLUE config {self.config_name!r}; expected one of {sorted(_CONFIG_METRICS)}")
        value_type = "float64" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for NLU, 2019.",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value(value_type), "references": datasets.Value(value_type)}
            ),
            # No format="numpy": evaluate's numpy formatter downcasts floats to float32.
        )

    def _compute(self, predictions, references):
        return glue_metrics(self.config_name, predictions, references)
