"""Forward FLOPs of a model in whatever form a method left it, counted from matmul shapes.

One counter per artifact form, chosen by `counter_for` (first registered predicate that matches):

  fx-graph  a torch.export / pt2e program (a `torch.fx.GraphModule`, or a wrapper holding one as
            `graph_module`): the graph is interpreted once on the real inputs and every linear /
            mm / addmm / bmm / matmul / scaled-dot-product-attention node is counted from the
            shapes of its operands. A weight that reaches a matmul through a dequantize node is
            counted at its stored precision (int8 for pt2e Q/DQ graphs).
  hooks     an eager `nn.Module`: forward hooks on every nn.Linear (torchao tensor-subclass
            weights keep the Linear and its logical shape), torch.ao dynamic-quantized Linear, and
            the two attention matmuls (QK^T, AV) of BERT-style self-attention. A module compiled
            in place (`model.compile()`) or wrapped by `torch.compile` (`_orig_mod`) is run eagerly
            for the count: Dynamo skips hooks added after compilation, which used to record 0.

Hooks and graphs both see the shapes the model really runs with, so low-rank factorizations,
removed layers, pruned heads and early exits (smaller batches after each exit) need no special
case. Zeros of unstructured-sparse weights are still counted (dense FLOPs).

MACs are also split by precision: the storage precision of the weight operand (fp32, bf16, fp16,
int8, int4, fp8), and for activation x activation matmuls (attention) the activations' dtype.
Weight-only int8/int4 therefore count as int8/int4 although their multiply runs in the activation
dtype. A count that cannot be made is `None` with a `reason`, never 0.

Other runtimes (ONNX Runtime, OpenVINO) add a counter with `register_flop_counter(predicate,
counter)`; see its docstring for the contract.
"""

from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Optional, TypedDict

import torch
from torch import nn

NOTE = ("FLOPs = 2 x MACs of the matmuls (linear layers, attention QK^T and AV); embeddings, LayerNorm, softmax, "
        "GELU excluded; dense (zeros counted); macs_by_precision keys = stored weight precision "
        "(activation dtype for activation x activation matmuls)")


class FlopsResult(TypedDict):
    flops_per_sample: Optional[float]  # 2 x macs_per_sample; None when no count could be made (see reason)
    macs_per_sample: Optional[float]  # multiply-accumulates of one forward pass, per sample
    macs_by_precision: dict  # precision label (fp32/bf16/fp16/int8/int4/fp8) -> MACs per sample
    by_module_type: dict  # module type or graph op -> FLOPs per sample
    batch_size: int  # samples in the counted batch
    seq_len: Optional[int]  # sequence length of the counted batch
    method: str  # how it was counted: "hooks", "fx-graph", or a registered runtime's counter name
    reason: Optional[str]  # why flops_per_sample is None; None when it is a real count
    note: str  # what is and is not counted


class _Macs:
    """MACs accumulated by (kind, precision) while a counter runs."""

    def __init__(self):
        self.by_kind: dict[str, int] = defaultdict(int)
        self.by_precision: dict[str, int] = defaultdict(int)

    def add(self, kind: str, precision: str, macs: int) -> None:
        self.by_kind[kind] += int(macs)
        self.by_precision[precision] += int(macs)

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


# --------------------------------------------------------------------------------------------
# Precision of a weight: plain dtypes and torchao / torch.ao quantized forms
# --------------------------------------------------------------------------------------------

_DTYPE_LABELS = {torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16", torch.float16: "fp16",
                 torch.int8: "int8", torch.uint8: "int8", torch.qint8: "int8", torch.quint8: "int8",
                 torch.quint4x2: "int4"}
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        _DTYPE_LABELS[getattr(torch, _name)] = "fp8"


def dtype_label(dtype: torch.dtype) -> str:
    return _DTYPE_LABELS.get(dtype, str(dtype).replace("torch.", ""))


def weight_precision(weight: Any) -> str:
    """Stored precision of a weight: a plain tensor's dtype, or for a tensor subclass (torchao's
    Int8Tensor, Int4*Tensor, Float8Tensor, AffineQuantizedTensor, ...) what its inner data holds.
    The logical dtype of a subclass is the dequantized one (fp32/bf16), so it cannot be used."""
    if not isinstance(weight, torch.Tensor):
        return "unknown"
    name = type(weight).__name__.lower()
    if "int4" in name or "uint4" in name:
        return "int4"
    if "float8" in name or "fp8" in name:
        return "fp8"
    flatten = getattr(type(weight), "__tensor_flatten__", None)
    if flatten is None or type(weight) in (torch.Tensor, nn.Parameter):
        return dtype_label(weight.dtype)
    inner_names, meta = weight.__tensor_flatten__()
    quant_range = _quant_range(weight, meta)
    if quant_range is not None and quant_range <= 16:
        return "int4"
    labels = [weight_precision(getattr(weight, n)) for n in inner_names]
    for label in ("fp8", "int4", "int8"):  # the quantized payload, not its fp32 scales
        if label in labels:
            return label
    return labels[0] if labels else dtype_label(weight.dtype)


