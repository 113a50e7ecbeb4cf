"""Training plumbing shared by every training-based method (distillation, movement, qat, early_exit).

Training runs in `harness.finetune.train` (the one shared Trainer loop, progress bars, seeds) and
goes through `harness.finetune.cached_finetune`: the key hashes the student's starting weights,
the teacher's weights, the method's training config, the task's data fingerprints and the seed,
so the same (teacher, student, config, data) never trains twice. Wall time and energy
(`harness.measure.EnergyMeter`) go into info["training"].
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn

from harness.errors import ConfigError, check
from methods.base import Method, MethodConfig


@dataclass
class TrainingMethodConfig(MethodConfig):
    """Fields every training-based method has. Defaults finish in minutes on 2 CPU cores."""

    train_samples: Optional[int] = 2000  # training examples (a seeded shuffle of the task's train split); null: all
    epochs: float = 1.0
    learning_rate: Optional[float] = None  # null: the task's fine-tuning learning rate
    batch_size: Optional[int] = None  # null: the task's fine-tuning batch size

    # fields that change only inference, never the trained weights (left out of the cache key)
    inference_only: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        super().__post_init__()
        check(self.recover_epochs == 0, "method.recover_epochs", "training methods train already; set method.epochs instead")
        check(self.train_samples is None or self.train_samples >= 1, "method.train_samples", f"must be >= 1 or null, got {self.train_samples}")
        check(self.epochs > 0, "method.epochs", f"must be > 0, got {self.epochs}")
        check(self.learning_rate is None or self.learning_rate > 0, "method.learning_rate", f"must be > 0 or null, got {self.learning_rate}")
        check(self.batch_size is None or self.batch_size >= 1, "method.batch_size", f"must be >= 1 or null, got {self.batch_size}")

    def training_fields(self) -> dict:
        skip = set(self.inference_only) | {"name", "_target_"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the class name and every state-dict entry (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if isinstance(value, torch.Tensor) and not value.is_quantized and type(value) in (torch.Tensor, nn.Parameter):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        else:  # quantized / subclass tensors, packed params: their repr is deterministic enough to key on
            digest.update(repr(value).encode())
    return digest.hexdigest()


def train_subset(ctx, samples: Optional[int]):
    data = ctx.task.train
    if data is None:
        raise ConfigError("method", "this method trains, but the task has no training data loaded")
    if samples is None or samples >= len(data):
        return data
    return data.shuffle(seed=ctx.seed).select(range(samples))


def effective_finetune(ctx, cfg: TrainingMethodConfig):
    """The task's fine-tuning hyperparameters with the method's overrides."""
    base = ctx.task.config.finetune
    overrides = {}
    if cfg.learning_rate is not None:
        overrides["learning_rate"] = cfg.learning_rate
    if cfg.batch_size is not None:
        overrides["batch_size"] = cfg.batch_size
    return replace(base, **overrides)


def run_training(method: Method, ctx, *, student, trainer_class=None, trainer_kwargs=None, data=None):
    """harness.finetune.train on `student` with the method's data slice, epochs and hyperparameters."""
    from harness.finetune import train

    cfg = method.config
    data = train_subset(ctx, cfg.train_samples) if data is None else data
    return train(student, ctx.tokenizer, data, effective_finetune(ctx, cfg), ctx.seed, ctx.hardware.device,
                 epochs=cfg.epochs, trainer_class=trainer_class, budget=method.budget_entry(), **(trainer_kwargs or {}))


def cached_training(method: Method, ctx, model, build: Callable[[], tuple[Any, dict]], load: Callable[[str], Any],
                    teacher=None, extra_key: Optional[dict] = None):
    """Train once per (starting weights, teacher, training config, data, seed); reuse afterwards.

    `build()` returns (trained artifact with save_pretrained, extra info for meta.json);
    `load(directory)` rebuilds it from the cache. Sets method.info["training"].
    """
    from harness import measure
    from harness.finetune import cached_finetune, finetune_key

    cfg = method.config
    data = train_subset(ctx, cfg.train_samples)
    extra = {
        "method": method.__class__.__name__,
        "code_version": method.training_code_version,
        "training_config": cfg.training_fields(),
        "teacher": model_fingerprint(teacher) if teacher is not None else None,
        "train_samples": len(data),
        **(extra_key or {}),
    }
    key = finetune_key(f"weights:{model_fingerprint(model)}", ctx.task.config, effective_finetune(ctx, cfg), ctx.seed, ctx.task.fingerprints, extra=extra)

    def _build():
        with measure.EnergyMeter(ctx.hardware.device) as meter:
            start = time.perf_counter()
            artifact, info = build()
            seconds = time.perf_counter() - start
        meter.samples = int(math.ceil(len(data) * cfg.epochs))
        return artifact, ctx.tokenizer, {"train_samples": len(data), "epochs": cfg.epochs, "train_wall_s": seconds, "energy": meter.result,
                                         "budget": method.spent_budget(), **info}

    artifact, info = cached_finetune(key, ctx.cache_dir, _build, load)
    method.info["training"] = {**info, "key": key}
    return artifact


@contextlib.contextmanager
def frozen(teacher: Optional[nn.Module], device=None):
    """Teacher in eval mode with no gradients (and on `device`) for the block; restored afterwards."""
    if teacher is None:
        yield None
        return
    flags = {p: p.requires_grad for p in teacher.parameters()}
    was_training = teacher.training
    original_device = next(teacher.parameters()).device
    teacher.eval().requires_grad_(False)
    if device is not None:
        teacher.to(device)
    try:
        yield teacher
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        teacher.train(was_training)
        if device is not None:
            teacher.to(original_device)


def training_device(ctx) -> torch.device:
    return torch.device("cuda" if ctx.hardware.device == "cuda" and torch.cuda.is_available() else "cpu")


def check_distillation(config) -> None:
    """Shared validation of the soft-loss weight and temperature of methods that distil."""
    check(0 <= config.alpha <= 1, "method.alpha", f"must be in [0, 1], got {config.alpha}")
    check(config.temperature > 0, "method.temperature", f"must be > 0, got {config.temperature}")
