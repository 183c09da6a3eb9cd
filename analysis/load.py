"""Open kdgan.tune experiments and benchmark runs as tidy DataFrames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
TRIAL_COLUMNS = ("trial_id", "status", "best_val_acc", "test_acc")
EPOCH_COLUMNS = ("trial_id", "epoch", "val/acc")
RUN_COLUMNS = ("method", "seed", "test_acc", "last_test_acc")


class AnalysisError(ValueError):
    """Stored results are missing, empty or malformed; the message names the file."""


def read_parquet(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read one Parquet file and check it has rows and the columns the analysis needs."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{path}: no such file")
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise AnalysisError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise AnalysisError(f"{path}: missing column(s) {missing}; has {list(frame.columns)[:12]}...")
    if frame.empty:
        raise AnalysisError(f"{path}: no rows")
    return frame


def load_experiments(*dirs: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) of one or several experiment directories, with an `experiment`
    column holding each directory's name."""
    if not dirs:
        raise AnalysisError("no experiment directory given")
    trials, epochs = [], []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise AnalysisError(f"{d}: not a directory (expected a kdgan.tune experiment)")
        t = read_parquet(d / TRIALS, TRIAL_COLUMNS).assign(experiment=d.name)
        e = read_parquet(d / EPOCHS, EPOCH_COLUMNS).assign(experiment=d.name)
        trials.append(t)
        epochs.append(e)
    return pd.concat(trials, ignore_index=True), pd.concat(epochs, ignore_index=True)


def load_runs(*paths: Path | str) -> pd.DataFrame:
    """Benchmark runs (benchmarks.compare's runs.parquet), with the run directories'
    histories available through `load_histories`."""
    frames = [read_parquet(Path(p), RUN_COLUMNS).assign(source=str(p)) for p in paths]
    return pd.concat(frames, ignore_index=True)


def resolve_run_dir(root: Path | str, run_dir: str) -> Path:
    """A run directory recorded in a benchmark's runs.parquet, found under `root` (the
    benchmark's output directory) even after that directory was moved or copied: paths are
    relative to it, or (older rows) start with the directory's path when the benchmark ran."""
    p = Path(run_dir)
    if p.is_absolute() and p.exists():
        return p
    if (Path(root) / p).exists():
        return Path(root) / p
    parts = p.parts
    for i, part in enumerate(parts):  # the part below the output directory: n<N>/... or select/...
        if part == "select" or (part[:1] == "n" and part[1:].isdigit()):
            return Path(root).joinpath(*parts[i:])
    return p


def load_histories(run_root: Path | str) -> pd.DataFrame:
    """Every run's history.parquet as one frame (method, seed, epoch, ..., and n where the
    runs have it): the run directories runs.parquet names (benchmarks.table1), else every
    <run_root>/<method>-s<seed>/ (benchmarks.compare)."""
    rows = []
    runs_file = Path(run_root) / "runs.parquet"
    if runs_file.exists():
        runs = pd.read_parquet(runs_file)
        if "run_dir" in runs:
            for r in runs.itertuples():
                path = resolve_run_dir(run_root, r.run_dir) / "history.parquet"
                if path.exists():
                    extra = {"n": int(r.n)} if hasattr(r, "n") else {}
                    rows.append(read_parquet(path, ("epoch", "val/acc")).assign(
                        method=r.method, seed=int(r.seed), **extra))
            if rows:
                return pd.concat(rows, ignore_index=True)
    for path in sorted(Path(run_root).glob("*-s*/history.parquet")):
        method, _, seed = path.parent.name.rpartition("-s")
        rows.append(read_parquet(path, ("epoch", "val/acc")).assign(method=method, seed=int(seed)))
    if not rows:
        raise AnalysisError(f"{run_root}: no <method>-s<seed>/history.parquet under it")
    return pd.concat(rows, ignore_index=True)
