"""The legend of methods: each measured method's paper, that paper's recipe, and what compbench's
default changes, as the records say (methods.base.Reference, written into every record)."""

from __future__ import annotations

import pandas as pd

LEGEND_COLUMNS = ["Method", "Paper", "Paper's recipe", "compbench's default", "Beside published rows"]


def reference_legend(records: pd.DataFrame) -> pd.DataFrame:
    """One row per method name (runtimes folded together), in the order methods first appear."""
    if records.empty or "reference_paper" not in records:
        return pd.DataFrame(columns=LEGEND_COLUMNS)
    described = records[records["reference_paper"].notna()]
    rows = []
    for method, group in described.groupby(described["method"].str.split(" [", regex=False).str[0], sort=False):
        newest = group.sort_values("created_at", na_position="first").iloc[-1] if "created_at" in group else group.iloc[-1]
        rows.append({
            "Method": method,
            "Paper": newest["reference_paper"],
            "Paper's recipe": newest["reference_recipe"] or "",
            "compbench's default": newest["reference_changes"] or "as the paper",
            "Beside published rows": "yes" if newest["comparable_to_published"] else "no: another regime (see the default)",
        })
    return pd.DataFrame(rows, columns=LEGEND_COLUMNS)


LABEL_COLUMNS = ["Label", "Preset", "Changed from the preset", "Paper"]


def label_legend(records: pd.DataFrame) -> pd.DataFrame:
    """One row per Table 1 label: the preset (a registered name) it starts from and every parameter changed
    from it, in full, as the records say (harness.labels) — a short label's key."""
    if records.empty or "label" not in records:
        return pd.DataFrame(columns=LABEL_COLUMNS)
    rows = []
    for label, group in records.groupby("label", sort=True):
        newest = group.sort_values("created_at", na_position="first").iloc[-1] if "created_at" in group else group.iloc[-1]
        rows.append({
            "Label": label,
            "Preset": newest.get("preset") or "",
            "Changed from the preset": newest.get("variant") or "nothing (its defaults)",
            "Paper": newest.get("reference_paper") if isinstance(newest.get("reference_paper"), str) else "",
        })
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)
