"""What load_task hands the runner: tokenized train data plus eval splits that can score outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from harness.config import TaskConfig

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")  # the tokenizer outputs a model takes


@dataclass
class EvalSplit:
    """Tokenized model inputs for one eval split plus what is needed to turn logits into a score.

    `features` holds only model inputs (input_ids, attention_mask, token_type_ids), so any runner
    can feed it to a model as is; references and span offsets live on the split object.
    """

    name: str
    features: Any  # datasets.Dataset
    examples: list
    task: TaskConfig
    output_names = ("logits",)  # model outputs postprocess needs, in tuple order

    def postprocess(self, outputs: dict[str, np.ndarray]) -> tuple[list, list]:
        raise NotImplementedError


@dataclass
class TaskData:
    config: TaskConfig
    train: Optional[Any]  # datasets.Dataset, or None when need_train=False
    eval: dict[str, EvalSplit]
    fingerprints: dict[str, str]  # data file (relative to the data root) or hub id -> sha256 / revision
    counts: dict[str, int] = field(default_factory=dict)  # "<split>_raw": before subsetting, "<split>": used
    notes: list[str] = field(default_factory=list)


@dataclass
class EvalResult:
    metrics: dict
    predictions: list
    references: list


def token_dataset(columns: dict[str, list], scalar_types: dict[str, str] | None = None):
    """datasets.Dataset of tokenizer output (int32 lists) plus scalar label columns.

    Built through pyarrow with the types given up front: several times faster than letting
    datasets infer and then cast, which matters for SST-2's 67k rows.
    """
    import datasets
    import pyarrow as pa

    scalar_types = scalar_types or {}
    arrays = {
        name: pa.array(values, type=pa.from_numpy_dtype(np.dtype(scalar_types[name])) if name in scalar_types else pa.list_(pa.int32()))
        for name, values in columns.items()
    }
    return datasets.Dataset(pa.table(arrays))
