"""Training-based methods (distillation, movement/gradual pruning, QAT, early exit) on tiny random BERTs.

Offline and fast: a 4-layer, 64-wide BERT, a 200-token WordPiece vocabulary written to a temp dir,
64 synthetic training examples whose label is a simple function of the tokens.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness.config import FinetuneConfig, HardwareConfig, TaskConfig  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from harness.tasks.types import TaskData  # noqa: E402
from methods.base import MethodContext  # noqa: E402


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


def tiny_bert(seed: int = 0, **overrides):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = dict(vocab_size=200, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128, max_position_embeddings=64, num_labels=2)
    config.update(overrides)
    return BertForSequenceClassification(BertConfig(**config)).eval()


def synthetic_rows(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    columns = {"input_ids": [], "attention_mask": [], "token_type_ids": [], "labels": []}
    for _ in range(n):
        length = int(rng.integers(6, 20))
        tokens = rng.integers(5, 200, size=length - 2).tolist()
        columns["input_ids"].append([2] + tokens + [3])
        columns["attention_mask"].append([1] * length)
        columns["token_type_ids"].append([0] * length)
        columns["labels"].append(int(2 * sum(t >= 100 for t in tokens) > len(tokens)))
    return columns


class _Split:
    name = "validation"

    def __init__(self, features):
        self.features = features
        self.examples = list(range(len(features)))


def supervised_step(model, optimizer, inputs):
    """One optimizer step on the model's own loss; returns the loss before the step."""

    def step():
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    return step


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core box two OpenMP threads
    competing with other processes make every step ~30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    directory = tmp_path_factory.mktemp("vocab")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"t{i}" for i in range(195)]
    (directory / "vocab.txt").write_text("\n".join(vocab))
    return BertTokenizerFast(vocab_file=str(directory / "vocab.txt"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def make_ctx(tokenizer, cache_dir, teacher, train_rows: int = 64, batch_size: int = 16, lr: float = 1e-3, pretrained=None):
    import datasets

    task = TaskConfig(finetune=FinetuneConfig(epochs=1, learning_rate=lr, batch_size=batch_size, warmup_ratio=0.0))
    train = datasets.Dataset.from_dict(synthetic_rows(train_rows, seed=0))
    evaluation = datasets.Dataset.from_dict(synthetic_rows(40, seed=1)).remove_columns(["labels"])
    data = TaskData(config=task, train=train, eval={"validation": _Split(evaluation)}, fingerprints={"synthetic": "v1"})
    return MethodContext(tokenizer=tokenizer, task=data, hardware=HardwareConfig(), seed=0, cache_dir=cache_dir,
                         calibration_batches=None, finetune=None, teacher=teacher, pretrained=pretrained)


def batch(tokenizer, n: int = 16, seed: int = 3) -> dict:
    from transformers import DataCollatorWithPadding

    rows = synthetic_rows(n, seed)
    return DataCollatorWithPadding(tokenizer)([{k: rows[k][i] for k in rows} for i in range(n)])


def descends(step, n_steps: int = 8) -> tuple[float, float]:
    first = last = None
    for _ in range(n_steps):
        value = step()
        first = value if first is None else first
        last = value
    return first, last


# ----------------------------------------------------------------------------------------------
# Distillation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention_loss,hidden_target", [("tinybert", "all"), ("minilm", "cls")])

def test_distillation_losses_are_zero_when_student_is_teacher(tokenizer, attention_loss, hidden_target):
    from methods.kd_losses import DistillLoss

    teacher = tiny_bert()
    student = copy.deepcopy(teacher).eval()
    loss = DistillLoss(alpha=1.0, beta=1.0, gamma=1.0, hidden_target=hidden_target, attention_loss=attention_loss, student=student, teacher=teacher)
    assert loss.mapping == [(1, 1), (2, 2), (3, 3), (4, 4)] and loss.projection is None
    terms, _ = loss.components(student, teacher, batch(tokenizer))
    assert set(terms) == {"hard", "soft", "hidden", "attention"}
    for name in ("soft", "hidden", "attention"):
        assert float(terms[name].detach()) == pytest.approx(0.0, abs=1e-6), name
    assert float(terms["hard"]) > 0.1  # the label loss is not a distillation loss


def test_layer_mapping_and_subset_student():
    from methods.kd_losses import layer_mapping
    from methods.students import student_layer_ids

    assert layer_mapping(3, 6, "skip") == [(1, 2), (2, 4), (3, 6)]
    assert layer_mapping(3, 6, "last") == [(1, 4), (2, 5), (3, 6)]
    assert student_layer_ids(6, "every_other") == [1, 3, 5]
    assert student_layer_ids(12, 4) == [2, 5, 8, 11]
    assert student_layer_ids(4, [0, 3]) == [0, 3]


@pytest.mark.parametrize("kind", ["logits", "hidden_cls", "hidden_all_narrow", "tinybert", "minilm_narrow"])
def test_each_distillation_loss_decreases(tokenizer, kind):
    from methods.kd_losses import DistillLoss

    teacher = tiny_bert()
    if kind.endswith("narrow"):  # a narrower random student: a learned projection for the hidden loss
        student = tiny_bert(seed=1, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    else:  # another random 2-layer student (a copy of teacher layers starts too close to move measurably)
        student = tiny_bert(seed=1, num_hidden_layers=2)
    options = {
        "logits": dict(alpha=1.0),
        "hidden_cls": dict(alpha=0.0, beta=1.0, hidden_target="cls"),
        "hidden_all_narrow": dict(alpha=0.0, beta=1.0, hidden_target="all"),
        "tinybert": dict(alpha=0.0, gamma=1.0, attention_loss="tinybert"),
        "minilm_narrow": dict(alpha=0.0, gamma=1.0, attention_loss="minilm"),
    }[kind]
    loss = DistillLoss(student=student, teacher=teacher, **options)
    term = {"logits": "soft", "tinybert": "attention", "minilm_narrow": "attention"}.get(kind, "hidden")
    assert (loss.projection is not None) == (kind == "hidden_all_narrow")
    student.eval()  # no dropout: a deterministic descent check
    params = list(student.parameters()) + list(loss.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)
    inputs = batch(tokenizer)

    def step():
        terms, _ = loss.components(student, teacher, inputs)
        optimizer.zero_grad()
        terms[term].backward()
        optimizer.step()
        return float(terms[term])

    first, last = descends(step)
    assert last < 0.8 * first, (kind, first, last)


def test_kd_logits_trains_once_and_is_cached(tokenizer, cache_dir):
    from methods.distillation import KdLogits, KdLogitsConfig
    from methods.anatomy import encoder_layers

    teacher = tiny_bert()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ctx = make_ctx(tokenizer, cache_dir, teacher)
    config = KdLogitsConfig(train_samples=48, epochs=1, learning_rate=1e-3)
    method = KdLogits(config)
    student = method.apply(teacher, ctx)
    assert len(encoder_layers(student)) == 2 and method.info["kept_layers"] == [1, 3]
    training = method.info["training"]
    assert training["cache_hit"] is False and training["train_samples"] == 48 and training["wall_time_s"] > 0
    assert training["energy"]["duration_s"] > 0 and training["losses"]["steps"] == 3
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())  # the teacher is untouched
    assert all(p.requires_grad for p in teacher.parameters())
    again = KdLogits(config)
    reloaded = again.apply(teacher, ctx)
    assert again.info["training"]["cache_hit"] is True
    # the budget the run spent (48 examples, batch 16: 3 steps), and a cache hit reports the run that made it
    assert method.describe()["training_budget"] == again.describe()["training_budget"]
    assert {k: method.describe()["training_budget"][k] for k in ("optimizer_steps", "examples_seen", "runs")} == {
        "optimizer_steps": 3, "examples_seen": 48, "runs": 1}
    for key, value in student.state_dict().items():
        assert torch.allclose(value, reloaded.state_dict()[key]), key
    other = KdLogits(KdLogitsConfig(train_samples=48, epochs=1, learning_rate=1e-3, temperature=4.0))
    other.apply(teacher, ctx)
    assert other.info["training"]["cache_hit"] is False  # another config trains again
    assert "training" in method.describe()


# ----------------------------------------------------------------------------------------------
# Movement and gradual magnitude pruning
# ----------------------------------------------------------------------------------------------


def test_cubic_schedule():
    from methods.movement import cubic_sparsity

    values = [cubic_sparsity(step, 100, 0.9, 0.1, 0.2) for step in range(100)]
    assert values[:10] == [0.0] * 10 and all(v == 0.9 for v in values[80:])
    assert all(a <= b for a, b in zip(values, values[1:]))  # monotone
    assert values[45] == pytest.approx(0.9 * (1 - 0.5**3))  # halfway through the pruning phase


@pytest.mark.parametrize("mode", ["movement", "magnitude"])
def test_masks_reach_the_scheduled_sparsity_and_scores_move(tokenizer, mode):
    from methods.movement import set_sparsity, sparsity_report, unwrap_linears, wrap_linears

    model = tiny_bert().train()
    wrapped = wrap_linears(model, mode)
    assert len(wrapped) == 4 * 6
    params = [p for n, p in model.named_parameters() if "mask_scores" not in n]
    groups = [{"params": params, "lr": 1e-3}]
    if mode == "movement":
        groups.append({"params": [m.mask_scores for m in wrapped.values()], "lr": 1e-2})
    optimizer = torch.optim.Adam(groups)
    inputs = batch(tokenizer, n=32)
    set_sparsity(wrapped, 0.0)

    step = supervised_step(model, optimizer, inputs)

    first, last = descends(step, 4)  # warmup at sparsity 0: movement scores accumulate -W * grad
    if mode == "movement":
        scores = next(iter(wrapped.values())).mask_scores
        assert scores.abs().sum() > 0
    for target in (0.3, 0.6):
        set_sparsity(wrapped, target)
        for module in wrapped.values():
            mask = module.current_mask()
            assert float(1 - mask.mean()) == pytest.approx(target, abs=0.01)
        first, last = descends(step, 6)
        assert last < first  # training recovers under the mask
    unwrap_linears(model, wrapped, 0.6)
    report = sparsity_report(model, wrapped.keys())
    assert report["min_matrix_sparsity"] == pytest.approx(0.6, abs=1e-3) and report["max_matrix_sparsity"] == pytest.approx(0.6, abs=1e-3)


def test_movement_prune_end_to_end(tokenizer, cache_dir):
    from methods.movement import MovementPrune, MovementPruneConfig

    teacher = tiny_bert()
    ctx = make_ctx(tokenizer, cache_dir, teacher)
    method = MovementPrune(MovementPruneConfig(train_samples=64, epochs=2, sparsity=0.7, initial_warmup=0.25, final_warmup=0.25, start="finetuned"))
    pruned = method.apply(teacher, ctx)
    info = method.info
    assert method.sparse and info["sparsity"] == pytest.approx(0.7, abs=1e-3) and info["min_matrix_sparsity"] == pytest.approx(0.7, abs=1e-3)
    assert info["schedule"]["steps"] == 8 and info["schedule"]["first"] == [0.0] and info["schedule"]["last"] == [0.7]
    assert info["distilled"] and "soft" in info["losses"]["last"]
    weight = pruned.bert.encoder.layer[0].intermediate.dense.weight
    assert type(pruned.bert.encoder.layer[0].intermediate.dense) is torch.nn.Linear
    assert float((weight == 0).float().mean()) == pytest.approx(0.7, abs=1e-3)
    assert float((pruned.bert.embeddings.word_embeddings.weight == 0).float().mean()) < 0.01  # embeddings untouched


def test_movement_prune_fine_prunes_the_pretrained_model_by_default(tokenizer, cache_dir):
    """Sanh et al. fine-prune from the pre-trained checkpoint; the fine-tuned model is only the teacher."""
    from methods.movement import MovementPrune, MovementPruneConfig

    teacher, pretrained = tiny_bert(seed=0), tiny_bert(seed=11)
    ctx = make_ctx(tokenizer, cache_dir, teacher, pretrained=lambda: copy.deepcopy(pretrained))
    method = MovementPrune(MovementPruneConfig(train_samples=64, epochs=1, sparsity=0.9, initial_warmup=0.25, final_warmup=0.25))
    pruned = method.apply(teacher, ctx)
    assert method.info["started_from"] == "pre-trained checkpoint" and method.info["distilled"]
    embedding = pruned.bert.embeddings.word_embeddings.weight  # not pruned: shows where training started
    distance_to = {name: float((embedding - m.bert.embeddings.word_embeddings.weight).abs().mean()) for name, m in
                   (("pretrained", pretrained), ("teacher", teacher))}
    assert distance_to["pretrained"] < 0.1 * distance_to["teacher"]
    assert float((pruned.bert.encoder.layer[0].intermediate.dense.weight == 0).float().mean()) == pytest.approx(0.9, abs=1e-3)
    without = make_ctx(tokenizer, cache_dir, teacher)
    with pytest.raises(ConfigError, match="method.start"):
        MovementPrune(MovementPruneConfig(train_samples=64, epochs=1)).apply(tiny_bert(), without)


def test_a_recovery_fine_tune_records_its_budget(tokenizer, cache_dir):
    from harness.finetune import train
    from methods.pruning import Magnitude, MagnitudeConfig

    model = tiny_bert()
    ctx = make_ctx(tokenizer, cache_dir, teacher=model)
    ctx.finetune = lambda student, epochs, **overrides: train(student, tokenizer, ctx.task.train, ctx.task.config.finetune, 0,
                                                              "cpu", epochs=epochs, **overrides)
    method = Magnitude(MagnitudeConfig(sparsity=0.5))  # recovers by default: 64 rows, batch 16, 1 epoch
    method.apply(model, ctx)
    budget = method.describe()["training_budget"]
    assert (budget["optimizer_steps"], budget["examples_seen"], budget["runs"]) == (4, 64, 1) and budget["wall_s"] >= 0
    one_shot = Magnitude(MagnitudeConfig(sparsity=0.5, recover_epochs=0))
    one_shot.apply(tiny_bert(), ctx)
    assert one_shot.describe()["training_budget"] is None


def test_low_rank_recovers_by_distilling_from_the_unfactorised_model(tokenizer, cache_dir):
    """Noach & Goldberg: SVD, then feature distillation from the original (here logits + every layer's states)."""
    from harness.finetune import train
    from methods.decomposition import LowRank, LowRankConfig, LowRankLinear
    from methods.kd_trainer import distillation_trainer_class

    model = tiny_bert()
    original = copy.deepcopy(model)
    ctx = make_ctx(tokenizer, cache_dir, teacher=model)
    calls = []

    def finetune(student, epochs, **overrides):
        calls.append(overrides)
        return train(student, tokenizer, ctx.task.train, ctx.task.config.finetune, 0, "cpu", epochs=epochs, **overrides)

    ctx.finetune = finetune
    method = LowRank(LowRankConfig(rank=8))
    factorised = method.apply(model, ctx)
    assert len(calls) == 1 and calls[0]["trainer_class"] is distillation_trainer_class()
    teacher, distill = calls[0]["teacher"], calls[0]["distill"]
    assert not any(isinstance(m, LowRankLinear) for m in teacher.modules())  # the un-factorised model
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), original.state_dict().values()))
    assert distill.alpha > 0 and distill.beta > 0 and distill.hidden_target == "all"
    assert isinstance(factorised.bert.encoder.layer[0].intermediate.dense, LowRankLinear)
    assert method.info["recovered_epochs"] == 1.0 and "distillation" in method.info["recovery"]


