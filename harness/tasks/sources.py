"""Where a task's data comes from (local files or the Hub) and the fast pre-flight check.

`check_task_data` runs before any tokenizer or model is loaded, so a wrong data root, a wrong
header or a truncated download costs milliseconds and a one-line ConfigError, not a failed run.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from harness.config import TaskConfig
from harness.errors import ConfigError, check
from harness.tasks.readers import check_glue_tsv, read_squad_json

_TRUE = {"1", "on", "yes", "true"}
DATA_ROOT_HINT = "set paths.data_root or COMPBENCH_DATA_ROOT to the folder holding glue/ and squad_v1.1/"


def hub_offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def local_files(task: TaskConfig, need_train: bool) -> dict[str, str]:
    """Our split name -> path relative to the data root, for the files this run needs.

    A devsplit task trains on part of its eval file, so it needs no separate train file.
    """
    files = dict(task.local.eval)
    if need_train and not task.devsplit:
        check(bool(task.local.train), "task.local.train", "is not set, so training data can only come from the Hub")
        files["train"] = task.local.train
    return files


def resolve_source(task: TaskConfig, data_root: str, need_train: bool = True, explicit_local: bool = False) -> str:
    """'local' or 'hub'. auto prefers complete local files and falls back to the Hub when online,
    unless the user named the local files (`explicit_local`): then a missing one is an error."""
    hub_reason = None if task.hub.path else "the task has no hub.path"
    if hub_reason is None and hub_offline():
        hub_reason = "HF_HUB_OFFLINE is set"
    if hub_reason is None and explicit_local and task.source != "hub":
        hub_reason = "task.local.* was set explicitly"
    if task.source == "hub":
        check(hub_reason is None, "task.source", f"hub is unavailable: {hub_reason}; use task.source=local with files under the data root")
        return "hub"
    try:
        missing = [rel for rel in local_files(task, need_train).values() if not (Path(data_root) / rel).is_file()]
    except ConfigError:
        if task.source == "local" or hub_reason:
            raise
        return "hub"
    if not missing:
        return "local"
    if task.source == "auto" and hub_reason is None:
        return "hub"
    fallback = "" if task.source == "local" else f"; the Hub fallback is unavailable ({hub_reason})"
    raise ConfigError("task.local", f"{Path(data_root) / missing[0]} not found; {DATA_ROOT_HINT}{fallback}")


def _check_devsplit(task: TaskConfig) -> None:
    if task.devsplit is None:
        return
    rule = dict(task.devsplit)
    every, remainder = rule.pop("every", None), rule.pop("eval_remainder", 0)
    check(not rule, "task.devsplit", f"unknown keys {sorted(rule)}", ["every", "eval_remainder"])
    check(isinstance(every, int) and every >= 2, "task.devsplit.every", f"must be an integer >= 2, got {every!r}")
    check(isinstance(remainder, int) and 0 <= remainder < every, "task.devsplit.eval_remainder", f"must be in [0, {every}), got {remainder!r}")
    check(len(task.local.eval) == 1 or task.source == "hub", "task.local.eval", "a devsplit task needs exactly one eval file")


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    stat = os.stat(path)
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


def hub_key(task: TaskConfig) -> str:
    return f"hub:{task.hub.path}" + (f"/{task.hub.name}" if task.hub.name else "")


def check_task_data(task: TaskConfig, data_root: str, need_train: bool = True, explicit_local: bool = False) -> dict[str, str]:
    """Validate the task's data source and files, every file parsed in full; return {relative path or
    hub id: sha256 or revision}. A Hub task's revision is resolved here once, and the run loads that
    revision (harness.tasks.loading), so the fingerprint hashed is the data read."""
    from harness.tasks.hub import hub_revision

    _check_devsplit(task)
    if task.kind == "squad":
        check(task.doc_stride < task.max_seq_length // 2, "task.doc_stride", f"must be below half of max_seq_length ({task.max_seq_length}), got {task.doc_stride}")
    if resolve_source(task, data_root, need_train, explicit_local) == "hub":
        return {hub_key(task): hub_revision(task)}
    fingerprints = {}
    for rel in local_files(task, need_train).values():
        path = Path(data_root) / rel
        if task.local.format == "squad_json":
            read_squad_json(path, rel)
        elif task.local.format == "glue_tsv":
            check_glue_tsv(path, rel, task)
        else:
            raise ConfigError("task.local.format", f"unknown format {task.local.format!r}", ["glue_tsv", "squad_json"])
        fingerprints[rel] = sha256_file(path)
    return fingerprints
