"""Faults the tests inject into searches, through kdgan.tune's test-only epoch hook:

    KDGAN_EPOCH_HOOK=faults:crash_once KDGAN_CRASH_AT=4 KDGAN_CRASH_DIR=/tmp/x

makes each trial crash once, just before epoch KDGAN_CRASH_AT; a marker file per trial id in
KDGAN_CRASH_DIR remembers that it did. The tests folder must be on the workers' PYTHONPATH.
"""

from __future__ import annotations

import os
from pathlib import Path


def crash_once(trial_id: str, epoch: int, cfg) -> None:
    marker = Path(os.environ["KDGAN_CRASH_DIR"]) / trial_id
    if epoch == int(os.environ["KDGAN_CRASH_AT"]) and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError(f"injected crash before epoch {epoch}")