# ----------------------------------------------------------------------------------------------
# QAT
# ----------------------------------------------------------------------------------------------


def test_fake_quant_matches_the_int8_kernel():
    import warnings

    from methods.qat import FbgemmDynamicFakeQuantLinear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(8, 10, 64)
    fake = FbgemmDynamicFakeQuantLinear(linear)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        real = quantize_dynamic(torch.nn.Sequential(copy.deepcopy(linear)), {"0": default_dynamic_qconfig}, dtype=torch.qint8)(x)
    exact = linear(x)
    assert (fake - real).abs().max() < 0.25 * (exact - real).abs().max()  # simulates the kernel, not fp32


def test_qat_loss_decreases_under_fake_quant(tokenizer):
    from methods.qat import fake_quant_modules, prepare

    model = tiny_bert().train()
    prepare(model, "torch_ao")
    assert fake_quant_modules(model) == 4 * 6 + 1  # encoder + pooler; the classifier stays float
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = batch(tokenizer, n=32)

    step = supervised_step(model, optimizer, inputs)

    first, last = descends(step, 8)
    assert last < first


def test_qat_int8_converts_to_int8_and_keeps_sparsity(tokenizer, cache_dir, tmp_path):
    from methods.artifacts import load_artifact
    from methods.qat import QatInt8, QatInt8Config

    teacher = tiny_bert()
    model = copy.deepcopy(teacher)
    with torch.no_grad():  # a pruned model, as after gradual_magnitude
        weight = model.bert.encoder.layer[1].output.dense.weight
        weight[weight.abs() < weight.abs().median()] = 0
    ctx = make_ctx(tokenizer, cache_dir, teacher)
    method = QatInt8(QatInt8Config(train_samples=32, epochs=1, learning_rate=1e-3, distill=True))
    quantized = method.apply(model, ctx)
    linear = quantized.bert.encoder.layer[1].output.dense
    assert type(linear).__name__ == "Linear" and linear._get_name() == "DynamicQuantizedLinear"
    assert linear.weight().dtype == torch.qint8
    assert float((linear.weight().dequantize() == 0).float().mean()) >= 0.49  # the mask was locked
    assert type(quantized.classifier) is torch.nn.Linear
    assert method.info["backend"] == "torch_ao" and method.info["training"]["locked_sparse_matrices"] == 1 and method.sparse
    method.save(quantized, str(tmp_path / "artifact"))
    reloaded = load_artifact(str(tmp_path / "artifact"))
    inputs = {k: v for k, v in batch(tokenizer).items() if k != "labels"}
    with torch.inference_mode():
        assert torch.allclose(reloaded(**inputs).logits, quantized(**inputs).logits, atol=1e-5)


