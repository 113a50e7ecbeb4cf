"""Post-training quantization and reduced-precision casts.

Only the Linear layers of the base model (encoder + pooler) are quantized; the task head
(classifier / qa_outputs) stays in float because its tiny, odd-shaped matmuls gain nothing and
some backends reject them.

int8 on CPU has three backends (`method.backend`), measured by bench/int8_backends.py:
    torch_ao  torch.ao.quantization.quantize_dynamic (deprecated in torch 2.x, still works); eager
              FBGEMM kernels, no compile needed
    torchao   torchao quantize_(Int8DynamicActivationInt8WeightConfig()); slower than fp32 in eager,
              needs torch.compile for Inductor's int8 GEMM
    pt2e      torch.export -> X86InductorQuantizer -> prepare/convert_pt2e -> torch.compile with
              Inductor freezing (int8 weights prepacked for oneDNN)
When `method.compile` is true the method compiles the model in place (`nn.Module.compile`) so the
record measures the backend as it is meant to run; info["compiled"] says so.

Artifacts: quantized weights cannot go through safetensors, so `save` writes config.json + a
torch.save'd state_dict (reloaded with weights_only=True onto a skeleton quantized the same way),
or a torch.export program for pt2e. Both formats are registered here (methods/artifacts.py).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from harness.errors import UnsupportedError, check
from harness.measure.environment import cpu_flags
from methods.anatomy import base_linear_names
from methods.artifacts import build_skeleton, load_weights, register_format, write_marker
from methods.base import ALL_RUNTIMES, Method, MethodConfig, RuntimeQuantization, check_calibration, cuda_capability_reason, Reference
from methods.registry import register_method

INT8_BACKENDS = ("auto", "torch_ao", "torchao", "pt2e")
# `auto` picks by the CPU. With int8 dot-product instructions (VNNI, AMX) pt2e + compile is the fastest
# and the most accurate backend of bench/int8_backends.py on both such machines (Xeon with AMX:
# 2.26x / 3.41x at batch 1 / 32, torchao + compile 1.94x / 1.99x; EPYC with AVX-512 VNNI: 2.35x / 3.15x,
# torchao 2.16x), at the smallest logit drift, so a dynamic_int8 cell gets pt2e there. Inside a
# pipeline it gets torchao: pt2e's exported graph is no longer an HF model, and what a pipeline does
# around its steps (early exit's ramps, the anatomy its other steps read) needs one.
# Without them (an AVX2-only EPYC) compiled int8 ran 9x SLOWER than fp32 eager after minutes of
# compiling (BENCHMARKS.md, "Recovered structural methods"), while torch.ao's eager FBGEMM kernels gave 1.4-1.5x.
DEFAULT_INT8_BACKEND = "auto"
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def resolve_int8_backend(requested: str, in_pipeline: bool = False) -> str:
    """The backend `requested` names, or for `auto` the one measured fastest on a CPU like this one
    (for a pipeline step, the fastest that keeps the model an HF model)."""
    if requested != "auto":
        return requested
    if cpu_flags() & set(INT8_DOT_PRODUCT_FLAGS):
        return "torchao" if in_pipeline else "pt2e"
    return "torch_ao"


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------


def _base_linear_filter(model):
    names = set(base_linear_names(model))
    return lambda module, fqn: isinstance(module, nn.Linear) and fqn in names


def quantize_torch_ao(model):
    """Legacy eager dynamic int8 (per-tensor int8 weights, per-batch uint8 activations), in place."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    spec = {name: default_dynamic_qconfig for name in base_linear_names(model)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(model, qconfig_spec=spec, dtype=torch.qint8, inplace=True)


def torchao_config(scheme: str, **options):
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    if scheme == "int8_dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if scheme == "int8_weight_only":
        return Int8WeightOnlyConfig()
    if scheme == "int4_weight_only":
        from torchao.quantization.quantize_.workflows import Int4PackingFormat

        # tile_packed_to_4d is the CUDA tinygemm layout; the default 'plain' needs extra kernels
        return Int4WeightOnlyConfig(group_size=options.get("group_size", 128), int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)
    if scheme == "fp8":
        from torchao.quantization import PerRow, PerTensor

        granularity = PerRow() if options.get("granularity", "row") == "row" else PerTensor()
        return Float8DynamicActivationFloat8WeightConfig(granularity=granularity)
    raise ValueError(f"unknown torchao scheme {scheme!r}")


