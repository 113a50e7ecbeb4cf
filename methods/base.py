"""The method protocol: a config dataclass + a class that applies it and describes itself.

A method registers under the name a command line gives it (methods/registry.py); a composed
config names its class with `_target_`. The class names its config dataclass (the one place its
defaults are written) in `config_class` and declares what the rest of the harness must know about
it: its survey category and provenance (written into every record by `describe()`, read by the
report), the data it needs (`needs_for(config)`), the devices it runs on. Adding a method is one
decorated class: nothing else changes.

    @register_method("dynamic_int8")
    class DynamicInt8(Method):
        config_class = DynamicInt8Config
        category = "Quantization"
        devices = ("cpu",)
        def apply(self, model, ctx): ...

A method that changes shapes or tensor formats registers how to rebuild them next to its code
(methods/artifacts.py: `register_structure`, `register_format`).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar, Optional

from harness.runtime_names import RUNTIMES
from harness.errors import ConfigError, check
from methods.registry import register_method

NEEDS = ("nothing", "calibration", "training")  # ordered: each needs at least what the previous one does
# The row groups of Ganesh et al. (2021), Table 1, in the survey's order.
SURVEY_CATEGORIES = (
    "Baseline",
    "Quantization",
    "Unstructured Pruning",
    "Structured Pruning",
    "KD from Output Logits",
    "KD from Attn.",
    "Multiple KD combined",
    "Matrix Decomposition",
    "Dynamic Inference",
    "Param. Sharing",
    "Pruning with KD",
    "Quantization with KD",
    "Compound",
)
# The survey's provenance column: A = task-agnostic compression, S = task-specific. Our methods
# compress a model that is already fine-tuned, so almost all are S; the baseline has none.
PROVENANCES = ("", "A", "S", "A,S")
ALL_RUNTIMES = RUNTIMES  # for methods whose model is a plain graph: it exports to every runtime


# The recovery budget every pruning and low-rank method retrains with by default (ShrinkBench: one
# fine-tuning budget for every method that retrains, stated). An epoch of the task's training split
# at its fine-tuning settings; the papers retrain for a full fine-tune (2-4 epochs), which on 2 CPU
# cores costs more than the comparison can afford per cell. `recover_epochs=0` is the one-shot variant.
RECOVERY_EPOCHS = 1.0


@dataclass(frozen=True)
class Reference:
    """Where a method comes from and how far compbench's default stands from it (the report's legend).

    A benchmark is only as fair as its weakest implementation: each method says which paper it
    follows, that paper's recipe, and what compbench's default changes and why, so a reader can
    tell a faithful row from a constrained one.
    """

    paper: str  # authors, year, short title
    recipe: str  # the paper's own recipe in one line
    changes: str = ""  # what compbench's default does differently and why; "" = as the paper
    # False when the default is a different regime from the paper's published rows (e.g. task-only
    # distillation beside rows distilled during pre-training): the report never draws them side by side
    comparable_to_published: bool = True


@dataclass
class MethodConfig:
    _target_: str = "methods.base.Baseline"
    name: str = "baseline"
    # optional recovery fine-tune after a structural change; an int literal, as the method YAMLs of
    # before the registry wrote it, so records' config hashes (which serialise 0 and 0.0 apart) stay the same
    recover_epochs: float = 0

    def __post_init__(self):
        check(self.recover_epochs >= 0, "method.recover_epochs", f"must be >= 0, got {self.recover_epochs}")


def sum_budgets(budgets: list) -> Optional[dict]:
    """Training budgets added up (a pipeline's recovery + its steps' training), None when nothing trained."""
    budgets = [b for b in budgets if b]
    if not budgets:
        return None
    total = {key: sum(b.get(key, 0) for b in budgets) for key in ("optimizer_steps", "examples_seen", "wall_s")}
    total["wall_s"] = round(total["wall_s"], 1)
    total["runs"] = sum(b.get("runs", 1) for b in budgets)
    return total


def check_calibration(config) -> None:
    """Shared validation for methods that read `calibration_samples` in batches of `batch_size`."""
    check(config.calibration_samples >= 1, "method.calibration_samples", f"must be >= 1, got {config.calibration_samples}")
    check(config.batch_size >= 1, "method.batch_size", f"must be >= 1, got {config.batch_size}")


def check_exactly_one(config, first: str, second: str) -> None:
    """For a pair of alternative parameters (e.g. rank / energy): exactly one must be set."""
    check((getattr(config, first) is None) != (getattr(config, second) is None), f"method.{first}",
          f"give exactly one of method.{first} and method.{second} (set the other to null)")


def cuda_capability_reason(minimum: tuple[int, int], feature_needs: str) -> Optional[str]:
    """Why the visible GPU cannot run a feature (compute capability below `minimum`), or None.
    `feature_needs` starts the sentence: "fp8 needs", "2:4 sparse kernels need"."""
    import torch

    if torch.cuda.is_available() and torch.cuda.get_device_capability() < minimum:
        major, minor = torch.cuda.get_device_capability()
        return f"unsupported on cuda: {feature_needs} compute capability >= {minimum[0]}.{minimum[1]}, this GPU has {major}.{minor}"
    return None


@dataclass
class MethodContext:
    """What a method may use besides the model. Built by the runner; cheap to construct."""

    tokenizer: Any
    task: Any  # harness.tasks.TaskData: tokenized train/eval splits + task config
    hardware: Any  # harness.config.HardwareConfig
    seed: int
    cache_dir: str
    calibration_batches: Callable[[int, int], list]  # (num_samples, batch_size) -> list of model-input dicts
    finetune: Callable[..., Any]  # finetune(model, epochs=..., **overrides) -> model (recovery / training)
    teacher: Any = None  # the fine-tuned baseline, for distillation-based methods
    # () -> the pre-trained checkpoint with a freshly initialised task head, for methods whose paper
    # starts from it rather than from the fine-tuned model (movement pruning: Sanh et al. fine-prune)
    pretrained: Optional[Callable[[], Any]] = None


@dataclass
class RuntimeQuantization:
    """What a method hands a runtime whose own tooling quantizes the fp32 model (harness/runtimes/)."""

    scheme: str  # int8_dynamic | int8_static
    calibration: Optional[list] = None  # model-input dicts of training samples (int8_static)


class Method:
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    category: ClassVar[str] = ""  # one of SURVEY_CATEGORIES; build_method refuses a class without one
    provenance: ClassVar[str] = "S"  # one of PROVENANCES
    needs: ClassVar[str] = "nothing"  # what apply() itself reads; needs_for(config) adds the recovery fine-tune
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    # True when apply() leaves weights that must not be fine-tuned afterwards (quantized or cast):
    # a pipeline runs its recovery fine-tune before the first such step.
    freezes_weights: ClassVar[bool] = False
    # True when the work a forward pass does depends on the input (early exit stops at a layer
    # chosen per sample): latency varies across inputs, so the speedup is the ratio of mean
    # latencies over the sampled eval inputs (cost per example), not of p50s (harness.stages.latency).
    input_dependent_compute: ClassVar[bool] = False
    # Part of the training cache key of training methods: bump when the training code changes results.
    training_code_version: ClassVar[int] = 1
    # The paper this method follows, its recipe, compbench's deviations (written into every record).
    reference: ClassVar[Optional[Reference]] = None
    # Its name inside a compound's short label (`ld+hp+int8`, harness.labels); "" = the method's name.
    abbreviation: ClassVar[str] = ""
    # Parameters that select PyTorch kernels only: on another runtime that runtime's own tooling does
    # the work, so they change nothing there and are left out of the label (harness.labels).
    pytorch_only_parameters: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.category and cls.category not in SURVEY_CATEGORIES:
            raise TypeError(f"{cls.__name__}.category {cls.category!r} is not a survey category {SURVEY_CATEGORIES}")
        if cls.provenance not in PROVENANCES or cls.needs not in NEEDS:
            raise TypeError(f"{cls.__name__}: provenance must be one of {PROVENANCES}, needs one of {NEEDS}")
    runtimes: ClassVar[tuple[str, ...]] = ("pytorch",)  # runtime.name values this method's artifact runs on

    def __init__(self, config: MethodConfig):
        self.config = config
        self.info: dict = {}  # what the method did, for the record (backend, achieved sparsity, ...)
        self.sparse = False  # apply() zeroed weights: the record's size reports the sparse storage too
        # what this method's own training or recovery spent (harness.finetune.training_budget), summed over runs
        self.training_budget: dict = {}
        # set by methods.pipeline.Pipeline: this method's model is handed on to the steps after it
        self.in_pipeline = False

    @classmethod
    def needs_for(cls, config: MethodConfig, in_pipeline: bool = False) -> str:
        """What a run of this config needs, decided from the config alone (no model, no method object);
        `in_pipeline`: as a pipeline's step (see Method.in_pipeline)."""
        return "training" if config.recover_epochs > 0 else cls.needs

    def unsupported_reason(self, hardware) -> Optional[str]:
        """None when the method can run on `hardware`, else why not (recorded, never silently skipped)."""
        if hardware.device not in self.devices:
            return f"unsupported on {hardware.device}: {self.config.name} runs on {', '.join(self.devices)} only"
        return None

    def runtime_unsupported_reason(self, runtime: str) -> Optional[str]:
        """None when the method's artifact can run on `runtime`, else why not (recorded as unsupported)."""
        if runtime not in self.runtimes:
            return f"unsupported on runtime {runtime}: {self.config.name} runs on {', '.join(self.runtimes)} only"
        return None

    def runtime_quantization(self, runtime: str, ctx: MethodContext) -> Optional[RuntimeQuantization]:
        """None: apply() makes the model and the runtime converts it as it is. Otherwise the runner skips
        apply() and the runtime quantizes the fp32 model with its own tooling, as this says."""
        return None

    def apply(self, model, ctx: MethodContext):
        """Return a model ready to measure. May modify `model` in place."""
        raise NotImplementedError

    def apply_for_runtime(self, model, ctx: MethodContext, runtime: str) -> tuple[Any, Optional[RuntimeQuantization]]:
        """The model the runtime converts, and what its own quantizer should do to it (None: nothing).
        A method the runtime quantizes leaves the fp32 model as it is; a pipeline applies its float
        steps first (methods/pipeline.py)."""
        quantization = self.runtime_quantization(runtime, ctx)
        return (model if quantization is not None else self.apply(model, ctx)), quantization

    def recover(self, model, ctx: MethodContext):
        """The shared optional recovery fine-tune for structural methods."""
        if self.config.recover_epochs > 0:
            model = ctx.finetune(model, epochs=self.config.recover_epochs, budget=self.budget_entry())
            self.info["recovered_epochs"] = self.config.recover_epochs
        return model

    def budget_entry(self) -> dict:
        """A dict for harness.finetune.train to fill; added to this method's training_budget when read."""
        entry: dict = {}
        self._budget_entries = getattr(self, "_budget_entries", []) + [entry]
        return entry

    def spent_budget(self) -> Optional[dict]:
        """The summed training budget of every run this method made (a cache hit: the run that made it)."""
        entries = [e for e in getattr(self, "_budget_entries", []) if e]
        cached = (self.info.get("training") or {}).get("budget")
        if not entries and cached:
            entries = [cached]
        return sum_budgets(entries)

    def save(self, model, directory: str) -> None:
        """Persist the compressed artifact; its bytes on disk are the record's size.disk_bytes.
        methods.artifacts.load_artifact must rebuild it (the default: safetensors + registered structures)."""
        from methods.artifacts import save_float

        save_float(model, directory)

    def describe(self) -> dict:
        """The record's `method` section (harness.record.MethodSection)."""
        return {
            "name": self.config.name,
            "category": self.category,
            "provenance": self.provenance,
            "needs": self.needs_for(self.config),
            "sparse": self.sparse,
            "input_dependent_compute": self.input_dependent_compute,
            "config": asdict(self.config),
            "reference": asdict(self.reference) if self.reference else None,
            "training_budget": self.spent_budget(),
            **self.info,
        }


