# Two commands on a fresh machine: `make demo` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
# Python caches compiled modules (.pyc) in the venv again where the machine turned that off
# (PYTHONDONTWRITEBYTECODE=1 here): without the cache every cell process spends ~15 s more
# compiling transformers and torch on import (BENCHMARKS.md, "Install").
unexport PYTHONDONTWRITEBYTECODE
# The demo and the tests are offline by design: embedded model + local data.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
# The demo fine-tunes MiniLM on a documented SST-2 subset so that install + sweep end in about 10
# minutes on 2 cores (BENCHMARKS.md, "Demo"): one compressed row per family a practitioner would
# pick, plus a compound; batch 1 only (the survey's latency setting), each timed interleaved with
# the baseline.
DEMO_TRAIN_SAMPLES ?= 12000
DEMO_LR ?= 1e-4
DEMO_EPOCHS ?= 1
# 1 epoch on the subset, word embeddings held fixed (~10 % faster; fused AdamW is the default for
# every fine-tune). The search behind these settings is in BENCHMARKS.md ("Demo fine-tune").
DEMO_CELL = run_name=demo task=sst2 model=minilm_l6 hardware=cpu 'hardware.batch_sizes=[1]' \
	task.finetune.max_train_samples=$(DEMO_TRAIN_SAMPLES) task.finetune.epochs=$(DEMO_EPOCHS) \
	task.finetune.learning_rate=$(DEMO_LR) task.finetune.freeze_word_embeddings=true
DEMO_METHODS ?= baseline,head_prune,ffn_prune,recipe_prune_int8
# dynamic int8 on torch.ao's eager kernels: torchao + Inductor (the method's default) compiles for
# minutes per input shape on a 2-core AVX2 box, longer than the whole demo budget.
DEMO_INT8 ?= method=dynamic_int8 method.backend=torch_ao method.compile=false

.PHONY: install demo test bench clean gpu-wheels

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# uv installs the same pinned set as pip in ~25 s instead of ~4 min (BENCHMARKS.md, "Install");
	# pip does it when uv cannot be had. --native-tls: the system's CA store, as pip uses here.
	# torch first, pinned: this resolves to the machine's local CPU wheel instead of CUDA builds
	# (found through pip's find-links, from PIP_FIND_LINKS or pip's config; uv is handed the same folder).
	# Then the exact tested set (constraints.txt); pyproject.toml only states compatible ranges. The
	# runtimes extra (ONNX Runtime, OpenVINO) is part of it so their tests run here, never skip.
	$(BIN)/pip install -q uv || true
	links="$${PIP_FIND_LINKS:-$$($(BIN)/pip config get global.find-links 2>/dev/null || true)}"; \
	if [ -x $(BIN)/uv ]; then \
		install="$(BIN)/uv pip install -q --python $(BIN)/python --native-tls $${links:+--find-links $$links}"; \
	else install="$(BIN)/pip install -q"; fi; \
	$$install torch==2.13.0 && $$install -c constraints.txt -e ".[dev,runtimes]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(OFFLINE) $(BIN)/compbench -m $(DEMO_CELL) method=$(DEMO_METHODS)
	$(OFFLINE) $(BIN)/compbench $(DEMO_CELL) $(DEMO_INT8)
	$(OFFLINE) $(BIN)/compbench-report results/demo --out results/demo/report --tasks sst2

test: install
	$(OFFLINE) $(BIN)/python -m pytest -q

bench: install
	$(OFFLINE) $(BIN)/python bench/harness_overhead.py

# What the one-shot device check (bench/gpu/check.sh) carries: the wheels the H200 image lacks
# (Python 3.12, manylinux x86-64), the embedded model at fp16, the SST-2 files; fails over 64 MiB.
gpu-wheels: install
	$(BIN)/python bench/gpu/wheelset.py --dir .whl

clean:
	rm -rf $(VENV) results/default results/tmp* .pytest_cache
