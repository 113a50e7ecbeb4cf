"""Latency repeatability of one cell: run it N times in fresh processes (force=true) and report the
coefficient of variation of p50 across runs, per batch size.

    python bench/repeatability.py --runs 5 -- method=baseline task=sst2 task.finetune.max_train_samples=20000 task.finetune.epochs=1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="compbench overrides for the cell")
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="compbench-repeat-"))
    quick = ["measure.accuracy=false", "measure.memory=false", "measure.energy=false", "measure.flops=false"]
    p50s: dict[int, list[float]] = {}
    for run in range(args.runs):
        cmd = [sys.executable, "-c", "from harness.cli import main; main()", f"paths.results_dir={results}", "force=true", *quick, *args.overrides]
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
        record = json.loads(next((results / "records").glob("*.json")).read_text())
        for entry in record["latency"]["fixed"]:
            p50s.setdefault(entry["batch_size"], []).append(entry["p50_ms"])
        print(f"run {run + 1}: " + ", ".join(f"bs={b} p50 {v[-1]:.2f} ms" for b, v in p50s.items()), flush=True)
    env = record["environment"]
    print(f"\nmachine: {env['cpu']['model']} ({env['cpu']['logical_cores']} cores), threads {record['environment']['threads']['intra_op']}")
    print("| batch | p50 per run (ms) | median | CV of p50 |\n|---|---|---|---|")
    for batch, values in p50s.items():
        v = np.array(values)
        print(f"| {batch} | {', '.join(f'{x:.2f}' for x in v)} | {np.median(v):.2f} | {100 * v.std(ddof=1) / v.mean():.2f} % |")


if __name__ == "__main__":
    main()
