"""The survey's own Table 1 rows (packaged CSV), shown beside measured rows of the same method.

A mapping exists only where our method is the method the survey row measured. Deliberately NOT
mapped, because the survey row is a different method under a similar name:
  dynamic_int8 / static_int8   vs Q-BERT (Hessian mixed precision) and GOBO (outlier-aware clustering)
  layer_drop                   vs Lin et al. 2020 (spectral-normalised identity prior, not top-layer drop)
  head_prune                   (Michel et al. 2019 has no Table 1 row)
  kd_logits                    vs DistilBERT (triple-loss distillation during pre-training)
  magnitude                    vs RPP (reweighted proximal) and IMP (lottery ticket with rewinding)
Published figures come from other hardware, other baselines and mixed dev/test splits: they sit
beside measured rows for orientation, never in a frontier or an average.
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
import pandas as pd

SOURCE = "published: Ganesh et al. 2021"
# Prune OFA's own rows (its paper, its models), listed only with published="all": Zafrir et al.
# prune during pre-training (100k steps x 256), so no task-level recipe here (recipe_gmp_kd_qat runs
# its steps on task data) is drawn beside them.
PRUNE_OFA_SOURCE = "published: Zafrir et al. 2021 (Prune OFA, its own models)"
# A survey row of the same category (family) as a measured row, not the same method: context only.
SOURCE_FAMILY = "published, same family: Ganesh et al. 2021 (BERT-base, their hardware)"
SURVEY_TASK_COLUMNS = {"mnli": "mnli", "qqp": "qqp", "sst2": "sst2", "squad_v1.1": "squad_f1"}
PUBLISHED_MODEL = "as published"  # the survey row's own model (BERT-base unless the row is a checkpoint)
BERT_BASE_MODELS = {"bert_base", "bert-base", "bert_base_uncased", "bert-base-uncased", "bert_base_cased"}

# our method name -> survey `method` label (the CSV's method column)
METHOD_TO_SURVEY = {
    "movement_prune": "Movement pruning (3% encoder weights)",
    "lottery_ticket": "Lottery-ticket subnetworks (IMP)",
    "kd_tinybert": "TinyBERT (4-layer, 312-hidden)",
    "kd_minilm": "MiniLM (6-layer, 768-hidden)",
    "deebert": "DeeBERT (early exit)",
    "power_bert": "PoWER-BERT (word-vector elimination)",
    "dynabert": "DynaBERT",
    "ladabert": "LadaBERT",
    "gobo": "GOBO",
    "q_bert": "Q-BERT",
}
# A released compressed checkpoint run as our "baseline" method is that survey row itself.
MODEL_TO_SURVEY = {
    "distilbert": "DistilBERT", "distilbert_base": "DistilBERT",
    "mobilebert": "MobileBERT", "albert_base": "ALBERT (base)",
    "tinybert_4l": "TinyBERT (4-layer, 312-hidden)",
}


def packaged_table(name: str) -> pd.DataFrame:
    """A packaged CSV of published rows; its leading '#' lines hold the citation."""
    text = resources.files("harness.report").joinpath(name).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return pd.read_csv(io.StringIO(body), dtype={"provenance": str, "device": str, "markers": str}, keep_default_na=True)


def survey_table() -> pd.DataFrame:
    return packaged_table("ganesh2021_table1.csv")


def prune_ofa_table() -> pd.DataFrame:
    return packaged_table("zafrir2021_pruneofa.csv")


def survey_label(method: str, model: str) -> str | None:
    if method == "baseline":
        return "BERT-base" if model in BERT_BASE_MODELS else MODEL_TO_SURVEY.get(model)
    return METHOD_TO_SURVEY.get(method)


def published_row(survey_row: pd.Series, columns: list[str], source: str = SOURCE) -> dict:
    """A survey row in `table1_numeric`'s schema."""
    notes = [str(survey_row["citation"])]
    if isinstance(survey_row.get("markers"), str):
        notes.append(survey_row["markers"])
    if survey_row.get("confidence") != "high":
        notes.append(f"reconstruction confidence: {survey_row.get('confidence')}")
    row = {
        "category": survey_row["category"], "method": survey_row["method"], "model": PUBLISHED_MODEL, "source": source,
        "provenance": survey_row["provenance"] if isinstance(survey_row["provenance"], str) else "",
        "target_device": survey_row["device"] if isinstance(survey_row["device"], str) else "",
        "size_w_emb_pct": survey_row["size_w_emb_pct"], "size_wo_emb_pct": survey_row["size_wo_emb_pct"],
        "speedup_gpu": survey_row["speedup_gpu"], "speedup_cpu": survey_row["speedup_cpu"], "size_marks": "",
        "avg_drop": survey_row["avg_drop"], "avg_drop_marks": "", "notes": "; ".join(notes),
    }
    for column in columns:
        survey_column = SURVEY_TASK_COLUMNS.get(column)
        row.update({column: survey_row[survey_column] if survey_column else np.nan,
                    column + "_ci_lo": np.nan, column + "_ci_hi": np.nan, column + "_marks": ""})
    return row


def interleave_published(table: pd.DataFrame, columns: list[str], include_all: bool = False) -> pd.DataFrame:
    """Insert each mapped survey row right after the measured row of the same method, then, after the
    last measured row of each category, the survey's other rows of that category (SOURCE_FAMILY):
    where the literature puts that family, on BERT-base and the survey's hardware."""
    survey = survey_table().set_index("method", drop=False)
    exact = {survey_label(str(m).split(" (")[0], model) for m, model in zip(table["method"], table["model"])}
    # The family's published rows follow the last measured row that is comparable with them: a row
    # whose method runs another regime (task-only distillation beside rows distilled during
    # pre-training) never sits beside them, and a category of only such rows gets none.
    comparable = (table["comparable_to_published"].fillna(True).astype(bool) if "comparable_to_published" in table
                  else pd.Series(True, index=table.index))
    last_of_category = {c: i for i, (c, ok) in enumerate(zip(table["category"], comparable)) if ok}
    rows, shown = [], set()
    prune_ofa = [published_row(r, columns, PRUNE_OFA_SOURCE) for _, r in prune_ofa_table().iterrows()]
    for position, (_, measured) in enumerate(table.iterrows()):
        rows.append(measured.to_dict())
        method = str(measured["method"]).split(" (")[0]
        label = survey_label(method, measured["model"])
        if label in survey.index and label not in shown and comparable.iloc[position]:
            rows.append(published_row(survey.loc[label], columns))
            shown.add(label)
        category = measured["category"]
        if last_of_category.get(category) == position and category != "Baseline":
            for name, survey_row in survey[survey["category"].eq(category)].iterrows():
                if name not in shown and name not in exact:
                    rows.append(published_row(survey_row, columns, SOURCE_FAMILY))
                    shown.add(name)
    if include_all:
        rows += [published_row(r, columns) for label, r in survey.iterrows() if label not in shown]
        rows += prune_ofa
    return pd.DataFrame(rows, columns=table.columns)
