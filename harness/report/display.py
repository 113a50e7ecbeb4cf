"""Table 1 as the survey prints it: strings, "–" for anything not measured, markers and CIs inline."""

from __future__ import annotations

import math

import pandas as pd

from harness.report.paired import paired_test_label
from harness.report.table import (LEAD_COLUMNS, MARK_CHANCE, MARK_RANDOM, MARK_SPARSE, MARK_SUBSET, MARK_TRAIN_SUBSET, MARK_VARIANT,
                                  table1_numeric)

MISSING = "–"
# On a paired drop, one mark per method: † reads off the CI printed beside it, ‡ off the record's test.
MARK_CI_EXCLUDES_ZERO = "†"  # the paired bootstrap 95 % CI excludes 0
MARK_HOLM_SIGNIFICANT = "‡"  # the paired test (McNemar exact for accuracy) is significant after Holm
HEADERS = {
    "category": "Category", "method": "Method", "model": "Model", "source": "Source", "provenance": "Prov.",
    "target_device": "Target device", "size_w_emb_pct": "Size w/ emb (%)", "size_wo_emb_pct": "Size w/o emb (%)",
    "speedup_gpu": "GPU speedup", "speedup_cpu": "CPU speedup", "avg_drop": "Avg. drop", "notes": "Notes",
}
TASK_LABELS = {
    "mnli": "MNLI", "qqp": "QQP", "sst2": "SST-2", "squad_v1.1": "SQuAD v1.1 (F1)", "mrpc": "MRPC",
    "rte": "RTE", "cola": "CoLA", "stsb": "STS-B", "qnli": "QNLI", "wnli": "WNLI",
}


def table1(df: pd.DataFrame, tasks=None, extra_tasks=(), published=False, show_ci=True) -> pd.DataFrame:
    """Display Table 1 (all strings) from the flat records frame of `load_records`; `tasks` None: the
    tasks the records measured (table.measured_tasks)."""
    return format_table1(table1_numeric(df, tasks, extra_tasks, published), show_ci=show_ci)


def task_columns(numeric: pd.DataFrame) -> list[str]:
    return [c[: -len("_marks")] for c in numeric.columns if c.endswith("_marks") and c not in ("avg_drop_marks", "size_marks")]


def format_table1(numeric: pd.DataFrame, show_ci=True) -> pd.DataFrame:
    tasks = task_columns(numeric)
    out = pd.DataFrame(index=numeric.index)
    for column in LEAD_COLUMNS:
        values = numeric[column]
        if column == "size_w_emb_pct":
            out[HEADERS[column]] = [_fmt(v, "{:.1f}") + (m if _present(v) and isinstance(m, str) else "")
                                    for v, m in zip(values, numeric["size_marks"])]
        elif column.startswith("size_"):
            out[HEADERS[column]] = values.map(lambda v: _fmt(v, "{:.1f}"))
        elif column.startswith("speedup_"):
            out[HEADERS[column]] = [_speedup(r, column) for _, r in numeric.iterrows()]
        else:
            out[HEADERS[column]] = values.map(lambda v: v if isinstance(v, str) and v else MISSING)
    for task in tasks:
        out[TASK_LABELS.get(task, task)] = [_score(r, task, show_ci) for _, r in numeric.iterrows()]
    out[HEADERS["avg_drop"]] = [_average_drop(r, show_ci) for _, r in numeric.iterrows()]
    out[TRAINING_HEADER] = [_training(r) for _, r in numeric.iterrows()]
    out[HEADERS["notes"]] = numeric["notes"].fillna("")
    return out.reset_index(drop=True)


TRAINING_HEADER = "Training (largest per task)"


def _training(row) -> str:
    """'11,004 ex. / 690 steps': what the method's own training or recovery spent, for its largest task."""
    seen, steps = row.get("train_examples_seen"), row.get("train_steps")
    if not _present(seen) or not _present(steps):
        return MISSING
    return f"{int(seen):,} ex. / {int(steps):,} steps"


def _speedup(row, column: str) -> str:
    """'1.39× [1.35, 1.43]ᵏ': the value, its interleaved 95% CI when there is one, and its marks."""
    value = row[column]
    if not _present(value):
        return MISSING
    text = _fmt(value, "{:.2f}×")
    low, high = row.get(column + "_low"), row.get(column + "_high")
    if _present(low) and _present(high):
        text += f" [{low:.2f}, {high:.2f}]"
    marks = row.get(column + "_flags")
    return text + (marks if isinstance(marks, str) else "")