def test_qat_torchao_backend_converts_to_int8_tensors():
    from methods.qat import fake_quant_modules, prepare, remove_fake_quant
    from methods.quantization import quantize_torchao

    model = tiny_bert()
    prepare(model, "torchao")
    assert fake_quant_modules(model) == 25
    remove_fake_quant(model, "torchao")
    assert fake_quant_modules(model) == 0 and type(model.bert.encoder.layer[0].attention.self.query) is torch.nn.Linear
    quantize_torchao(model, "int8_dynamic")
    weight = model.bert.encoder.layer[0].attention.self.query.weight
    assert type(weight).__name__ == "Int8Tensor" and weight.qdata.dtype == torch.int8


# ----------------------------------------------------------------------------------------------
# Early exit
# ----------------------------------------------------------------------------------------------


def _early(model, **kwargs):
    from methods.early_exit import EarlyExitModel, RampSet

    torch.manual_seed(0)
    return EarlyExitModel(model, RampSet.from_model(model).eval(), **kwargs).eval()


def test_early_exit_extremes(tokenizer):
    model = tiny_bert()
    inputs = {k: v for k, v in batch(tokenizer).items() if k != "labels"}
    with torch.inference_mode():
        plain = model(**inputs).logits
        never = _early(model, mode="entropy", threshold=0.0)
        out = never(**inputs).logits
        assert torch.equal(out, plain)  # threshold 0: all layers, the plain model bit for bit
        assert never.last_exit_layers.tolist() == [4] * 16
        always = _early(model, mode="entropy", threshold=math.inf)
        always(**inputs)
        assert always.last_exit_layers.tolist() == [1] * 16
        impatient = _early(model, mode="patience", patience=0)
        impatient(**inputs)
        assert impatient.last_exit_layers.tolist() == [1] * 16
        patient = _early(model, mode="patience", patience=10)
        assert torch.equal(patient(**inputs).logits, plain) and patient.last_exit_layers.tolist() == [4] * 16


