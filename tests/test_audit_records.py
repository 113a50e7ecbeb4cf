"""Consistency audit: every CPU method run through the real runner on a tiny BERT, every record field
checked against the artifact's structure (issue 17 part 2).

One sweep per test session (module fixture), then one check per concern over all its records:
  * FLOPs are a real count (never 0 or missing), 2 x MACs, split by precision without loss;
  * nonzero parameters <= parameters; sparse bytes < dense bytes only when zeros exist;
  * at the same shapes, fewer parameters never means more FLOPs than the baseline, and methods that
    keep every shape (quantization, unstructured pruning, vocabulary pruning) keep the baseline's FLOPs;
  * memory and energy are positive figures of the same batch.
Latency runs at its minimum (2 iterations, fixed length only) and energy is off; compiled backends are audited uncompiled here (their
FLOPs on a compiled module are tested in test_measure_flops_forms).
"""

import pytest

from harness.runner import config_hash, execute, needs_train_data
from harness.tasks import check_task_data

pytestmark = pytest.mark.slow  # ~20 tiny cells through the runner: minutes on the shared 2-core box

QUICK = ["task.finetune.max_train_samples=32", "task.finetune.epochs=1", "task.max_eval_samples=16",
         "task.max_seq_length=32", "hardware.batch_sizes=[1]", "hardware.min_iterations=2",
         "hardware.min_duration_s=0", "hardware.warmup=0", "measure.bootstrap=20", "measure.energy=false",
         "measure.memory=true", "measure.real_length_latency=false", "isolate=false"]
TRAINING = ["method.train_samples=64"]
CALIBRATED = ["method.calibration_samples=8", "method.batch_size=4"]
CELLS = {
    "baseline": [],
    "bf16": [],
    "dynamic_int8": ["method.backend=torchao", "method.compile=false"],  # explicit: auto picks torch_ao on AVX2
    "dynamic_int8_torch_ao": ["method=dynamic_int8", "method.backend=torch_ao"],
    "dynamic_int8_pt2e": ["method=dynamic_int8", "method.backend=pt2e", "method.compile=false"],
    "static_int8": ["method.compile=false", *CALIBRATED],
    "weight_only_int8": ["method.compile=false"],
    "magnitude": [],
    "head_prune": CALIBRATED,
    "ffn_prune": CALIBRATED,
    "layer_drop": ["method.drop=1"],
    "low_rank": ["method.rank=8"],
    "vocab_prune": [],
    "early_exit": [*TRAINING, "method.stats_samples=16"],
    "kd_logits": TRAINING,
    "kd_hidden": TRAINING,
    "kd_attention": TRAINING,
    "movement_prune": TRAINING,
    "gradual_magnitude": TRAINING,
    "qat_int8": [*TRAINING, "method.compile=false"],
    "pipeline": ["method.steps=[{name:layer_drop,params:{drop:1}},head_prune,{name:dynamic_int8,params:{compile:false}}]"],
}
SAME_SHAPES = {"baseline", "bf16", "dynamic_int8", "dynamic_int8_torch_ao", "dynamic_int8_pt2e", "static_int8",
               "weight_only_int8", "magnitude", "vocab_prune", "movement_prune", "gradual_magnitude", "qat_int8"}
FEWER_SHAPES = {"head_prune", "ffn_prune", "layer_drop", "low_rank", "pipeline", "kd_logits", "kd_hidden", "kd_attention"}


@pytest.fixture(scope="module")
def records(data_root, tiny_bert_dir, tmp_path_factory):
    from harness.cli import compose_cell
    from harness.config import register_configs

    register_configs()
    root = tmp_path_factory.mktemp("audit")
    out = {}
    for name, extra in CELLS.items():
        method = [] if any(e.startswith("method=") for e in extra) else [f"method={name}"]
        cell = compose_cell([f"paths.data_root={data_root}", f"paths.results_dir={root / 'results'}",
                             f"paths.cache_dir={root / 'cache'}", "model=local", f"model.path={tiny_bert_dir}",
                             "task=sst2", *QUICK, *method, *extra])
        fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
        out[name] = execute(cell, config_hash(cell, fingerprints), fingerprints)
    return out


