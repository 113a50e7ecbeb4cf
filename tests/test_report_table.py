"""Table 1 against values computed by hand from the fixture records (see fixtures/records/make_records.py).

The fixtures hold two machines; each has a Table 1 of its own (harness/report/machines.py), so most
checks read machine A's (`machine_a`) and name machine B's rows where they need them.
"""

import math
from pathlib import Path

import pandas as pd
import pytest

from harness.report import failed_cells, load_records, measured_tasks, table1, table1_numeric
from harness.report.display import footnotes
from harness.report.machines import select_machine
from harness.report.published import PRUNE_OFA_SOURCE, SOURCE, SOURCE_FAMILY, prune_ofa_table, survey_table
from harness.report.render import latex_escape, to_latex, to_markdown

FIXTURES = Path(__file__).parent / "fixtures" / "records"
EXPECTED_COLUMNS = [
    "Category", "Method", "Model", "Source", "Prov.", "Target device", "Size w/ emb (%)", "Size w/o emb (%)",
    "GPU speedup", "CPU speedup", "MNLI", "SST-2", "SQuAD v1.1 (F1)", "Avg. drop",  # the tasks measured: no QQP
    "Training (largest per task)",  # ShrinkBench: the budget of every method that trains, beside its scores
    "Notes",
]


@pytest.fixture(scope="module")
def records():
    df, problems = load_records([str(FIXTURES)])
    assert problems == []
    return df


@pytest.fixture(scope="module")
def machine_a(records):
    return select_machine(records, "fpA-0001")


def _row(table, method, source="measured", machine=None):
    column = "method" if "method" in table.columns else "Method"
    source_column = "source" if "source" in table.columns else "Source"
    rows = table[(table[column] == method) & (table[source_column] == source)]
    if machine is not None:
        rows = rows[rows["fingerprint"] == machine]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_columns_follow_the_survey(records):
    assert list(table1(records).columns) == EXPECTED_COLUMNS
    extra = table1(records, tasks=("sst2",), extra_tasks=("mrpc", "rte"))
    assert list(extra.columns)[10:13] == ["SST-2", "MRPC", "RTE"]


def test_default_task_columns_are_the_tasks_measured_in_the_surveys_order_then_the_others():
    frame = pd.DataFrame({"task": ["rte", "sst2", "cola", "squad_v1.1_devsplit", "mnli", "qnli", "wnli"],
                          "status": ["ok"] * 5 + ["failed", "unsupported"]})
    # a variant in its survey column; tasks whose every record failed measured nothing
    assert measured_tasks(frame) == ("mnli", "sst2", "squad_v1.1", "cola", "rte")
    # an extra task is shown beside the average, never in it; a variant named as extra keeps its own column
    assert measured_tasks(frame, extra_tasks=("rte", "squad_v1.1_devsplit")) == ("mnli", "sst2", "cola")


def test_without_tasks_named_only_the_measured_tasks_are_columns_and_averaged(records):
    numeric = table1_numeric(records)
    assert "qqp" not in numeric.columns  # once an empty survey column, said to be averaged
    assert _row(numeric, "dynamic_int8").avg_drop_tasks == "mnli,sst2,squad_v1.1"
    note = next(n for n in footnotes(numeric) if n.startswith("Avg. drop"))
    assert note.startswith("Avg. drop: mean over MNLI, SST-2, SQuAD v1.1 (F1) of") and "QQP" not in note


def test_tasks_named_override_the_default_and_the_legend_says_which_were_not_averaged(records):
    survey = ("mnli", "qqp", "sst2", "squad_v1.1")
    assert list(table1(records, tasks=survey).columns)[10:14] == ["MNLI", "QQP", "SST-2", "SQuAD v1.1 (F1)"]
    numeric = table1_numeric(records, tasks=survey)
    note = next(n for n in footnotes(numeric, survey) if n.startswith("Avg. drop"))
    assert "mean over MNLI, SST-2, SQuAD v1.1 (F1) of" in note
    assert "QQP: asked for, but no row has it with its baseline, so in no average." in note
    only_sst2 = table1_numeric(records, tasks=("sst2",), extra_tasks=("mnli",))
    assert set(only_sst2["avg_drop_tasks"].dropna()) <= {"sst2", ""}
    assert "mean over SST-2 of" in next(n for n in footnotes(only_sst2, ("sst2",)) if n.startswith("Avg. drop"))


