"""pareto_front edge cases and the points each frontier plot draws."""

import math
from pathlib import Path

import numpy as np
import pytest

from harness.report import load_records, pareto_front
from harness.report.pareto import AXES, average_points, plot_groups, task_points

FIXTURES = Path(__file__).parent / "fixtures" / "records"
AXIS = {axis.key: axis for axis in AXES}


def test_simple_front():
    costs = [1, 2, 3, 4]
    values = [80, 85, 84, 90]  # (3, 84) is dominated by (2, 85)
    assert pareto_front(costs, values).tolist() == [True, True, False, True]


def test_equal_cost_keeps_only_the_best_value():
    assert pareto_front([2, 2, 2], [80, 90, 85]).tolist() == [False, True, False]


def test_equal_value_keeps_only_the_cheapest():
    assert pareto_front([3, 1, 2], [90, 90, 90]).tolist() == [False, True, False]


def test_identical_points_are_all_on_the_front():
    assert pareto_front([1, 1, 5], [90, 90, 80]).tolist() == [True, True, False]


def test_nan_and_inf_are_never_on_the_front_and_dominate_nothing():
    costs = [np.nan, 1, 2, math.inf, 0.5]
    values = [99, 80, 85, 99, np.nan]
    assert pareto_front(costs, values).tolist() == [False, True, True, False, False]


def test_single_empty_and_all_nan():
    assert pareto_front([3], [1]).tolist() == [True]
    assert pareto_front([], []).tolist() == []
    assert pareto_front([np.nan, np.nan], [1, 2]).tolist() == [False, False]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        pareto_front([1, 2], [1])


def test_front_matches_brute_force_on_random_points():
    rng = np.random.default_rng(7)
    costs, values = rng.integers(0, 6, 60).astype(float), rng.integers(0, 6, 60).astype(float)
    mask = pareto_front(costs, values)
    for i in range(60):
        dominated = any(costs[j] <= costs[i] and values[j] >= values[i] and (costs[j] < costs[i] or values[j] > values[i])
                        for j in range(60))
        assert mask[i] == (not dominated)


@pytest.fixture(scope="module")
def records():
    return load_records([str(FIXTURES)])[0]


def test_every_axis_is_split_per_machine(records):
    latency = plot_groups(records, AXIS["cpu_latency"])
    assert set(latency) == {"cpu-fpA-0001", "cpu-fpB-0002"}  # same hardware name on two machines
    # Size does not depend on the machine, but the scores and seeds of a point do: one plot per machine too.
    assert set(plot_groups(records, AXIS["size_w_emb"])) == {"fpA-0001", "fpB-0002"}
    assert plot_groups(records, AXIS["gpu_latency"]) == {}  # only random-init (unscored) GPU cells
    one_machine = records[records["fingerprint"].eq("fpA-0001")]
    assert set(plot_groups(one_machine, AXIS["size_w_emb"])) == {""}
    assert set(plot_groups(one_machine, AXIS["cpu_latency"])) == {"cpu"}


def test_task_points_prefer_full_evaluation_and_skip_random_init(records):
    cells = plot_groups(records, AXIS["size_w_emb"])["fpA-0001"]
    sst2 = task_points(cells, AXIS["size_w_emb"], "sst2").set_index("method")
    assert set(sst2.index) == {"baseline", "dynamic_int8", "magnitude", "layer_drop"}  # head_prune: machine B's
    assert set(task_points(plot_groups(records, AXIS["size_w_emb"])["fpB-0002"], AXIS["size_w_emb"], "sst2").method) == {
        "head_prune"}  # not low_rank: random init
    assert sst2.loc["dynamic_int8", "cost"] == pytest.approx(41.3)
    squad = task_points(cells, AXIS["size_w_emb"], "squad_v1.1")  # devsplit maps to the SQuAD column
    assert set(squad.method) == {"baseline", "dynamic_int8"}


def test_average_points_need_every_task(records):
    cells = plot_groups(records, AXIS["size_w_emb"])["fpA-0001"]
    points, used, left_out = average_points(cells, AXIS["size_w_emb"], ("mnli", "qqp", "sst2", "squad_v1.1"))
    assert used == ["mnli", "sst2", "squad_v1.1"]
    assert set(points.method) == {"baseline", "dynamic_int8"} and left_out == 2  # magnitude, layer_drop
    assert points.set_index("method").loc["dynamic_int8", "value"] == pytest.approx((83 + 91 + 87) / 3)


def test_pareto_front_matches_the_pairwise_definition_with_ties_and_missing_values():
    """The O(n log n) front equals the O(n^2) definition (no point at most as costly and at least as good, one strictly)."""
    import numpy as np

    from harness.report.pareto import pareto_front

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 40))
        cost = rng.integers(0, 8, n).astype(float)  # few distinct values: many exact ties
        value = rng.integers(0, 8, n).astype(float)
        cost[rng.random(n) < 0.1] = np.nan
        valid = np.isfinite(cost) & np.isfinite(value)
        expected = np.array([valid[i] and not any(valid[j] and cost[j] <= cost[i] and value[j] >= value[i]
                                                  and (cost[j] < cost[i] or value[j] > value[i]) for j in range(n))
                             for i in range(n)], dtype=bool)
        assert np.array_equal(pareto_front(cost, value), expected)
