"""Quantization-aware training: fake-quantized fine-tuning, then a real int8 model.

The fake quantization simulates the int8 backend the model is converted to afterwards, so the
trained weights are robust to exactly the rounding they will see:

    torch_ao  (CPU default) FBGEMM dynamic int8 as produced by methods.quantization's
              `dynamic_int8` (torch.ao quantize_dynamic, default_dynamic_qconfig): weights int8
              symmetric per tensor (MinMaxObserver), activations uint8 asymmetric per tensor,
              chosen per call with the kernel's reduce_range (7-bit, [0, 127]). torchao's QAT
              configs have no per-tensor granularity, so this scheme is a small module here
              (torch.fake_quantize_per_tensor_affine, straight-through gradients).
    torchao   (CUDA default; CPU with torch.compile) torchao QATConfig with
              IntxFakeQuantizeConfig: int8 per-token activations (asymmetric: torchao 0.18 has no
              symmetric per-token fake quant, the converted model's are symmetric) + int8
              symmetric per-channel weights ~ Int8DynamicActivationInt8WeightConfig; after training
              QATConfig(step="convert") swaps the fake-quantized Linears back.

Only the base model's Linears (encoder + pooler) are fake-quantized, the same set dynamic_int8
quantizes; the task head stays float. With `keep_sparsity` (default) weights that are exactly zero
when QAT starts (e.g. after gradual_magnitude in the Prune-OFA recipe) are held at zero after every
optimizer step, so the int8 model keeps the sparsity mask (Zafrir et al.: fine-tune with the mask
locked, then 8-bit QAT).

Caching: the artifact after training is a float model (fake quantizers removed) that
save_pretrained/from_pretrained handle; it is what the cache holds. Conversion to int8 is
deterministic and cheap, so it runs after every load, through `methods.quantization.DynamicInt8`
(the same code and `save` format as the dynamic_int8 method: the size and latency of the record
are those of a real int8 model).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import check
from methods.anatomy import base_linear_names
from methods.artifacts import load_float_model
from methods.base import Method, Reference
from methods.kd_losses import DistillLoss
from methods.kd_trainer import train_with_distillation
from methods.surgery import plain_linear
from methods.training import TrainingMethodConfig, cached_training, check_distillation
from methods.registry import register_method

BACKENDS = ("auto", "torch_ao", "torchao")


# ----------------------------------------------------------------------------------------------
# Fake quantization
# ----------------------------------------------------------------------------------------------


class FbgemmDynamicFakeQuantLinear(nn.Module):
    """Simulates torch.ao's dynamic int8 Linear (FBGEMM): same weight/bias Parameters, fake-quant forward."""

    ACT_QMIN, ACT_QMAX = 0, 127  # quint8 with reduce_range=True, as torch.ao's dynamic Linear calls the kernel
    W_QMIN, W_QMAX = -128, 127

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def _weight(self) -> torch.Tensor:
        # MinMaxObserver(qint8, per_tensor_symmetric): scale = max|w| / ((qmax - qmin) / 2), zero point 0
        amax = self.weight.detach().abs().max().float()
        scale = torch.clamp(amax / ((self.W_QMAX - self.W_QMIN) / 2), min=torch.finfo(torch.float32).eps)
        return torch.fake_quantize_per_tensor_affine(self.weight, scale, torch.zeros((), dtype=torch.int32, device=scale.device), self.W_QMIN, self.W_QMAX)

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.clamp(x.detach().min().float(), max=0.0)
        high = torch.clamp(x.detach().max().float(), min=0.0)
        scale = torch.clamp((high - low) / (self.ACT_QMAX - self.ACT_QMIN), min=torch.finfo(torch.float32).eps)
        zero_point = torch.clamp(torch.round(self.ACT_QMIN - low / scale), self.ACT_QMIN, self.ACT_QMAX).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, self.ACT_QMIN, self.ACT_QMAX)

    def forward(self, x):
        return F.linear(self._activation(x), self._weight(), self.bias)

    @torch.no_grad()
    def to_linear(self) -> nn.Linear:
        return plain_linear(self.weight, self.bias)


def prepare(model: nn.Module, backend: str) -> None:
    """Swap the base model's Linears for fake-quantized ones, in place."""
    names = base_linear_names(model)
    if backend == "torch_ao":
        for name in names:
            model.set_submodule(name, FbgemmDynamicFakeQuantLinear(model.get_submodule(name)))
        return
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    wanted = set(names)
    config = QATConfig(
        # torchao 0.18 fake-quantizes per-token activations asymmetrically only ("Symmetric per token is
        # not supported yet"); the converted model quantizes them symmetrically: a small mismatch
        activation_config=IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False),
        weight_config=IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True),
        step="prepare",
    )
    quantize_(model, config, filter_fn=lambda module, fqn: isinstance(module, nn.Linear) and fqn in wanted)


def remove_fake_quant(model: nn.Module, backend: str) -> None:
    """Back to plain float Linears holding the QAT-trained weights, in place."""
    if backend == "torch_ao":
        for name, module in list(model.named_modules()):
            if isinstance(module, FbgemmDynamicFakeQuantLinear):
                model.set_submodule(name, module.to_linear())
        return
    from torchao.quantization import quantize_
    from torchao.quantization.qat import FakeQuantizedLinear, QATConfig

    quantize_(model, QATConfig(step="convert"), filter_fn=lambda module, fqn: isinstance(module, FakeQuantizedLinear))