@register_method("baseline")
class Baseline(Method):
    """The fine-tuned, uncompressed model: the reference every other cell is compared with."""

    category = "Baseline"
    provenance = ""
    reference = Reference(
        paper="Devlin et al. 2019, BERT",
        recipe="fine-tune the pre-trained checkpoint on the task's training set",
        changes="MiniLM-L6-H384 (Wang et al. 2020) instead of BERT-base: learning rate and epochs searched per task (bench/study.sh)",
    )
    runtimes = ALL_RUNTIMES

    def apply(self, model, ctx):
        return model


def method_class(target: str) -> type[Method]:
    module_name, _, class_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError("method._target_", f"cannot import {target!r}") from None
    check(isinstance(cls, type) and issubclass(cls, Method), "method._target_", f"{target!r} is not a Method")
    check(bool(cls.category), "method._target_", f"{target!r} declares no survey category (class attribute `category`)", SURVEY_CATEGORIES)
    return cls


def build_method_config(raw: dict) -> MethodConfig:
    raw = dict(raw)
    cls = method_class(raw.get("_target_", "methods.base.Baseline"))
    known = {f.name for f in fields(cls.config_class)}
    for key in raw:
        check(key in known, f"method.{key}", f"is not a parameter of {raw.get('name', cls.__name__)}", sorted(known - {"_target_"}))
    try:
        return cls.config_class(**raw)
    except TypeError as err:
        raise ConfigError("method", str(err)) from None


def build_method(config: MethodConfig) -> Method:
    return method_class(config._target_)(config)
