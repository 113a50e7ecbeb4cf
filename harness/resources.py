"""A cell's memory, bounded before it runs: an upper estimate of its peak from the model's shape,
the batch sizes and the sequence length, checked against the memory it may use.

The estimate is deliberately simple and errs high: a Python process with torch, transformers and
the datasets loaded (PROCESS_BASE_GIB; ~0.4 GiB measured with MiniLM-L6 loaded), the model's weights
held up to MODEL_COPIES times at once (the fine-tuned baseline, the untouched reference timed beside
the method, a method's working copy or teacher), plus the largest working set of one pass:

- inference (accuracy, latency, memory passes) at the largest of hardware.batch_sizes and the
  evaluation batch: one encoder layer's activations at a time (no autograd graph), i.e. the hidden
  states, Q/K/V and the context (5 x batch x length x hidden), the FFN's intermediate before and
  after its activation (2 x batch x length x intermediate), and the attention scores before and
  after the softmax (2 x batch x heads x length^2), in hardware.dtype;
- training (the baseline fine-tune, recovery or a method's own training) at task.finetune.batch_size:
  every layer's saved activations for the backward pass (TRAINING_SAVED_FACTOR x the inference set,
  per layer, in fp32) plus weights, gradients and AdamW's two moments (4 x the weights).

A cell whose estimate exceeds its limit (memory_limit_gb, default the memory available when it is
planned) is refused with one line naming the field to change; a cell the estimate lets through still
runs under that limit (harness.sweep.memory_watch) and fails alone if it exceeds it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.errors import ConfigError

GIB = 2**30
PROCESS_BASE_GIB = 1.0
MODEL_COPIES = 3
EVAL_BATCH_SIZE = 64  # harness.tasks.evaluation.predict's default batch
DEFAULT_LIMIT_FRACTION = 0.9  # of the memory available: leave the rest to the machine's other users
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Activations a layer keeps for its backward pass, relative to one inference layer's working set in
# fp32: Korthikanti et al. (2022) count 34·s·b·h + 5·a·s²·b bytes per layer at 16 bits, 1.3x our set.
TRAINING_SAVED_FACTOR = 1.5

# Hugging Face config keys by meaning; DistilBERT names its own.
SHAPE_KEYS = {
    "hidden": ("hidden_size", "dim"),
    "layers": ("num_hidden_layers", "n_layers"),
    "heads": ("num_attention_heads", "n_heads"),
    "intermediate": ("intermediate_size", "hidden_dim"),
    "vocab": ("vocab_size",),
}


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    positions: int = 512

    @property
    def parameters(self) -> int:
        """Embeddings, encoder layers (attention, FFN, two LayerNorms) and a pooler: BERT's count."""
        h, i = self.hidden, self.intermediate
        per_layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
        return (self.vocab + self.positions + 2) * h + 2 * h + self.layers * per_layer + h * h + h


@dataclass(frozen=True)
class Estimate:
    peak_bytes: int
    working_bytes: int  # the largest pass's share of the peak (activations, gradients, optimizer state)
    dominant: str  # the config field whose value drives the peak (named when the cell is refused)
    detail: str  # what the peak is made of, for the refusal line


def model_shape(config: dict) -> Optional[Shape]:
    """The encoder's shape from a Hugging Face config dict; None when a dimension is missing."""
    found = {}
    for meaning, keys in SHAPE_KEYS.items():
        value = next((config[k] for k in keys if isinstance(config.get(k), int)), None)
        if value is None:
            return None
        found[meaning] = value
    return Shape(**found, positions=int(config.get("max_position_embeddings") or 512))


def read_model_config(model_cfg, location: str) -> Optional[dict]:
    """config.json of a local or embedded model, or a Hub model already in the local cache (no network),
    with model.architecture's overrides on top; None when nothing is readable."""
    config: dict = {}
    directory = Path(location)
    candidates = [directory / "config.json"] if directory.is_dir() else [_cached_hub_config(location)]
    for path in candidates:
        if path is not None and Path(path).is_file():
            try:
                config = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                config = {}
    config.update(model_cfg.architecture or {})
    return config or None