def _quant_range(weight: torch.Tensor, meta: Any) -> Optional[int]:
    low, high = getattr(weight, "quant_min", None), getattr(weight, "quant_max", None)
    if isinstance(meta, dict):
        low, high = meta.get("quant_min", low), meta.get("quant_max", high)
    if isinstance(low, int) and isinstance(high, int):
        return high - low + 1
    return None


# --------------------------------------------------------------------------------------------
# Eager modules: forward hooks
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _dynamic_quantized_linear_types() -> tuple[type, ...]:
    try:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        return (DynamicLinear,)
    except ImportError:
        return ()


def _linear_kind(module: nn.Module) -> str:
    if isinstance(module, _dynamic_quantized_linear_types()):
        return "DynamicQuantizedLinear"  # its class is also called "Linear"
    return type(module).__name__


def _linear_precision(module: nn.Module) -> str:
    if isinstance(module, _dynamic_quantized_linear_types()):
        return "int8"  # packed qint8 weight, activations quantized per batch
    return weight_precision(getattr(module, "weight", None))


def _is_self_attention(module: nn.Module) -> bool:
    # BertSelfAttention, RobertaSelfAttention, DistilBertSelfAttention, MultiHeadSelfAttention, ...
    return type(module).__name__.endswith("SelfAttention") and _inner_dims(module) is not None


def _heads_and_head_size(module: nn.Module) -> Optional[tuple[int, int]]:
    heads = getattr(module, "num_attention_heads", None) or getattr(module, "n_heads", None)
    head_size = getattr(module, "attention_head_size", None)
    if head_size is None and heads and getattr(module, "dim", None):
        head_size = module.dim // heads
    if heads and head_size:
        return int(heads), int(head_size)
    return None


def _out_features(module: nn.Module, names: tuple[str, ...]) -> Optional[int]:
    for name in names:
        out = getattr(getattr(module, name, None), "out_features", None)
        if isinstance(out, int):
            return out
    return None


def _inner_dims(module: nn.Module) -> Optional[tuple[int, int]]:
    """(query/key width, value width) = heads x head_size, read at run time.

    The projection's out_features is preferred because it is what the matmul really sees
    even if a pruning method forgot to update num_attention_heads; the attributes are the
    fallback when the projection is no longer a single Linear (e.g. a low-rank pair).
    """
    dims = _heads_and_head_size(module)
    from_attrs = dims[0] * dims[1] if dims else None
    qk = _out_features(module, ("query", "q_lin")) or from_attrs
    v = _out_features(module, ("value", "v_lin")) or from_attrs
    return (qk, v) if qk and v else None


