"""Saving and reloading compressed models: a registry that method families fill beside their code.

`from_pretrained` cannot rebuild a model with per-layer head counts, factorised Linears, a pruned
vocabulary or quantized weights. Two things make an artifact rebuildable, and each family
registers its own (torchao's handler-dict style), so this module imports no family:

- a **structure**: a `compbench_*` field a method writes into `model.config` (per-layer shapes,
  low-rank ranks, the kept vocabulary, ...), registered with `register_structure(key, rebuild=...,
  renumber=...)`: how to apply it to a fresh skeleton, and what happens to it when encoder layers
  are dropped and renumbered (methods.surgery.keep_layers asks `renumber_layers`);
- a **format**: how the tensors are stored, named in `compbench_artifact.json` and registered with
  `@register_format(name)`. `safetensors` (float weights, possibly non-uniform shapes) is built in;
  methods.quantization owns `torch_state` and `exported`, methods.early_exit owns `early_exit`.

    model = load_artifact(directory)   # any directory written by a Method's `save`

A fresh process knows no registrations yet, so lookups import owner modules lazily: first the
`owners` the marker names (recorded at save time; only modules under `TRUSTED_OWNER_PREFIXES`,
because importing runs code), then the built-in families in `BUILTIN_OWNERS`, one at a time,
until the name is registered.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

ARTIFACT_FILE = "compbench_artifact.json"
STRUCTURE_PREFIX = "compbench_"  # every model.config field a method writes starts with it
# Imported on demand, in this order, when a structure or format is not registered yet.
BUILTIN_OWNERS = ("methods.surgery", "methods.decomposition", "methods.embedding", "methods.quantization", "methods.early_exit")
TRUSTED_OWNER_PREFIXES = ("methods.",)  # a marker may name owners only inside these packages

Rebuild = Callable[[Any, Any], None]  # (fresh skeleton, recorded value) -> None, in place
Renumber = Callable[[Any, list, str], Any]  # (recorded value, kept layer ids, encoder-layers module path) -> new value
Loader = Callable[[str, Any, dict], Any]  # (directory, transformers config, marker) -> eval-mode model


@dataclass(frozen=True)
class Structure:
    key: str  # the model.config field
    owner: str  # module that registered it (recorded in markers so a fresh process can import it)
    rebuild: Optional[Rebuild]  # None: provenance only, the skeleton needs nothing
    renumber: Optional[Renumber]  # None: unaffected by dropping layers
    order: int  # skeleton steps run in ascending order (the vocabulary before shapes before ranks)


@dataclass(frozen=True)
class Format:
    name: str
    owner: str
    load: Loader


_STRUCTURES: dict[str, Structure] = {}
_FORMATS: dict[str, Format] = {}


def register_structure(key: str, owner: str, *, rebuild: Optional[Rebuild] = None, renumber: Optional[Renumber] = None, order: int = 50) -> None:
    """Called by the owner module at import (`owner=__name__`)."""
    if not key.startswith(STRUCTURE_PREFIX):
        raise ValueError(f"structure key {key!r} must start with {STRUCTURE_PREFIX!r}")
    existing = _STRUCTURES.get(key)
    if existing is not None and existing.owner != owner:
        raise ValueError(f"structure {key!r} is already registered by {existing.owner}")
    _STRUCTURES[key] = Structure(key, owner, rebuild, renumber, order)


def register_format(name: str) -> Callable[[Loader], Loader]:
    def decorator(load: Loader) -> Loader:
        existing = _FORMATS.get(name)
        if existing is not None and existing.owner != load.__module__:
            raise ValueError(f"artifact format {name!r} is already registered by {existing.owner}")
        _FORMATS[name] = Format(name, load.__module__, load)
        return load

    return decorator


# ----------------------------------------------------------------------------------------------
# Lookups (import owners lazily)
# ----------------------------------------------------------------------------------------------


def _lookup(table: dict, name: str, owners: tuple = ()):
    for module in (*owners, *BUILTIN_OWNERS):
        if name in table:
            break
        if module.startswith(TRUSTED_OWNER_PREFIXES):
            import_owner(module)
    return table.get(name)


def import_owner(module: str) -> None:
    """Importing an owner runs its register_* calls."""
    importlib.import_module(module)


def structure(key: str, owners: tuple = ()) -> Structure:
    found = _lookup(_STRUCTURES, key, owners)
    if found is None:
        raise ValueError(f"model.config.{key}: no registered structure (owners tried: {', '.join((*owners, *BUILTIN_OWNERS))})")
    return found


def artifact_format(name: str, owners: tuple = ()) -> Format:
    found = _lookup(_FORMATS, name, owners)
    if found is None:
        raise ValueError(f"unknown artifact format {name!r} (known: {', '.join(sorted(_FORMATS))})")
    return found


def structures_in(config, owners: tuple = ()) -> list[Structure]:
    """The registered structures `config` carries (non-empty compbench_* fields), in rebuild order."""
    keys = [k for k, v in vars(config).items() if k.startswith(STRUCTURE_PREFIX) and v not in (None, [], {})]
    return sorted((structure(k, owners) for k in keys), key=lambda s: (s.order, s.key))


def needs_skeleton(config) -> bool:
    """True when `from_pretrained` alone cannot rebuild a model with this config."""
    return any(s.rebuild is not None for s in structures_in(config))


def renumber_layers(config, kept: list[int], layers_path: str) -> None:
    """Make every recorded structure follow a change of encoder layers (only `kept`, renumbered 0..)."""
    for found in structures_in(config):
        if found.renumber is not None:
            setattr(config, found.key, found.renumber(getattr(config, found.key), kept, layers_path))


def per_layer(value: list, kept: list[int], layers_path: str) -> list:
    """Renumber helper for structures stored as one entry per encoder layer."""
    return [value[i] for i in kept]


# ----------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------


def build_skeleton(config, owners: tuple = ()):
    """A randomly initialised model with every recorded structural change applied."""
    import transformers

    architecture = (config.architectures or [None])[0]
    model_class = getattr(transformers, architecture or "", None)
    if model_class is None:
        raise ValueError(f"config.architectures names no transformers class: {config.architectures!r}")
    model = model_class(config)
    for found in structures_in(config, owners):
        if found.rebuild is not None:
            found.rebuild(model, getattr(config, found.key))
    return model.eval()


def load_weights(model, state_dict: dict) -> None:
    # assign=True keeps the saved dtype (fp16/bf16 artifacts) and tensor subclasses (torchao)
    missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"artifact does not match its skeleton: missing {missing[:5]}, unexpected {unexpected[:5]}")


def write_marker(directory: str, model_config, format: str, **fields) -> None:
    """Name the artifact's format and the modules that own it and its structures."""
    owners = {s.owner for s in structures_in(model_config)} if model_config is not None else set()
    owners.add(artifact_format(format).owner)
    marker = {"format": format, "owners": sorted(owners - {__name__}), **fields}
    Path(directory, ARTIFACT_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True))


