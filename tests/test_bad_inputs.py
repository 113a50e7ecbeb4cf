"""The bad-input catalogue: every kind of bad input fails with exactly one line, exit code 2, and
leaves nothing behind (no results directory, no cache directory, no report folder).

Each case runs the real CLI's main() in this process (run_main: the interpreter start and the torch
import are paid once, not per case; test_config_error_in_a_fresh_process checks that a fresh process
behaves the same) against a tiny synthetic data root, so nothing here depends on the shared GLUE/SQuAD copies. The cases in test_cli.py
count too; this file is the complete list in one place:

  config     unknown method / model / task / hardware / launcher, unknown field, unknown method
             parameter, wrong value type, malformed override, non-boolean flag, out-of-range
             parameters (sparsity 1.5, rank 0, negative batch sizes, max_seq_length 4, epochs 0,
             negative recover_epochs, devsplit every=1), SQuAD doc_stride too large
  hardware   GPU-only method on CPU (single cell), CUDA requested without a GPU, latency cells
             under a parallel launcher without allow_concurrent_latency=true
  data       missing file, truncated TSV, TSV with a wrong header, empty TSV, undecodable TSV,
             SQuAD JSON with a missing field, truncated SQuAD JSON
  model      model.path missing, directory without config.json, without weights, pickle-only weights
  output     unwritable results directory, results path under a file, unwritable cache directory,
             disk full (simulated at pre-flight and during the atomic write)
  report     corrupt record as the only report input, unknown --tasks name (with the closest one),
             --out at a file or a read-only folder, a record whose metrics is not an object
  inputs     a seed the RNG refuses, non-numbers and NaN in numeric fields, misspelled keys (closest
             real one suggested), out-of-range warmup_ratio/weight_decay/bootstrap/durations/labels,
             damage in the middle of a TSV, a corrupt or truncated model.safetensors, a data-root typo
             (named before any Hub fallback)
  caches     interrupted fine-tune cache entry (never trusted: rebuilt; not an error)
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import run_main
from fake_cells import RTE_HEADER, RTE_ROWS, SQUAD, make_data

ROOT = Path(__file__).resolve().parents[1]
COMPBENCH = [sys.executable, "-c", "from harness.cli import main; main()"]

@pytest.fixture
def data(tmp_path) -> Path:
    return make_data(tmp_path / "data")


def run_cli(args, tmp_path, data_root, timeout=120):
    env = {**os.environ, "COMPBENCH_DATA_ROOT": str(data_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "COMPBENCH_CACHE": str(tmp_path / "cache")}
    results = tmp_path / "results"
    return subprocess.run(COMPBENCH + [f"paths.results_dir={results}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout), results


def assert_one_line(proc, tmp_path, message, exact=True, code=2):
    """Exit `code`, exactly one error line (the last line of stderr), nothing written."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr[-3000:]
    assert len([line for line in lines if line.startswith("compbench")]) == 1, proc.stderr[-3000:]
    if exact:
        assert lines[-1] == message, lines[-1]
    else:
        assert lines[-1].startswith(message), lines[-1]
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "cache").exists()


def allowed(group: str) -> str:
    from harness.cli import available

    return ", ".join(available(group))


