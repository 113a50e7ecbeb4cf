"""Model size from the state dict, as stored in memory.

Counting rules (what the survey's "size" columns compare):
- every state-dict tensor contributes its storage bytes to bytes_dense; tied tensors
  (same storage) are counted once, as embeddings if any of their names is an embedding;
- torch.ao quantized tensors (qint8 weights of dynamic-quantized Linear, found inside the
  `_packed_params._packed_params` tuple) count 1 byte per element, plus their per-channel
  scales and zero points when per-channel;
- torchao tensor subclasses (Int8Tensor, ...) count the bytes of the plain tensors they
  flatten into (`__tensor_flatten__`: qdata, scale, zero_point...), not the logical dtype;
- params are elements of floating-point or quantized tensors with at least one dimension;
  integer buffers and 0-d scalars (e.g. unused output scale/zero_point of dynamic quantized
  Linear) are metadata: their bytes count, their elements are not params;
- bytes_sparse = per tensor, a 1-bit-per-element mask + the non-zero values at their stored
  width; always reported, the runner decides whether it is the relevant figure;
- 2:4 semi-structured tensors (torch.sparse.SparseSemiStructuredTensor, what sparse_2of4 makes)
  are their own sparse format: bytes_dense is their dense layout (numel x dtype width, the size of
  the dense fp16 file sparse_2of4 saves, so disk_bytes and bytes_dense agree), bytes_sparse the
  packed kept values + metadata the kernels hold, and non-zeros are counted among the kept values
  (dequantize is not dispatched for them, so the generic path would count them as fully dense).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
from torch import nn

EMBEDDING_MARKER = "embeddings."


INT8_DTYPES = (torch.int8, torch.uint8, torch.qint8, torch.quint8)


@dataclass
class _TensorSize:
    params: int  # logical elements (0 for metadata)
    nonzero: int
    bytes_dense: int
    bytes_sparse: int
    int8_weight_params: int = 0  # elements stored as 8-bit integers in a weight matrix (>= 2-D)


def _is_subclass(t: torch.Tensor) -> bool:
    return type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__")


def _inner_tensors(t: torch.Tensor) -> list[torch.Tensor]:
    names, _ = t.__tensor_flatten__()
    out: list[torch.Tensor] = []
    for name in names:
        inner = getattr(t, name)
        out.extend(_inner_tensors(inner) if _is_subclass(inner) else [inner])
    return out


def _storage_key(t: torch.Tensor) -> Optional[tuple]:
    """Identity of the bytes behind `t`, so tied weights are counted once."""
    try:
        if _is_subclass(t):
            return ("subclass",) + tuple(_storage_key(i) for i in _inner_tensors(t))
        if t.numel() == 0 or t.data_ptr() == 0:
            return None
        return (t.device.type, t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)
    except (RuntimeError, NotImplementedError):
        return None


def _semi_structured_values(t: torch.Tensor) -> Optional[torch.Tensor]:
    """The kept values (half the elements) of a 2:4 semi-structured tensor; None for other tensors.

    cuSPARSELt stores values then metadata in one `packed` buffer; CUTLASS keeps only the values in
    `packed` and the metadata in `meta`. A transposed-only tensor holds them in packed_t instead.
    """
    from torch.sparse import SparseSemiStructuredTensor

    if not isinstance(t, SparseSemiStructuredTensor):
        return None
    source = t.packed if t.packed is not None else t.packed_t
    kept = t.numel() // 2
    return source.reshape(-1)[:kept]


def _nonzero(t: torch.Tensor) -> int:
    try:
        if t.is_quantized or _is_subclass(t):
            return int(torch.count_nonzero(t.dequantize()))
        return int(torch.count_nonzero(t))
    except (RuntimeError, NotImplementedError, AttributeError):
        return t.numel()  # cannot inspect: assume dense


def _quantized_metadata_bytes(t: torch.Tensor) -> int:
    if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams):
        return t.q_per_channel_scales().nbytes + t.q_per_channel_zero_points().nbytes
    return 0  # per-tensor scale/zero point are two Python scalars


def _semi_structured_size(t: torch.Tensor, values: torch.Tensor) -> _TensorSize:
    numel = t.numel()
    packed = sum(i.numel() * i.element_size() for i in _inner_tensors(t))
    return _TensorSize(numel, int(torch.count_nonzero(values)), numel * t.element_size(), packed)


def _tensor_size(t: torch.Tensor) -> _TensorSize:
    values = _semi_structured_values(t)
    if values is not None:
        return _semi_structured_size(t, values)
    numel = t.numel()
    is_weight = t.dim() > 0 and (t.is_floating_point() or t.is_complex() or t.is_quantized or _is_subclass(t))
    if _is_subclass(t):
        dense = sum(i.numel() * i.element_size() for i in _inner_tensors(t))
    elif t.is_quantized:
        dense = numel * t.element_size() + _quantized_metadata_bytes(t)
    else:
        dense = numel * t.element_size()
    nonzero = _nonzero(t) if is_weight else numel
    bytes_per_value = dense / numel if numel else 0
    sparse = math.ceil(numel / 8) + math.ceil(nonzero * bytes_per_value)
    return _TensorSize(numel if is_weight else 0, nonzero if is_weight else 0, dense, sparse, _int8_weight_elements(t))


def _int8_weight_elements(t: torch.Tensor) -> int:
    """Elements of `t` held as 8-bit integers in a matrix: a quantized weight (pt2e's folded int8
    constants, torch.ao's qint8, a torchao subclass's qdata). With the float elements this says what
    an artifact should weigh, so a float copy left beside an int8 weight shows up (size tests)."""
    parts = _inner_tensors(t) if _is_subclass(t) else [t]
    return sum(p.numel() for p in parts if p.dim() >= 2 and p.dtype in INT8_DTYPES)


def _iter_tensors(name: str, value: Any) -> Iterator[tuple[str, torch.Tensor]]:
    # Dynamic quantized Linear stores (qweight, bias) tuples; dtype entries are skipped.
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _iter_tensors(f"{name}.{i}", item)


def _unique_tensors(model: nn.Module) -> list[tuple[list[str], torch.Tensor]]:
    groups: dict[Any, tuple[list[str], torch.Tensor]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        for name, tensor in _iter_tensors(key, value):
            storage = _storage_key(tensor)
            group_key = storage if storage is not None else ("unique", name)
            if group_key in groups:
                groups[group_key][0].append(name)
            else:
                groups[group_key] = ([name], tensor)
    return list(groups.values())


def _dir_bytes(path: str) -> Optional[int]:
    if not os.path.isdir(path):
        return os.path.getsize(path) if os.path.isfile(path) else None
    total = 0
    for root, _dirs, files in os.walk(path):
        for filename in files:
            full = os.path.join(root, filename)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def _pct(value: int, baseline: Optional[int]) -> Optional[float]:
    return 100.0 * value / baseline if baseline else None


def measure_size(model: nn.Module, baseline_sizes: Optional[dict] = None, artifact_dir: Optional[str] = None) -> dict:
    """SizeSection (harness/record.py) for `model`; percentages are 0-100 of the baseline."""
    totals = {"params": 0, "params_noemb": 0, "nonzero": 0, "dense": 0, "dense_noemb": 0, "sparse": 0, "int8": 0}
    with torch.no_grad():
        for names, tensor in _unique_tensors(model):
            size = _tensor_size(tensor.detach() if not _is_subclass(tensor) else tensor)
            is_embedding = any(EMBEDDING_MARKER in n for n in names)
            totals["params"] += size.params
            totals["nonzero"] += size.nonzero
            totals["dense"] += size.bytes_dense
            totals["sparse"] += size.bytes_sparse
            totals["int8"] += size.int8_weight_params
            if not is_embedding:
                totals["params_noemb"] += size.params
                totals["dense_noemb"] += size.bytes_dense
    base_dense = baseline_sizes.get("bytes_dense") if baseline_sizes else None
    base_noemb = baseline_sizes.get("bytes_without_embeddings") if baseline_sizes else None
    return {
        "params_total": totals["params"],
        "params_without_embeddings": totals["params_noemb"],
        "nonzero_params_total": totals["nonzero"],
        "bytes_dense": totals["dense"],
        "bytes_without_embeddings": totals["dense_noemb"],
        "bytes_sparse": totals["sparse"],
        "int8_weight_params": totals["int8"],
        "disk_bytes": _dir_bytes(artifact_dir) if artifact_dir else None,
        "pct_of_baseline_with_emb": _pct(totals["dense"], base_dense),
        "pct_of_baseline_without_emb": _pct(totals["dense_noemb"], base_noemb),
        "baseline_bytes_dense": base_dense,
        "baseline_bytes_without_embeddings": base_noemb,
    }
