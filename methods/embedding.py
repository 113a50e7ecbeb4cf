"""Vocabulary pruning (TextPruner-style): keep the word-embedding rows of tokens the task uses.

The tokenizer is left alone: the runner keeps feeding original token ids, and the new embedding
maps them through an `old_to_new` lookup buffer, sending ids never seen in the training split
to [UNK]'s row. config.vocab_size becomes the kept size and config.compbench_vocab records what
methods.artifacts.load_artifact needs to rebuild the remapping module (registered at the end).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.errors import ConfigError, check
from methods.artifacts import register_structure
from methods.base import ALL_RUNTIMES, Method, MethodConfig, Reference
from methods.registry import register_method

VOCAB_KEY = "compbench_vocab"  # config field: {"original_vocab_size", "kept_vocab_size", "unk_token_id", "padding_idx"}


class RemappedEmbedding(nn.Embedding):
    """An nn.Embedding over the kept rows, indexed by original token ids."""

    def __init__(self, num_kept: int, embedding_dim: int, original_vocab_size: int, padding_idx=None, device=None, dtype=None):
        super().__init__(num_kept, embedding_dim, padding_idx=padding_idx, device=device, dtype=dtype)
        self.register_buffer("old_to_new", torch.zeros(original_vocab_size, dtype=torch.long, device=device))

    def forward(self, input_ids):
        return super().forward(self.old_to_new[input_ids])


def token_counts(column, vocab_size: int) -> torch.Tensor:
    """Occurrences of each id in a column of token id rows (tensor, list of lists, Dataset column)."""
    if isinstance(column, torch.Tensor):
        flat = column.flatten()
    else:
        rows = [torch.as_tensor(row, dtype=torch.long).flatten() for row in column]
        flat = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    return torch.bincount(flat.long(), minlength=vocab_size)[:vocab_size]


def remap_skeleton(model, spec: dict) -> None:
    """Install an empty RemappedEmbedding of the recorded sizes (weights are loaded afterwards)."""
    old = model.get_input_embeddings()
    model.set_input_embeddings(
        RemappedEmbedding(spec["kept_vocab_size"], old.embedding_dim, spec["original_vocab_size"], padding_idx=spec.get("padding_idx"))
    )


@dataclass
class VocabPruneConfig(MethodConfig):
    _target_: str = "methods.embedding.VocabPrune"
    name: str = "vocab_prune"
    min_count: int = 1  # keep tokens seen at least this often in the training split

    def __post_init__(self):
        super().__post_init__()
        check(isinstance(self.min_count, int) and self.min_count >= 1, "method.min_count", f"must be an integer >= 1, got {self.min_count}")


@register_method("vocab_prune")
class VocabPrune(Method):
    config_class = VocabPruneConfig
    abbreviation = "vocab"
    reference = Reference(
        paper='Abdaoui et al. 2020, load what you need; TextPruner (Yang et al. 2022)',
        recipe='keep the embedding rows of the tokens the task corpus uses',
    )
    runtimes = ALL_RUNTIMES  # a plain float model: it exports to every runtime
    # Survey family: shrinking the embedding matrix is grouped with embedding factorisation.
    category = "Matrix Decomposition"
    needs = "calibration"  # reads the training split's token ids

    def apply(self, model, ctx):
        old = model.get_input_embeddings()
        check(not isinstance(old, RemappedEmbedding), "method", "vocab_prune was already applied to this model")
        vocab_size = old.num_embeddings
        unk = getattr(ctx.tokenizer, "unk_token_id", None)
        if unk is None:
            raise ConfigError("method", "vocab_prune needs a tokenizer with an [UNK] token")
        keep = token_counts(ctx.task.train["input_ids"], vocab_size) >= self.config.min_count
        special = set(getattr(ctx.tokenizer, "all_special_ids", []) or []) | {unk}
        if getattr(model.config, "pad_token_id", None) is not None:
            special.add(model.config.pad_token_id)
        keep[[i for i in special if 0 <= i < vocab_size]] = True
        kept_ids = keep.nonzero().flatten()

        old_to_new = torch.full((vocab_size,), -1, dtype=torch.long)
        old_to_new[kept_ids] = torch.arange(len(kept_ids))
        old_to_new[old_to_new < 0] = old_to_new[unk]
        padding = int(old_to_new[old.padding_idx]) if old.padding_idx is not None else None

        new = RemappedEmbedding(len(kept_ids), old.embedding_dim, vocab_size, padding_idx=padding, device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(old.weight[kept_ids.to(old.weight.device)])
            new.old_to_new.copy_(old_to_new)
        model.set_input_embeddings(new)
        model.config.vocab_size = len(kept_ids)
        spec = {"original_vocab_size": vocab_size, "kept_vocab_size": len(kept_ids), "unk_token_id": unk, "padding_idx": padding}
        setattr(model.config, VOCAB_KEY, spec)
        self.info.update(
            kept_vocab_size=len(kept_ids),
            original_vocab_size=vocab_size,
            kept_fraction=len(kept_ids) / vocab_size,
            embedding_parameters_removed=(vocab_size - len(kept_ids)) * old.embedding_dim,
        )
        return self.recover(model, ctx)


register_structure(VOCAB_KEY, __name__, rebuild=remap_skeleton, order=10)
