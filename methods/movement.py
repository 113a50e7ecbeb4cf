"""Pruning during fine-tuning: movement pruning (Sanh et al. 2020) and gradual magnitude pruning
(Zhu & Gupta 2017), both on a cubic sparsity schedule.

Every Linear inside the encoder blocks (not embeddings, pooler or task head, as in both papers)
is swapped for a `MaskedLinear` that multiplies its weight by a binary mask:

    movement   mask = TopK(S): S are learned scores, one per weight, updated through a
               straight-through estimator (dL/dS = dL/dW' * W), so S accumulates -W * dL/dW: the
               weights moving away from zero are kept ("hard" movement pruning; the soft
               sigmoid-threshold + L1 variant is not implemented). Scores get their own learning
               rate (`score_learning_rate`, Sanh: 1e-2) and no weight decay.
    magnitude  mask = TopK(|W|), recomputed at every step while the target sparsity rises;
               pruned weights get no gradient (W' = W * M), so they stay pruned.

Sparsity follows s_t = s_f + (s_0 - s_f) (1 - (t - t_0) / (t_1 - t_0))^3 between
t_0 = initial_warmup x steps and t_1 = (1 - final_warmup) x steps; 0 before, s_f after. Masks are
per matrix (local top-k). Optional distillation from the fine-tuned baseline (`distill`, the
DistillationTrainer of methods/distillation.py) is what Sanh et al. report.

At the end the final masks (exactly s_f per matrix) are multiplied into the weights and the
Linears swapped back: the artifact is a plain model with zeros, cached and saved with
save_pretrained. Dense kernels gain nothing; the record's `size.bytes_sparse` (bitmask + non-zeros)
is the figure that shrinks (Method.sparse = True).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError, check
from methods.anatomy import encoder_linear_names
from methods.artifacts import load_float_model
from methods.base import Method, Reference
from methods.kd_losses import DistillLoss
from methods.kd_trainer import train_with_distillation
from methods.surgery import plain_linear
from methods.training import TrainingMethodConfig, cached_training, check_distillation
from methods.registry import register_method

# ----------------------------------------------------------------------------------------------
# Schedule and masks
# ----------------------------------------------------------------------------------------------


def cubic_sparsity(step: int, total_steps: int, final: float, initial_warmup: float, final_warmup: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule, with warmups given as fractions of the total steps."""
    start = initial_warmup * total_steps
    end = (1.0 - final_warmup) * total_steps
    if step < start:
        return initial
    if step >= end or end <= start:
        return final
    progress = (step - start) / (end - start)
    return final + (initial - final) * (1.0 - progress) ** 3


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Exactly round((1 - sparsity) * n) ones, at the largest scores (ties broken by index)."""
    n = scores.numel()
    keep = int(round((1.0 - sparsity) * n))
    mask = torch.zeros(n, dtype=scores.dtype, device=scores.device)
    if keep > 0:
        mask[torch.topk(scores.detach().flatten(), keep, sorted=False).indices] = 1
    return mask.view_as(scores)


def threshold_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Fast per-step mask: scores >= the k-th largest (kthvalue is O(n); ties may keep a few more)."""
    n = scores.numel()
    keep = int(round((1.0 - sparsity) * n))
    if keep >= n:
        return torch.ones_like(scores)
    if keep <= 0:
        return torch.zeros_like(scores)
    flat = scores.detach().flatten()
    threshold = flat.kthvalue(n - keep + 1).values
    return (scores.detach() >= threshold).to(scores.dtype)


class _StraightThroughTopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, sparsity):
        return threshold_mask(scores, sparsity)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None  # straight-through: dL/dS = dL/dM


class MaskedLinear(nn.Module):
    """A Linear (same weight/bias Parameters) whose weight is masked in forward."""
    def __init__(self, linear: nn.Linear, mode: str, score_init: str = "constant"):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.mode = mode
        self.sparsity = 0.0
        if mode == "movement":
            if score_init == "constant":  # Sanh et al.: constant init, the warmup lets the scores move
                scores = torch.zeros_like(linear.weight)
            else:  # magnitude: start from |W| (per-matrix mean 1); movement re-ranks around the threshold
                magnitude = linear.weight.detach().abs()
                scores = magnitude / magnitude.mean().clamp_min(1e-12)
            self.mask_scores = nn.Parameter(scores)
        else:
            self.register_buffer("mask", torch.ones_like(linear.weight), persistent=False)

    def current_mask(self) -> torch.Tensor:
        if self.mode == "movement":
            return _StraightThroughTopK.apply(self.mask_scores, self.sparsity)
        return self.mask

    @torch.no_grad()
    def update_magnitude_mask(self) -> None:
        self.mask.copy_(threshold_mask(self.weight.abs(), self.sparsity))

    def forward(self, x):
        return F.linear(x, self.weight * self.current_mask(), self.bias)

    @torch.no_grad()
    def final_mask(self, sparsity: float) -> torch.Tensor:
        importance = self.mask_scores if self.mode == "movement" else self.weight.abs()
        return topk_mask(importance.float(), sparsity).to(self.weight.dtype)

    @torch.no_grad()
    def to_linear(self, sparsity: float) -> nn.Linear:
        return plain_linear(self.weight * self.final_mask(sparsity), self.bias)


