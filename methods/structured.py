"""Structured pruning (attention heads, FFN neurons, whole layers) and the model surgery they share.

transformers 5 removed `prune_heads` and `head_mask`, so the surgery is ours: slice the Linear
layers, update the attention module's head count, and record every per-layer shape in
`model.config` (`compbench_layer_shapes`). `methods.artifacts.build_skeleton` reads that record to
rebuild the same shapes before loading weights, which makes save -> reload exact.

Supports BERT-style encoders (BERT, RoBERTa, ELECTRA, MiniLM: `encoder.layer[i].attention.self...`)
and DistilBERT (`transformer.layer[i].attention.q_lin...`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

from harness.errors import ConfigError, check
from methods.artifacts import LOW_RANK_KEY
from methods.base import ALL_RUNTIMES, Method, MethodConfig, check_calibration

SHAPES_KEY = "compbench_layer_shapes"  # config field: [{"heads": int, "intermediate_size": int}, ...]
KEPT_HEADS_KEY = "compbench_kept_heads"  # provenance only: original head ids kept per layer
KEPT_LAYERS_KEY = "compbench_kept_layers"  # provenance only: original layer ids kept


# ----------------------------------------------------------------------------------------------
# Anatomy: where the parts of an encoder layer live, for each supported family
# ----------------------------------------------------------------------------------------------


@dataclass
class LayerParts:
    attention: nn.Module  # holds the head count attributes
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    out: nn.Linear  # attention output projection (W_O)
    ffn_in: nn.Linear
    ffn_out: nn.Linear
    names: dict  # part -> attribute path inside the layer, for set_submodule

    @property
    def head_size(self) -> int:
        return self.attention.attention_head_size

    @property
    def num_heads(self) -> int:
        return self.query.out_features // self.head_size


_BERT_NAMES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}
_DISTILBERT_NAMES = {
    "query": "attention.q_lin",
    "key": "attention.k_lin",
    "value": "attention.v_lin",
    "out": "attention.out_lin",
    "ffn_in": "ffn.lin1",
    "ffn_out": "ffn.lin2",
}


def encoder_layers(model) -> nn.ModuleList:
    base = model.base_model
    if hasattr(base, "encoder") and hasattr(base.encoder, "layer"):
        return base.encoder.layer
    if hasattr(base, "transformer") and hasattr(base.transformer, "layer"):
        return base.transformer.layer
    raise ConfigError("model", f"{type(model).__name__}: no encoder layers found (supported: BERT-style, DistilBERT)")


def layer_parts(layer: nn.Module) -> LayerParts:
    names = _DISTILBERT_NAMES if hasattr(layer, "ffn") else _BERT_NAMES
    parts = {part: layer.get_submodule(path) for part, path in names.items()}
    for part, module in parts.items():
        if not isinstance(module, nn.Linear):
            raise ConfigError("method", f"structured pruning needs plain Linear layers, {part} is {type(module).__name__}: run low_rank after it")
    attention = layer.get_submodule(names["query"].rpartition(".")[0])
    return LayerParts(attention=attention, names=names, **parts)


def encoder_linear_names(model) -> list[str]:
    """Fully qualified names of the Linear layers inside the encoder blocks (no pooler, no head)."""
    layers = encoder_layers(model)
    prefix = next(name for name, module in model.named_modules() if module is layers)
    return [f"{prefix}.{name}" for name, module in layers.named_modules() if isinstance(module, nn.Linear)]


def base_linear_names(model) -> list[str]:
    """Every Linear of the base model (encoder + pooler); the task head stays out."""
    prefix = model.base_model_prefix + "."
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith(prefix)]


def layer_shapes(model) -> list[dict]:
    shapes = []
    for layer in encoder_layers(model):
        parts = layer_parts(layer)
        shapes.append({"heads": parts.num_heads, "intermediate_size": parts.ffn_in.out_features})
    return shapes


def _record_shapes(model) -> None:
    setattr(model.config, SHAPES_KEY, layer_shapes(model))


# ----------------------------------------------------------------------------------------------
# Surgery
# ----------------------------------------------------------------------------------------------


def _sliced_linear(linear: nn.Linear, rows=None, cols=None) -> nn.Linear:
    """A new Linear holding only the given output rows / input columns (None: keep all)."""
    weight = linear.weight.detach()
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    bias = linear.bias
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias.detach() if rows is None else bias.detach()[rows])
    new.train(linear.training)
    return new


def _head_rows(heads: list[int], head_size: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_size, (h + 1) * head_size) for h in heads])


def _set_head_count(attention: nn.Module, num_heads: int) -> None:
    # the forward passes reshape with -1 heads, so these attributes only need to stay truthful
    if hasattr(attention, "num_attention_heads"):
        attention.num_attention_heads = num_heads
        attention.all_head_size = num_heads * attention.attention_head_size
    if hasattr(attention, "n_heads"):
        attention.n_heads = num_heads
        attention.dim = num_heads * attention.attention_head_size


def keep_heads(layer: nn.Module, heads: list[int]) -> None:
    """Keep only `heads` (original ids, sorted) of this layer's self-attention."""
    parts = layer_parts(layer)
    check(len(heads) >= 1, "method", "a layer must keep at least one attention head")
    rows = _head_rows(sorted(heads), parts.head_size)
    for part in ("query", "key", "value"):
        layer.set_submodule(parts.names[part], _sliced_linear(getattr(parts, part), rows=rows))
    layer.set_submodule(parts.names["out"], _sliced_linear(parts.out, cols=rows))
    _set_head_count(parts.attention, len(heads))


