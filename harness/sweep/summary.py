"""What a sweep prints: one line per finished cell, and at the end how every planned cell ended,
with the exit code a script can test:

    0  every cell ok or unsupported          1  at least one cell failed
    3  a cell has no record (refused because another cell held the machine, interrupted, crashed)
    2  bad input (harness.cli, before anything runs)        130  interrupted by Ctrl-C
"""

from __future__ import annotations

from pathlib import Path

from harness.record import load_record

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def summary_line(record: dict, path: Path) -> str:
    names = " ".join(record["cell"].values())
    if record["status"] != "ok":
        return f"[{record['status']}] {names}: {record['reason']} -> {path}"
    parts = [f"[ok] {names}"]
    primary = record["config"]["task"]["primary_metric"]
    metrics = record.get("metrics") or {}
    value = metrics.get(primary, metrics.get(f"{primary}_matched"))
    parts.append(f"{primary} {value:.4f}" if isinstance(value, (int, float)) else f"{primary} n/a")
    size = record.get("size") or {}
    if size.get("pct_of_baseline_with_emb") is not None:
        parts.append(f"size {size['pct_of_baseline_with_emb']:.1f}%")
    fixed = (record.get("latency") or {}).get("fixed") or []
    if fixed:
        parts.append(f"p50 bs={fixed[0]['batch_size']} {fixed[0]['p50_ms']:.2f} ms")
    parts.append(f"{sum(record.get('timings', {}).values()):.0f} s")
    if (record.get("environment") or {}).get("concurrent_cells", 1) > 1:
        parts.append(f"shared with {record['environment']['concurrent_cells'] - 1} other cell(s)")
    return " | ".join(parts) + f" -> {path}"


def sweep_report(planned: list[Path], started: float) -> tuple[list[str], int]:
    """Lines listing how every planned cell ended, and the exit code (see the module docstring)."""
    counts = {"ok": 0, "unsupported": 0, "failed": 0}
    earlier, problems = 0, []
    for path in planned:
        try:
            record = load_record(path)
        except (ValueError, FileNotFoundError):
            problems.append(f"  not run: {path.name} (refused, interrupted or crashed before writing; re-run the sweep)")
            continue
        counts[record["status"]] += 1
        earlier += path.stat().st_mtime < started
        if record["status"] == "failed":
            problems.append(f"  failed: {' '.join(record['cell'].values())}: {record['reason']} -> {path}")
    not_run = len(planned) - sum(counts.values())
    head = (f"compbench: sweep of {len(planned)} cells: {counts['ok']} ok, {counts['unsupported']} unsupported, "
            f"{counts['failed']} failed, {not_run} not run ({earlier} recorded by earlier runs)")
    code = EXIT_FAILED if counts["failed"] else EXIT_NOT_RUN if not_run else EXIT_OK
    return [head, *problems], code
