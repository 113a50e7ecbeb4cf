"""Knowledge distillation (logits, hidden states, attention) and the training plumbing shared by
every training-based method (movement.py, qat.py, early_exit.py import it from here).

    kd_logits     L = (1-alpha) CE(y, s) + alpha T^2 KL(p_t^T || p_s^T)         (Hinton; DistilBERT)
    kd_hidden     + beta * hidden-state loss over mapped layers                 (PKD: skip / last)
    kd_attention  + gamma * attention loss: TinyBERT MSE on attention scores of mapped layers, or
                  MiniLM KL on the last layer's attention distributions + value relations

The teacher is the fine-tuned baseline (`ctx.teacher`), frozen and in eval mode. The student is
built from config (`method.student`):
    subset      a deep copy of the teacher keeping `student_layers` (default every other layer,
                counted from the top so the last layer stays), initialised from the teacher
    narrow      the teacher's config with `student_config` overrides (e.g. hidden_size, layers),
                randomly initialised (embeddings copied from the teacher when the width matches)
    checkpoint  a pretrained directory (`student_path`, e.g. a TinyBERT/MiniLM general checkpoint)
                sharing the teacher's vocabulary; Hub ids only work online

Attention maps are taken from the query/key/value projections with forward hooks, not from
`output_attentions`: this works with every attention implementation (sdpa, eager, flash) and
gives TinyBERT its pre-softmax scores and MiniLM its value relations.

Training runs in `harness.finetune.train` (the one shared Trainer loop, progress bars, seeds) with
`DistillationTrainer`, and goes through `harness.finetune.cached_finetune`: the key hashes the
student's starting weights, the teacher's weights, the method's training config, the task's data
fingerprints and the seed, so the same (teacher, student, config, data) never trains twice. Wall
time and energy (`harness.measure.EnergyMeter`) go into info["training"].
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError, UnsupportedError, check
from methods.base import Method, MethodConfig

# ----------------------------------------------------------------------------------------------
# Shared training plumbing (used by movement.py, qat.py, early_exit.py)
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainingMethodConfig(MethodConfig):
    """Fields every training-based method has. Defaults finish in minutes on 2 CPU cores."""

    train_samples: Optional[int] = 2000  # training examples (a seeded shuffle of the task's train split); null: all
    epochs: float = 1.0
    learning_rate: Optional[float] = None  # null: the task's fine-tuning learning rate
    batch_size: Optional[int] = None  # null: the task's fine-tuning batch size

    # fields that change only inference, never the trained weights (left out of the cache key)
    inference_only: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        super().__post_init__()
        check(self.recover_epochs == 0, "method.recover_epochs", "training methods train already; set method.epochs instead")
        check(self.train_samples is None or self.train_samples >= 1, "method.train_samples", f"must be >= 1 or null, got {self.train_samples}")
        check(self.epochs > 0, "method.epochs", f"must be > 0, got {self.epochs}")
        check(self.learning_rate is None or self.learning_rate > 0, "method.learning_rate", f"must be > 0 or null, got {self.learning_rate}")
        check(self.batch_size is None or self.batch_size >= 1, "method.batch_size", f"must be >= 1 or null, got {self.batch_size}")

    def training_fields(self) -> dict:
        skip = set(self.inference_only) | {"name", "_target_"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the class name and every state-dict entry (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if isinstance(value, torch.Tensor) and not value.is_quantized and type(value) in (torch.Tensor, nn.Parameter):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        else:  # quantized / subclass tensors, packed params: their repr is deterministic enough to key on
            digest.update(repr(value).encode())
    return digest.hexdigest()


def train_subset(ctx, samples: Optional[int]):
    data = ctx.task.train
    if data is None:
        raise ConfigError("method", "this method trains, but the task has no training data loaded")
    if samples is None or samples >= len(data):
        return data
    return data.shuffle(seed=ctx.seed).select(range(samples))


def effective_finetune(ctx, cfg: TrainingMethodConfig):
    """The task's fine-tuning hyperparameters with the method's overrides."""
    base = ctx.task.config.finetune
    overrides = {}
    if cfg.learning_rate is not None:
        overrides["learning_rate"] = cfg.learning_rate
    if cfg.batch_size is not None:
        overrides["batch_size"] = cfg.batch_size
    return replace(base, **overrides)


def run_training(method: Method, ctx, model, *, student, trainer_class=None, trainer_kwargs=None, data=None):
    """harness.finetune.train on `student` with the method's data slice, epochs and hyperparameters."""
    from harness.finetune import train

    cfg = method.config
    data = train_subset(ctx, cfg.train_samples) if data is None else data
    return train(student, ctx.tokenizer, data, effective_finetune(ctx, cfg), ctx.seed, ctx.hardware.device,
                 epochs=cfg.epochs, trainer_class=trainer_class, **(trainer_kwargs or {}))


