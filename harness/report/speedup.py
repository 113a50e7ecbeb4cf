"""Per-cell speedup over the baseline measured beside it.

A speedup is only meaningful against a baseline timed under identical conditions, so the match is
strict: same model, task (hence sequence length), hardware config and machine fingerprint. With
no such baseline the speedup is NaN ("–"), never a ratio across machines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATCH_KEYS = ["model", "task", "hardware", "fingerprint"]


def is_baseline(df: pd.DataFrame) -> pd.Series:
    """The fp32 PyTorch baseline: cells on other runtimes (its ONNX Runtime export too) are compared with it."""
    on_pytorch = df["runtime"].eq("pytorch") if "runtime" in df else True
    return df["category"].eq("Baseline") & on_pytorch


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` with `speedup` = baseline p50 / cell p50 at batch 1 (ok cells only)."""
    out = df.copy()
    ok = out["status"].eq("ok") & out["latency_p50_ms"].notna()
    base = out.loc[ok & is_baseline(out), MATCH_KEYS + ["latency_p50_ms"]]
    base = base.drop_duplicates(MATCH_KEYS, keep="last").rename(columns={"latency_p50_ms": "_base_p50"})
    merged = out[MATCH_KEYS].merge(base, on=MATCH_KEYS, how="left")
    ratio = merged["_base_p50"].to_numpy(float) / out["latency_p50_ms"].to_numpy(float)
    out["speedup"] = np.where(ok.to_numpy(), ratio, np.nan)
    return out


def geometric_mean(values) -> float:
    """Speedups are ratios, so they average geometrically; NaN when there is nothing to average."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0], float)
    return float(np.exp(np.log(arr).mean())) if arr.size else float("nan")
