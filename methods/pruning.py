"""Unstructured magnitude pruning and 2:4 semi-structured sparsity of the encoder Linear layers.

Zeros in a dense tensor change neither the dense checkpoint size nor dense-kernel latency: the
record reports sparse storage (bitmask + non-zeros, harness/measure/size.py) when
Method.sparse is set. Only 2:4 on a GPU with sparse tensor cores turns zeros into speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn.utils import prune

from harness.errors import UnsupportedError, check
from methods.anatomy import encoder_linear_names
from methods.artifacts import save_float
from methods.base import ALL_RUNTIMES, RECOVERY_EPOCHS, Method, MethodConfig, Reference, cuda_capability_reason
from methods.registry import register_method

SCOPES = ("global", "per_layer")


def prunable_tensors(model, include_embeddings: bool) -> list[tuple[str, nn.Module]]:
    """(name, module) pairs whose `weight` is pruned: encoder Linears, optionally the embeddings."""
    targets = [(name, model.get_submodule(name)) for name in encoder_linear_names(model)]
    if include_embeddings:
        embeddings = model.base_model.embeddings
        prefix = next(n for n, m in model.named_modules() if m is embeddings)
        targets += [(f"{prefix}.{n}", m) for n, m in embeddings.named_modules() if isinstance(m, nn.Embedding)]
    return targets


def sparsity_of(modules: list[nn.Module]) -> float:
    zeros = sum(int((m.weight == 0).sum()) for m in modules)
    total = sum(m.weight.numel() for m in modules)
    return zeros / total if total else 0.0


@dataclass
class MagnitudeConfig(MethodConfig):
    _target_: str = "methods.pruning.Magnitude"
    name: str = "magnitude"
    recover_epochs: float = RECOVERY_EPOCHS  # every magnitude-pruning paper retrains; 0 = one-shot
    sparsity: float = 0.5  # share of weights set to zero
    scope: str = "global"  # global: one |w| threshold over all pruned tensors; per_layer: same share per tensor
    include_embeddings: bool = False

    def __post_init__(self):
        super().__post_init__()
        check(0 <= self.sparsity < 1, "method.sparsity", f"must be in [0, 1), got {self.sparsity}")
        check(self.scope in SCOPES, "method.scope", f"unknown scope {self.scope!r}", SCOPES)


@register_method("magnitude")
class Magnitude(Method):
    """L1 magnitude pruning (torch.nn.utils.prune), retrained with the masks fixed, then baked into the weights."""

    config_class = MagnitudeConfig
    abbreviation = "mag"
    reference = Reference(
        paper='Chen et al. 2020, the lottery ticket hypothesis for pre-trained BERT networks (after Han et al. 2015)',
        recipe='global L1 magnitude pruning of the encoder Linears, then retraining on the task with the mask fixed',
        changes='retrains for the shared recovery budget (methods.base.RECOVERY_EPOCHS) instead of a full fine-tune; recover_epochs=0 is the one-shot variant',
    )
    runtimes = ALL_RUNTIMES  # a plain float model: it exports to every runtime
    category = "Unstructured Pruning"
    criterion = prune.L1Unstructured  # which weights go: the smallest |w|

    def apply(self, model, ctx):
        cfg = self.config
        targets = prunable_tensors(model, cfg.include_embeddings)
        modules = [m for _, m in targets]
        if cfg.sparsity > 0:
            torch.manual_seed(ctx.seed if ctx is not None else 0)  # the random control draws its mask from the cell's seed
            if cfg.scope == "global":
                prune.global_unstructured([(m, "weight") for m in modules], pruning_method=self.criterion, amount=cfg.sparsity)
            else:
                for m in modules:
                    self.criterion.apply(m, "weight", amount=cfg.sparsity)
        # the prune hooks keep the masks applied during the optional recovery fine-tune
        model = self.recover(model, ctx)
        if cfg.sparsity > 0:
            for m in modules:
                prune.remove(m, "weight")  # bake the mask in: plain Parameters, plain state_dict
        self.sparse = True
        self.info.update(
            target_sparsity=cfg.sparsity,
            achieved_sparsity=sparsity_of(modules),
            pruned_tensors=len(modules),
            pruned_parameters=sum(m.weight.numel() for m in modules),
            latency_note="dense kernels: zeros are still multiplied",
        )
        return model


@dataclass
class RandomPruneConfig(MagnitudeConfig):
    _target_: str = "methods.pruning.RandomPrune"
    name: str = "random_prune"


@register_method("random_prune")
class RandomPrune(Magnitude):
    """The control ShrinkBench asks for: weights removed at random at the same sparsity and with the
    same recovery as `magnitude`, so a curve shows what a criterion adds over chance."""

    config_class = RandomPruneConfig
    abbreviation = "rand"
    reference = Reference(
        paper="Blalock et al. 2020, what is the state of neural network pruning? (ShrinkBench's random-pruning control)",
        recipe="remove weights uniformly at random at the compared method's sparsity, then retrain with the same budget",
        changes="the encoder Linears as magnitude prunes them; the mask is drawn from the cell's seed",
    )
    criterion = prune.RandomUnstructured


def two_of_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest |w| of every 4 consecutive weights along the input dim."""
    rows, cols = weight.shape
    if cols % 4:
        raise ValueError(f"2:4 sparsity needs the input size to be a multiple of 4, got {cols}")
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(rows, cols)


