"""TEST-ONLY: puts tests/fake_cells.py's synthetic executor in place of harness.runner.execute inside
`harness.sweep`, in every Python process of a test's sweep (the CLI, joblib/submitit workers, spawned
cell processes), so production code carries no test hook.

The sweep tests put this directory first on PYTHONPATH (tests/test_sweeps.py `sweep_env`); Python
imports `sitecustomize` at start-up, and the finder below patches `harness.sweep` right after it is
first imported. Nothing else is changed.
"""

import importlib.abc
import importlib.util
import sys


class _PatchSweepExecutor(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "harness.sweep":
            return None
        sys.meta_path.remove(self)  # find the real module below this finder
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            from tests.fake_cells import execute

            module.execute = execute

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchSweepExecutor())
