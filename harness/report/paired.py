"""The paired comparison each record carries (its `comparison` section), as columns of the flat frame.

Columns (points on the survey's 0-100 scale, NaN when the record has no comparison):
  paired_drop, paired_ci_lo, paired_ci_hi  method - baseline on the primary metric, and its paired 95 % CI
                                           (a paired bootstrap over the eval examples, whatever the metric)
  paired_ci_method, paired_resamples       the bootstrap's interval (BCa or percentile) and its resamples
  paired_p                                 its p-value (McNemar exact for accuracy, paired bootstrap otherwise)
  paired_test                              which test gave paired_p (harness.comparison's name for it)
  agreement                                share of examples where the method predicts what the baseline does
  mean_kl                                  mean KL(baseline || method) of the class probabilities (nats)
"""

from __future__ import annotations

import json
from typing import Optional

import numpy as np
import pandas as pd

PAIRED_COLUMNS = ["paired_drop", "paired_ci_lo", "paired_ci_hi", "paired_ci_method", "paired_resamples", "paired_p",
                  "paired_test", "agreement", "mean_kl"]
# harness.comparison's test names as a reader should see them beside a p-value.
PAIRED_TEST_LABELS = {"mcnemar_exact": "McNemar exact test", "paired_bootstrap": "paired bootstrap"}


def paired_test_label(test) -> str:
    """'McNemar exact test' for 'mcnemar_exact'; an unknown name as it is; '' for none."""
    return PAIRED_TEST_LABELS.get(test, test) if isinstance(test, str) and test else ""


def points_scale(task: str) -> float:
    """GLUE records hold fractions, SQuAD the official 0-100 scale."""
    return 1.0 if str(task).startswith("squad") else 100.0


def primary_entry(comparison: dict, primary_metric: Optional[str]) -> Optional[tuple[str, dict]]:
    """(key, PairedMetric) of the metric the table shows: the exact key, else its matched split (MNLI)."""
    metrics = (comparison or {}).get("metrics") or {}
    if not primary_metric:
        return None
    for key in (primary_metric, primary_metric + "_matched"):
        if isinstance(metrics.get(key), dict):
            return key, metrics[key]
    return None


def paired_row(record: dict, task: str, primary_metric: Optional[str]) -> dict:
    row = dict.fromkeys(PAIRED_COLUMNS, np.nan)
    row["paired_test"] = row["paired_ci_method"] = None
    comparison = record.get("comparison")
    found = primary_entry(comparison, primary_metric) if isinstance(comparison, dict) else None
    if found is None:
        return row
    key, entry = found
    scale = points_scale(task)
    ci = entry.get("ci95") or [np.nan, np.nan]
    row.update(paired_drop=scale * entry["difference"], paired_ci_lo=scale * ci[0], paired_ci_hi=scale * ci[1],
               paired_p=entry.get("p_value") if entry.get("p_value") is not None else np.nan,
               paired_test=entry.get("test"), paired_ci_method=entry.get("ci_method"),
               paired_resamples=comparison.get("resamples") if entry.get("ci95") and comparison.get("resamples") else np.nan)
    agreements = comparison.get("agreement") or {}
    split = next((name for name in agreements if key.endswith(name.replace("validation_", ""))), None) or next(iter(agreements), None)
    if split is not None:
        found_agreement = agreements[split]
        row["agreement"] = found_agreement.get("same_prediction") if found_agreement.get("same_prediction") is not None else np.nan
        row["mean_kl"] = found_agreement.get("mean_kl_baseline_to_method") if found_agreement.get("mean_kl_baseline_to_method") is not None else np.nan
    return row


def add_paired_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of the flat records frame with PAIRED_COLUMNS read from each record's file."""
    if df.empty or set(PAIRED_COLUMNS) <= set(df.columns):
        return df.assign(**{c: df.get(c, np.nan) for c in PAIRED_COLUMNS}) if df.empty else df
    rows = []
    for path, task, metric in zip(df["path"], df["task"], df["primary_metric"]):
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            record = {}
        rows.append(paired_row(record, task, metric))
    return pd.concat([df.reset_index(drop=True), pd.DataFrame(rows, columns=PAIRED_COLUMNS)], axis=1).set_axis(df.index)