def _hidden_states(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in ("hidden_states", "query"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    return None


class _HookCounter:
    def __init__(self):
        self.macs = _Macs()

    def linear(self, module: nn.Module, _args: tuple, output: Any) -> None:
        # Rows from the output: the input may have been passed as a keyword.
        if isinstance(output, torch.Tensor) and output.numel():
            rows = output.numel() // module.out_features
            self.macs.add(_linear_kind(module), _linear_precision(module),
                          rows * module.in_features * module.out_features)

    def attention(self, module: nn.Module, args: tuple, kwargs: dict, _output: Any) -> None:
        hidden = _hidden_states(args, kwargs)
        dims = _inner_dims(module)
        if hidden is None or dims is None or hidden.dim() < 2:
            return
        qk_width, v_width = dims
        seq = hidden.shape[-2]
        batch = hidden.numel() // (seq * hidden.shape[-1])
        # QK^T: (n x d) @ (d x n) per head; AV: (n x n) @ (n x d) per head.
        self.macs.add("attention_matmul", dtype_label(hidden.dtype), batch * seq * seq * (qk_width + v_width))


@contextlib.contextmanager
def _eager(model: nn.Module) -> Iterator[None]:
    """Run modules compiled in place (`nn.Module.compile`) eagerly, so that the hooks fire."""
    compiled = [(m, m._compiled_call_impl) for m in model.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    for module, _ in compiled:
        module._compiled_call_impl = None
    try:
        yield
    finally:
        for module, call in compiled:
            module._compiled_call_impl = call


def count_with_hooks(model: nn.Module, inputs: dict) -> _Macs:
    counter = _HookCounter()
    linear_types = (nn.Linear, *_dynamic_quantized_linear_types())
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, linear_types):
                handles.append(module.register_forward_hook(counter.linear))
            elif _is_self_attention(module):
                handles.append(module.register_forward_hook(counter.attention, with_kwargs=True))
        with torch.inference_mode(), _eager(model):
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counter.macs


# --------------------------------------------------------------------------------------------
# torch.export / pt2e graphs: interpret the FX graph and count matmul nodes from operand shapes
# --------------------------------------------------------------------------------------------

_VIEW_OPS = {"t", "transpose", "permute", "view", "reshape", "expand", "clone", "contiguous", "_to_copy", "to",
             "unsqueeze", "squeeze", "alias", "detach"}
_MATMUL_OPS = {"linear", "mm", "addmm", "bmm", "baddbmm", "matmul"}


def _op_name(target: Any) -> str:
    """'aten.linear.default' -> 'linear'; other callables by their name."""
    name = getattr(target, "__name__", None) or str(target)
    overload = getattr(target, "_overloadpacket", None)
    if overload is not None:
        name = overload.__name__
    return name.split(".")[0]


def _graph_of(model: Any) -> Optional[torch.fx.GraphModule]:
    if isinstance(model, torch.fx.GraphModule):
        return model
    inner = getattr(model, "graph_module", None)
    return inner if isinstance(inner, torch.fx.GraphModule) else None


class _GraphCounter(torch.fx.Interpreter):
    def __init__(self, graph_module: torch.fx.GraphModule):
        super().__init__(graph_module)
        self.macs = _Macs()

    def run_node(self, node: torch.fx.Node) -> Any:
        result = super().run_node(node)
        if node.op == "call_function":
            op = _op_name(node.target)
            if op in _MATMUL_OPS or "scaled_dot_product" in op:
                self._count(node, op, result)
        return result

    def _count(self, node: torch.fx.Node, op: str, result: Any) -> None:
        args, _ = self.fetch_args_kwargs_from_env(node)
        out = result[0] if isinstance(result, (tuple, list)) else result
        if not isinstance(out, torch.Tensor):
            return
        if "scaled_dot_product" in op:
            query, key, value = args[:3]
            # QK^T: L x S x E per (batch, head); AV: L x S x Ev.
            heads_batch = query.numel() // (query.shape[-2] * query.shape[-1])
            macs = heads_batch * query.shape[-2] * key.shape[-2] * (query.shape[-1] + value.shape[-1])
            self.macs.add("attention_matmul", self._precision(node.args[0], query), macs)
            return
        if op == "linear":
            activation, weight = node.args[0], node.args[1]
            inner = args[1].shape[-1]
        elif op in ("addmm", "baddbmm"):
            activation, weight = node.args[1], node.args[2]
            inner = args[1].shape[-1]
        else:
            activation, weight = node.args[0], node.args[1]
            inner = args[0].shape[-1]
        precision = self._precision(weight, self.env.get(weight))
        if precision in ("fp32", "bf16", "fp16"):  # a float weight beside a quantized activation
            precision = self._precision(activation, self.env.get(activation))
        self.macs.add(op, precision, out.numel() * inner)

    def _precision(self, node: Any, value: Any) -> str:
        """Follow view-like ops back: an operand produced by a dequantize node has the precision of
        the quantized tensor it came from; any other operand its own dtype."""
        seen = 0
        while isinstance(node, torch.fx.Node) and seen < 16:
            op = _op_name(node.target) if node.op == "call_function" else ""
            if op.startswith("dequantize"):
                source = self.env.get(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else node.args[0]
                if isinstance(source, torch.Tensor):
                    return weight_precision(source)
                return "int8"
            if op not in _VIEW_OPS or not node.args:
                break
            node, seen = node.args[0], seen + 1
        return weight_precision(value) if isinstance(value, torch.Tensor) else "unknown"


def count_graph(model: Any, inputs: dict) -> _Macs:
    graph_module = _graph_of(model)
    placeholders = [n for n in graph_module.graph.nodes if n.op == "placeholder"]
    names = list(getattr(model, "input_names", None) or [])
    missing = [n.name for n in placeholders if n.name not in inputs and n.target not in inputs]
    if missing and len(names) == len(placeholders):  # placeholders renamed: use the wrapper's input order
        flat = [inputs[name] for name in names]
    elif missing:
        raise KeyError(f"graph inputs {missing} not in the batch ({sorted(inputs)})")
    else:
        flat = [inputs[n.name] if n.name in inputs else inputs[n.target] for n in placeholders]
    counter = _GraphCounter(graph_module)
    with torch.inference_mode():
        counter.run(*flat, enable_io_processing=False)
    return counter.macs


# --------------------------------------------------------------------------------------------
# Dispatch: which counter handles which artifact form
# --------------------------------------------------------------------------------------------

Counter = Callable[[Any, dict], _Macs]
_COUNTERS: list[tuple[str, Callable[[Any], bool], Counter]] = []


def register_flop_counter(name: str, predicate: Callable[[Any], bool], counter: Counter, first: bool = True) -> None:
    """Add a counter for another artifact form; `name` becomes the record's flops.method.

    `predicate(model)` says whether the counter handles the model; `counter(model, inputs)` runs
    one forward pass worth of counting on `inputs` (the batch dict the model is called with) and
    returns a `_Macs` (call `.add(kind, precision, macs)` per matmul). An ONNX Runtime artifact
    would register e.g. `("onnx-graph", lambda m: hasattr(m, "onnx_model"), count_onnx)` whose
    counter runs shape inference over the graph for the batch's shapes and adds, for each MatMul
    node, prod(output shape) x K (K = last dim of input A), and for each Gemm node M x N x K, with
    the precision of a weight that reaches it through DequantizeLinear taken from that node's
    input type. A counter that raises makes the count None with the error as reason.
    """
    entry = (name, predicate, counter)
    _COUNTERS.insert(0, entry) if first else _COUNTERS.append(entry)


register_flop_counter("fx-graph", lambda model: _graph_of(model) is not None, count_graph, first=False)
register_flop_counter("hooks", lambda model: isinstance(model, nn.Module), count_with_hooks, first=False)


def counter_for(model: Any) -> tuple[Optional[str], Optional[Counter]]:
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule wraps the original
    for name, predicate, counter in _COUNTERS:
        if predicate(model):
            return name, counter
    return None, None


def _batch_and_seq(inputs: dict) -> tuple[int, Optional[int]]:
    for key in ("input_ids", "inputs_embeds", "attention_mask"):
        value = inputs.get(key)
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            return int(value.shape[0]), int(value.shape[1])
    first = next(v for v in inputs.values() if isinstance(v, torch.Tensor))
    return int(first.shape[0]), (int(first.shape[1]) if first.dim() > 1 else None)


def count_flops(model: Any, inputs: dict) -> FlopsResult:
    """FLOPs of one forward pass on `inputs`, per sample, for any registered artifact form."""
    batch, seq_len = _batch_and_seq(inputs)
    result = FlopsResult(flops_per_sample=None, macs_per_sample=None, macs_by_precision={}, by_module_type={},
                         batch_size=batch, seq_len=seq_len, method="none", reason=None, note=NOTE)
    name, counter = counter_for(model)
    if counter is None:
        return {**result, "reason": f"no FLOPs counter for a {type(model).__name__}"}
    result["method"] = name
    try:
        macs = counter(getattr(model, "_orig_mod", model), inputs)
    except Exception as err:  # an uncountable form is recorded as such, never as 0 and never as a crash
        return {**result, "reason": f"{name} counting failed: {type(err).__name__}: {err}"}
    if macs.total <= 0:
        return {**result, "reason": f"{name} found no matmul in a {type(model).__name__}: form not understood"}
    return {**result, "flops_per_sample": 2 * macs.total / batch, "macs_per_sample": macs.total / batch,
            "macs_by_precision": {k: v / batch for k, v in sorted(macs.by_precision.items())},
            "by_module_type": {k: 2 * v / batch for k, v in sorted(macs.by_kind.items())}}


def average_flops(model: Any, batches: Iterable[dict]) -> Optional[float]:
    """Per-sample FLOPs averaged over real batches (weighted by batch size), for methods whose
    cost depends on the input (early exit, real sequence lengths). None if any batch is uncountable."""
    total, samples = 0.0, 0
    for batch in batches:
        result = count_flops(model, batch)
        if result["flops_per_sample"] is None:
            return None
        total += result["flops_per_sample"] * result["batch_size"]
        samples += result["batch_size"]
    if samples == 0:
        raise ValueError("average_flops needs at least one batch")
    return total / samples