def cached_training(method: Method, ctx, model, build: Callable[[], tuple[Any, dict]], load: Callable[[str], Any],
                    teacher=None, extra_key: Optional[dict] = None):
    """Train once per (starting weights, teacher, training config, data, seed); reuse afterwards.

    `build()` returns (trained artifact with save_pretrained, extra info for meta.json);
    `load(directory)` rebuilds it from the cache. Sets method.info["training"].
    """
    from harness import measure
    from harness.finetune import cached_finetune, finetune_key

    cfg = method.config
    data = train_subset(ctx, cfg.train_samples)
    extra = {
        "method": method.__class__.__name__,
        "code_version": getattr(method, "training_version", 1),  # bump on a class when its training code changes
        "training_config": cfg.training_fields(),
        "teacher": model_fingerprint(teacher) if teacher is not None else None,
        "train_samples": len(data),
        **(extra_key or {}),
    }
    key = finetune_key(f"weights:{model_fingerprint(model)}", ctx.task.config, effective_finetune(ctx, cfg), ctx.seed, ctx.task.fingerprints, extra=extra)

    def _build():
        with measure.EnergyMeter(ctx.hardware.device) as meter:
            start = time.perf_counter()
            artifact, info = build()
            seconds = time.perf_counter() - start
        meter.samples = int(math.ceil(len(data) * cfg.epochs))
        return artifact, ctx.tokenizer, {"train_samples": len(data), "epochs": cfg.epochs, "train_wall_s": seconds, "energy": meter.result, **info}

    artifact, info = cached_finetune(key, ctx.cache_dir, _build, load)
    method.info["training"] = {**info, "key": key}
    return artifact


def load_float_model(directory: str, like: nn.Module):
    """Reload a cached float model: its own class when the shapes are uniform, else the artifact loader."""
    config_keys = set(vars(like.config)) if hasattr(like, "config") else set()
    structural = {"compbench_layer_shapes", "compbench_low_rank", "compbench_vocab"}
    if config_keys & structural and any(getattr(like.config, k, None) for k in structural):
        from methods.artifacts import load_artifact

        return load_artifact(directory)
    return type(like).from_pretrained(directory).eval()


@contextlib.contextmanager
def frozen(teacher: Optional[nn.Module], device=None):
    """Teacher in eval mode with no gradients (and on `device`) for the block; restored afterwards."""
    if teacher is None:
        yield None
        return
    flags = {p: p.requires_grad for p in teacher.parameters()}
    was_training = teacher.training
    original_device = next(teacher.parameters()).device
    teacher.eval().requires_grad_(False)
    if device is not None:
        teacher.to(device)
    try:
        yield teacher
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        teacher.train(was_training)
        if device is not None:
            teacher.to(original_device)


def training_device(ctx) -> torch.device:
    return torch.device("cuda" if ctx.hardware.device == "cuda" and torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

LAYER_MAPPINGS = ("skip", "last")
HIDDEN_TARGETS = ("cls", "all")
ATTENTION_LOSSES = ("tinybert", "minilm")


def layer_mapping(student_layers: int, teacher_layers: int, kind: str) -> list[tuple[int, int]]:
    """(student, teacher) hidden-state indices, 1-based (0 is the embedding output).

    skip: student j <-> teacher round(j * Lt / Ls) (PKD-skip; every k-th layer); last: student j <->
    teacher Lt - Ls + j (PKD-last). Student = teacher gives the identity either way.
    """
    check(student_layers <= teacher_layers, "method.student_layers", f"the student has {student_layers} layers, more than the teacher's {teacher_layers}")
    if kind == "skip":
        return [(j, int(round(j * teacher_layers / student_layers))) for j in range(1, student_layers + 1)]
    return [(j, teacher_layers - student_layers + j) for j in range(1, student_layers + 1)]


def _logit_fields(output) -> list[torch.Tensor]:
    if getattr(output, "logits", None) is not None:
        return [output.logits]
    return [output.start_logits, output.end_logits]  # extractive QA


def soft_loss(student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], temperature: float, regression: bool) -> torch.Tensor:
    """T^2 KL(p_t^T || p_s^T) (batch mean), averaged over logit fields; MSE for regression."""
    losses = []
    for s, t in zip(student_logits, teacher_logits):
        if regression:
            losses.append(F.mse_loss(s.float(), t.float()))
            continue
        s_log = F.log_softmax(s.float() / temperature, dim=-1)
        t_log = F.log_softmax(t.float() / temperature, dim=-1)
        losses.append(F.kl_div(s_log, t_log, log_target=True, reduction="batchmean") * temperature**2)
    return torch.stack(losses).mean()


