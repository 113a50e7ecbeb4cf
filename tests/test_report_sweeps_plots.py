"""Sweeps stay apart (issue 11 part 6) and the plots read at a glance (issue 17 part 3)."""

import copy
import json
import shutil
from itertools import combinations
from pathlib import Path

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest

from harness.report import load_records
from harness.report.build import build_report
from harness.report.pareto import AXES, sweep_curves, task_points
from harness.report.plots import DISTURBED, FAMILY_COLOURS, label_boxes, plot_drop_vs_speedup, plot_frontier
from harness.report.table import table1_numeric
from harness.labels import record_label

FIXTURES = Path(__file__).parent / "fixtures" / "records"
AXIS = {axis.key: axis for axis in AXES}
MAGNITUDE = next(FIXTURES.glob("sst2__bert_base_uncased__magnitude__cpu__*.json")).name  # its hash changes with conf/


def magnitude_record(sparsity: float, seed: int = 42, accuracy: float = None, created="2026-01-02T00:00:00+00:00") -> dict:
    record = json.loads((FIXTURES / MAGNITUDE).read_text())
    record["cell"]["method"] = "magnitude"
    record["config"]["method"] = {"_target_": "methods.pruning.Magnitude", "name": "magnitude", "recover_epochs": 1.0,
                                  "sparsity": sparsity, "scope": "global", "include_embeddings": False}
    record["method"]["label"] = record_label(record["config"]["method"])  # as the writer labels it
    record["config"]["seed"] = seed
    record["config_hash"] = f"{int(sparsity * 100):02d}{seed:04d}".ljust(64, "0")
    record["created_at"] = created
    record["metrics"]["accuracy"] = accuracy if accuracy is not None else 0.92 - 0.1 * sparsity ** 2
    record["size"]["bytes_sparse"] = int(record["size"]["bytes_dense"] * (1 - sparsity) * 1.03)
    record["latency"]["fixed"][0]["p50_ms"] = 20.0 - 5 * sparsity
    return record


def write_run(tmp_path: Path, records: list[dict]) -> Path:
    run = tmp_path / "run" / "records"
    run.mkdir(parents=True)
    for path in FIXTURES.glob("sst2__bert_base_uncased__baseline__cpu*.json"):
        shutil.copy(path, run / path.name)
    for i, record in enumerate(records):
        (run / f"extra_{i}.json").write_text(json.dumps(record))
    return run.parent


def test_a_three_value_sweep_is_three_rows_and_a_three_point_curve(tmp_path):
    run = write_run(tmp_path, [magnitude_record(s) for s in (0.3, 0.6, 0.9)])
    df, problems = load_records([str(run)])
    assert not [p for p in problems if "superseded" in p]
    sweep = df[df["method"].eq("magnitude")]
    assert sorted(sweep["label"]) == ["magnitude (sparsity=0.3)", "magnitude (sparsity=0.6)", "magnitude (sparsity=0.9)"]
    table = table1_numeric(df, tasks=("sst2",))
    assert table["method"].str.startswith("magnitude (sparsity=").sum() == 3
    points = task_points(df[df["status"].eq("ok")], AXIS["size_w_emb"], "sst2")
    curves = sweep_curves(points)
    assert len(curves) == 1 and list(curves[0]["label"].str.extract(r"=(\S+)\)")[0]) == ["0.3", "0.6", "0.9"]
    fig = plot_frontier(points, "size", "score", "sweep")
    dashed = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and len(dashed[0].get_xdata()) == 3
    report = build_report([str(run)], tmp_path / "report", tasks=("sst2",), plots=False)
    cells = pd.read_csv(tmp_path / "report" / "cells.csv")
    assert cells["label"].str.startswith("magnitude (sparsity=").sum() == 3
    assert sum("magnitude (sparsity=" in m for m in report.table["Method"]) == 3


def test_seeds_of_one_configuration_aggregate_and_a_rerun_replaces(tmp_path):
    records = [magnitude_record(0.5, seed=s, accuracy=a) for s, a in ((1, 0.80), (2, 0.82), (3, 0.84))]
    rerun = magnitude_record(0.5, seed=3, accuracy=0.86, created="2026-03-01T00:00:00+00:00")
    rerun["config_hash"] = records[2]["config_hash"]  # the very same configuration, run again
    run = write_run(tmp_path, records + [rerun])
    df, problems = load_records([str(run)])
    assert sum("superseded" in p for p in problems) == 1
    assert df["method"].eq("magnitude").sum() == 3  # three seeds, the re-run replaced one
    row = table1_numeric(df, tasks=("sst2",)).set_index("method").loc["magnitude"]  # sparsity=0.5 is the default
    assert row["sst2"] == pytest.approx(np.mean([80, 82, 86])) and row["sst2_n"] == 3
    assert row["sst2_sd"] == pytest.approx(np.std([80, 82, 86], ddof=1))
    points = task_points(df[df["status"].eq("ok")], AXIS["size_w_emb"], "sst2").set_index("label")
    assert points.loc["magnitude", "n"] == 3 and points.loc["magnitude", "value"] == pytest.approx(np.mean([80, 82, 86]))


