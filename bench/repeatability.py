"""Latency repeatability: run a cell N times in fresh processes (force=true) and report, per method
and batch size, the coefficient of variation across runs of the method's absolute p50 and of its
interleaved speedup against the baseline (harness.measure.interleaved), with each run's verdict
(clean / contended / unstable, harness.measure.stability) and how many fresh processes it took
(measure.fresh_process_retries). The speedup is the figure a user compares; the absolute p50
drifts with the machine. With measure.latency_processes=K the pooled speedup is reported too.

    python bench/repeatability.py --runs 5 --methods dynamic_int8,head_prune -- method.backend=torch_ao \\
        task=sst2 'hardware.batch_sizes=[1,32]'

(method.backend applies to dynamic_int8 only; pass a method's own overrides with --methods
'dynamic_int8 method.backend=torch_ao method.compile=false,head_prune'.)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["measure.accuracy=false", "measure.memory=false", "measure.energy=false", "measure.flops=false"]


def _cv(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(100 * values.std(ddof=1) / values.mean()) if values.size > 1 else float("nan")


def _isa(record: dict) -> str:
    isa = record["environment"]["cpu"].get("isa") or {}
    present = [flag for flag, on in isa.items() if on]
    return "+".join(present) or "no AVX-512"


def repeat(method: list[str], overrides: list[str], runs: int, results: Path) -> tuple[dict, list]:
    """{batch: {"p50": [...], "speedup": [...], "pooled": [...], "verdicts": [...], "tries": [...]}}, [records]"""
    table: dict = {}
    records = []
    for run in range(runs):
        cmd = [sys.executable, "-c", "from harness.cli import main; main()", f"paths.results_dir={results}", "force=true",
               *QUICK, *method, *overrides]
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
        wall = time.perf_counter() - started
        record = max((results / "records").glob("*.json"), key=lambda p: p.stat().st_mtime)
        record = json.loads(record.read_text())
        records.append(record)
        # fresh processes behind the record: pooled ones (measure.latency_processes) and re-runs of an unstable one
        tries = len(record["latency"].get("processes") or [None]) - 1 + len(record["latency"].get("fresh_process_tries") or [None])
        for entry in record["latency"]["fixed"]:
            row = table.setdefault(entry["batch_size"], {"p50": [], "speedup": [], "pooled": [], "verdicts": [], "tries": []})
            row["p50"].append(entry["p50_ms"])
            speedup = entry.get("speedup") or {}
            row["speedup"].append(speedup.get("value"))
            if speedup.get("pooled"):
                row["pooled"].append(speedup["pooled"]["value"])
            row["verdicts"].append(entry["contention"]["verdict"])
            row["tries"].append(tries)
        line = ", ".join(f"bs={b} p50 {r['p50'][-1]:.2f} ms speedup {r['speedup'][-1]:.3f}x ({r['verdicts'][-1]})" for b, r in table.items())
        print(f"  {' '.join(method)} run {run + 1}: {line}; {tries} process(es), {wall:.0f} s", flush=True)
    return table, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--methods", default="dynamic_int8 method.backend=torch_ao method.compile=false",
                        help="comma-separated; each a method name with its own overrides")
    parser.add_argument("overrides", nargs="*", help="compbench overrides for every cell")
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="compbench-repeat-"))
    rows = []
    record = None
    for spec in args.methods.split(","):
        words = shlex.split(spec)
        method = [f"method={words[0]}", *words[1:]]
        table, records = repeat(method, args.overrides, args.runs, results)
        record = records[-1]
        for batch, row in table.items():
            rows.append((words[0], batch, row))
    env = record["environment"]
    print(f"\nmachine: {env['cpu']['model']}, {env['cpu']['logical_cores']} logical cores, ISA {_isa(record)}, "
          f"fingerprint {env['fingerprint']}, threads {env['threads']['intra_op']}")
    print("| method | batch | speedup per run | speedup CV | p50 per run (ms) | p50 CV | verdicts | processes per run |")
    print("|---|---:|---|---:|---|---:|---|---|")
    for method, batch, row in rows:
        speedups = ", ".join(f"{v:.3f}" for v in row["speedup"])
        p50s = ", ".join(f"{v:.2f}" for v in row["p50"])
        verdicts = ", ".join(f"{v}: {row['verdicts'].count(v)}" for v in sorted(set(row["verdicts"])))
        print(f"| {method} | {batch} | {speedups} | **{_cv(row['speedup']):.2f} %** | {p50s} | {_cv(row['p50']):.2f} % | "
              f"{verdicts} | {', '.join(map(str, row['tries']))} |")
        if row["pooled"]:
            print(f"| {method} (pooled) | {batch} | {', '.join(f'{v:.3f}' for v in row['pooled'])} | "
                  f"**{_cv(row['pooled']):.2f} %** | | | | |")


if __name__ == "__main__":
    main()
