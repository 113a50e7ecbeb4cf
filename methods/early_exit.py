"""Early exit: DeeBERT off-ramps with an entropy threshold, or PABEE patience.

An off-ramp after every encoder layer but the last (DeeBERT: pooler-like dense + tanh, dropout,
classifier); the last layer exits through the model's own head. A ramp reads the layer's [CLS] state (`pooling: cls`, DeeBERT) or the masked
mean of its tokens (`pooling: mean`, the default): on sentence-transformers checkpoints such as the
embedded all-MiniLM-L6-v2 the intermediate [CLS] states are nearly the same for every input (measured
on SST-2: across-sample std ~0.001 at norm ~8 in layers 1-3; the cls ramps of layers 1-4 each
predicted a single class after training, the mean ramps reached 0.72-0.75 accuracy from layer 1).
Ramps start from a fresh init (std = initializer_range): copies of the final pooler saturate tanh
on intermediate states. The ramps are trained on the frozen fine-tuned backbone
(DeeBERT's second stage: one forward of the backbone without gradients per batch, the sum of the
ramps' losses); the backbone is never changed, so the final exit is exactly the baseline.

`EarlyExitModel` runs the embeddings and then the layers one at a time and decides per sample:

    entropy   (DeeBERT) exit after layer i when the entropy of the ramp's softmax is < threshold.
              threshold 0: never exits early (the plain model, bit for bit); threshold >= ln(C)
              (or .inf): every sample exits after layer 1.
    patience  (PABEE) exit when the argmax has stayed the same for `patience` consecutive layers
              (patience 0: exit after layer 1; patience >= L - 1: the plain model). On a regression
              task (one output, STS-B) a prediction counts as unchanged when it moved by less than
              `regression_threshold` from the previous layer's (PABEE's rule for regression); the
              ramps then train with the squared error, as the model's own head.

Batches: exits are per sample at every batch size. A sample that exits is removed from the batch,
the others go on with a smaller batch, so each sample's output and exit layer are the same as at
batch 1 (up to padding numerics) and the FLOPs hooks count only the rows still running. At batch 1
the loop really stops, so measured latency reflects the exit; at batch > 1 the call lasts until
the slowest sample exits (its cost shrinks as samples leave).

Sweeping threshold / patience / mode never retrains: the ramps are cached under a key that leaves
those fields out. info["avg_exit_layer"], the exit histogram and info["flops_per_sample_estimate"]
(hooks, real eval lengths) are computed on the eval split (`stats_samples` examples).

Supported: BERT-style sequence classification and regression (BertForSequenceClassification and
models with the same layout: base_model.embeddings / encoder.layer / pooler, model.dropout /
classifier); regression in patience mode only (entropy needs classes). Not extractive QA.

Artifact: the backbone through save_pretrained + ramps.safetensors + compbench_artifact.json
(format "early_exit"); `load_artifact(directory)` rebuilds it (the format is registered here).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UnsupportedError, check
from harness.tasks.types import MODEL_INPUTS
from methods.base import Method, Reference
from methods.artifacts import register_format, write_marker
from methods.training import TrainingMethodConfig, cached_training, run_training
from methods.registry import register_method

MODES = ("entropy", "patience")
RAMPS_FILE = "ramps.safetensors"
RAMPS_META = "ramps.json"


POOLINGS = ("cls", "mean")


def pool(hidden: torch.Tensor, attention_mask: Optional[torch.Tensor], pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)


class Ramp(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.tanh(self.dense(pooled))))


class RampSet(nn.Module):
    """The trained ramps, cacheable on their own (the backbone is keyed by its weights)."""

    def __init__(self, num_ramps: int, hidden_size: int, num_labels: int, dropout: float, pooling: str = "cls"):
        super().__init__()
        self.meta = {"num_ramps": num_ramps, "hidden_size": hidden_size, "num_labels": num_labels, "dropout": dropout, "pooling": pooling}
        self.pooling = pooling
        self.ramps = nn.ModuleList([Ramp(hidden_size, num_labels, dropout) for _ in range(num_ramps)])

    @classmethod
    def from_model(cls, model, pooling: str = "cls") -> "RampSet":
        """One ramp per layer but the last, freshly initialised like the model's own Linears."""
        base = model.base_model
        num_layers = len(base.encoder.layer)
        dropout = model.dropout.p if isinstance(getattr(model, "dropout", None), nn.Dropout) else 0.1
        ramps = cls(num_layers - 1, model.config.hidden_size, model.classifier.out_features, dropout, pooling)
        std = getattr(model.config, "initializer_range", 0.02)
        for ramp in ramps.ramps:
            for linear in (ramp.dense, ramp.classifier):
                nn.init.normal_(linear.weight, std=std)
                nn.init.zeros_(linear.bias)
        return ramps

    def save_pretrained(self, directory: str, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.ramps.state_dict().items()}, str(Path(directory, RAMPS_FILE)))
        Path(directory, RAMPS_META).write_text(json.dumps(self.meta, indent=1))

    @classmethod
    def load(cls, directory: str) -> "RampSet":
        from safetensors.torch import load_file

        meta = json.loads(Path(directory, RAMPS_META).read_text())
        ramps = cls(**meta)
        ramps.ramps.load_state_dict(load_file(str(Path(directory, RAMPS_FILE))))
        return ramps.eval()