def wrap_linears(model: nn.Module, mode: str, score_init: str = "constant") -> dict[str, MaskedLinear]:
    wrapped = {}
    for name in encoder_linear_names(model):
        module = MaskedLinear(model.get_submodule(name), mode, score_init)
        model.set_submodule(name, module)
        wrapped[name] = module
    return wrapped


def unwrap_linears(model: nn.Module, wrapped: dict[str, MaskedLinear], sparsity: float) -> None:
    for name, module in wrapped.items():
        model.set_submodule(name, module.to_linear(sparsity))


def set_sparsity(wrapped: dict[str, MaskedLinear], sparsity: float) -> None:
    for module in wrapped.values():
        module.sparsity = sparsity
        if module.mode == "magnitude":
            module.update_magnitude_mask()


def sparsity_report(model: nn.Module, names) -> dict:
    zeros = total = 0
    per_matrix = {}
    for name in names:
        weight = model.get_submodule(name).weight
        z = int((weight == 0).sum())
        zeros, total = zeros + z, total + weight.numel()
        per_matrix[name] = round(z / weight.numel(), 4)
    values = list(per_matrix.values())
    return {"sparsity": zeros / total if total else 0.0, "pruned_weights": zeros, "prunable_weights": total,
            "min_matrix_sparsity": min(values) if values else None, "max_matrix_sparsity": max(values) if values else None}