def keep_neurons(layer: nn.Module, neurons: list[int]) -> None:
    """Keep only the given intermediate (FFN) neurons of this layer."""
    parts = layer_parts(layer)
    check(len(neurons) >= 1, "method", "a layer must keep at least one FFN neuron")
    index = torch.tensor(sorted(neurons))
    layer.set_submodule(parts.names["ffn_in"], _sliced_linear(parts.ffn_in, rows=index))
    layer.set_submodule(parts.names["ffn_out"], _sliced_linear(parts.ffn_out, cols=index))


def keep_layers(model, kept: list[int]) -> None:
    """Keep only the encoder layers `kept` (original ids); every per-layer record follows them."""
    layers = encoder_layers(model)
    kept = sorted(kept)
    path = next(n for n, m in model.named_modules() if m is layers)
    model.get_submodule(path.rpartition(".")[0]).layer = nn.ModuleList([layers[i] for i in kept])
    model.config.num_hidden_layers = len(kept)
    for key in (SHAPES_KEY, KEPT_HEADS_KEY):
        per_layer = getattr(model.config, key, None)
        if per_layer is not None:
            setattr(model.config, key, [per_layer[i] for i in kept])
    if getattr(model.config, LOW_RANK_KEY, None):
        setattr(model.config, LOW_RANK_KEY, _renumbered(getattr(model.config, LOW_RANK_KEY), path + ".", kept))
    previous = getattr(model.config, KEPT_LAYERS_KEY, None) or list(range(len(layers)))
    setattr(model.config, KEPT_LAYERS_KEY, [previous[i] for i in kept])


def _renumbered(by_module: dict, prefix: str, kept: list[int]) -> dict:
    """Module-name keys ("<prefix><layer>.rest") after dropping layers: renumbered or removed."""
    new_index = {old: new for new, old in enumerate(kept)}
    renamed = {}
    for name, value in by_module.items():
        if not name.startswith(prefix):
            renamed[name] = value
            continue
        index, _, rest = name[len(prefix) :].partition(".")
        if int(index) in new_index:
            renamed[f"{prefix}{new_index[int(index)]}.{rest}"] = value
    return renamed


def resize_to_shapes(model, shapes: list[dict]) -> None:
    """Give a freshly built model the recorded per-layer shapes (weights are loaded afterwards)."""
    layers = encoder_layers(model)
    check(len(shapes) == len(layers), "model.config", f"{SHAPES_KEY} has {len(shapes)} entries for {len(layers)} layers")
    for layer, shape in zip(layers, shapes):
        parts = layer_parts(layer)
        if shape["heads"] != parts.num_heads:
            keep_heads(layer, list(range(shape["heads"])))
        if shape["intermediate_size"] != parts.ffn_in.out_features:
            keep_neurons(layer, list(range(shape["intermediate_size"])))


# ----------------------------------------------------------------------------------------------
# Importance scores
# ----------------------------------------------------------------------------------------------


def _accumulate_gradient_scores(model, batches, score_fn) -> list[torch.Tensor]:
    """Sum over batches of |score_fn(parts)| per layer, computed right after each backward pass.

    `score_fn` reads W and dL/dW; taking |.| per batch (not once at the end) keeps opposite-sign
    batches from cancelling, the batch-level version of Michel et al.'s E_x|dL/dxi|.
    """
    was_training = model.training
    model.eval()  # no dropout: importance of the deterministic network
    totals = None
    params = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            device = next(model.parameters()).device
            for batch in batches:
                model.zero_grad(set_to_none=True)
                output = model(**{k: v.to(device) for k, v in batch.items()})
                if getattr(output, "loss", None) is None:
                    raise ConfigError("method", "importance scores need calibration batches with labels")
                output.loss.backward()
                scores = [score_fn(layer_parts(layer)).abs().detach() for layer in encoder_layers(model)]
                totals = scores if totals is None else [t + s for t, s in zip(totals, scores)]
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in params.items():
            p.requires_grad_(flag)
        model.train(was_training)
    return totals


