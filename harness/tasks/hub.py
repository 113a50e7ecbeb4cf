"""Hub-backed raw examples (datasets.load_dataset), in the same shape the local readers produce."""

from __future__ import annotations

import functools

from harness.config import TaskConfig

SQUAD_FIELDS = ("id", "title", "context", "question", "answers")


def _rename(rows, columns: dict, keys: tuple) -> list[dict]:
    names = {key: columns.get(key, key) for key in keys}
    return [{key: row[name] for key, name in names.items()} for row in rows]


def _glue_examples(rows, task: TaskConfig) -> list[dict]:
    keys = ("text_a", "text_b", "label") if "text_b" in task.hub.columns else ("text_a", "label")
    examples = _rename(rows, task.hub.columns, keys)
    for example in examples:
        example.setdefault("text_b", None)
        example["label"] = float(example["label"]) if task.is_regression else int(example["label"])
    return examples


def hub_examples(task: TaskConfig, need_train: bool, revision: str | None = None) -> tuple[list | None, dict[str, list]]:
    """(train examples or None, {our eval split name: examples}); `revision`: the commit the cell was
    planned with (hub_revision), so the data read is the data fingerprinted."""
    import datasets

    dataset = datasets.load_dataset(task.hub.path, task.hub.name, revision=revision or task.hub.revision)

    def convert(split: str) -> list[dict]:
        if task.kind == "squad":
            return _rename(dataset[split], task.hub.columns, SQUAD_FIELDS)
        return _glue_examples(dataset[split], task)

    train = convert(task.hub.train_split) if need_train and not task.devsplit else None
    return train, {ours: convert(theirs) for ours, theirs in task.hub.eval_splits.items()}


@functools.lru_cache(maxsize=32)
def _current_commit(path: str) -> str:
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(path).sha or "unknown"
    except Exception:  # only a fingerprint: an unreachable API must not stop the run
        return "unknown"


def hub_revision(task: TaskConfig) -> str:
    """The pinned revision, else the Hub's current commit, else 'unknown' (never fails a run)."""
    return task.hub.revision or _current_commit(task.hub.path)
