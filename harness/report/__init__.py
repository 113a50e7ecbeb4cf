"""Aggregate benchmark records into Table 1 of Ganesh et al. (2021) and accuracy/cost Pareto plots.

    df, problems = load_records(["examples/results/demo"])
    table1(df)                                         # a column per task measured, each in Avg. drop
    table1(df, tasks=("sst2",), extra_tasks=("rte",))  # SST-2 in Avg. drop, RTE shown beside it
    pareto_front(costs, values)                        # boolean mask
"""

from harness.report.build import Report, build_report
from harness.report.display import format_table1, table1
from harness.report.load import load_records
from harness.report.pareto import pareto_front
from harness.report.plots import pareto_panels, write_pareto_plots
from harness.report.table import SURVEY_TASKS, failed_cells, measured_tasks, table1_numeric

__all__ = ["SURVEY_TASKS", "Report", "build_report", "failed_cells", "format_table1", "load_records",
           "measured_tasks", "pareto_front", "pareto_panels", "table1", "table1_numeric", "write_pareto_plots"]
