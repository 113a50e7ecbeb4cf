"""How long planning takes as a sweep grows: `compbench --dry-run -m ...` end to end (process start,
imports, composing, validating and fingerprinting every cell, resume checks, the printed plan), as a
user waits for it before anything runs (issue #29 part 2: <= 15 s for 1,000 cells on 2 cores).

    python bench/plan_scale.py [--sizes 10,100,1000,5000] [--repeats 1]

Sweeps are built from the offline tasks, every registered method and seeds (and batch settings at
5,000), so they exercise what a real study plans: several data files, every method's config, one
fingerprint per data file. Prints a Markdown table; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ["sst2", "mrpc", "stsb", "cola", "rte"]


def sweep(size: int) -> list[str]:
    """Overrides of a -m sweep of exactly `size` cells."""
    from harness.config import register_configs
    from methods import registry

    register_configs()
    methods = sorted(registry.names())[:25]
    shapes = {10: (2, 5, 1, 1), 100: (5, 5, 4, 1), 1000: (5, 25, 8, 1), 5000: (5, 25, 8, 5)}
    if size not in shapes:
        raise SystemExit(f"--sizes: one of {sorted(shapes)}")
    tasks, n_methods, seeds, batches = shapes[size]
    batch_settings = ["[1]", "[32]", "[1,32]", "[8]", "[16]"][:batches]
    return ["-m", f"task={','.join(TASKS[:tasks])}", f"method={','.join(methods[:n_methods])}",
            f"seed={','.join(str(s) for s in range(1, seeds + 1))}", f"hardware.batch_sizes={','.join(batch_settings)}"]


def plan_seconds(overrides: list[str], workdir: Path) -> tuple[float, int]:
    command = [sys.executable, "-c", "from harness.cli import main; main()", "--dry-run", *overrides,
               f"paths.results_dir={workdir / 'results'}", f"paths.cache_dir={workdir / 'cache'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"compbench --dry-run failed: {proc.stderr[-2000:]}")
    planned = int(proc.stdout.split(" cell(s) planned")[0].rsplit(" ", 1)[-1])
    return elapsed, planned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print("| cells | planning wall (s) | per cell (ms) |\n|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="compbench-plan-scale-") as workdir:
            runs = [plan_seconds(sweep(size), Path(workdir)) for _ in range(args.repeats)]
        best = min(seconds for seconds, _ in runs)
        planned = runs[0][1]
        assert planned == size, f"planned {planned} cells, expected {size}"
        print(f"| {size:,} | {best:.1f} | {1000 * best / size:.1f} |", flush=True)


if __name__ == "__main__":
    main()