def attach_2of4_masks(model, can_pack=None) -> tuple[list[str], list[str]]:
    """2:4 masks as torch.nn.utils.prune hooks (kept through fine-tuning); call prune.remove after.

    `can_pack(linear)` returns None when the layer may be made 2:4, else why not (the default only
    needs the input size to be a multiple of 4, the 2:4 groups). Returns (masked layer names,
    skipped layer names with the reason).
    """
    masked, skipped = [], []
    for name in encoder_linear_names(model):
        linear = model.get_submodule(name)
        reason = can_pack(linear) if can_pack else (None if linear.in_features % 4 == 0 else f"input size {linear.in_features} is not a multiple of 4")
        if reason:
            skipped.append(f"{name}: {reason}")
            continue
        prune.custom_from_mask(linear, "weight", two_of_four_mask(linear.weight))
        masked.append(name)
    return masked, skipped


def semi_structured_shape_problem(out_features: int, in_features: int, dtype: torch.dtype) -> Optional[str]:
    """Why torch's semi-structured kernels would refuse this weight shape, or None if they take it.

    The limits are read from the subclass torch.sparse.to_sparse_semi_structured picks (cuSPARSELt
    unless CUTLASS is forced): fp16/bf16 need both dims to be multiples of 16 with cuSPARSELt
    (64 columns with CUTLASS), so TinyBERT's 312 is refused. Checked up front so a layer is skipped
    and recorded instead of raising inside the packing.
    """
    from torch.sparse import SparseSemiStructuredTensor, SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    backend = SparseSemiStructuredTensorCUTLASS if SparseSemiStructuredTensor._FORCE_CUTLASS else SparseSemiStructuredTensorCUSPARSELT
    limits = backend._DTYPE_SHAPE_CONSTRAINTS.get(dtype)
    if limits is None:
        return f"{backend.BACKEND} has no {dtype} kernels"
    rows, cols = limits.sparse_min_rows, limits.sparse_min_cols
    if out_features < rows or out_features % rows or in_features < cols or in_features % cols:
        return f"weight {out_features}x{in_features} is not a multiple of {rows}x{cols} ({backend.BACKEND}, {dtype})"
    return None


def apply_2of4_masks(model) -> tuple[list[str], list[str]]:
    """Zero weights in place to a 2:4 pattern; returns (masked layer names, skipped layer names)."""
    masked, skipped = attach_2of4_masks(model)
    for name in masked:
        prune.remove(model.get_submodule(name), "weight")
    return masked, skipped


def torchao_semi_sparse():
    """(sparsify_, the 2:4 weight config class) from torchao's public names.

    torchao.sparsity exports the config as `semi_sparse_weight` (an alias of SemiSparseWeightConfig,
    which lives in torchao.sparsity.sparse_api and is not re-exported).
    """
    from torchao.sparsity import semi_sparse_weight, sparsify_

    return sparsify_, semi_sparse_weight


