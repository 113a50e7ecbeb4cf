"""Knowledge distillation methods (logits, hidden states, attention).

The teacher is the fine-tuned baseline (`ctx.teacher`), frozen and in eval mode; the student is
built from config (methods/students.py); the losses are in methods/kd_losses.py, the Trainer in
methods/kd_trainer.py and the cached training shared with other training methods in
methods/training.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from harness.errors import check
from methods.anatomy import encoder_layers
from methods.artifacts import load_float_model
from methods.base import ALL_RUNTIMES, Method, Reference
from methods.kd_losses import ATTENTION_LOSSES, HIDDEN_TARGETS, LAYER_MAPPINGS, DistillLoss
from methods.kd_trainer import train_with_distillation
from methods.students import STUDENTS, build_student
from methods.training import TrainingMethodConfig, cached_training, check_distillation
from methods.registry import register_method


@dataclass
class KdLogitsConfig(TrainingMethodConfig):
    _target_: str = "methods.distillation.KdLogits"
    name: str = "kd_logits"
    alpha: float = 0.5  # weight of the soft (teacher) loss; 1 - alpha on the hard-label CE
    temperature: float = 2.0
    student: str = "subset"  # subset | narrow | checkpoint
    student_layers: Any = "every_other"  # subset: "every_other", an int, or a list of 0-based teacher layers
    student_config: dict = field(default_factory=dict)  # narrow: overrides of the teacher's config
    student_path: Optional[str] = None  # checkpoint: local directory (or Hub id, online only)
    learning_rate: Optional[float] = 5.0e-5

    def __post_init__(self):
        super().__post_init__()
        check_distillation(self)
        check(self.student in STUDENTS, "method.student", f"unknown student {self.student!r}", STUDENTS)
        if self.student == "checkpoint":
            check(bool(self.student_path), "method.student_path", "give the pretrained student's directory (student=checkpoint)")
        if self.student == "narrow":
            check(bool(self.student_config), "method.student_config", "give the overrides of the teacher's config, e.g. {hidden_size: 256, num_hidden_layers: 4, intermediate_size: 1024, num_attention_heads: 4}")
        if self.student == "subset" and isinstance(self.student_layers, str):
            check(self.student_layers == "every_other", "method.student_layers", f"unknown value {self.student_layers!r}", "every_other, an int, or a list of 0-based layer ids")


@dataclass
class KdHiddenConfig(KdLogitsConfig):
    _target_: str = "methods.distillation.KdHidden"
    name: str = "kd_hidden"
    beta: float = 100.0  # weight of the hidden-state loss: PKD searched {10, 100, 500, 1000}; at 1.0 it barely acts
    layer_mapping: str = "skip"  # skip | last (PKD)
    hidden_target: str = "cls"  # cls: normalised [CLS] states (PKD); all: MSE on every token (TinyBERT)

    def __post_init__(self):
        super().__post_init__()
        check(self.beta >= 0, "method.beta", f"must be >= 0, got {self.beta}")
        check(self.layer_mapping in LAYER_MAPPINGS, "method.layer_mapping", f"unknown mapping {self.layer_mapping!r}", LAYER_MAPPINGS)
        check(self.hidden_target in HIDDEN_TARGETS, "method.hidden_target", f"unknown target {self.hidden_target!r}", HIDDEN_TARGETS)


@dataclass
class KdAttentionConfig(KdHiddenConfig):
    _target_: str = "methods.distillation.KdAttention"
    name: str = "kd_attention"
    beta: float = 1.0  # TinyBERT weighs its hidden-state (all tokens, unnormalised MSE) and attention losses equally
    gamma: float = 1.0  # weight of the attention loss
    attention_loss: str = "tinybert"  # tinybert: MSE on mapped layers' scores; minilm: last-layer KL on attention + values
    relation_heads: Optional[int] = None  # minilm: relation heads (null: the teacher's head count)
    hidden_target: str = "all"  # TinyBERT's hidden loss covers every token

    def __post_init__(self):
        super().__post_init__()
        check(self.gamma >= 0, "method.gamma", f"must be >= 0, got {self.gamma}")
        check(self.attention_loss in ATTENTION_LOSSES, "method.attention_loss", f"unknown loss {self.attention_loss!r}", ATTENTION_LOSSES)
        check(self.relation_heads is None or self.relation_heads >= 1, "method.relation_heads", f"must be >= 1 or null, got {self.relation_heads}")


@register_method("kd_logits")
class KdLogits(Method):
    """Distil the fine-tuned baseline into a student built from config."""

    config_class = KdLogitsConfig
    abbreviation = "kd"
    reference = Reference(
        paper='Hinton et al. 2015; task-specific distillation as in Tang et al. 2019 and PKD (Sun et al. 2019)',
        recipe='student trained on the task with soft teacher logits (T, alpha) plus the hard labels',
        changes='task-only distillation from the 6-layer fine-tuned model, 2,000 examples x 1 epoch on CPU; not comparable with DistilBERT/TinyBERT/MiniLM, which distil during pre-training',
        comparable_to_published=False,
    )
    category = "KD from Output Logits"
    needs = "training"
    runtimes = ALL_RUNTIMES  # the student is a float model of the teacher's class: it exports to every runtime

    def distill_loss(self, student, teacher, ctx) -> DistillLoss:
        cfg = self.config
        return DistillLoss(alpha=cfg.alpha, temperature=cfg.temperature, beta=getattr(cfg, "beta", 0.0), gamma=getattr(cfg, "gamma", 0.0),
                           layer_map=getattr(cfg, "layer_mapping", "skip"), hidden_target=getattr(cfg, "hidden_target", "cls"),
                           attention_loss=getattr(cfg, "attention_loss", "tinybert"), relation_heads=getattr(cfg, "relation_heads", None),
                           regression=ctx.task.config.is_regression, student=student, teacher=teacher)

    def apply(self, model, ctx):
        teacher = ctx.teacher if ctx.teacher is not None else model
        torch.manual_seed(ctx.seed)
        student, description = build_student(self.config, model, ctx)
        distill = self.distill_loss(student, teacher, ctx)  # validates head counts / widths before training
        self.info.update(description)

        def build():
            trained, losses = train_with_distillation(self, ctx, student, distill, teacher=teacher)
            return trained, {"losses": losses}

        trained = cached_training(self, ctx, model, build, lambda d: load_float_model(d, student), teacher=teacher)
        self.info.update(student_layers=len(encoder_layers(trained)), student_hidden_size=trained.config.hidden_size,
                         teacher_layers=len(encoder_layers(teacher)), losses=self.info["training"].get("losses"))
        return trained.eval()


@register_method("kd_hidden")
class KdHidden(KdLogits):
    config_class = KdHiddenConfig
    abbreviation = "kdh"
    reference = Reference(
        paper='Sun et al. 2019, patient knowledge distillation (PKD)',
        recipe='logits + beta x normalised [CLS] hidden-state loss over skipped layers; beta in {10, 100, 500, 1000}, T in {5, 10, 20}, alpha in {0.2, 0.5, 0.7}, 4 epochs',
        changes='task-only; beta 100 from PKD grid without a search; 2,000 examples x 1 epoch on CPU',
        comparable_to_published=False,
    )
    category = "Multiple KD combined"  # logits + hidden states (PKD, DistilBERT's family in the survey)


@register_method("kd_attention")
class KdAttention(KdLogits):
    config_class = KdAttentionConfig
    abbreviation = "kda"
    reference = Reference(
        paper='Jiao et al. 2020, TinyBERT (task-specific stage)',
        recipe='attention-score and hidden-state distillation, then prediction-layer distillation, with 20x data augmentation, after general distillation during pre-training',
        changes='task-only: no general distillation, no data augmentation; one stage',
        comparable_to_published=False,
    )
    category = "KD from Attn."
