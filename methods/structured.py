"""Structured pruning methods: attention heads (Michel et al.), FFN neurons, whole layers (Sajjad et al.).

The model surgery lives in methods/surgery.py, the importance scores in methods/importance.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from harness.errors import check
from methods.anatomy import encoder_layers, layer_parts
from methods.base import ALL_RUNTIMES, Method, MethodConfig, check_calibration, check_exactly_one, Reference
from methods.importance import accumulate_gradient_scores, head_scores, l2_normalised, neuron_magnitude_scores, neuron_taylor_scores, select_global, select_per_layer
from methods.surgery import KEPT_HEADS_KEY, keep_heads, keep_layers, keep_neurons, record_shapes
from methods.registry import register_method

SCOPES = ("global", "per_layer")

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


@register_method("head_prune")
class HeadPrune(Method):
    """Michel et al. 2019: gradient importance per head, L2-normalised per layer, global pruning."""

    config_class = HeadPruneConfig
    abbreviation = "hp"
    reference = Reference(
        paper='Michel, Levy, Neubig 2019, are sixteen heads really better than one?',
        recipe='head importance E|dL/dxi_h| per example, pruned iteratively 10 % at a time; 20-40 % of heads prunable with little loss',
        changes='summed-gradient importance per batch, pruned in one shot',
    )
    runtimes = ALL_RUNTIMES  # a plain float model: it exports to every runtime
    category = "Structured Pruning"
    needs: ClassVar[str] = "calibration"

    def apply(self, model, ctx):
        cfg = self.config
        batches = ctx.calibration_batches(cfg.calibration_samples, cfg.batch_size)
        scores = l2_normalised(accumulate_gradient_scores(model, batches, head_scores))
        kept = select_global(scores, cfg.fraction)
        previous = getattr(model.config, KEPT_HEADS_KEY, None)
        for i, (layer, heads) in enumerate(zip(encoder_layers(model), kept)):
            if len(heads) < layer_parts(layer).num_heads:
                keep_heads(layer, heads)
            if previous is not None:  # map back to original ids when heads were pruned before
                kept[i] = [previous[i][h] for h in heads]
        setattr(model.config, KEPT_HEADS_KEY, kept)
        record_shapes(model)
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


@register_method("ffn_prune")
class FfnPrune(Method):
    config_class = FfnPruneConfig
    abbreviation = "ffn"
    reference = Reference(
        paper='McCarley et al. 2019, structured pruning of a BERT-based question answering model',
        recipe='gated FFN neurons ranked by importance, pruned, then fine-tuned',
        changes='gradient importance of each neuron, pruned in one shot; retraining only with recover_epochs',
    )
    runtimes = ALL_RUNTIMES  # a plain float model: it exports to every runtime
    category = "Structured Pruning"
    needs: ClassVar[str] = "calibration"

    def apply(self, model, ctx):
        cfg = self.config
        layers = encoder_layers(model)
        if cfg.importance == "taylor":
            batches = ctx.calibration_batches(cfg.calibration_samples, cfg.batch_size)
            scores = accumulate_gradient_scores(model, batches, neuron_taylor_scores)
        else:
            scores = [neuron_magnitude_scores(layer_parts(layer)) for layer in layers]
        if cfg.scope == "global":
            kept = select_global(l2_normalised(scores), cfg.fraction)
        else:
            kept = select_per_layer(scores, cfg.fraction)
        for layer, neurons in zip(layers, kept):
            if len(neurons) < layer_parts(layer).ffn_in.out_features:
                keep_neurons(layer, neurons)
        record_shapes(model)
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
        check_exactly_one(self, "keep_layers", "drop")
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


@register_method("layer_drop")
class LayerDrop(Method):
    """Sajjad et al. 2020 'poor man's BERT': remove whole encoder layers."""

    config_class = LayerDropConfig
    abbreviation = "ld"
    reference = Reference(
        paper="Sajjad et al. 2020, poor man's BERT",
        recipe='drop the top encoder layers of the pre-trained model, then fine-tune on the task',
        changes='drops layers of the fine-tuned model; retraining only with recover_epochs',
    )
    runtimes = ALL_RUNTIMES  # a plain float model: it exports to every runtime
    category = "Structured Pruning"

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