def check_supported(model, task_config, mode: str) -> None:
    if task_config.kind == "squad":
        raise UnsupportedError("unsupported: early_exit covers sequence classification, not extractive QA")
    if task_config.is_regression and mode != "patience":
        raise UnsupportedError("unsupported: early_exit mode=entropy needs classes and this task is a regression; "
                               "method.mode=patience exits on a regression (PABEE, method.regression_threshold)")
    base = getattr(model, "base_model", None)
    ok = (base is not None and hasattr(base, "embeddings") and hasattr(getattr(base, "encoder", None), "layer")
          and getattr(base, "pooler", None) is not None and isinstance(getattr(model, "classifier", None), nn.Linear))
    if not ok:
        raise UnsupportedError(f"unsupported: early_exit needs a BERT-style classifier (embeddings, encoder.layer, pooler, classifier); got {type(model).__name__}")


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


class EarlyExitModel(nn.Module):
    """The backbone + ramps, run layer by layer with per-sample exits (see the module docstring)."""

    def __init__(self, model, ramps: RampSet, mode: str = "entropy", threshold: float = 0.0, patience: int = 3,
                 regression_threshold: float = 0.1):
        super().__init__()
        self.model = model
        self.ramps = ramps
        self.config = model.config
        self.mode, self.threshold, self.patience = mode, float(threshold), int(patience)
        self.regression_threshold = float(regression_threshold)
        self.regression = model.classifier.out_features == 1
        self.last_exit_layers: Optional[torch.Tensor] = None  # 1-based exit layer per sample of the last call

    @property
    def num_layers(self) -> int:
        return len(self.model.base_model.encoder.layer)

    def _mask(self, hidden, attention_mask):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.model.base_model.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def _head(self, hidden):
        """The model's own exit: pooler -> dropout -> classifier (as BertForSequenceClassification)."""
        return self.model.classifier(self.model.dropout(self.model.base_model.pooler(hidden)))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        base = self.model.base_model
        hidden = base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
        batch = hidden.shape[0]
        active = torch.arange(batch, device=hidden.device)  # original row of each running sample
        logits_out = hidden.new_zeros(batch, self.model.classifier.out_features)
        exit_layers = torch.full((batch,), self.num_layers, dtype=torch.long, device=hidden.device)
        mask2d = attention_mask
        mask = self._mask(hidden, mask2d)
        streak = torch.zeros(batch, dtype=torch.long, device=hidden.device)
        previous = None
        for index, layer in enumerate(base.encoder.layer):
            hidden = layer(hidden, mask)
            if index == self.num_layers - 1:
                logits_out[active] = self._head(hidden).to(logits_out.dtype)
                break
            logits = self.ramps.ramps[index](pool(hidden, mask2d, self.ramps.pooling))
            if self.mode == "entropy":
                done = _entropy(logits) < self.threshold
            else:
                prediction = logits[:, 0] if self.regression else logits.argmax(-1)
                if previous is not None:  # layers in a row agreeing with the previous one
                    same = ((prediction - previous).abs() < self.regression_threshold if self.regression
                            else prediction == previous)
                    streak = torch.where(same, streak + 1, torch.zeros_like(streak))
                done = streak >= self.patience
                previous = prediction
            if not bool(done.any()):
                continue
            logits_out[active[done]] = logits[done].to(logits_out.dtype)
            exit_layers[active[done]] = index + 1
            if bool(done.all()):
                break
            keep = ~done
            active, hidden, streak = active[keep], hidden[keep], streak[keep]
            previous = previous[keep] if previous is not None else None
            if mask2d is not None:
                mask2d = mask2d[keep]
            mask = self._mask(hidden, mask2d)
        self.last_exit_layers = exit_layers.detach()
        loss = None if labels is None else ramp_loss(logits_out, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits_out)