def test_early_exit_is_per_sample_and_counts_fewer_flops(tokenizer):
    from harness.measure import count_flops

    model = tiny_bert()
    inputs = {k: v for k, v in batch(tokenizer, n=12).items() if k != "labels"}
    early = _early(model, mode="entropy", threshold=0.0)
    with torch.inference_mode():  # a threshold between the samples' layer-1 entropies: some exit, some go on
        hidden = model.bert(**inputs, output_hidden_states=True).hidden_states[1][:, 0]
        from methods.early_exit import _entropy

        entropies = _entropy(early.ramps.ramps[0](hidden))
    early.threshold = float(entropies.median())
    with torch.inference_mode():
        logits = early(**inputs).logits
        layers = early.last_exit_layers.clone()
        assert 0 < int((layers == 1).sum()) < 12
        for i in range(12):  # each sample alone gives the same exit and (up to padding) the same logits
            single = {k: v[i : i + 1, : int(inputs["attention_mask"][i].sum())] for k, v in inputs.items()}
            one = early(**single).logits
            assert early.last_exit_layers.item() == layers[i]
            assert torch.allclose(one[0], logits[i], atol=1e-4)
    assert count_flops(early, inputs)["flops_per_sample"] < count_flops(model, inputs)["flops_per_sample"]


