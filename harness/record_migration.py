"""Bring records written before a key existed up to date, once, in place (atomically).

Records written since methods declared their paper (methods.base.Reference) carry it in their
`method` section, and since labels existed their label (harness.labels); the report reads both from
there and never from today's code, so a later change of a method's text or defaults does not
rewrite what an old record said. Older records get them once, from the class their config names and
the preset they chose, marked `reference_source` / `label_source: "migrated"`:

    python -m harness.record_migration examples/results
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from harness.record import record_runtime, write_json_atomic

MIGRATED = "migrated"  # method.reference_source of a reference added after the record was written


def method_reference(method_config: dict) -> dict | None:
    """The Reference of the class a record's method config names (None when it cannot be imported)."""
    from harness.errors import ConfigError
    from methods.base import method_class

    try:
        cls = method_class(method_config.get("_target_", "methods.base.Baseline"))
    except ConfigError:
        return None
    return asdict(cls.reference) if cls.reference else None


def migrate_record(record: dict) -> bool:
    """Add what a newer writer would have written; True when the record changed."""
    from harness.labels import record_label

    described = record.get("method")
    method_config = (record.get("config") or {}).get("method")
    if not isinstance(described, dict) or not isinstance(method_config, dict):
        return False
    changed = False
    if "reference" not in described:
        described["reference"] = method_reference(method_config)
        described["reference_source"] = MIGRATED
        changed = True
    if "label" not in described:
        described["label"] = record_label(method_config, record_runtime(record))
        described["label_source"] = MIGRATED
        changed = True
    return changed


def migrate_tree(root: str | Path) -> tuple[int, int]:
    """(records changed, records read) under `root` (every *.json holding a cell record)."""
    changed = read = 0
    for path in sorted(Path(root).rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(record, dict) or "cell" not in record or "config" not in record:
            continue  # predictions, manifests, reports
        read += 1
        if migrate_record(record):
            write_json_atomic(path, record)
            changed += 1
    return changed, read


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="folders of records (searched recursively)")
    args = parser.parse_args(argv)
    for root in args.roots:
        if not Path(root).is_dir():
            print(f"roots: {root} is not a folder", file=sys.stderr)
            return 2
    for root in args.roots:
        changed, read = migrate_tree(root)
        print(f"{root}: {changed} of {read} records given their method's reference or label")
    return 0


if __name__ == "__main__":
    sys.exit(main())
