"""Dense forward FLOPs from forward hooks on the modules that do the matmuls.

Counted: every nn.Linear (including torchao-quantized weights, which stay nn.Linear),
torch.ao dynamic-quantized Linear, and the two attention matmuls (QK^T, AV) of BERT-style
self-attention. Hooks see the shapes of the model as it runs, so low-rank factorizations,
removed layers, pruned heads and early exits are reflected without special cases. Zeros
in unstructured-sparse weights are still counted (dense FLOPs).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any, Iterable, Optional

import torch
from torch import nn

NOTE = "FLOPs = 2 x MACs; embeddings, LayerNorm, softmax, GELU excluded; dense (zeros counted)"


@functools.lru_cache(maxsize=None)
def _dynamic_quantized_linear_types() -> tuple[type, ...]:
    try:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        return (DynamicLinear,)
    except ImportError:
        return ()


def _linear_kind(module: nn.Module) -> str:
    if isinstance(module, _dynamic_quantized_linear_types()):
        return "DynamicQuantizedLinear"  # its class is also called "Linear"
    return type(module).__name__


def _is_self_attention(module: nn.Module) -> bool:
    # BertSelfAttention, RobertaSelfAttention, DistilBertSelfAttention, MultiHeadSelfAttention, ...
    return type(module).__name__.endswith("SelfAttention") and _inner_dims(module) is not None


def _heads_and_head_size(module: nn.Module) -> Optional[tuple[int, int]]:
    heads = getattr(module, "num_attention_heads", None) or getattr(module, "n_heads", None)
    head_size = getattr(module, "attention_head_size", None)
    if head_size is None and heads and getattr(module, "dim", None):
        head_size = module.dim // heads
    if heads and head_size:
        return int(heads), int(head_size)
    return None


def _out_features(module: nn.Module, names: tuple[str, ...]) -> Optional[int]:
    for name in names:
        out = getattr(getattr(module, name, None), "out_features", None)
        if isinstance(out, int):
            return out
    return None


def _inner_dims(module: nn.Module) -> Optional[tuple[int, int]]:
    """(query/key width, value width) = heads x head_size, read at run time.

    The projection's out_features is preferred because it is what the matmul really sees
    even if a pruning method forgot to update num_attention_heads; the attributes are the
    fallback when the projection is no longer a single Linear (e.g. a low-rank pair).
    """
    dims = _heads_and_head_size(module)
    from_attrs = dims[0] * dims[1] if dims else None
    qk = _out_features(module, ("query", "q_lin")) or from_attrs
    v = _out_features(module, ("value", "v_lin")) or from_attrs
    return (qk, v) if qk and v else None


def _hidden_states(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in ("hidden_states", "query"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    return None


class _Counter:
    def __init__(self):
        self.macs: dict[str, int] = defaultdict(int)

    def linear(self, module: nn.Module, _args: tuple, output: Any) -> None:
        # Rows from the output: the input may have been passed as a keyword.
        if isinstance(output, torch.Tensor) and output.numel():
            rows = output.numel() // module.out_features
            self.macs[_linear_kind(module)] += rows * module.in_features * module.out_features

    def attention(self, module: nn.Module, args: tuple, kwargs: dict, _output: Any) -> None:
        hidden = _hidden_states(args, kwargs)
        dims = _inner_dims(module)
        if hidden is None or dims is None or hidden.dim() < 2:
            return
        qk_width, v_width = dims
        seq = hidden.shape[-2]
        batch = hidden.numel() // (seq * hidden.shape[-1])
        # QK^T: (n x d) @ (d x n) per head; AV: (n x n) @ (n x d) per head.
        self.macs["attention_matmul"] += batch * seq * seq * (qk_width + v_width)


def _batch_and_seq(inputs: dict) -> tuple[int, Optional[int]]:
    for key in ("input_ids", "inputs_embeds", "attention_mask"):
        value = inputs.get(key)
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            return int(value.shape[0]), int(value.shape[1])
    first = next(v for v in inputs.values() if isinstance(v, torch.Tensor))
    return int(first.shape[0]), (int(first.shape[1]) if first.dim() > 1 else None)


def count_flops(model: nn.Module, inputs: dict) -> dict:
    """FLOPs of one forward pass on `inputs`, per sample. Pass the eager (uncompiled) model."""
    counter = _Counter()
    linear_types = (nn.Linear, *_dynamic_quantized_linear_types())
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, linear_types):
                handles.append(module.register_forward_hook(counter.linear))
            elif _is_self_attention(module):
                handles.append(module.register_forward_hook(counter.attention, with_kwargs=True))
        with torch.inference_mode():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    batch, seq_len = _batch_and_seq(inputs)
    macs = sum(counter.macs.values())
    return {
        "flops_per_sample": 2 * macs / batch,
        "macs_per_sample": macs / batch,
        "by_module_type": {name: 2 * value / batch for name, value in sorted(counter.macs.items())},
        "batch_size": batch,
        "seq_len": seq_len,
        "note": NOTE,
    }


def average_flops(model: nn.Module, batches: Iterable[dict]) -> float:
    """Per-sample FLOPs averaged over real batches (weighted by batch size), for methods whose
    cost depends on the input (early exit, real sequence lengths)."""
    total, samples = 0.0, 0
    for batch in batches:
        result = count_flops(model, batch)
        total += result["flops_per_sample"] * result["batch_size"]
        samples += result["batch_size"]
    if samples == 0:
        raise ValueError("average_flops needs at least one batch")
    return total / samples