def test_rows_in_survey_category_order(records):
    numeric = table1_numeric(records)
    # machine by machine (ordered by name: "Test EPYC B ..." before "Test Xeon A ..."), each in the survey's order
    assert list(numeric["fingerprint"]) == ["fpB-0002"] * 4 + ["fpA-0001"] * 4
    assert list(numeric["method"]) == ["baseline", "head_prune", "layer_drop", "low_rank",
                                       "baseline", "dynamic_int8", "magnitude", "layer_drop"]
    assert list(numeric["category"])[4:7] == ["Baseline", "Quantization", "Unstructured Pruning"]


def test_speedups_against_the_same_machine_baseline(records):
    numeric = table1_numeric(records)
    assert _row(numeric, "baseline", machine="fpA-0001").speedup_cpu == pytest.approx(1.0)
    assert _row(numeric, "dynamic_int8").speedup_cpu == pytest.approx(2.0)  # 20/10, 24/12, 70/35
    assert _row(numeric, "layer_drop", machine="fpA-0001").speedup_cpu == pytest.approx(math.sqrt(2.5 * 1.5))  # geometric mean
    assert _row(numeric, "layer_drop", machine="fpB-0002").speedup_gpu == pytest.approx(2.0)  # 4 ms / 2 ms on machine B
    assert math.isnan(_row(numeric, "layer_drop", machine="fpA-0001").speedup_gpu)  # machine A has no GPU
    assert _row(numeric, "low_rank").speedup_gpu == pytest.approx(4 / 3)
    assert math.isnan(_row(numeric, "dynamic_int8").speedup_gpu)  # unsupported on cuda


def test_no_speedup_across_machines(records):
    # head_prune ran on machine B's CPU; the only CPU baseline is on machine A.
    assert math.isnan(_row(table1_numeric(records), "head_prune").speedup_cpu)
    assert _row(table1(records), "head_prune")["CPU speedup"] == "–"
    # The fingerprint alone is what prevents it: on machine A it would be 20 ms / 5 ms.
    same_machine = records.copy()
    same_machine.loc[same_machine.method.eq("head_prune"), "fingerprint"] = "fpA-0001"
    assert _row(table1_numeric(same_machine), "head_prune").speedup_cpu == pytest.approx(4.0)


def test_average_drops(records):
    numeric = table1_numeric(records)
    assert _row(numeric, "baseline", machine="fpA-0001").avg_drop == pytest.approx(0.0)
    assert _row(numeric, "dynamic_int8").avg_drop == pytest.approx(-1.0)  # (-1 -1 -1) / 3
    assert _row(numeric, "layer_drop", machine="fpA-0001").avg_drop == pytest.approx(-2.25)  # (-2 - 2.5) / 2, SQuAD failed
    # Machine B has no scored baseline (its GPU baseline is random-init): no drop, never one against machine A's.
    assert math.isnan(_row(numeric, "head_prune").avg_drop)
    assert math.isnan(_row(numeric, "low_rank").avg_drop)  # random init: no accuracy
    shown = table1(select_machine(records, "fpA-0001"))
    assert _row(shown, "dynamic_int8")["Avg. drop"] == "-1.00ᵈ"
    assert _row(shown, "layer_drop")["Avg. drop"] == "-2.25ˢ"


def test_extra_tasks_are_shown_but_not_averaged(machine_a):
    numeric = table1_numeric(machine_a, tasks=("sst2",), extra_tasks=("mnli",))
    assert _row(numeric, "layer_drop").avg_drop == pytest.approx(-2.0)
    assert _row(numeric, "layer_drop").mnli == pytest.approx(81.5)


def test_a_variant_task_asked_for_by_name_gets_its_own_column(records):
    numeric = table1_numeric(records, tasks=("sst2", "squad_v1.1_devsplit"))
    assert _row(numeric, "dynamic_int8")["squad_v1.1_devsplit"] == pytest.approx(87.0)
    assert _row(numeric, "dynamic_int8")["squad_v1.1_devsplit_marks"] == ""


def test_missing_is_a_dash_never_zero(records, machine_a):
    table = table1(records, tasks=("mnli", "qqp", "sst2", "squad_v1.1"))
    assert set(table["QQP"]) == {"–"}
    assert not any(cell in ("0", "0.0", "nan", "NaN") for cell in table.to_numpy().ravel())
    table = table1(machine_a)
    assert _row(table, "layer_drop")["SQuAD v1.1 (F1)"] == "–"
    assert _row(table, "dynamic_int8")["GPU speedup"] == "–"