def ramp_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of the model's own head: squared error on one output (regression), else cross-entropy."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.view(-1).to(logits.dtype))
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))


class RampTrainingModel(nn.Module):
    """Training view: frozen backbone (eval, no gradients) + trainable ramps, loss = sum over ramps."""

    def __init__(self, model, ramps: RampSet):
        super().__init__()
        self.backbone = model
        self.ramps = ramps
        self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # DeeBERT stage 2: the backbone stays as fine-tuned (no dropout)
        return self

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        with torch.no_grad():
            states = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, output_hidden_states=True).hidden_states
        logits = [ramp(pool(states[i + 1], attention_mask, self.ramps.pooling)) for i, ramp in enumerate(self.ramps.ramps)]
        loss = None
        if labels is not None:
            loss = torch.stack([ramp_loss(l, labels) for l in logits]).sum()
        return SequenceClassifierOutput(loss=loss, logits=logits[-1])


@dataclass
class EarlyExitConfig(TrainingMethodConfig):
    _target_: str = "methods.early_exit.EarlyExit"
    name: str = "early_exit"
    mode: str = "entropy"  # entropy (DeeBERT) | patience (PABEE)
    threshold: float = 0.3  # entropy: exit when the ramp's entropy < threshold (0: never; >= ln(classes): at layer 1)
    patience: int = 2  # patience: exit when the prediction held for this many consecutive layers
    # patience on a regression: a prediction "held" when it moved less than this (label units; STS-B 0-5)
    regression_threshold: float = 0.1
    stats_samples: Optional[int] = 1000  # eval examples for avg_exit_layer / FLOPs (null: the whole split)
    pooling: str = "mean"  # ramp input: mean (masked mean of the layer's tokens) | cls (DeeBERT: the [CLS] state)
    learning_rate: Optional[float] = 1.0e-3  # only the ramps train (heads on frozen features)

    inference_only: ClassVar[tuple[str, ...]] = ("mode", "threshold", "patience", "regression_threshold", "stats_samples")

    def __post_init__(self):
        super().__post_init__()
        check(self.mode in MODES, "method.mode", f"unknown mode {self.mode!r}", MODES)
        check(self.pooling in POOLINGS, "method.pooling", f"unknown pooling {self.pooling!r}", POOLINGS)
        check(self.threshold >= 0, "method.threshold", f"must be >= 0 (.inf allowed), got {self.threshold}")
        check(isinstance(self.patience, int) and self.patience >= 0, "method.patience", f"must be an integer >= 0, got {self.patience}")
        check(self.regression_threshold >= 0, "method.regression_threshold", f"must be >= 0, got {self.regression_threshold}")
        check(self.stats_samples is None or self.stats_samples >= 1, "method.stats_samples", f"must be >= 1 or null, got {self.stats_samples}")


def _eval_batches(ctx, samples: Optional[int], batch_size: int = 32) -> list[dict]:
    from transformers import DataCollatorWithPadding

    split = next(iter(ctx.task.eval.values()))
    features = split.features
    keep = [c for c in features.column_names if c in MODEL_INPUTS]
    count = len(features) if samples is None else min(samples, len(features))
    collate = DataCollatorWithPadding(ctx.tokenizer)
    rows = [{k: features[i][k] for k in keep} for i in range(count)]
    return [collate(rows[i:i + batch_size]) for i in range(0, count, batch_size)]


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def assemble(model, ramps: RampSet, cfg: EarlyExitConfig) -> EarlyExitModel:
    """The early-exit model with the ramps on the backbone's device.

    Cached ramps load on the CPU while the backbone may be on the GPU (the Trainer leaves the
    baseline there when this cell fine-tuned it): one device for all, whichever it is.
    """
    ramps = ramps.to(device_of(model)).eval()
    return EarlyExitModel(model.eval(), ramps, mode=cfg.mode, threshold=cfg.threshold, patience=cfg.patience,
                          regression_threshold=cfg.regression_threshold).eval()


