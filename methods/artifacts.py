"""Saving and reloading compressed models whose shapes or tensor types differ from the stock class.

`from_pretrained` cannot rebuild a model with per-layer head counts, factorised Linears, a pruned
vocabulary or quantized weights. Every structural method therefore records what it changed in
`model.config` (`compbench_*` fields), and `load_artifact` rebuilds that skeleton from the config
before loading the saved tensors:

    model = load_artifact(directory)   # any directory written by a methods.* `save`

Formats, named in `compbench_artifact.json` (absent: a plain `save_pretrained` directory):
    safetensors  save_pretrained output; float weights, possibly non-uniform shapes
    torch_state  config.json + quantized_state.pt (torch.save of a state_dict of quantized tensors,
                 reloaded with weights_only=True onto a skeleton quantized the same way)
    exported     config.json + model.pt2 (torch.export program, for pt2e-quantized graphs)
    <other>      another family's format: the marker's "loader" ("module.function") or, by
                 convention, methods.<format>.load_<format>(directory)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file

ARTIFACT_FILE = "compbench_artifact.json"
LOW_RANK_KEY = "compbench_low_rank"  # config field: {module name: rank}
VOCAB_KEY = "compbench_vocab"  # config field: {"original_vocab_size", "kept_vocab_size", "unk_token_id"}


def build_skeleton(config):
    """A randomly initialised model with every recorded structural change applied."""
    from methods import decomposition, embedding, structured

    architecture = (config.architectures or [None])[0]
    model_class = getattr(transformers, architecture or "", None)
    if model_class is None:
        raise ValueError(f"config.architectures names no transformers class: {config.architectures!r}")
    model = model_class(config)
    if getattr(config, VOCAB_KEY, None):
        embedding.remap_skeleton(model, getattr(config, VOCAB_KEY))
    if getattr(config, structured.SHAPES_KEY, None):
        structured.resize_to_shapes(model, getattr(config, structured.SHAPES_KEY))
    if getattr(config, LOW_RANK_KEY, None):
        decomposition.factorize_skeleton(model, getattr(config, LOW_RANK_KEY))
    return model.eval()


def load_weights(model, state_dict: dict) -> None:
    # assign=True keeps the saved dtype (fp16/bf16 artifacts) and tensor subclasses (torchao)
    missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"artifact does not match its skeleton: missing {missing[:5]}, unexpected {unexpected[:5]}")


def write_marker(directory: str, **fields) -> None:
    Path(directory, ARTIFACT_FILE).write_text(json.dumps(fields, indent=2, sort_keys=True))


def read_marker(directory: str) -> dict:
    path = Path(directory, ARTIFACT_FILE)
    return json.loads(path.read_text()) if path.exists() else {"format": "safetensors"}


def save_float(model, directory: str) -> None:
    model.save_pretrained(directory, safe_serialization=True)
    write_marker(directory, format="safetensors")


def load_artifact(directory: str):
    """Rebuild any artifact written by a compbench method's `save`; returns an eval-mode model."""
    directory = str(directory)
    marker = read_marker(directory)
    if marker["format"] not in ("safetensors", "torch_state", "exported"):
        return _external_loader(marker)(directory)
    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=False)
    if marker["format"] == "exported":
        from methods.quantization import load_exported

        return load_exported(directory, config)
    model = build_skeleton(config)
    if marker["format"] == "safetensors":
        files = sorted(Path(directory).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{directory}: no .safetensors weights")
        state = {}
        for file in files:
            state.update(load_file(str(file)))
    else:  # torch_state: quantized tensors onto a skeleton quantized the same way
        from methods.quantization import quantize_skeleton

        quantize_skeleton(model, marker["quantization"])
        device = marker["quantization"].get("device", "cpu")
        state = torch.load(Path(directory, "quantized_state.pt"), weights_only=True, map_location=device)
    load_weights(model, state)
    return model.eval()


def _external_loader(marker: dict):
    """Formats owned by other method families: the marker's `loader` ("module.function"), or by
    convention methods.<format>.load_<format> (e.g. early_exit -> methods.early_exit.load_early_exit)."""
    import importlib

    target = marker.get("loader") or f"methods.{marker['format']}.load_{marker['format']}"
    module_name, _, function = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError):
        raise ValueError(f"unknown artifact format {marker['format']!r}: no loader {target}") from None
