"""Every conf/method YAML builds, and its defaults are the dataclass defaults (one source of truth)."""

import json
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from methods.base import NEEDS, build_method, build_method_config, method_class

METHOD_DIR = Path(__file__).resolve().parents[1] / "conf" / "method"
EXPECTED = {
    "baseline", "dynamic_int8", "static_int8", "fp16", "bf16", "weight_only_int8", "int4_weight_only", "fp8",
    "magnitude", "sparse_2of4", "head_prune", "ffn_prune", "layer_drop", "low_rank", "vocab_prune", "pipeline",
}
YAMLS = [METHOD_DIR / f"{name}.yaml" for name in sorted(EXPECTED)]  # other families test their own


def test_all_methods_have_a_yaml():
    assert all(path.is_file() for path in YAMLS)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_yaml_matches_its_config_class(path):
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert raw["name"] == path.stem
    cls = method_class(raw["_target_"])
    defaults = {}
    for f in fields(cls.config_class):
        defaults[f.name] = f.default if f.default is not MISSING else f.default_factory()
    assert set(raw) == set(defaults), f"{path.name} fields differ from {cls.config_class.__name__}"
    for key, value in raw.items():
        assert value == defaults[key], f"{path.name}: {key}={value!r} but the dataclass default is {defaults[key]!r}"
    method = build_method(build_method_config(raw))
    assert method.needs in NEEDS and set(method.devices) <= {"cpu", "cuda"}
    json.dumps(method.describe())  # the record must serialise
