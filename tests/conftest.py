import os
from pathlib import Path

import pytest


def default_data_root() -> Path:
    """COMPBENCH_DATA_ROOT, else the checkout's sibling shared/data (/work/main/../shared/data)."""
    env = os.environ.get("COMPBENCH_DATA_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if not (root / "glue").is_dir():
        pytest.skip(f"offline data not found at {root}; set COMPBENCH_DATA_ROOT")
    return root
