"""Label parsing shared by the file check and the loader, so both agree on what a bad row is."""

from __future__ import annotations

from typing import Optional, Union

from harness.config import TaskConfig


def parse_label(raw: str, task: TaskConfig) -> Optional[Union[int, float]]:
    """Label id (or float score for regression), or None when the row's label is unusable.

    String labels map by their position in task.label_names; integer labels in [0, num_labels)
    are taken as ids directly (sst2, cola, mrpc, qqp and wnli files store ids).
    """
    text = raw.strip()
    if task.is_regression:
        try:
            return float(text)
        except ValueError:
            return None
    if text in task.label_names:
        return task.label_names.index(text)
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value < task.num_labels else None
