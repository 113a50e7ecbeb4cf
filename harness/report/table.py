"""Table 1 of Ganesh et al. (2021), regenerated from measured cells: one row per (machine, model, method).

`table1_numeric` gives numbers (NaN where not measured); `table1` gives the display strings.
Accuracy columns are on the survey's 0-100 scale; sizes are % of the baseline of the same model;
speedups come from `speedup.add_speedups` (same model, task, hardware and machine).
Every row is one machine's (machines.py): its speedups, drops and seed means never combine records
of two fingerprints, and each machine's rows form a table of their own (`machine` names it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.report.categories import category_rank
from harness.report.machines import MACHINE_KEY, by_machine
from harness.report.paired import add_paired_columns
from harness.report.speedup import add_speedups, geometric_mean, is_baseline

# The task columns of Ganesh et al.'s Table 1, in its order: a report's own columns follow it where they overlap.
SURVEY_TASKS = ("mnli", "qqp", "sst2", "squad_v1.1")
# A variant task measured instead of the survey's: shown in the survey's column, with a marker.
TASK_ALIASES = {"squad_v1.1_devsplit": "squad_v1.1"}
MARK_SUBSET, MARK_RANDOM, MARK_VARIANT, MARK_SPARSE, MARK_TRAIN_SUBSET = "ˢ", "ʳ", "ᵈ", "ⁿ", "ᵗ"
MARK_CHANCE = "ᶻ"  # the fine-tuned baseline this score is compared with is at chance (harness.chance)
MEASURED = "measured"
LEAD_COLUMNS = ["category", "method", "model", "source", "provenance", "target_device",
                "size_w_emb_pct", "size_wo_emb_pct", "speedup_gpu", "speedup_cpu"]


def measured_tasks(df: pd.DataFrame, extra_tasks=()) -> tuple[str, ...]:
    """The task columns of what `df`'s usable records measured, `extra_tasks` left out: a variant in its
    survey column (unless it is an extra task by name), the survey's columns first in its order, then
    the others alphabetically. What Table 1 shows and averages when no task is named."""
    ok = df[df["status"].eq("ok")] if "status" in df else df
    present = {t if t in extra_tasks else TASK_ALIASES.get(t, t) for t in ok["task"].dropna()} - set(extra_tasks)
    return tuple(t for t in SURVEY_TASKS if t in present) + tuple(sorted(present - set(SURVEY_TASKS)))


def table1_numeric(df: pd.DataFrame, tasks=None, extra_tasks=(), published=False) -> pd.DataFrame:
    """Numeric Table 1, one machine's table after another (ordered by `machine`, its name; `fingerprint`
    its key). Per task column `t` also `t_ci_lo`, `t_ci_hi`, `t_marks`; `avg_drop` is over `tasks` only
    (default: every task the records measured, `measured_tasks`), and `avg_drop_tasks` names the ones
    each row's average took in."""
    tasks = measured_tasks(df, extra_tasks) if tasks is None else tuple(tasks)
    columns = list(tasks) + [t for t in extra_tasks if t not in tasks]
    ok = add_paired_columns(add_speedups(df[df["status"].eq("ok")]))
    # A variant goes to its survey column unless the caller asked for the variant's own column.
    ok = ok.assign(column=ok["task"].map(lambda t: t if t in columns else TASK_ALIASES.get(t, t)))
    # One row per configuration (its label says what differs from the method's defaults); seeds of one
    # configuration share the label and are aggregated in `_row`.
    label = ok["label"].fillna(ok["method"]) if "label" in ok else ok["method"]
    ok = ok.assign(label=label)
    tables = [_machine_table(cells, fingerprint, name, columns, tasks, published) for fingerprint, name, cells in by_machine(ok)]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=_all_columns(columns))
    return table.reset_index(drop=True)


