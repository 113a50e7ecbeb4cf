"""Where does a process's int8 speedup go when it moves? (issue 30, part 1)

Runs the same interleaved comparison as the harness (the fine-tuned fp32 MiniLM against its
dynamic int8 copy, torch.ao eager kernels, ABBA blocks of ~0.2 s) in several fresh processes,
and inside each process several times over, keeping every block's median:

- a slowdown that is a property of the process (thread placement, allocation, the memory layout
  of packed int8 weights) gives repeats that agree inside a process and processes that disagree;
- a step in time (a neighbour on the host) shows as a run of slow blocks, in some processes only,
  and a canary (an fp32 and an int8 matmul sized like the model's FFN, timed in the same blocks)
  slows with it when the cause is outside the model.

Variants change one thing at a time (`--variants`): default; `requantize` (each in-process repeat
quantizes afresh, so the packed weights land elsewhere); `threads1`; `passive` (OMP_WAIT_POLICY);
`bind` (OMP_PROC_BIND=close, OMP_PLACES=cores); `thp` (glibc malloc on transparent huge pages).
Four more run the harness's own pass and print its verdicts: `harness` (quiet machine), `burst`
(beside a process that spins 0.6 s of every 4 s: 15 % of a core, below what the contention
monitor calls contended), `hidden` (from half-way through each pass, a thread of the timed
process itself multiplies matrices: load the monitor cannot attribute to anyone else, as a host
neighbour on the sibling hyperthread would be) and `hidden_whole` (the same thread for the whole
process: a slow process rather than a step in time, which only the canary's calibration can see).

    python bench/latency_mechanism.py --processes 5 --repeats 3 --seconds 6 --variants default,requantize
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANT_ENV = {
    "default": {},
    "requantize": {},
    "threads1": {"OMP_NUM_THREADS": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "bind": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "thp": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    "burst": {},
    "hidden": {},
    "hidden_whole": {},
}
HIDDEN_FROM = {"hidden": 0.5, "hidden_whole": 0.0}  # when the hidden load starts, as a fraction of the pass
BURST_ON_S, BURST_PERIOD_S = 0.6, 4.0  # the neighbour's duty cycle: 15 %, below the contention monitor's 0.25 cores


def _neighbour() -> None:
    """A process that spins BURST_ON_S of every BURST_PERIOD_S: short bursts, as a host neighbour's."""
    while True:
        end = time.perf_counter() + BURST_ON_S
        while time.perf_counter() < end:
            pass
        time.sleep(BURST_PERIOD_S - BURST_ON_S)


def _finetuned(cache: Path) -> Path:
    """The cached fine-tune of the demo cell (the newest one, when several)."""
    entries = sorted((cache / "finetuned").glob("*/model.safetensors"), key=lambda p: p.stat().st_mtime)
    if not entries:
        raise SystemExit(f"no cached fine-tune under {cache / 'finetuned'}: run `make demo` first")
    return entries[-1].parent


def _batches(tokenizer, batch_size: int, seq_len: int = 128, count: int = 4) -> list:
    with open(Path(os.environ.get("COMPBENCH_DATA_ROOT", ROOT.parent / "shared/data")) / "glue/sst2/dev.tsv", newline="") as handle:
        sentences = [row["sentence"] for row in csv.DictReader(handle, delimiter="\t")]
    return [dict(tokenizer(sentences[i * batch_size:(i + 1) * batch_size], padding="max_length", truncation=True,
                           max_length=seq_len, return_tensors="pt")) for i in range(count)]


def _block(run, batches, calls: int) -> list:
    values = []
    for i in range(calls):
        t0 = time.perf_counter()
        run(batches[i % len(batches)])
        values.append((time.perf_counter() - t0) * 1e3)
    return values


def _hidden_load(stop, delay_s: float) -> None:
    """numpy matrix products (they release the GIL) in a thread of the timed process: its CPU time
    counts as the process's own, so the contention monitor sees no other process."""
    if stop.wait(delay_s):
        return
    a = np.random.default_rng(0).standard_normal((384, 384))
    while not stop.is_set():
        a = a @ a
        a /= np.abs(a).max()