def test_markers_and_confidence_intervals(records, machine_a):
    assert _row(table1(records), "low_rank")["SST-2"] == "–ʳ"  # random init (machine B): not measured
    table = table1(machine_a)
    assert _row(table, "baseline")["SST-2"] == "92.0 ±1.8"
    assert _row(table, "layer_drop")["MNLI"] == "81.5ˢ"  # subset-evaluated
    assert _row(table, "dynamic_int8")["SQuAD v1.1 (F1)"] == "87.0ᵈ"  # squad_v1.1_devsplit in the SQuAD column
    assert _row(table, "layer_drop")["Size w/ emb (%)"] == "60.7"
    # Sparse storage is the survey's size for pruned weights: used when smaller than dense, and marked.
    assert _row(table, "magnitude")["Size w/ emb (%)"] == "30.0ⁿ"
    assert _row(table, "magnitude")["Size w/o emb (%)"] == "100.0"
    # The fixtures carry no interleaved timing: their speedups are cross-cell ratios, marked ᶜ.
    assert _row(table, "magnitude")["CPU speedup"] == "1.00×ᶜ"
    assert _row(table, "layer_drop")["CPU speedup"] == "1.94×ᶜ"
    assert table1(machine_a, show_ci=False).loc[0, "SST-2"] == "92.0"


def test_failed_and_unsupported_cells_are_listed_with_reasons(records):
    failed = failed_cells(records)
    assert list(failed.status) == ["failed", "unsupported"]
    assert "fixture failure" in failed.reason.iloc[0]
    assert "runs on cpu only" in failed.reason.iloc[1]


def test_published_rows_sit_beside_the_same_method_only(machine_a):
    table = table1(machine_a, published=True)
    assert list(table["Source"]).count(SOURCE) == 1  # only the baseline maps (model bert_base)
    position = list(table["Method"]).index("BERT-base")
    assert table.loc[position - 1, "Method"] == "baseline"
    bert = table.loc[position]
    assert (bert["MNLI"], bert["SST-2"], bert["SQuAD v1.1 (F1)"]) == ("84.6", "93.5", "88.5")
    assert "QQP" not in table.columns  # the survey's QQP figure has no measured column to sit in ...
    named = table1(machine_a, tasks=("mnli", "qqp", "sst2", "squad_v1.1"), published=True)
    assert named.loc[list(named["Method"]).index("BERT-base"), "QQP"] == "89.2"  # ... unless QQP is asked for
    # Different methods under similar names are not matched as the same method (see published.py) ...
    assert not table[table["Source"].eq(SOURCE)]["Method"].isin(["Q-BERT", "GOBO"]).any()
    # ... but they are shown as the same family, after the family's last measured row, marked as such.
    family = table[table["Source"].eq(SOURCE_FAMILY)]
    assert {"Q-BERT", "GOBO"} <= set(family["Method"]) and "BERT-base" in SOURCE_FAMILY
    quantization = table.index[table["Category"].eq("Quantization")]
    assert list(table.loc[quantization, "Source"]).index(SOURCE_FAMILY) > list(table.loc[quantization, "Source"]).index("measured")
    measured_categories = set(table.loc[table["Source"].eq("measured"), "Category"])
    assert set(family["Category"]) <= measured_categories
    assert PRUNE_OFA_SOURCE not in set(table["Source"])  # no measured recipe_pruneofa row in the fixtures
    everything = table1(machine_a, published="all")
    assert everything["Source"].str.startswith("published").sum() == 26 + len(prune_ofa_table())


def test_prune_ofa_rows_are_never_drawn_beside_a_task_level_recipe(machine_a):
    # Zafrir et al. prune during pre-training: a recipe running the same steps on task data (an old
    # record still named recipe_pruneofa included) gets no Prune OFA rows beside it; published="all"
    # lists them at the end, for orientation
    recipe = machine_a[(machine_a["method"] == "magnitude") & (machine_a["task"] == "sst2")].assign(
        method="recipe_pruneofa", label="recipe_pruneofa", category="Compound", path="recipe_pruneofa.json", config_hash="0f0f0f0f0f0f")
    table = table1(pd.concat([machine_a, recipe], ignore_index=True), published=True)
    assert "recipe_pruneofa" in set(table["Method"]) and PRUNE_OFA_SOURCE not in set(table["Source"])
    everything = table1(pd.concat([machine_a, recipe], ignore_index=True), published="all")
    assert everything["Method"].eq("Prune OFA BERT-base 85%").sum() == 1
    assert list(everything["Source"]).index(PRUNE_OFA_SOURCE) > max(i for i, s in enumerate(everything["Source"]) if s == "measured")