def _machine_table(ok: pd.DataFrame, fingerprint, name: str, columns: list[str], tasks, published) -> pd.DataFrame:
    """One machine's Table 1: its rows, baselines and seeds only. Holm runs over this table's methods
    (the family a reader of it compares), and the survey's rows sit beside this machine's measured ones."""
    # Only the columns a row reads: a row of the full frame (hundreds of columns) costs milliseconds to
    # take, thousands of times in a large table. Each row looks up its model's baseline per task:
    # grouped once here, not filtered out of every cell per row.
    ok = ok[[column for column in ROW_INPUTS if column in ok]]
    # Plain Python objects in the text columns: a row reads single values thousands of times, and each
    # read from pandas' Arrow-backed strings is a pyarrow call.
    ok = ok.astype({column: object for column in ok.columns if pd.api.types.is_string_dtype(ok[column].dtype)})
    baselines = {key: cells for key, cells in ok[is_baseline(ok)].groupby(["model", "task"], sort=False)}
    chosen: dict = {}

    def baseline_of(model, cell):
        """The baseline _pick chooses for `cell`; it depends only on these keys, so each is picked once
        however many configurations share it."""
        key = (model, cell["task"], str(cell.get("seed")), cell["hardware"], cell["fingerprint"])
        if key not in chosen:
            chosen[key] = _pick(baselines.get((model, cell["task"]), ok.iloc[0:0]), prefer=cell)
        return chosen[key]

    rows = [_row(group, baseline_of, columns, tasks) for _, group in ok.groupby(["model", "label"], sort=False)]
    table = pd.DataFrame(rows, columns=_all_columns(columns))
    if not table.empty:
        order = table["category"].map(category_rank)
        table = table.assign(_rank=order).sort_values(["_rank", "model", "method"], kind="stable").drop(columns="_rank")
        table = _significance_per_task(table, columns)
    if published:
        from harness.report.published import interleave_published

        table = interleave_published(table, columns, include_all=(published == "all"))
    return table.assign(machine=name, **{MACHINE_KEY: fingerprint})


# Every column of the flat frame that _row and its helpers read (by name or with .get).
ROW_INPUTS = ("category", "label", "method", "model", "runtime", "provenance", "device", "gpu_name", "cpu_model",
              "size_pct_with_emb", "size_pct_without_emb", "size_sparse", "speedup", "speedup_ci_lo", "speedup_ci_hi",
              "speedup_source", "speedup_statistic", "latency_verdict", "comparable_to_published", "train_steps",
              "train_examples_seen", "train_wall_s", "column", "score", "ci_lo", "ci_hi", "seed", "setting", "task",
              "hardware", "fingerprint", "subset", "paired_drop", "paired_ci_lo", "paired_ci_hi", "paired_ci_method",
              "paired_resamples", "paired_p", "paired_test", "random_init", "train_subset", "baseline_at_chance", "created_at")


