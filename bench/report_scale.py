"""How `compbench-report` and `compbench-report --recommend` scale with the number of configurations
(issue #29 part 3: over 1,000 configurations, 10,000 records, in <= 60 s and <= 2 GB).

    python bench/report_scale.py [--configs 10,100,1000] [--records-per-config 10] [--keep DIR]
    python bench/report_scale.py --configs 100 --profile

The records are made from real ones (examples/results/study_c/records) and written by the harness's
own writer (harness.record.write_json_atomic), so they have the schema, size and prediction files of
measured cells. A configuration is one Table 1 row: magnitude at a sparsity or low_rank at a rank,
each at one of three recovery budgets, labelled by harness.labels.record_label as a sweep's records
are. Its records are spread over the tasks, then over seeds (10 records = 5 tasks x 2 seeds), so the
per-task columns and the seed averaging both do real work, and every (task, seed) has its baseline.
Scores, latencies and sizes are jittered per record within their valid ranges. Each prediction file
holds its template's bytes under the record's own name (same sha256), so the report's re-scoring
reads real files; their metrics no longer match the jittered scores, so `--rescore` on these
records reports differences by design.

Each command runs in a process of its own, started by a small measuring process (MEASURER): wall
time, and peak RSS from os.wait4 (that process and its children, nothing else). The commands get a
bytecode cache of their own, filled by one untimed run of each on one configuration, so no timing
includes compiling the imported modules (--no-bytecode-cache: the environment as it is). Prints a
Markdown table. With --profile each command runs under cProfile at the first size instead, and the
top functions are printed: by cumulative time within harness/, and by own time overall (cProfile
slows Python-heavy code, so its seconds exceed the table's).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import math
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.labels import record_label  # noqa: E402
from harness.predictions import predictions_path  # noqa: E402
from harness.record import METRIC_RANGES, record_path, record_runtime, write_json_atomic  # noqa: E402

SOURCE = ROOT / "examples" / "results" / "study_c" / "records"
TASKS = ("sst2", "squad_v1.1_devsplit", "mrpc", "stsb", "cola")
# The method swept and the parameter its configurations differ in (besides the recovery budget).
SWEPT = {"magnitude": "sparsity", "low_rank": "rank"}
RECOVERY_EPOCHS = (1.0, 0.0, 2.0)
RECOMMEND_LIMITS = ["--max-drop", "1.5", "--device", "cpu"]
START = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)


# ---- synthetic records ---------------------------------------------------------------------------


class Template:
    """One real record: its text (each variant is parsed afresh from it) and its prediction file's bytes."""

    def __init__(self, path: Path):
        self.text = path.read_text(encoding="utf-8")
        record = json.loads(self.text)
        link = record.get("predictions") or {}
        if record["status"] != "ok" or not link.get("path"):
            raise SystemExit(f"{path}: a template must be an ok record that links its predictions")
        self.predictions = (path.parent / link["path"]).read_bytes()
        if hashlib.sha256(self.predictions).hexdigest() != link["sha256"]:
            raise SystemExit(f"{path}: its prediction file does not have the sha256 the record names")

    def record(self) -> dict:
        return json.loads(self.text)


