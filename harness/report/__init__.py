"""Aggregate benchmark records into Table 1 of Ganesh et al. (2021) and accuracy/cost Pareto plots.

    df, problems = load_records(["examples/results/demo"])
    table1(df, tasks=("mnli", "qqp", "sst2", "squad_v1.1"), extra_tasks=("rte",))
    pareto_front(costs, values)  # boolean mask
"""

from harness.report.build import Report, build_report
from harness.report.display import format_table1, table1
from harness.report.load import load_records
from harness.report.pareto import pareto_front
from harness.report.plots import pareto_panels, write_pareto_plots
from harness.report.table import DEFAULT_TASKS, failed_cells, table1_numeric

__all__ = ["DEFAULT_TASKS", "Report", "build_report", "failed_cells", "format_table1", "load_records",
           "pareto_front", "pareto_panels", "table1", "table1_numeric", "write_pareto_plots"]