def _schedule_callback(wrapped: dict[str, MaskedLinear], cfg, trace: list):
    from transformers import TrainerCallback

    class SparsitySchedule(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sparsity = cubic_sparsity(state.global_step, state.max_steps, cfg.sparsity, cfg.initial_warmup, cfg.final_warmup)
            set_sparsity(wrapped, sparsity)
            trace.append(sparsity)

    return SparsitySchedule()


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------

# constant: Sanh et al.'s init; scores need thousands of steps to rank weights (on a 63-step CPU slice
# they are still Adam noise and the pruned model falls apart). magnitude: scores start at |W| / mean|W|
# per matrix, so a short run starts from magnitude pruning and movement re-ranks weights near the
# threshold (a hybrid, recorded as info["score_init"]).
SCORE_INITS = ("constant", "magnitude")


@dataclass
class GradualMagnitudeConfig(TrainingMethodConfig):
    _target_: str = "methods.movement.GradualMagnitude"
    name: str = "gradual_magnitude"
    sparsity: float = 0.5  # final share of zeroed weights in every encoder Linear
    initial_warmup: float = 0.1  # share of the steps before pruning starts
    final_warmup: float = 0.2  # share of the steps at the final sparsity (masks fixed)
    distill: bool = False  # add the KD loss from the fine-tuned baseline
    alpha: float = 0.5  # with distill: weight of the soft loss
    temperature: float = 2.0

    def __post_init__(self):
        super().__post_init__()
        check(0 <= self.sparsity < 1, "method.sparsity", f"must be in [0, 1), got {self.sparsity}")
        check(0 <= self.initial_warmup < 1, "method.initial_warmup", f"must be in [0, 1), got {self.initial_warmup}")
        check(0 <= self.final_warmup < 1, "method.final_warmup", f"must be in [0, 1), got {self.final_warmup}")
        check(self.initial_warmup + self.final_warmup < 1, "method.final_warmup", "initial_warmup + final_warmup must leave steps to prune in (< 1)")
        check_distillation(self)


MOVEMENT_STARTS = ("pretrained", "finetuned")


@dataclass
class MovementPruneConfig(GradualMagnitudeConfig):
    _target_: str = "methods.movement.MovementPrune"
    name: str = "movement_prune"
    score_learning_rate: float = 1.0e-2  # Sanh et al.: scores learn much faster than weights
    score_init: str = "constant"  # constant: Sanh et al. (scores start at 0); magnitude: start at |W| (see SCORE_INITS)
    distill: bool = True  # Sanh et al. report movement pruning with distillation
    alpha: float = 0.9
    # Sanh et al.'s regime: fine-prune the pre-trained model (fresh task head) to 3-15 % of weights
    # kept, ~10 epochs. 3 epochs of the whole training split is this machine's budget (MRPC, RTE,
    # STS-B: minutes); finetuned (start from the converged fine-tuned model) is the short-run variant
    # the paper does not study, and its rows are labelled so.
    start: str = "pretrained"
    sparsity: float = 0.9
    train_samples: Optional[int] = None
    epochs: float = 3.0

    def __post_init__(self):
        super().__post_init__()
        check(self.score_learning_rate > 0, "method.score_learning_rate", f"must be > 0, got {self.score_learning_rate}")
        check(self.score_init in SCORE_INITS, "method.score_init", f"unknown init {self.score_init!r}", SCORE_INITS)
        check(self.start in MOVEMENT_STARTS, "method.start", f"unknown start {self.start!r}", MOVEMENT_STARTS)


@register_method("gradual_magnitude")
class GradualMagnitude(Method):
    config_class = GradualMagnitudeConfig
    abbreviation = "gmp"
    reference = Reference(
        paper='Zhu & Gupta 2017, to prune or not to prune',
        recipe='magnitude masks recomputed during training on a cubic sparsity schedule; with or without distillation',
        changes='2,000 examples x 1 epoch on CPU; no distillation unless distill=true',
    )
    category = "Unstructured Pruning"
    needs = "training"
    mode: ClassVar[str] = "magnitude"

    def apply(self, model, ctx):
        import copy


        cfg = self.config
        teacher = ctx.teacher if (cfg.distill and ctx.teacher is not None) else (model if cfg.distill else None)
        names = encoder_linear_names(model)
        start = self._starting_model(model, ctx)

        def build():
            student = copy.deepcopy(start).train()
            wrapped = wrap_linears(student, self.mode, getattr(cfg, "score_init", "constant"))
            trace: list[float] = []
            groups = None
            if self.mode == "movement":
                groups = [{"params": [m.mask_scores for m in wrapped.values()], "lr": cfg.score_learning_rate, "weight_decay": 0.0}]
            distill = DistillLoss(alpha=cfg.alpha if cfg.distill else 0.0, temperature=cfg.temperature, regression=ctx.task.config.is_regression)
            student, losses = train_with_distillation(self, ctx, student, distill, teacher=teacher,
                                                      callbacks=[_schedule_callback(wrapped, cfg, trace)], param_groups=groups)
            unwrap_linears(student, wrapped, cfg.sparsity)
            schedule = {"steps": len(trace), "first": trace[:1], "at_quarter": trace[len(trace) // 4: len(trace) // 4 + 1],
                        "at_half": trace[len(trace) // 2: len(trace) // 2 + 1], "last": trace[-1:]}
            return student.eval(), {"losses": losses, "schedule": schedule}

        pruned = cached_training(self, ctx, start, build, lambda d: load_float_model(d, start), teacher=teacher)
        report = sparsity_report(pruned, names)
        if self.mode == "movement":
            self.info["score_init"] = cfg.score_init
        self.sparse = True
        self.info["started_from"] = "pre-trained checkpoint" if start is not model else "fine-tuned model"
        self.info.update(target_sparsity=cfg.sparsity, scope="per_matrix", pruned_modules=len(names), **report,
                         distilled=teacher is not None, schedule=self.info["training"].get("schedule"), losses=self.info["training"].get("losses"))
        return pruned.eval()

    def _starting_model(self, model, ctx):
        """The fine-tuned model, or for `start: pretrained` the pre-trained checkpoint with a fresh head."""
        if getattr(self.config, "start", "finetuned") == "finetuned":
            return model
        if ctx.pretrained is None:
            raise ConfigError("method.start", "pretrained needs the pre-trained checkpoint, which this context does not provide")
        return ctx.pretrained()


@register_method("movement_prune")
class MovementPrune(GradualMagnitude):
    """Sanh et al. 2020, hard (top-k) movement pruning with a cubic schedule and distillation."""
    config_class = MovementPruneConfig
    abbreviation = "mvp"
    reference = Reference(
        paper='Sanh, Wolf, Rush 2020, movement pruning',
        recipe='fine-prune from the pre-trained model ~10 epochs, scores lr 1e-2, cubic schedule with warm-ups, distillation alpha 0.9 T 2 from the fine-tuned teacher, 3-15 % of weights kept',
        changes='starts from the pre-trained checkpoint as the paper; 3 epochs of the task training set (CPU budget) instead of 10',
    )
    mode: ClassVar[str] = "movement"
