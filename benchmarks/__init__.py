"""Benchmarks that reproduce the paper's tables: each writes OUT/runs.parquet (a row per
run) and OUT/table.md, atomically, so partial results are always readable."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kdgan.config import Config
from kdgan.data import DataError
from kdgan.io import atomic_write


def write_runs(out: Path, runs: pd.DataFrame) -> Path:
    """OUT/runs.parquet, a row per run."""
    path = out / "runs.parquet"
    atomic_write(path, lambda tmp: runs.to_parquet(tmp, index=False))
    return path


def write_text(path: Path, text: str) -> Path:
    """A Markdown (or JSON) output, written atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def run_config(run_dir: Path, threads: int = 0) -> Config:
    """The configuration of a finished kdgan.train run (RUN_DIR/summary.json), with `threads`."""
    summary_file = Path(run_dir) / "summary.json"
    if not summary_file.exists():
        raise DataError(f"{run_dir}: no summary.json (expected a finished run directory)")
    summary = json.loads(summary_file.read_text())
    if "config" not in summary:
        raise DataError(f"{summary_file}: no 'config' (expected a kdgan.train run, not e.g. knn)")
    return Config.from_dict({**summary["config"], "threads": threads})
