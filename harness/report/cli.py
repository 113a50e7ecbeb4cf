"""`compbench-report`: records in, Table 1 + Pareto plots + HTML out.

    compbench-report results/demo [more dirs/globs] --out results/demo/report \
        --tasks sst2,mrpc --extra-tasks rte --published

Prints the Markdown tables on stdout and every skipped file on stderr. Exit 0 when at least one
record was read (skipped files do not fail the run); exit 2 with one line when none was found, or on
bad arguments (an unknown task name, an --out that is a file or cannot be written, a --machine that
names no machine or several).

Nothing is ever aggregated over machines (harness/report/machines.py): records from several machines
give one Table 1 per machine, per-machine plots and a --recommend answer per machine, each headed by
the machine's name; --machine keeps one machine's records.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from pathlib import Path

from harness.compose import CONF_DIR
from harness.report.build import build_report
from harness.report.load import report_skips
from harness.report.machines import MachineSelectionError
from harness.report.table import SURVEY_TASKS


CONF_TASKS = CONF_DIR / "task"


def known_tasks() -> list[str]:
    """Task names a record can carry: every conf/task/*.yaml (the survey's columns are among them)."""
    return sorted({p.stem for p in CONF_TASKS.glob("*.yaml")} | set(SURVEY_TASKS))


def _task_list(text: str) -> tuple[str, ...]:
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    known = known_tasks()
    for task in tasks:
        if task not in known:
            close = difflib.get_close_matches(task.lower(), known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise argparse.ArgumentTypeError(f"unknown task {task!r}{hint} (allowed: {', '.join(known)})")
    if not tasks:
        raise argparse.ArgumentTypeError("needs at least one task name")
    return tasks


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as the project's one line (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def check_out_dir(out: Path) -> None:
    """--out is (or can become) a directory this user can write into; else one line, exit 2."""
    anchor = Path(os.path.abspath(out))
    while not anchor.exists() and anchor.parent != anchor:
        anchor = anchor.parent
    problem = None
    if not anchor.is_dir():
        problem = f"{out} cannot be a folder: {anchor} is a file"
    else:
        try:
            with tempfile.TemporaryFile(dir=anchor):
                pass
        except OSError as err:
            problem = f"{out} is not writable ({err.strerror or err.__class__.__name__} in {anchor})"
    if problem:
        print(f"compbench-report: error: --out: {problem}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(prog="compbench-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="results directories, record files or globs")
    parser.add_argument("--out", help="output folder (default: <first path>/report)")
    parser.add_argument("--tasks", type=_task_list, default=None,
                        help="task columns that enter Avg. drop (default: every task the records measured, "
                             "the survey's MNLI, QQP, SST-2, SQuAD first, in its order)")
    parser.add_argument("--extra-tasks", type=_task_list, default=(), help="more task columns, not in Avg. drop")
    parser.add_argument("--published", action="store_true",
                        help="add the Ganesh et al. 2021 row beside a measured row of the same method")
    parser.add_argument("--published-all", action="store_true", help="also append every other survey row")
    parser.add_argument("--no-plots", action="store_true", help="skip the Pareto plots")
    parser.add_argument("--embed-images", action="store_true", help="inline the plots into report.html (base64)")
    parser.add_argument("--machine", metavar="NAME_OR_FINGERPRINT",
                        help="only the records of this machine (all but --compare): its fingerprint (or a prefix) or "
                             "part of its name, e.g. 'Xeon' or '57181ee2' (exit 2 listing the machines when it matches "
                             "none or several). "
                             "Without it, every machine gets its own Table 1, plots and --recommend answer: "
                             "speedups, drops, seed means and rankings never combine two machines")
    statistics = parser.add_argument_group("predictions, recommendations and comparisons")
    statistics.add_argument("--rescore", action="store_true",
                            help="recompute every metric from the prediction files; exit 1 naming any cell that differs")
    statistics.add_argument("--export-predictions", metavar="DIR",
                            help="write the official formats (SQuAD v1.1 JSON, GLUE submission TSV) of every record")
    statistics.add_argument("--recommend", action="store_true",
                            help="name the best method(s) under the limits below, per task and machine: records of "
                                 "several machines are answered machine by machine, each under its own heading, never "
                                 "ranked together (--machine answers for one)")
    statistics.add_argument("--max-drop", type=float, help="--recommend: largest accuracy drop allowed (points)")
    statistics.add_argument("--max-latency-ms", type=float, help="--recommend: largest p50 latency at batch 1 (ms)")
    statistics.add_argument("--max-size-pct", type=float, help="--recommend: largest size with embeddings (%% of baseline)")
    statistics.add_argument("--device", choices=("cpu", "cuda"), help="--recommend: only cells on this device")
    statistics.add_argument("--compare", nargs=2, metavar=("A", "B"),
                            help="compare two result sets cell by cell (matched by config hash)")
    args = parser.parse_args(argv)
    if not args.paths and not args.compare:
        parser.error("the following arguments are required: paths")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compare or args.rescore or args.export_predictions or args.recommend:
        from harness.report.statistics_cli import run_statistics_command

        return run_statistics_command(args)
    out = Path(args.out) if args.out else _default_out(args.paths[0])
    check_out_dir(out)
    published = "all" if args.published_all else args.published
    try:
        report = build_report(args.paths, out, args.tasks, args.extra_tasks, published,
                              plots=not args.no_plots, embed_images=args.embed_images, machine=args.machine)
    except MachineSelectionError as err:
        print(f"compbench-report: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the disk filled up while writing
        print(f"compbench-report: error: --out: cannot write to {out} ({err.strerror or err})", file=sys.stderr)
        return 2
    if report.records.empty:  # one line: say why, and how many files were unreadable
        unreadable = [p for p in report.problems if not p.endswith("no record files found")]
        detail = f" ({len(unreadable)} unreadable, e.g. {unreadable[0]})" if unreadable else ""
        print(f"compbench-report: no records found in {', '.join(args.paths)}{detail}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(report.markdown())
    print(f"wrote {len(report.files)} files to {out}", file=sys.stderr)
    return report_skips(report.problems)


def _default_out(first: str) -> Path:
    path = Path(first)
    return (path if path.is_dir() else Path("results")) / "report"


if __name__ == "__main__":
    sys.exit(main())
