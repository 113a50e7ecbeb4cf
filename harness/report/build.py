"""Everything the CLI and the notebook produce, from record paths to files in one output folder.

One Table 1 per machine (machines.py): table1.md, table1.tex and report.html hold a section per
machine, headed by its name; table1.csv and table1_numeric.csv hold every machine's rows, each naming
its machine in a column; the plots are drawn per machine. `machine` keeps one machine's records only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.report.display import footnotes, format_table1
from harness.report.frontier_uncertainty import add_frontier_probabilities
from harness.report.paired import add_paired_columns
from harness.report.html import write_html_report
from harness.report.load import load_records
from harness.report.machines import by_machine, select_machine
from harness.report.plots import pareto_panels, write_drop_vs_speedup, write_pareto_plots
from harness.report.render import to_latex, to_markdown
from harness.report.seeds import seed_summary
from harness.report.references import label_legend, reference_legend
from harness.report.table import failed_cells, measured_tasks, table1_numeric

CAPTION = ("Compression methods measured with compbench, in the layout of Table 1 of Ganesh et al. (2021), "
           "TACL 9:1061-1080, doi:10.1162/tacl_a_00413.")
MACHINE_COLUMN = "Machine"  # table1.csv's first column: the machine each row was measured on


@dataclass
class Report:
    records: pd.DataFrame
    problems: list[str]
    numeric: pd.DataFrame = None
    table: pd.DataFrame = None
    notes: list[str] = field(default_factory=list)
    failed: pd.DataFrame = None
    seeds: pd.DataFrame = None
    references: pd.DataFrame = None  # each method's paper, recipe and compbench's changes (references.py)
    labels: pd.DataFrame = None  # each Table 1 label: its preset and what was changed from it (references.py)
    files: list[Path] = field(default_factory=list)

    def machine_tables(self) -> list[tuple[Optional[str], str, pd.DataFrame]]:
        """(fingerprint, machine name, its display Table 1) per machine: no table shows two machines' rows."""
        return [(fingerprint, name, self.table.loc[rows.index].drop(columns=MACHINE_COLUMN).reset_index(drop=True))
                for fingerprint, name, rows in by_machine(self.numeric)]

    def markdown(self) -> str:
        text = ""
        for fingerprint, name, table in self.machine_tables():
            text += f"## Table 1 on {name}\n\n" + to_markdown(table) + "\n"
            seeds = self._seeds_of(fingerprint)
            if not seeds.empty:
                text += "**Repeated over seeds (mean ± std)**\n\n" + to_markdown(seeds) + "\n"
        text += "\n".join(f"- {n}" for n in self.notes) + "\n"
        if self.labels is not None and not self.labels.empty:
            text += "\n**Labels: each row's preset and what was changed from it**\n\n" + to_markdown(self.labels) + "\n"
        if self.references is not None and not self.references.empty:
            text += "\n**Methods and the papers they follow**\n\n" + to_markdown(self.references) + "\n"
        if not self.failed.empty:
            text += "\n**Failed / unsupported cells**\n\n" + to_markdown(self.failed)
        return text

    def latex(self) -> str:
        return "\n".join(to_latex(table, caption=f"{CAPTION} Measured on {name}.", label=f"tab:compression-{i + 1}")
                          for i, (_, name, table) in enumerate(self.machine_tables()))

    def _seeds_of(self, fingerprint) -> pd.DataFrame:
        if self.seeds is None or self.seeds.empty:
            return pd.DataFrame()
        same = self.seeds["fingerprint"].isna() if fingerprint is None else self.seeds["fingerprint"].eq(fingerprint)
        return self.seeds[same].drop(columns="fingerprint")  # the section's heading names the machine


def build_report(patterns: list[str], out_dir: str | Path | None = None, tasks=None, extra_tasks=(),
                 published=False, plots=True, embed_images=False, machine: str | None = None) -> Report:
    """Load, tabulate and (when `out_dir` is given) write table1.{md,csv,tex}, pareto_*.{png,svg}, report.html.
    `tasks`: the columns that enter Avg. drop; None: every task the records measured (table.measured_tasks).
    `machine`: a fingerprint or part of a machine's name (machines.select_machine; MachineSelectionError
    when it names none or several): the report of that machine's records only."""
    records, problems = load_records(patterns)
    records = select_machine(records, machine)
    report = Report(records, problems)
    if records.empty:
        return report
    asked = tuple(tasks or ())  # named by the caller: the legend says which of them no row could average
    tasks = measured_tasks(records, extra_tasks) if tasks is None else tuple(tasks)
    extra_tasks = tuple(t for t in extra_tasks if t not in tasks)
    report.numeric = table1_numeric(records, tasks, extra_tasks, published)
    # Every row names its machine, so the one-file CSV is never read as one machine's table.
    report.table = format_table1(report.numeric)
    report.table.insert(0, MACHINE_COLUMN, report.numeric["machine"].to_numpy())
    report.notes = footnotes(report.numeric, asked)
    report.failed = failed_cells(records)
    report.seeds = seed_summary(records)
    report.references = reference_legend(records)
    report.labels = label_legend(records[records["status"].eq("ok")])
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
    report.references.to_csv(out / "references.csv", index=False)
    report.labels.to_csv(out / "labels.csv", index=False)
    (out / "table1.tex").write_text(report.latex(), encoding="utf-8")
    for stale in [*out.glob("pareto_*.png"), *out.glob("pareto_*.svg"), *out.glob("drop_vs_speedup_*")]:
        stale.unlink()  # a plot whose axis (or machine) lost its data
    panels = pareto_panels(cells, tasks + extra_tasks) if plots else []
    figures = (write_drop_vs_speedup(report.numeric, out) + write_pareto_plots(panels, out)) if plots else []
    html_path = write_html_report(out / "report.html", [(name, table) for _, name, table in report.machine_tables()],
                                  report.notes, report.failed, report.references, report.labels,
                                  [p for p in figures if p.suffix == ".png"], problems,
                                  [str(p) for p in patterns], embed_images, panels)
    report.files = sorted(out.glob("table1*")) + [out / "cells.csv", out / "failed_cells.csv", out / "references.csv", out / "labels.csv"] + figures + [html_path]
    return report
