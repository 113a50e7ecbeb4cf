"""Readers for the official local formats: GLUE TSV files and SQuAD v1.1 JSON.

Both raise a one-line ConfigError naming the file (relative to the data root) when the file does
not look like what the task YAML promises, so a bad file fails before any tokenizer or model loads.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from pathlib import Path

from harness.config import TaskConfig
from harness.errors import ConfigError
from harness.tasks.labels import parse_label

csv.field_size_limit(2**31 - 1)  # a few GLUE rows exceed the default 128 KiB field limit


def _tsv_rows(path: Path, encoding: str):
    # QUOTE_NONE: several GLUE files contain unbalanced '"' that would otherwise swallow lines.
    with open(path, encoding=encoding, newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            yield row


def _resolve_columns(task: TaskConfig, header: list | None, rel: str) -> dict[str, int]:
    """Our column names (text_a, text_b, label) -> index in each row."""
    columns = task.local.columns
    if "text_a" not in columns or "label" not in columns:
        raise ConfigError("task.local.columns", "needs at least text_a and label", ["text_a", "text_b", "label"])
    expected = [c for c in columns.values() if isinstance(c, str)]
    if header is None:
        if expected:
            raise ConfigError("task.local.columns", f"{rel} has no header (local.header=false), so columns must be indices")
        return dict(columns)
    missing = [c for c in expected if c not in header]
    if missing:
        raise ConfigError("task.local", f"{rel}: wrong header {header}; expected columns {expected} (missing {missing})")
    return {key: header.index(c) if isinstance(c, str) else c for key, c in columns.items()}


def _parse_row(row: list, index: dict[str, int], width: int | None, task: TaskConfig):
    """(example, problem): problem is 'malformed' (wrong field count) or 'label' (unusable label)."""
    needed = max(index.values()) + 1
    if (width is not None and len(row) != width) or len(row) < needed:
        return None, "malformed"
    label = parse_label(row[index["label"]], task)
    if label is None:
        return None, "label"
    text_b = row[index["text_b"]] if "text_b" in index else None
    return {"text_a": row[index["text_a"]], "text_b": text_b, "label": label}, None


def _open_layout(path: Path, rel: str, task: TaskConfig):
    """(row iterator positioned after the header, column index, expected field count or None)."""
    rows = _tsv_rows(path, task.local.encoding)
    header = None
    if task.local.header:
        header = next(rows, None)
        if header is None:
            raise ConfigError("task.local", f"{rel}: file is empty (truncated download?)")
        header = [header[0].lstrip("\ufeff")] + header[1:]  # tolerate a BOM even with encoding=utf-8
    index = _resolve_columns(task, header, rel)
    return rows, index, (len(header) if header else None)


def check_glue_tsv(path: Path, rel: str, task: TaskConfig) -> None:
    """Parse the whole file as the loader will, so damage anywhere is named (with its line) before
    any model loads: an undecodable byte or a NUL, a cut last row (a truncated download), a file where
    most rows have the wrong field count or a label outside the task's. A few malformed rows are what
    official GLUE files contain (QQP has rows split by stray newlines): the loader skips them and the
    record notes how many, as before."""
    stat = os.stat(path)
    key = (str(path), rel, stat.st_size, stat.st_mtime_ns, task.local.encoding, task.local.header,
           repr(sorted(task.local.columns.items())), tuple(task.label_names), task.num_labels, task.is_regression)
    if key not in _CHECKED_TSV:  # a sweep plans many cells on the same files: parse each once
        _parse_whole_tsv(path, rel, task)
        _CHECKED_TSV.add(key)


_CHECKED_TSV: set = set()


def _parse_whole_tsv(path: Path, rel: str, task: TaskConfig) -> None:
    handle = open(path, encoding=task.local.encoding, newline="")
    try:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = None
        if task.local.header:
            header = next(reader, None)
            if header is None:
                raise ConfigError("task.local", f"{rel}: file is empty (truncated download?)")
            header = [header[0].lstrip("\ufeff")] + header[1:]
        index = _resolve_columns(task, header, rel)
        width = len(header) if header else None
        rows, problems, last = 0, {"malformed": 0, "label": 0}, None
        for row in reader:
            if not row:
                continue
            rows += 1
            last = row
            _, problem = _parse_row(row, index, width, task)
            if problem:
                problems[problem] += 1
    except UnicodeDecodeError as err:
        raise ConfigError("task.local", f"{rel}: line {_undecodable_line(path, task.local.encoding)} cannot be decoded as {task.local.encoding} ({err.reason}); damaged or unparseable file") from None
    except csv.Error as err:
        raise ConfigError("task.local", f"{rel}: line {reader.line_num}: {err}; damaged file") from None
    finally:
        handle.close()
    if not rows:
        raise ConfigError("task.local", f"{rel}: has no data rows (empty or truncated file)")
    # A download cut short leaves a partial last row: too few fields or a half-written label.
    if _parse_row(last, index, width, task)[1]:
        raise ConfigError("task.local", f"{rel}: last line does not parse ({len(last)} fields, expected {width or max(index.values()) + 1}); the file looks truncated")
    if problems["malformed"] * 2 > rows:
        raise ConfigError("task.local", f"{rel}: {problems['malformed']} of {rows} rows have the wrong number of fields (expected {width or max(index.values()) + 1}); not the layout task.local promises")
    if problems["label"] * 2 > rows:
        raise ConfigError("task.label_names", f"{rel}: {problems['label']} of {rows} labels are neither in {task.label_names} nor ids below {task.num_labels}")


def _undecodable_line(path: Path, encoding: str) -> int:
    """The number of the first line that does not decode (the text reader only knows its chunk)."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                return number
    return 0


