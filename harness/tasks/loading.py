"""load_task: raw examples from local files or the Hub -> subsets -> tokenized train/eval data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.config import TaskConfig
from harness.tasks.glue import GlueEvalSplit, glue_train_features
from harness.tasks.hub import hub_examples
from harness.tasks.readers import read_glue_tsv, read_squad_json
from harness.tasks.sources import check_task_data, hub_key, local_files, resolve_source
from harness.tasks.squad import SquadEvalSplit, devsplit, squad_train_features
from harness.tasks.types import TaskData


def _local_examples(task: TaskConfig, data_root: str, need_train: bool, notes: list) -> dict[str, list]:
    examples = {}
    for split, rel in local_files(task, need_train).items():
        path = Path(data_root) / rel
        if task.local.format == "squad_json":
            examples[split] = read_squad_json(path, rel)
            continue
        examples[split], skipped = read_glue_tsv(path, rel, task)
        if skipped["malformed"]:
            notes.append(f"skipped {skipped['malformed']} malformed rows (wrong field count) in {rel}")
        if skipped["label"]:
            notes.append(f"skipped {skipped['label']} rows with a label outside {task.label_names or 'the label ids'} in {rel}")
    return examples


def _apply_devsplit(task: TaskConfig, examples: dict[str, list], need_train: bool, notes: list) -> None:
    (split, source), = examples.items()
    every, remainder = task.devsplit["every"], task.devsplit.get("eval_remainder", 0)
    train, held_out, n_train, n_eval = devsplit(source, every, remainder)
    examples[split] = held_out
    if need_train:
        examples["train"] = train
    notes.append(
        f"{task.name}: trained on {n_train} dev articles, evaluated on the other {n_eval} "
        f"(article-level split, every={every}, eval_remainder={remainder})"
    )


def _subset(task: TaskConfig, examples: dict[str, list], seed: int, counts: dict, notes: list) -> None:
    for split, rows in examples.items():
        counts[f"{split}_raw"] = len(rows)
        limit = task.finetune.max_train_samples if split == "train" else task.max_eval_samples
        if limit is not None and limit < len(rows):
            if split == "train":  # a seeded shuffle, so the subset is a fair sample yet reproducible
                order = np.random.default_rng(seed).permutation(len(rows))[:limit]
                examples[split] = [rows[i] for i in order]
                notes.append(f"train subset: {limit} of {len(rows)} (shuffled with seed {seed})")
            else:  # the first N, so every method is scored on exactly the same examples
                examples[split] = rows[:limit]
                notes.append(f"{split} subset: first {limit} of {len(rows)}")
        counts[split] = len(examples[split])


def load_task(task: TaskConfig, tokenizer, data_root: str, seed: int, need_train: bool = True, fingerprints=None) -> TaskData:
    """`fingerprints`: what check_task_data returned when the cell was planned; the files are then not
    validated and hashed again, and a Hub task keeps the revision it was planned (and hashed) with."""
    if fingerprints is None:
        fingerprints = check_task_data(task, data_root, need_train)
    notes: list[str] = []
    if resolve_source(task, data_root, need_train) == "hub":
        revision = fingerprints.get(hub_key(task))
        train, examples = hub_examples(task, need_train, None if revision == "unknown" else revision)
        if train is not None:
            examples["train"] = train
        notes.append(f"data from the Hub: {hub_key(task)[4:]}")
    else:
        examples = _local_examples(task, data_root, need_train, notes)
    if task.devsplit:
        examples = {split: rows for split, rows in examples.items() if split != "train"}
        _apply_devsplit(task, examples, need_train, notes)
    counts: dict[str, int] = {}
    _subset(task, examples, seed, counts, notes)

    squad = task.kind == "squad"
    split_class = SquadEvalSplit if squad else GlueEvalSplit
    train_features = None
    if need_train:
        build_train = squad_train_features if squad else glue_train_features
        train_features = build_train(examples["train"], tokenizer, task)
        if squad:
            counts["train_features"] = len(train_features)
    eval_splits = {}
    for split, rows in examples.items():
        if split == "train":
            continue
        eval_splits[split] = split_class.build(split, rows, tokenizer, task)
        if squad:
            counts[f"{split}_features"] = len(eval_splits[split].features)
            notes.append(f"{split}: {len(rows)} questions -> {len(eval_splits[split].features)} windows")
    return TaskData(task, train_features, eval_splits, fingerprints, counts, notes)
