"""The artifact registry: formats and structures registered by their owner modules, imported lazily."""

import importlib
import json
import sys

import pytest
import torch
from methods_helpers import LAYERS, eval_batch, logits, tiny_model

from methods import artifacts
from methods.artifacts import ARTIFACT_FILE, load_artifact, register_format, register_structure, write_marker
from methods.base import Baseline, MethodConfig
from methods.surgery import keep_layers


def test_default_save_writes_a_safetensors_marker_and_reloads_exactly(tmp_path):
    model = tiny_model()
    Baseline(MethodConfig()).save(model, str(tmp_path))
    assert json.loads((tmp_path / ARTIFACT_FILE).read_text()) == {"format": "safetensors", "owners": []}
    assert torch.equal(logits(load_artifact(tmp_path), eval_batch()), logits(model, eval_batch()))


def test_a_registered_format_dispatches_to_its_loader(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "_FORMATS", dict(artifacts._FORMATS))
    register_format("test_format")(lambda directory, config, marker: ("loaded", directory, marker["extra"]))
    model = tiny_model()
    model.config.save_pretrained(tmp_path)
    write_marker(str(tmp_path), model.config, format="test_format", extra=7)
    assert load_artifact(tmp_path) == ("loaded", str(tmp_path), 7)


def test_unknown_format_is_named_with_the_known_ones(tmp_path):
    tiny_model().config.save_pretrained(tmp_path)
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps({"format": "mystery", "owners": []}))
    with pytest.raises(ValueError, match=r"unknown artifact format 'mystery' \(known: .*safetensors"):
        load_artifact(tmp_path)


def test_a_marker_cannot_import_modules_outside_the_trusted_packages(tmp_path, monkeypatch):
    flag = tmp_path / "imported"
    (tmp_path / "untrusted_owner.py").write_text(f"open({str(flag)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    artifact = tmp_path / "artifact"
    tiny_model().config.save_pretrained(artifact)
    (artifact / ARTIFACT_FILE).write_text(json.dumps({"format": "untrusted", "owners": ["untrusted_owner"]}))
    with pytest.raises(ValueError, match="unknown artifact format 'untrusted'"):
        load_artifact(artifact)
    assert not flag.exists()


def test_a_second_owner_cannot_take_over_a_name(monkeypatch):
    monkeypatch.setattr(artifacts, "_FORMATS", dict(artifacts._FORMATS))
    monkeypatch.setattr(artifacts, "_STRUCTURES", dict(artifacts._STRUCTURES))
    with pytest.raises(ValueError, match="already registered by methods.artifacts"):
        register_format("safetensors")(lambda directory, config, marker: None)
    with pytest.raises(ValueError, match="already registered by methods.surgery"):
        register_structure("compbench_layer_shapes", "another.module")
    with pytest.raises(ValueError, match="must start with 'compbench_'"):
        register_structure("layer_shapes", "another.module")


def test_registered_per_layer_structures_follow_dropped_layers(monkeypatch):
    monkeypatch.setattr(artifacts, "_STRUCTURES", dict(artifacts._STRUCTURES))
    register_structure("compbench_test_per_layer", __name__, renumber=artifacts.per_layer)
    model = tiny_model()
    model.config.compbench_test_per_layer = [f"layer {i}" for i in range(LAYERS)]
    keep_layers(model, [1, LAYERS - 1])
    assert model.config.compbench_test_per_layer == ["layer 1", f"layer {LAYERS - 1}"]
    assert model.config.compbench_kept_layers == [1, LAYERS - 1]


def test_loading_imports_only_the_owners_the_artifact_names(tmp_path, monkeypatch):
    from methods import decomposition
    from methods.base import build_method, build_method_config

    model = tiny_model()
    method = build_method(build_method_config({"_target_": "methods.decomposition.LowRank", "name": "low_rank", "rank": 4, "recover_epochs": 0}))
    model = method.apply(model, None)
    method.save(model, str(tmp_path))
    assert json.loads((tmp_path / ARTIFACT_FILE).read_text())["owners"] == ["methods.decomposition"]
    # A fresh process: nothing registered, so the owner must be imported (and only it).
    monkeypatch.setattr(artifacts, "_STRUCTURES", {k: v for k, v in artifacts._STRUCTURES.items() if v.owner != "methods.decomposition"})
    monkeypatch.delitem(sys.modules, "methods.decomposition")
    imported = []

    def recording_import(name):
        imported.append(name)
        importlib.import_module(name)

    monkeypatch.setattr(artifacts, "import_owner", recording_import)
    reloaded = load_artifact(tmp_path)
    assert imported == ["methods.decomposition"]
    assert torch.allclose(logits(reloaded, eval_batch()), logits(model, eval_batch()))
    assert type(reloaded.get_submodule(next(iter(method.info["ranks"])))).__name__ == decomposition.LowRankLinear.__name__
