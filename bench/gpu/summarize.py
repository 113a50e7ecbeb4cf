"""Short Markdown summary of the device check's records (bench/gpu/check.sh writes it to $OUT).

    python3 bench/gpu/summarize.py RESULTS_DIR [RESULTS_DIR ...] > summary.md

Throughput is reported as achieved bf16 TFLOP/s (the harness's counted FLOPs per sample x samples
per second at the large batch) and as a share of two ceilings: the H200's nominal dense bf16 peak
(989 TFLOP/s, vendor datasheet) and the ~790 TFLOP/s an 8192^3 bf16 matmul reached on random data
on this workplace's H200 (device tool KINDS.md: 769-798).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

NOMINAL_BF16_TFLOPS = 989.0
MEASURED_MATMUL_TFLOPS = 790.0


def load_records(directories: list[str]) -> list[dict]:
    records = []
    for directory in directories:
        for path in sorted(Path(directory).glob("**/records/*.json")):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
    return records


def fixed_latency(record: dict, batch_size: int) -> Optional[dict]:
    for entry in (record.get("latency") or {}).get("fixed", []):
        if entry.get("batch_size") == batch_size:
            return entry
    return None


def largest_fixed(record: dict) -> Optional[dict]:
    entries = (record.get("latency") or {}).get("fixed", [])
    return max(entries, key=lambda e: e["batch_size"]) if entries else None


def tflops(flops_per_sample: float, batch_size: int, p50_ms: float) -> float:
    """Achieved TFLOP/s of one batched call: FLOPs of the batch over its median time."""
    return flops_per_sample * batch_size / (p50_ms / 1e3) / 1e12


def flops_per_sample(records: list[dict], model: str) -> Optional[float]:
    """FLOPs at the fixed sequence length, from whichever cell of this model counted them (eager)."""
    for record in records:
        if record["cell"]["model"] == model and record.get("flops"):
            return record["flops"]["flops_per_sample"]
    return None


def _ms(entry: Optional[dict]) -> str:
    return f"{entry['p50_ms']:.3f}" if entry else "-"


def _mib(value: Optional[int]) -> str:
    return f"{value / 2**20:.0f}" if value else "-"


def accuracy(record: dict) -> str:
    metrics = record.get("metrics") or {}
    return f"{metrics['accuracy']:.4f}" if "accuracy" in metrics else "-"


def rows(records: list[dict]) -> list[str]:
    lines = ["| model | method | hardware | status | acc | p50 bs=1 ms | large bs | p50 ms | TFLOP/s | % of 989 | % of 790 | J/inference | CUDA peak MiB | size MiB | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for record in sorted(records, key=lambda r: (r["cell"]["model"], r["cell"]["hardware"], r["cell"]["method"])):
        cell = record["cell"]
        large = largest_fixed(record)
        flops = flops_per_sample(records, cell["model"])
        rate = tflops(flops, large["batch_size"], large["p50_ms"]) if (large and flops) else None
        energy = (record.get("energy") or {}).get("joules_per_sample")
        memory = (record.get("memory") or {}).get("cuda_max_allocated_bytes")
        size = (record.get("size") or {}).get("bytes_sparse") or (record.get("size") or {}).get("bytes_dense")
        info = record.get("method") or {}  # Method.describe(): name, config and the method's info
        note = record.get("reason") or ", ".join(f"{k}={info[k]}" for k in ("quantized_linears", "bf16_linears", "masked_layers", "skipped_layers", "compiled") if info.get(k) not in (None, []))
        lines.append("| " + " | ".join([
            cell["model"], cell["method"], cell["hardware"], record["status"], accuracy(record),
            _ms(fixed_latency(record, 1)), str(large["batch_size"]) if large else "-", _ms(large),
            f"{rate:.1f}" if rate else "-", f"{100 * rate / NOMINAL_BF16_TFLOPS:.1f}" if rate else "-",
            f"{100 * rate / MEASURED_MATMUL_TFLOPS:.1f}" if rate else "-", f"{energy:.4g}" if energy else "-",
            _mib(memory), _mib(size), str(note)[:120].replace("|", "/"),
        ]) + " |")
    return lines


def main(argv: list[str]) -> int:
    records = load_records(argv)
    print(f"# Device check: {len(records)} records\n")
    gpu = next((r["environment"].get("gpu") for r in records if r.get("environment", {}).get("gpu")), None)
    if gpu:
        print(f"GPU: {json.dumps(gpu)[:300]}\n")
    print("\n".join(rows(records)))
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
