"""Diagnostics behind docs/RESULTS.md's explanations, not reproductions of a table: has a
run's teacher memorised its training labels (teacher_fit), how much can a teacher give the
classifier on the synthetic collection (distill_room), and does a run's game fall apart in its
first passes (dip)."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The options every diagnostic takes: finished run directories, --threads."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.diagnostics.{name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished run directories (with summary.json)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    return p
