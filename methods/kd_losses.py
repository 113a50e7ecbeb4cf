"""Knowledge-distillation losses: soft logits, hidden states, attention (TinyBERT / MiniLM).

    kd_logits     L = (1-alpha) CE(y, s) + alpha T^2 KL(p_t^T || p_s^T)         (Hinton; DistilBERT)
    kd_hidden     + beta * hidden-state loss over mapped layers                 (PKD: skip / last)
    kd_attention  + gamma * attention loss: TinyBERT MSE on attention scores of mapped layers, or
                  MiniLM KL on the last layer's attention distributions + value relations

Attention maps are taken from the query/key/value projections with forward hooks, not from
`output_attentions`: this works with every attention implementation (sdpa, eager, flash) and
gives TinyBERT its pre-softmax scores and MiniLM its value relations.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError, check
from methods.anatomy import encoder_layers, layer_parts

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
