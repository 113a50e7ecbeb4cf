"""Named recipes: a registered method with some of its parameters set, under a name of its own
(methods.registry.register_preset). `method=<name>` runs one; its record's label is that name.
"""

from __future__ import annotations

from methods.pipeline import PipelineConfig
from methods.registry import register_preset

# Compound without training: remove 30% of attention heads and 30% of FFN neurons (gradient
# importance on calibration data), then dynamic int8 on torch.ao's eager kernels (no compile step:
# on a 2-core AVX2 box torchao + Inductor spends minutes compiling per input shape). The demo's
# compound row.
register_preset("recipe_prune_int8", PipelineConfig, recover_epochs=0, steps=[
    "head_prune",
    "ffn_prune",
    {"name": "dynamic_int8", "params": {"backend": "torch_ao", "compile": False}},
])

# Compound "real speedup" recipe: distil into an every-other-layer student (kd_logits) -> prune 25% of the
# attention heads (head_prune) -> dynamic int8 (CPU). Each step starts from its registered defaults;
# params override. The teacher for kd_logits is the fine-tuned baseline.
# Full data on a GPU: give steps[0] train_samples: null, epochs: 3 (dynamic_int8 is CPU-only; swap for a GPU int8/fp8 step)
register_preset("recipe_kd_prune_int8", PipelineConfig, recover_epochs=0, steps=[
    {"name": "kd_logits", "params": {"train_samples": 2000, "epochs": 1.0, "alpha": 0.5, "temperature": 2.0,
                                     "student": "subset", "student_layers": "every_other"}},
    {"name": "head_prune", "params": {"fraction": 0.25}},
    {"name": "dynamic_int8", "params": {"backend": "torch_ao"}},
])

# Gradual magnitude pruning to 85% with distillation, then int8 QAT with the sparsity mask locked
# (keep_sparsity) and distillation, both on the task data from the fine-tuned baseline. The steps follow
# Prune Once For All (Zafrir et al. 2021), but Zafrir et al. prune during pre-training (100k steps x 256)
# and fine-tune after: a different regime, so this recipe is not named after it nor drawn beside its rows.
# Full data on a GPU: steps[0] {train_samples: null, epochs: 3}, steps[1] {train_samples: null, epochs: 2}
register_preset("recipe_gmp_kd_qat", PipelineConfig, recover_epochs=0, steps=[
    {"name": "gradual_magnitude", "params": {"train_samples": 2000, "epochs": 1.0, "sparsity": 0.85, "distill": True,
                                             "alpha": 0.9, "temperature": 2.0}},
    {"name": "qat_int8", "params": {"train_samples": 2000, "epochs": 1.0, "keep_sparsity": True, "distill": True,
                                    "alpha": 0.9, "temperature": 2.0}},
])
