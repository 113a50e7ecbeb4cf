"""The distillation Trainer: harness.finetune's Trainer loop with DistillLoss as its loss."""

from __future__ import annotations

from typing import Optional

from torch import nn

from methods.base import Method
from methods.kd_losses import DistillLoss
from methods.training import frozen, run_training, training_device

def _distillation_trainer_class():
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        """Trainer whose loss is DistillLoss (teacher frozen, eval mode) plus optional extra terms.

        `extra_loss(model) -> tensor` adds a regulariser; `param_groups` are extra optimizer groups
        ({"params": [...], "lr": ..., "weight_decay": ...}) whose parameters leave the default groups.
        Per-term running losses are kept in `loss_history` for the record.
        """

        def __init__(self, *args, teacher=None, distill: Optional[DistillLoss] = None, extra_loss=None, param_groups=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher = teacher
            self.distill = distill if distill is not None else DistillLoss(alpha=0.0)
            self.distill.to(self.args.device)
            self.extra_loss = extra_loss
            self.param_groups = list(param_groups or [])
            self.loss_history: list[dict] = []
            self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean

        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            special = {id(p) for group in self.param_groups for p in group["params"]}
            if special:
                for group in optimizer.param_groups:
                    group["params"] = [p for p in group["params"] if id(p) not in special]
            for group in self.param_groups:
                optimizer.add_param_group(dict(group))
            projection = [p for p in self.distill.parameters() if p.requires_grad]
            if projection:
                optimizer.add_param_group({"params": projection, "weight_decay": 0.0})
            return optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            terms, outputs = self.distill.components(model, self.teacher, inputs)
            loss = self.distill.total(terms)
            if self.extra_loss is not None:
                extra = self.extra_loss(model)
                if extra is not None:
                    terms["regulariser"] = extra
                    loss = loss + extra
            if model.training:
                self.loss_history.append({"total": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}})
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer


_TRAINER_CLASS = None


def distillation_trainer_class():
    """DistillationTrainer, built on first use so importing this module does not import the Trainer."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        _TRAINER_CLASS = _distillation_trainer_class()
    return _TRAINER_CLASS


def __getattr__(name: str):
    if name == "DistillationTrainer":
        return distillation_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def summarize_losses(history: list[dict], window: int = 10) -> dict:
    """Mean of each term over the first and the last `window` steps: did the loss go down?"""
    if not history:
        return {}
    window = max(1, min(window, len(history) // 2 or 1))
    keys = sorted({k for h in history for k in h})

    def mean(rows, key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    return {"steps": len(history), "first": {k: mean(history[:window], k) for k in keys}, "last": {k: mean(history[-window:], k) for k in keys}}


def train_with_distillation(method: Method, ctx, student, distill: DistillLoss, teacher=None,
                            callbacks=None, extra_loss=None, param_groups=None) -> tuple[nn.Module, dict]:
    """One DistillationTrainer run (teacher frozen for its duration); returns (student, loss summary)."""
    trainer_class = distillation_trainer_class()
    holder = {}

    class _Recording(trainer_class):  # keeps a handle on the trainer for its loss history
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            holder["trainer"] = self

    device = training_device(ctx)
    with frozen(teacher if distill.uses_teacher else None, device):
        student = run_training(method, ctx, student=student, trainer_class=_Recording, trainer_kwargs={
            "teacher": teacher if distill.uses_teacher else None, "distill": distill, "callbacks": callbacks,
            "extra_loss": extra_loss, "param_groups": param_groups,
        })
    student.to("cpu")  # the runner moves the final model to the measured device
    return student, summarize_losses(holder["trainer"].loss_history)
