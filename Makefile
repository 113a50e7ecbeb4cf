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

.PHONY: install demo test bench clean gpu-wheels package-check docs

# $(call installer,PYTHON): sets $$install to the command that installs into PYTHON's venv. uv
# installs the same pinned set as pip in ~25 s instead of ~4 min (BENCHMARKS.md, "Install"); pip does
# it when uv cannot be had. --native-tls: the system's CA store, as pip uses here. torch's local CPU
# wheel is found through pip's find-links (PIP_FIND_LINKS or pip's config); uv is handed the same folder.
define installer
links="$${PIP_FIND_LINKS:-$$($(BIN)/pip config get global.find-links 2>/dev/null || true)}"; \
if [ -x $(BIN)/uv ]; then \
	install="$(BIN)/uv pip install -q --python $(1) --native-tls $${links:+--find-links $$links}"; \
else install="$(1) -m pip install -q"; fi
endef

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: this resolves to the machine's local CPU wheel instead of CUDA builds.
	# Then the exact tested set (constraints.txt); pyproject.toml only states compatible ranges. The
	# runtimes extra (ONNX Runtime, OpenVINO) is part of it so their tests run here, never skip.
	$(BIN)/pip install -q uv || true
	$(call installer,$(BIN)/python); \
	$$install torch==2.13.0 && $$install -c constraints.txt -e ".[dev,runtimes]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(OFFLINE) $(BIN)/compbench -m $(DEMO_CELL) method=$(DEMO_METHODS)
	$(OFFLINE) $(BIN)/compbench $(DEMO_CELL) $(DEMO_INT8)
	$(OFFLINE) $(BIN)/compbench-report results/demo --out results/demo/report --tasks sst2

test: install
	$(OFFLINE) $(BIN)/python -m pytest -q

# The package as a user installs it: a wheel built from this checkout, installed (not editable) into
# a fresh venv, then one tiny cell and its report run from a folder outside the checkout. CI runs it.
PACKAGE_CHECK_DIR ?= /tmp/compbench-package-check
PACKAGE_DATA_ROOT ?= $(or $(COMPBENCH_DATA_ROOT),$(abspath ../shared/data))
TINY_CELL = task=sst2 method=dynamic_int8 method.backend=torch_ao method.compile=false \
	task.finetune.max_train_samples=64 task.max_eval_samples=32 'hardware.batch_sizes=[1]' \
	hardware.min_iterations=3 hardware.min_duration_s=0 measure.real_length_latency=false \
	measure.energy=false measure.memory=false measure.bootstrap=50
package-check: install
	rm -rf $(PACKAGE_CHECK_DIR) && mkdir -p $(PACKAGE_CHECK_DIR)
	if [ -x $(BIN)/uv ]; then $(BIN)/uv build -q --wheel --out-dir $(PACKAGE_CHECK_DIR)/dist .; \
	else $(BIN)/pip wheel -q --no-deps -w $(PACKAGE_CHECK_DIR)/dist .; fi
	$(PYTHON) -m venv $(PACKAGE_CHECK_DIR)/venv
	$(call installer,$(PACKAGE_CHECK_DIR)/venv/bin/python); \
	$$install torch==2.13.0 && $$install -c constraints.txt "$$(ls $(PACKAGE_CHECK_DIR)/dist/*.whl)"
	cd $(PACKAGE_CHECK_DIR) && $(OFFLINE) COMPBENCH_DATA_ROOT=$(PACKAGE_DATA_ROOT) COMPBENCH_CACHE=$(PACKAGE_CHECK_DIR)/cache \
		venv/bin/compbench $(TINY_CELL) && \
		venv/bin/compbench-report results/default --out report --tasks sst2 && test -s report/table1.md && \
		venv/bin/python -c "from harness import api; print(len(api.load_records('results/default')), 'record(s) via the Python API')"
	rm -rf $(PACKAGE_CHECK_DIR)

# The docs site (mkdocs.yml, docs/): strict, so a broken link or anchor fails the build. CI runs it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d site

bench: install
	$(OFFLINE) $(BIN)/python bench/harness_overhead.py

# What the one-shot device check (bench/gpu/check.sh) carries: the wheels the H200 image lacks
# (Python 3.12, manylinux x86-64), the embedded model at fp16, the SST-2 files; fails over 64 MiB.
gpu-wheels: install
	$(BIN)/python bench/gpu/wheelset.py --dir .whl

clean:
	rm -rf $(VENV) results/default results/tmp* .pytest_cache
