"""The CLI end to end: bad input fails in one line before anything is written; a real cell runs
through Hydra (fresh process, real MiniLM, real SST-2 slices) and its record has every field."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import run_main

ROOT = Path(__file__).resolve().parents[1]
COMPBENCH = [sys.executable, "-c", "from harness.cli import main; main()"]
QUICK = [
    "task.finetune.max_train_samples=64", "task.finetune.epochs=1", "task.max_eval_samples=48",
    "hardware.batch_sizes=[1,4]", "hardware.min_iterations=3", "hardware.min_duration_s=0.1", "hardware.warmup=1",
    "measure.bootstrap=50",
]


def run_cli(args, tmp_path, data_root, cache_dir=None, timeout=600):
    env = {**os.environ, "COMPBENCH_DATA_ROOT": str(data_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "COMPBENCH_CACHE": str(cache_dir or tmp_path / "cache")}
    results = tmp_path / "results"
    return subprocess.run(COMPBENCH + [f"paths.results_dir={results}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout), results


BAD_INPUTS = [
    (["method=nope"], "compbench: error: method: unknown choice 'nope' (allowed: "),
    (["task=imdb"], "compbench: error: task: unknown choice 'imdb' (allowed: "),
    (["model=gpt9"], "compbench: error: model: unknown choice 'gpt9' (allowed: "),
    (["hardware=tpu"], "compbench: error: hardware: unknown choice 'tpu' (allowed: "),
    (["hardware.batch_sizes=[1,-4]"], "compbench: error: hardware.batch_sizes: every batch size must be a positive integer, got -4"),
    (["task.finetune.batch_size=-1"], "compbench: error: task.finetune.batch_size: must be a positive integer, got -1"),
    (["hardware.device=tpu"], "compbench: error: hardware.device: unknown device 'tpu' (allowed: ('cpu', 'cuda'))"),
    (["model.init=zeros"], "compbench: error: model.init: unknown init 'zeros' (allowed: ('pretrained', 'random'))"),
    (["model=local"], "compbench: error: model.path: is required when model.source=local"),
    (["-m", "task=sst2,nope"], "compbench: error: task: unknown choice 'nope' (allowed: "),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, data_root, monkeypatch, capsys):
    """In this process (tests/cli_runs.py); a missing data file and model files without weights are in
    tests/test_bad_inputs.py's catalogue."""
    proc = run_main(args, tmp_path, data_root, monkeypatch, capsys)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(message), proc.stderr[-2000:]
    assert len([line for line in lines if line.startswith("compbench: error:")]) == 1
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_real_cell_through_hydra_writes_a_complete_record(tmp_path, data_root):
    proc, results = run_cli(["task=sst2", "method=baseline", "model=minilm_l6", "hardware=cpu", *QUICK], tmp_path, data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((results / "records").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    for key in ("schema_version", "config", "config_hash", "metrics", "size", "latency", "environment", "status"):
        assert key in record
    assert record["status"] == "ok", record["reason"]
    assert record["cell"] == {"method": "baseline", "model": "minilm_l6", "task": "sst2", "hardware": "cpu", "runtime": "pytorch"}
    assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
    low, high = record["metrics"]["ci95"]["accuracy"]
    assert low <= record["metrics"]["accuracy"] <= high
    assert record["metrics"]["eval_examples"] == {"validation": 48}
    assert any("subset" in note for note in record["metrics_notes"])
    # MiniLM-L6-H384: 22.7M parameters, of which 11.9M are embeddings; fp32 bytes = 4 x params.
    assert record["size"]["params_total"] == 22_713_986
    assert record["size"]["bytes_dense"] == 4 * 22_713_986
    assert record["size"]["pct_of_baseline_with_emb"] == 100.0
    assert record["size"]["disk_bytes"] > 0.99 * record["size"]["bytes_dense"]
    fixed = {entry["batch_size"]: entry for entry in record["latency"]["fixed"]}
    assert set(fixed) == {1, 4} and fixed[1]["seq_len"] == 128
    assert fixed[1]["count"] >= 3 and len(fixed[1]["values_ms"]) == fixed[1]["count"]
    assert fixed[1]["p50_ms"] > 0 and record["latency"]["real_length"]
    assert record["energy"]["provenance"] in ("measured:rapl", "estimated:codecarbon-tdp", "measured:nvml")
    assert record["flops"]["flops_per_sample"] > 0
    assert set(record["data"]["fingerprints"]) == {"glue/sst2/train.tsv", "glue/sst2/dev.tsv"}
    assert record["training"]["finetuned"] is True and record["training"]["cache_hit"] is False
    assert record["environment"]["threads"]["intra_op"] >= 1

    # Same sweep again: the cell is skipped (resume), and nothing is fine-tuned twice.
    proc, _ = run_cli(["task=sst2", "method=baseline", "model=minilm_l6", "hardware=cpu", *QUICK], tmp_path, data_root)
    assert proc.returncode == 0 and "[skip]" in proc.stdout
    assert len(list((results / "records").glob("*.json"))) == 1


# ------------------------------------------------------------------------------ README commands
README = ROOT / "README.md"
REPORT = [sys.executable, "-c", "import sys; from harness.report.cli import main; sys.exit(main())"]
CUDA_REFUSED = "compbench: error: hardware.device: cuda was requested but no CUDA device is visible (allowed: cpu)"


def readme_commands() -> list[list[str]]:
    """Every `compbench` / `compbench-report` line of README's bash blocks, split as the shell would
    (shell variables set in the same block expanded, comments dropped)."""
    import shlex

    commands, variables, in_bash = [], {}, False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_bash, variables = line.strip() == "```bash", {} if line.strip() == "```bash" else variables
            continue
        if not in_bash:
            continue
        words = shlex.split(line, comments=True)
        if len(words) == 1 and "=" in words[0] and words[0].split("=")[0].isupper():
            name, _, value = words[0].partition("=")
            variables[name] = value
        elif words and words[0] in ("compbench", "compbench-report"):
            expanded = []
            for word in words:
                expanded += variables[word[1:]].split() if word.startswith("$") else [word]
            commands.append(expanded)
    return commands


def test_readme_has_the_commands_this_test_checks():
    commands = readme_commands()
    assert sum(c[0] == "compbench" for c in commands) >= 8 and any(c[0] == "compbench-report" for c in commands)
    assert any("--dry-run" in c for c in commands) and any("method.sparsity=0.3,0.6,0.9" in c for c in commands)


@pytest.mark.parametrize("command", [c for c in readme_commands() if c[0] == "compbench"], ids=lambda c: " ".join(c[1:])[:80])
def test_readme_compbench_command_validates_as_written(command, tmp_path, data_root, tiny_bert_dir, monkeypatch, capsys):
    """Each README cell command passes the very validation a run does (a dry run: nothing runs)."""
    import torch

    from harness import cli

    args = [arg.replace("/path/to/hf_dir", str(tiny_bert_dir)) for arg in command[1:]]
    args = [a for a in args if a != "--dry-run"]
    flags, overrides = [a for a in args if a.startswith("-")], [a for a in args if not a.startswith("-")]
    for key, value in {"COMPBENCH_DATA_ROOT": str(data_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                       "COMPBENCH_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["compbench", "--dry-run", *flags, f"paths.results_dir={tmp_path / 'results'}", *overrides])
    monkeypatch.setattr(cli, "hydra_main", lambda: pytest.fail("--dry-run ran a cell"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    if "hardware=cuda" in command and not torch.cuda.is_available():
        assert (exit_info.value.code, err.strip()) == (2, CUDA_REFUSED)  # valid up to the device this machine lacks
        return
    assert exit_info.value.code == 0, err
    assert "cell(s) planned; nothing was run (--dry-run)" in out
    assert not (tmp_path / "results").exists()


def test_readme_report_command_runs_as_written(tmp_path):
    (command,) = [c for c in readme_commands() if c[0] == "compbench-report"]
    args = command[1:]
    example = ROOT / "examples" / "results" / "demo"  # the committed copy of the demo run the command reads
    args = [str(example) if a == "results/demo" else str(tmp_path / "report") if a == "results/demo/report" else a for a in args]
    proc = subprocess.run(REPORT + args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "report" / "report.html").is_file() and "| baseline |" in proc.stdout


def test_dry_run_lists_planned_cells_and_writes_nothing(tmp_path, data_root):
    proc, results = run_cli(["--dry-run", "-m", "task=sst2,rte", "method=baseline,magnitude", "model.init=random"], tmp_path, data_root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "compbench: 4 cell(s) planned; nothing was run (--dry-run)"
    assert sorted(line.split("[")[0].strip() for line in lines[1:]) == [
        "baseline minilm_l6 rte cpu pytorch", "baseline minilm_l6 sst2 cpu pytorch", "magnitude minilm_l6 rte cpu pytorch",
        "magnitude minilm_l6 sst2 cpu pytorch"]
    assert all("would run ->" in line for line in lines[1:])
    assert not results.exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_readme_quick_cell_runs_as_written(tmp_path, data_root):
    """The README's first (quick) command, run for real."""
    command = next(c for c in readme_commands() if c[0] == "compbench" and "--dry-run" not in c and "-m" not in c)
    # As written, with tiny settings appended (later overrides win): the command's own parameters are
    # the ones exercised, in seconds rather than the minutes its full QUICK subset takes on 2 cores.
    tiny = ["task.finetune.max_train_samples=64", "task.max_eval_samples=32", "hardware.batch_sizes=[1]",
            "hardware.min_iterations=3", "hardware.min_duration_s=0", "measure.real_length_latency=false",
            "measure.energy=false", "measure.memory=false", "measure.bootstrap=50"]
    proc, results = run_cli(command[1:] + tiny, tmp_path, data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[ok]" in proc.stdout and len(list((results / "records").glob("*.json"))) == 1


@pytest.mark.parametrize("gives_up", [RuntimeError("UncompletedJobError: Job not requeued because: timed-out too many times"),
                                      SystemExit(1)])
def test_a_launcher_that_gives_up_still_ends_with_the_summary(tmp_path, data_root, monkeypatch, capsys, gives_up):
    """submitit raises when a job passes its time limit (and Hydra exits 1 after printing it): the sweep still
    says where every planned cell stands, and exits non-zero."""
    from harness import cli

    monkeypatch.setenv("COMPBENCH_DATA_ROOT", str(data_root))
    monkeypatch.setattr(sys, "argv", ["compbench", "-m", "task=sst2,mrpc", "model.init=random", "measure.latency=false",
                                      "measure.energy=false", f"paths.results_dir={tmp_path / 'results'}", f"paths.cache_dir={tmp_path / 'cache'}"])

    def launcher():
        raise gives_up

    monkeypatch.setattr(cli, "hydra_main", launcher)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 3  # no cell has a record: "not run" outranks the launcher's failure
    assert out.splitlines()[0].startswith("compbench: sweep of 2 cells: 0 ok, 0 unsupported, 0 failed, 2 not run")
    assert err.strip().splitlines()[-1].startswith("compbench: error: the launcher stopped the sweep: ")
