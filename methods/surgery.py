"""Structural surgery on encoder layers: keep some heads, FFN neurons or whole layers.

transformers 5 removed `prune_heads` and `head_mask`, so the surgery is ours: slice the Linear
layers, update the attention module's head count, and record every per-layer shape in
`model.config` (`compbench_layer_shapes`). The structure registered below tells
`methods.artifacts.build_skeleton` how to rebuild those shapes before loading weights, which makes
save -> reload exact, and tells `keep_layers` how each per-layer record follows dropped layers.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.errors import check
from methods.anatomy import encoder_layers, layer_parts, layer_shapes
from methods.artifacts import per_layer, register_structure, renumber_layers

SHAPES_KEY = "compbench_layer_shapes"  # config field: [{"heads": int, "intermediate_size": int}, ...]
KEPT_HEADS_KEY = "compbench_kept_heads"  # provenance only: original head ids kept per layer
KEPT_LAYERS_KEY = "compbench_kept_layers"  # provenance only: original layer ids kept


def record_shapes(model) -> None:
    setattr(model.config, SHAPES_KEY, layer_shapes(model))


def plain_linear(weight: torch.Tensor, bias) -> nn.Linear:
    """A plain nn.Linear holding copies of `weight` (out x in) and `bias` (or None), same device and dtype."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def _sliced_linear(linear: nn.Linear, rows=None, cols=None) -> nn.Linear:
    """A new Linear holding only the given output rows / input columns (None: keep all)."""
    weight = linear.weight.detach()
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    bias = None if linear.bias is None else (linear.bias.detach() if rows is None else linear.bias.detach()[rows])
    return plain_linear(weight, bias).train(linear.training)


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
    """Keep only the encoder layers `kept` (original ids); every registered per-layer record follows them."""
    layers = encoder_layers(model)
    kept = sorted(kept)
    path = next(n for n, m in model.named_modules() if m is layers)
    model.get_submodule(path.rpartition(".")[0]).layer = nn.ModuleList([layers[i] for i in kept])
    model.config.num_hidden_layers = len(kept)
    if getattr(model.config, KEPT_LAYERS_KEY, None) is None:
        setattr(model.config, KEPT_LAYERS_KEY, list(range(len(layers))))
    renumber_layers(model.config, kept, path)


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


register_structure(SHAPES_KEY, __name__, rebuild=resize_to_shapes, renumber=per_layer, order=20)
register_structure(KEPT_HEADS_KEY, __name__, renumber=per_layer)
register_structure(KEPT_LAYERS_KEY, __name__, renumber=per_layer)
