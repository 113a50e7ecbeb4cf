"""The report CLI's statistics commands: --rescore, --export-predictions, --recommend, --compare."""

from __future__ import annotations

import sys
from pathlib import Path


def run_statistics_command(args) -> int:
    from harness.report.load import report_skips

    if args.compare:
        from harness.report.compare import compare_results

        for name, path in zip("AB", args.compare):
            if not Path(path).exists():
                print(f"compbench-report: error: --compare {name}: {path} does not exist", file=sys.stderr)
                return 2
        _, lines, problems = compare_results([args.compare[0]], [args.compare[1]])
        for problem in problems:
            print(f"skipped: {problem}", file=sys.stderr)
        print("\n".join(lines))
        return report_skips(problems)
    from harness.report.load import load_records
    from harness.report.machines import MachineSelectionError, select_machine

    records, problems = load_records(args.paths)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    try:
        records = select_machine(records, getattr(args, "machine", None))
    except MachineSelectionError as err:
        print(f"compbench-report: error: {err}", file=sys.stderr)
        return 2
    if records.empty:
        print(f"compbench-report: no records found in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    if args.rescore or args.export_predictions:
        return max(_predictions_commands(records, args), report_skips(problems))
    from harness.report.recommend import Budget, recommend

    budget = Budget(args.max_drop, args.max_latency_ms, args.max_size_pct, args.device)
    from harness.report.table import TASK_ALIASES

    # Without --tasks every measured task is answered; with it, the tasks named (a variant counts as its task).
    wanted = set(args.tasks) | set(args.extra_tasks) if args.tasks is not None else None
    tasks = tuple(t for t in sorted(set(records["task"])) if wanted is None or t in wanted or TASK_ALIASES.get(t) in wanted)
    _, lines = recommend(records, budget, tasks)
    print("\n".join(lines))
    return report_skips(problems)


def _predictions_commands(records, args) -> int:
    from harness.predictions import export_official, rescore
    from harness.record import load_record

    differences, missing, written, checked = [], [], [], 0
    for path in records.loc[records["status"].eq("ok"), "path"]:
        record = load_record(path)
        if record.get("metrics") is None:
            continue  # random init / accuracy disabled: nothing was scored
        if not record.get("predictions"):
            missing.append(str(path))
            continue
        try:
            if args.rescore:
                checked += 1
                differences += rescore(record, path)
            if args.export_predictions:
                written += export_official(record, path, Path(args.export_predictions))
        except (OSError, ValueError) as err:
            differences.append(f"{path}: {err}")
    for name in missing:
        print(f"no predictions: {name} (recorded before prediction files existed)", file=sys.stderr)
    if missing:  # a record that cannot be re-scored was not checked: fail closed, and say how many
        differences.append(f"{len(missing)} record(s) without predictions could not be re-scored")
    if args.export_predictions:
        print(f"wrote {len(written)} prediction files to {args.export_predictions}", file=sys.stderr)
    if args.rescore:
        for line in differences:
            print(f"MISMATCH {line}", file=sys.stderr)
        print(f"rescored {checked} record(s): {'all metrics reproduced exactly' if not differences else f'{len(differences)} difference(s)'}")
    return 1 if differences else 0
