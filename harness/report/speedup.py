"""Per-cell speedup over the baseline: a ratio of p50 latencies, or of means for a method whose compute
depends on its input (`speedup_statistic` = "mean", early exit).

Preferred: the interleaved speedup the cell measured itself (harness.measure.interleaved: the
baseline timed in alternating blocks in the same process, with a bootstrap CI). Fallback, for
records without one: a cross-cell ratio against a baseline record timed under identical
conditions — same model, task (hence sequence length), hardware config and machine fingerprint —
marked as such (`speedup_source` = "cross-cell"), because two cells timed minutes apart inherit
the machine's drift. With neither, the speedup is NaN ("–"), never a ratio across machines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATCH_KEYS = ["model", "task", "hardware", "fingerprint"]


def is_baseline(df: pd.DataFrame) -> pd.Series:
    """Rows of methods that declare themselves the survey's "Baseline" (record method.category), on
    PyTorch: cells on other runtimes (the baseline's ONNX Runtime export too) are compared with it."""
    on_pytorch = df["runtime"].eq("pytorch") if "runtime" in df else True
    return df["category"].eq("Baseline") & on_pytorch


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` with `speedup` at batch 1 (ok cells only), its CI where interleaved, and
    `speedup_source`: "interleaved", "reference" (the baseline itself), "cross-cell" or None."""
    out = df.copy()
    ok = out["status"].eq("ok") & out["latency_p50_ms"].notna()
    mean_ms = _column(out, "latency_mean_ms")
    timings = out[MATCH_KEYS + ["latency_p50_ms"]].assign(_base_mean=mean_ms)
    base = timings.loc[ok & is_baseline(out)].drop_duplicates(MATCH_KEYS, keep="last").rename(columns={"latency_p50_ms": "_base_p50"})
    merged = out[MATCH_KEYS].merge(base, on=MATCH_KEYS, how="left")
    # The cross-cell ratio uses the statistic the method declared: means for input-dependent compute (issue 27).
    by_mean = out["speedup_statistic"].eq("mean").to_numpy() if "speedup_statistic" in out else np.zeros(len(out), bool)
    ratio = np.where(by_mean, merged["_base_mean"].to_numpy(float) / mean_ms,
                     merged["_base_p50"].to_numpy(float) / out["latency_p50_ms"].to_numpy(float))
    cross_cell = np.where(ok.to_numpy(), ratio, np.nan)
    interleaved = _column(out, "speedup_interleaved")
    reference = (ok & is_baseline(out)).to_numpy()
    out["speedup"] = np.where(np.isfinite(interleaved), interleaved, np.where(reference, 1.0, cross_cell))
    out["speedup_ci_lo"] = np.where(np.isfinite(interleaved), _column(out, "speedup_interleaved_ci_lo"), np.nan)
    out["speedup_ci_hi"] = np.where(np.isfinite(interleaved), _column(out, "speedup_interleaved_ci_hi"), np.nan)
    source = np.where(np.isfinite(interleaved), "interleaved",
                      np.where(reference, "reference", np.where(np.isfinite(cross_cell), "cross-cell", None)))
    out["speedup_source"] = pd.Series(source, index=out.index).where(lambda s: s != "None", None)
    return out


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(df[name], errors="coerce").to_numpy(float) if name in df else np.full(len(df), np.nan)


def geometric_mean(values) -> float:
    """Speedups are ratios, so they average geometrically; NaN when there is nothing to average."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0], float)
    return float(np.exp(np.log(arr).mean())) if arr.size else float("nan")
