"""Importance scores for structured pruning (gradient and magnitude based) and unit selection."""

from __future__ import annotations

import torch

from harness.errors import ConfigError
from methods.anatomy import LayerParts, encoder_layers, layer_parts

def accumulate_gradient_scores(model, batches, score_fn) -> list[torch.Tensor]:
    """Sum over batches of |score_fn(parts)| per layer, computed right after each backward pass.

    `score_fn` reads W and dL/dW; taking |.| per batch (not once at the end) keeps opposite-sign
    batches from cancelling, the batch-level version of Michel et al.'s E_x|dL/dxi|.
    """
    was_training = model.training
    model.eval()  # no dropout: importance of the deterministic network
    totals = None
    params = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            device = next(model.parameters()).device
            for batch in batches:
                model.zero_grad(set_to_none=True)
                output = model(**{k: v.to(device) for k, v in batch.items()})
                if getattr(output, "loss", None) is None:
                    raise ConfigError("method", "importance scores need calibration batches with labels")
                output.loss.backward()
                scores = [score_fn(layer_parts(layer)).abs().detach() for layer in encoder_layers(model)]
                totals = scores if totals is None else [t + s for t, s in zip(totals, scores)]
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in params.items():
            p.requires_grad_(flag)
        model.train(was_training)
    return totals


def head_scores(parts: LayerParts) -> torch.Tensor:
    """Per head: sum over its input columns of W_O * dL/dW_O, which equals dL/dxi_h for a head gate."""
    product = parts.out.weight * parts.out.weight.grad
    return product.view(product.shape[0], -1, parts.head_size).sum(dim=(0, 2)).float()


def neuron_taylor_scores(parts: LayerParts) -> torch.Tensor:
    """Per intermediate neuron j: sum_i W2[i,j] dL/dW2[i,j] = sum over tokens of a_j * dL/da_j."""
    return (parts.ffn_out.weight * parts.ffn_out.weight.grad).sum(dim=0).float()


def neuron_magnitude_scores(parts: LayerParts) -> torch.Tensor:
    # a neuron's contribution scales with both its input row and its output column
    return (parts.ffn_in.weight.detach().norm(dim=1) * parts.ffn_out.weight.detach().norm(dim=0)).float()


def select_global(scores: list[torch.Tensor], fraction: float, min_keep: int = 1) -> list[list[int]]:
    """Drop the `fraction` lowest-scoring units over all layers, keeping >= min_keep per layer.

    Returns the kept unit ids per layer (sorted).
    """
    total = sum(s.numel() for s in scores)
    to_drop = int(round(fraction * total))
    order = torch.cat(scores).argsort(stable=True).tolist()
    offsets = [0]
    for s in scores:
        offsets.append(offsets[-1] + s.numel())
    dropped = [set() for _ in scores]
    for flat in order:
        if to_drop == 0:
            break
        layer = next(i for i in range(len(scores)) if offsets[i] <= flat < offsets[i + 1])
        if scores[layer].numel() - len(dropped[layer]) <= min_keep:
            continue
        dropped[layer].add(flat - offsets[layer])
        to_drop -= 1
    return [[u for u in range(s.numel()) if u not in d] for s, d in zip(scores, dropped)]


def select_per_layer(scores: list[torch.Tensor], fraction: float, min_keep: int = 1) -> list[list[int]]:
    kept = []
    for s in scores:
        keep = max(min_keep, s.numel() - int(round(fraction * s.numel())))
        kept.append(sorted(s.argsort(descending=True, stable=True)[:keep].tolist()))
    return kept


def l2_normalised(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    # Michel et al. normalise per layer so layers with large gradients do not dominate the global ranking
    return [s / (s.norm() + 1e-12) for s in scores]

