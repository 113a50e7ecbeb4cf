"""How fast the baseline fine-tune runs here, and what accuracy a time budget buys (issue #11).

`step`: one training step of the embedded MiniLM-L6 at batch 32, split into forward, backward and
optimizer, with torch's foreach AdamW (transformers' `adamw_torch`) against the fused kernel
(`adamw_torch_fused`, the harness's default), with and without frozen word embeddings, in fp32 or
under bf16 autocast (`task.finetune.precision=bf16`: what the Trainer's bf16=True does on a CPU).

`train`: fine-tune on a seeded SST-2 subset through harness.finetune.train (length-grouped batches,
dynamic padding, warm-up 10 %, linear decay) and score the full dev set; one line per run with the
wall time of the fine-tune. Its subset is drawn with Python's random.Random(seed), not the
harness's numpy permutation, so the same size can land ~0.5 points apart from a compbench cell.

    python bench/finetune_speed.py step
    python bench/finetune_speed.py step --optimizers fused --freeze no --precisions fp32 bf16 --lengths 32 128 384
    python bench/finetune_speed.py train --samples 12000 --epochs 1 --freeze-word-embeddings
Run on an idle machine: the wall times are the point.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.models import embedded_model_dir  # noqa: E402


def sst2_rows(data_root: Path, split: str) -> list[dict]:
    with open(data_root / "glue" / "sst2" / f"{split}.tsv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def step_profile(args) -> None:
    import contextlib

    from transformers import AutoModelForSequenceClassification

    print(f"threads {torch.get_num_threads()}, batch 32, random token ids, ms per step (mean of {args.steps})")
    for optimizer_kind in args.optimizers:
        for freeze in args.freeze:
            for precision in args.precisions:
                model = AutoModelForSequenceClassification.from_pretrained(embedded_model_dir(), num_labels=2).train()
                model.get_input_embeddings().weight.requires_grad_(freeze == "no")
                trained = [p for p in model.parameters() if p.requires_grad]
                optimizer = torch.optim.AdamW(trained, lr=1e-4, fused=optimizer_kind == "fused")
                for length in args.lengths:
                    ids, labels = torch.randint(1000, 2000, (32, length)), torch.randint(0, 2, (32,))
                    totals = [0.0, 0.0, 0.0]
                    for i in range(args.steps + 3):  # 3 warm-up steps
                        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                                    else contextlib.nullcontext())
                        t0 = time.perf_counter()
                        with autocast:  # as the Trainer: forward and loss under autocast, backward outside
                            loss = model(input_ids=ids, labels=labels).loss
                        t1 = time.perf_counter()
                        loss.backward()
                        t2 = time.perf_counter()
                        optimizer.step()
                        optimizer.zero_grad()
                        t3 = time.perf_counter()
                        if i >= 3:
                            for k, value in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                                totals[k] += value * 1000 / args.steps
                    print(f"{optimizer_kind:7s} AdamW, word embeddings {'frozen ' if freeze == 'yes' else 'trained'}, {precision}, "
                          f"length {length:3d}: forward {totals[0]:6.0f}  backward {totals[1]:6.0f}  optimizer {totals[2]:5.0f}  "
                          f"step {sum(totals):6.0f}")


def train_and_score(args) -> None:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from harness.config import FinetuneConfig
    from harness.finetune import train

    model_dir = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train_rows = sst2_rows(args.data_root, "train")
    random.Random(args.seed).shuffle(train_rows)
    train_rows = train_rows[: args.samples]

    def encode(rows):
        encoded = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=128)
        return Dataset.from_dict({**encoded, "labels": [int(r["label"]) for r in rows]})

    train_set, dev = encode(train_rows), encode(sst2_rows(args.data_root, "dev"))
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    finetune = FinetuneConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                              freeze_word_embeddings=args.freeze_word_embeddings, precision=args.precision)
    start = time.perf_counter()
    model = train(model, tokenizer, train_set, finetune, args.seed, "cpu")  # the harness's own loop
    wall = time.perf_counter() - start
    collate = DataCollatorWithPadding(tokenizer)
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(dev), 64):
            batch = collate([dev[j] for j in range(i, min(i + 64, len(dev)))])
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    print(f"samples {len(train_set)} epochs {args.epochs} lr {args.lr} batch {args.batch_size} optimizer {args.optimizer} "
          f"frozen word embeddings {args.freeze_word_embeddings} precision {args.precision}: fine-tune {wall:.1f} s "
          f"({len(train_set) * args.epochs / wall:.0f} sentences/s), SST-2 dev accuracy {100 * correct / len(dev):.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    step = sub.add_parser("step", help="forward / backward / optimizer time of one step")
    step.add_argument("--steps", type=int, default=10)
    step.add_argument("--lengths", type=int, nargs="+", default=[16, 32])
    step.add_argument("--optimizers", nargs="+", choices=["foreach", "fused"], default=["foreach", "fused"])
    step.add_argument("--freeze", nargs="+", choices=["no", "yes"], default=["no", "yes"], help="freeze word embeddings")
    step.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    train = sub.add_parser("train", help="fine-tune on a subset and score the dev set")
    train.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    train.add_argument("--samples", type=int, default=12000)
    train.add_argument("--epochs", type=float, default=1.0)
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--optimizer", default="adamw_torch_fused", choices=["adamw_torch_fused", "adamw_torch"])
    train.add_argument("--freeze-word-embeddings", action="store_true")
    train.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    train.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    step_profile(args) if args.command == "step" else train_and_score(args)


if __name__ == "__main__":
    main()
