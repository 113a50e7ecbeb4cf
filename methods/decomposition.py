"""Truncated-SVD factorisation of the encoder Linear layers: W (m x n) ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T).

A rank-r pair costs r(m + n) weights instead of mn, so a layer only shrinks (and gets cheaper) when
r < mn / (m + n); layers where the chosen rank would not reduce parameters are left dense and
listed in info["skipped"]. Ranks are recorded in config.compbench_low_rank so that
methods.artifacts.load_artifact rebuilds the factorised modules (the structure registered at the end),
and dropping encoder layers renumbers the recorded module names.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from harness.errors import check
from methods.anatomy import encoder_linear_names
from methods.artifacts import register_structure
from methods.base import ALL_RUNTIMES, RECOVERY_EPOCHS, Method, MethodConfig, Reference, check_exactly_one
from methods.training import check_distillation
from methods.registry import register_method

LOW_RANK_KEY = "compbench_low_rank"  # config field: {module name: rank}


class LowRankLinear(nn.Module):
    """x -> up(down(x)): down is n -> r without bias, up is r -> m with the original bias."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x):
        return self.up(self.down(x))

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, svd=None) -> "LowRankLinear":
        weight = linear.weight.detach()
        u, s, vh = svd if svd is not None else torch.linalg.svd(weight.float(), full_matrices=False)
        root = s[:rank].sqrt()  # split the singular values evenly so both factors have similar scale
        new = cls(linear.in_features, linear.out_features, rank, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            new.down.weight.copy_(root[:, None] * vh[:rank])
            new.up.weight.copy_(u[:, :rank] * root[None, :])
            if linear.bias is not None:
                new.up.bias.copy_(linear.bias.detach())
        return new


def energy_rank(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading singular values keep `energy` of sum(s^2)."""
    kept = (singular_values.double() ** 2).cumsum(0) / (singular_values.double() ** 2).sum()
    return int((kept < energy - 1e-12).sum().item()) + 1


def reduces_parameters(rank: int, out_features: int, in_features: int) -> bool:
    return rank * (out_features + in_features) < out_features * in_features


def factorize_skeleton(model, ranks: dict) -> None:
    """Replace the named Linears by empty LowRankLinear modules of the recorded ranks (for loading)."""
    for name, rank in ranks.items():
        linear = model.get_submodule(name)
        model.set_submodule(name, LowRankLinear(linear.in_features, linear.out_features, int(rank), bias=linear.bias is not None))


@dataclass
class LowRankConfig(MethodConfig):
    _target_: str = "methods.decomposition.LowRank"
    name: str = "low_rank"
    recover_epochs: float = RECOVERY_EPOCHS  # Noach & Goldberg retrain after the SVD; 0 = one-shot
    rank: Optional[int] = 128  # give exactly one of rank / energy (set the other to null)
    energy: Optional[float] = None  # keep this share of sum(s^2) per layer
    # The recovery distils from the un-factorised model, as Noach & Goldberg do: soft logits (alpha,
    # temperature) plus beta x MSE between every layer's hidden states (same depth: layer i <-> i).
    distill: bool = True
    alpha: float = 0.5
    temperature: float = 2.0
    beta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_exactly_one(self, "rank", "energy")
        check_distillation(self)
        check(self.beta >= 0, "method.beta", f"must be >= 0, got {self.beta}")
        if self.rank is not None:
            check(isinstance(self.rank, int) and self.rank >= 1, "method.rank", f"must be an integer >= 1, got {self.rank}")
        if self.energy is not None:
            check(0 < self.energy <= 1, "method.energy", f"must be in (0, 1], got {self.energy}")


@register_method("low_rank")
class LowRank(Method):
    config_class = LowRankConfig
    abbreviation = "svd"
    reference = Reference(
        paper='Noach & Goldberg 2020, compressing pre-trained language models by matrix decomposition',
        recipe='SVD of the encoder weight matrices, then feature-distillation fine-tuning from the original (49.1 % of BERT-base without embeddings at -0.13 average)',
        changes='recovers for the shared recovery budget (methods.base.RECOVERY_EPOCHS) with logit + hidden-state distillation from the un-factorised model; recover_epochs=0 is the one-shot variant',
    )
    runtimes = ALL_RUNTIMES  # a plain float model: it exports to every runtime
    category = "Matrix Decomposition"

    def apply(self, model, ctx):
        cfg = self.config
        # the un-factorised model is the recovery's teacher; apply() factorises `model` in place
        teacher = copy.deepcopy(model).eval() if cfg.recover_epochs > 0 and cfg.distill else None
        ranks, skipped = dict(getattr(model.config, LOW_RANK_KEY, None) or {}), {}
        before = after = 0
        for name in encoder_linear_names(model):
            if any(name.startswith(done + ".") for done in ranks):
                continue  # already factorised (pipeline with two low_rank steps)
            linear = model.get_submodule(name)
            m, n = linear.out_features, linear.in_features
            svd = torch.linalg.svd(linear.weight.detach().float(), full_matrices=False)
            rank = min(cfg.rank, m, n) if cfg.rank is not None else energy_rank(svd[1], cfg.energy)
            if not reduces_parameters(rank, m, n):
                skipped[name] = f"rank {rank} >= mn/(m+n) = {m * n / (m + n):.1f}: no parameter saving"
                continue
            model.set_submodule(name, LowRankLinear.from_linear(linear, rank, svd))
            ranks[name] = rank
            before += m * n
            after += rank * (m + n)
        setattr(model.config, LOW_RANK_KEY, ranks)
        self.info.update(
            ranks=ranks,
            skipped=skipped,
            factorised_layers=len(ranks),
            weights_before=before,
            weights_after=after,
        )
        if teacher is None:
            return self.recover(model, ctx)
        return self._recover_with_distillation(model, teacher, ctx)

    def _recover_with_distillation(self, model, teacher, ctx):
        """The shared recovery budget, trained on the distillation loss from the original model."""
        from methods.kd_losses import DistillLoss
        from methods.kd_trainer import distillation_trainer_class
        from methods.training import frozen, training_device

        cfg = self.config
        distill = DistillLoss(alpha=cfg.alpha, temperature=cfg.temperature, beta=cfg.beta, layer_map="skip",
                              hidden_target="all", regression=ctx.task.config.is_regression, student=model, teacher=teacher)
        with frozen(teacher, training_device(ctx)):
            model = ctx.finetune(model, epochs=cfg.recover_epochs, trainer_class=distillation_trainer_class(),
                                 teacher=teacher, distill=distill, budget=self.budget_entry())
        self.info.update(recovered_epochs=cfg.recover_epochs, recovery="distillation from the un-factorised model "
                         f"(alpha {cfg.alpha}, T {cfg.temperature}, beta {cfg.beta} x hidden-state MSE)")
        return model


def renumber_module_keys(ranks: dict, kept: list[int], layers_path: str) -> dict:
    """Module-name keys ("<layers_path>.<layer>.rest") after dropping layers: renumbered or removed."""
    prefix = layers_path + "."
    new_index = {old: new for new, old in enumerate(kept)}
    renamed = {}
    for name, value in ranks.items():
        if not name.startswith(prefix):
            renamed[name] = value
            continue
        index, _, rest = name[len(prefix) :].partition(".")
        if int(index) in new_index:
            renamed[f"{prefix}{new_index[int(index)]}.{rest}"] = value
    return renamed


register_structure(LOW_RANK_KEY, __name__, rebuild=factorize_skeleton, renumber=renumber_module_keys, order=30)
