"""Runtimes (harness/runtimes/): the converted artifact is what is scored, timed and sized; fp32
conversions match PyTorch; int8 uses each runtime's own quantizer and stays close to fp32; a missing
runtime or an unsupported method x runtime is one line; pytorch records keep their names and hashes."""

import importlib.util
import tempfile

import pytest
import torch

from harness.config import RuntimeConfig
from harness.errors import ConfigError
from harness.finetune import CACHE_VERSION, stable_hash
from harness.plan import plan_cell
from harness.preflight import refuse_unsupported
from harness.record import record_path
from harness.runner import cell_names, config_dict, config_hash, execute, needs_train_data
from harness.tasks import check_task_data
from methods.base import RuntimeQuantization

RUNTIMES = ("onnxruntime", "openvino")
QUICK = ["task.finetune.max_train_samples=64", "task.finetune.epochs=1", "task.max_eval_samples=48",
         "hardware.batch_sizes=[1]", "hardware.min_iterations=2", "hardware.min_duration_s=0", "hardware.warmup=1",
         "measure.bootstrap=0", "measure.energy=false", "measure.memory=false", "measure.real_length_latency=false",
         "isolate=false"]


def tiny_cell(compose, tiny_bert_dir, *extra):
    return compose("model=local", f"model.path={tiny_bert_dir}", "task=sst2", *QUICK, *extra)


def run(cell):
    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    return execute(cell, config_hash(cell, fingerprints), fingerprints)


def needs(runtime):
    modules = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
    return pytest.mark.skipif(importlib.util.find_spec(modules[runtime]) is None, reason=f"{runtime} not installed (.[runtimes])")


# --------------------------------------------------------------------------- validation (no model)
def test_missing_runtime_is_one_line_with_the_install_command(compose, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    with pytest.raises(ConfigError) as err:
        compose("runtime=onnxruntime")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("runtime: onnxruntime needs onnxruntime, not installed")
    assert 'pip install -e ".[runtimes]"' in message


def test_unknown_runtime_and_bad_settings_are_refused(compose):
    with pytest.raises(ConfigError, match=r"^runtime: unknown choice 'tensorrt'"):
        compose("runtime=tensorrt")
    with pytest.raises(ConfigError, match=r"^runtime.opset: must be an integer in \[14, 20\]"):
        compose("runtime=onnxruntime", "runtime.opset=9")


@pytest.mark.parametrize("overrides, problem", [
    (["method=weight_only_int8"], "unsupported on runtime onnxruntime: weight_only_int8 runs on pytorch only"),
    (["hardware.compile=compile"], "hardware.compile=compile is a PyTorch setting"),
])
def test_unsupported_combination_is_one_line_alone_and_a_record_in_a_sweep(compose, overrides, problem):
    cell = compose("runtime=onnxruntime", *overrides, "isolate=false")
    plan = plan_cell(cell)
    with pytest.raises(ConfigError) as err:
        refuse_unsupported(plan.unsupported, plan.unsupported_field)
    assert str(err.value).startswith("runtime: ") and problem in str(err.value) and "\n" not in str(err.value)
    record = execute(cell, "0" * 16, {})  # refused before any model or data is loaded
    assert record["status"] == "unsupported" and problem in record["reason"]
    assert record["cell"]["runtime"] == "onnxruntime" and record["runtime"] == {"name": "onnxruntime"}


def test_pytorch_cells_keep_their_record_names_and_hashes(compose):
    cell = compose("method=baseline")
    fingerprints = {"glue/SST-2/dev.tsv": "abc"}
    # run flags (memory_limit_gb came later) and the default runtime are never hashed
    before_the_axis = {k: v for k, v in config_dict(cell).items() if k not in ("paths", "force", "isolate", "run_name", "runtime", "memory_limit_gb")}
    del before_the_axis["task"]["finetune"]["precision"]  # added later, hashed only when not fp32
    for key in ("fresh_process_retries", "latency_processes"):  # added later (issue 30), hashed only when changed
        del before_the_axis["measure"][key]
    assert config_hash(cell, fingerprints) == stable_hash({"config": before_the_axis, "data": fingerprints, "cache_version": CACHE_VERSION})
    path = record_path("r", cell_names(cell), config_hash(cell, fingerprints))
    assert path.name.count("__") == 4 and "pytorch" not in path.name
    other = compose("method=baseline", "runtime=openvino")
    other_path = record_path("r", cell_names(other), config_hash(other, fingerprints))
    assert "__openvino__" in other_path.name and config_hash(other, fingerprints) != config_hash(cell, fingerprints)
    assert config_hash(compose("method=baseline", "task.finetune.precision=bf16"), fingerprints) != config_hash(cell, fingerprints)


# ------------------------------------------------------------------------ conversion (tiny models)
def tiny_model(head="sequence"):
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=2)
    return (BertForSequenceClassification if head == "sequence" else BertForQuestionAnswering)(config).eval()


