"""No aggregate ever combines machines (issue 27 part 1c): Table 1, the Pareto plots and --recommend
are computed per machine fingerprint, and `--machine` keeps one machine's records.

Machine A is the fixtures' (tests/fixtures/records/make_records.py): SST-2 on CPU, baseline 92.0 at
20 ms, dynamic_int8 91.0 at 10 ms (2.00x, drop -1.0), seed 42. The tests add copies of its records as
made on other machines, with their own scores and timings.
"""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.report import load_records, table1_numeric
from harness.report.cli import main as report_main
from harness.report.machines import MachineSelectionError, machine_name, select_machine
from harness.report.pareto import AXES, plot_groups, task_points

FIXTURES = Path(__file__).parent / "fixtures" / "records"
AXIS = {axis.key: axis for axis in AXES}
AVX512 = {"avx2": True, "avx512f": True, "avx512_vnni": True, "avx512_bf16": True,
          "amx_tile": False, "amx_bf16": False, "amx_int8": False}


def fixture(method: str) -> dict:
    return json.loads(next(FIXTURES.glob(f"sst2__bert_base_uncased__{method}__cpu__*.json")).read_text())


def on_machine(method: str, fingerprint: str, cpu_model: str, accuracy: float, p50_ms: float, seed: int = 42) -> dict:
    """Machine A's `method` record as if made on another machine, with that machine's score and p50."""
    record = copy.deepcopy(fixture(method))
    record["environment"]["fingerprint"] = fingerprint
    record["environment"]["cpu"] = dict(record["environment"]["cpu"], model=cpu_model, isa=AVX512)
    record["config"]["seed"] = seed
    record["config_hash"] = f"{fingerprint}-{method}-{seed}".ljust(64, "0")
    record["created_at"] = "2026-02-01T12:00:00+00:00"  # newer than machine A's: the old code showed these scores
    record["metrics"]["accuracy"] = accuracy
    batch1 = record["latency"]["fixed"][0]
    batch1.update(p50_ms=p50_ms, p50_ci95_ms=[p50_ms * 0.95, p50_ms * 1.05])
    return record


def write_run(tmp_path: Path, methods_on_a: tuple, others: list[dict]) -> Path:
    run = tmp_path / "run" / "records"
    run.mkdir(parents=True)
    for method in methods_on_a:
        (run / f"a_{method}.json").write_text(json.dumps(fixture(method)))
    for i, record in enumerate(others):
        (run / f"other_{i}.json").write_text(json.dumps(record))
    return run.parent


@pytest.fixture
def two_machines(tmp_path):
    """Machine C ("Test EPYC C", AVX-512): baseline 90.0 at 25 ms; dynamic_int8 at 20 ms (1.25x) under
    seeds 1 and 2, scoring 87.0 and 88.0. Machine D: magnitude only, no baseline there."""
    others = [on_machine("baseline", "fpC-0003", "Test EPYC C", 0.90, 25.0, seed=1),
              on_machine("baseline", "fpC-0003", "Test EPYC C", 0.90, 25.0, seed=2),
              on_machine("dynamic_int8", "fpC-0003", "Test EPYC C", 0.87, 20.0, seed=1),
              on_machine("dynamic_int8", "fpC-0003", "Test EPYC C", 0.88, 20.0, seed=2),
              on_machine("magnitude", "fpD-0004", "Test EPYC D", 0.905, 5.0)]
    return write_run(tmp_path, ("baseline", "dynamic_int8"), others)


