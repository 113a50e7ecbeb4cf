"""Wall time of a sweep on one machine, one launcher against another (issue #29 part 4): the same
`compbench -m` sweep, each run from an empty cache and results directory (so each fine-tunes its
baselines and scores them once), with Hydra's basic launcher (every cell one after another, as
compbench ran before) and compbench's default launcher (untimed cells side by side, harness.sweep.parallel).

    python bench/sweep_throughput.py                       # the 20-cell accuracy-only sweep
    python bench/sweep_throughput.py --sweep demo          # the demo's sweep (every cell timed)
    python bench/sweep_throughput.py --launchers compbench # one launcher only

Prints a Markdown table (wall time, cells ok, speedup against the first launcher). Run it on an idle
machine: the figures are wall times of real work. The fine-tunes are small (documented below) so the
sweep's cost is the cells, as in a study whose baselines are cached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPBENCH = str(Path(sys.executable).with_name("compbench"))
FINETUNE = ["task.finetune.max_train_samples=2000", "task.finetune.epochs=1", "task.finetune.learning_rate=1e-4",
            "task.finetune.freeze_word_embeddings=true"]
SWEEPS = {
    # 2 tasks x 10 methods that measure accuracy, size, memory and FLOPs but no latency or energy
    "accuracy": ["task=sst2,mrpc",
                 "method=baseline,head_prune,ffn_prune,random_prune,layer_drop,vocab_prune,static_int8,bf16,weight_only_int8,early_exit",
                 "measure.latency=false", "measure.energy=false", *FINETUNE],
    # the demo's sweep (Makefile: DEMO_CELL, DEMO_METHODS) with the same small fine-tune: every cell is timed
    "demo": ["task=sst2", "model=minilm_l6", "hardware=cpu", "hardware.batch_sizes=[1]",
             "method=baseline,head_prune,ffn_prune,recipe_prune_int8", *FINETUNE],
}


def run(sweep: list[str], launcher: str, workdir: Path) -> dict:
    results, cache = workdir / f"results-{launcher}", workdir / f"cache-{launcher}"
    for path in (results, cache):
        shutil.rmtree(path, ignore_errors=True)
    command = [COMPBENCH, "-m", *sweep, f"hydra/launcher={launcher}", f"paths.results_dir={results}", f"paths.cache_dir={cache}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "COMPBENCH_PROGRESS": "off"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    records = [json.loads(path.read_text()) for path in (results / "records").glob("*.json")]
    statuses = [record.get("status") for record in records]
    if done.returncode not in (0, 1):
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
    return {"launcher": launcher, "wall_s": wall, "exit": done.returncode, "cells": len(records),
            "ok": statuses.count("ok"), "finetunes": len(list((cache / "finetuned").glob("[!.]*"))),
            "baseline_scorings": len(list((cache / "baseline_predictions").glob("[!.]*")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default="accuracy")
    parser.add_argument("--launchers", default="basic,compbench", help="comma-separated hydra/launcher choices, the first is the reference")
    parser.add_argument("--keep", type=Path, help="keep each launcher's results and cache under this directory")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="compbench-throughput-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for launcher in args.launchers.split(","):
            rows.append(run(SWEEPS[args.sweep], launcher, workdir))
            print(f"# {rows[-1]}", flush=True)
    reference = rows[0]["wall_s"]
    print(f"\n`{args.sweep}` sweep: {' '.join(SWEEPS[args.sweep])}\n")
    print("| launcher | wall time | cells (ok) | fine-tunes | baseline scorings | vs first |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['launcher']} | {row['wall_s']:.0f} s | {row['cells']} ({row['ok']}) | {row['finetunes']} | "
              f"{row['baseline_scorings']} | {reference / row['wall_s']:.2f}x |")


if __name__ == "__main__":
    main()
