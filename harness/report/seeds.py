"""Cells repeated over seeds (`compbench -m seed=1,2,3 ...`): mean ± std per cell."""

from __future__ import annotations

import pandas as pd

from harness.measure.stats import mean_std

KEYS = ["task", "model", "label", "hardware", "fingerprint"]  # label: the configuration (method + non-defaults)
VALUES = {"score": "score", "latency_p50_ms": "p50 bs=1 (ms)"}


def seed_summary(records: pd.DataFrame) -> pd.DataFrame:
    """One row per cell measured under more than one seed; cells with a single seed are left out."""
    ok = records[(records["status"] == "ok") & records["seed"].notna()]
    ok = ok.assign(label=ok["label"].fillna(ok["method"]) if "label" in ok else ok["method"],
                   setting=ok["setting"] if "setting" in ok else "")
    rows = []
    for (*key, _), group in ok.groupby(KEYS + ["setting"], dropna=False):
        if group["seed"].nunique() < 2:
            continue
        row = dict(zip(KEYS, key))
        row["seeds"] = ",".join(str(int(s)) for s in sorted(group["seed"].unique()))
        for column, label in VALUES.items():
            values = group[column].dropna().astype(float).tolist()
            mean, std = mean_std(values) if values else (None, None)
            row[label] = "–" if mean is None else f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"
        rows.append(row)
    return pd.DataFrame(rows, columns=[*KEYS, "seeds", *VALUES.values()])