# (id, overrides, exact message); the message is the whole last line of stderr.
CONFIG_CASES = [
    ("unknown method", ["method=nope"], f"compbench: error: method: unknown choice 'nope' (allowed: {allowed('method')})"),
    ("unknown model", ["model=gpt9"], f"compbench: error: model: unknown choice 'gpt9' (allowed: {allowed('model')})"),
    ("unknown task", ["task=imdb"], f"compbench: error: task: unknown choice 'imdb' (allowed: {allowed('task')})"),
    ("unknown hardware", ["hardware=tpu"], f"compbench: error: hardware: unknown choice 'tpu' (allowed: {allowed('hardware')})"),
    ("unknown choice inside a sweep", ["-m", "task=sst2,imdb"], f"compbench: error: task: unknown choice 'imdb' (allowed: {allowed('task')})"),
    ("sparsity 1.5", ["method=magnitude", "method.sparsity=1.5"], "compbench: error: method.sparsity: must be in [0, 1), got 1.5"),
    ("rank 0", ["method=low_rank", "method.rank=0"], "compbench: error: method.rank: must be an integer >= 1, got 0"),
    ("negative latency batch", ["hardware.batch_sizes=[1,-4]"], "compbench: error: hardware.batch_sizes: every batch size must be a positive integer, got -4"),
    ("negative fine-tune batch", ["task.finetune.batch_size=-1"], "compbench: error: task.finetune.batch_size: must be a positive integer, got -1"),
    ("zero epochs", ["task.finetune.epochs=0"], "compbench: error: task.finetune.epochs: must be > 0, got 0.0"),
    ("max_seq_length 4", ["task.max_seq_length=4"], "compbench: error: task.max_seq_length: must be in [8, 512], got 4"),
    ("negative recover_epochs", ["method.recover_epochs=-1"], "compbench: error: method.recover_epochs: must be >= 0, got -1"),
    # issue 31 part 5: run_name is one folder under results/, never a path out of it
    ("run_name with a separator", ["run_name=../elsewhere"],
     "compbench: error: run_name: must be a single folder name (no '/', '\\' or '..'), got '../elsewhere'"),
    ("run_name '..'", ["run_name=.."], "compbench: error: run_name: must be a single folder name (no '/', '\\' or '..'), got '..'"),
    ("unknown model field", ["+model.foo=1"],
     "compbench: error: model.foo: is not a known field (allowed: ['allow_pickle', 'architecture', 'finetuned_task', 'hub_id', 'init', 'name', 'path', 'source'])"),
    ("unknown method parameter", ["+method.bogus=1"], "compbench: error: method.bogus: is not a parameter of baseline (allowed: ['name', 'recover_epochs'])"),
    ("wrong value type", ["hardware.warmup=abc"], "compbench: error: hardware.warmup: expected an integer, got 'abc'"),
    ("method parameter not a number", ["method=magnitude", "method.sparsity=abc"], "compbench: error: method.sparsity: expected a number, got 'abc'"),
    ("learning rate not a number", ["task.finetune.learning_rate=abc"], "compbench: error: task.finetune.learning_rate: expected a number, got 'abc'"),
    ("learning rate nan", ["task.finetune.learning_rate=nan"], "compbench: error: task.finetune.learning_rate: expected a number, got nan"),
    ("misspelled method parameter", ["method=magnitude", "method.sparsty=0.5"],
     "compbench: error: method.sparsty: no such field; did you mean method.sparsity? (allowed: "),
    ("misspelled appended method parameter", ["method=magnitude", "+method.sparsty=0.5"],
     "compbench: error: method.sparsty: is not a parameter of magnitude; did you mean method.sparsity? (allowed: "),
    ("misspelled task field", ["task.max_eval_sample=5"], "compbench: error: task.max_eval_sample: no such field; did you mean task.max_eval_samples? (allowed: "),
    ("seed beyond the RNG", ["seed=4294967296"], "compbench: error: seed: must be in [0, 4294967295] (what the random generators accept), got 4294967296"),
    ("negative seed", ["seed=-1"], "compbench: error: seed: must be in [0, 4294967295] (what the random generators accept), got -1"),
    ("warmup ratio above 1", ["task.finetune.warmup_ratio=2"], "compbench: error: task.finetune.warmup_ratio: must be in [0, 1], got 2.0"),
    ("negative weight decay", ["task.finetune.weight_decay=-0.1"], "compbench: error: task.finetune.weight_decay: must be >= 0, got -0.1"),
    ("negative bootstrap", ["measure.bootstrap=-5"], "compbench: error: measure.bootstrap: must be >= 0 (0 disables CIs), got -5"),
    ("no latency process", ["measure.latency_processes=0"], "compbench: error: measure.latency_processes: must be in [1, 20], got 0"),
    ("too many fresh-process re-runs", ["measure.fresh_process_retries=9"],
     "compbench: error: measure.fresh_process_retries: must be in [0, 5], got 9"),
    ("max duration below min", ["hardware.min_duration_s=5", "hardware.max_duration_s=1"],
     "compbench: error: hardware.max_duration_s: must be >= hardware.min_duration_s (5.0), got 1.0"),
    ("zero labels", ["task.num_labels=0"], "compbench: error: task.num_labels: must be >= 1, got 0"),
    ("data root typo", ["paths.data_root=/nonexistent/shared/dta"],
     "compbench: error: paths.data_root: /nonexistent/shared/dta is not a directory (a typo? it comes from paths.data_root or COMPBENCH_DATA_ROOT)"),
    ("malformed override", ["task.max_eval_samples=["],
     "compbench: error: overrides: no viable alternative at input '[' See https://hydra.cc/docs/1.2/advanced/override_grammar/basic for details"),
    ("non-integer seed", ["seed=abc"], "compbench: error: seed: must be an integer, got 'abc'"),
    ("non-boolean force", ["force=maybe"], "compbench: error: force: must be true or false, got 'maybe'"),
    ("non-boolean flag", ["allow_concurrent_latency=maybe"], "compbench: error: allow_concurrent_latency: must be true or false, got 'maybe'"),
    ("unknown device", ["hardware.device=tpu"], "compbench: error: hardware.device: unknown device 'tpu' (allowed: ('cpu', 'cuda'))"),
    ("local model without path", ["model=local"], "compbench: error: model.path: is required when model.source=local"),
    ("devsplit every=1", ["task=squad_v1.1_devsplit", "task.devsplit.every=1"], "compbench: error: task.devsplit.every: must be an integer >= 2, got 1"),
    ("squad doc_stride too large", ["task=squad_v1.1_devsplit", "task.doc_stride=200"],
     "compbench: error: task.doc_stride: must be below half of max_seq_length (384), got 200"),
    ("GPU-only method on CPU (single cell)", ["method=fp16", "hardware=cpu"],
     "compbench: error: method: unsupported on cpu: fp16 runs on cuda only; pick another method or hardware (a -m sweep records this cell as unsupported)"),
    ("GPU-only 2:4 sparsity on CPU (single cell)", ["method=sparse_2of4", "hardware=cpu"],
     "compbench: error: method: unsupported on cpu: no 2:4 sparse kernels on CPU; pick another method or hardware (a -m sweep records this cell as unsupported)"),
    ("latency cells under a parallel launcher", ["-m", "hydra/launcher=joblib_local", "task=sst2,rte"],
     "compbench: error: hydra/launcher: joblib_local runs up to 2 cells at once on this machine, which distorts latency and energy; "
     "add measure.latency=false measure.energy=false for a parallel accuracy sweep, or allow_concurrent_latency=true to measure anyway "
     "(records then say how many cells shared the machine)"),
]