def hidden_loss(student_states, teacher_states, mapping, target: str, attention_mask, projection: Optional[nn.Module]) -> torch.Tensor:
    """cls: squared distance of L2-normalised [CLS] states (PKD); all: MSE over real tokens (TinyBERT)."""
    losses = []
    for s_index, t_index in mapping:
        s, t = student_states[s_index], teacher_states[t_index].detach()
        if projection is not None:
            s = projection(s)
        if target == "cls":
            s_cls = F.normalize(s[:, 0].float(), dim=-1)
            t_cls = F.normalize(t[:, 0].float(), dim=-1)
            losses.append((s_cls - t_cls).pow(2).sum(-1).mean())
        else:
            mask = attention_mask.unsqueeze(-1).to(s.dtype) if attention_mask is not None else torch.ones_like(s[..., :1])
            squared = (s.float() - t.float()).pow(2) * mask
            losses.append(squared.sum() / (mask.sum() * s.shape[-1]).clamp_min(1))
    return torch.stack(losses).mean()


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, seq, width = x.shape
    return x.view(batch, seq, heads, width // heads).transpose(1, 2)  # (B, h, n, d)


def attention_scores(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    qh, kh = _split_heads(q, heads), _split_heads(k, heads)
    return qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1])


def tinybert_attention_loss(student_qkv, teacher_qkv, mapping, student_heads: int, teacher_heads: int, attention_mask) -> torch.Tensor:
    """MSE between pre-softmax attention scores of mapped layers, over real (query, key) pairs."""
    if student_heads != teacher_heads:
        raise ConfigError("method.attention_loss", f"tinybert needs equal head counts (student {student_heads}, teacher {teacher_heads}); use minilm")
    losses = []
    for s_index, t_index in mapping:
        s = attention_scores(student_qkv[s_index - 1]["query"], student_qkv[s_index - 1]["key"], student_heads).float()
        t = attention_scores(teacher_qkv[t_index - 1]["query"], teacher_qkv[t_index - 1]["key"], teacher_heads).float()
        if attention_mask is not None:
            valid = attention_mask[:, None, :, None].bool() & attention_mask[:, None, None, :].bool()
            valid = valid.expand_as(s)
            losses.append(((s - t).pow(2) * valid).sum() / valid.sum().clamp_min(1))
        else:
            losses.append(F.mse_loss(s, t))
    return torch.stack(losses).mean()


def _relation_kl(s_a, s_b, t_a, t_b, relation_heads: int, attention_mask) -> torch.Tensor:
    """KL(softmax(t_a t_b^T / sqrt(d)) || softmax(s_a s_b^T / sqrt(d))) over relation heads (MiniLM)."""
    s = attention_scores(s_a, s_b, relation_heads).float()
    t = attention_scores(t_a, t_b, relation_heads).float()
    if attention_mask is not None:
        key_pad = ~attention_mask[:, None, None, :].bool()
        s = s.masked_fill(key_pad, torch.finfo(s.dtype).min)
        t = t.masked_fill(key_pad, torch.finfo(t.dtype).min)
    s_log, t_log = F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1)
    kl = (t_log.exp() * (t_log - s_log)).sum(-1)  # (B, R, n): per query row
    if attention_mask is not None:
        query = attention_mask[:, None, :].to(kl.dtype)
        return (kl * query).sum() / (query.sum() * relation_heads).clamp_min(1)
    return kl.mean()


