"""Fine-tuning with the transformers Trainer, cached in a content-addressed directory.

The cache key covers everything that changes the weights: model identity, task name + version,
hyperparameters, seed, data fingerprints and library versions. An entry is complete only when
its `meta.json` exists; it is built in a temp directory and renamed into place, so an
interrupted fine-tune never leaves an entry that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from harness.config import finetune_identity
from harness.record import umask_mode

CACHE_VERSION = 1  # bump when a code change should invalidate cached fine-tunes and records


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def library_versions() -> dict:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def finetune_key(model_identity: str, task, finetune_cfg, seed: int, fingerprints: dict, extra: Optional[dict] = None) -> str:
    return stable_hash({
        "cache_version": CACHE_VERSION,
        "model": model_identity,
        "task": [task.name, task.version, task.max_seq_length],
        "hyperparameters": finetune_identity(finetune_cfg),
        "seed": seed,
        "data": fingerprints,
        "libraries": library_versions(),
        "extra": extra or {},
    })


def train(model, tokenizer, train_dataset, finetune_cfg, seed: int, device: str, epochs: Optional[float] = None, trainer_class=None,
          budget: Optional[dict] = None, **trainer_kwargs):
    """Plain supervised fine-tuning; also the shared loop for recovery fine-tunes.

    `budget`, when given, is filled with what the run spent (training_budget): methods compared
    fairly retrain on equal budgets, so every record says its own (ShrinkBench's protocol)."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    from harness.progress import trainer_progress

    start = time.perf_counter()
    disable_bar, progress_callbacks = trainer_progress()  # a bar on a terminal, plain lines in a log
    trainer_kwargs["callbacks"] = [*(trainer_kwargs.get("callbacks") or []), *progress_callbacks]

    with tempfile.TemporaryDirectory(prefix="compbench-train-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs if epochs is not None else finetune_cfg.epochs,
            per_device_train_batch_size=finetune_cfg.batch_size,
            learning_rate=finetune_cfg.learning_rate,
            weight_decay=finetune_cfg.weight_decay,
            warmup_steps=finetune_cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
            seed=seed,
            data_seed=seed,
            use_cpu=device == "cpu",
            train_sampling_strategy="group_by_length",  # dynamic padding + length buckets: ~2x faster on CPU for short GLUE sentences
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            dataloader_num_workers=0,
            optim=finetune_cfg.optimizer,
            bf16=finetune_cfg.precision == "bf16",  # torch.autocast(bfloat16) around forward and loss
            disable_tqdm=disable_bar,  # explicit: transformers hides the bar whenever its log level is warning or quieter
        )
        with frozen_word_embeddings(model, finetune_cfg.freeze_word_embeddings):
            trainer = (trainer_class or Trainer)(
                model=model,
                args=args,
                train_dataset=train_dataset,
                data_collator=DataCollatorWithPadding(tokenizer),
                **trainer_kwargs,
            )
            if disable_bar:  # its replacement prints the final metrics as a raw dict; the record keeps the budget
                trainer.remove_callback(PrinterCallback)
            trainer.train()
            if budget is not None:
                seen = min(trainer.state.global_step * args.per_device_train_batch_size, math.ceil(len(train_dataset) * args.num_train_epochs))
                budget.update(training_budget(trainer.state.global_step, seen, len(train_dataset), args.num_train_epochs,
                                              time.perf_counter() - start))
            # For bf16 the Trainer's accelerate wraps the model's forward in autocast and leaves it
            # there; unwrapped, every later evaluation, conversion and latency pass runs in fp32 again.
            trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    return model.eval()


def training_budget(optimizer_steps: int, examples_seen: int, train_examples: int, epochs: float, wall_s: float) -> dict:
    """A training run's cost, the same keys everywhere (record: method.training_budget)."""
    return {"optimizer_steps": int(optimizer_steps), "examples_seen": int(examples_seen),
            "train_examples": int(train_examples), "epochs": float(epochs), "wall_s": round(float(wall_s), 1)}


@contextlib.contextmanager
def frozen_word_embeddings(model, freeze: bool):
    """Hold a plain input-embedding matrix fixed during training, then make it trainable again so a
    later method (QAT, movement pruning) trains what it expects. An input embedding that is not an
    nn.Embedding (a method's own module) is left trainable: its training may be the method's point."""
    import torch

    # Wrappers that train a part of a model (early exit's ramps) have no input embeddings to ask for.
    embedding = model.get_input_embeddings() if freeze and hasattr(model, "get_input_embeddings") else None
    if not (isinstance(embedding, torch.nn.Embedding) and embedding.weight.requires_grad):
        yield  # nothing to freeze, or already frozen by someone else: leave it as it is
        return
    embedding.weight.requires_grad_(False)
    try:
        yield
    finally:
        embedding.weight.requires_grad_(True)


@contextlib.contextmanager
def key_lock(root: Path, key: str, doing: str = "fine-tuning this baseline"):
    """One build per cache key at a time (a fine-tune, the baseline's predictions), across processes
    and sweeps on this file system: a second process that needs the same key waits here, then finds
    the first one's complete entry. (An advisory flock on a lock file beside the entries; the kernel
    releases it when a holder dies.)"""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"compbench: another process is {doing} ({key[:12]}); waiting for it", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def once_per_key(root: Path, key: str, complete: Path, produce, doing: str = "fine-tuning this baseline"):
    """`produce()` (which reads the cache entry, or builds it) under the key's lock, unless `complete`
    already exists: entries appear whole (by rename), so reading one needs no lock, and cells that
    only read never wait on one another."""
    if complete.is_file():
        return produce()
    with key_lock(root, key, doing):
        return produce()


def cached_finetune(key: str, cache_dir: str, build, load):
    """Return (model, info). `build()` trains and returns a model; `load(dir)` reloads a cached one."""
    root = Path(cache_dir) / "finetuned"
    return once_per_key(root, key, root / key / "meta.json", lambda: _cached_finetune(root, key, build, load))


def _cached_finetune(root: Path, key: str, build, load):
    entry = root / key
    if (entry / "meta.json").is_file():
        meta = json.loads((entry / "meta.json").read_text())
        return load(str(entry)), {**meta, "cache_hit": True, "cache_dir": str(entry)}
    start = time.perf_counter()
    model, tokenizer, extra = build()
    wall = time.perf_counter() - start
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=root))
    os.chmod(scratch, umask_mode(0o777))  # mkdtemp makes 0700; a shared cache must stay readable
    try:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        meta = {"key": key, "wall_time_s": wall, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
        (scratch / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if entry.exists():  # a stale, incomplete entry of an interrupted run (no one else holds the key's lock)
            shutil.rmtree(entry)
        scratch.rename(entry)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return model, {**meta, "cache_hit": False, "cache_dir": str(entry)}