def footnotes(numeric: pd.DataFrame, tasks=()) -> list[str]:
    """The legend for the markers that actually occur, plus how speedups and drops were computed.
    `tasks`: the columns asked to enter Avg. drop; those no row averaged are named as such."""
    marks = "".join(numeric[[c for c in numeric.columns if c.endswith("_marks")]].fillna("").to_numpy().ravel())
    notes = [
        f"{MISSING}: not measured (or no baseline to compare with). Scores are on the 0-100 scale; ±: half-width of the 95% CI, "
        "or '± sd (n=k)': mean and standard deviation over k seeds of the same configuration. A method run with "
        "parameters changed from its preset is its own row, labelled (when its record was written) by what was changed, "
        "e.g. 'magnitude (sparsity=0.6)'; the Labels legend gives each label's preset and changes in full.",
        "Speedup: baseline p50 / method p50 at batch 1, both timed in alternating blocks in the method's cell "
        "(same process, inputs and threads), with its 95% bootstrap CI over block pairs; geometric mean over tasks. "
        "ᶜ: no interleaved timing in the record, so the ratio of two cells of the same machine timed apart. "
        "ᵏ: a timed pass stayed contended (other processes used the CPU) after its re-measurements. "
        "ᵘ: a timed pass stayed unstable (a canary workload timed in the same blocks, the blocks' own ratios, or the "
        "speedup against this cell's earlier runs on this machine moved) after its re-measurements and fresh-process tries. "
        "ᵐ: the method's compute depends on its input (early exit), so its speedup is baseline mean / method mean "
        "(cost per example) over the same seeded sample of ≥256 eval inputs (or the whole split), not a ratio of p50s. "
        "Never computed across machines.",
        average_drop_note(numeric, tasks),
    ]
    legend = {MARK_SPARSE: "sparse storage (1-bit mask + non-zero values), smaller than dense; w/o emb stays dense",
              MARK_SUBSET: "evaluated on a subset of the evaluation split",
              MARK_TRAIN_SUBSET: "trained on a subset of the training split: the baseline fine-tune (the record's data.notes) or the method's own training (its train_samples)",
              MARK_RANDOM: "random-init weights: size/latency only, accuracy not meaningful",
              MARK_CHANCE: "the fine-tuned baseline is at chance (no better than a constant guess, harness.chance): "
                           "comparisons against it are meaningless; train it longer",
              MARK_VARIANT: "SQuAD v1.1 dev-split variant (squad_v1.1_devsplit), not the official dev set"}
    notes += [f"{mark}: {text}" for mark, text in legend.items() if mark in marks]
    if any(numeric[c].notna().any() for c in numeric.columns if c.endswith("_drop")):
        notes.append(paired_drop_note(numeric))
    if numeric["source"].ne("measured").any():
        notes.append("Published rows: Ganesh et al. 2021, Table 1, as printed (other hardware, baselines and splits; "
                     "speedups are over BERT-base on the device named). Not comparable with measured rows. 'same family' rows are "
                     "other methods of a category measured here, shown for where the literature puts that family.")
    return notes


def average_drop_note(numeric: pd.DataFrame, tasks=()) -> str:
    """What Avg. drop averaged, named from the rows themselves (`avg_drop_tasks`), and how its CI was had."""
    averaged = set()
    for names in numeric.get("avg_drop_tasks", pd.Series(dtype=object)).dropna():
        averaged |= {name for name in str(names).split(",") if name}
    ordered = [t for t in task_columns(numeric) if t in averaged]
    unaveraged = [t for t in tasks if t not in averaged]
    left_out = (f" {_names(unaveraged)}: asked for, but no row has {'it' if len(unaveraged) == 1 else 'them'} "
                "with its baseline, so in no average.") if unaveraged else ""
    if not ordered:
        return f"Avg. drop: {MISSING} everywhere: no task has a row and the baseline of its model both measured on one machine.{left_out}"
    return (f"Avg. drop: mean over {_names(ordered)} of (method − baseline of the same model on the same machine) in points, "
            "over tasks both report; [lo, hi] where every averaged task has a paired CI: the 95 % CI of the mean. "
            "Over one task it is that task's paired CI (Δ d [lo, hi]) itself; over several, the tasks' paired bootstrap "
            "CIs combined side by side by MOVER (Zou & Donner 2008): the squared distances from each drop to its CI's "
            "lower (upper) limit added, the tasks' dev sets being independent." + left_out)


def _names(tasks) -> str:
    return ", ".join(TASK_LABELS.get(t, t) for t in tasks)


