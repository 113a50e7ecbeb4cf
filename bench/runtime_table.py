"""The side-by-side runtime table of BENCHMARKS.md ("Runtimes") from a sweep's records: per method and
runtime, accuracy with its paired difference to the baseline, size, p50 at each batch size and the
interleaved speedup against the PyTorch fp32 eager baseline with its 95 % CI, and the contention
verdict of the latency pass.

    python bench/runtime_table.py results/runtimes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.record import load_record  # noqa: E402

RUNTIME_ORDER = {"pytorch": 0, "onnxruntime": 1, "openvino": 2}


def speedup_text(entry: dict) -> str:
    speedup = entry.get("speedup") or {}
    if speedup.get("value") is None:
        return "–"
    low, high = speedup["ci95"]
    return f"{speedup['value']:.2f}× [{low:.2f}, {high:.2f}]"


def accuracy_text(record: dict) -> str:
    accuracy = (record.get("metrics") or {}).get("accuracy")
    if accuracy is None:
        return "–"
    found = ((record.get("comparison") or {}).get("metrics") or {}).get("accuracy") or {}
    if found.get("difference") is None:
        return f"{100 * accuracy:.1f}"
    low, high = found["ci95"]
    return f"{100 * accuracy:.1f} (Δ{100 * found['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}])"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's results directory (holds records/)")
    args = parser.parse_args()
    records = [r for r in map(load_record, sorted((args.results / "records").glob("*.json"))) if r.get("status") == "ok"]
    records.sort(key=lambda r: (r["cell"]["method"], RUNTIME_ORDER.get(r["runtime"]["name"], 9)))
    sizes = sorted({e["batch_size"] for r in records for e in r["latency"]["fixed"]})
    head = ["method", "runtime", "SST-2 accuracy (paired Δ [95 % CI])", "size w/ emb (%)"]
    head += [f"p50 bs={b} (ms)" for b in sizes] + [f"speedup bs={b}" for b in sizes] + ["latency verdict"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for record in records:
        entries = {e["batch_size"]: e for e in record["latency"]["fixed"]}
        row = [record["cell"]["method"], record["runtime"]["name"], accuracy_text(record),
               f"{record['size']['pct_of_baseline_with_emb']:.1f}"]
        row += [f"{entries[b]['p50_ms']:.1f}" if b in entries else "–" for b in sizes]
        row += [speedup_text(entries[b]) if b in entries else "–" for b in sizes]
        row.append((record["latency"].get("contention") or {}).get("verdict", "–"))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
