"""Records from the real runner on a tiny BERT: prediction files, official formats scored independently,
`--rescore`, `--recommend` and `--compare` on them."""

import csv
import gzip
import json
import shutil

import numpy as np
import pytest

from harness.metrics.squad_v1.squad_v1 import exact_match_score, f1_score, normalize_answer
from harness.report.cli import main as report_main
from harness.record import load_record, write_json_atomic

pytestmark = pytest.mark.slow

QUICK = ["task.finetune.max_train_samples=32", "task.finetune.epochs=1", "task.max_eval_samples=24",
         "hardware.batch_sizes=[1]", "hardware.min_iterations=5", "hardware.min_duration_s=0", "hardware.warmup=0",
         "measure.bootstrap=50", "measure.energy=false", "measure.memory=false", "measure.flops=false",
         "measure.real_length_latency=false", "isolate=false"]
CELLS = [("sst2", "baseline"), ("sst2", "magnitude"), ("squad_v1.1_devsplit", "baseline"), ("squad_v1.1_devsplit", "magnitude")]


@pytest.fixture(scope="module")
def results(tmp_path_factory, data_root, tiny_bert_dir):
    from harness.cli import compose_cell
    from harness.config import register_configs
    from harness.plan import plan_cell
    from harness.sweep import run_and_record

    register_configs()
    root = tmp_path_factory.mktemp("stats_results")
    for task, method in CELLS:
        run_and_record(plan_cell(compose_cell([f"paths.data_root={data_root}", f"paths.results_dir={root / 'results'}",
                                               f"paths.cache_dir={root / 'cache'}", "model=local", f"model.path={tiny_bert_dir}",
                                               f"task={task}", f"method={method}", *QUICK])))
    return root / "results"


def _records(results):
    return {(r["cell"]["task"], r["cell"]["method"]): (r, path) for path in sorted((results / "records").glob("*.json"))
            for r in [load_record(path)]}


def test_every_record_links_its_predictions_and_a_paired_comparison(results):
    records = _records(results)
    assert set(records) == set(CELLS)
    for (task, method), (record, path) in records.items():
        assert record["status"] == "ok", record["reason"]
        link = record["predictions"]
        file = path.parent / link["path"]
        assert file.name == path.stem + ".predictions.jsonl.gz"
        lines = [json.loads(line) for line in gzip.decompress(file.read_bytes()).splitlines()]
        assert len(lines) == 24 == sum(link["examples"].values())
        assert ("probabilities" in lines[0]) == (task == "sst2")
        comparison = record["comparison"]
        primary = "accuracy" if task == "sst2" else "f1"
        assert comparison["metrics"][primary]["method"] == record["metrics"][primary]
        if method == "baseline":  # the baseline against itself: nothing differs
            assert comparison["metrics"][primary]["p_value"] == 1.0
            assert comparison["agreement"]["validation"]["same_prediction"] == 1.0