def minilm_attention_loss(student_qkv, teacher_qkv, relation_heads: int, attention_mask) -> torch.Tensor:
    """Last-layer attention distributions (Q-K) + value relations (V-V), MiniLM(-v2 heads)."""
    s, t = student_qkv[-1], teacher_qkv[-1]
    for name, width in (("student", s["query"].shape[-1]), ("teacher", t["query"].shape[-1])):
        if width % relation_heads:
            raise ConfigError("method.relation_heads", f"must divide the {name}'s attention width {width}, got {relation_heads}")
    attention = _relation_kl(s["query"], s["key"], t["query"], t["key"], relation_heads, attention_mask)
    values = _relation_kl(s["value"], s["value"], t["value"], t["value"], relation_heads, attention_mask)
    return attention + values


class QKVRecorder:
    """Forward hooks capturing the query/key/value projection outputs of every encoder layer."""

    def __init__(self, model: nn.Module):
        from methods.structured import encoder_layers, layer_parts

        self.outputs: list[dict] = []
        self._handles = []
        for index, layer in enumerate(encoder_layers(model)):
            self.outputs.append({})
            parts = layer_parts(layer)
            for name in ("query", "key", "value"):
                self._handles.append(getattr(parts, name).register_forward_hook(self._hook(index, name)))

    def _hook(self, index: int, name: str):
        def hook(_module, _args, output):
            self.outputs[index][name] = output

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def num_heads(model: nn.Module) -> int:
    from methods.structured import encoder_layers, layer_parts

    counts = {layer_parts(layer).num_heads for layer in encoder_layers(model)}
    if len(counts) != 1:
        raise ConfigError("method.attention_loss", f"per-layer head counts differ ({sorted(counts)}); attention distillation needs uniform heads")
    return counts.pop()


def hidden_width(model: nn.Module) -> int:
    return model.config.hidden_size


class DistillLoss(nn.Module):
    """The loss terms; a module so the hidden-state projection is trained with the student."""

    def __init__(self, *, alpha: float = 0.5, temperature: float = 2.0, beta: float = 0.0, gamma: float = 0.0,
                 layer_map: str = "skip", hidden_target: str = "cls", attention_loss: str = "tinybert",
                 relation_heads: Optional[int] = None, regression: bool = False, student=None, teacher=None):
        super().__init__()
        self.alpha, self.temperature, self.beta, self.gamma = alpha, temperature, beta, gamma
        self.hidden_target, self.attention_loss, self.regression = hidden_target, attention_loss, regression
        self.mapping, self.projection, self.heads = None, None, None
        self.relation_heads = relation_heads
        if teacher is not None and (beta > 0 or gamma > 0):
            from methods.structured import encoder_layers

            self.mapping = layer_mapping(len(encoder_layers(student)), len(encoder_layers(teacher)), layer_map)
        if teacher is not None and beta > 0 and hidden_width(student) != hidden_width(teacher):
            self.projection = nn.Linear(hidden_width(student), hidden_width(teacher))  # TinyBERT's W_h
        if teacher is not None and gamma > 0:
            self.heads = (num_heads(student), num_heads(teacher))
            if attention_loss == "minilm" and self.relation_heads is None:
                self.relation_heads = self.heads[1]

    @property
    def uses_teacher(self) -> bool:
        return self.alpha > 0 or self.beta > 0 or self.gamma > 0

    def components(self, student, teacher, inputs: dict) -> tuple[dict, Any]:
        """Every loss term (unweighted) for one batch, and the student's outputs."""
        need_hidden, need_qkv = self.beta > 0, self.gamma > 0
        mask = inputs.get("attention_mask")
        teacher_out, teacher_qkv = None, None
        if teacher is not None and self.uses_teacher:
            model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "start_positions", "end_positions")}
            with torch.no_grad(), (QKVRecorder(teacher) if need_qkv else contextlib.nullcontext()) as recorder:
                teacher_out = teacher(**model_inputs, output_hidden_states=need_hidden)
                teacher_qkv = recorder.outputs if need_qkv else None
        with (QKVRecorder(student) if need_qkv else contextlib.nullcontext()) as recorder:
            student_out = student(**inputs, output_hidden_states=need_hidden)
            student_qkv = recorder.outputs if need_qkv else None
        terms = {}
        if student_out.loss is not None:
            terms["hard"] = student_out.loss
        if teacher_out is not None:
            if self.alpha > 0:
                terms["soft"] = soft_loss(_logit_fields(student_out), _logit_fields(teacher_out), self.temperature, self.regression)
            if need_hidden:
                terms["hidden"] = hidden_loss(student_out.hidden_states, teacher_out.hidden_states, self.mapping, self.hidden_target, mask, self.projection)
            if need_qkv:
                if self.attention_loss == "tinybert":
                    terms["attention"] = tinybert_attention_loss(student_qkv, teacher_qkv, self.mapping, *self.heads, mask)
                else:
                    terms["attention"] = minilm_attention_loss(student_qkv, teacher_qkv, self.relation_heads, mask)
        return terms, student_out

    def total(self, terms: dict) -> torch.Tensor:
        hard = terms.get("hard")
        if "soft" in terms:
            loss = self.alpha * terms["soft"] + ((1 - self.alpha) * hard if hard is not None else 0.0)
        else:
            if hard is None:
                raise ValueError("no loss: the batch has no labels and no teacher term is enabled")
            loss = hard
        if "hidden" in terms:
            loss = loss + self.beta * terms["hidden"]
        if "attention" in terms:
            loss = loss + self.gamma * terms["attention"]
        return loss


