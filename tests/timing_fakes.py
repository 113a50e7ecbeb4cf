"""Test stand-ins for what watches a timed pass: a contention monitor whose verdicts the test chooses,
so a loaded CI machine cannot decide a test about the stability verdict or re-measurement."""

import itertools


def fake_monitor(verdicts=None):
    """A ContentionMonitor stand-in whose successive passes get the given verdicts (every pass
    "clean" when None: a quiet machine, whatever else runs beside the test suite)."""
    verdicts = iter(verdicts) if verdicts is not None else itertools.repeat("clean")

    class FakeMonitor:
        def __init__(self, *args):
            self.report = None

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.report = {"verdict": next(verdicts)}

    return FakeMonitor
