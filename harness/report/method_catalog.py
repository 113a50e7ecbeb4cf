"""Survey category and provenance (A = task-agnostic, S = task-specific) per method name.

The runner may write `method.category` / `method.provenance` into a record; those win, so a new
method never needs an edit here to be grouped correctly. Unknown names fall back to prefix rules,
then to "Other" with provenance "".
"""

from __future__ import annotations

from typing import Optional

# Row-group order of the survey's Table 1; "Other" last so unmapped methods stay visible.
CATEGORY_ORDER = (
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
    "Other",
)

# name -> (category, provenance). Provenance follows the survey: our methods compress a model that
# is already fine-tuned, so almost all are task-specific (S).
METHODS: dict[str, tuple[str, str]] = {
    "baseline": ("Baseline", ""),
    "dynamic_int8": ("Quantization", "S"),
    "static_int8": ("Quantization", "S"),
    "qat_int8": ("Quantization", "S"),
    "torchao_int8": ("Quantization", "S"),
    "weight_only_int8": ("Quantization", "S"),
    "weight_only_int4": ("Quantization", "S"),
    "int4_weight_only": ("Quantization", "S"),
    "fp16": ("Quantization", "S"),
    "bf16": ("Quantization", "S"),
    "fp8": ("Quantization", "S"),
    "bnb_int8": ("Quantization", "S"),
    "bnb_nf4": ("Quantization", "S"),
    "magnitude_prune": ("Unstructured Pruning", "S"),
    "movement_prune": ("Unstructured Pruning", "S"),
    "lottery_ticket": ("Unstructured Pruning", "S"),
    "semi_structured_24": ("Unstructured Pruning", "S"),
    "head_prune": ("Structured Pruning", "S"),
    "layer_drop": ("Structured Pruning", "S"),
    "ffn_prune": ("Structured Pruning", "S"),
    "cofi": ("Structured Pruning", "S"),
    "block_prune": ("Structured Pruning", "S"),
    "kd_logits": ("KD from Output Logits", "S"),
    "kd_pkd": ("Multiple KD combined", "S"),
    "kd_hidden": ("Multiple KD combined", "S"),
    "kd_tinybert": ("Multiple KD combined", "A,S"),
    "kd_minilm": ("KD from Attn.", "A"),
    "kd_attention": ("KD from Attn.", "S"),
    "theseus": ("Multiple KD combined", "S"),
    "svd": ("Matrix Decomposition", "S"),
    "low_rank": ("Matrix Decomposition", "S"),
    "embedding_factorization": ("Matrix Decomposition", "S"),
    "vocab_prune": ("Matrix Decomposition", "S"),
    "deebert": ("Dynamic Inference", "S"),
    "pabee": ("Dynamic Inference", "S"),
    "early_exit": ("Dynamic Inference", "S"),
    "power_bert": ("Dynamic Inference", "S"),
    "token_drop": ("Dynamic Inference", "S"),
    "param_sharing": ("Param. Sharing", "S"),
    "prune_kd": ("Pruning with KD", "S"),
    "quant_kd": ("Quantization with KD", "S"),
    "prune_ofa": ("Compound", "A,S"),
    "compound": ("Compound", "S"),
}

# Families named by prefix (kd_logits_t2, layer_drop_6, ...): the longest matching prefix wins.
PREFIXES: dict[str, tuple[str, str]] = {
    "kd_": ("KD from Output Logits", "S"),
    "layer_drop": METHODS["layer_drop"],
    "head_prune": METHODS["head_prune"],
    "ffn_prune": METHODS["ffn_prune"],
    "magnitude": METHODS["magnitude_prune"],
    "movement": METHODS["movement_prune"],
    "svd": METHODS["svd"],
    "compound": METHODS["compound"],
}


def method_category(name: str, described: Optional[dict] = None) -> tuple[str, str]:
    """(category, provenance) for a method name; `described` is the record's `method` section."""
    described = described or {}
    category, provenance = _lookup(str(name or ""))
    category = described.get("category") or category
    provenance = described.get("provenance") or provenance
    return category, provenance


def category_rank(category: str) -> int:
    return CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else len(CATEGORY_ORDER)


def _lookup(name: str) -> tuple[str, str]:
    if name in METHODS:
        return METHODS[name]
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        if name.startswith(prefix):
            return PREFIXES[prefix]
    return ("Other", "")