def quantize_torchao(model, scheme: str, **options):
    from torchao.quantization import quantize_

    quantize_(model, torchao_config(scheme, **options), filter_fn=_base_linear_filter(model))
    return model


class ExportedModel(nn.Module):
    """A torch.export graph behind the usual `model(**inputs)` call, with the HF config attached.

    Extra keys (labels) are dropped; the graph only takes the inputs it was exported with.
    """

    def __init__(self, graph_module: nn.Module, config, input_names: list[str], architecture: str):
        super().__init__()
        self.graph_module = graph_module
        self.config = config
        self.input_names = list(input_names)
        self.architecture = architecture

    def train(self, mode: bool = True):
        # graphs from convert_pt2e refuse .train()/.eval(); they have no dropout or batch-norm state
        # left to switch, so the runner's model.eval() only flips the flag here
        self.training = mode
        return self

    def compile_frozen(self) -> None:
        # Inductor prepacks the int8 weights only with config.freezing on while it compiles; the
        # compile options route fails (onednn.qlinear_prepack has no fake kernel), and a global
        # switch would leak into other models, so every call runs inside the patch instead.
        # Kept out of the module tree so state_dict / save see the plain graph.
        self.__dict__["_compiled"] = torch.compile(self.graph_module)

    def forward(self, **inputs):
        missing = [k for k in self.input_names if k not in inputs]
        if missing:
            raise TypeError(f"exported model needs inputs {self.input_names}, missing {missing}")
        inputs = {k: inputs[k] for k in self.input_names}
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            return self.graph_module(**inputs)
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            return compiled(**inputs)


def _export_inputs(model, batch: dict) -> dict:
    """Model inputs only, at least 2x2 so torch.export keeps batch and sequence dims symbolic.

    Keys the forward does not name are dropped (DistilBERT swallows token_type_ids in **kwargs,
    which export cannot take), and so are the training targets.
    """
    named = set(inspect.signature(model.forward).parameters)
    targets = ("labels", "start_positions", "end_positions")
    inputs = {k: v for k, v in batch.items() if k in named and k not in targets}
    batch_size, seq_len = next(iter(inputs.values())).shape[:2]
    if batch_size < 2:
        inputs = {k: v.repeat(2, *([1] * (v.dim() - 1))) for k, v in inputs.items()}
    if seq_len < 2:
        inputs = {k: torch.cat([v, v], dim=1) for k, v in inputs.items()}
    return inputs


def _export(model, inputs: dict):
    dims = {k: {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO} for k in inputs}
    return torch.export.export(model, (), inputs, dynamic_shapes=dims, strict=False)