def head_scores(parts: LayerParts) -> torch.Tensor:
    """Per head: sum over its input columns of W_O * dL/dW_O, which equals dL/dxi_h for a head gate."""
    product = parts.out.weight * parts.out.weight.grad
    return product.view(product.shape[0], -1, parts.head_size).sum(dim=(0, 2)).float()


def neuron_taylor_scores(parts: LayerParts) -> torch.Tensor:
    """Per intermediate neuron j: sum_i W2[i,j] dL/dW2[i,j] = sum over tokens of a_j * dL/da_j."""
    return (parts.ffn_out.weight * parts.ffn_out.weight.grad).sum(dim=0).float()


def neuron_magnitude_scores(parts: LayerParts) -> torch.Tensor:
    # a neuron's contribution scales with both its input row and its output column
    return (parts.ffn_in.weight.detach().norm(dim=1) * parts.ffn_out.weight.detach().norm(dim=0)).float()


def select_global(scores: list[torch.Tensor], fraction: float, min_keep: int = 1) -> list[list[int]]:
    """Drop the `fraction` lowest-scoring units over all layers, keeping >= min_keep per layer.

    Returns the kept unit ids per layer (sorted).
    """
    total = sum(s.numel() for s in scores)
    to_drop = int(round(fraction * total))
    order = torch.cat(scores).argsort(stable=True).tolist()
    offsets = [0]
    for s in scores:
        offsets.append(offsets[-1] + s.numel())
    dropped = [set() for _ in scores]
    for flat in order:
        if to_drop == 0:
            break
        layer = next(i for i in range(len(scores)) if offsets[i] <= flat < offsets[i + 1])
        if scores[layer].numel() - len(dropped[layer]) <= min_keep:
            continue
        dropped[layer].add(flat - offsets[layer])
        to_drop -= 1
    return [[u for u in range(s.numel()) if u not in d] for s, d in zip(scores, dropped)]


def select_per_layer(scores: list[torch.Tensor], fraction: float, min_keep: int = 1) -> list[list[int]]:
    kept = []
    for s in scores:
        keep = max(min_keep, s.numel() - int(round(fraction * s.numel())))
        kept.append(sorted(s.argsort(descending=True, stable=True)[:keep].tolist()))
    return kept


