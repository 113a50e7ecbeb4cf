"""Resume: which planned cells are already done, on this machine.

A cell's record lives at `<results_dir>/records/<task>__<model>__<method>__<hw>__<hash12>.json`,
where the hash (runner.config_hash) covers the resolved config except paths and run flags, the
sha256 of every data file the cell reads, and CACHE_VERSION (bumped by hand for code changes that
move numbers; the git commit is recorded, not hashed).

A re-run skips a cell whose record is `unsupported` (a fact about the method and the device), and
one whose record is `ok` **and was made on this machine**: same `environment.fingerprint` (CPU
model, core count, GPU, torch version) and same `environment.hostname_hash`. An `ok` record from
another machine holds that machine's latency, memory and energy, so the cell is measured again
here (and its record replaced). `failed` records are re-run; an unreadable file counts as absent;
`force=true` re-runs everything.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

from harness.record import load_record

FINAL_STATUSES = ("ok", "unsupported")


IDENTITY = ("fingerprint", "hostname_hash")  # the environment fields that say which machine made a record


@functools.cache
def this_machine() -> dict:
    """This machine's identity fields, from the very function that writes them into records (only
    computed when an `ok` record exists: it imports torch)."""
    from harness.measure.environment import collect_environment

    environment = collect_environment()
    return {key: environment.get(key) for key in IDENTITY}


def made_here(record: dict) -> bool:
    environment = record.get("environment") or {}
    here = this_machine()
    return all(environment.get(key) == value for key, value in here.items())


def resume_decision(path: Path, force: bool) -> tuple[Optional[str], Optional[str]]:
    """(status of a record that makes the cell done, or None; why it runs again, or None)."""
    try:
        record = load_record(path)
    except (ValueError, FileNotFoundError):
        return None, None
    status = record["status"]
    if force:
        return None, f"force=true: re-running (was {status})"
    if status == "failed":
        return None, "the previous attempt failed; running it again"
    if status == "ok" and not made_here(record):
        fingerprint = (record.get("environment") or {}).get("fingerprint")
        return None, f"recorded on another machine (fingerprint {fingerprint}); measuring on this one"
    return status, None
