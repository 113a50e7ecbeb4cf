"""Everything the CLI and the notebook produce, from record paths to files in one output folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report.display import footnotes, format_table1
from harness.report.frontier_uncertainty import add_frontier_probabilities
from harness.report.paired import add_paired_columns
from harness.report.html import write_html_report
from harness.report.load import load_records
from harness.report.plots import write_drop_vs_speedup, write_pareto_plots
from harness.report.render import to_latex, to_markdown
from harness.report.seeds import seed_summary
from harness.report.table import DEFAULT_TASKS, failed_cells, table1_numeric

CAPTION = ("Compression methods measured with compbench, in the layout of Table 1 of Ganesh et al. (2021), "
           "TACL 9:1061-1080, doi:10.1162/tacl_a_00413.")


@dataclass
class Report:
    records: pd.DataFrame
    problems: list[str]
    numeric: pd.DataFrame = None
    table: pd.DataFrame = None
    notes: list[str] = field(default_factory=list)
    failed: pd.DataFrame = None
    seeds: pd.DataFrame = None
    files: list[Path] = field(default_factory=list)

    def markdown(self) -> str:
        text = to_markdown(self.table) + "\n" + "\n".join(f"- {n}" for n in self.notes) + "\n"
        if self.seeds is not None and not self.seeds.empty:
            text += "\n**Repeated over seeds (mean ± std)**\n\n" + to_markdown(self.seeds) + "\n"
        if not self.failed.empty:
            text += "\n**Failed / unsupported cells**\n\n" + to_markdown(self.failed)
        return text


def build_report(patterns: list[str], out_dir: str | Path | None = None, tasks=DEFAULT_TASKS, extra_tasks=(),
                 published=False, plots=True, embed_images=False) -> Report:
    """Load, tabulate and (when `out_dir` is given) write table1.{md,csv,tex}, pareto_*.{png,svg}, report.html."""
    records, problems = load_records(patterns)
    report = Report(records, problems)
    if records.empty:
        return report
    tasks, extra_tasks = tuple(tasks), tuple(t for t in extra_tasks if t not in tasks)
    report.numeric = table1_numeric(records, tasks, extra_tasks, published)
    report.table = format_table1(report.numeric)
    report.notes = footnotes(report.numeric, tasks)
    report.failed = failed_cells(records)
    report.seeds = seed_summary(records)
    if out_dir is None:
        return report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1.md").write_text(report.markdown(), encoding="utf-8")
    report.table.to_csv(out / "table1.csv", index=False)
    report.numeric.to_csv(out / "table1_numeric.csv", index=False)
    cells = add_frontier_probabilities(add_paired_columns(records), tasks + extra_tasks)  # + paired_*, p_frontier*
    cells.to_csv(out / "cells.csv", index=False)
    report.failed.to_csv(out / "failed_cells.csv", index=False)
    (out / "table1.tex").write_text(to_latex(report.table, caption=CAPTION), encoding="utf-8")
    for stale in [*out.glob("pareto_*.png"), *out.glob("pareto_*.svg"), *out.glob("drop_vs_speedup_*")]:
        stale.unlink()  # a plot whose axis lost its data
    figures = (write_drop_vs_speedup(report.numeric, out) + write_pareto_plots(cells, out, tasks + extra_tasks)) if plots else []
    html_path = write_html_report(out / "report.html", report.table, report.notes, report.failed,
                                  [p for p in figures if p.suffix == ".png"], problems,
                                  [str(p) for p in patterns], embed_images)
    report.files = sorted(out.glob("table1*")) + [out / "cells.csv", out / "failed_cells.csv"] + figures + [html_path]
    return report