def test_early_exit_method_trains_ramps_and_sweeps_without_retraining(tokenizer, cache_dir, tmp_path):
    from methods.artifacts import load_artifact
    from methods.early_exit import EarlyExit, EarlyExitConfig, RampSet, RampTrainingModel

    model = tiny_bert()
    ramps = RampSet.from_model(model)
    trainer_view = RampTrainingModel(copy.deepcopy(model), ramps).train()
    optimizer = torch.optim.Adam(ramps.parameters(), lr=3e-3)
    inputs = batch(tokenizer, n=32)

    step = supervised_step(trainer_view, optimizer, inputs)

    first, last = descends(step, 8)
    assert last < first and not trainer_view.backbone.training

    ctx = make_ctx(tokenizer, cache_dir, model)
    method = EarlyExit(EarlyExitConfig(train_samples=32, epochs=1, threshold=0.69, stats_samples=40))
    early = method.apply(model, ctx)
    info = method.info
    assert info["training"]["cache_hit"] is False and info["ramps"] == 3
    assert 1 <= info["avg_exit_layer"] <= 4 and sum(info["exit_layer_histogram"].values()) == 40
    assert info["flops_per_sample_estimate"] > 0 and info["flops_ratio"] is not None
    sweep = EarlyExit(EarlyExitConfig(train_samples=32, epochs=1, mode="patience", patience=1, stats_samples=40))
    sweep.apply(model, ctx)
    assert sweep.info["training"]["cache_hit"] is True  # another threshold / mode reuses the ramps
    method.save(early, str(tmp_path / "ee"))
    reloaded = load_artifact(str(tmp_path / "ee"))
    plain_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.inference_mode():
        assert torch.allclose(reloaded(**plain_inputs).logits, early(**plain_inputs).logits, atol=1e-5)


