"""The device check's GPU sweep: each stage is one `compbench -m ...` argument list.

    python3 bench/gpu/sweep.py STAGE DATA_ROOT RESULTS_DIR CACHE_DIR   # runs the stage through harness.cli

Stages (check.sh runs them in this order, each under its own time limit):
    bert    bert_base random init, bf16: eager (every measurement: latency at batch 1 and 256, CUDA
            memory, NVML energy, FLOPs), torch.compile and CUDA graphs (latency only: FLOPs and
            energy do not depend on the wrapper, and each extra pass would compile again)
    minilm  the embedded MiniLM fine-tuned on an SST-2 subset on the GPU, then fp16, bf16, fp8,
            int4 weight-only, int8 weight-only and 2:4 on it, with accuracy on the whole dev set

Timing settings are cut from the hardware configs' (min 5 s, max 60 s per measurement) to fit the
device check's 8 minutes: at least 50 calls and 1 s per measurement, at most 8 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# per-measurement budget: enough calls for a stable median, little wall time
TIMING = ["hardware.warmup=10", "hardware.min_iterations=50", "hardware.min_duration_s=1.0", "hardware.max_duration_s=8.0",
          "measure.bootstrap=200"]
LARGE_BATCH = 256  # throughput point: bert-base at 128 tokens fills an H200 well before this
FINETUNE_SAMPLES = 8000  # SST-2 subset: about 250 steps at batch 32, seconds on an H200
# the methods this check exists for first: a stage cut short loses the plain casts, not these
GPU_METHODS = ("sparse_2of4", "fp8", "int4_weight_only", "weight_only_int8", "fp16", "bf16")
LATENCY_ONLY = ["measure.memory=false", "measure.energy=false", "measure.flops=false"]

BERT_COMMON = ["model=bert_base_uncased", "model.init=random", "task=sst2", "method=baseline", "hardware=cuda",
               f"hardware.batch_sizes=[1,{LARGE_BATCH}]", *TIMING]
STAGES: dict[str, list[list[str]]] = {
    "bert": [
        [*BERT_COMMON, "hardware.name=cuda_eager", "hardware.compile=eager", "measure.real_length_latency=false"],
        [*BERT_COMMON, "hardware.name=cuda_compile", "hardware.compile=compile", "measure.real_length_latency=false", *LATENCY_ONLY],
        # real-length batches here: 32 shapes, the case the per-shape CUDA-graph warm-up is for
        [*BERT_COMMON, "hardware.name=cuda_graphs", "hardware.compile=cudagraphs", *LATENCY_ONLY],
    ],
    "minilm": [
        ["-m", "model=minilm_l6", "task=sst2", "hardware=cuda", f"method=baseline,{','.join(GPU_METHODS)}",
         f"task.finetune.max_train_samples={FINETUNE_SAMPLES}", "task.finetune.epochs=1",
         f"hardware.batch_sizes=[1,{LARGE_BATCH}]", "measure.real_length_latency=false", *TIMING],
    ],
}


def stage_argvs(stage: str, data_root: str, results_dir: str, cache_dir: str) -> list[list[str]]:
    """Complete argument lists for `compbench` (paths, run name, isolation) for one stage."""
    paths = [f"paths.data_root={data_root}", f"paths.results_dir={results_dir}", f"paths.cache_dir={cache_dir}",
             f"run_name=gpu_check_{stage}"]
    argvs = []
    for argv in STAGES[stage]:
        flags = [a for a in argv if a.startswith("-")]
        overrides = [a for a in argv if not a.startswith("-")]
        argvs.append([*(flags or ["-m"]), *overrides, *paths])
    return argvs


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in STAGES:
        print(f"usage: sweep.py {{{'|'.join(STAGES)}}} DATA_ROOT RESULTS_DIR CACHE_DIR", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import subprocess

    worst = 0
    for cell_argv in stage_argvs(*argv):
        # one process per argument list: harness.cli.main ends with sys.exit
        code = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *cell_argv], cwd=REPO).returncode
        worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
