"""Faults the tests inject into searches, through kdgan.tune's test-only epoch hook:

    KDGAN_EPOCH_HOOK=faults:crash_once KDGAN_CRASH_AT=4 KDGAN_CRASH_DIR=/tmp/x

makes each trial crash once, just before epoch KDGAN_CRASH_AT; a marker file per trial id in
KDGAN_CRASH_DIR remembers that it did; `faults:slow_epochs` makes every epoch
KDGAN_EPOCH_SLEEP seconds longer. The tests folder must be on the workers' PYTHONPATH.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def crash_once(trial_id: str, epoch: int, cfg) -> None:
    marker = Path(os.environ["KDGAN_CRASH_DIR"]) / trial_id
    if epoch == int(os.environ["KDGAN_CRASH_AT"]) and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError(f"injected crash before epoch {epoch}")


def slow_epochs(trial_id: str, epoch: int, cfg) -> None:
    """Each epoch takes KDGAN_EPOCH_SLEEP seconds longer: a test can then act on a trial at a
    known epoch (kill its node) before the trial has run on to its end."""
    time.sleep(float(os.environ.get("KDGAN_EPOCH_SLEEP", "0.2")))