def test_early_exit_on_a_regression_uses_pabee_patience_with_a_tolerance(tokenizer, cache_dir):
    import dataclasses

    from harness.errors import UnsupportedError
    from methods.early_exit import EarlyExit, EarlyExitConfig

    model = tiny_bert(num_labels=1)
    inputs = {k: v for k, v in batch(tokenizer).items() if k != "labels"}
    with torch.inference_mode():
        plain = model(**inputs).logits
        exact = _early(model, mode="patience", patience=1, regression_threshold=0.0)  # no two layers agree exactly
        assert torch.equal(exact(**inputs).logits, plain) and exact.last_exit_layers.tolist() == [4] * 16
        lenient = _early(model, mode="patience", patience=1, regression_threshold=math.inf)  # every step "agrees"
        lenient(**inputs)
        assert lenient.last_exit_layers.tolist() == [2] * 16

    ctx = make_ctx(tokenizer, cache_dir, model)
    regression = TaskConfig(name="stsb", num_labels=1, is_regression=True, finetune=ctx.task.config.finetune)
    ctx = dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, config=regression))
    with pytest.raises(UnsupportedError, match="mode=entropy needs classes.*method.mode=patience"):
        EarlyExit(EarlyExitConfig(train_samples=32, epochs=1)).apply(model, ctx)
    method = EarlyExit(EarlyExitConfig(train_samples=32, epochs=1, mode="patience", patience=1, regression_threshold=0.05, stats_samples=40))
    early = method.apply(model, ctx)
    assert method.info["regression_threshold"] == 0.05 and method.info["max_entropy"] is None
    assert 2 <= method.info["avg_exit_layer"] <= 4 and sum(method.info["exit_layer_histogram"].values()) == 40
    with torch.inference_mode():
        assert early(**inputs).logits.shape == (16, 1)


def test_movement_magnitude_score_init_starts_as_magnitude_pruning():
    from methods.movement import set_sparsity, threshold_mask, wrap_linears

    model = tiny_bert()
    wrapped = wrap_linears(model, "movement", score_init="magnitude")
    set_sparsity(wrapped, 0.5)
    module = next(iter(wrapped.values()))
    assert torch.equal(module.current_mask(), threshold_mask(module.weight.detach().abs(), 0.5))


