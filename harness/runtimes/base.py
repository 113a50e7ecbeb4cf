"""What every runtime shares: the converted model behind the usual call, its latency callable, and the
check of its outputs against the PyTorch model it was made from."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import nn

from harness.config import RuntimeConfig


class RuntimeOutputs(dict):
    """Named outputs as torch tensors, read as out["logits"] or out.logits, like a transformers ModelOutput."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class RuntimeModel(nn.Module):
    """A converted artifact behind `model(**inputs)`, so evaluation runs it like any PyTorch model.

    Subclasses implement `run_feed(feed) -> list[np.ndarray]` (the raw runtime call, what latency
    times). The artifact's files stay in `work_dir`, which lives as long as this object.
    """

    runtime: ClassVar[str] = "?"

    def __init__(self, input_names: list[str], output_names: list[str], files: list[Path], work_dir: Any, reference: nn.Module):
        super().__init__()
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.files = [Path(f) for f in files]
        self._work_dir = work_dir  # a TemporaryDirectory: removed with this object
        # The PyTorch model the artifact came from, outside the module tree (state_dict stays empty);
        # FLOPs are counted on it, since a runtime graph has no FLOP counter.
        self.__dict__["reference"] = reference

    def feed(self, batch: dict) -> dict[str, np.ndarray]:
        """The runtime's inputs: the graph's input names only, as contiguous int64 arrays."""
        missing = [k for k in self.input_names if k not in batch]
        if missing:
            raise TypeError(f"{self.runtime} model needs inputs {self.input_names}, missing {missing}")
        return {k: np.ascontiguousarray(_numpy(batch[k]), dtype=np.int64) for k in self.input_names}

    def run_feed(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def forward(self, **inputs) -> RuntimeOutputs:
        outputs = self.run_feed(self.feed(inputs))
        return RuntimeOutputs({name: torch.from_numpy(np.array(value, copy=True)) for name, value in zip(self.output_names, outputs)})

    def latency_run(self) -> "FeedRun":
        return FeedRun(self)

    def artifact_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def artifact_digest(self) -> str:
        """sha256 over the artifact's files: proves the timed artifact is the scored one."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()[:16]


class FeedRun:
    """`run(batch)` for harness.measure: the numpy feed of every batch handed to `bind` is made there,
    outside the timed loop; a batch it has not seen is converted on the fly (a few microseconds)."""

    def __init__(self, model: RuntimeModel):
        self.model = model
        self._feeds: dict[int, tuple[dict, dict]] = {}  # id(batch) -> (batch, feed); holding the batch keeps its id unique

    def bind(self, batches: list[dict]) -> "FeedRun":
        for batch in batches:
            self._feeds[id(batch)] = (batch, self.model.feed(batch))
        return self

    def __call__(self, batch: dict) -> list[np.ndarray]:
        entry = self._feeds.get(id(batch))
        feed = entry[1] if entry is not None and entry[0] is batch else self.model.feed(batch)
        return self.model.run_feed(feed)


class Runtime:
    """Converts the method's model into this runtime's artifact (see harness/runtimes/__init__.py)."""

    name: ClassVar[str] = "?"

    def __init__(self, config: RuntimeConfig, threads: dict):
        self.config = config
        self.intra_op_threads = int(threads["intra_op"])
        self.inter_op_threads = int(threads.get("inter_op") or 1)

    def prepare(self, model: nn.Module, quantization, example: dict, output_names: list[str], work_dir) -> tuple[RuntimeModel, dict]:
        """(converted model, the record's `runtime` section without the output check)."""
        raise NotImplementedError


def output_difference(reference: nn.Module, converted: RuntimeModel, batches: list[dict], reference_label: str) -> dict:
    """Largest and mean |difference| of every output against `reference` on real eval batches, plus how
    often the predicted class agrees (classification outputs only)."""
    from harness.tasks.evaluation import _pick_outputs

    worst = {name: 0.0 for name in converted.output_names}
    total_abs, count, agree, rows = 0.0, 0, 0, 0
    was_training = reference.training
    reference.eval()
    with torch.inference_mode():
        for batch in batches:
            expected = _pick_outputs(reference(**{k: batch[k] for k in converted.input_names}), tuple(converted.output_names))
            got = converted.run_feed(converted.feed(batch))
            for name, want, have in zip(converted.output_names, expected, got):
                want = want.detach().float().cpu().numpy()
                delta = np.abs(want - np.asarray(have, dtype=np.float32))
                worst[name] = max(worst[name], float(delta.max()))
                total_abs += float(delta.sum())
                count += delta.size
                if name == "logits" and want.ndim == 2 and want.shape[1] > 1:
                    agree += int((want.argmax(-1) == np.asarray(have).argmax(-1)).sum())
                    rows += want.shape[0]
    reference.train(was_training)
    return {
        "reference": reference_label,
        "examples": sum(len(b["input_ids"]) for b in batches),
        "max_abs_diff": max(worst.values()),
        "max_abs_diff_by_output": worst,
        "mean_abs_diff": total_abs / count if count else None,
        "prediction_agreement": agree / rows if rows else None,
    }


def embedding_bytes(named_sizes, marker: str = "embeddings.") -> int:
    """Bytes of the weights whose names mark them as embeddings (as harness.measure.size counts them)."""
    return sum(size for name, size in named_sizes if marker in name)


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def head_modules(model: nn.Module) -> list[str]:
    """The task head's top-level modules (classifier, qa_outputs): quantizers keep them in float, as the
    PyTorch int8 methods do."""
    prefix: Optional[str] = getattr(model, "base_model_prefix", None)
    return [name for name, _ in model.named_children() if name != prefix]