def find_template(task: str, method: str) -> Template:
    """The task's first ok PyTorch record of `method` (seed 42 where there is one), with its predictions."""
    found = []
    for path in sorted(SOURCE.glob(f"{task}__*__{method}__*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["cell"]["method"] == method and record["status"] == "ok" and record_runtime(record) == "pytorch":
            found.append((record["config"].get("seed") != 42, path))
    if not found:
        raise SystemExit(f"no ok PyTorch {method} record of {task} in {SOURCE}")
    return Template(min(found)[1])


def method_configs(count: int) -> list[tuple[str, dict]]:
    """`count` distinct (method, parameters changed from the template) pairs: the methods alternate,
    and each sweeps its parameter on an even grid at each recovery budget."""
    methods = list(SWEPT)
    per_method = [len(range(i, count, len(methods))) for i in range(len(methods))]
    configs = []
    for index in range(count):
        method, k = methods[index % len(methods)], index // len(methods)
        grid = max(1, math.ceil(per_method[index % len(methods)] / len(RECOVERY_EPOCHS)))
        step = k // len(RECOVERY_EPOCHS)
        if method == "magnitude":
            value = round(0.05 + 0.9 * step / max(1, grid - 1), 6)
        else:  # whole ranks up to MiniLM's width (384); beyond it only past ~2,200 configurations
            value = 8 + step * max(1, 368 // max(1, grid - 1))
        configs.append((method, {"recover_epochs": RECOVERY_EPOCHS[k % len(RECOVERY_EPOCHS)], SWEPT[method]: value}))
    return configs


def score_shift(task: str, rng: random.Random) -> float:
    """Up to one point either way, on the scale the task's records hold (SQuAD's 0-100, GLUE's fractions)."""
    return rng.uniform(-0.01, 0.01) * (100.0 if task.startswith("squad") else 1.0)


def baseline_shift(task: str, seed: int) -> float:
    """How far the (task, seed) baseline's scores moved: its record and every paired comparison with it."""
    return score_shift(task, random.Random(f"baseline/{task}/{seed}"))


def shift_scores(record: dict, shift: float, base_shift: float) -> None:
    """Every metric and its CI moved by `shift`, kept in range; the paired comparison follows, against its
    baseline moved by `base_shift` (a baseline's comparison with itself stays a difference of 0)."""
    metrics = record.get("metrics") or {}
    for key, (low, high) in METRIC_RANGES.items():
        if isinstance(metrics.get(key), float):
            metrics[key] = min(high, max(low, metrics[key] + shift))
            if key in (metrics.get("ci95") or {}):
                metrics["ci95"][key] = [min(high, max(low, v + shift)) for v in metrics["ci95"][key]]
    for key, entry in ((record.get("comparison") or {}).get("metrics") or {}).items():
        if key in metrics and isinstance(entry.get("method"), float) and isinstance(entry.get("baseline"), float):
            low, high = METRIC_RANGES.get(key, (-math.inf, math.inf))
            before = entry["difference"]
            entry["baseline"] = min(high, max(low, entry["baseline"] + base_shift))
            entry["method"] = metrics[key]
            entry["difference"] = entry["method"] - entry["baseline"]
            if isinstance(entry.get("ci95"), list):
                entry["ci95"] = [v + entry["difference"] - before for v in entry["ci95"]]


def scale_latency(record: dict, rng: random.Random) -> None:
    """Every timed pass up to 10 % slower or faster: timings, their CIs, throughput and speedup."""
    factor = math.exp(rng.uniform(-0.1, 0.1))
    latency = record.get("latency") or {}
    for entry in (latency.get("fixed") or []) + (latency.get("real_length") or []):
        for key in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "stdev_ms"):
            if isinstance(entry.get(key), float):
                entry[key] *= factor
        for key in ("values_ms", "p50_ci95_ms"):
            if isinstance(entry.get(key), list):
                entry[key] = [v * factor for v in entry[key]]
        if isinstance(entry.get("throughput_per_s"), float):
            entry["throughput_per_s"] /= factor
        speedup = entry.get("speedup")
        if isinstance(speedup, dict):
            for key in ("value", "value_p50", "value_mean"):
                if isinstance(speedup.get(key), float):
                    speedup[key] /= factor
            if isinstance(speedup.get("ci95"), list):
                speedup["ci95"] = [v / factor for v in speedup["ci95"]]
            for key in ("method_p50_ms", "method_mean_ms"):
                if isinstance(speedup.get(key), float):
                    speedup[key] *= factor


def scale_size(record: dict, rng: random.Random) -> None:
    factor = math.exp(rng.uniform(-0.05, 0.05))
    size = record.get("size") or {}
    for key in ("pct_of_baseline_with_emb", "pct_of_baseline_without_emb", "bytes_sparse"):
        if isinstance(size.get(key), (int, float)):
            size[key] = type(size[key])(size[key] * factor)


def write_variant(results: Path, template: Template, seed: int, changes: dict | None, rng: random.Random,
                  when: datetime.datetime) -> None:
    """The template as the writer would have written it for `seed` and the method config with `changes`."""
    record = template.record()
    config = record["config"]
    config["seed"] = seed
    if changes is not None:
        described = record["method"]
        config["method"] = described["config"] = {**config["method"], **changes}
        described["label"] = record_label(config["method"], record_runtime(record))
        described.pop("label_source", None)  # the writer leaves it out: only a migration adds it
        if "sparsity" in changes and "target_sparsity" in described:
            described["target_sparsity"] = described["achieved_sparsity"] = changes["sparsity"]
        scale_size(record, rng)
    task = record["cell"]["task"]
    base_shift = baseline_shift(task, seed)
    shift_scores(record, base_shift if changes is None else score_shift(task, rng), base_shift)
    scale_latency(record, rng)
    record["config_hash"] = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    record["created_at"] = when.isoformat()
    path = record_path(results, record["cell"], record["config_hash"])
    predictions = predictions_path(path)
    predictions.parent.mkdir(parents=True, exist_ok=True)
    predictions.write_bytes(template.predictions)  # lands before its record, as in the harness
    record["predictions"]["path"] = predictions.name
    write_json_atomic(path, record)


def generate(results: Path, configurations: int, per_config: int, tasks: tuple[str, ...]) -> int:
    """Write `configurations` x `per_config` records plus a baseline per (task, seed); returns the count."""
    seeds = range(1, math.ceil(per_config / len(tasks)) + 1)
    templates = {(task, method): find_template(task, method) for task in tasks for method in ("baseline", *SWEPT)}
    written = 0
    for task in tasks:
        for seed in seeds:
            rng = random.Random(f"baseline-timing/{task}/{seed}")
            write_variant(results, templates[task, "baseline"], seed, None, rng, START + datetime.timedelta(seconds=written))
            written += 1
    for index, (method, changes) in enumerate(method_configs(configurations)):
        for j in range(per_config):
            task, seed = tasks[j % len(tasks)], seeds[j // len(tasks)]
            rng = random.Random(f"{index}/{task}/{seed}")
            write_variant(results, templates[task, method], seed, changes, rng, START + datetime.timedelta(seconds=written))
            written += 1
    return written


# ---- measuring -----------------------------------------------------------------------------------


def report_command(results: Path) -> list[str]:
    return [str(results), "--out", str(results / "report")]


def recommend_command(results: Path) -> list[str]:
    return [str(results), "--recommend", *RECOMMEND_LIMITS]


# Runs the command and writes its wall time and peak RSS. A separate small process, because Linux starts a
# child's peak RSS at its parent's size at fork (kept through exec): forked from this process, which has
# imported torch (harness.labels), every command would seem to peak at this process's size at least.
MEASURER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as handle:
    json.dump({"wall_s": time.perf_counter() - started, "peak_kib": usage.ru_maxrss}, handle)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def child_environment(workdir: Path, bytecode_cache: bool) -> dict:
    """The commands' environment: with a bytecode cache of their own under `workdir` unless told not to.
    Without one (PYTHONDONTWRITEBYTECODE=1 and no __pycache__ in the venv, as on the machine this was
    written on) every process compiles its ~3,400 imported modules again: about 8 s of each command's
    time that an ordinary install never spends."""
    env = dict(os.environ)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def warm_up(workdir: Path, tasks: tuple[str, ...], env: dict) -> None:
    """Both commands once, untimed, on one configuration: fills the bytecode cache."""
    results = workdir / "warm_up"
    shutil.rmtree(results, ignore_errors=True)
    generate(results, 1, len(tasks), tasks)
    run_measured(report_command(results), results / "report", env)
    run_measured(recommend_command(results), results / "recommend", env)


def run_measured(arguments: list[str], log: Path, env: dict, profile: Path | None = None) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of `compbench-report ARGUMENTS` in a fresh process; stdout to LOG.out,
    stderr to LOG.err. Exits naming the command and its last lines when it fails."""
    script = Path(sys.executable).with_name("compbench-report")
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "harness.report.cli", *arguments]
    else:
        command = [str(script)] if script.exists() else [sys.executable, "-m", "harness.report.cli"]
        command += arguments
    measured = log.with_suffix(".usage")  # not *.json: the report reads those as records
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        returncode = subprocess.run([sys.executable, "-c", MEASURER, str(measured), *command], cwd=ROOT,
                                    env=env, stdout=out, stderr=err).returncode
    if returncode != 0:
        tail = log.with_suffix(".err").read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(command)}: exit {returncode}\n{tail}")
    usage = json.loads(measured.read_text(encoding="utf-8"))
    return usage["wall_s"], usage["peak_kib"] / 1024  # Linux reports KiB


def check_report(results: Path, configurations: int) -> None:
    """Table 1 has a row per configuration plus the baseline's: the synthetic labels did not merge."""
    with open(results / "report" / "table1_numeric.csv", newline="", encoding="utf-8") as handle:
        rows = sum(1 for row in csv.DictReader(handle) if row["source"] == "measured")
    if rows != configurations + 1:
        raise SystemExit(f"{results}: Table 1 has {rows} measured rows, expected {configurations} configurations + the baseline")


def check_recommend(log: Path, tasks: tuple[str, ...]) -> None:
    answered = [line for line in log.with_suffix(".out").read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    if len(answered) != len(tasks):
        raise SystemExit(f"--recommend answered {len(answered)} task(s), expected {len(tasks)}: see {log.with_suffix('.out')}")


# ---- profiles ------------------------------------------------------------------------------------


def top_functions(profile: Path, key: str, count: int, within: str | None = None) -> str:
    """A Markdown table of the `count` functions with the most `key` time ("cumulative" or "own"),
    only those defined under `within` when given."""
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in pstats.Stats(str(profile)).stats.items():
        if within is not None and not filename.startswith(within):
            continue
        where = os.path.relpath(filename, ROOT) if filename.startswith(str(ROOT)) else filename
        shown = f"{name}" if filename == "~" else f"{where}:{line} {name}"  # "~": a built-in
        rows.append((cumulative if key == "cumulative" else own, own, cumulative, calls, shown))
    rows.sort(reverse=True)
    lines = ["| function | calls | own s | cumulative s |", "|---|---:|---:|---:|"]
    lines += [f"| `{shown}` | {calls:,} | {own:.2f} | {cumulative:.2f} |" for _, own, cumulative, calls, shown in rows[:count]]
    return "\n".join(lines)


def profile_size(workdir: Path, configurations: int, per_config: int, tasks: tuple[str, ...], count: int,
                 env: dict) -> None:
    results = workdir / f"configs_{configurations}"
    shutil.rmtree(results, ignore_errors=True)
    started = time.perf_counter()
    records = generate(results, configurations, per_config, tasks)
    print(f"generated {records:,} records in {time.perf_counter() - started:.1f} s\n", flush=True)
    for name, arguments in (("report", report_command(results)), ("recommend", recommend_command(results))):
        profile = results / f"{name}.prof"
        elapsed, peak = run_measured(arguments, results / name, env, profile)
        print(f"### compbench-report {' '.join(arguments[1:]) or ''}: {configurations:,} configurations, "
              f"{records:,} records, {elapsed:.1f} s under cProfile, peak {peak:.0f} MiB\n")
        print(f"Top {count} in harness/ by cumulative time:\n\n{top_functions(profile, 'cumulative', count, str(ROOT / 'harness'))}\n")
        print(f"Top {count} overall by own time:\n\n{top_functions(profile, 'own', count)}\n", flush=True)


# ---- command line --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="10,100,1000", help="comma-separated numbers of configurations")
    parser.add_argument("--records-per-config", type=int, default=10)
    parser.add_argument("--tasks", default=",".join(TASKS), help="tasks the records of a configuration spread over")
    parser.add_argument("--keep", type=Path, help="write the records (and logs, profiles) here and keep them")
    parser.add_argument("--profile", action="store_true", help="profile each command at the first size instead")
    parser.add_argument("--top", type=int, default=30, help="--profile: functions per table")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run the commands in this environment as it is, without a warm bytecode cache")
    args = parser.parse_args()
    sizes = [int(s) for s in args.configs.split(",") if s.strip()]
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    with tempfile.TemporaryDirectory(prefix="compbench-report-scale-") as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        env = child_environment(workdir, not args.no_bytecode_cache)
        if not args.no_bytecode_cache:
            warm_up(workdir, tasks, env)
        if args.profile:
            profile_size(workdir, sizes[0], args.records_per_config, tasks, args.top, env)
            return
        print("| configurations | records | generate s | report wall s | report peak MiB | recommend wall s | recommend peak MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|", flush=True)
        for size in sizes:
            results = workdir / f"configs_{size}"
            shutil.rmtree(results, ignore_errors=True)  # a kept folder of an earlier run: start afresh
            started = time.perf_counter()
            records = generate(results, size, args.records_per_config, tasks)
            generated = time.perf_counter() - started
            report_s, report_mib = run_measured(report_command(results), results / "report", env)
            check_report(results, size)
            recommend_s, recommend_mib = run_measured(recommend_command(results), results / "recommend", env)
            check_recommend(results / "recommend", tasks)
            print(f"| {size:,} | {records:,} | {generated:.1f} | {report_s:.1f} | {report_mib:.0f} | "
                  f"{recommend_s:.1f} | {recommend_mib:.0f} |", flush=True)


if __name__ == "__main__":
    main()
