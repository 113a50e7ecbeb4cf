"""What a sweep prints: one line per finished cell, and at the end how every planned cell ended,
with the exit code a script can test:

    0  every cell ok or unsupported          1  at least one cell failed
    3  a cell has no record (refused because another cell held the machine, interrupted, crashed)
    2  bad input (harness.cli, before anything runs)        130  interrupted by Ctrl-C
                                                            143  stopped by SIGTERM (as Ctrl-C)
"""

from __future__ import annotations

from pathlib import Path

from harness.record import load_record

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_RUN, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


def cell_title(record: dict) -> str:
    """The cell's names, its method as the report labels it: two cells of one sweep over a method's
    parameter ("magnitude (sparsity=0.3)", "magnitude") never print the same line."""
    label = ((record.get("method") or {}).get("label") or {}).get("short")
    method_config = (record.get("config") or {}).get("method")
    if not label and isinstance(method_config, dict):  # a failed cell's record has no method section
        from harness.labels import record_label

        label = record_label(method_config, record["cell"].get("runtime", "pytorch"))["short"]
    return " ".join(label if key == "method" and label else value for key, value in record["cell"].items())


def summary_line(record: dict, path: Path) -> str:
    names = cell_title(record)
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
    verdict = ((record.get("latency") or {}).get("contention") or {}).get("verdict")
    if verdict in ("contended", "unstable"):  # said where the user looks first, not only in the record
        parts.append(f"timing {verdict} (see latency.notes)")
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
            problems.append(f"  failed: {cell_title(record)}: {record['reason']} -> {path}")
    not_run = len(planned) - sum(counts.values())
    head = (f"compbench: sweep of {len(planned)} cells: {counts['ok']} ok, {counts['unsupported']} unsupported, "
            f"{counts['failed']} failed, {not_run} not run ({earlier} recorded by earlier runs)")
    code = EXIT_FAILED if counts["failed"] else EXIT_NOT_RUN if not_run else EXIT_OK
    return [head, *problems], code
