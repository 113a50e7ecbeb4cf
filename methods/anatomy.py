"""Model anatomy: where the parts of an encoder layer live, for each supported family.

Used by every module that reaches into encoder layers (surgery, importance scores, distillation
hooks, low-rank and unstructured pruning, quantization). Supports BERT-style encoders (BERT,
RoBERTa, ELECTRA, MiniLM: `encoder.layer[i].attention.self...`) and DistilBERT
(`transformer.layer[i].attention.q_lin...`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from harness.errors import ConfigError

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