def test_seeds_recorded_before_and_after_the_finetune_precision_field_share_a_setting():
    from harness.report.variants import setting_key

    old = json.loads((FIXTURES / MAGNITUDE).read_text())["config"]
    assert "precision" not in old["task"]["finetune"]
    fp32, bf16 = copy.deepcopy(old), copy.deepcopy(old)
    fp32["task"]["finetune"]["precision"], bf16["task"]["finetune"]["precision"] = "fp32", "bf16"
    assert setting_key(fp32) == setting_key(old) != setting_key(bf16)


def test_average_drop_pairs_each_record_with_its_own_seeds_baseline(tmp_path):
    """A newer baseline under another seed must not become every method's reference: the average drop
    is the record's paired drop (its own baseline, same examples); without one, the same-seed baseline."""
    baseline = json.loads(next(FIXTURES.glob("sst2__bert_base_uncased__baseline__cpu__*.json")).read_text())
    other_seed = copy.deepcopy(baseline)  # seed 7, newer, 2 points better than seed 42's 92.0
    other_seed["config"]["seed"], other_seed["config_hash"] = 7, "7".ljust(64, "0")
    other_seed["created_at"], other_seed["metrics"]["accuracy"] = "2026-06-01T00:00:00+00:00", 0.94
    paired = magnitude_record(0.5, accuracy=0.91)  # seed 42
    paired["comparison"] = {"metrics": {"accuracy": {"baseline": 0.92, "method": 0.91, "difference": -0.01,
                                                     "ci95": [-0.03, 0.01], "p_value": 0.5, "test": "mcnemar_exact"}}}
    unpaired = magnitude_record(0.3, accuracy=0.915)  # seed 42, no comparison section
    df, _ = load_records([str(write_run(tmp_path, [other_seed, paired, unpaired]))])
    rows = table1_numeric(df, tasks=("sst2",)).set_index("method")
    assert rows.loc["magnitude", "avg_drop"] == pytest.approx(-1.0)  # not 91 - 94
    assert rows.loc["magnitude (sparsity=0.3)", "avg_drop"] == pytest.approx(-0.5)  # 91.5 - seed 42's 92


def crowded_points(n_cluster=8) -> pd.DataFrame:
    """What made the example report unreadable: many methods within a few percent of each other."""
    rng = np.random.default_rng(0)
    names = ["dynamic_int8", "bf16", "static_int8", "pipeline (recover_epochs=1)", "weight_only_int8",
             "magnitude (sparsity=0.6)", "head_prune", "ffn_prune", "vocab_prune", "layer_drop (recover_epochs=1)"]
    rows = [{"label": names[i % len(names)] + ("" if i < len(names) else f" #{i}"), "model": "m", "method": f"m{i}",
             "cost": 4.5 + rng.normal(0, 0.3), "value": 85 + rng.normal(0, 0.4), "category": "Quantization"}
            for i in range(n_cluster)]
    rows += [{"label": "baseline", "model": "m", "method": "baseline", "cost": 21.0, "value": 85.2, "category": "Baseline"},
             {"label": "low_rank", "model": "m", "method": "low_rank", "cost": 10.8, "value": 78.6,
              "category": "Matrix Decomposition", "disturbed": True},
             {"label": "layer_drop", "model": "m", "method": "layer_drop", "cost": 11.7, "value": 50.9,
              "category": "Structured Pruning", "subset": True}]
    frame = pd.DataFrame(rows)
    for column in ("cost_lo", "cost_hi", "value_lo", "value_hi"):
        frame[column] = np.nan
    return frame.assign(parameters="{}", disturbed=frame.get("disturbed", False), subset=frame.get("subset", False), n=1)


def assert_no_overlap(fig):
    boxes = label_boxes(fig)
    assert boxes
    for (text_a, a), (text_b, b) in combinations(boxes, 2):
        assert not a.overlaps(b), f"labels {text_a!r} and {text_b!r} overlap"