def paired_drop_note(numeric: pd.DataFrame) -> str:
    """The legend of (Δ d [lo, hi])†‡, naming the CI's bootstrap and the tests the table's rows carry."""
    ci_methods = _values(numeric, "_drop_ci_method")
    resamples = sorted(int(r) for r in _values(numeric, "_drop_resamples"))
    bootstrap = " or ".join(sorted(ci_methods)) or "bootstrap"
    if resamples:
        bootstrap += ", " + (f"{resamples[0]:,}" if resamples[0] == resamples[-1] else f"{resamples[0]:,}-{resamples[-1]:,}") + " resamples"
    tests = sorted(_values(numeric, "_drop_test"))
    described = {"mcnemar_exact": "McNemar's exact test on the discordant pairs (accuracy)",
                 "paired_bootstrap": "the paired bootstrap's own p (the other metrics)"}
    test_text = " or ".join(described.get(t, paired_test_label(t)) for t in tests) or "the record's paired test"
    why = "counts the task's other methods (Holm)" + (
        ", and McNemar's exact binomial test is more conservative than a bootstrap interval" if "mcnemar_exact" in tests else "")
    return (f"(Δ d [lo, hi]): method − baseline on the same eval examples, in points; [lo, hi]: its 95 % CI, a paired "
            f"bootstrap over the eval examples ({bootstrap}; both models scored on every resample). "
            f"{MARK_CI_EXCLUDES_ZERO}: that CI excludes 0. {MARK_HOLM_SIGNIFICANT}: significant at 5 % after Holm correction "
            f"over the methods on that task, by {test_text}. Its p, Holm's p and the test are in table1_numeric.csv "
            f"(<task>_drop_p, _drop_p_holm, _drop_test). {MARK_CI_EXCLUDES_ZERO} and {MARK_HOLM_SIGNIFICANT} can disagree "
            f"near the 5 % line: {MARK_HOLM_SIGNIFICANT} {why}.")


def _values(numeric: pd.DataFrame, suffix: str) -> set:
    """Every value of the per-task columns ending in `suffix` (NaN and None left out)."""
    found = set()
    for column in numeric.columns:
        if column.endswith(suffix):
            found |= {v for v in numeric[column] if _present(v) and v != ""}
    return found


def _flag(row, column: str) -> bool:
    value = row.get(column)
    return _present(value) and bool(value)


def _score(row: pd.Series, task: str, show_ci: bool) -> str:
    marks = row.get(task + "_marks") or ""
    if not _present(row[task]):
        return MISSING + marks
    text = f"{row[task]:.1f}{marks}"
    lo, hi = row.get(task + "_ci_lo"), row.get(task + "_ci_hi")
    n, sd = row.get(task + "_n"), row.get(task + "_sd")
    if _present(n) and n > 1 and _present(sd):  # mean over seeds of one configuration
        text += f" ±{sd:.1f} sd (n={int(n)})"
    elif show_ci and _present(lo) and _present(hi):
        text += f" ±{(hi - lo) / 2:.1f}"
    if _present(row.get(task + "_drop")):  # paired drop vs the baseline, its paired CI, † and ‡ (paired_drop_note)
        low, high = row.get(task + "_drop_ci_lo"), row.get(task + "_drop_ci_hi")
        text += f" (Δ{row[task + '_drop']:+.1f}" + (f" [{low:+.1f}, {high:+.1f}]" if _present(low) and _present(high) else "")
        text += (MARK_CI_EXCLUDES_ZERO if _flag(row, task + "_drop_ci_excludes_zero") else "")
        text += (MARK_HOLM_SIGNIFICANT if _flag(row, task + "_drop_holm_significant") else "") + ")"
    return text


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and not pd.isna(value)


def _average_drop(row, show_ci: bool) -> str:
    """'-0.82 [-2.03, +0.39]ᵈ': the average drop, its 95 % CI when every averaged task has a paired
    CI, and its marks."""
    if not _present(row["avg_drop"]):
        return MISSING
    text = _drop(row["avg_drop"])
    low, high = row.get("avg_drop_ci_lo"), row.get("avg_drop_ci_hi")
    if show_ci and _present(low) and _present(high):
        text += f" [{signed_points(low)}, {signed_points(high)}]"
    return text + (row["avg_drop_marks"] or "")


def signed_points(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}"  # rounded first, + 0.0: never "-0.00"


def _drop(value: float) -> str:
    # An explicit sign separates gains from losses; an exact tie reads as the survey's baseline "0.00".
    return "0.00" if abs(value) < 0.005 else f"{value:+.2f}"


def _fmt(value, pattern: str) -> str:
    return pattern.format(float(value)) if _present(value) else MISSING
