"""Labels are written with the record (harness.labels): the preset the user chose, what they changed
from it, and a short label of at most 40 characters; the report reads them and never re-derives them."""

import json
from pathlib import Path

import pytest

from harness import labels
from harness.labels import MAX_LENGTH, record_label
from harness.report import load_records
from harness.report.build import build_report

FIXTURES = Path(__file__).parent / "fixtures" / "records"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "results"
MAGNITUDE = {"_target_": "methods.pruning.Magnitude", "name": "magnitude", "recover_epochs": 1.0, "sparsity": 0.5,
             "scope": "global", "include_embeddings": False}
INT8 = {"_target_": "methods.quantization.DynamicInt8", "name": "dynamic_int8", "backend": "torch_ao", "compile": False}


def test_a_preset_at_its_defaults_is_its_name():
    assert record_label(MAGNITUDE) == {"preset": "magnitude", "changed": {}, "short": "magnitude"}
    recipe = {"_target_": "methods.pipeline.Pipeline", "name": "recipe_prune_int8", "recover_epochs": 0,
              "steps": ["head_prune", "ffn_prune", {"name": "dynamic_int8", "params": {"backend": "torch_ao", "compile": False}}]}
    assert record_label(recipe)["short"] == "recipe_prune_int8"


def test_changed_parameters_are_relative_to_the_preset():
    label = record_label({**MAGNITUDE, "sparsity": 0.7, "recover_epochs": 0})
    assert label["changed"] == {"sparsity": 0.7, "recover_epochs": 0}
    assert label["short"] == "magnitude (rec=0,s=0.7)"  # 42 characters with the full keys: the short ones


def test_what_has_no_effect_on_the_runtime_is_left_out():
    """On ONNX Runtime its own quantizer runs: the PyTorch backend an int8 step names changes nothing."""
    assert record_label(INT8)["short"] == "dynamic_int8 (be=torch_ao,cmp=false)"  # on PyTorch the backend matters
    assert record_label(INT8, "onnxruntime") == {"preset": "dynamic_int8", "changed": {}, "short": "dynamic_int8 [ort]"}
    compound = {"_target_": "methods.pipeline.Pipeline", "name": "pipeline", "recover_epochs": 1,
                "steps": ["layer_drop", {"name": "dynamic_int8", "params": {"backend": "torch_ao", "compile": False}}]}
    assert record_label(compound, "onnxruntime")["short"] == "ld+int8 (recover_epochs=1) [ort]"
    assert "torch_ao" in json.dumps(record_label(compound, "pytorch")["changed"])


def test_a_label_never_exceeds_the_limit_and_the_legend_keeps_the_change():
    kd = {"name": "kd_logits", "params": {"epochs": 3, "student_layers": 2, "alpha": 0.9, "temperature": 4.0}}
    compound = {"_target_": "methods.pipeline.Pipeline", "name": "pipeline", "recover_epochs": 1,
                "steps": [kd, {"name": "head_prune", "params": {"fraction": 0.5}}, {"name": "ffn_prune", "params": {"fraction": 0.5}}, "dynamic_int8"]}
    label = record_label(compound, "openvino")
    assert len(label["short"]) <= MAX_LENGTH and label["short"].startswith("kd+hp+ffn+int8 #") and label["short"].endswith(" [ov]")
    assert label["changed"]["steps"][0] == kd
    other = record_label({**compound, "recover_epochs": 2}, "openvino")
    assert other["short"] != label["short"]  # the digest tells two compounds apart


def _labelled_run(tmp_path, method_config, label):
    run = tmp_path / "run" / "records"
    run.mkdir(parents=True)
    source = next(FIXTURES.glob("sst2__bert_base_uncased__magnitude__cpu__*.json"))
    record = json.loads(source.read_text())
    record["config"]["method"] = method_config
    record["method"]["label"] = label
    (run / source.name).write_text(json.dumps(record))
    return run.parent


def test_a_changed_default_does_not_relabel_an_old_record(tmp_path, monkeypatch):
    config = {**MAGNITUDE, "sparsity": 0.6}
    written = record_label(config)
    assert written["short"] == "magnitude (sparsity=0.6)"
    run = _labelled_run(tmp_path, config, written)
    real = labels.preset_values
    monkeypatch.setattr(labels, "preset_values", lambda preset, target: {**real(preset, target), "sparsity": 0.6})
    assert record_label(config)["short"] == "magnitude"  # what today's code would call it ...
    records, _ = load_records([str(run)])
    assert list(records["label"]) == ["magnitude (sparsity=0.6)"]  # ... is not what the report shows
    report = build_report([str(run)], tmp_path / "report", tasks=("sst2",), plots=False)
    assert list(report.labels["Label"]) == ["magnitude (sparsity=0.6)"]
    assert list(report.labels["Changed from the preset"]) == ["sparsity=0.6"]
    assert "magnitude (sparsity=0.6)" in (tmp_path / "report" / "labels.csv").read_text()


def test_two_configurations_never_share_a_label(tmp_path):
    run = _labelled_run(tmp_path, {**MAGNITUDE, "sparsity": 0.6}, {"preset": "magnitude", "changed": {"sparsity": 0.6}, "short": "magnitude #x"})
    twin = json.loads(next((run / "records").glob("*.json")).read_text())
    twin["config"]["method"]["sparsity"], twin["config_hash"] = 0.7, "f" * 64
    twin["method"]["label"] = {"preset": "magnitude", "changed": {"sparsity": 0.7}, "short": "magnitude #x"}
    (run / "records" / "twin.json").write_text(json.dumps(twin))
    records, _ = load_records([str(run)])
    assert records["label"].nunique() == 2 and records["label"].str.startswith("magnitude #x ·").all()


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="no committed example records")
def test_every_committed_record_is_labelled_within_the_limit():
    records, _ = load_records([str(EXAMPLES)])
    assert len(records) > 100
    assert records["preset"].notna().all()  # every record written with its label, or migrated once
    too_long = records.loc[records["label"].str.len() > MAX_LENGTH, "label"].tolist()
    assert too_long == []


def test_the_writer_labels_every_record(tmp_path):
    """runner.described: the record's method section carries the label, from the cell's runtime."""
    from harness.runner import described
    from methods.base import build_method, build_method_config

    class Cell:
        class runtime:
            name = "onnxruntime"

    method = build_method(build_method_config(INT8))
    section = described(method, Cell)
    assert section["label"] == {"preset": "dynamic_int8", "changed": {}, "short": "dynamic_int8 [ort]"}