SPARSE_BACKENDS = ("torchao", "semi_structured")
SPARSE_DTYPES = ("float16", "bfloat16")


@dataclass
class Sparse2of4Config(MethodConfig):
    _target_: str = "methods.pruning.Sparse2of4"
    name: str = "sparse_2of4"
    backend: str = "torchao"  # torchao: sparsify_(semi_sparse_weight()); semi_structured: torch.sparse.to_sparse_semi_structured
    dtype: str = "float16"  # the semi-structured kernels take fp16/bf16

    def __post_init__(self):
        super().__post_init__()
        check(self.backend in SPARSE_BACKENDS, "method.backend", f"unknown backend {self.backend!r}", SPARSE_BACKENDS)
        check(self.dtype in SPARSE_DTYPES, "method.dtype", f"unknown dtype {self.dtype!r}", SPARSE_DTYPES)


@register_method("sparse_2of4")
class Sparse2of4(Method):
    """2:4 semi-structured sparsity on the encoder Linears, run by sparse tensor cores (sm >= 8.0)."""

    config_class = Sparse2of4Config
    abbreviation = "2:4"
    reference = Reference(
        paper='Mishra et al. 2021, accelerating sparse deep neural networks (NVIDIA 2:4)',
        recipe='2:4 magnitude mask on every Linear, then retraining with the mask fixed',
        changes='no retraining by default; needs sparse tensor cores (GPU)',
    )
    category = "Unstructured Pruning"
    devices = ("cuda",)

    def unsupported_reason(self, hardware) -> Optional[str]:
        if hardware.device == "cpu":
            return "unsupported on cpu: no 2:4 sparse kernels on CPU"
        return super().unsupported_reason(hardware) or cuda_capability_reason((8, 0), "2:4 sparse kernels need")

    def apply(self, model, ctx):
        dtype = getattr(torch, self.config.dtype)
        masked, skipped = attach_2of4_masks(model, lambda linear: semi_structured_shape_problem(linear.out_features, linear.in_features, dtype))
        if not masked:
            raise UnsupportedError(f"unsupported: no encoder Linear fits the 2:4 kernels' shapes ({skipped[0] if skipped else 'no encoder Linears'})")
        model = self.recover(model, ctx)  # masks stay applied while fine-tuning
        for name in masked:
            prune.remove(model.get_submodule(name), "weight")
        # measured on the masked dense weights, before the sparse kernels hide the zeros
        achieved = sparsity_of([model.get_submodule(name) for name in masked]) if masked else 0.0
        # the runner moves models after apply; the sparse kernels and their packing need CUDA now
        model = model.eval().to(device=ctx.hardware.device, dtype=dtype)
        if self.config.backend == "torchao":
            sparsify, config = torchao_semi_sparse()
            names = set(masked)
            sparsify(model, config(), filter_fn=lambda module, fqn: fqn in names)
        else:
            for name in masked:
                linear = model.get_submodule(name)
                linear.weight = nn.Parameter(torch.sparse.to_sparse_semi_structured(linear.weight.detach()), requires_grad=False)
        self.sparse = True
        self.info.update(
            backend=self.config.backend,
            dtype=self.config.dtype,
            masked_layers=len(masked),
            skipped_layers=skipped,  # "name: why" (shape outside the kernels' limits); these stay dense
            achieved_sparsity=achieved,
        )
        return model

    def save(self, model, directory: str) -> None:
        # the sparse tensor subclasses do not serialise; the dense 2:4-masked weights do, and
        # re-applying the swap after load_artifact restores the same model
        dense = {}
        for name, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if weight is not None and type(weight.data) is not torch.Tensor:
                dense[name + ".weight"] = weight.data.to_dense() if hasattr(weight.data, "to_dense") else weight.data
        save_float_state(model, directory, dense)


def save_float_state(model, directory: str, overrides: dict) -> None:
    """save_pretrained with some tensors replaced (e.g. sparse subclasses by their dense form)."""
    save_float(model, directory, {k: overrides.get(k, v).contiguous() for k, v in model.state_dict().items()})
