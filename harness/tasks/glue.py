"""GLUE sentence(-pair) tasks: tokenization and logits -> predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.config import TaskConfig
from harness.tasks.types import EvalSplit, token_dataset


def _encode(examples: list[dict], tokenizer, task: TaskConfig) -> dict:
    texts_a = [ex["text_a"] for ex in examples]
    texts_b = [ex["text_b"] for ex in examples] if examples and examples[0]["text_b"] is not None else None
    # No padding here: the runner pads each batch dynamically, which is much cheaper on short GLUE text.
    encoding = tokenizer(texts_a, texts_b, truncation=True, max_length=task.max_seq_length)
    return {key: list(values) for key, values in encoding.items()}


def glue_train_features(examples: list[dict], tokenizer, task: TaskConfig):
    columns = _encode(examples, tokenizer, task)
    columns["labels"] = [ex["label"] for ex in examples]
    return token_dataset(columns, {"labels": "float32" if task.is_regression else "int64"})


@dataclass
class GlueEvalSplit(EvalSplit):
    @classmethod
    def build(cls, name: str, examples: list[dict], tokenizer, task: TaskConfig) -> "GlueEvalSplit":
        features = token_dataset(_encode(examples, tokenizer, task))
        return cls(name=name, features=features, examples=examples, task=task)

    def postprocess(self, outputs: dict[str, np.ndarray]) -> tuple[list, list]:
        """(N, C) logits -> (predicted label ids, or scores for regression; gold labels)."""
        logits = np.asarray(outputs["logits"], dtype=np.float64).reshape(len(self.examples), -1)
        if self.task.is_regression:
            predictions = logits[:, 0].tolist()
        else:
            predictions = logits.argmax(axis=-1).astype(int).tolist()
        return predictions, [ex["label"] for ex in self.examples]
