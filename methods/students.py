"""Distillation students, built from config (`method.student`):

    subset      a deep copy of the teacher keeping `student_layers` (default every other layer,
                counted from the top so the last layer stays), initialised from the teacher
    narrow      the teacher's config with `student_config` overrides (e.g. hidden_size, layers),
                randomly initialised (embeddings copied from the teacher when the width matches)
    checkpoint  a pretrained directory (`student_path`, e.g. a TinyBERT/MiniLM general checkpoint)
                sharing the teacher's vocabulary; Hub ids only work online
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from harness.errors import ConfigError, UnsupportedError, check
from methods.anatomy import encoder_layers
from methods.artifacts import STRUCTURE_PREFIX
from methods.surgery import keep_layers

STUDENTS = ("subset", "narrow", "checkpoint")


def student_layer_ids(num_layers: int, spec) -> list[int]:
    """0-based teacher layers the subset student keeps.

    "every_other": L-1, L-3, ... (the last layer stays, so PKD-skip maps student j to teacher 2j);
    an int n: n layers spread evenly, ending at the last; a list: those layers.
    """
    if spec == "every_other":
        return sorted(range(num_layers - 1, -1, -2))
    if isinstance(spec, int) and not isinstance(spec, bool):
        check(1 <= spec <= num_layers, "method.student_layers", f"must be between 1 and {num_layers}, got {spec}")
        return sorted({int(round((j + 1) * num_layers / spec)) - 1 for j in range(spec)})
    if isinstance(spec, (list, tuple)):
        ids = sorted({int(i) for i in spec})
        check(ids and all(0 <= i < num_layers for i in ids), "method.student_layers", f"layer ids must be in [0, {num_layers}), got {list(spec)}")
        return ids
    raise ConfigError("method.student_layers", f"unknown value {spec!r}", "every_other, an int, or a list of 0-based layer ids")


def build_student(cfg, teacher: nn.Module, ctx) -> tuple[nn.Module, dict]:
    """The student model and a description of it for the record."""
    if cfg.student == "subset":
        student = copy.deepcopy(teacher)
        kept = student_layer_ids(len(encoder_layers(student)), cfg.student_layers)
        keep_layers(student, kept)
        return student.train(), {"student": "subset", "kept_layers": kept}
    if cfg.student == "narrow":
        config = copy.deepcopy(teacher.config)
        for key in [k for k in vars(config) if k.startswith(STRUCTURE_PREFIX)]:
            delattr(config, key)  # a fresh, uniform architecture: no structural record applies
        for key, value in (cfg.student_config or {}).items():
            check(hasattr(config, key), f"method.student_config.{key}", f"is not a field of {type(config).__name__}")
            setattr(config, key, value)
        torch.manual_seed(ctx.seed)
        student = type(teacher)(config)
        copied = False
        embeddings = getattr(teacher.base_model, "embeddings", None)
        if embeddings is not None and config.hidden_size == teacher.config.hidden_size:
            student.base_model.embeddings.load_state_dict(embeddings.state_dict())
            copied = True
        return student.train(), {"student": "narrow", "student_config": dict(cfg.student_config or {}), "embeddings_from_teacher": copied}
    from harness.models import head_class, head_kwargs

    try:
        student = head_class(ctx.task.config).from_pretrained(cfg.student_path, trust_remote_code=False, use_safetensors=True, **head_kwargs(ctx.task.config))
    except OSError as err:
        raise UnsupportedError(f"student checkpoint {cfg.student_path!r} is not available here (offline?): {str(err).splitlines()[0]}") from None
    vocab = getattr(teacher.config, "vocab_size", None)
    check(student.config.vocab_size == vocab, "method.student_path", f"the student's vocabulary ({student.config.vocab_size}) differs from the teacher's ({vocab}); KD feeds both the same token ids")
    return student.train(), {"student": "checkpoint", "student_path": cfg.student_path}