def harness_worker(args) -> None:
    """The same comparison through the harness's own pass (measure_interleaved with its canary,
    under the contention monitor): what the record would say."""
    import copy
    from types import SimpleNamespace

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.measure.contention import ContentionMonitor
    from harness.measure.interleaved import measure_interleaved
    from harness.measure.stability import Canary, calibration_path, read_calibration
    from methods.quantization import quantize_torch_ao

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.set_num_interop_threads(1)
    path = _finetuned(Path(os.path.expanduser("~/.cache/compbench")))
    tokenizer = AutoTokenizer.from_pretrained(path)
    reference = AutoModelForSequenceClassification.from_pretrained(path).eval()
    method = quantize_torch_ao(copy.deepcopy(reference)).eval()
    batches = _batches(tokenizer, args.batch_size)
    hardware = SimpleNamespace(device="cpu", compile="eager", warmup=5, min_iterations=20, min_duration_s=args.seconds / 2,
                               max_duration_s=60.0)
    canary = Canary()
    calibration = read_calibration(calibration_path("~/.cache/compbench", torch.get_num_threads()))
    run = lambda model: (lambda batch: model(**batch))  # noqa: E731
    for repeat in range(args.repeats):
        stop = threading.Event()
        if args.hidden is not None:  # from this fraction of the pass on, a thread of this very process competes for the cores
            threading.Thread(target=_hidden_load, args=(stop, args.seconds * args.hidden), daemon=True).start()
        with ContentionMonitor(torch.get_num_threads()) as monitor:
            entry, speedup = measure_interleaved(run(method), run(reference), batches, hardware, args.batch_size, 128,
                                                 label="mechanism", n_bootstrap=0, canary=canary, calibration=calibration)
        stop.set()
        print(json.dumps({"repeat": repeat, "speedup": speedup["value"], "method_ms": entry["p50_ms"],
                          "contention": monitor.report["verdict"], "other_cores": monitor.report["other_cores"],
                          "stability": entry["stability"]}), flush=True)