@pytest.mark.parametrize("overrides,message", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_errors(overrides, message, tmp_path, data, monkeypatch, capsys):
    proc = run_main(overrides, tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, message, exact=not message.endswith("(allowed: "))


def test_config_error_in_a_fresh_process(tmp_path, data):
    """The in-process cases above behave exactly like the installed entry point."""
    proc, _ = run_cli(["-m", "task=sst2,imdb"], tmp_path, data)
    assert_one_line(proc, tmp_path, f"compbench: error: task: unknown choice 'imdb' (allowed: {allowed('task')})")


def test_unknown_launcher(tmp_path, data, monkeypatch, capsys):
    proc = run_main(["hydra/launcher=nope"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: overrides: In 'hydra/config': Could not find 'hydra/launcher/nope' Available options in 'hydra/launcher': ", exact=False)


def test_launcher_plugin_not_installed(tmp_path, data, monkeypatch, capsys):
    from harness import preflight

    monkeypatch.setattr(preflight, "_importable", lambda module: False)
    proc = run_main(["-m", "hydra/launcher=joblib_local", "task=sst2,rte"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: hydra/launcher: joblib_local needs the hydra-joblib-launcher plugin: pip install -e '.[cluster]'")


def test_cuda_without_gpu(tmp_path, data, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    proc = run_main(["hardware=cuda"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: hardware.device: cuda was requested but no CUDA device is visible (allowed: cpu)")


# ---------------------------------------------------------------------------------------- data
def test_missing_data_file(tmp_path, data, monkeypatch, capsys):
    (data / "glue" / "rte" / "dev.tsv").unlink()
    proc = run_main(["task=rte"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: task.local: {data}/glue/rte/dev.tsv not found; set paths.data_root or "
                    "COMPBENCH_DATA_ROOT to the folder holding glue/ and squad_v1.1/; the Hub fallback is unavailable (HF_HUB_OFFLINE is set)")


def test_truncated_tsv(tmp_path, data, monkeypatch, capsys):
    text = RTE_HEADER + RTE_ROWS
    (data / "glue" / "rte" / "dev.tsv").write_text(text[: text.rindex("\t") - 3])  # cut inside the last row
    proc = run_main(["task=rte"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: task.local: glue/rte/dev.tsv: last line does not parse (3 fields, expected 4); the file looks truncated")


def test_damage_in_the_middle_of_a_tsv(tmp_path, data, monkeypatch, capsys):
    """Every row is parsed before a model loads, not only the first ones and the last line."""
    rows = "".join(f"{i}\tA man walks {i}.\tA person moves.\t{'entailment' if i % 2 else 'not_entailment'}\n" for i in range(400))
    cut = rows.index("250\t")
    line = (RTE_HEADER + rows[:cut]).count("\n") + 1
    (data / "glue" / "rte" / "train.tsv").write_bytes((RTE_HEADER + rows[:cut]).encode() + b"\xff\xfe" + rows[cut:].encode())
    proc = run_main(["task=rte"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: task.local: glue/rte/train.tsv: line {line} cannot be decoded as utf-8 (invalid start byte); damaged or unparseable file")
    wrong = "".join(f"{i}\tA man walks {i}.\tA person moves.\tmaybe\n" for i in range(400)) + rows[-60:]
    (data / "glue" / "rte" / "train.tsv").write_text(RTE_HEADER + wrong)
    proc = run_main(["task=rte"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: task.label_names: glue/rte/train.tsv: 400 of 402 labels are neither in "
                    "['entailment', 'not_entailment'] nor ids below 2", exact=False)


def test_tsv_with_wrong_header(tmp_path, data, monkeypatch, capsys):
    (data / "glue" / "rte" / "train.tsv").write_text("idx\tpremise\thypothesis\tlabel\n" + RTE_ROWS)
    proc = run_main(["task=rte"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: task.local: glue/rte/train.tsv: wrong header ['idx', 'premise', 'hypothesis', 'label']; "
                    "expected columns ['sentence1', 'sentence2', 'label'] (missing ['sentence1', 'sentence2'])")


def test_empty_tsv(tmp_path, data, monkeypatch, capsys):
    (data / "glue" / "sst2" / "dev.tsv").write_text("")
    proc = run_main(["task=sst2"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: task.local: glue/sst2/dev.tsv: file is empty (truncated download?)")


def test_undecodable_tsv(tmp_path, data, monkeypatch, capsys):
    (data / "glue" / "sst2" / "dev.tsv").write_bytes(b"sentence\tlabel\n\xff\xfe caf\xe9 \t1\n")
    proc = run_main(["task=sst2"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: task.local: glue/sst2/dev.tsv: line 2 cannot be decoded as utf-8 (invalid start byte); damaged or unparseable file")


def test_squad_json_with_a_missing_field(tmp_path, data, monkeypatch, capsys):
    broken = json.loads(json.dumps(SQUAD))
    del broken["data"][3]["paragraphs"][0]["qas"][0]["question"]
    (data / "squad_v1.1" / "dev-v1.1.json").write_text(json.dumps(broken))
    proc = run_main(["task=squad_v1.1_devsplit"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: task.local: squad_v1.1/dev-v1.1.json: data[3].paragraphs[0].qas[0] is missing field 'question'; not a SQuAD v1.1 file")


def test_truncated_squad_json(tmp_path, data, monkeypatch, capsys):
    text = json.dumps(SQUAD)
    (data / "squad_v1.1" / "dev-v1.1.json").write_text(text[: len(text) // 2])
    proc = run_main(["task=squad_v1.1_devsplit"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, "compbench: error: task.local: squad_v1.1/dev-v1.1.json: not valid JSON (", exact=False)
    assert proc.stderr.strip().splitlines()[-1].endswith("); truncated or unparseable file")


# --------------------------------------------------------------------------------------- model
def test_model_path_missing(tmp_path, data, monkeypatch, capsys):
    proc = run_main([f"model.path={tmp_path / 'nowhere'}"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: model.path: {tmp_path / 'nowhere'} is not a directory")


def test_model_directory_without_config(tmp_path, data, monkeypatch, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    proc = run_main(["model=local", f"model.path={model_dir}"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: model.path: {model_dir} has no config.json")


def test_model_directory_without_weights(tmp_path, data, monkeypatch, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    proc = run_main(["model=local", f"model.path={model_dir}"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: model.path: {model_dir} has no weights (model.safetensors or pytorch_model.bin)")


def test_pickle_only_weights_are_refused(tmp_path, data, monkeypatch, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "pytorch_model.bin").write_bytes(b"\x80\x02 a pickle could run code on load")
    proc = run_main(["model=local", f"model.path={model_dir}"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: model.allow_pickle: {model_dir} holds only pickle weights (pytorch_model.bin); "
                    "convert to safetensors or set model.allow_pickle=true")


def _tiny_safetensors(model_dir: Path) -> bytes:
    """A valid two-tensor safetensors file (written by hand: the check must not need torch)."""
    header = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}).encode()
    blob = len(header).to_bytes(8, "little") + header + bytes(24)
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    return blob


@pytest.mark.parametrize("damage", ["truncated", "garbage header", "extra bytes"])
def test_corrupt_safetensors_is_refused_before_loading(damage, tmp_path, data, monkeypatch, capsys):
    model_dir = tmp_path / "model"
    blob = _tiny_safetensors(model_dir)
    broken = {"truncated": blob[:-5], "garbage header": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", "extra bytes": blob + b"\x00" * 8}[damage]
    (model_dir / "model.safetensors").write_bytes(broken)
    proc = run_main(["model=local", f"model.path={model_dir}"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: model.path: {model_dir / 'model.safetensors'} is not a valid safetensors file (", exact=False)
    assert proc.stderr.strip().endswith("; truncated or corrupt download?")


def test_valid_safetensors_passes_the_check(tmp_path):
    from harness.models import check_safetensors

    model_dir = tmp_path / "model"
    blob = _tiny_safetensors(model_dir)
    (model_dir / "model.safetensors").write_bytes(blob)
    check_safetensors(model_dir / "model.safetensors")


def test_data_root_typo_is_named_before_any_hub_fallback(tmp_path, data, monkeypatch, capsys):
    """Online (no HF_HUB_OFFLINE), a misspelt data root is named instead of silently trying the Hub."""
    proc = run_main([f"paths.data_root={tmp_path / 'dta'}"], tmp_path, data, monkeypatch, capsys, online=True)
    assert_one_line(proc, tmp_path, f"compbench: error: paths.data_root: {tmp_path / 'dta'} is not a directory (a typo? it comes from paths.data_root or COMPBENCH_DATA_ROOT)")
    (data / "glue" / "sst2" / "dev.tsv").unlink()
    proc = run_main([f"task.local.eval.validation=glue/sst2/dev.tsv"], tmp_path, data, monkeypatch, capsys, online=True)
    assert_one_line(proc, tmp_path, f"compbench: error: task.local: {data}/glue/sst2/dev.tsv not found; set paths.data_root or COMPBENCH_DATA_ROOT "
                    "to the folder holding glue/ and squad_v1.1/; the Hub fallback is unavailable (task.local.* was set explicitly)")


# -------------------------------------------------------------------------------------- output
def _unwritable_dir(tmp_path: Path) -> tuple[Path, Path]:
    """(a results dir that cannot be created, the existing directory that refuses files)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").touch()  # root ignores the mode bits: use a kernel directory instead
        (locked / "probe").unlink()
        locked.chmod(0o700)
        return Path("/sys/compbench-results"), Path("/sys")
    except PermissionError:
        return locked / "results", locked


def test_unwritable_results_directory(tmp_path, data, monkeypatch, capsys):
    target, anchor = _unwritable_dir(tmp_path)
    proc = run_main([f"paths.results_dir={target}"], tmp_path, data, monkeypatch, capsys)
    (tmp_path / "locked").chmod(0o700)
    assert_one_line(proc, tmp_path, f"compbench: error: paths.results_dir: {target} is not writable (Permission denied in {anchor})")
    assert not target.exists()


def test_unwritable_records_directory(tmp_path, data, monkeypatch, capsys):
    """The results directory exists, but the records folder inside it refuses files."""
    target, anchor = _unwritable_dir(tmp_path)
    if anchor == Path("/sys"):
        pytest.skip("running as root: mode bits do not stop writes")
    results = tmp_path / "locked"
    (tmp_path / "locked").chmod(0o700)
    (results / "records").mkdir()
    (results / "records").chmod(0o500)
    proc = run_main([f"paths.results_dir={results}"], tmp_path, data, monkeypatch, capsys)
    (results / "records").chmod(0o700)
    assert_one_line(proc, tmp_path, f"compbench: error: paths.results_dir: {results} is not writable (Permission denied in {results / 'records'})")


def test_results_path_under_a_file(tmp_path, data, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a directory")
    proc = run_main([f"paths.results_dir={tmp_path / 'file' / 'results'}"], tmp_path, data, monkeypatch, capsys)
    assert_one_line(proc, tmp_path, f"compbench: error: paths.results_dir: {tmp_path / 'file' / 'results'} cannot be created: {tmp_path / 'file'} is not a directory")


def test_unwritable_cache_directory(tmp_path, data, monkeypatch, capsys):
    target, anchor = _unwritable_dir(tmp_path)
    proc = run_main([f"paths.cache_dir={target}"], tmp_path, data, monkeypatch, capsys)
    (tmp_path / "locked").chmod(0o700)
    assert_one_line(proc, tmp_path, f"compbench: error: paths.cache_dir: {target} is not writable (Permission denied in {anchor})")


def test_disk_full_at_preflight(tmp_path, data, monkeypatch, capsys):
    """Simulated: the OS reports 1 MiB free wherever compbench looks."""
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**40, 2**40 - 2**20, 2**20))
    proc = run_main([], tmp_path, data, monkeypatch, capsys)
    results = tmp_path / "results"
    assert_one_line(proc, tmp_path, f"compbench: error: paths.results_dir: only 1 MiB free on the disk holding {results} (disk full?); "
                    "compbench needs at least 64 MiB")


def test_disk_full_while_writing_a_record_leaves_no_file(tmp_path, monkeypatch):
    """ENOSPC in the middle of the atomic write: no record, no temp file, the error propagates."""
    from harness import record

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(record.os, "fsync", full)
    target = tmp_path / "records" / "cell.json"
    with pytest.raises(OSError, match="No space left on device"):
        record.write_json_atomic(target, {"status": "ok", "payload": "x" * 10_000})
    assert list(target.parent.iterdir()) == []


# -------------------------------------------------------------------------------------- report
def test_corrupt_record_as_the_only_report_input(tmp_path):
    records = tmp_path / "results" / "records"
    records.mkdir(parents=True)
    (records / "sst2__minilm_l6__baseline__cpu__0123456789ab.json").write_text('{"schema_version": "1.0", "status": "ok", "config"')
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-c", "import sys; from harness.report.cli import main; sys.exit(main())",
                           str(tmp_path / "results"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"compbench-report: no records found in {tmp_path / 'results'} (1 unreadable, e.g. "
                     f"{records / 'sst2__minilm_l6__baseline__cpu__0123456789ab.json'}: not a readable JSON record (JSONDecodeError))"]
    assert not out.exists()


def run_report(args):
    from harness.report.cli import main

    return main([str(a) for a in args])


def _one_valid_record(tmp_path) -> Path:
    """A real writer's record (harness.runner.base_record) of a real method, status ok."""
    from harness.record import record_path, write_json_atomic

    results = tmp_path / "results"
    record = _base_record(tmp_path)
    write_json_atomic(record_path(results, record["cell"], record["config_hash"]), record)
    return results


def _base_record(tmp_path) -> dict:
    from harness.compose import compose_cell
    from harness.config import register_configs
    from harness.runner import base_record

    register_configs()
    root = tmp_path / "rdata"
    cell = compose_cell([f"paths.data_root={root if root.exists() else make_data(root)}", "model.init=random"])
    record = base_record(cell, "0123456789abcdef", {}, "ok")
    record["metrics"] = {"accuracy": 0.9}
    return record


@pytest.mark.parametrize("tasks,message", [
    ("nosuch", "compbench-report: error: argument --tasks: unknown task 'nosuch' (allowed: "),
    ("SST-2", "compbench-report: error: argument --tasks: unknown task 'SST-2'; did you mean sst2? (allowed: "),
])
def test_report_unknown_task_is_one_line(tasks, message, tmp_path, capsys):
    results = _one_valid_record(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_report([results, "--tasks", tasks, "--out", tmp_path / "report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "report").exists()


def test_report_out_at_a_file_or_a_read_only_folder_is_one_line(tmp_path, capsys):
    results = _one_valid_record(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        run_report([results, "--out", tmp_path / "file"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"compbench-report: error: --out: {tmp_path / 'file'} cannot be a folder: {tmp_path / 'file'} is a file"]
    target, anchor = _unwritable_dir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_report([results, "--out", target])
    (tmp_path / "locked").chmod(0o700)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"compbench-report: error: --out: {target} is not writable (Permission denied in {anchor})"]


def test_report_names_and_skips_a_record_whose_metrics_is_not_an_object(tmp_path, capsys):
    from harness.record import record_path, write_json_atomic

    results = _one_valid_record(tmp_path)
    bad = _base_record(tmp_path)
    bad["cell"]["method"] = "dynamic_int8"
    bad["metrics"] = [0.9]
    path = write_json_atomic(record_path(results, bad["cell"], "fedcba9876543210"), bad)
    assert run_report([results, "--out", tmp_path / "report", "--no-plots"]) == 1  # written, but one file left out
    err = capsys.readouterr().err
    assert f"skipped: {path}: not a record (metrics is a list, not an object)" in err.splitlines()


# --------------------------------------------------------------------------------------- umask
def test_records_and_cache_entries_respect_the_umask(tmp_path):
    """A results or cache folder shared by a group stays readable by the group (no forced 0600/0700)."""
    from harness.finetune import cached_finetune
    from harness.record import write_json_atomic

    class Saved:
        def save_pretrained(self, directory, **kwargs):
            (Path(directory) / "weights").write_text("w")

    old = os.umask(0o002)
    try:
        record = write_json_atomic(tmp_path / "records" / "r.json", {"status": "ok"})
        cached_finetune("k" * 64, str(tmp_path / "cache"), lambda: (Saved(), Saved(), {}), lambda directory: None)
    finally:
        os.umask(old)
    assert record.stat().st_mode & 0o777 == 0o664
    entry = tmp_path / "cache" / "finetuned" / ("k" * 64)
    assert entry.stat().st_mode & 0o777 == 0o775
    assert (entry / "meta.json").stat().st_mode & 0o777 == 0o664


# -------------------------------------------------------------------------------------- caches
def test_interrupted_finetune_cache_entry_is_never_trusted(tmp_path):
    """A fine-tune killed while saving leaves a directory without meta.json: it is rebuilt, not loaded."""
    from harness.finetune import cached_finetune

    entry = tmp_path / "finetuned" / "abc123"
    entry.mkdir(parents=True)
    (entry / "model.safetensors").write_bytes(b"half a file")
    built, loaded = [], []

    class Saved:
        def save_pretrained(self, directory, **kwargs):
            (Path(directory) / "model.safetensors").write_bytes(b"complete")

    def build():
        built.append(1)
        return Saved(), Saved(), {}

    model, info = cached_finetune("abc123", str(tmp_path), build, lambda d: loaded.append(d))
    assert built == [1] and loaded == [] and info["cache_hit"] is False
    assert (entry / "meta.json").is_file() and (entry / "model.safetensors").read_bytes() == b"complete"
    _, info = cached_finetune("abc123", str(tmp_path), build, lambda d: loaded.append(d) or "reloaded")
    assert built == [1] and loaded == [str(entry)] and info["cache_hit"] is True


# ------------------------------------------------------------------------------------- security
def test_no_code_runs_from_model_files_or_config_strings():
    """Source guards: remote code is never trusted, torch.load never unpickles arbitrary objects,
    and no config string reaches a shell."""
    import re

    sources = [p for folder in ("harness", "methods", "bench") for p in (ROOT / folder).rglob("*.py")]
    assert sources
    problems = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"trust_remote_code\s*=\s*(\w+)", text):
            if match.group(1) != "False":
                problems.append(f"{path.name}: trust_remote_code={match.group(1)}")
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.end():match.end() + 300].split("\n\n")[0]  # the call, possibly over several lines
            if "weights_only=True" not in call:
                problems.append(f"{path.name}: torch.load without weights_only=True")
        for pattern in (r"shell\s*=\s*True", r"os\.system\(", r"os\.popen\(", r"pickle\.loads?\("):
            if re.search(pattern, text):
                problems.append(f"{path.name}: {pattern}")
    assert problems == []
