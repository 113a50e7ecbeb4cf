import pytest
import torch
from methods_helpers import eval_batch, logits, tiny_model

from methods.artifacts import ARTIFACT_FILE, load_artifact, write_marker
from methods.base import Baseline, MethodConfig


def test_plain_save_pretrained_directory_loads(tmp_path):
    model = tiny_model()
    Baseline(MethodConfig()).save(model, str(tmp_path))  # base.Method.save writes no marker
    assert not (tmp_path / ARTIFACT_FILE).exists()
    assert torch.equal(logits(load_artifact(tmp_path), eval_batch()), logits(model, eval_batch()))


def test_other_families_formats_dispatch_to_their_loader(tmp_path):
    tiny_model().config.save_pretrained(tmp_path)
    write_marker(str(tmp_path), format="test_format", loader="methods_helpers.load_test_format")
    assert load_artifact(tmp_path) == ("loaded", str(tmp_path))


def test_unknown_format_names_the_missing_loader(tmp_path):
    tiny_model().config.save_pretrained(tmp_path)
    write_marker(str(tmp_path), format="mystery")
    with pytest.raises(ValueError, match="no loader methods.mystery.load_mystery"):
        load_artifact(tmp_path)