def read_glue_tsv(path: Path, rel: str, task: TaskConfig) -> tuple[list[dict], dict[str, int]]:
    """All usable rows as {text_a, text_b, label}, plus counts of skipped rows by reason."""
    rows, index, width = _open_layout(path, rel, task)
    examples, skipped = [], {"malformed": 0, "label": 0}
    try:
        for row in rows:
            if not row:
                continue
            example, problem = _parse_row(row, index, width, task)
            if problem:
                skipped[problem] += 1
            else:
                examples.append(example)
    except UnicodeDecodeError as err:  # past the rows the fast check samples
        raise ConfigError("task.local", f"{rel}: cannot be decoded as {task.local.encoding} ({err.reason}) after row {len(examples)}; unparseable file") from None
    return examples, skipped


def _require(node: dict, key: str, where: str, rel: str):
    if not isinstance(node, dict) or key not in node:
        raise ConfigError("task.local", f"{rel}: {where} is missing field {key!r}; not a SQuAD v1.1 file")
    return node[key]


@functools.lru_cache(maxsize=4)
def _read_squad_cached(path: str, rel: str, size: int, mtime_ns: int) -> tuple:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError("task.local", f"{rel}: not valid JSON ({str(err).splitlines()[0]}); truncated or unparseable file") from None
    examples = []
    for a, article in enumerate(_require(document, "data", "the top level", rel)):
        title = _require(article, "title", f"data[{a}]", rel)
        for p, paragraph in enumerate(_require(article, "paragraphs", f"data[{a}]", rel)):
            context = _require(paragraph, "context", f"data[{a}].paragraphs[{p}]", rel)
            for q, qa in enumerate(_require(paragraph, "qas", f"data[{a}].paragraphs[{p}]", rel)):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                answers = _require(qa, "answers", where, rel)
                for n, answer in enumerate(answers):
                    _require(answer, "text", f"{where}.answers[{n}]", rel)
                    _require(answer, "answer_start", f"{where}.answers[{n}]", rel)
                examples.append({
                    "id": str(_require(qa, "id", where, rel)),
                    "title": title,
                    "context": context,
                    "question": _require(qa, "question", where, rel),
                    "answers": {"text": [x["text"] for x in answers], "answer_start": [_answer_start(x, where, rel) for x in answers]},
                })
    return tuple(examples)


def _answer_start(answer: dict, where: str, rel: str) -> int:
    start = answer["answer_start"]
    if isinstance(start, bool) or not isinstance(start, (int, str)) or not str(start).lstrip("-").isdigit():
        raise ConfigError("task.local", f"{rel}: {where}: answer_start {start!r} is not an integer; not a SQuAD v1.1 file")
    return int(start)


def read_squad_json(path: Path, rel: str) -> list[dict]:
    """Flat SQuAD examples in the Hub's column layout (id, title, context, question, answers)."""
    stat = os.stat(path)
    return list(_read_squad_cached(str(path), rel, stat.st_size, stat.st_mtime_ns))