def read_marker(directory: str) -> dict:
    path = Path(directory, ARTIFACT_FILE)
    return json.loads(path.read_text()) if path.exists() else {"format": "safetensors", "owners": []}


def save_float(model, directory: str, state_dict: Optional[dict] = None) -> None:
    """save_pretrained (optionally of a replaced state dict) + a safetensors marker."""
    model.save_pretrained(directory, state_dict=state_dict, safe_serialization=True)
    write_marker(directory, model.config, format="safetensors")


def load_artifact(directory: str):
    """Rebuild any artifact written by a compbench method's `save`; returns an eval-mode model."""
    import transformers

    directory = str(directory)
    marker = read_marker(directory)
    owners = tuple(marker.get("owners") or ())
    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=False)
    return artifact_format(marker["format"], owners).load(directory, config, marker)


@register_format("safetensors")
def load_safetensors(directory: str, config, marker: dict):
    from safetensors.torch import load_file

    model = build_skeleton(config, tuple(marker.get("owners") or ()))
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{directory}: no .safetensors weights")
    state = {}
    for file in files:
        state.update(load_file(str(file)))
    load_weights(model, state)
    return model.eval()


def load_float_model(directory: str, like):
    """Reload a float model saved with save_pretrained (e.g. a training cache): its own class when
    `from_pretrained` can rebuild it, else the skeleton the registry describes."""
    if needs_skeleton(like.config):
        return load_artifact(directory)
    return type(like).from_pretrained(directory).eval()
