"""The method's PyTorch model -> one ONNX file with dynamic batch and sequence axes (both runtimes start here)."""

from __future__ import annotations

import contextlib
import inspect
import warnings
from pathlib import Path

import torch
from torch import nn

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORTER = "torch.onnx.export (TorchScript exporter, dynamo=False)"
WRAPPER = "model"  # the wrapper's attribute: ONNX node names start with /model/<module path>/


class _OutputsAsTuple(nn.Module):
    """Positional inputs in, the named outputs as a tuple out: what the TorchScript exporter traces."""

    def __init__(self, model: nn.Module, input_names: list[str], output_names: list[str]):
        super().__init__()
        setattr(self, WRAPPER, model)
        self.input_names = input_names
        self.output_names = output_names

    def forward(self, *args):
        from harness.tasks.evaluation import _pick_outputs

        output = getattr(self, WRAPPER)(**dict(zip(self.input_names, args)))
        return tuple(_pick_outputs(output, tuple(self.output_names)))


def input_names(model: nn.Module, batch: dict) -> list[str]:
    """The model inputs the batch has and the forward takes (DistilBERT takes no token_type_ids)."""
    try:
        parameters = inspect.signature(model.forward).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    except (TypeError, ValueError):
        parameters, takes_any = {}, True
    return [k for k in MODEL_INPUTS if k in batch and (takes_any or k in parameters)]


@contextlib.contextmanager
def eager_attention(model: nn.Module):
    """Trace the explicit attention math rather than SDPA: the same numbers, and the pattern the
    ONNX Runtime transformer optimizer recognises and fuses into its Attention op."""
    setter = getattr(model, "set_attn_implementation", None)
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if setter is None or before in (None, "eager"):
        yield
        return
    setter("eager")
    try:
        yield
    finally:
        setter(before)


def export_onnx(model: nn.Module, example: dict, output_names: list[str], path: Path, opset: int) -> dict:
    """Export `model` (float32, CPU) to `path`; returns what the record says about the export."""
    names = input_names(model, example)
    # Two rows of at least two tokens, so the tracer cannot specialise a dimension to 1.
    args = tuple(example[k][:2].to("cpu") for k in names)
    if args[0].shape[0] < 2 or args[0].shape[1] < 2:
        args = tuple(a.repeat(2, 2) for a in args)
    axes = {k: {0: "batch", 1: "sequence"} for k in names}
    axes.update({k: {0: "batch"} if k == "logits" else {0: "batch", 1: "sequence"} for k in output_names})
    wrapper = _OutputsAsTuple(model, names, output_names).eval()  # eval on the wrapper too: the exporter traces in its mode
    with eager_attention(model), torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=list(output_names), dynamic_axes=axes, do_constant_folding=True)
    return {"exporter": EXPORTER, "torch": torch.__version__, "opset": opset, "inputs": names, "outputs": list(output_names),
            "dynamic_axes": axes}