def quantize_pt2e(model, batches: list[dict], dynamic: bool) -> ExportedModel:
    """pt2e X86InductorQuantizer flow; `batches` calibrate static activation scales."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86  # also registers Inductor int8 passes
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model.eval()
    inputs = _export_inputs(model, batches[0])
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config(is_dynamic=dynamic))
    head = [n for n, _ in model.named_children() if n != model.base_model_prefix]
    for name in head:  # keep the task head in float
        quantizer.set_module_name_qconfig(name, None)
    prepared = prepare_pt2e(_export(model, inputs).module(), quantizer)
    with torch.no_grad():
        for batch in batches:
            prepared(**{k: batch[k] for k in inputs})
    converted = drop_unreferenced_tensors(convert_pt2e(prepared))
    return ExportedModel(converted, model.config, list(inputs), type(model).__name__)


def drop_unreferenced_tensors(graph_module):
    """Remove the parameters and buffers no graph node reads.

    convert_pt2e folds each quantized weight into a new int8 constant (`_frozen_paramN`) but leaves
    the fp32 weight it came from registered on the graph module: the state dict, the size figure and
    the saved program then carried an fp32 encoder plus its int8 copy (static int8 measured at 112 %
    of fp32 on SST-2). A tensor the graph never reads is dead weight, so it goes.
    """
    read = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    named = list(graph_module.named_parameters(remove_duplicate=False)) + list(graph_module.named_buffers(remove_duplicate=False))
    for name, _ in named:
        if name in read:
            continue
        owner_name, _, attribute = name.rpartition(".")
        owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
        owner._parameters.pop(attribute, None)
        owner._buffers.pop(attribute, None)
    graph_module.delete_all_unused_submodules()
    return graph_module


def compile_in_place(model):
    """Compile without changing the object the runner holds (config, parameters, save stay)."""
    if isinstance(model, ExportedModel):
        model.compile_frozen()
    else:
        model.compile()
    return model




# ----------------------------------------------------------------------------------------------
# Saving / reloading quantized artifacts
# ----------------------------------------------------------------------------------------------


def _save_config(model, directory: str, architecture: str) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    # save_pretrained would record the class; config.save_pretrained alone keeps whatever the
    # checkpoint said (sentence-transformers MiniLM says BertModel), which build_skeleton reads
    model.config.architectures = [architecture]
    model.config.save_pretrained(directory)


def _save_state(model, directory: str, quantization: dict) -> None:
    _save_config(model, directory, type(model).__name__)
    torch.save(model.state_dict(), Path(directory, "quantized_state.pt"))
    write_marker(directory, model.config, format="torch_state", quantization=quantization)


def quantize_skeleton(model, quantization: dict) -> None:
    """Quantize a float skeleton the way the artifact was, so its state_dict can be loaded.

    CUDA-only schemes (int4 tinygemm, fp8) are rebuilt on the device they were made on.
    """
    model.to(quantization.get("device", "cpu"))
    if quantization.get("dtype"):
        model.to(getattr(torch, quantization["dtype"]))
    if quantization["backend"] == "torch_ao":
        quantize_torch_ao(model)
    elif quantization["backend"] == "torchao":
        quantize_torchao(model, quantization["scheme"], **quantization.get("options", {}))
    else:
        raise ValueError(f"cannot rebuild quantization backend {quantization['backend']!r}")


def save_exported(model: ExportedModel, directory: str, example_inputs: dict, quantization: dict) -> None:
    _save_config(model, directory, model.architecture)
    torch.export.save(_export(model.graph_module, example_inputs), str(Path(directory, "model.pt2")))
    write_marker(directory, model.config, format="exported", quantization=quantization, input_names=model.input_names)


@register_format("torch_state")
def load_torch_state(directory: str, config, marker: dict):
    """Quantized tensors (torch.load, weights_only) onto a skeleton quantized the same way."""
    model = build_skeleton(config, tuple(marker.get("owners") or ()))
    quantize_skeleton(model, marker["quantization"])
    device = marker["quantization"].get("device", "cpu")
    load_weights(model, torch.load(Path(directory, "quantized_state.pt"), weights_only=True, map_location=device))
    return model.eval()


@register_format("exported")
def load_exported(directory: str, config, marker: dict) -> ExportedModel:
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401  registers the quantized ops' lowering

    program = torch.export.load(str(Path(directory, "model.pt2")))
    return ExportedModel(program.module(), config, marker["input_names"], config.architectures[0])


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------


class _QuantMethod(Method):
    """Quantization produces the final form of a model: pipelines fine-tune before it, never after."""

    category = "Quantization"
    freezes_weights = True
    pytorch_only_parameters = ("backend", "compile")
    quantization: dict = None  # how to rebuild the skeleton; set by apply

    def _finish(self, model):
        compiled = bool(getattr(self.config, "compile", False))
        if compiled:
            compile_in_place(model)
        self.info["compiled"] = compiled
        return model

    def save(self, model, directory: str) -> None:
        if isinstance(model, ExportedModel):
            save_exported(model, directory, self._example_inputs, self.quantization)
        else:
            _save_state(model, directory, self.quantization)


@dataclass
class DynamicInt8Config(MethodConfig):
    _target_: str = "methods.quantization.DynamicInt8"
    name: str = "dynamic_int8"
    backend: str = DEFAULT_INT8_BACKEND
    compile: bool = True  # torchao / pt2e only (incl. auto choosing torchao): their int8 kernels come from Inductor

    def __post_init__(self):
        super().__post_init__()
        check(self.backend in INT8_BACKENDS, "method.backend", f"unknown backend {self.backend!r}", INT8_BACKENDS)


@register_method("dynamic_int8")
class DynamicInt8(_QuantMethod):
    """int8 weights, activations quantized per batch/token at run time. No calibration."""

    config_class = DynamicInt8Config
    abbreviation = "int8"
    reference = Reference(
        paper='Zafrir et al. 2019, Q8BERT; PyTorch dynamic quantization of BERT',
        recipe='int8 weights, activations quantized per batch at run time; no calibration, no retraining',
        changes='post-training only (Q8BERT trains with fake quantization: see qat_int8); the task head stays fp32',
    )
    devices = ("cpu",)
    runtimes = ALL_RUNTIMES  # onnxruntime: quantize_dynamic; openvino: NNCF int8 weight compression

    @classmethod
    def needs_for(cls, config, in_pipeline: bool = False) -> str:
        # pt2e traces the model with a batch of training inputs before quantizing it
        if config.recover_epochs == 0 and resolve_int8_backend(config.backend, in_pipeline) == "pt2e":
            return "calibration"
        return super().needs_for(config)

    def runtime_quantization(self, runtime, ctx):
        if runtime == "pytorch":
            return None
        # backend/compile select PyTorch kernels; on another runtime its own quantizer does the work
        self.info.update(backend=runtime, compiled=False)
        return RuntimeQuantization("int8_dynamic")

    def apply(self, model, ctx):
        backend = resolve_int8_backend(self.config.backend, self.in_pipeline)
        model.eval()
        self.info.update(backend=backend, quantized_linears=len(base_linear_names(model)))
        if self.config.backend == "auto":
            why = ("no VNNI/AMX" if backend == "torch_ao" else
                   "int8 dot-product instructions; a pipeline step keeps an HF model" if self.in_pipeline else "int8 dot-product instructions")
            self.info["backend_choice"] = f"auto: {backend} ({why} on this CPU)"
        if backend == "torch_ao":
            self.quantization = {"backend": "torch_ao", "scheme": "int8_dynamic"}
            self.info["compiled"] = False  # eager FBGEMM kernels: nothing for Inductor to fuse
            return quantize_torch_ao(model)
        if backend == "torchao":
            self.quantization = {"backend": "torchao", "scheme": "int8_dynamic"}
            return self._finish(quantize_torchao(model, "int8_dynamic"))
        batches = ctx.calibration_batches(2, 2)  # dynamic: one pass only to trace
        self._example_inputs = _export_inputs(model, batches[0])
        self.quantization = {"backend": "pt2e", "scheme": "int8_dynamic"}
        return self._finish(quantize_pt2e(model, batches[:1], dynamic=True))


@dataclass
class StaticInt8Config(MethodConfig):
    _target_: str = "methods.quantization.StaticInt8"
    name: str = "static_int8"
    backend: str = "pt2e"
    calibration_samples: int = 256
    batch_size: int = 32
    compile: bool = True

    def __post_init__(self):
        super().__post_init__()
        check(self.backend == "pt2e", "method.backend", f"unknown backend {self.backend!r}", ("pt2e",))
        check_calibration(self)


@register_method("static_int8")
class StaticInt8(_QuantMethod):
    """int8 weights and activations with scales calibrated offline (pt2e X86InductorQuantizer)."""

    config_class = StaticInt8Config
    abbreviation = "sint8"
    reference = Reference(
        paper='Jacob et al. 2018, integer-arithmetic-only inference',
        recipe='int8 weights and activations, activation ranges calibrated offline on training samples',
        changes='256 calibration samples; the task head stays fp32',
    )
    needs = "calibration"
    devices = ("cpu",)
    runtimes = ALL_RUNTIMES  # onnxruntime: quantize_static (QDQ); openvino: nncf.quantize

    def runtime_quantization(self, runtime, ctx):
        if runtime == "pytorch":
            return None
        batches = ctx.calibration_batches(self.config.calibration_samples, self.config.batch_size)
        self.info.update(backend=runtime, compiled=False, calibration_samples=sum(len(next(iter(b.values()))) for b in batches))
        return RuntimeQuantization("int8_static", calibration=batches)

    def apply(self, model, ctx):
        cfg = self.config
        batches = ctx.calibration_batches(cfg.calibration_samples, cfg.batch_size)
        self._example_inputs = _export_inputs(model, batches[0])
        self.quantization = {"backend": "pt2e", "scheme": "int8_static"}
        self.info.update(backend="pt2e", calibration_samples=sum(len(next(iter(b.values()))) for b in batches))
        return self._finish(quantize_pt2e(model, batches, dynamic=False))


class _Cast(Method):
    """Cast the whole model to a lower-precision float dtype."""

    category = "Quantization"
    freezes_weights = True
    dtype: str = ""  # a torch dtype name

    def apply(self, model, ctx):
        self.info["dtype"] = self.dtype
        return model.to(getattr(torch, self.dtype))


@dataclass
class Fp16Config(MethodConfig):
    _target_: str = "methods.quantization.Fp16"
    name: str = "fp16"


@register_method("fp16")
class Fp16(_Cast):
    """Cast the whole model to float16 (GPU: CPUs have no fast fp16 GEMM)."""

    config_class = Fp16Config
    reference = Reference(
        paper='Micikevicius et al. 2018, mixed-precision training',
        recipe='fp16 weights and activations',
        changes='inference only: the whole model is cast, no fp32 master copy',
    )
    devices = ("cuda",)
    dtype = "float16"


@dataclass
class Bf16Config(MethodConfig):
    _target_: str = "methods.quantization.Bf16"
    name: str = "bf16"


@register_method("bf16")
class Bf16(_Cast):
    """Cast the whole model to bfloat16. On CPU only with native bf16 math (AVX512-BF16 or AMX)."""

    config_class = Bf16Config
    reference = Reference(
        paper='Kalamkar et al. 2019, a study of BFLOAT16',
        recipe='bf16 weights and activations',
        changes='inference only: the whole model is cast',
    )
    dtype = "bfloat16"

    def unsupported_reason(self, hardware) -> Optional[str]:
        reason = super().unsupported_reason(hardware)
        if reason is None and hardware.device == "cpu":
            flags = cpu_flags()
            if not flags & {"avx512_bf16", "amx_bf16"}:
                return "unsupported on cpu: bf16 needs avx512_bf16 or amx_bf16, this CPU has neither (it would emulate bf16 and run slower than fp32)"
        if reason is None and hardware.device == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            return "unsupported on cuda: this GPU has no bf16 support"
        return reason

    def apply(self, model, ctx):
        if ctx is not None and ctx.hardware.device == "cpu":
            self.info["cpu_bf16_flags"] = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"})
        return super().apply(model, ctx)


@dataclass
class WeightOnlyInt8Config(MethodConfig):
    _target_: str = "methods.quantization.WeightOnlyInt8"
    name: str = "weight_only_int8"
    compile: bool = True  # eager dequantizes the whole weight every call


@register_method("weight_only_int8")
class WeightOnlyInt8(_QuantMethod):
    """int8 weights, float activations (torchao Int8WeightOnlyConfig). Helps memory-bound shapes only."""

    config_class = WeightOnlyInt8Config
    abbreviation = "w8"
    reference = Reference(
        paper='torchao Int8WeightOnlyConfig (cf. Dettmers et al. 2022, LLM.int8())',
        recipe='int8 weights per channel, dequantized in the matmul; float activations',
    )

    def apply(self, model, ctx):
        self.quantization = {"backend": "torchao", "scheme": "int8_weight_only"}
        self.info.update(backend="torchao", quantized_linears=len(base_linear_names(model)))
        return self._finish(quantize_torchao(model.eval(), "int8_weight_only"))


INT4_GROUP_SIZES = (32, 64, 128, 256)


@dataclass
class Int4WeightOnlyConfig(MethodConfig):
    _target_: str = "methods.quantization.Int4WeightOnly"
    name: str = "int4_weight_only"
    group_size: int = 128
    compile: bool = True

    def __post_init__(self):
        super().__post_init__()
        check(self.group_size in INT4_GROUP_SIZES, "method.group_size", f"must be one of {list(INT4_GROUP_SIZES)}, got {self.group_size}")


@register_method("int4_weight_only")
class Int4WeightOnly(_QuantMethod):
    """int4 group-wise weights in the CUDA tinygemm layout; the model runs in bf16."""

    config_class = Int4WeightOnlyConfig
    abbreviation = "w4"
    reference = Reference(
        paper='torchao Int4WeightOnlyConfig (cf. Frantar et al. 2023, GPTQ)',
        recipe='int4 weights in groups of 128, float activations',
        changes='round-to-nearest, no GPTQ error correction',
    )
    devices = ("cuda",)

    def apply(self, model, ctx):
        group = self.config.group_size
        for name in base_linear_names(model):
            in_features = model.get_submodule(name).in_features
            check(in_features % group == 0, "method.group_size", f"must divide every Linear's input size; {name} has {in_features}")
        device = ctx.hardware.device  # the runner moves models after apply; the tinygemm packing needs CUDA now
        model = model.eval().to(device=device, dtype=torch.bfloat16)
        self.quantization = {"backend": "torchao", "scheme": "int4_weight_only", "dtype": "bfloat16", "device": device, "options": {"group_size": group}}
        self.info.update(backend="torchao", dtype="bfloat16", group_size=group)
        return self._finish(quantize_torchao(model, "int4_weight_only", group_size=group))


@dataclass
class Fp8Config(MethodConfig):
    _target_: str = "methods.quantization.Fp8"
    name: str = "fp8"
    granularity: str = "row"  # row: per-row scales; tensor: one scale per tensor
    compile: bool = True

    def __post_init__(self):
        super().__post_init__()
        check(self.granularity in ("row", "tensor"), "method.granularity", f"unknown granularity {self.granularity!r}", ("row", "tensor"))


@register_method("fp8")
class Fp8(_QuantMethod):
    """float8 e4m3 dynamic activations and weights (torchao); needs compute capability >= 8.9."""

    config_class = Fp8Config
    reference = Reference(
        paper='Micikevicius et al. 2022, FP8 formats for deep learning',
        recipe='e4m3 weights and dynamic activations with per-row scales',
    )
    devices = ("cuda",)

    def unsupported_reason(self, hardware) -> Optional[str]:
        return super().unsupported_reason(hardware) or cuda_capability_reason((8, 9), "fp8 needs")

    def apply(self, model, ctx):
        names = base_linear_names(model)
        left_in_bf16 = [f"{name}: {why}" for name in names if (why := fp8_shape_problem(model.get_submodule(name)))]
        if len(left_in_bf16) == len(names):
            # torchao would log and leave every weight in bf16: the cell would measure bf16 as fp8
            raise UnsupportedError(f"unsupported: no Linear has an fp8-compatible shape ({left_in_bf16[0] if names else 'no base-model Linears'})")
        device = ctx.hardware.device  # fp8 weights are made on the GPU that runs them
        model = model.eval().to(device=device, dtype=torch.bfloat16)
        options = {"granularity": self.config.granularity}
        self.quantization = {"backend": "torchao", "scheme": "fp8", "dtype": "bfloat16", "device": device, "options": options}
        model = quantize_torchao(model, "fp8", **options)
        quantized = [name for name in names if is_quantized_weight(model.get_submodule(name).weight)]
        check_all_counted(names, quantized, left_in_bf16)
        self.info.update(backend="torchao", dtype="bfloat16", granularity=self.config.granularity,
                         quantized_linears=len(quantized), bf16_linears=left_in_bf16,  # "name: why" for each weight left in bf16
                         all_linears_fp8=not left_in_bf16)
        return self._finish(model)


def fp8_shape_problem(linear: nn.Module) -> Optional[str]:
    """Why torchao's fp8 path leaves this Linear in bf16, or None if it quantizes it.

    Mirrors torchao.quantization.utils._fp8_mm_compat (torchao 0.18): torch._scaled_mm needs both
    weight dims to be multiples of 16, so TinyBERT's 312-wide layers stay bf16 with only a log line.
    """
    out_features, in_features = linear.weight.shape[-2:]
    if in_features % 16 or out_features % 16:
        return f"weight {out_features}x{in_features} is not a multiple of 16 in both dims (torch._scaled_mm)"
    return None


def is_quantized_weight(weight: torch.Tensor) -> bool:
    """True for a torchao quantized tensor subclass (Float8Tensor, Int4..., Int8...), False for plain float."""
    return type(weight) not in (torch.Tensor, nn.Parameter) and hasattr(weight, "__tensor_flatten__")


def check_all_counted(names: list[str], quantized: list[str], predicted_skips: list[str]) -> None:
    """The layers quantized are exactly those the shape rule predicted: a torchao change that skips
    (or quantizes) other layers would otherwise go unrecorded."""
    predicted = {entry.split(":", 1)[0] for entry in predicted_skips}
    unexpected = [name for name in names if (name in quantized) == (name in predicted)]
    if unexpected:
        raise RuntimeError(f"fp8: torchao quantized a different set of Linears than the shape rule predicts: {unexpected}")
