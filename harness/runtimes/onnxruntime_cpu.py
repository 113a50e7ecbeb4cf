"""ONNX Runtime, CPU execution provider.

fp32: export -> onnxruntime.transformers optimizer (model_type bert: Attention, SkipLayerNormalization,
BiasGelu, EmbedLayerNormalization fusions) -> session with ORT_ENABLE_ALL.
int8_dynamic: the optimized graph -> quantize_dynamic (int8 weights, activations quantized per call),
the MatMul and fused Attention ops of the encoder.
int8_static: the optimized graph without the Attention fusion (a fused Attention cannot take QDQ
pairs, so its Q/K/V MatMuls stay visible) -> quantize_static in QDQ format, activation ranges
calibrated (MinMax) on the method's training samples; the session fuses the QDQ pairs into int8 kernels.
The task head stays float in both, as in the PyTorch int8 methods.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.runtimes.base import Runtime, RuntimeModel, embedding_bytes, head_modules
from harness.runtimes.export import WRAPPER, export_onnx


class OnnxRuntimeModel(RuntimeModel):
    runtime = "onnxruntime"

    def __init__(self, session, *args):
        super().__init__(*args)
        self.session = session

    def run_feed(self, feed):
        return self.session.run(None, feed)


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def prepare(self, model, quantization, example, output_names, work_dir):
        import onnxruntime as ort

        work = Path(work_dir.name)
        exported = work / "exported.onnx"
        section = {"name": self.name, "version": ort.__version__, **export_onnx(model, example, output_names, exported, self.config.opset)}
        path, section["graph_optimizations"] = self._optimize(model, exported, work, attention=not (quantization and quantization.scheme == "int8_static"))
        section["quantization"] = None
        if quantization is not None:
            path, section["quantization"] = self._quantize(model, path, work, quantization)
        final = work / "model.onnx"
        path.replace(final)
        for leftover in work.iterdir():  # the artifact is the one file that runs; intermediates would count in its size
            if leftover != final:
                leftover.unlink()
        session, section["session"] = self._session(final)
        section["threads"] = {"intra_op": section["session"]["intra_op_num_threads"], "inter_op": section["session"]["inter_op_num_threads"]}
        converted = OnnxRuntimeModel(session, section["inputs"], output_names, [final], work_dir, model)
        section.update(artifact_files=[final.name], **weight_bytes(final))
        return converted, section

    def _optimize(self, model, path: Path, work: Path, attention: bool) -> tuple[Path, dict]:
        if not self.config.graph_optimizations:
            return path, {"transformer_optimizer": False, "session_level": "ORT_ENABLE_ALL"}
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        heads, hidden = attention_shape(model)
        options = FusionOptions("bert")
        options.enable_attention = attention
        optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, optimization_options=options)
        out = work / "optimized.onnx"
        optimized.save_model_to_file(str(out))
        fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
        return out, {"transformer_optimizer": True, "model_type": "bert", "num_heads": heads, "hidden_size": hidden,
                     "attention_fusion": attention, "fused_operators": fused, "session_level": "ORT_ENABLE_ALL"}

    def _quantize(self, model, path: Path, work: Path, quantization) -> tuple[Path, dict]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

        import onnx

        out = work / "quantized.onnx"
        excluded = head_nodes(path, model)
        # ONNX shape inference cannot type the outputs of the optimizer's contrib ops (SkipLayerNormalization,
        # BiasGelu, ...); without a default the quantizer silently skips every MatMul that follows one.
        extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
        if quantization.scheme == "int8_dynamic":
            op_types = ["MatMul", "Attention"]
            quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=op_types,
                             nodes_to_exclude=excluded, per_channel=False, extra_options=extra)
            return out, {"tool": "onnxruntime.quantization.quantize_dynamic", "scheme": "int8_dynamic", "weights": "int8 per-tensor",
                         "activations": "uint8, quantized per call at run time", "op_types": op_types, "excluded_nodes": excluded,
                         "quantized_nodes": quantized_names(out, DYNAMIC_INT8_OPS)}
        op_types = ["MatMul"]
        path = typed_graph(path, work)
        reader = FeedReader([{k: np.asarray(b[k].cpu().numpy(), dtype=np.int64) for k in input_names_of(path)} for b in quantization.calibration])
        quantize_static(str(path), str(out), reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False,
                        nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
        for leftover in work.glob("*augmented*"):  # the calibration graph
            leftover.unlink()
        return out, {"tool": "onnxruntime.quantization.quantize_static", "scheme": "int8_static", "format": "QDQ",
                     "weights": "int8 per-tensor", "activations": "uint8, MinMax-calibrated scales", "calibration_method": "MinMax",
                     "calibration_batches": len(reader.feeds), "calibration_samples": sum(len(f["input_ids"]) for f in reader.feeds),
                     "op_types": op_types, "excluded_nodes": excluded, "quantized_nodes": quantized_matmuls(out)}

    def _session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        applied = session.get_session_options()
        return session, {"providers": session.get_providers(), "intra_op_num_threads": applied.intra_op_num_threads,
                         "inter_op_num_threads": applied.inter_op_num_threads, "execution_mode": "ORT_SEQUENTIAL",
                         "graph_optimization_level": "ORT_ENABLE_ALL"}


class FeedReader:
    """onnxruntime.quantization.CalibrationDataReader over prepared feeds (duck-typed: get_next/rewind)."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self._next = 0

    def get_next(self):
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def attention_shape(model) -> tuple[int, int]:
    """(heads, hidden) when every attention layer has the same shape; (0, 0) lets the optimizer read each
    layer's from the graph (head-pruned models differ per layer)."""
    shapes = {(m.num_attention_heads, m.all_head_size) for m in model.modules() if hasattr(m, "num_attention_heads") and hasattr(m, "all_head_size")}
    return shapes.pop() if len(shapes) == 1 else (0, 0)


DYNAMIC_INT8_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention")


def quantized_names(path: Path, op_types) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in op_types]


def quantized_matmuls(path: Path) -> list[str]:
    """MatMuls whose both inputs come through DequantizeLinear (QDQ): the ones the session runs in int8."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and all(i in dequantized for i in n.input[:2])]


def typed_graph(path: Path, work: Path) -> Path:
    """The graph with every tensor typed by ORT's symbolic shape inference, which knows the contrib ops:
    quantize_static skips any activation it cannot type (DefaultTensorType covers weights only)."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    out = work / "typed.onnx"
    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(path)), auto_merge=True), str(out))
    return out


def input_names_of(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def head_nodes(path: Path, model) -> list[str]:
    import onnx

    prefixes = tuple(f"/{WRAPPER}/{name}/" for name in head_modules(model))
    names = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if prefixes and n.name.startswith(prefixes)]
    return names + [f"{name}_MatMul" for name in names]  # the quantizer splits a Gemm into <name>_MatMul + Add first


def weight_bytes(path: Path) -> dict:
    """Bytes of the graph's initializers (weights, int8 or float, with their scales), and of the embeddings."""
    import onnx
    from onnx import numpy_helper

    arrays = [(i.name, numpy_helper.to_array(i)) for i in onnx.load(str(path)).graph.initializer]
    sizes = [(name, array.nbytes) for name, array in arrays]
    int8 = sum(a.size for _, a in arrays if a.ndim >= 2 and a.dtype.itemsize == 1 and a.dtype.kind in "iu")
    return {"weight_bytes": sum(size for _, size in sizes), "embedding_bytes": embedding_bytes(sizes), "int8_weight_elements": int8}
