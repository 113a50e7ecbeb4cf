"""A sweep is planned once (harness.plan) and the plan is what runs: each cell composed, validated and
its method built a single time; Hub data fingerprinted at planning is the data loaded; no import
cycle among the CLI's modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from fake_cells import execute as fake_execute
from fake_cells import make_data

ROOT = Path(__file__).resolve().parents[1]
FAST = ["model.init=random", "measure.latency=false", "measure.energy=false", "isolate=false"]


def test_each_cell_is_composed_and_its_method_built_once(tmp_path, monkeypatch, capsys):
    import harness.config
    import methods.base
    from harness import cli, sweep

    data = make_data(tmp_path / "data")
    calls = {"to_cell_config": 0, "build_method": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(harness.config, "to_cell_config", counting("to_cell_config", harness.config.to_cell_config))
    monkeypatch.setattr(methods.base, "build_method", counting("build_method", methods.base.build_method))
    monkeypatch.setattr(sweep, "execute", fake_execute)  # the cell itself: synthetic, no model
    for key, value in {"COMPBENCH_DATA_ROOT": str(data), "HF_HUB_OFFLINE": "1", "COMPBENCH_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["compbench", "-m", f"paths.results_dir={tmp_path / 'results'}", "task=sst2,rte", *FAST])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    assert "compbench: sweep of 2 cells: 2 ok" in out
    assert calls == {"to_cell_config": 2, "build_method": 2}  # planning only; the run reuses the plans


def test_a_hub_task_loads_the_revision_it_was_planned_and_hashed_with(tmp_path, monkeypatch, tiny_bert_dir):
    from transformers import AutoTokenizer

    from harness.compose import compose_cell
    from harness.config import register_configs
    from harness.plan import plan_cell
    from harness.tasks import hub, load_task

    register_configs()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("COMPBENCH_DATA_ROOT", raising=False)
    commits = iter(["c0ffee", "different-later"])  # the Hub moves on between planning and the run
    monkeypatch.setattr(hub, "_current_commit", lambda path: next(commits))
    loaded = {}

    def fake_hub_examples(task, need_train, revision=None):
        loaded["revision"] = revision
        rows = [{"text_a": "a fine film", "text_b": None, "label": 1}, {"text_a": "dull", "text_b": None, "label": 0}]
        return None, {"validation": rows}

    monkeypatch.setattr("harness.tasks.loading.hub_examples", fake_hub_examples)
    cell = compose_cell(["task.source=hub", "model.init=random", f"paths.results_dir={tmp_path}", f"paths.data_root={tmp_path}"])
    plan = plan_cell(cell)
    assert plan.fingerprints == {"hub:nyu-mll/glue/sst2": "c0ffee"}
    data = load_task(cell.task, AutoTokenizer.from_pretrained(str(tiny_bert_dir)), str(tmp_path), 0, need_train=False,
                     fingerprints=plan.fingerprints)
    assert loaded["revision"] == "c0ffee" and data.fingerprints == plan.fingerprints


def _imports(path: Path) -> set[str]:
    """Every harness module a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("harness"))
    return names


def test_no_import_cycle_among_the_cli_modules():
    modules = {"harness.cli": "harness/cli.py", "harness.preflight": "harness/preflight.py", "harness.plan": "harness/plan.py",
               "harness.compose": "harness/compose.py", "harness.sweep": "harness/sweep/__init__.py",
               **{f"harness.sweep.{m}": f"harness/sweep/{m}.py" for m in ("resume", "isolation", "leases", "summary")}}
    graph = {name: {m for m in _imports(ROOT / path) if m in modules and m != name} for name, path in modules.items()}

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, (*seen, n))) for n in graph[start])

    cycles = [name for name in modules if reaches(name, name)]
    assert cycles == [], {name: graph[name] for name in cycles}