def measured(records):
    return {name: r for name, r in records.items() if r["status"] == "ok"}


def test_every_cpu_method_runs_or_says_why(records):
    for name, record in records.items():
        assert record["status"] in ("ok", "unsupported"), f"{name}: {record['reason']}"
        if record["status"] == "unsupported":
            assert record["reason"] and name == "bf16", f"{name} unsupported on CPU: {record['reason']}"


def test_flops_are_real_counts_never_zero(records):
    for name, record in measured(records).items():
        flops = record["flops"]
        assert flops["flops_per_sample"] and flops["flops_per_sample"] > 0, f"{name}: {flops.get('reason')}"
        assert flops["real_length_flops_per_sample"] > 0, name
        assert flops["flops_per_sample"] == pytest.approx(2 * flops["macs_per_sample"]), name
        assert sum(flops["macs_by_precision"].values()) == pytest.approx(flops["macs_per_sample"]), name
        assert flops["method"] in ("hooks", "fx-graph"), name


def test_int8_methods_count_int8_macs(records):
    for name in ("dynamic_int8", "dynamic_int8_torch_ao", "dynamic_int8_pt2e", "static_int8", "weight_only_int8", "qat_int8"):
        record = measured(records).get(name)
        if record:
            assert record["flops"]["macs_by_precision"].get("int8", 0) > 0, (name, record["flops"]["macs_by_precision"])


def test_flops_follow_the_shapes(records):
    ok = measured(records)
    base = ok["baseline"]["flops"]["flops_per_sample"]
    for name, record in ok.items():
        flops = record["flops"]["flops_per_sample"]
        if name in SAME_SHAPES:
            assert flops == pytest.approx(base), f"{name} keeps every shape but counts {flops} vs {base}"
        if name in FEWER_SHAPES:
            assert flops < base, f"{name} removes computation but counts {flops} >= {base}"
        if record["size"]["params_total"] < ok["baseline"]["size"]["params_total"] and name != "early_exit":
            assert flops <= base * (1 + 1e-9), f"{name}: fewer parameters, more FLOPs"


def test_sizes_are_consistent_with_the_weights(records):
    for name, record in measured(records).items():
        size = record["size"]
        total, nonzero = size["params_total"], size.get("nonzero_params_total")
        assert 0 < size["bytes_without_embeddings"] < size["bytes_dense"], name
        if nonzero is not None:
            assert nonzero <= total, name
            if size.get("bytes_sparse") is not None and size["bytes_sparse"] < size["bytes_dense"]:
                assert nonzero < total, f"{name}: sparse storage smaller than dense without any zero"
        assert size["pct_of_baseline_with_emb"] > 0 and size["pct_of_baseline_without_emb"] > 0, name
    ok = measured(records)
    for name in ("magnitude", "movement_prune", "gradual_magnitude"):
        if name in ok:
            size = ok[name]["size"]
            assert size["nonzero_params_total"] < size["params_total"], f"{name} left no zeros"


def test_memory_and_energy_are_figures_of_the_same_batch(records):
    """Energy is off in this sweep (seconds per cell); when a record has it, the same checks apply."""
    for name, record in measured(records).items():
        memory, energy = record["memory"], record["energy"]
        assert memory and memory["peak_rss_bytes"] >= memory["baseline_rss_bytes"] > 0, name
        assert memory["batch_size"] == 1 and memory["seq_len"] == 32, name
        if energy:
            assert energy["batch_size"] == memory["batch_size"], name
            assert (energy.get("joules_per_sample") or 0) > 0 or energy.get("reason"), f"{name}: no energy and no reason"
