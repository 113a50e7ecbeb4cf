"""compbench as a package: its configs travel as package data, its roots never come from the current
directory, and the Python API plans, loads and reports like the two commands. (The wheel itself is
built, installed into a fresh venv and run outside the checkout by `make package-check`, in CI.)"""

import fnmatch
import tomllib
from pathlib import Path

import pytest

from harness import api
from harness.compose import CONF_DIR, compose_cell
from harness.config import default_data_root, register_configs
from harness.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_RECORDS = Path(__file__).parent / "fixtures" / "records"
register_configs()  # the structured task/model/hardware/runtime bases the YAMLs extend


def test_every_config_file_is_package_data():
    """A file under harness/conf that no package-data pattern matches would be missing from the wheel,
    and `pip install .` could not compose the cells that use it."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["harness"]
    files = [p.relative_to(CONF_DIR.parent).as_posix() for p in CONF_DIR.rglob("*") if p.is_file()]
    assert len(files) > 20  # every group's YAMLs (model, task, hardware, runtime, launchers), not an empty folder
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pattern.replace("**/", "*")) for pattern in patterns)]
    assert missing == []
    assert CONF_DIR.is_relative_to(ROOT / "harness")  # inside the package, not beside it


def test_data_root_does_not_depend_on_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPBENCH_DATA_ROOT", raising=False)
    from_checkout = compose_cell(["method=baseline"]).paths.data_root
    monkeypatch.chdir(tmp_path)
    elsewhere = compose_cell(["method=baseline"]).paths.data_root
    assert from_checkout == elsewhere == default_data_root()
    assert Path(elsewhere).is_absolute() and not Path(elsewhere).is_relative_to(tmp_path)


def test_data_root_beside_a_checkout_else_in_the_users_cache():
    beside = ROOT.parent / "shared" / "data"
    expected = beside if beside.is_dir() else Path("~/.cache/compbench/data").expanduser()
    assert Path(default_data_root()) == expected


def test_environment_variable_and_override_name_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPBENCH_DATA_ROOT", str(tmp_path / "env"))
    assert compose_cell(["method=baseline"]).paths.data_root == str(tmp_path / "env")
    assert compose_cell(["method=baseline", f"paths.data_root={tmp_path / 'cli'}"]).paths.data_root == str(tmp_path / "cli")


def test_api_plans_like_the_command_line(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPBENCH_DATA_ROOT", str(data_root))
    plans = api.plan(["method=baseline,dynamic_int8", "task=sst2", f"paths.results_dir={tmp_path}"], sweep=True)
    assert [p.cell.method.name for p in plans] == ["baseline", "dynamic_int8"]
    assert all(p.record_path.parent == tmp_path / "records" for p in plans)
    with pytest.raises(ConfigError, match="method.sparsity"):
        api.plan(["method=magnitude", "method.sparsity=2"])
    assert not (tmp_path / "records").exists()  # planning writes nothing


def test_api_loads_records_as_a_data_frame(tmp_path):
    records = api.load_records(FIXTURE_RECORDS)
    assert len(records) >= 10 and {"task", "method", "machine"} <= set(records.columns)
    assert isinstance(records.attrs["problems"], list)
    with pytest.raises(ValueError, match="no readable record"):
        api.load_records(tmp_path)


def test_api_report_writes_table1(tmp_path):
    report = api.report([FIXTURE_RECORDS], out_dir=tmp_path, plots=False)
    assert (tmp_path / "table1.md").read_text().startswith("## Table 1 on")
    assert not report.table.empty
