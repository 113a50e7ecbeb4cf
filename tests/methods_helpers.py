"""A tiny random BERT and a fake MethodContext for the method tests (no data, no Hub)."""

from __future__ import annotations

import tempfile
from types import SimpleNamespace

import torch
from transformers import BertConfig, BertForSequenceClassification

from harness.config import HardwareConfig
from methods.artifacts import load_artifact
from methods.base import MethodContext

VOCAB, HIDDEN, LAYERS, HEADS, FFN, MAX_POS = 200, 64, 4, 4, 128, 64
HEAD_SIZE = HIDDEN // HEADS
SEQ = 16


def tiny_config(**overrides) -> BertConfig:
    values = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN, max_position_embeddings=MAX_POS)
    values.update(overrides)
    return BertConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(num_labels=2, **overrides))
    return model.eval()


def fake_batches(num_samples: int, batch_size: int, seed: int = 0, seq_len: int = SEQ, low: int = 5, high: int = VOCAB) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        ids = torch.randint(low, high, (n, seq_len), generator=gen)
        ids[:, 0] = 2  # [CLS]
        mask = torch.ones_like(ids)
        mask[n // 2 :, seq_len - 3 :] = 0  # some padding so masks matter
        batches.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": torch.randint(0, 2, (n,), generator=gen)})
    return batches


def eval_batch(seed: int = 123) -> dict:
    batch = fake_batches(6, 6, seed=seed)[0]
    batch.pop("labels")
    return batch


class FakeFinetune:
    """ctx.finetune stand-in: a few SGD steps on fake batches; remembers how it was called."""

    def __init__(self, steps: int = 3):
        self.calls, self.steps = [], steps

    def __call__(self, model, epochs=1.0, **overrides):
        self.calls.append(epochs)
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for batch in fake_batches(8 * self.steps, 8, seed=7)[: self.steps]:
            optimizer.zero_grad()
            model(**batch).loss.backward()
            optimizer.step()
        return model.eval()


def fake_ctx(train_ids=None, device: str = "cpu", finetune=None) -> MethodContext:
    if train_ids is None:
        train_ids = [row["input_ids"][i].tolist() for row in fake_batches(32, 8, seed=3, high=60) for i in range(len(row["input_ids"]))]
    tokenizer = SimpleNamespace(unk_token_id=1, pad_token_id=0, all_special_ids=[0, 1, 2, 3, 4])
    return MethodContext(
        tokenizer=tokenizer,
        task=SimpleNamespace(train={"input_ids": train_ids}),
        hardware=HardwareConfig(device="cpu") if device == "cpu" else SimpleNamespace(device=device, dtype="float32"),
        seed=0,
        cache_dir=tempfile.mkdtemp(prefix="compbench_test_cache_"),
        calibration_batches=lambda num_samples, batch_size: fake_batches(num_samples, batch_size),
        finetune=finetune or FakeFinetune(),
    )


def logits(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits.float()


def saved_and_reloaded(method, model, directory) -> torch.nn.Module:
    method.save(model, str(directory))
    return load_artifact(str(directory))


def linear_params(in_features: int, out_features: int) -> int:
    return in_features * out_features + out_features


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