def l2_normalised(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    # Michel et al. normalise per layer so layers with large gradients do not dominate the global ranking
    return [s / (s.norm() + 1e-12) for s in scores]


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------

SCOPES = ("global", "per_layer")


class RecoverableMethod(Method):
    """A method whose optional recovery fine-tune (recover_epochs > 0) makes it need training data."""

    runtimes = ALL_RUNTIMES  # their result is a plain float model: it exports to every runtime

    def __init__(self, config):
        super().__init__(config)
        if config.recover_epochs > 0:
            self.needs = "training"


@dataclass
class HeadPruneConfig(MethodConfig):
    _target_: str = "methods.structured.HeadPrune"
    name: str = "head_prune"
    fraction: float = 0.3  # share of all heads removed, ranked globally
    calibration_samples: int = 256
    batch_size: int = 16

    def __post_init__(self):
        super().__post_init__()
        check(0 <= self.fraction < 1, "method.fraction", f"must be in [0, 1), got {self.fraction}")
        check_calibration(self)


class HeadPrune(RecoverableMethod):
    """Michel et al. 2019: gradient importance per head, L2-normalised per layer, global pruning."""

    config_class = HeadPruneConfig
    needs: ClassVar[str] = "calibration"

    def apply(self, model, ctx):
        cfg = self.config
        batches = ctx.calibration_batches(cfg.calibration_samples, cfg.batch_size)
        scores = l2_normalised(_accumulate_gradient_scores(model, batches, head_scores))
        kept = select_global(scores, cfg.fraction)
        previous = getattr(model.config, KEPT_HEADS_KEY, None)
        for i, (layer, heads) in enumerate(zip(encoder_layers(model), kept)):
            if len(heads) < layer_parts(layer).num_heads:
                keep_heads(layer, heads)
            if previous is not None:  # map back to original ids when heads were pruned before
                kept[i] = [previous[i][h] for h in heads]
        setattr(model.config, KEPT_HEADS_KEY, kept)
        _record_shapes(model)
        total = sum(s.numel() for s in scores)
        self.info.update(
            kept_heads=kept,
            heads_per_layer=[len(k) for k in kept],
            pruned_heads=total - sum(len(k) for k in kept),
            total_heads=total,
            importance="michel_w_o_grad",
        )
        return self.recover(model, ctx)


@dataclass
class FfnPruneConfig(MethodConfig):
    _target_: str = "methods.structured.FfnPrune"
    name: str = "ffn_prune"
    fraction: float = 0.3  # share of intermediate neurons removed
    scope: str = "global"  # global: ranked over all layers (per-layer L2-normalised); per_layer: same share in each layer
    importance: str = "taylor"  # taylor: |sum a * dL/da| on calibration data; magnitude: ||W1 row|| * ||W2 column||
    calibration_samples: int = 256
    batch_size: int = 16

    def __post_init__(self):
        super().__post_init__()
        check(0 <= self.fraction < 1, "method.fraction", f"must be in [0, 1), got {self.fraction}")
        check(self.scope in SCOPES, "method.scope", f"unknown scope {self.scope!r}", SCOPES)
        check(self.importance in ("taylor", "magnitude"), "method.importance", f"unknown importance {self.importance!r}", ("taylor", "magnitude"))
        check_calibration(self)


class FfnPrune(RecoverableMethod):
    config_class = FfnPruneConfig
    needs: ClassVar[str] = "calibration"

    def apply(self, model, ctx):
        cfg = self.config
        layers = encoder_layers(model)
        if cfg.importance == "taylor":
            batches = ctx.calibration_batches(cfg.calibration_samples, cfg.batch_size)
            scores = _accumulate_gradient_scores(model, batches, neuron_taylor_scores)
        else:
            scores = [neuron_magnitude_scores(layer_parts(layer)) for layer in layers]
        if cfg.scope == "global":
            kept = select_global(l2_normalised(scores), cfg.fraction)
        else:
            kept = select_per_layer(scores, cfg.fraction)
        for layer, neurons in zip(layers, kept):
            if len(neurons) < layer_parts(layer).ffn_in.out_features:
                keep_neurons(layer, neurons)
        _record_shapes(model)
        total = sum(s.numel() for s in scores)
        self.info.update(
            intermediate_sizes=[len(k) for k in kept],
            pruned_neurons=total - sum(len(k) for k in kept),
            total_neurons=total,
        )
        return self.recover(model, ctx)


STRATEGIES = ("top", "bottom", "alternate")


@dataclass
class LayerDropConfig(MethodConfig):
    _target_: str = "methods.structured.LayerDrop"
    name: str = "layer_drop"
    keep_layers: Optional[int] = None  # give exactly one of keep_layers / drop
    drop: Optional[int] = 2
    strategy: str = "top"  # top: drop the last layers; bottom: the first; alternate: every other from the top (Sajjad et al.)

    def __post_init__(self):
        super().__post_init__()
        check((self.keep_layers is None) != (self.drop is None), "method.keep_layers", "give exactly one of method.keep_layers and method.drop (set the other to null)")
        if self.keep_layers is not None:
            check(isinstance(self.keep_layers, int) and self.keep_layers >= 1, "method.keep_layers", f"must be an integer >= 1, got {self.keep_layers}")
        if self.drop is not None:
            check(isinstance(self.drop, int) and self.drop >= 0, "method.drop", f"must be an integer >= 0, got {self.drop}")
        check(self.strategy in STRATEGIES, "method.strategy", f"unknown strategy {self.strategy!r}", STRATEGIES)


def layers_to_keep(num_layers: int, keep: int, strategy: str) -> list[int]:
    drop = num_layers - keep
    if strategy == "top":
        return list(range(keep))
    if strategy == "bottom":
        return list(range(drop, num_layers))
    # alternate: drop L-1, L-3, ... (every other layer from the top); past half, continue from the top
    order = list(range(num_layers - 1, -1, -2)) + list(range(num_layers - 2, -1, -2))
    dropped = set(order[:drop])
    return [i for i in range(num_layers) if i not in dropped]


class LayerDrop(RecoverableMethod):
    """Sajjad et al. 2020 'poor man's BERT': remove whole encoder layers."""

    config_class = LayerDropConfig

    def apply(self, model, ctx):
        cfg = self.config
        num_layers = len(encoder_layers(model))
        keep = cfg.keep_layers if cfg.keep_layers is not None else num_layers - cfg.drop
        field = "method.keep_layers" if cfg.keep_layers is not None else "method.drop"
        value = cfg.keep_layers if cfg.keep_layers is not None else cfg.drop
        check(1 <= keep <= num_layers, field, f"must leave between 1 and {num_layers} of the model's {num_layers} layers, got {value}")
        kept = layers_to_keep(num_layers, keep, cfg.strategy)
        keep_layers(model, kept)
        self.info.update(kept_layers=kept, num_layers_before=num_layers, num_layers_after=len(kept))
        return self.recover(model, ctx)

