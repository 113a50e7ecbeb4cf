"""Old records get their method's reference once, marked as migrated; the report reads it from the record."""

import json

from harness.record_migration import MIGRATED, main, migrate_record, migrate_tree
from harness.report import load_records
from harness.report.references import reference_legend


def old_record(name="kd_logits", target="methods.distillation.KdLogits"):
    return {"cell": {"task": "mrpc", "model": "minilm_l6", "method": name, "hardware": "cpu"},
            "config": {"method": {"_target_": target, "name": name}},
            "method": {"name": name, "category": "KD from Output Logits", "provenance": "S"}}


def test_an_old_record_gets_its_reference_once():
    record = old_record()
    assert migrate_record(record)
    reference = record["method"]["reference"]
    assert "PKD" in reference["paper"] or "Hinton" in reference["paper"]
    assert reference["comparable_to_published"] is False and record["method"]["reference_source"] == MIGRATED
    assert not migrate_record(record)  # once: a record that has one keeps it
    written = old_record()
    written["method"]["reference"] = {"paper": "as written", "recipe": "r", "changes": "", "comparable_to_published": True}
    written["method"]["label"] = {"preset": "kd_logits", "changed": {}, "short": "as written"}
    assert not migrate_record(written) and written["method"]["reference"]["paper"] == "as written"
    assert written["method"]["label"]["short"] == "as written"


def test_an_old_record_gets_the_label_its_preset_gives_it():
    record = old_record("magnitude", "methods.pruning.Magnitude")
    record["config"]["method"].update(sparsity=0.7, recover_epochs=0)  # an old one-shot record
    assert migrate_record(record)
    assert record["method"]["label"]["short"] == "magnitude (rec=0,s=0.7)"
    assert record["method"]["label_source"] == MIGRATED


def test_migrating_a_tree_touches_records_only_and_refuses_a_missing_folder(tmp_path, capsys):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "a.json").write_text(json.dumps(old_record()))
    (tmp_path / "records" / "a.predictions.json").write_text(json.dumps({"predictions": []}))
    assert migrate_tree(tmp_path) == (1, 1)
    assert migrate_tree(tmp_path) == (0, 1)
    assert json.loads((tmp_path / "records" / "a.predictions.json").read_text()) == {"predictions": []}
    assert main([str(tmp_path / "missing")]) == 2 and "roots:" in capsys.readouterr().err


def test_the_report_legend_reads_the_records(tmp_path):
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures" / "records"
    records, _ = load_records([str(fixtures)])
    legend = reference_legend(records.assign(reference_paper=None))
    assert legend.empty  # nothing in the records, nothing in the legend: the report never asks today's code
    described = records.assign(reference_paper="Paper A", reference_recipe="its recipe", reference_changes="",
                               comparable_to_published=True)
    legend = reference_legend(described)
    assert set(legend["Method"]) == set(records["method"].str.split(" [", regex=False).str[0])
    assert (legend["compbench's default"] == "as the paper").all()