def test_no_table1_row_combines_two_machines(two_machines):
    records, problems = load_records([str(two_machines)])
    assert problems == []
    numeric = table1_numeric(records, tasks=("sst2",))
    # One row per machine, each from its own records: never the geometric mean of 2.00x and 1.25x (1.58x),
    # never one machine's score against another machine's baseline.
    int8 = numeric[numeric["method"].eq("dynamic_int8")]
    assert sorted(int8["speedup_cpu"]) == pytest.approx([1.25, 2.0]) and sorted(int8["avg_drop"]) == pytest.approx([-2.5, -1.0])
    numeric = numeric.set_index(["fingerprint", "method"])
    on_a, on_c = numeric.loc[("fpA-0001", "dynamic_int8")], numeric.loc[("fpC-0003", "dynamic_int8")]
    assert (on_a["speedup_cpu"], on_a["sst2"], on_a["avg_drop"]) == pytest.approx((2.0, 91.0, -1.0))
    assert (on_c["speedup_cpu"], on_c["sst2"], on_c["avg_drop"]) == pytest.approx((1.25, 87.5, -2.5))
    # Seeds average within their machine: C's two, not A's seed 42 with them.
    assert (on_c["sst2_n"], on_a["sst2_n"]) == (2, 1) and on_c["sst2_sd"] == pytest.approx(np.std([87, 88], ddof=1))
    assert (on_a["target_device"], on_c["target_device"]) == ("Test Xeon A", "Test EPYC C")
    assert on_c["machine"] == "Test EPYC C (AVX-512 VNNI, 2 cores) [fpC-0003]"
    # A configuration measured only where no baseline ran has neither a speedup nor a drop.
    on_d = numeric.loc[("fpD-0004", "magnitude")]
    assert math.isnan(on_d["speedup_cpu"]) and math.isnan(on_d["avg_drop"]) and on_d["sst2"] == pytest.approx(90.5)
    assert numeric["target_device"].str.contains(";").sum() == 0


def test_every_pareto_plot_holds_one_machine(two_machines):
    records, _ = load_records([str(two_machines)])
    for axis in AXES:
        for suffix, cells in plot_groups(records, axis).items():
            assert cells["fingerprint"].nunique() == 1, (axis.key, suffix)
    size = plot_groups(records, AXIS["size_w_emb"])
    assert set(size) == {"fpA-0001", "fpC-0003", "fpD-0004"}
    point = task_points(size["fpC-0003"], AXIS["size_w_emb"], "sst2").set_index("method").loc["dynamic_int8"]
    assert (point["value"], point["n"]) == (pytest.approx(87.5), 2)  # C's seeds only, not A's 91.0 with them


def test_machine_names_tell_apart_machines_sold_under_one_cpu_name():
    environment = {"fingerprint": "57181ee2beeb47be", "cpu": {"model": "AMD EPYC", "logical_cores": 2, "isa": {"avx2": True}}}
    avx512 = dict(environment, fingerprint="86c6888c4c2801a3", cpu=dict(environment["cpu"], isa=AVX512))
    assert machine_name(environment) == "AMD EPYC (AVX2, 2 cores) [57181ee2]"
    assert machine_name(avx512) == "AMD EPYC (AVX-512 VNNI, 2 cores) [86c6888c]"
    gpu = dict(environment, gpu={"name": "NVIDIA H100"})
    assert machine_name(gpu) == "AMD EPYC (AVX2, 2 cores) + NVIDIA H100 [57181ee2]"


def test_select_machine_by_fingerprint_or_name_and_refuses_none_or_several(two_machines):
    records, _ = load_records([str(two_machines)])
    assert set(select_machine(records, "fpC")["fingerprint"]) == {"fpC-0003"}
    assert set(select_machine(records, "epyc d")["fingerprint"]) == {"fpD-0004"}
    assert select_machine(records, None) is records
    with pytest.raises(MachineSelectionError, match="matches 2 machines"):
        select_machine(records, "EPYC")
    with pytest.raises(MachineSelectionError, match="none of the machines here: .*Test Xeon A"):
        select_machine(records, "H100")