def worker(args) -> None:
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from methods.quantization import quantize_torch_ao

    if os.environ.get("OMP_NUM_THREADS") is None:
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.set_num_interop_threads(1)
    path = _finetuned(Path(os.path.expanduser("~/.cache/compbench")))
    tokenizer = AutoTokenizer.from_pretrained(path)
    reference = AutoModelForSequenceClassification.from_pretrained(path).eval()
    batches = _batches(tokenizer, args.batch_size)
    rows = args.batch_size * 128
    canary_fp32 = torch.nn.Linear(384, 1536).eval()
    canary_int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(384, 1536)), {torch.nn.Linear}, dtype=torch.qint8).eval()
    canary_input = torch.randn(rows, 384)
    method = None
    with torch.inference_mode():
        for repeat in range(args.repeats):
            if method is None or args.requantize:
                method = quantize_torch_ao(copy.deepcopy(reference)).eval()
            for run in (method, reference):
                _block(lambda b, run=run: run(**b), batches, 5)
            probe = np.median(_block(lambda b: reference(**b), batches, 3))
            calls = int(min(32, max(1, 200 // probe)))
            blocks = []
            start = time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                order = ("method", "reference") if len(blocks) % 2 == 0 else ("reference", "method")
                block = {}
                for side in order:
                    model = method if side == "method" else reference
                    block[side] = float(np.median(_block(lambda b, m=model: m(**b), batches, calls)))
                block["canary_fp32"] = float(np.median(_block(lambda _: canary_fp32(canary_input), [None], 5)))
                block["canary_int8"] = float(np.median(_block(lambda _: canary_int8(canary_input), [None], 5)))
                block["t"] = round(time.perf_counter() - start, 3)
                blocks.append(block)
            print(json.dumps({"repeat": repeat, "calls": calls, "blocks": blocks}), flush=True)


def _summary(blocks: list) -> dict:
    method = np.array([b["method"] for b in blocks])
    reference = np.array([b["reference"] for b in blocks])
    ratios = reference / method
    return {"speedup": float(np.median(reference) / np.median(method)), "method_ms": float(np.median(method)),
            "reference_ms": float(np.median(reference)), "ratio_spread": float((ratios.max() - ratios.min()) / np.median(ratios)),
            "canary_fp32_ms": float(np.median([b["canary_fp32"] for b in blocks])),
            "canary_int8_ms": float(np.median([b["canary_int8"] for b in blocks]))}


def _cv(values) -> float:
    values = np.asarray(values)
    return float(100 * values.std(ddof=1) / values.mean()) if values.size > 1 else float("nan")


def harness_table(args) -> None:
    """`harness`: the harness's own pass on a quiet machine; `burst`: the same beside a neighbour
    that spins in short bursts. Each row: what the contention monitor and the stability verdict said."""
    import multiprocessing

    print("| variant | process | speedup | contention (other cores) | stability | reasons |")
    print("|---|---|---:|---|---|---|")
    for variant in args.variants.split(","):
        for process in range(args.processes):
            neighbour = None
            if variant == "burst":
                neighbour = multiprocessing.get_context("spawn").Process(target=_neighbour, daemon=True)
                neighbour.start()
            try:
                command = [sys.executable, __file__, "--worker", "--harness", "--repeats", str(args.repeats), "--seconds",
                           str(args.seconds), "--batch-size", str(args.batch_size)]
                if variant in HIDDEN_FROM:
                    command += ["--hidden", str(HIDDEN_FROM[variant])]
                lines = subprocess.run(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True,
                                       capture_output=True, text=True).stdout.splitlines()
            finally:
                if neighbour:
                    neighbour.terminate()
                    neighbour.join()
            for line in (json.loads(x) for x in lines if x.startswith("{")):
                reasons = "; ".join(line["stability"]["reasons"]) or "-"
                print(f"| {variant} | {process + 1}.{line['repeat'] + 1} | {line['speedup']:.3f} | {line['contention']} "
                      f"({line['other_cores']:.2f}) | {line['stability']['verdict']} | {reasons} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="comparisons inside each process")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one comparison")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--variants", default="default,requantize")
    parser.add_argument("--out", type=Path, help="write every block as JSON lines here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--requantize", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--harness", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hidden", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return harness_worker(args) if args.harness else worker(args)
    if any(v in ("burst", "harness", *HIDDEN_FROM) for v in args.variants.split(",")):
        return harness_table(args)
    out = open(args.out, "w") if args.out else None
    print(f"| variant | process | speedup per in-process repeat | method p50 ms | canary int8 / fp32 ms | widest block-ratio spread |")
    print("|---|---|---|---|---|---|")
    totals = {}
    for variant in args.variants.split(","):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **VARIANT_ENV[variant]}
        command = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats), "--seconds", str(args.seconds),
                   "--batch-size", str(args.batch_size)] + (["--requantize"] if variant == "requantize" else [])
        per_process = []
        for process in range(args.processes):
            lines = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.splitlines()
            repeats = [json.loads(line) for line in lines if line.startswith("{")]
            summaries = [_summary(r["blocks"]) for r in repeats]
            per_process.append([s["speedup"] for s in summaries])
            if out:
                for r in repeats:
                    out.write(json.dumps({"variant": variant, "process": process, **r}) + "\n")
            speedups = ", ".join(f"{x['speedup']:.3f}" for x in summaries)
            method_ms = ", ".join(f"{x['method_ms']:.2f}" for x in summaries)
            canary = ", ".join(f"{x['canary_int8_ms']:.3f}/{x['canary_fp32_ms']:.3f}" for x in summaries)
            spread = max(x["ratio_spread"] for x in summaries)
            print(f"| {variant} | {process + 1} | {speedups} | {method_ms} | {canary} | {spread:.2f} |", flush=True)
        within = np.mean([_cv(p) for p in per_process])
        between = _cv([np.mean(p) for p in per_process])
        totals[variant] = (within, between, np.median([np.mean(p) for p in per_process]))
    print("\n| variant | mean CV inside a process | CV between processes (of each process's mean) | median speedup |")
    print("|---|---:|---:|---:|")
    for variant, (within, between, median) in totals.items():
        print(f"| {variant} | {within:.2f} % | {between:.2f} % | {median:.3f} |")
    if out:
        out.close()


if __name__ == "__main__":
    main()