def _cached_hub_config(hub_id: str) -> Optional[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id: the estimate is skipped, the cell still runs guarded
        return None
    return found if isinstance(found, str) else None


def inference_bytes(shape: Shape, batch: int, length: int, dtype_bytes: int) -> int:
    hidden_work = batch * length * (5 * shape.hidden + 2 * shape.intermediate)
    attention = 2 * batch * shape.heads * length * length
    return (hidden_work + attention) * dtype_bytes


def estimate_peak(cell, shape: Shape, trains: bool) -> Estimate:
    weights = shape.parameters * 4  # loaded in fp32 whatever the method does next
    length = cell.task.max_seq_length
    dtype_bytes = DTYPE_BYTES.get(cell.hardware.dtype, 4)
    largest = max(cell.hardware.batch_sizes)
    inference = inference_bytes(shape, max(largest, EVAL_BATCH_SIZE), length, dtype_bytes)
    inference_field = "hardware.batch_sizes" if largest >= EVAL_BATCH_SIZE else "task.max_seq_length"
    training = 0
    if trains:
        batch = cell.task.finetune.batch_size
        training = shape.layers * TRAINING_SAVED_FACTOR * inference_bytes(shape, batch, length, 4) + 4 * weights
    base = int(PROCESS_BASE_GIB * GIB) + MODEL_COPIES * weights
    if training > inference:
        return Estimate(base + training, training, "task.finetune.batch_size",
                        f"training at batch {cell.task.finetune.batch_size} x {length} tokens: {training / GIB:.1f} GiB")
    return Estimate(base + inference, inference, inference_field,
                    f"inference at batch {max(largest, EVAL_BATCH_SIZE)} x {length} tokens: {inference / GIB:.1f} GiB")


def default_limit_bytes() -> int:
    import psutil

    return int(DEFAULT_LIMIT_FRACTION * psutil.virtual_memory().available)


def limit_source(memory_limit_gb: Optional[float], when: str, sharing: int = 1) -> str:
    """How a cell's limit was set, for the line that names it (`when`: "now", "when the cell started";
    `sharing`: the cells a parallel sweep runs side by side, which split the default)."""
    if memory_limit_gb is not None:
        return "memory_limit_gb"
    shared = f", shared by {sharing} cells running side by side" if sharing > 1 else ""
    return f"{DEFAULT_LIMIT_FRACTION:.0%} of the memory available {when}{shared}; memory_limit_gb sets it"


def limit_bytes(cell, sharing: int = 1) -> int:
    """The memory a cell may use: memory_limit_gb, else DEFAULT_LIMIT_FRACTION of what is available now,
    split evenly between the `sharing` cells a parallel sweep runs at once (harness.sweep.parallel)."""
    if cell.memory_limit_gb is not None:
        return int(cell.memory_limit_gb * GIB)
    return default_limit_bytes() // max(1, sharing)


def device_memory_bytes() -> Optional[int]:
    """The GPU's memory, or None where this process cannot see one (a sweep planned on a login node)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[1])


def check_memory(cell, location: str, trains: bool) -> Optional[Estimate]:
    """Refuse (ConfigError naming the field to change) a cell whose estimated peak exceeds its limit.
    The model's shape must be readable for an estimate; without it the cell runs, guarded at run time.
    On a GPU the weights and activations live in device memory: they are checked against the device's."""
    config = read_model_config(cell.model, location)
    shape = model_shape(config) if config else None
    if shape is None:
        return None
    estimate = estimate_peak(cell, shape, trains)
    if cell.hardware.device == "cuda":
        device_bytes = device_memory_bytes()
        if device_bytes is None:
            return estimate  # checked where the cell runs: its process then sees the GPU
        needed, limit = estimate.peak_bytes - int(PROCESS_BASE_GIB * GIB), int(DEFAULT_LIMIT_FRACTION * device_bytes)
        source = f"{DEFAULT_LIMIT_FRACTION:.0%} of the GPU's memory"
    else:
        needed, limit = estimate.peak_bytes, limit_bytes(cell)
        source = limit_source(cell.memory_limit_gb, "now")
    if needed - estimate.working_bytes > limit:
        raise ConfigError("memory_limit_gb", f"the model alone needs about {math.ceil((needed - estimate.working_bytes) / GIB)} GiB "
                          f"(the process and {MODEL_COPIES} copies of its weights), more than the limit of {limit / GIB:.1f} GiB ({source})")
    if needed > limit:
        raise ConfigError(estimate.dominant, f"this cell would need about {math.ceil(needed / GIB)} GiB "
                          f"({estimate.detail}), more than its limit of {limit / GIB:.1f} GiB ({source}); lower {estimate.dominant}")
    return estimate
