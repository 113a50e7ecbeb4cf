"""Latency repeatability of one cell: run it N times in fresh processes (force=true) and report the
coefficient of variation across runs, per batch size, of the method's absolute p50 and of its
interleaved speedup against the baseline (harness.measure.interleaved), with each run's
contention verdict. The speedup is the figure a user compares; the absolute p50 drifts with the
machine.

    python bench/repeatability.py --runs 5 -- method=dynamic_int8 task=sst2 task.finetune.max_train_samples=20000 task.finetune.epochs=1
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
    speedups: dict[int, list[float]] = {}
    verdicts: list[str] = []
    for run in range(args.runs):
        cmd = [sys.executable, "-c", "from harness.cli import main; main()", f"paths.results_dir={results}", "force=true", *quick, *args.overrides]
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
        record = json.loads(next((results / "records").glob("*.json")).read_text())
        for entry in record["latency"]["fixed"]:
            p50s.setdefault(entry["batch_size"], []).append(entry["p50_ms"])
            if entry.get("speedup"):
                speedups.setdefault(entry["batch_size"], []).append(entry["speedup"]["value"])
            verdicts.append(entry["contention"]["verdict"])
        print(f"run {run + 1}: " + ", ".join(f"bs={b} p50 {v[-1]:.2f} ms" for b, v in p50s.items())
              + "".join(f", speedup {v[-1]:.3f}x" for v in speedups.values()) + f", verdicts {verdicts[-len(p50s):]}", flush=True)
    env = record["environment"]
    print(f"\nmachine: {env['cpu']['model']} ({env['cpu']['logical_cores']} cores), threads {record['environment']['threads']['intra_op']}")
    print(f"contention verdicts over all runs: {dict((v, verdicts.count(v)) for v in sorted(set(verdicts)))}")
    print("| batch | figure | per run | median | CV |\n|---|---|---|---|---|")
    for batch, values in p50s.items():
        rows = [("p50 (ms)", values)] + ([("speedup (x)", speedups[batch])] if batch in speedups else [])
        for name, series in rows:
            v = np.array(series)
            cv = 100 * v.std(ddof=1) / v.mean() if v.size > 1 else float("nan")
            print(f"| {batch} | {name} | {', '.join(f'{x:.3f}' for x in v)} | {np.median(v):.3f} | {cv:.2f} % |")


if __name__ == "__main__":
    main()
