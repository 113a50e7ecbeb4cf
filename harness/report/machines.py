"""Which machine made a record, and the flat frame split by it: no aggregate ever combines machines.

The key is the record's `environment.fingerprint` (harness.measure.environment: host, CPU model, ISA
flags, core count, GPU, torch version), the key speedups already pair on and resume trusts. A
speedup, a drop, a seed mean, a frontier or a recommendation computed over two fingerprints would
blend two machines' kernels and noise into a figure neither produced, so Table 1, the plots and
`--recommend` are each computed per fingerprint. `machine` (flatten.py) is the fingerprint's name for
people, e.g. "AMD EPYC (AVX2, 2 cores) [57181ee2]": the CPU model alone does not tell machines apart
(this project's own "AMD EPYC" came with and without AVX-512).
"""

from __future__ import annotations

from typing import Iterator, Optional

import pandas as pd

MACHINE_KEY = "fingerprint"
UNKNOWN_MACHINE = "unknown machine"
# The widest vector extension a machine has decides its int8/bf16 kernels: that is the class named.
_ISA_CLASSES = (("amx_tile", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


class MachineSelectionError(ValueError):
    """--machine matched no machine, or several."""


def short_id(fingerprint) -> str:
    """The fingerprint as file names and headings show it (8 characters are unique in practice)."""
    return str(fingerprint).split(":")[-1][:8]


def machine_name(environment: dict) -> str:
    """A record environment's machine, named: CPU model, ISA class, cores, GPU and the short fingerprint."""
    cpu = environment.get("cpu") or {}
    isa = cpu.get("isa") if isinstance(cpu.get("isa"), dict) else {}
    details = [next((name for flag, name in _ISA_CLASSES if isa.get(flag)), None),
               f"{cpu['logical_cores']} cores" if cpu.get("logical_cores") else None]
    details = [d for d in details if d]
    name = str(cpu.get("model") or UNKNOWN_MACHINE) + (f" ({', '.join(details)})" if details else "")
    gpu = environment.get("gpu") or {}
    if gpu.get("name"):
        name += f" + {gpu['name']}"
    fingerprint = environment.get("fingerprint")
    return name + (f" [{short_id(fingerprint)}]" if fingerprint else "")


def _keys(df: pd.DataFrame) -> pd.Series:
    return df[MACHINE_KEY] if MACHINE_KEY in df else pd.Series(None, index=df.index, dtype=object)


def _names(df: pd.DataFrame) -> pd.Series:
    """Each row's machine name; frames built without a `machine` column fall back to the fingerprint."""
    names = df["machine"] if "machine" in df else pd.Series(None, index=df.index, dtype=object)
    return names.where(names.notna(), _keys(df).map(lambda k: f"[{short_id(k)}]" if pd.notna(k) else UNKNOWN_MACHINE))


def by_machine(df: pd.DataFrame) -> Iterator[tuple[Optional[str], str, pd.DataFrame]]:
    """(fingerprint, name, that machine's rows) for each machine in `df`, ordered by name."""
    if df.empty:
        return
    # Grouped by position, not by index label: a frame concatenated without a new index stays whole.
    keys, names = _keys(df).to_numpy(dtype=object), _names(df).to_numpy(dtype=object)
    grouping = [UNKNOWN_MACHINE if pd.isna(key) else key for key in keys]
    positions = pd.Series(grouping).groupby(grouping).indices  # machine -> its rows' positions
    groups = [(None if key == UNKNOWN_MACHINE else key, names[rows[0]], df.iloc[rows]) for key, rows in positions.items()]
    yield from sorted(groups, key=lambda group: (group[1], str(group[0])))


def machines(df: pd.DataFrame) -> list[tuple[Optional[str], str]]:
    """(fingerprint, name) of every machine in `df`, ordered by name."""
    return [(key, name) for key, name, _ in by_machine(df)]


def select_machine(df: pd.DataFrame, query: Optional[str]) -> pd.DataFrame:
    """The rows of the one machine `query` names: its fingerprint (or a prefix of it), or a
    case-insensitive part of its name. Raises MachineSelectionError naming the machines present when
    it matches none or several, so a report is never silently built from the wrong machine."""
    if query is None or df.empty:
        return df
    found = machines(df)
    text = query.strip().lower()
    exact = [(key, name) for key, name in found if key is not None and str(key).lower() == text]
    matches = exact or [(key, name) for key, name in found
                        if (key is not None and str(key).lower().startswith(text)) or text in name.lower()]
    listed = "; ".join(name for _, name in found)
    if not matches:
        raise MachineSelectionError(f"--machine {query!r} matches none of the machines here: {listed}")
    if len(matches) > 1:
        raise MachineSelectionError(f"--machine {query!r} matches {len(matches)} machines, name one: "
                                    + "; ".join(name for _, name in matches))
    key = matches[0][0]
    return df[_keys(df).isna()] if key is None else df[_keys(df).eq(key)]