def on_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def exit_statistics(early: EarlyExitModel, plain, batches: list[dict]) -> dict:
    """Average exit layer, histogram and per-sample FLOPs (hooks) vs the plain model, on `batches`
    (moved to the backbone's device: the collator builds them on the CPU)."""
    from harness.measure import count_flops

    exits, flops, full, samples = [], 0.0, 0.0, 0
    was_training = early.training
    early.eval()
    device = device_of(early.model)
    try:
        for batch in (on_device(b, device) for b in batches):
            result = count_flops(early, batch)
            exits.append(early.last_exit_layers.cpu())
            flops += result["flops_per_sample"] * result["batch_size"]
            full += count_flops(plain, batch)["flops_per_sample"] * result["batch_size"]
            samples += result["batch_size"]
    finally:
        early.train(was_training)
    layers = torch.cat(exits)
    histogram = {int(k): int(v) for k, v in zip(*torch.unique(layers, return_counts=True))}
    return {
        "avg_exit_layer": float(layers.float().mean()),
        "exit_layer_histogram": histogram,
        "num_layers": early.num_layers,
        "flops_per_sample_estimate": flops / samples,
        "flops_per_sample_full_model": full / samples,
        "flops_ratio": flops / full if full else None,
        "stats_samples": samples,
        "stats_note": "eval split, real lengths, batches of 32 (exits are per sample); FLOPs by the harness hooks, ramps included",
    }


@register_method("early_exit")
class EarlyExit(Method):
    config_class = EarlyExitConfig
    abbreviation = "exit"
    reference = Reference(
        paper='Xin et al. 2020, DeeBERT; Zhou et al. 2020, PABEE',
        recipe='DeeBERT: fine-tune, then train off-ramps on the frozen backbone, exit when entropy < threshold; PABEE: ramps trained jointly with the backbone, exit after k agreeing ramps',
        changes='patience mode trains its ramps on the frozen backbone (DeeBERT stage 2), not jointly as PABEE',
    )
    category = "Dynamic Inference"
    needs = "training"
    input_dependent_compute = True  # each sample runs until its own exit layer
    training_code_version = 2  # 2: ramps start from a fresh init (not the final pooler / classifier)

    def apply(self, model, ctx):
        cfg = self.config
        check_supported(model, ctx.task.config, cfg.mode)
        model.eval()

        def build():
            torch.manual_seed(ctx.seed)
            ramps = RampSet.from_model(model, cfg.pooling)
            flags = {p: p.requires_grad for p in model.parameters()}
            device = next(model.parameters()).device
            try:
                trained = run_training(self, ctx, student=RampTrainingModel(model, ramps))
            finally:  # the backbone is the runner's model: give it back as it was (device, gradients)
                model.to(device)
                for p, flag in flags.items():
                    p.requires_grad_(flag)
            return trained.ramps.to("cpu").eval(), {"ramps": ramps.meta["num_ramps"]}

        ramps = cached_training(self, ctx, model, build, RampSet.load)
        early = assemble(model, ramps, cfg)
        regression = ramps.meta["num_labels"] == 1
        self.info.update(mode=cfg.mode, pooling=cfg.pooling, threshold=cfg.threshold if cfg.mode == "entropy" else None,
                         patience=cfg.patience if cfg.mode == "patience" else None, ramps=ramps.meta["num_ramps"],
                         regression_threshold=cfg.regression_threshold if regression else None,
                         max_entropy=None if regression else math.log(ramps.meta["num_labels"]),
                         batch_behaviour="per-sample exits; exited samples leave the batch, the rest continue")
        if ctx.task.eval:
            self.info.update(exit_statistics(early, model, _eval_batches(ctx, cfg.stats_samples)))
        return early

    def save(self, model, directory: str) -> None:
        save_early_exit(model, directory)


def save_early_exit(model: EarlyExitModel, directory: str) -> None:
    model.model.save_pretrained(directory, safe_serialization=True)
    model.ramps.save_pretrained(directory)
    write_marker(directory, model.model.config, format="early_exit", mode=model.mode, threshold=model.threshold if math.isfinite(model.threshold) else "inf", patience=model.patience,
                 regression_threshold=model.regression_threshold)


@register_format("early_exit")
def load_early_exit(directory: str, config, marker: dict) -> EarlyExitModel:
    import transformers

    model_class = getattr(transformers, (config.architectures or ["BertForSequenceClassification"])[0])
    backbone = model_class.from_pretrained(directory).eval()
    return EarlyExitModel(backbone, RampSet.load(directory), mode=marker["mode"], threshold=float(marker["threshold"]),
                          patience=marker["patience"], regression_threshold=marker.get("regression_threshold", 0.1)).eval()
