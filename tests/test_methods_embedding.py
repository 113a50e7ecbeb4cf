import pytest
import torch
from methods_helpers import HIDDEN, VOCAB, count_params, eval_batch, fake_ctx, logits, saved_and_reloaded, tiny_model

from harness.errors import ConfigError
from methods.base import build_method, build_method_config
from methods.embedding import RemappedEmbedding, token_counts

SPECIAL = {0, 1, 2, 3, 4}
UNK = 1


def vocab_prune(**params):
    return build_method(build_method_config({"_target_": "methods.embedding.VocabPrune", "name": "vocab_prune", **params}))


def train_rows():
    # ids 10..39 (each twice) and 50 once; 40..49 and 51.. never appear
    return [list(range(10, 40)), list(range(10, 40)), [50, 0, 0]]


def test_kept_vocab_params_and_identical_outputs_on_kept_tokens():
    model = tiny_model()
    reference = tiny_model()
    before = count_params(model)
    method = vocab_prune()
    model = method.apply(model, fake_ctx(train_ids=train_rows()))
    kept = len(set(range(10, 40)) | {50} | SPECIAL)
    assert method.info["kept_vocab_size"] == kept == model.config.vocab_size
    assert isinstance(model.get_input_embeddings(), RemappedEmbedding)
    assert model.get_input_embeddings().weight.shape == (kept, HIDDEN)
    assert count_params(model) == before - (VOCAB - kept) * HIDDEN
    batch = eval_batch()
    batch["input_ids"] = torch.randint(10, 40, batch["input_ids"].shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(logits(model, batch), logits(reference, batch))


def test_unseen_ids_behave_like_unk():
    model = vocab_prune().apply(tiny_model(), fake_ctx(train_ids=train_rows()))
    reference = tiny_model()
    batch = eval_batch()
    batch["input_ids"][:, 3] = 45  # never seen in training, like most ids of the batch
    seen = torch.tensor(sorted(set(range(10, 40)) | {50} | SPECIAL))
    ids = batch["input_ids"]
    as_unk = {**batch, "input_ids": torch.where(torch.isin(ids, seen), ids, torch.full_like(ids, UNK))}
    assert (as_unk["input_ids"] == UNK).any()
    assert torch.equal(logits(model, batch), logits(reference, as_unk))


def test_min_count_drops_rare_tokens():
    method = vocab_prune(min_count=2)
    method.apply(tiny_model(), fake_ctx(train_ids=train_rows()))
    assert method.info["kept_vocab_size"] == len(set(range(10, 40)) | SPECIAL)  # 50 appeared once


def test_token_counts_accepts_tensors_and_lists():
    assert token_counts(torch.tensor([[1, 1, 3]]), 5).tolist() == [0, 2, 0, 1, 0]
    assert token_counts([[1, 1], [3]], 5).tolist() == [0, 2, 0, 1, 0]


def test_save_reload_identical(tmp_path):
    method = vocab_prune()
    model = method.apply(tiny_model(), fake_ctx(train_ids=train_rows()))
    reloaded = saved_and_reloaded(method, model, tmp_path)
    batch = eval_batch()  # includes unseen ids: the remap buffer must survive the round trip
    assert torch.equal(logits(reloaded, batch), logits(model, batch))
    assert torch.equal(reloaded.get_input_embeddings().old_to_new, model.get_input_embeddings().old_to_new)


def test_config_error():
    with pytest.raises(ConfigError) as err:
        vocab_prune(min_count=0)
    assert str(err.value) == "method.min_count: must be an integer >= 1, got 0"