def test_independent_scorers_reproduce_the_records_from_the_exported_official_formats(results, data_root, tmp_path):
    assert report_main([str(results), "--export-predictions", str(tmp_path)]) == 0
    records = _records(results)
    # SST-2: the GLUE submission TSV (index, label) against the gold labels of the dev file, read directly.
    with open(data_root / "glue" / "sst2" / "dev.tsv", encoding="utf-8") as handle:
        gold = [int(row["label"]) for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    for method in ("baseline", "magnitude"):
        record, path = records[("sst2", method)]
        with open(tmp_path / f"{path.stem}.validation.tsv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        predicted = np.array([int(row["prediction"]) for row in rows])
        indices = np.array([int(row["index"]) for row in rows])
        assert (predicted == np.array(gold)[indices]).mean() == record["metrics"]["accuracy"]
    # SQuAD: the {question_id: answer} file scored the way evaluate-v1.1.py does, over the dev file's questions.
    dataset = json.loads((data_root / "squad_v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    for method in ("baseline", "magnitude"):
        record, path = records[("squad_v1.1_devsplit", method)]
        answers = json.loads((tmp_path / f"{path.stem}.validation.json").read_text(encoding="utf-8"))
        exact = f1 = total = 0
        for article in dataset:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    if qa["id"] not in answers:
                        continue
                    total += 1
                    golds = [a["text"] for a in qa["answers"]]
                    exact += max(exact_match_score(answers[qa["id"]], g) for g in golds)
                    f1 += max(f1_score(answers[qa["id"]], g) for g in golds)
        assert total == 24
        assert 100.0 * exact / total == record["metrics"]["exact_match"]
        assert 100.0 * f1 / total == record["metrics"]["f1"]
    assert normalize_answer("The  Cat!") == "cat"


def test_rescore_passes_and_fails_loudly_naming_the_cell(results, tmp_path, capsys):
    assert report_main([str(results), "--rescore"]) == 0
    assert "all metrics reproduced exactly" in capsys.readouterr().out
    copy = tmp_path / "tampered"
    shutil.copytree(results, copy)
    record, path = _records(copy)[("sst2", "magnitude")]
    record["metrics"]["accuracy"] += 0.01
    write_json_atomic(path, record)
    assert report_main([str(copy), "--rescore"]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH" in err and path.name in err and "accuracy" in err


def test_rescore_refuses_a_prediction_file_changed_after_the_run(results, tmp_path, capsys):
    copy = tmp_path / "changed"
    shutil.copytree(results, copy)
    record, path = _records(copy)[("sst2", "baseline")]
    file = path.parent / record["predictions"]["path"]
    lines = gzip.decompress(file.read_bytes()).decode().splitlines()
    file.write_bytes(gzip.compress(("\n".join(lines[:-1]) + "\n").encode()))
    assert report_main([str(copy), "--rescore"]) == 1
    assert "sha256" in capsys.readouterr().err


def test_recommend_names_a_method_or_says_nothing_qualifies(results, tmp_path, capsys):
    # On the tiny model magnitude may time slower than the baseline, and then it is never the answer
    # (tests/test_paired_report.py); give its record a clear interleaved speedup to see the evidence.
    faster = tmp_path / "faster"
    shutil.copytree(results, faster)
    record, path = _records(faster)[("sst2", "magnitude")]
    record["latency"]["fixed"][0]["speedup"] = {**(record["latency"]["fixed"][0].get("speedup") or {}), "value": 1.5, "ci95": [1.4, 1.6]}
    record["latency"]["fixed"][0]["interleaved"] = True
    base_p50 = _records(faster)[("sst2", "baseline")][0]["latency"]["fixed"][0]["p50_ms"]
    record["latency"]["fixed"][0]["p50_ms"] = base_p50 / 1.5  # qualifiers are ranked by p50
    write_json_atomic(path, record)
    assert report_main([str(faster), "--recommend", "--max-drop", "100", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    sst2 = out[out.index("## sst2 on cpu"):]
    assert "Best: **magnitude**" in sst2 and "P(frontier)" in sst2 and "paired bootstrap 95% CI" in sst2 and "1.50× [1.40, 1.60]" in sst2
    assert report_main([str(results), "--recommend", "--max-latency-ms", "0.0001", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("Nothing qualifies") == 2 and "latency" in out


def test_compare_matches_cells_and_flags_a_latency_regression(results, tmp_path, capsys):
    slower = tmp_path / "slower"
    shutil.copytree(results, slower)
    record, path = _records(slower)[("sst2", "magnitude")]
    for entry in record["latency"]["fixed"]:
        # Ten times slower: clear of the spread of five timings on a busy machine.
        entry["values_ms"] = [10.0 * v for v in entry["values_ms"]]
        entry["p50_ms"] *= 10.0
    record["environment"]["packages"] = {**record["environment"].get("packages", {}), "torch": "9.9.9"}
    write_json_atomic(path, record)
    assert report_main(["--compare", str(results), str(slower)]) == 0
    out = capsys.readouterr().out
    assert "Matched 4 cell(s)" in out
    line = next(line for line in out.splitlines() if "sst2 / local / magnitude" in line)
    assert "LATENCY REGRESSION" in line and "×10.000" in line
    assert "ACCURACY REGRESSION" not in out  # same predictions: paired change 0, p = 1
    assert "packages.torch" in out and "9.9.9" in out
