"""Find record files, validate them with `harness.record.load_record`, and flatten them to rows.

A bad file never stops the report: it is named in `problems` and skipped. One row per configuration,
seed and machine: every distinct configuration of a sweep stays (issue 11 part 6). Only a re-run of
the very same configuration and seed on the same machine replaces a record, the newest winning (the
older one is named in `problems` too, so a silently shadowed result is impossible).
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
from pathlib import Path

import pandas as pd

from harness.record import load_record
from harness.report.flatten import COLUMNS, flatten_record

SUPERSEDED = "superseded by a newer record of the same configuration on the same machine"
EXIT_SKIPPED = 1  # a report command that finished but skipped a file, or matched nothing for a pattern


def skipped(problems: list[str]) -> list[str]:
    """The problems that left something out (an unreadable or invalid file, a pattern matching
    nothing), as opposed to an older run of a configuration that a newer one replaced."""
    return [p for p in problems if not p.endswith(SUPERSEDED)]


def report_skips(problems: list[str]) -> int:
    """Fail closed: a report that left out a file (or matched nothing for a pattern) says how many and
    exits EXIT_SKIPPED, so a script never takes a partial table for the whole."""
    left_out = skipped(problems)
    if left_out:
        print(f"compbench-report: {len(left_out)} file(s) or pattern(s) skipped (named above); exit {EXIT_SKIPPED}", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


def find_record_files(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Expand directories and globs to JSON files; a pattern matching nothing is a problem."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        matches = [pattern] if os.path.exists(pattern) else sorted(glob.glob(pattern, recursive=True))
        files: list[str] = []
        for match in matches:
            if os.path.isdir(match):
                files += glob.glob(os.path.join(match, "**", "records", "*.json"), recursive=True)
                files += glob.glob(os.path.join(match, "*.json"))
            elif match.endswith(".json") or match == pattern:
                files.append(match)
        files = [f for f in files if not os.path.basename(f).startswith(".")]  # atomic-write temp files
        if not files:
            problems.append(f"{pattern}: no record files found")
        for name in files:
            found.setdefault(os.path.realpath(name), Path(name))
    return sorted(found.values()), problems


def load_records(patterns: list[str] | str) -> tuple[pd.DataFrame, list[str]]:
    """All valid records under `patterns` as one flat DataFrame (see flatten.COLUMNS) + problems."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    files, problems = find_record_files(list(patterns))
    rows = []
    for path in files:
        try:
            record = load_record(path)
            rows.append(flatten_record(record, path))
        except ValueError as err:
            problems.append(str(err))
        except (AttributeError, KeyError, TypeError, IndexError) as err:
            # Valid envelope, unexpected inner shape: still one skipped file, not a crash.
            problems.append(f"{path}: malformed record ({err.__class__.__name__}: {err})")
    df = pd.DataFrame(rows, columns=COLUMNS)
    df, superseded = _newest_per_cell(df)
    return _distinct_labels(df), problems + superseded


def _distinct_labels(df: pd.DataFrame) -> pd.DataFrame:
    """One label, one configuration: where two records of a model share a short label but changed
    different parameters (a label cut to fit, or two presets' coinciding names), each gets a digest
    of its parameters appended, so Table 1 never merges them into one row."""
    if df.empty:
        return df
    clash = df.groupby(["model", "label"])["parameters"].transform("nunique") > 1
    if clash.any():
        digest = df.loc[clash, "parameters"].map(lambda p: hashlib.sha1(str(p).encode()).hexdigest()[:4])
        df.loc[clash, "label"] = df.loc[clash, "label"] + " ·" + digest
    return df


def _newest_per_cell(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    if df.empty:
        return df.reset_index(drop=True), []
    # The configuration without paths, run flags and seed (variants.setting_key); a record without a
    # config falls back to its hash, and one without either is never taken for a re-run.
    identity = df["setting"].fillna(df["config_hash"]).fillna(df["path"])
    key = ["task", "model", "method", "hardware", "fingerprint", "_identity", "_seed"]
    df = df.assign(_identity=identity, _seed=df["seed"].astype(str))
    df = df.sort_values(["created_at", "path"], na_position="first", kind="stable")
    dup = df.duplicated(key, keep="last")
    notes = [f"{p}: {SUPERSEDED}" for p in df.loc[dup, "path"]]
    df = df.drop(columns=["_identity", "_seed"])
    kept = df.loc[~dup].sort_values(["task", "model", "method", "label", "hardware", "fingerprint"], kind="stable")
    return kept.reset_index(drop=True), notes
