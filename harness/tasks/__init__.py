"""Task data for the benchmark: validation, loading, tokenization and scoring.

    check_task_data(task, data_root)            fast pre-flight check -> {file: sha256}
    load_task(task, tokenizer, data_root, seed) tokenized train data + eval splits -> TaskData
    evaluate_model(model, split, tokenizer)     outputs -> postprocess -> official metric
    metric_fn(task)                             metric of (predictions, references), for bootstrap
"""

from harness.tasks.evaluation import evaluate_model, metric_fn, predict
from harness.tasks.loading import load_task
from harness.tasks.sources import check_task_data, resolve_source
from harness.tasks.squad import devsplit
from harness.tasks.types import EvalResult, EvalSplit, TaskData

__all__ = [
    "EvalResult",
    "EvalSplit",
    "TaskData",
    "check_task_data",
    "devsplit",
    "evaluate_model",
    "load_task",
    "metric_fn",
    "predict",
    "resolve_source",
]
