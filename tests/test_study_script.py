"""bench/study.sh, the full-scale study's commands, stays in step with the methods that exist: every
registered method is run by one of its parts, and its post-training part holds no training method."""

import re
from pathlib import Path


from methods.base import build_method_config, method_class
from methods import registry

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (ROOT / "bench" / "study.sh").read_text()


def _methods_named(text: str) -> set:
    """Every value of a `method=a,b,c` / `method="$POST_METHODS"` argument, variables expanded."""
    variables = dict(re.findall(r"^([A-Z_]+)=([\w,]+)$", text, flags=re.M))
    names = set()
    for value in re.findall(r"\bmethod=\"?([$\w,]+)\"?", text):
        value = variables.get(value.lstrip("$"), value)
        names.update(v for v in value.split(",") if v)
    return names


def test_every_method_is_in_the_study():
    shipped = set(registry.names())  # every registered method and recipe (methods.registry)
    named = _methods_named(SCRIPT)
    assert named <= shipped, f"the study runs methods that do not exist: {sorted(named - shipped)}"
    assert shipped <= named, f"methods the study never runs: {sorted(shipped - named)}"


def test_post_training_part_trains_nothing():
    post = re.search(r"^POST_METHODS=([\w,]+)$", SCRIPT, flags=re.M).group(1).split(",")
    assert "baseline" in post
    for name in post:
        raw = registry.preset_values(name)
        assert method_class(raw["_target_"]).needs_for(build_method_config(raw)) != "training", name
