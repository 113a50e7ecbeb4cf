"""Adding a method is one decorated class (README, "Adding a method"): a throwaway method, defined in
a temporary module that no harness file knows and announced by an installed distribution's
`compbench.methods` entry point, runs as a cell and as a pipeline step, saves, reloads and appears in
Table 1 under the category it declares."""

import sys
import textwrap

import pytest
import torch
from methods_helpers import eval_batch, logits, tiny_model

from harness.record import load_record, record_path
from harness.sweep import write_record
from harness.report import load_records, table1
from methods.artifacts import load_artifact
from methods.base import build_method, build_method_config

FAMILY = '''
from dataclasses import dataclass

import torch

from harness.errors import check
from methods.anatomy import encoder_linear_names
from methods.base import Method, MethodConfig
from methods.registry import register_method


@dataclass
class GridRoundConfig(MethodConfig):
    bits: int = 4  # weights of the encoder Linears snap to a 2^bits-level grid per tensor

    def __post_init__(self):
        super().__post_init__()
        check(2 <= self.bits <= 8, "method.bits", f"must be in [2, 8], got {self.bits}")


@register_method("grid_round")
class GridRound(Method):
    """Simulated uniform weight quantization (values on a grid, stored as float)."""

    config_class = GridRoundConfig
    category = "Quantization"

    def apply(self, model, ctx):
        levels = 2 ** self.config.bits - 1
        names = encoder_linear_names(model)
        with torch.no_grad():
            for name in names:
                weight = model.get_submodule(name).weight
                low, high = weight.min(), weight.max()
                step = (high - low) / levels
                weight.copy_(low + torch.round((weight - low) / step) * step)
        self.info["rounded_linears"] = len(names)
        return model
'''
ENTRY_POINTS = """\
[compbench.methods]
grid_round = throwaway_family
"""
QUICK = ["task.finetune.max_train_samples=32", "task.finetune.epochs=1", "task.max_eval_samples=16",
         "hardware.batch_sizes=[1]", "hardware.min_iterations=2", "hardware.min_duration_s=0", "hardware.warmup=0",
         "measure.bootstrap=0", "measure.energy=false", "measure.memory=false", "measure.flops=false",
         "measure.real_length_latency=false", "isolate=false"]


@pytest.fixture
def throwaway_method(tmp_path, monkeypatch):
    """The module and an installed distribution announcing it (entry point group compbench.methods)
    on the import path: nothing else. The registry forgets it after the test."""
    from harness.config import register_configs
    from methods import registry

    site = tmp_path / "site"
    (site / "throwaway_family-0.1.dist-info").mkdir(parents=True)
    (site / "throwaway_family.py").write_text(textwrap.dedent(FAMILY))
    (site / "throwaway_family-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-family\nVersion: 0.1\n")
    (site / "throwaway_family-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "throwaway_family", raising=False)  # imported afresh: its decorator runs again
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    registry.reload_plugins()
    register_configs()
    return tmp_path


def test_an_installed_plugin_is_a_pipeline_step(throwaway_method, compose):
    """A plugin method works wherever a shipped one does: the registry lists it, a cell composes it,
    and a pipeline runs it as a step."""
    from methods import registry

    assert "grid_round" in registry.names()
    cell = compose("method=pipeline", "method.steps=[layer_drop,{name:grid_round,params:{bits:2}}]")
    assert [c.name for c in cell.method.step_configs] == ["layer_drop", "grid_round"]
    method = build_method(cell.method)
    model = method.apply(tiny_model(), None)
    assert method.info["steps"][1]["rounded_linears"] > 0
    assert len(torch.unique(model.bert.encoder.layer[0].output.dense.weight)) <= 2**2
    assert compose("method=grid_round").method.bits == 4  # its dataclass default, from no YAML


@pytest.mark.slow  # one tiny-BERT cell end to end (fine-tune, accuracy, latency): ~10-30 s
def test_a_new_method_runs_saves_reloads_and_lands_in_its_category(throwaway_method, compose, tiny_bert_dir, tmp_path):
    from harness.runner import config_hash, execute, needs_train_data
    from harness.tasks import check_task_data

    cell = compose("method=grid_round", "method.bits=3", "model=local", f"model.path={tiny_bert_dir}", "task=sst2", *QUICK)
    fingerprints = check_task_data(cell.task, cell.paths.data_root, need_train=needs_train_data(cell))
    record = execute(cell, config_hash(cell, fingerprints), fingerprints)
    assert record["status"] == "ok", record["reason"]
    assert record["method"]["category"] == "Quantization" and record["method"]["rounded_linears"] == 12
    assert record["metrics"]["accuracy"] is not None and record["latency"]["fixed"][0]["p50_ms"] > 0

    method = build_method(build_method_config({"_target_": "throwaway_family.GridRound", "bits": 3}))
    model = method.apply(tiny_model(), None)
    assert len(torch.unique(model.bert.encoder.layer[0].output.dense.weight)) <= 2**3
    method.save(model, str(tmp_path / "artifact"))
    assert torch.equal(logits(load_artifact(tmp_path / "artifact"), eval_batch()), logits(model, eval_batch()))

    path = write_record(record_path(cell.paths.results_dir, record["cell"], record["config_hash"]), record)
    assert load_record(path)["method"]["category"] == "Quantization"
    frame, problems = load_records([str(cell.paths.results_dir)])
    assert problems == []
    table = table1(frame)
    (row,) = [r for _, r in table.iterrows() if r["Method"].startswith("grid_round")]  # "grid_round (bits=3)"
    assert row["Category"] == "Quantization" and row["Prov."] == "S"