def failed_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Cells that produced no measurement, with the recorded reason."""
    bad = df[df["status"].isin(["failed", "unsupported"])]
    cols = ["task", "model", "method", "hardware", "status", "reason"]
    return bad[cols].fillna({"reason": "(no reason recorded)"}).sort_values(cols[:4]).reset_index(drop=True)


def _all_columns(columns: list[str]) -> list[str]:
    per_task = [c + suffix for c in columns for suffix in ("", "_ci_lo", "_ci_hi", "_marks", "_sd", "_n") + PAIRED_SUFFIXES]
    speedup = [f"speedup_{d}_{suffix}" for d in ("gpu", "cpu") for suffix in ("low", "high", "flags")]
    return (["machine", MACHINE_KEY] + LEAD_COLUMNS + ["size_marks"] + speedup + per_task
            + ["avg_drop", "avg_drop_ci_lo", "avg_drop_ci_hi", "avg_drop_marks", "avg_drop_tasks", "notes",
               "comparable_to_published"]
            + ["train_steps", "train_examples_seen", "train_wall_s"])


MARK_CROSS_CELL = "ᶜ"  # speedup from two cells timed apart (no interleaved measurement in the record)
MARK_CONTENDED = "ᵏ"  # a timed pass stayed contended after its re-measurements
MARK_UNSTABLE = "ᵘ"  # a timed pass stayed unsteady (canary or block pairs) after its re-measurements and fresh processes
MARK_MEAN = "ᵐ"  # speedup is a ratio of mean latencies: the method's compute depends on the input (issue 27)


def _speedup_evidence(cells: pd.DataFrame, column: str) -> dict:
    """The interleaved CI when the speedup comes from one cell, and marks for how it was obtained."""
    # Named *_low/*_high/*_flags, not *_ci_lo/*_marks: those suffixes mark per-task score columns.
    evidence = {column + "_low": np.nan, column + "_high": np.nan, column + "_flags": ""}
    timed = cells[cells["speedup"].notna()] if "speedup" in cells else cells.iloc[0:0]
    if len(timed) == 1 and "speedup_ci_lo" in timed:
        evidence.update({column + "_low": timed["speedup_ci_lo"].iloc[0], column + "_high": timed["speedup_ci_hi"].iloc[0]})
    marks = ""
    if "speedup_source" in timed and timed["speedup_source"].eq("cross-cell").any():
        marks += MARK_CROSS_CELL
    if "latency_verdict" in timed and timed["latency_verdict"].eq("contended").any():
        marks += MARK_CONTENDED
    if "latency_verdict" in timed and timed["latency_verdict"].eq("unstable").any():
        marks += MARK_UNSTABLE
    if "speedup_statistic" in timed and timed["speedup_statistic"].eq("mean").any():
        marks += MARK_MEAN
    evidence[column + "_flags"] = marks
    return evidence


def _row(group: pd.DataFrame, baseline_of, columns: list[str], drop_tasks) -> dict:
    """One configuration on one machine: `group` holds that machine's cells only, and `baseline_of(model,
    cell)` picks that machine's baseline record for a cell."""
    first = group.iloc[0]
    devices = [d for d in pd.concat([group.loc[group["device"].eq("cuda"), "gpu_name"],
                                     group.loc[group["device"].eq("cpu"), "cpu_model"]]).dropna().unique()]
    row = {
        "category": first["category"], "method": first["label"], "model": first["model"],
        "source": MEASURED, "provenance": first["provenance"], "target_device": "; ".join(devices),
        "size_w_emb_pct": group["size_pct_with_emb"].median(), "size_wo_emb_pct": group["size_pct_without_emb"].median(),
        "size_marks": MARK_SPARSE if group["size_sparse"].astype(bool).any() else "",
        "speedup_gpu": geometric_mean(group.loc[group["device"].eq("cuda"), "speedup"]),
        "speedup_cpu": geometric_mean(group.loc[group["device"].eq("cpu"), "speedup"]),
        "notes": "",
        # False when the method's reference says its regime differs from the published rows (task-only KD)
        "comparable_to_published": bool(group["comparable_to_published"].all()) if "comparable_to_published" in group else True,
        # the largest training budget among the row's records (tasks differ in size): ShrinkBench's "report the budget"
        **{key: group[key].max() if key in group and group[key].notna().any() else np.nan
           for key in ("train_steps", "train_examples_seen", "train_wall_s")},
    }
    for device, column in (("cuda", "speedup_gpu"), ("cpu", "speedup_cpu")):
        row.update(_speedup_evidence(group[group["device"].eq(device)], column))
    drops, drop_cis, drop_marks, averaged = [], [], set(), []
    by_column = dict(tuple(group.groupby("column", sort=False)))
    for column in columns:
        cell = _pick(by_column.get(column, group.iloc[0:0]))
        marks = _marks(cell, column)
        row.update({column: np.nan, column + "_ci_lo": np.nan, column + "_ci_hi": np.nan, column + "_marks": marks,
                    column + "_sd": np.nan, column + "_n": np.nan})
        if cell is None or pd.isna(cell["score"]):
            continue
        row.update({column: cell["score"], column + "_ci_lo": cell["ci_lo"], column + "_ci_hi": cell["ci_hi"], column + "_n": 1})
        seed_cells = _seed_cells(by_column[column], cell)
        seeds = seed_cells["score"].astype(float)
        paired = seed_cells["paired_drop"].astype(float)  # each seed's drop against its own baseline
        if len(seeds) > 1:  # the same configuration under several seeds: mean ± std over them, with n
            row.update({column: seeds.mean(), column + "_ci_lo": np.nan, column + "_ci_hi": np.nan,
                        column + "_sd": seeds.std(ddof=1), column + "_n": len(seeds)})
            cell = cell.copy()
            cell["score"] = seeds.mean()
        has_paired = paired.notna().all()
        if first["category"] != "Baseline":  # over seeds: their mean paired drop; one seed's CI and p do not describe it
            one = len(seeds) == 1
            row.update({column + "_drop": float(paired.mean()) if has_paired else np.nan,
                        column + "_drop_ci_lo": cell["paired_ci_lo"] if one else np.nan,
                        column + "_drop_ci_hi": cell["paired_ci_hi"] if one else np.nan,
                        column + "_drop_ci_method": cell.get("paired_ci_method") if one else None,
                        column + "_drop_resamples": cell.get("paired_resamples") if one else np.nan,
                        column + "_drop_p": cell["paired_p"] if one else np.nan,
                        column + "_drop_test": cell.get("paired_test") if one else None})
        base = baseline_of(first["model"], cell)
        if column in drop_tasks and base is not None and pd.notna(base["score"]) and not cell["random_init"]:
            # Each record's own paired drop (its baseline: same seed, same examples) where every seed has
            # one; a difference of two records' scores only for records without it.
            drops.append(float(paired.mean()) if has_paired else cell["score"] - base["score"])
            # one seed's paired CI does not describe a mean over seeds: such a row gets no average-drop CI
            drop_cis.append((drops[-1], cell.get("paired_ci_lo"), cell.get("paired_ci_hi")) if len(seeds) == 1
                            else (drops[-1], None, None))
            drop_marks |= set(marks) | set(_marks(base, column))
            averaged.append(column)
    row["avg_drop"] = float(np.mean(drops)) if drops else np.nan
    row["avg_drop_tasks"] = ",".join(averaged)
    # A baseline's drop is 0 by definition (the ORT baseline's predictions equal PyTorch's): no CI to show.
    is_reference = first["category"] == "Baseline"
    row["avg_drop_ci_lo"], row["avg_drop_ci_hi"] = (np.nan, np.nan) if is_reference else average_drop_ci(drop_cis)
    row["avg_drop_marks"] = "".join(sorted(drop_marks - {MARK_RANDOM}))
    return row


def average_drop_ci(tasks: list[tuple]) -> tuple[float, float]:
    """95 % CI of the mean of per-task paired drops, from each task's (drop, lo, hi): its paired
    bootstrap CI. One task: that CI itself, so Avg. drop and the task's (Δ [lo, hi]) never disagree.
    Several: MOVER (Zou & Donner 2008, Stat Med 27:1693), each side on its own: the distances from
    each drop to that side of its CI, squared and added (the tasks' dev sets are independent), the
    root divided by the number of tasks. Symmetric CIs give the variance-adding normal interval; a
    skewed (BCa) CI keeps its skew instead of being averaged into a symmetric one. NaN unless every
    averaged task has a paired CI (seed-averaged rows have none)."""
    if not tasks or any(lo is None or hi is None or pd.isna(lo) or pd.isna(hi) for _, lo, hi in tasks):
        return np.nan, np.nan
    if len(tasks) == 1:
        _, lo, hi = tasks[0]
        return float(lo), float(hi)
    average = float(np.mean([drop for drop, _, _ in tasks]))
    # a BCa interval may (rarely) not contain its own estimate: that side then adds no width
    below = np.sqrt(sum(max(drop - lo, 0.0) ** 2 for drop, lo, _ in tasks)) / len(tasks)
    above = np.sqrt(sum(max(hi - drop, 0.0) ** 2 for drop, _, hi in tasks)) / len(tasks)
    return average - below, average + above


# Paired drop vs the baseline on the same examples (points): its CI (paired bootstrap), whether that CI
# excludes 0 (the table's †), the bootstrap's CI method and resamples; the record's test (McNemar exact
# for accuracy, the paired bootstrap otherwise), its raw and Holm-adjusted p and verdict (the table's ‡).
PAIRED_SUFFIXES = ("_drop", "_drop_ci_lo", "_drop_ci_hi", "_drop_ci_excludes_zero", "_drop_ci_method",
                   "_drop_resamples", "_drop_p", "_drop_test", "_drop_p_holm", "_drop_holm_significant")
ALPHA = 0.05


def _significance_per_task(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Two verdicts per drop, each from one method. `_drop_ci_excludes_zero`: the paired bootstrap CI
    shown beside the drop excludes 0, so the mark can never contradict its CI. `_drop_holm_significant`:
    the record's test after Holm over the methods compared on the task, since a table tests many drops
    at once and the family-wise error rate, not each test's, is what a reader of "significant" assumes.
    They can differ: Holm's is stricter, and for accuracy the test is McNemar's, not the bootstrap."""
    from harness.comparison import holm_adjust

    table = table.copy()
    for column in columns:
        low, high = table[column + "_drop_ci_lo"].astype(float), table[column + "_drop_ci_hi"].astype(float)
        table[column + "_drop_ci_excludes_zero"] = (low > 0) | (high < 0)  # NaN compares False
        adjusted = holm_adjust(table[column + "_drop_p"].to_numpy(float))
        table[column + "_drop_p_holm"] = adjusted
        table[column + "_drop_holm_significant"] = np.where(np.isfinite(adjusted), adjusted < ALPHA, False)
    return table


def _seed_cells(cells: pd.DataFrame, cell) -> pd.DataFrame:
    """`cell`'s configuration (same setting, task, machine and eval subset) under each of its seeds."""
    if "setting" not in cells or pd.isna(cell.get("setting")):
        return cell.to_frame().T
    # Plain Python over a few rows: pandas' per-call overhead was most of a 1,000-row table's time.
    columns = {key: cells[key].tolist() for key in ("setting", "task", "hardware", "fingerprint", "subset", "seed")}
    scored = cells["score"].notna().tolist()
    same = [i for i in range(len(cells)) if scored[i] and all(
        not _missing(columns[key][i]) and columns[key][i] == cell[key] for key in ("setting", "task", "hardware", "fingerprint", "subset"))]
    kept, seen = [], set()
    for i in reversed(same):  # the last record of each seed, as drop_duplicates(keep="last")
        seed = _MISSING if _missing(columns["seed"][i]) else columns["seed"][i]
        if seed not in seen:
            seen.add(seed)
            kept.append(i)
    return cells.iloc[sorted(kept)]


_MISSING = object()  # one key for every missing seed (NaN, None, NA), as pandas groups them
_missing = pd.isna  # on the single values a row reads


def _flag(value) -> int:
    """A ranking key: False before True before missing."""
    return 2 if _missing(value) else int(bool(value))


def _differs(a, b):
    """a != b, or None (missing) where either is missing, as pandas' string comparison gives NA."""
    return None if _missing(a) or _missing(b) else a != b


def _pick(cells: pd.DataFrame, prefer=None):
    """The record to show: a real score first, then full eval, pretrained, exact task, then the same machine."""
    if cells.empty:
        return None
    if len(cells) == 1:  # nothing to rank (most configurations on most tasks)
        return cells.iloc[0]
    # Ranked in plain Python over the few candidates (DataFrame and Series calls per candidate were
    # most of a 1,000-row table's time). Each key sorts False before True before missing, as
    # sort_values would; ties go to the newest record, then to the first.
    n = len(cells)
    values = {key: cells[key].tolist() for key in ("score", "random_init", "subset", "task", "column", "created_at")}
    keys = [[int(_missing(v)) for v in values["score"]], [_flag(v) for v in values["random_init"]],
            [_flag(v) for v in values["subset"]], [_flag(_differs(t, c)) for t, c in zip(values["task"], values["column"])]]
    if prefer is not None:
        # the same seed first: a method's record is paired with the baseline of its own seed
        if "seed" in cells:
            wanted = str(prefer.get("seed"))
            keys.append([int(str(seed) != wanted) for seed in cells["seed"].astype(str).tolist()])
        machine = [_either(_differs(h, prefer["hardware"]), _differs(f, prefer["fingerprint"]))
                   for h, f in zip(cells["hardware"].tolist(), cells["fingerprint"].tolist())]
        keys.append([_flag(flag) for flag in machine])
    created = ["" if _missing(v) else v for v in values["created_at"]]
    newest_first = sorted(range(n), key=created.__getitem__, reverse=True)  # stable: ties keep their order
    age = [0] * n
    for rank, i in enumerate(newest_first):
        age[i] = rank
    keys.append(age)
    return cells.iloc[min(range(n), key=lambda i: tuple(key[i] for key in keys))]


def _either(a, b):
    """a | b with missing (None) as pandas' three-valued logic has it: True wins, else missing, else False."""
    if any(flag is not None and bool(flag) for flag in (a, b)):
        return True
    return None if a is None or b is None else False


def _marks(cell, column: str) -> str:
    if cell is None:
        return ""
    return (MARK_VARIANT if cell["task"] != column else "") + (MARK_SUBSET if cell["subset"] else "") + (
        MARK_TRAIN_SUBSET if cell.get("train_subset", False) else "") + (MARK_RANDOM if cell["random_init"] else "") + (
        MARK_CHANCE if cell.get("baseline_at_chance") in (True,) else "")  # numpy booleans too, never NaN
