"""Run a model over an eval split and score it with the task's official metric."""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from harness.config import TaskConfig
from harness.metrics import compute_metric, fast_metric
from harness.tasks.types import EvalResult, EvalSplit


def _accepted_inputs(model, available: list[str]) -> list[str]:
    """Drop inputs the model's forward does not take (e.g. token_type_ids for DistilBERT)."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return available
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return available
    return [name for name in available if name in parameters]


def _pick_outputs(output, names: tuple) -> list:
    if isinstance(output, dict) or hasattr(output, names[0]):  # ModelOutput is both
        return [output[name] if isinstance(output, dict) else getattr(output, name) for name in names]
    if not isinstance(output, (tuple, list)):
        output = (output,)
    return list(output[: len(names)])


def _in_original_order(chunks: list[np.ndarray], order: np.ndarray) -> np.ndarray:
    """Concatenate batch outputs, padding per-token outputs with -inf, and undo the length sort."""
    if chunks[0].ndim == 2:
        width = max(chunk.shape[1] for chunk in chunks)
        chunks = [np.pad(c, ((0, 0), (0, width - c.shape[1])), constant_values=-np.inf) for c in chunks]
    stacked = np.concatenate(chunks)
    restored = np.empty_like(stacked)
    restored[order] = stacked
    return restored


def predict(model, split: EvalSplit, tokenizer, device: str = "cpu", batch_size: int = 64, progress: bool = True) -> dict[str, np.ndarray]:
    """Model outputs named by split.output_names, in the original feature order.

    Batches are formed from length-sorted features so dynamic padding wastes little compute; the
    model is expected to be on `device` already (moving quantized models is the runner's call).
    """
    import torch
    from transformers import DataCollatorWithPadding

    from harness.progress import progress as progress_bar

    columns = split.features[:]
    names = _accepted_inputs(model, [c for c in split.features.column_names if c != "labels"])
    order = np.argsort([-len(ids) for ids in columns["input_ids"]], kind="stable")  # longest first: OOM shows at once
    collate = DataCollatorWithPadding(tokenizer)
    chunks: dict[str, list] = {name: [] for name in split.output_names}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), progress_bar(len(order), f"eval {split.name}", "ex", enabled=progress) as bar:
            for begin in range(0, len(order), batch_size):
                rows = order[begin : begin + batch_size]
                batch = collate([{name: columns[name][i] for name in names} for i in rows])
                output = model(**{key: value.to(device) for key, value in batch.items()})
                for name, tensor in zip(split.output_names, _pick_outputs(output, split.output_names)):
                    chunks[name].append(tensor.detach().float().cpu().numpy())
                bar.update(len(rows))
    finally:
        model.train(was_training)
    return {name: _in_original_order(parts, order) for name, parts in chunks.items()}


def evaluate_model(model, split: EvalSplit, tokenizer, device: str = "cpu", batch_size: int = 64, progress: bool = True) -> EvalResult:
    outputs = predict(model, split, tokenizer, device, batch_size, progress)
    predictions, references = split.postprocess(outputs)
    metrics = compute_metric(split.task.metric, split.task.metric_config, predictions, references)
    return EvalResult(metrics=metrics, predictions=predictions, references=references)


def metric_fn(task: TaskConfig) -> Callable[[list, list], dict]:
    """The task's metric as a plain function of (predictions, references), cheap enough for bootstrap."""
    return fast_metric(task.metric, task.metric_config)
