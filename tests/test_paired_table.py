"""Table 1 shows each paired drop with its CI and marks (†) only the drops significant after Holm."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.report import format_table1, load_records, table1_numeric
from harness.report.display import MARK_SIGNIFICANT

FIXTURES = Path(__file__).parent / "fixtures" / "records"


def _with_comparison(path: Path, difference: float, ci: list, p_value: float) -> None:
    record = json.loads(path.read_text())
    base = record["metrics"]["accuracy"] - difference
    record["comparison"] = {
        "baseline_key": "k", "baseline_cache_hit": True, "resamples": 1000, "confidence": 0.95,
        "metrics": {"accuracy": {"baseline": base, "method": record["metrics"]["accuracy"], "difference": difference,
                                 "ci95": ci, "ci_method": "BCa", "p_value": p_value, "test": "mcnemar_exact",
                                 "discordant": [30, 10]}},
        "agreement": {"validation": {"examples": 872, "same_prediction": 0.95, "mean_kl_baseline_to_method": 0.01,
                                     "mean_max_probability_shift": 0.02, "mean_abs_score_change": None}},
    }
    path.write_text(json.dumps(record))


@pytest.fixture
def results(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "records")
    records = tmp_path / "records"
    # Holm over the three sst2/cpu methods with a comparison: p = 0.001, 0.03, 0.04 -> 0.003, 0.06, 0.06.
    _with_comparison(next(records.glob("sst2__bert_base__dynamic_int8__cpu__*.json")), -0.010, [-0.016, -0.004], 0.001)
    _with_comparison(next(records.glob("sst2__bert_base__layer_drop__cpu__*.json")), -0.020, [-0.038, -0.001], 0.03)
    _with_comparison(next(records.glob("sst2__bert_base__head_prune__cpu__*.json")), -0.005, [-0.010, -0.0002], 0.04)
    return tmp_path


def test_table1_shows_paired_drops_and_marks_only_holm_significant_ones(results):
    records, _ = load_records([str(results)])
    numeric = table1_numeric(records, tasks=("sst2",))
    by_method = numeric.set_index("method")
    assert by_method.loc["dynamic_int8", "sst2_drop"] == pytest.approx(-1.0)
    assert by_method.loc["dynamic_int8", "sst2_drop_p_holm"] == pytest.approx(0.003)
    assert by_method.loc["layer_drop", "sst2_drop_p_holm"] == pytest.approx(0.06)
    assert by_method.loc["head_prune", "sst2_drop_p_holm"] == pytest.approx(0.06)
    assert np.isnan(by_method.loc["baseline", "sst2_drop"])  # the baseline has no drop against itself
    shown = format_table1(numeric).set_index("Method")["SST-2"]
    assert shown["dynamic_int8"].endswith(f"(Δ-1.0 [-1.6, -0.4]{MARK_SIGNIFICANT})")
    assert shown["layer_drop"].endswith("(Δ-2.0 [-3.8, -0.1])")  # raw p = 0.03 < 0.05, but not after Holm
    assert MARK_SIGNIFICANT not in shown["head_prune"] and "Δ" not in shown["magnitude_prune"]