def test_rows_of_another_regime_never_sit_beside_the_published_family(machine_a):
    # task-only distillation (reference.comparable_to_published false) beside DistilBERT/TinyBERT/MiniLM,
    # which distil during pre-training, would read as a like-for-like comparison
    kd = machine_a[machine_a["method"].eq("magnitude")].assign(
        method="kd_logits", label="kd_logits", category="KD from Output Logits", comparable_to_published=False,
        path="kd.json", config_hash="0e0e0e0e0e0e")
    table = table1(pd.concat([machine_a, kd], ignore_index=True), published=True)
    kd_rows = table.index[table["Category"].eq("KD from Output Logits")]
    assert list(table.loc[kd_rows, "Source"]) == ["measured"]  # no survey KD row follows it
    comparable = kd.assign(comparable_to_published=True)
    table = table1(pd.concat([machine_a, comparable], ignore_index=True), published=True)
    assert table.loc[table["Category"].eq("KD from Output Logits"), "Source"].eq(SOURCE_FAMILY).any()


def test_packaged_survey_table():
    survey = survey_table()
    assert len(survey) == 26 and {"confidence", "citation", "markers"} <= set(survey.columns)
    bert = survey.iloc[0]
    assert (bert.mnli, bert.qqp, bert.sst2, bert.squad_f1) == (84.6, 89.2, 93.5, 88.5)
    assert set(survey.confidence) <= {"high", "medium"}


def test_markdown_and_latex_renderers(records):
    table = table1(records)
    markdown = to_markdown(table).splitlines()
    assert markdown[0].startswith("| Category |") and len(markdown) == 2 + len(table)
    assert markdown[1].count("---") == len(table.columns)
    latex = to_latex(table, caption="50% of BERT_base")
    assert r"\begin{tabular}" in latex and r"50\% of BERT\_base" in latex
    assert latex_escape("81.5ˢ ±1.0") == r"81.5\textsuperscript{s} $\pm$1.0"


def test_every_table_marker_has_a_latex_form():
    from harness.report import table as table_module

    markers = [table_module.MARK_SUBSET, table_module.MARK_RANDOM, table_module.MARK_VARIANT, table_module.MARK_SPARSE,
               table_module.MARK_TRAIN_SUBSET]
    for marker in markers:
        assert latex_escape(f"1.0{marker}").startswith(r"1.0\textsuperscript{"), marker


def test_seed_repeats_are_summarised_as_mean_and_std():
    import pandas as pd

    from harness.report.seeds import seed_summary

    base = {"task": "sst2", "model": "m", "method": "baseline", "hardware": "cpu", "fingerprint": "f", "status": "ok"}
    frame = pd.DataFrame([
        {**base, "seed": 1, "score": 90.0, "latency_p50_ms": 10.0},
        {**base, "seed": 2, "score": 92.0, "latency_p50_ms": 12.0},
        {**base, "seed": 3, "score": 94.0, "latency_p50_ms": 14.0},
        {**base, "method": "magnitude", "seed": 1, "score": 80.0, "latency_p50_ms": 9.0},
    ])
    summary = seed_summary(frame)
    assert len(summary) == 1  # a cell with one seed is not a repeat
    row = summary.iloc[0]
    assert row["seeds"] == "1,2,3"
    assert row["score"] == "92.00 ± 2.00"  # sample std of 90, 92, 94
    assert row["p50 bs=1 (ms)"] == "12.00 ± 2.00"


def test_average_drop_ci_is_one_tasks_own_ci_and_mover_over_several():
    from harness.report.table import average_drop_ci

    # One task: its paired CI itself, skewed as it is (the old variance sum centred it: [-2.5, +0.5] here).
    assert average_drop_ci([(-1.0, -3.5, 0.0)]) == (-3.5, 0.0)
    # Symmetric CIs: the variance-adding normal interval, (sqrt(2² + 1²) / 2 each side).
    low, high = average_drop_ci([(-1.0, -3.0, 1.0), (-1.0, -2.0, 0.0)])
    assert (round(low, 3), round(high, 3)) == (-2.118, 0.118)
    # Skewed CIs: each side from its own distances, sqrt(3² + 1²) / 2 below and sqrt(1² + 1²) / 2 above.
    low, high = average_drop_ci([(-1.0, -4.0, 0.0), (-2.0, -3.0, -1.0)])
    assert (low, high) == pytest.approx((-1.5 - math.sqrt(10) / 2, -1.5 + math.sqrt(2) / 2))
    assert all(math.isnan(v) for v in average_drop_ci([(-1.0, -3.0, 1.0), (-2.0, None, None)]))
