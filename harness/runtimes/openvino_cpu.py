"""OpenVINO, CPU plugin.

fp32: export -> openvino.convert_model(ONNX file) -> saved as IR (xml + bin) without the fp16
compression save_model applies by default -> compiled with INFERENCE_PRECISION_HINT=f32 (the plugin
would otherwise run bf16 on CPUs that have it) and INFERENCE_NUM_THREADS from the hardware config.
int8_dynamic: nncf.compress_weights INT8_ASYM. This is WEIGHT-ONLY int8 as far as the artifact goes:
OpenVINO has no ahead-of-time dynamic-activation int8 format; whether the CPU plugin quantizes
activations on the fly for compressed weights is its DYNAMIC_QUANTIZATION_GROUP_SIZE property,
recorded in `session`.
int8_static: nncf.quantize (post-training, model_type TRANSFORMER) calibrated on the method's
training samples: int8 weights and activations.
Embeddings (Gather) and the task head stay float in both, as in the PyTorch int8 methods.
"""

from __future__ import annotations

from pathlib import Path

from harness.runtimes.base import Runtime, RuntimeModel, embedding_bytes, head_modules
from harness.runtimes.export import WRAPPER, export_onnx

RECORDED_PROPERTIES = ("INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS",
                       "ENABLE_CPU_PINNING", "SCHEDULING_CORE_TYPE", "DYNAMIC_QUANTIZATION_GROUP_SIZE")


class OpenVinoModel(RuntimeModel):
    runtime = "openvino"

    def __init__(self, compiled, *args):
        super().__init__(*args)
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._outputs = list(compiled.outputs)

    def run_feed(self, feed):
        result = self.request.infer(feed)  # arrays view the request's buffers until the next call
        return [result[output] for output in self._outputs]


class OpenVinoRuntime(Runtime):
    name = "openvino"

    def prepare(self, model, quantization, example, output_names, work_dir):
        import openvino as ov

        work = Path(work_dir.name)
        exported = work / "exported.onnx"
        section = {"name": self.name, "version": ov.get_version(), **export_onnx(model, example, output_names, exported, self.config.opset)}
        ov_model = ov.convert_model(str(exported))
        section["graph_optimizations"] = {"converter": "openvino.convert_model (ONNX frontend)", "compress_to_fp16": False,
                                          "plugin": "CPU plugin graph transformations at compile_model"}
        section["quantization"] = None
        if quantization is not None:
            ov_model, section["quantization"] = self._quantize(model, ov_model, quantization, section["inputs"])
        xml = work / "model.xml"
        ov.save_model(ov_model, str(xml), compress_to_fp16=False)
        exported.unlink()
        compiled, section["session"] = self._compile(ov.Core().read_model(str(xml)))
        section["threads"] = {"intra_op": section["session"].get("INFERENCE_NUM_THREADS"), "inter_op": None}
        files = [xml, xml.with_suffix(".bin")]
        converted = OpenVinoModel(compiled, section["inputs"], output_names, files, work_dir, model)
        section.update(artifact_files=[f.name for f in files], **weight_bytes(ov_model))
        return converted, section

    def _quantize(self, model, ov_model, quantization, inputs: list[str]):
        import nncf

        patterns = [f".*/{WRAPPER}/{name}/.*" for name in head_modules(model)]
        # Gather: the embedding tables (and shape gathers, which have no weights), float as in PyTorch's int8
        ignored = nncf.IgnoredScope(patterns=patterns, types=["Gather"], validate=False)
        if quantization.scheme == "int8_dynamic":
            compressed = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=ignored)
            return compressed, {"tool": "nncf.compress_weights", "nncf": nncf.__version__, "scheme": "int8_weight_only",
                                "weights": "int8 asymmetric per output channel", "activations": "float (see session.DYNAMIC_QUANTIZATION_GROUP_SIZE)",
                                "note": "dynamic_int8 on OpenVINO is weight-only int8 compression: OpenVINO has no dynamic-activation int8 artifact",
                                "ignored": {"patterns": patterns, "types": ["Gather"]}}
        feeds = [{k: b[k].cpu().numpy().astype("int64") for k in inputs} for b in quantization.calibration]
        quantized = nncf.quantize(ov_model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds),
                                  ignored_scope=ignored)
        return quantized, {"tool": "nncf.quantize", "nncf": nncf.__version__, "scheme": "int8_static", "model_type": "TRANSFORMER",
                           "weights": "int8", "activations": "int8, calibrated scales", "calibration_batches": len(feeds),
                           "calibration_samples": sum(len(f["input_ids"]) for f in feeds), "ignored": {"patterns": patterns, "types": ["Gather"]}}

    def _compile(self, ov_model):
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": self.intra_op_threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        compiled = ov.Core().compile_model(ov_model, "CPU", config)
        properties = {"device": "CPU", "requested": {k: str(v) for k, v in config.items()}}
        for name in RECORDED_PROPERTIES:
            try:
                value = compiled.get_property(name)
            except RuntimeError:  # a property this plugin version does not expose
                continue
            if hasattr(value, "to_string"):  # an openvino Type (precision hints)
                value = value.to_string()
            properties[name] = value if isinstance(value, (int, float, bool)) else str(value)
        return compiled, properties


def weight_bytes(ov_model) -> dict:
    """Bytes of the model's constants (weights, int8 or float, with scales and zero points), and of the embeddings."""
    constants = [op for op in ov_model.get_ops() if op.get_type_name() == "Constant"]
    sizes = [(op.get_friendly_name(), op.get_byte_size()) for op in constants]
    int8 = sum(_elements(op) for op in constants if len(op.get_output_shape(0)) >= 2 and op.get_element_type().get_type_name() in ("i8", "u8"))
    return {"weight_bytes": sum(size for _, size in sizes), "embedding_bytes": embedding_bytes(sizes), "int8_weight_elements": int8}


def _elements(constant) -> int:
    count = 1
    for dim in constant.get_output_shape(0):
        count *= int(dim)
    return count
