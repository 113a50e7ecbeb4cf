"""Dependencies: pyproject.toml states compatible ranges, constraints.txt the exact tested set, and
`make install` installs from the latter (keeping the torch CPU-wheel pin)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements() -> list[Requirement]:
    extras = project()["optional-dependencies"]
    return [Requirement(text) for text in project()["dependencies"] + extras["dev"] + extras["cluster"]]


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def test_pyproject_states_ranges_not_exact_pins():
    for requirement in requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert "==" not in operators and operators, f"{requirement}: a library states a compatible range, not an exact pin"


def test_the_locked_set_satisfies_every_range():
    pins = constraints()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} has no exact version in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"constraints.txt {name}=={pins[name]} is outside {requirement}"


def test_an_installed_torch_build_is_kept():
    """A CUDA build (e.g. 2.13.0+cu128) or this CPU wheel satisfies the range, so pip never swaps it."""
    (torch,) = [r for r in requirements() if canonicalize_name(r.name) == "torch"]
    for build in (metadata.version("torch"), "2.13.0+cu128", "2.6.0+cu124"):
        assert torch.specifier.contains(Version(build)), build


def test_make_install_uses_the_locked_set_and_the_torch_pin():
    makefile = (ROOT / "Makefile").read_text()
    # one install command (uv's, or pip's when uv cannot be had) runs both steps
    assert re.search(r"\$\$install -c constraints\.txt -e \"\.\[dev,runtimes\]\"", makefile)
    assert re.search(r"uv pip install .*--python \$\(1\)", makefile) and 'install="$(1) -m pip install -q"' in makefile
    assert "$(call installer,$(BIN)/python)" in makefile  # the project's venv, and package-check's fresh one
    pins = set(re.findall(r"\$\$install torch==(\S+)", makefile))
    assert len(pins) == 1 and Version(pins.pop()) == constraints()["torch"]