def batches(count=3, rows=8):
    generator = torch.Generator().manual_seed(1)
    out = []
    for i in range(count):
        length = 9 + 5 * i  # different sequence lengths: the axes are dynamic
        ids = torch.randint(0, 1000, (rows, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[: rows // 2, length - 3:] = 0  # padded rows
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    return out


def convert(runtime, model, quantization=None, outputs=("logits",)):
    from harness.runtimes import build_runtime
    from harness.runtimes.base import output_difference

    work_dir = tempfile.TemporaryDirectory()
    converted, section = build_runtime(RuntimeConfig(name=runtime), {"intra_op": 1, "inter_op": 1}).prepare(
        model, quantization, batches(1, 2)[0], list(outputs), work_dir)
    return converted, section, output_difference(model, converted, batches(), "test")


# Conversions take seconds (export, optimizer, quantizer, plugin compile), so they are marked slow.
@pytest.mark.slow
@pytest.mark.parametrize("runtime", [pytest.param(r, marks=needs(r)) for r in RUNTIMES])
def test_fp32_conversion_matches_pytorch(runtime):
    model = tiny_model()
    converted, section, check = convert(runtime, model)
    assert check["max_abs_diff"] < 1e-4 and check["prediction_agreement"] == 1.0
    assert section["threads"]["intra_op"] == 1 and section["quantization"] is None
    # the module-like call evaluation uses, on a shape never exported
    batch = batches(1, 3)[0]
    with torch.inference_mode():
        assert torch.allclose(converted(**batch).logits, model(**batch).logits, atol=1e-4)
    assert section["weight_bytes"] == pytest.approx(sum(p.numel() * 4 for p in model.parameters()), rel=0.05)


@pytest.mark.slow
@needs("onnxruntime")
def test_question_answering_exports_both_span_outputs():
    model = tiny_model("qa")
    converted, section, check = convert("onnxruntime", model, outputs=("start_logits", "end_logits"))
    assert set(check["max_abs_diff_by_output"]) == {"start_logits", "end_logits"} and check["max_abs_diff"] < 1e-4
    assert section["dynamic_axes"]["start_logits"] == {0: "batch", 1: "sequence"}


@pytest.mark.slow
@pytest.mark.parametrize("runtime, scheme", [pytest.param(r, s, marks=needs(r)) for r in RUNTIMES for s in ("int8_dynamic", "int8_static")])
def test_int8_uses_the_runtimes_quantizer_and_keeps_the_head_float(runtime, scheme):
    model = tiny_model()
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())  # what the fp32 artifact weighs (test above)
    calibration = batches(4) if scheme == "int8_static" else None
    converted, section, check = convert(runtime, model, RuntimeQuantization(scheme, calibration))
    quantization = section["quantization"]
    assert quantization["tool"].startswith("onnxruntime.quantization" if runtime == "onnxruntime" else "nncf.")
    # int8 encoder weights: smaller than fp32 (the embeddings stay float), outputs still close
    assert section["weight_bytes"] < 0.9 * fp32_bytes
    assert 0 < check["max_abs_diff"] < 0.05 and check["prediction_agreement"] >= 0.9
    if runtime == "onnxruntime":
        assert len(quantization["quantized_nodes"]) >= 6  # 2 layers x (attention out, intermediate, output) at least
        assert not any("/classifier/" in name for name in quantization["quantized_nodes"])
    else:
        assert quantization["scheme"] == ("int8_weight_only" if scheme == "int8_dynamic" else "int8_static")


# ------------------------------------------------------------------ end to end on real SST-2 rows
@pytest.mark.slow
@pytest.mark.parametrize("runtime, method", [pytest.param("onnxruntime", "dynamic_int8", marks=needs("onnxruntime")),
                                             pytest.param("openvino", "static_int8", marks=needs("openvino"))])
def test_cells_on_a_runtime_measure_the_converted_artifact(compose, tiny_bert_dir, runtime, method):
    torch_record = run(tiny_cell(compose, tiny_bert_dir))
    fp32 = run(tiny_cell(compose, tiny_bert_dir, f"runtime={runtime}"))
    calibration = ["method.calibration_samples=64"] if method == "static_int8" else []
    int8 = run(tiny_cell(compose, tiny_bert_dir, f"runtime={runtime}", f"method={method}", *calibration))
    for record in (fp32, int8):
        assert record["status"] == "ok", record["reason"]
        assert record["cell"]["runtime"] == record["config"]["runtime"]["name"] == record["runtime"]["name"] == runtime
        assert record["runtime"]["threads"]["intra_op"] == record["environment"]["threads"]["intra_op"]
        assert record["latency"]["mode"] == runtime and record["latency"]["fixed"][0]["p50_ms"] > 0
        assert record["artifact"]["digest_before_accuracy"] == record["artifact"]["digest_after_measurement"]
        assert record["size"]["disk_bytes"] >= record["size"]["bytes_dense"] > 0
        assert record["flops"]["flops_per_sample"] == torch_record["flops"]["flops_per_sample"]
    # fp32 through the runtime: PyTorch's predictions, hence its accuracy
    assert fp32["runtime"]["output_check"]["max_abs_diff"] < 1e-4
    assert fp32["metrics"]["accuracy"] == pytest.approx(torch_record["metrics"]["accuracy"], abs=1e-9)
    # int8: the runtime's quantizer on the fp32 model, accuracy close to fp32
    assert int8["runtime"]["quantization"] is not None and int8["method"]["backend"] == runtime
    assert abs(int8["metrics"]["accuracy"] - fp32["metrics"]["accuracy"]) <= 0.05
    assert int8["size"]["bytes_without_embeddings"] < fp32["size"]["bytes_without_embeddings"]


@pytest.mark.slow
@needs("onnxruntime")
def test_a_compound_runs_its_float_steps_then_the_runtimes_int8(compose, tiny_bert_dir):
    """A pipeline on onnxruntime: the pruning step shapes the exported graph, ORT's quantizer does its int8 step."""
    fp32 = run(tiny_cell(compose, tiny_bert_dir, "runtime=onnxruntime"))
    compound = run(tiny_cell(compose, tiny_bert_dir, "runtime=onnxruntime", "method=pipeline", "method.steps=[ffn_prune,dynamic_int8]"))
    assert compound["status"] == "ok", compound["reason"]
    assert [s["name"] for s in compound["method"]["steps"]] == ["ffn_prune", "dynamic_int8"]
    assert compound["method"]["steps"][1]["backend"] == "onnxruntime" and compound["runtime"]["quantization"] is not None
    assert compound["flops"]["flops_per_sample"] < fp32["flops"]["flops_per_sample"]  # counted on the pruned model
    assert compound["size"]["bytes_without_embeddings"] < 0.5 * fp32["size"]["bytes_without_embeddings"]


@pytest.mark.slow
@pytest.mark.parametrize("runtime", [pytest.param(r, marks=needs(r)) for r in RUNTIMES])
def test_structurally_pruned_models_export_as_plain_graphs(runtime):
    from methods.structured import encoder_layers, keep_heads, keep_layers, keep_neurons

    model = tiny_model()
    keep_heads(encoder_layers(model)[0], [1, 3])  # layers now differ in head count
    keep_neurons(encoder_layers(model)[1], list(range(0, 64, 2)))
    reference = tiny_model()
    keep_layers(reference, [1])
    for pruned in (model, reference):
        converted, section, check = convert(runtime, pruned)
        assert check["max_abs_diff"] < 1e-4 and check["prediction_agreement"] == 1.0


def test_reports_keep_runtimes_apart_and_compare_them_with_pytorch_fp32():
    import pandas as pd

    from harness.report.flatten import flatten_record
    from harness.report.speedup import add_speedups

    def record(method, runtime, p50):
        cell = {"task": "sst2", "model": "m", "method": method, "hardware": "cpu"}
        if runtime:  # records from before the runtime axis have none: they are pytorch
            cell["runtime"] = runtime
        config = {"task": {"name": "sst2", "max_seq_length": 128, "primary_metric": "accuracy"}, "model": {"name": "m"},
                  "hardware": {"name": "cpu", "device": "cpu", "compile": "eager"}, "method": {"name": method}, "seed": 42}
        category = "Baseline" if method == "baseline" else "Quantization"
        return {"status": "ok", "cell": cell, "config": config, "environment": {"fingerprint": "f"}, "data": {},
                "method": {"name": method, "category": category, "provenance": ""},
                "latency": {"fixed": [{"batch_size": 1, "seq_len": 128, "p50_ms": p50}]}}

    rows = pd.DataFrame([flatten_record(record(*r), "x") for r in
                         [("baseline", None, 10.0), ("baseline", "onnxruntime", 5.0), ("dynamic_int8", "openvino", 4.0)]])
    assert list(rows["method"]) == ["baseline", "baseline [onnxruntime]", "dynamic_int8 [openvino]"]
    assert list(rows["runtime"]) == ["pytorch", "onnxruntime", "openvino"]
    assert list(add_speedups(rows)["speedup"]) == pytest.approx([1.0, 2.0, 2.5])


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["method=weight_only_int8", "runtime=onnxruntime"],
     "compbench: error: runtime: unsupported on runtime onnxruntime: weight_only_int8 runs on pytorch only; "
     "pick another method, runtime or hardware (a -m sweep records this cell as unsupported)"),
    (["runtime=openvino"], 'compbench: error: runtime: openvino needs openvino, not installed: pip install -e ".[runtimes]"'),
])
def test_cli_refuses_in_one_line_with_exit_2(args, message, tmp_path, data_root, monkeypatch, capsys):
    import importlib.util

    from cli_runs import run_main

    if "runtime=openvino" in args:  # as on a machine without it
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else find_spec(name, *a))
    proc = run_main([*args, f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path, data_root, monkeypatch, capsys)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == message and proc.stderr.count("compbench: error") == 1
    assert not (tmp_path / "results").exists()
