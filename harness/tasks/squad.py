"""SQuAD v1.1: sliding-window features, span labels, n-best span decoding and the dev split.

Long contexts are cut into windows of task.max_seq_length tokens that overlap by task.doc_stride
tokens; an example's answer is the best-scoring valid span over all of its windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from harness.config import TaskConfig
from harness.tasks.types import MODEL_INPUTS, EvalSplit, token_dataset


def _windows(examples: list[dict], tokenizer, task: TaskConfig):
    # Leading spaces in some questions would only waste window length.
    return tokenizer(
        [ex["question"].lstrip() for ex in examples],
        [ex["context"] for ex in examples],
        truncation="only_second",
        max_length=task.max_seq_length,
        stride=task.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def _model_columns(encoding) -> dict:
    return {key: list(encoding[key]) for key in MODEL_INPUTS if key in encoding}


def _span_label(encoding, window: int, answer_start: int, answer_text: str, cls_index: int) -> tuple[int, int]:
    """Token (start, end) of the answer in this window, or (cls, cls) when it is not fully inside."""
    offsets = encoding["offset_mapping"][window]
    sequence_ids = encoding.sequence_ids(window)
    context_tokens = [i for i, s in enumerate(sequence_ids) if s == 1]
    first, last = context_tokens[0], context_tokens[-1]
    answer_end = answer_start + len(answer_text)
    if offsets[first][0] > answer_start or offsets[last][1] < answer_end:
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= answer_start:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= answer_end:
        end -= 1
    return start - 1, end + 1


def squad_train_features(examples: list[dict], tokenizer, task: TaskConfig):
    encoding = _windows(examples, tokenizer, task)
    starts, ends = [], []
    for window, example_index in enumerate(encoding["overflow_to_sample_mapping"]):
        answers = examples[example_index]["answers"]
        cls_index = encoding["input_ids"][window].index(tokenizer.cls_token_id)
        start, end = _span_label(encoding, window, answers["answer_start"][0], answers["text"][0], cls_index)
        starts.append(start)
        ends.append(end)
    columns = _model_columns(encoding)
    columns.update(start_positions=starts, end_positions=ends)
    return token_dataset(columns, {"start_positions": "int64", "end_positions": "int64"})


@dataclass
class SquadEvalSplit(EvalSplit):
    window_example: list = field(default_factory=list)  # window -> index into examples
    window_offsets: list = field(default_factory=list)  # window -> char span per token, None outside the context
    output_names = ("start_logits", "end_logits")

    @classmethod
    def build(cls, name: str, examples: list[dict], tokenizer, task: TaskConfig) -> "SquadEvalSplit":
        encoding = _windows(examples, tokenizer, task)
        offsets = [
            [span if sequence_id == 1 else None for span, sequence_id in zip(encoding["offset_mapping"][w], encoding.sequence_ids(w))]
            for w in range(len(encoding["input_ids"]))
        ]
        return cls(
            name=name,
            features=token_dataset(_model_columns(encoding)),
            examples=examples,
            task=task,
            window_example=list(encoding["overflow_to_sample_mapping"]),
            window_offsets=offsets,
        )

    def _best_in_window(self, start_logits, end_logits, offsets) -> Optional[tuple[float, int, int]]:
        # Logits may be padded past the window; only context tokens can start or end an answer.
        usable = min(len(offsets), len(start_logits))
        valid = np.zeros(len(start_logits), dtype=bool)
        valid[:usable] = [span is not None for span in offsets[:usable]]
        if not valid.any():
            return None
        start = np.where(valid, start_logits, -np.inf)
        end = np.where(valid, end_logits, -np.inf)
        n_best = min(self.task.n_best, int(valid.sum()))
        top_starts = np.argsort(start)[::-1][:n_best]
        top_ends = np.argsort(end)[::-1][:n_best]
        scores = start[top_starts][:, None] + end[top_ends][None, :]
        length = top_ends[None, :] - top_starts[:, None] + 1
        scores = np.where((length >= 1) & (length <= self.task.max_answer_length), scores, -np.inf)
        best = np.unravel_index(np.argmax(scores), scores.shape)
        if not np.isfinite(scores[best]):
            return None
        return float(scores[best]), int(top_starts[best[0]]), int(top_ends[best[1]])

    def postprocess(self, outputs: dict[str, np.ndarray]) -> tuple[list, list]:
        """Per-window start/end logits -> best span text per example (n-best over all its windows)."""
        best: dict[int, tuple[float, str]] = {}
        for window, example_index in enumerate(self.window_example):
            offsets = self.window_offsets[window]
            found = self._best_in_window(
                np.asarray(outputs["start_logits"][window], dtype=np.float64),
                np.asarray(outputs["end_logits"][window], dtype=np.float64),
                offsets,
            )
            if found is None or (example_index in best and best[example_index][0] >= found[0]):
                continue
            score, start, end = found
            context = self.examples[example_index]["context"]
            best[example_index] = (score, context[offsets[start][0] : offsets[end][1]])
        predictions = [
            {"id": ex["id"], "prediction_text": best.get(i, (0.0, ""))[1]} for i, ex in enumerate(self.examples)
        ]
        references = [{"id": ex["id"], "answers": ex["answers"]} for ex in self.examples]
        return predictions, references


def devsplit(examples: list[dict], every: int, eval_remainder: int = 0) -> tuple[list, list, int, int]:
    """Article-level split of one file: article i (0-based, in file order) is held out for eval
    when i % every == eval_remainder and used for training otherwise.

    Articles are identified by title in order of first appearance, so the rule gives the same split
    for the local dev-v1.1.json and the Hub's validation split. Splitting by article (not by
    question) keeps every paragraph's questions on one side, so eval contexts are never trained on.
    Returns (train examples, eval examples, train article count, eval article count).
    """
    article_of: dict[str, int] = {}
    train, evaluation = [], []
    for example in examples:
        article = article_of.setdefault(example["title"], len(article_of))
        (evaluation if article % every == eval_remainder else train).append(example)
    eval_articles = sum(1 for i in range(len(article_of)) if i % every == eval_remainder)
    return train, evaluation, len(article_of) - eval_articles, eval_articles