def test_student_choices(tokenizer, cache_dir, tmp_path):
    from harness.errors import ConfigError
    from methods.distillation import KdHiddenConfig
    from methods.students import build_student

    teacher = tiny_bert()
    ctx = make_ctx(tokenizer, cache_dir, teacher)
    narrow, description = build_student(KdHiddenConfig(student="narrow", student_config={"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64}), teacher, ctx)
    assert narrow.config.hidden_size == 32 and len(narrow.bert.encoder.layer) == 2 and not description["embeddings_from_teacher"]
    tiny_bert(seed=5, num_hidden_layers=2).save_pretrained(tmp_path / "student")
    pretrained, description = build_student(KdHiddenConfig(student="checkpoint", student_path=str(tmp_path / "student")), teacher, ctx)
    assert len(pretrained.bert.encoder.layer) == 2 and description["student"] == "checkpoint"
    tiny_bert(seed=5, vocab_size=150).save_pretrained(tmp_path / "other_vocab")
    with pytest.raises(ConfigError, match="vocabulary"):
        build_student(KdHiddenConfig(student="checkpoint", student_path=str(tmp_path / "other_vocab")), teacher, ctx)
    with pytest.raises(ConfigError, match="student_config"):
        KdHiddenConfig(student="narrow")


# ----------------------------------------------------------------------------------------------
# The shared fine-tuning loop
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("freeze", [True, False])
def test_train_freezes_word_embeddings_only_while_training(tokenizer, freeze):
    import datasets

    from harness.finetune import train

    model = tiny_bert().train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    finetune = FinetuneConfig(epochs=1, learning_rate=1e-2, batch_size=16, warmup_ratio=0.0, freeze_word_embeddings=freeze)
    train(model, tokenizer, datasets.Dataset.from_dict(synthetic_rows(64, seed=0)), finetune, seed=0, device="cpu")
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    word_embeddings = "bert.embeddings.word_embeddings.weight"
    assert (word_embeddings in changed) is not freeze
    assert {"bert.encoder.layer.0.attention.self.query.weight", "classifier.weight", "bert.embeddings.position_embeddings.weight"} <= changed
    assert all(p.requires_grad for p in model.parameters()), "a later method must find every weight trainable again"


def test_finetune_optimizer_is_validated():
    from harness.errors import ConfigError

    assert FinetuneConfig().optimizer == "adamw_torch_fused"
    with pytest.raises(ConfigError, match="task.finetune.optimizer"):
        FinetuneConfig(optimizer="sgd")


@pytest.mark.parametrize("precision, matmul_dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_train_runs_its_forward_in_the_configured_precision_and_keeps_fp32_weights(tokenizer, precision, matmul_dtype):
    import datasets

    from harness.finetune import train

    model = tiny_bert().train()
    seen = set()
    hook = model.bert.encoder.layer[0].attention.self.query.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    finetune = FinetuneConfig(epochs=1, learning_rate=1e-3, batch_size=16, warmup_ratio=0.0, precision=precision)
    trained = train(model, tokenizer, datasets.Dataset.from_dict(synthetic_rows(32, seed=0)), finetune, seed=0, device="cpu")
    assert seen == {matmul_dtype}
    assert {p.dtype for p in model.parameters()} == {torch.float32}, "autocast keeps the master weights in fp32"
    seen.clear()
    with torch.inference_mode():  # what is measured after training runs in fp32 whatever the training precision
        trained(**{k: v for k, v in batch(tokenizer).items() if k != "labels"})
    hook.remove()
    assert seen == {torch.float32}, "the training autocast must not stay on the model's forward"


def test_finetune_precision_is_validated_and_hashed_only_when_not_fp32():
    from harness.config import finetune_identity
    from harness.errors import ConfigError

    assert "precision" not in finetune_identity(FinetuneConfig()), "keys made before the field existed stay valid"
    assert finetune_identity(FinetuneConfig(precision="bf16"))["precision"] == "bf16"
    with pytest.raises(ConfigError, match="task.finetune.precision: must be one of fp32, bf16"):
        FinetuneConfig(precision="fp16")
