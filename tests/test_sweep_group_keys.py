"""`-m method=a,b method.<key>=v`: a key that only the swept methods have. Hydra composes the primary
config (the default method) with every non-sweep override before it sweeps, so such a command failed
after the planner had accepted every cell; the CLI now hands Hydra those keys as one-value sweeps."""

import pytest

from harness.cli import defer_swept_group_keys, sweep_cells
from harness.config import register_configs
from harness.compose import CONF_DIR

KD_SWEEP = ["-m", "task=mrpc", "method=kd_logits,kd_hidden", "method.train_samples=null", "method.epochs=3",
            "task.finetune.epochs=2", "hardware.batch_sizes=[1]"]


def hydra_multirun_compose(argv):
    """What `hydra.main` does with a multirun command line before its sweeper runs any job."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    register_configs()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    return loader.load_configuration("config", [a for a in argv if not a.startswith("-")], run_mode=RunMode.MULTIRUN)


def test_hydra_alone_rejects_a_swept_methods_key():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="train_samples"):
        hydra_multirun_compose(KD_SWEEP)


def test_deferred_keys_compose_and_keep_the_same_cells():
    deferred, original = defer_swept_group_keys(KD_SWEEP)
    assert "++method.train_samples=null" in deferred and "++method.epochs=3" in deferred
    assert "task.finetune.epochs=2" in deferred and "hardware.batch_sizes=[1]" in deferred  # groups not swept
    hydra_multirun_compose(deferred)
    jobs = [[original.get(o, o) for o in cell] for cell in sweep_cells(deferred)]
    assert jobs == sweep_cells(KD_SWEEP)  # the overrides each job reports map back to the planned cells


def test_single_runs_and_unswept_groups_are_left_alone():
    single = ["task=mrpc", "method=kd_logits", "method.epochs=3"]
    assert defer_swept_group_keys(single) == (single, {})
    unswept = ["-m", "task=mrpc,rte", "method=kd_logits", "method.epochs=3", "+method.extra=1"]
    assert defer_swept_group_keys(unswept) == (unswept, {})


def test_a_sweep_over_methods_with_their_own_key_runs_every_cell(tmp_path):
    """End to end through Hydra's multirun (the fake executor of tests/test_sweeps.py: no model loaded):
    both cells run with the key applied, and the planned records are the ones written."""
    from test_sweeps import FAST, compbench, make_data, records, summary

    cells = ["-m", "method=kd_logits,kd_hidden", "method.epochs=2", "method.train_samples=null", "isolate=false", *FAST]
    proc = compbench(cells, tmp_path, make_data(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(proc).startswith("compbench: sweep of 2 cells: 2 ok,")
    found = records(tmp_path)
    assert sorted(r["config"]["method"]["name"] for r in found.values()) == ["kd_hidden", "kd_logits"]
    assert all(r["config"]["method"]["epochs"] == 2 and r["config"]["method"]["train_samples"] is None for r in found.values())
