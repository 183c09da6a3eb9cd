"""Benchmarks that reproduce the paper's tables: each writes OUT/runs.parquet (a row per
run) and OUT/table.md, atomically, so partial results are always readable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kdgan.run import atomic_write


def write_runs(out: Path, runs: pd.DataFrame) -> Path:
    """OUT/runs.parquet, a row per run."""
    path = out / "runs.parquet"
    atomic_write(path, lambda tmp: runs.to_parquet(tmp, index=False))
    return path


def write_text(path: Path, text: str) -> Path:
    """A Markdown (or JSON) output, written atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path