def test_report_writes_one_table_per_machine_and_machine_selects_one(two_machines, tmp_path, capsys):
    out = tmp_path / "all"
    assert report_main([str(two_machines), "--out", str(out), "--tasks", "sst2", "--no-plots"]) == 0
    text = capsys.readouterr().out
    headings = [line for line in text.splitlines() if line.startswith("## Table 1 on ")]
    assert headings == ["## Table 1 on Test EPYC C (AVX-512 VNNI, 2 cores) [fpC-0003]",
                        "## Table 1 on Test EPYC D (AVX-512 VNNI, 2 cores) [fpD-0004]",
                        "## Table 1 on Test Xeon A (AVX2, 2 cores) [fpA-0001]"]
    section_c = text[text.index(headings[0]):text.index(headings[1])]
    assert "1.25×" in section_c and "2.00×" not in section_c and "| magnitude |" not in section_c
    assert (out / "table1.tex").read_text().count(r"\begin{table*}") == 3
    page = (out / "report.html").read_text()
    assert page.count("<h3>Measured on ") == 3 and page.count("<table class=\"results\">") == 3
    csv = (out / "table1.csv").read_text().splitlines()
    assert csv[0].startswith("Machine,Category,Method") and all("[fp" in line for line in csv[1:])

    one = tmp_path / "one"
    assert report_main([str(two_machines), "--out", str(one), "--tasks", "sst2", "--machine", "fpC"]) == 0
    text = capsys.readouterr().out
    assert [line for line in text.splitlines() if line.startswith("## Table 1 on ")] == [headings[0]]
    assert "2.00×" not in text and "| magnitude |" not in text
    numeric = (one / "table1_numeric.csv").read_text()
    assert "fpC-0003" in numeric and "fpA-0001" not in numeric and "fpD-0004" not in numeric
    # One machine: plot names need no fingerprint, and nothing of the other machines is drawn.
    plots = {p.name for p in one.glob("pareto_*.png")}
    assert {"pareto_sst2_size_w_emb.png", "pareto_sst2_cpu_latency_cpu.png"} <= plots and not any("fp" in p for p in plots)


def test_a_machine_option_matching_none_or_several_exits_2_naming_the_machines(two_machines, tmp_path, capsys):
    assert report_main([str(two_machines), "--out", str(tmp_path / "r"), "--machine", "EPYC", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches 2 machines" in err[0] and "[fpC-0003]" in err[0] and "[fpD-0004]" in err[0]
    assert not (tmp_path / "r" / "table1.md").exists()
    assert report_main([str(two_machines), "--recommend", "--machine", "M1 Max"]) == 2
    assert "matches none of the machines here" in capsys.readouterr().err


def test_recommend_answers_each_machine_on_its_own(tmp_path, capsys):
    """Two machines sold under one CPU name. On machine E, magnitude runs at 2 ms (10x its baseline);
    on machine A nothing is below 8 ms. Each machine's answer ranks its own cells only, under a heading
    that tells the two machines apart."""
    from harness.report.recommend import Budget, recommend

    others = [on_machine("baseline", "fpE-0005", "Test Xeon A", 0.92, 20.0),
              on_machine("magnitude", "fpE-0005", "Test Xeon A", 0.915, 2.0)]
    run = write_run(tmp_path, ("baseline", "dynamic_int8", "layer_drop", "magnitude"), others)
    records, _ = load_records([str(run)])
    table, lines = recommend(records, Budget(max_drop=2.5, device="cpu"), ("sst2",))
    text = "\n".join(lines)
    headings = [line.strip() for line in lines if line.strip().startswith("# Machine: ")]
    assert headings == ["# Machine: Test Xeon A (AVX-512 VNNI, 2 cores) [fpE-0005]",
                        "# Machine: Test Xeon A (AVX2, 2 cores) [fpA-0001]"]
    assert "Records from 2 machines: each is answered on its own" in text
    on_e, on_a = text[text.index(headings[0]):text.index(headings[1])], text[text.index(headings[1]):]
    assert "Best: **magnitude**" in on_e and "dynamic_int8" not in on_e and "layer_drop" not in on_e
    assert "Best: **layer_drop**" in on_a and "p50 2.00 ms" not in on_a  # machine E's magnitude is not A's candidate
    rows = table.set_index("fingerprint")
    assert rows.loc["fpE-0005", "best"] == "magnitude" and rows.loc["fpA-0001", "best"] == "layer_drop"
    assert rows.loc["fpE-0005", "machine"] == headings[0].removeprefix("# Machine: ")

    assert report_main([str(run), "--recommend", "--max-drop", "2.5", "--device", "cpu", "--tasks", "sst2",
                        "--machine", "fpA"]) == 0
    out = capsys.readouterr().out
    assert out.count("# Machine: ") == 1 and "[fpA-0001]" in out and "Best: **layer_drop**" in out
    assert "Records from 2 machines" not in out and "p50 2.00 ms" not in out
