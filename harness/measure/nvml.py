"""Thin, failure-tolerant access to NVML for the torch device in use.

Every function returns None (never raises) when NVML is missing, the driver is absent,
or the query is not supported, so CPU-only machines need no special casing.
"""

from __future__ import annotations

import os
from typing import Any, Optional

# torch enumerates GPUs fastest-first by default, NVML by PCI bus id; pinning torch to PCI
# order keeps "device 0" the same physical GPU for both. Only effective before CUDA init.
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

_INIT_STATE: dict[str, Any] = {"done": False, "error": None}


def _pynvml():
    import pynvml  # provided by nvidia-ml-py

    if not _INIT_STATE["done"]:
        _INIT_STATE["done"] = True
        try:
            pynvml.nvmlInit()
        except Exception as err:  # no driver, no GPU, container without NVML
            _INIT_STATE["error"] = f"{type(err).__name__}: {err}"
    if _INIT_STATE["error"]:
        raise RuntimeError(_INIT_STATE["error"])
    return pynvml


def nvml_error() -> Optional[str]:
    """Why NVML is unusable here, or None when it works."""
    try:
        _pynvml()
        return None
    except Exception as err:
        return str(err) or type(err).__name__


def handle_for_torch_device(index: Optional[int] = None):
    """NVML handle of the GPU torch calls `index` (current device by default).

    Matching by UUID is robust to CUDA_VISIBLE_DEVICES remapping; falls back to the
    index, which agrees with NVML only under CUDA_DEVICE_ORDER=PCI_BUS_ID and no remapping.
    """
    try:
        import torch

        nvml = _pynvml()
        if index is None:
            index = torch.cuda.current_device()
        try:
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception:
            return nvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None


def total_energy_mj(handle) -> Optional[int]:
    """Energy counter since driver load, in millijoules (Volta and newer)."""
    try:
        return int(_pynvml().nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:
        return None


def process_used_bytes(handle, pid: Optional[int] = None) -> Optional[int]:
    """GPU memory used by `pid` on this device, None when NVML cannot attribute it
    (e.g. inside a PID namespace, where NVML reports host PIDs)."""
    try:
        nvml = _pynvml()
        pid = os.getpid() if pid is None else pid
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory)
        return None
    except Exception:
        return None


def device_used_bytes(handle) -> Optional[int]:
    try:
        return int(_pynvml().nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:
        return None


def driver_version() -> Optional[str]:
    try:
        version = _pynvml().nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return None