# ----------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------


def _distillation_trainer_class():
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        """Trainer whose loss is DistillLoss (teacher frozen, eval mode) plus optional extra terms.

        `extra_loss(model) -> tensor` adds a regulariser; `param_groups` are extra optimizer groups
        ({"params": [...], "lr": ..., "weight_decay": ...}) whose parameters leave the default groups.
        Per-term running losses are kept in `loss_history` for the record.
        """

        def __init__(self, *args, teacher=None, distill: Optional[DistillLoss] = None, extra_loss=None, param_groups=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher = teacher
            self.distill = distill if distill is not None else DistillLoss(alpha=0.0)
            self.distill.to(self.args.device)
            self.extra_loss = extra_loss
            self.param_groups = list(param_groups or [])
            self.loss_history: list[dict] = []
            self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean

        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            special = {id(p) for group in self.param_groups for p in group["params"]}
            if special:
                for group in optimizer.param_groups:
                    group["params"] = [p for p in group["params"] if id(p) not in special]
            for group in self.param_groups:
                optimizer.add_param_group(dict(group))
            projection = [p for p in self.distill.parameters() if p.requires_grad]
            if projection:
                optimizer.add_param_group({"params": projection, "weight_decay": 0.0})
            return optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            terms, outputs = self.distill.components(model, self.teacher, inputs)
            loss = self.distill.total(terms)
            if self.extra_loss is not None:
                extra = self.extra_loss(model)
                if extra is not None:
                    terms["regulariser"] = extra
                    loss = loss + extra
            if model.training:
                self.loss_history.append({"total": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}})
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer


_TRAINER_CLASS = None


def distillation_trainer_class():
    """DistillationTrainer, built on first use so importing this module does not import the Trainer."""
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        _TRAINER_CLASS = _distillation_trainer_class()
    return _TRAINER_CLASS