def fake_quant_modules(model: nn.Module) -> int:
    from torchao.quantization.qat import FakeQuantizedLinear

    return sum(isinstance(m, (FbgemmDynamicFakeQuantLinear, FakeQuantizedLinear)) for m in model.modules())


def _mask_lock_callback(masks: list[tuple[nn.Parameter, torch.Tensor]]):
    from transformers import TrainerCallback

    class MaskLock(TrainerCallback):
        """Zero the pruned weights again after every optimizer step (weight decay / Adam move them)."""

        def on_step_end(self, args, state, control, **kwargs):
            with torch.no_grad():
                for param, mask in masks:
                    param.mul_(mask.to(param.device))

    return MaskLock()


def zero_masks(model: nn.Module, min_sparsity: float = 0.01) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(weight, keep-mask) of base Linears that are at least `min_sparsity` exactly zero."""
    masks = []
    for name in base_linear_names(model):
        weight = model.get_submodule(name).weight
        keep = weight.detach() != 0
        if (1 - keep.float().mean()) >= min_sparsity:
            masks.append((weight, keep.to(weight.dtype)))
    return masks


# ----------------------------------------------------------------------------------------------
# Method
# ----------------------------------------------------------------------------------------------


@dataclass
class QatInt8Config(TrainingMethodConfig):
    _target_: str = "methods.qat.QatInt8"
    name: str = "qat_int8"
    backend: str = "auto"  # auto: torch_ao on cpu, torchao on cuda; decides the simulated scheme and the converter
    compile: bool = True  # torchao backend only: its int8 kernels come from Inductor (as dynamic_int8)
    keep_sparsity: bool = True  # weights that are exactly zero at the start stay zero
    distill: bool = False  # add the KD loss from the fine-tuned baseline
    alpha: float = 0.5
    temperature: float = 2.0
    learning_rate: Optional[float] = 2.0e-5  # a short fine-tune of an already fine-tuned model

    inference_only: ClassVar[tuple[str, ...]] = ("compile",)

    def __post_init__(self):
        super().__post_init__()
        check(self.backend in BACKENDS, "method.backend", f"unknown backend {self.backend!r}", BACKENDS)
        check_distillation(self)


def resolve_backend(backend: str, device: str) -> str:
    if backend != "auto":
        return backend
    return "torchao" if device == "cuda" else "torch_ao"


@register_method("qat_int8")
class QatInt8(Method):
    config_class = QatInt8Config
    abbreviation = "qat"
    reference = Reference(
        paper='Zafrir et al. 2019, Q8BERT',
        recipe='fine-tune with fake-quantized int8 weights and activations (straight-through estimator), then convert to int8',
        changes='starts from the fine-tuned model; 2,000 examples x 1 epoch on CPU',
    )
    category = "Quantization"
    needs = "training"
    freezes_weights = True  # like the PTQ methods: nothing fine-tunes after it

    def __init__(self, config):
        super().__init__(config)
        self._converter = None

    def unsupported_reason(self, hardware) -> Optional[str]:
        reason = super().unsupported_reason(hardware)
        if reason is None and resolve_backend(self.config.backend, hardware.device) == "torch_ao" and hardware.device != "cpu":
            return f"unsupported on {hardware.device}: the torch_ao int8 backend (FBGEMM) runs on cpu only; use method.backend=torchao"
        return reason

    def apply(self, model, ctx):
        from methods.quantization import DynamicInt8, DynamicInt8Config

        cfg = self.config
        backend = resolve_backend(cfg.backend, ctx.hardware.device)
        teacher = (ctx.teacher if ctx.teacher is not None else model) if cfg.distill else None

        def build():
            student = copy.deepcopy(model).train()
            masks = zero_masks(student) if cfg.keep_sparsity else []
            prepare(student, backend)
            fake = fake_quant_modules(student)
            distill = DistillLoss(alpha=cfg.alpha if cfg.distill else 0.0, temperature=cfg.temperature, regression=ctx.task.config.is_regression)
            callbacks = [_mask_lock_callback(masks)] if masks else None
            student, losses = train_with_distillation(self, ctx, student, distill, teacher=teacher, callbacks=callbacks)
            remove_fake_quant(student, backend)
            return student.eval(), {"losses": losses, "fake_quantized_linears": fake, "locked_sparse_matrices": len(masks)}

        trained = cached_training(self, ctx, model, build, lambda d: load_float_model(d, model), teacher=teacher, extra_key={"backend": backend})
        kept_zeros = sum(int((trained.get_submodule(n).weight == 0).sum()) for n in base_linear_names(trained))
        self._converter = DynamicInt8(DynamicInt8Config(backend=backend, compile=cfg.compile))
        quantized = self._converter.apply(trained, ctx)
        self.info.update(backend=backend, scheme=("int8 weights per tensor + uint8 per-tensor dynamic activations (FBGEMM)" if backend == "torch_ao"
                                                  else "int8 weights per channel + int8 per-token dynamic activations (torchao)"),
                         distilled=teacher is not None, zero_weights_after_training=kept_zeros,
                         losses=self.info["training"].get("losses"), conversion=dict(self._converter.info))
        if kept_zeros and cfg.keep_sparsity and self.info["training"].get("locked_sparse_matrices"):
            self.sparse = True
        return quantized

    def save(self, model, directory: str) -> None:
        self._converter.save(model, directory)
