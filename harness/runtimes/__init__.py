"""Inference runtimes (the `runtime` config group): what executes the artifact that is scored and timed.

pytorch runs the method's model as it is (the runner's own path, with hardware.compile). onnxruntime
and openvino convert it first (base.Runtime.prepare): ONNX export, the runtime's graph passes and, for
int8 methods, the runtime's own quantizer; the converted artifact is then what accuracy, latency,
memory and energy run on and what the size counts. Runtime modules import their packages lazily, so
the harness imports without the `runtimes` extra.
"""

from __future__ import annotations

import importlib
from typing import Optional

from harness.config import DEFAULT_RUNTIME, RuntimeConfig

RUNTIME_CLASSES = {  # runtime.name -> "module:class", imported only when that runtime runs
    "onnxruntime": "harness.runtimes.onnxruntime_cpu:OnnxRuntime",
    "openvino": "harness.runtimes.openvino_cpu:OpenVinoRuntime",
}


def unsupported_reason(method, runtime: RuntimeConfig, hardware) -> Optional[str]:
    """Why this method x runtime x hardware cannot run (recorded as `unsupported`), or None."""
    if runtime.name == DEFAULT_RUNTIME:
        return None
    if hardware.device != "cpu":
        return f"unsupported on runtime {runtime.name}: this harness runs it on the CPU only (hardware.device={hardware.device})"
    if hardware.compile != "eager":
        return f"unsupported on runtime {runtime.name}: hardware.compile={hardware.compile} is a PyTorch setting; use hardware.compile=eager"
    if hardware.dtype != "float32":
        return f"unsupported on runtime {runtime.name}: it runs the float32 export; hardware.dtype={hardware.dtype} is a PyTorch cast"
    return method.runtime_unsupported_reason(runtime.name)


def build_runtime(config: RuntimeConfig, threads: dict):
    """The Runtime object for a non-default runtime; `threads` is what harness.measure.configure_threads applied."""
    module, _, name = RUNTIME_CLASSES[config.name].partition(":")
    return getattr(importlib.import_module(module), name)(config, threads)
