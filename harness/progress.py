"""Progress a person can follow, wherever the output goes: tqdm bars on a terminal; in a log file, a
pipe or a SLURM .out (where a bar's carriage-return updates pile up into one line of hundreds of
kilobytes) a plain line every LINE_INTERVAL_S seconds and one when a stage ends.

COMPBENCH_PROGRESS=bars|lines|off overrides the choice.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

LINE_INTERVAL_S = 30.0
MODES = ("bars", "lines", "off")


def mode() -> str:
    chosen = os.environ.get("COMPBENCH_PROGRESS", "").strip().lower()
    if chosen in MODES:
        return chosen
    return "bars" if sys.stderr.isatty() else "lines"


class PlainProgress:
    """tqdm's update/close interface, written as whole lines to stderr."""

    def __init__(self, total: Optional[int], desc: str, unit: str, leave: bool, interval_s: float = LINE_INTERVAL_S):
        self.total, self.desc, self.unit, self.leave, self.interval_s = total, desc, unit, leave, interval_s
        self.n = 0
        self.started = self.last_line = time.monotonic()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_line >= self.interval_s:
            self.last_line = now
            self._line("")

    def close(self) -> None:
        if self.leave:
            self._line("done, ")

    def _line(self, state: str) -> None:
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        print(f"  {self.desc}: {state}{count} {self.unit}{share}, {time.monotonic() - self.started:.0f} s", file=sys.stderr, flush=True)


def progress(total: Optional[int] = None, desc: str = "", unit: str = "it", leave: bool = True, enabled: bool = True):
    """A tqdm bar on a terminal, plain lines otherwise (see the module docstring)."""
    chosen = mode() if enabled else "off"
    if chosen == "bars":
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=leave, mininterval=0.5)
    if chosen == "lines":
        return PlainProgress(total, desc, unit, leave)
    return PlainProgress(total, desc, unit, leave=False, interval_s=float("inf"))  # off: counts, prints nothing


def quiet_library_bars() -> None:
    """Off a terminal, the libraries' own bars (transformers' weight loading and shard writing, the
    Hub's downloads, datasets' map) would write carriage-return updates into the log: turn them off."""
    if mode() == "bars":
        return
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def trainer_progress() -> tuple[bool, list]:
    """(disable_tqdm, callbacks) for a transformers Trainer: its bar on a terminal, else plain lines."""
    chosen = mode()
    if chosen == "bars":
        return False, []
    if chosen == "off":
        return True, []
    from transformers import TrainerCallback

    class PlainTrainingLines(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.line = PlainProgress(state.max_steps, "train", "steps", leave=True)

        def on_step_end(self, args, state, control, **kwargs):
            self.line.update(state.global_step - self.line.n)

        def on_train_end(self, args, state, control, **kwargs):
            self.line.close()

    return True, [PlainTrainingLines()]