def __getattr__(name: str):
    if name == "DistillationTrainer":
        return distillation_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def summarize_losses(history: list[dict], window: int = 10) -> dict:
    """Mean of each term over the first and the last `window` steps: did the loss go down?"""
    if not history:
        return {}
    window = max(1, min(window, len(history) // 2 or 1))
    keys = sorted({k for h in history for k in h})

    def mean(rows, key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    return {"steps": len(history), "first": {k: mean(history[:window], k) for k in keys}, "last": {k: mean(history[-window:], k) for k in keys}}


def train_with_distillation(method: Method, ctx, model, student, distill: DistillLoss, teacher=None,
                            callbacks=None, extra_loss=None, param_groups=None) -> tuple[nn.Module, dict]:
    """One DistillationTrainer run (teacher frozen for its duration); returns (student, loss summary)."""
    trainer_class = distillation_trainer_class()
    holder = {}

    class _Recording(trainer_class):  # keeps a handle on the trainer for its loss history
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            holder["trainer"] = self

    device = training_device(ctx)
    with frozen(teacher if distill.uses_teacher else None, device):
        student = run_training(method, ctx, model, student=student, trainer_class=_Recording, trainer_kwargs={
            "teacher": teacher if distill.uses_teacher else None, "distill": distill, "callbacks": callbacks,
            "extra_loss": extra_loss, "param_groups": param_groups,
        })
    student.to("cpu")  # the runner moves the final model to the measured device
    return student, summarize_losses(holder["trainer"].loss_history)


# ----------------------------------------------------------------------------------------------
# Students
# ----------------------------------------------------------------------------------------------

STUDENTS = ("subset", "narrow", "checkpoint")


def student_layer_ids(num_layers: int, spec) -> list[int]:
    """0-based teacher layers the subset student keeps.

    "every_other": L-1, L-3, ... (the last layer stays, so PKD-skip maps student j to teacher 2j);
    an int n: n layers spread evenly, ending at the last; a list: those layers.
    """
    if spec == "every_other":
        return sorted(range(num_layers - 1, -1, -2))
    if isinstance(spec, int) and not isinstance(spec, bool):
        check(1 <= spec <= num_layers, "method.student_layers", f"must be between 1 and {num_layers}, got {spec}")
        return sorted({int(round((j + 1) * num_layers / spec)) - 1 for j in range(spec)})
    if isinstance(spec, (list, tuple)):
        ids = sorted({int(i) for i in spec})
        check(ids and all(0 <= i < num_layers for i in ids), "method.student_layers", f"layer ids must be in [0, {num_layers}), got {list(spec)}")
        return ids
    raise ConfigError("method.student_layers", f"unknown value {spec!r}", "every_other, an int, or a list of 0-based layer ids")


def build_student(cfg, teacher: nn.Module, ctx) -> tuple[nn.Module, dict]:
    """The student model and a description of it for the record."""
    from methods import structured

    if cfg.student == "subset":
        student = copy.deepcopy(teacher)
        kept = student_layer_ids(len(structured.encoder_layers(student)), cfg.student_layers)
        structured.keep_layers(student, kept)
        return student.train(), {"student": "subset", "kept_layers": kept}
    if cfg.student == "narrow":
        config = copy.deepcopy(teacher.config)
        for key in (structured.SHAPES_KEY, structured.KEPT_HEADS_KEY, structured.KEPT_LAYERS_KEY):
            if hasattr(config, key):
                delattr(config, key)
        for key, value in (cfg.student_config or {}).items():
            check(hasattr(config, key), f"method.student_config.{key}", f"is not a field of {type(config).__name__}")
            setattr(config, key, value)
        torch.manual_seed(ctx.seed)
        student = type(teacher)(config)
        copied = False
        embeddings = getattr(teacher.base_model, "embeddings", None)
        if embeddings is not None and config.hidden_size == teacher.config.hidden_size:
            student.base_model.embeddings.load_state_dict(embeddings.state_dict())
            copied = True
        return student.train(), {"student": "narrow", "student_config": dict(cfg.student_config or {}), "embeddings_from_teacher": copied}
    from harness.models import head_class, head_kwargs

    try:
        student = head_class(ctx.task.config).from_pretrained(cfg.student_path, trust_remote_code=False, use_safetensors=True, **head_kwargs(ctx.task.config))
    except OSError as err:
        raise UnsupportedError(f"student checkpoint {cfg.student_path!r} is not available here (offline?): {str(err).splitlines()[0]}") from None
    vocab = getattr(teacher.config, "vocab_size", None)
    check(student.config.vocab_size == vocab, "method.student_path", f"the student's vocabulary ({student.config.vocab_size}) differs from the teacher's ({vocab}); KD feeds both the same token ids")
    return student.train(), {"student": "checkpoint", "student_path": cfg.student_path}


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------


@dataclass
class KdLogitsConfig(TrainingMethodConfig):
    _target_: str = "methods.distillation.KdLogits"
    name: str = "kd_logits"
    alpha: float = 0.5  # weight of the soft (teacher) loss; 1 - alpha on the hard-label CE
    temperature: float = 2.0
    student: str = "subset"  # subset | narrow | checkpoint
    student_layers: Any = "every_other"  # subset: "every_other", an int, or a list of 0-based teacher layers
    student_config: dict = field(default_factory=dict)  # narrow: overrides of the teacher's config
    student_path: Optional[str] = None  # checkpoint: local directory (or Hub id, online only)
    learning_rate: Optional[float] = 5.0e-5

    def __post_init__(self):
        super().__post_init__()
        check(0 <= self.alpha <= 1, "method.alpha", f"must be in [0, 1], got {self.alpha}")
        check(self.temperature > 0, "method.temperature", f"must be > 0, got {self.temperature}")
        check(self.student in STUDENTS, "method.student", f"unknown student {self.student!r}", STUDENTS)
        if self.student == "checkpoint":
            check(bool(self.student_path), "method.student_path", "give the pretrained student's directory (student=checkpoint)")
        if self.student == "narrow":
            check(bool(self.student_config), "method.student_config", "give the overrides of the teacher's config, e.g. {hidden_size: 256, num_hidden_layers: 4, intermediate_size: 1024, num_attention_heads: 4}")
        if self.student == "subset" and isinstance(self.student_layers, str):
            check(self.student_layers == "every_other", "method.student_layers", f"unknown value {self.student_layers!r}", "every_other, an int, or a list of 0-based layer ids")


@dataclass
class KdHiddenConfig(KdLogitsConfig):
    _target_: str = "methods.distillation.KdHidden"
    name: str = "kd_hidden"
    beta: float = 1.0  # weight of the hidden-state loss
    layer_mapping: str = "skip"  # skip | last (PKD)
    hidden_target: str = "cls"  # cls: normalised [CLS] states (PKD); all: MSE on every token (TinyBERT)

    def __post_init__(self):
        super().__post_init__()
        check(self.beta >= 0, "method.beta", f"must be >= 0, got {self.beta}")
        check(self.layer_mapping in LAYER_MAPPINGS, "method.layer_mapping", f"unknown mapping {self.layer_mapping!r}", LAYER_MAPPINGS)
        check(self.hidden_target in HIDDEN_TARGETS, "method.hidden_target", f"unknown target {self.hidden_target!r}", HIDDEN_TARGETS)


@dataclass
class KdAttentionConfig(KdHiddenConfig):
    _target_: str = "methods.distillation.KdAttention"
    name: str = "kd_attention"
    gamma: float = 1.0  # weight of the attention loss
    attention_loss: str = "tinybert"  # tinybert: MSE on mapped layers' scores; minilm: last-layer KL on attention + values
    relation_heads: Optional[int] = None  # minilm: relation heads (null: the teacher's head count)
    hidden_target: str = "all"  # TinyBERT's hidden loss covers every token

    def __post_init__(self):
        super().__post_init__()
        check(self.gamma >= 0, "method.gamma", f"must be >= 0, got {self.gamma}")
        check(self.attention_loss in ATTENTION_LOSSES, "method.attention_loss", f"unknown loss {self.attention_loss!r}", ATTENTION_LOSSES)
        check(self.relation_heads is None or self.relation_heads >= 1, "method.relation_heads", f"must be >= 1 or null, got {self.relation_heads}")


class KdLogits(Method):
    """Distil the fine-tuned baseline into a student built from config."""

    config_class = KdLogitsConfig
    needs: ClassVar[str] = "training"

    def distill_loss(self, student, teacher, ctx) -> DistillLoss:
        cfg = self.config
        return DistillLoss(alpha=cfg.alpha, temperature=cfg.temperature, beta=getattr(cfg, "beta", 0.0), gamma=getattr(cfg, "gamma", 0.0),
                           layer_map=getattr(cfg, "layer_mapping", "skip"), hidden_target=getattr(cfg, "hidden_target", "cls"),
                           attention_loss=getattr(cfg, "attention_loss", "tinybert"), relation_heads=getattr(cfg, "relation_heads", None),
                           regression=ctx.task.config.is_regression, student=student, teacher=teacher)

    def apply(self, model, ctx):
        teacher = ctx.teacher if ctx.teacher is not None else model
        torch.manual_seed(ctx.seed)
        student, description = build_student(self.config, model, ctx)
        distill = self.distill_loss(student, teacher, ctx)  # validates head counts / widths before training
        self.info.update(description)

        def build():
            trained, losses = train_with_distillation(self, ctx, model, student, distill, teacher=teacher)
            return trained, {"losses": losses}

        trained = cached_training(self, ctx, model, build, lambda d: load_float_model(d, student), teacher=teacher)
        from methods.structured import encoder_layers

        self.info.update(student_layers=len(encoder_layers(trained)), student_hidden_size=trained.config.hidden_size,
                         teacher_layers=len(encoder_layers(teacher)), losses=self.info["training"].get("losses"))
        return trained.eval()


class KdHidden(KdLogits):
    config_class = KdHiddenConfig


class KdAttention(KdLogits):
    config_class = KdAttentionConfig