@pytest.mark.parametrize("n_cluster", [3, 10, 16])
def test_frontier_plot_labels_never_overlap_and_every_point_is_named(n_cluster):
    points = crowded_points(n_cluster)
    fig = plot_frontier(points, "CPU latency (ms)", "score", "crowded")
    assert_no_overlap(fig)
    fig.canvas.draw()  # the figure as saved: the drawn labels are where they were measured
    assert_no_overlap(fig)
    drawn = {t.get_text() for t in fig.axes[0].texts}
    keyed = " ".join(t.get_text() for t in fig.texts)
    for label in points["label"]:
        assert label in drawn or label in keyed, label


def test_frontier_is_the_attainable_staircase_and_flags_are_marked():
    points = crowded_points(3)
    fig = plot_frontier(points, "cost", "score", "t")
    stair = [line for line in fig.axes[0].lines if line.get_drawstyle() == "steps-post"]
    assert len(stair) == 1
    xs, ys = stair[0].get_xdata(), stair[0].get_ydata()
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys)  # cost up, best score up: never a diagonal
    assert xs[-1] >= points["cost"].max()  # flat to the right edge: any larger budget attains the best
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "disturbed" in legend and "subset" in legend and "Pareto frontier" in legend
    edges = [tuple(np.round(c.get_edgecolor()[0][:3], 3)) for c in fig.axes[0].collections if len(c.get_edgecolor())]
    assert tuple(np.round(matplotlib.colors.to_rgb(DISTURBED), 3)) in edges  # the disturbed point is ringed


def test_family_colours_are_the_same_in_every_plot():
    points = crowded_points(3)
    frontier = plot_frontier(points, "cost", "score", "t")
    legend = {t.get_text(): h.get_color() for t, h in zip(frontier.legends[0].get_texts(), frontier.legends[0].legend_handles)}
    assert legend["Quantization"] == FAMILY_COLOURS["Quantization"] and legend["Baseline"] == FAMILY_COLOURS["Baseline"]
    assert len(set(FAMILY_COLOURS.values())) == len(FAMILY_COLOURS)


def test_drop_vs_speedup_draws_measured_and_published_apart(tmp_path):
    df, _ = load_records([str(FIXTURES)])
    numeric = table1_numeric(df)
    fig = plot_drop_vs_speedup(numeric, "cpu")
    assert fig is not None
    assert_no_overlap(fig)
    texts = [t.get_text() for t in fig.axes[0].texts] + [t.get_text() for t in fig.texts]
    assert any("(published)" in t for t in texts) and any("dynamic_int8" in t for t in texts)
    assert "relative to BERT-base, on their hardware" in fig.axes[0].get_title()
    hollow = [c for c in fig.axes[0].collections if len(c.get_edgecolor()) and
              (len(c.get_facecolor()) == 0 or c.get_facecolor()[0][3] == 0)]
    assert hollow  # published rows: hollow markers
    paired = numeric.assign(avg_drop_ci_lo=numeric["avg_drop"] - 1, avg_drop_ci_hi=numeric["avg_drop"] + 1)
    assert "paired bootstrap 95% CI" in plot_drop_vs_speedup(paired, "cpu").axes[0].get_title()


def test_recipes_differing_in_a_step_parameter_get_labels_of_their_own():
    def recipe(layers):
        return {"_target_": "methods.pipeline.Pipeline", "name": "pipeline", "recover_epochs": 0,
                "steps": [{"name": "kd_logits", "params": {"student_layers": layers}}, "dynamic_int8"]}

    two, one = (record_label(recipe(n))["short"] for n in (2, 1))
    assert two == "kd(student_layers=2)+int8" and one == "kd(student_layers=1)+int8"


def test_a_training_budget_marks_the_cell_instead_of_splitting_the_row():
    """SST-2's methods train on a 20k subset, the small tasks' on their whole split: one method, one
    row across tasks, with the subset cell marked (train_subset) rather than a row of its own."""
    from harness.report.variants import trains_on_subset

    kd = {"_target_": "methods.distillation.KdLogits", "name": "kd_logits", "epochs": 3}
    full, subset = {**kd, "train_samples": None}, {**kd, "train_samples": 20000}
    assert record_label(full) == record_label(subset)
    assert trains_on_subset(subset, 67349) and not trains_on_subset(full, 67349) and not trains_on_subset(subset, 3668)
    recipe = {"_target_": "methods.pipeline.Pipeline", "name": "recipe_gmp_kd_qat",
              "steps": [{"name": "gradual_magnitude", "params": {"train_samples": 20000, "sparsity": 0.85}}]}
    label = record_label(recipe)
    assert "train_samples" not in json.dumps(label)
    assert label["changed"]["steps"] == [{"name": "gradual_magnitude", "params": {"sparsity": 0.85}}]
    assert trains_on_subset(recipe, 67349)
