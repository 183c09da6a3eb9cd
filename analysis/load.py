"""Open kdgan.tune experiments and benchmark runs as tidy DataFrames.

An experiment directory holds trials.parquet (a row per trial), epochs.parquet (a row per
trial, epoch and population member) and, since seed populations, members.parquet (a row per
trial and member: trial_id, seed, val_acc, test_acc, best_epoch, last_val_acc, last_test_acc,
epochs_run, status, reason). A trial trains P members on seeds s, s+1, ..., s+P-1, the same
seeds in every trial of a search, so trials are paired by seed. Older experiments have no
members.parquet, no `seed` column in epochs.parquet and no *_se columns: `load_experiments`
and `load_members` read them as populations of one member, whose seed is the trial's `seed`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
MEMBERS = "members.parquet"
TRIAL_COLUMNS = ("trial_id", "status", "best_val_acc", "test_acc")
EPOCH_COLUMNS = ("trial_id", "epoch", "val/acc")
MEMBER_COLUMNS = ("trial_id", "seed", "val_acc", "test_acc")
# A trial's status (kdgan.results) as a member's status, for experiments without members.parquet.
_MEMBER_STATUS = {"TERMINATED": "finished", "RUNNING": "running", "DIVERGED": "diverged"}
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


def _experiment_dirs(dirs: tuple[Path | str, ...]) -> list[Path]:
    if not dirs:
        raise AnalysisError("no experiment directory given")
    for d in map(Path, dirs):
        if not d.is_dir():
            raise AnalysisError(f"{d}: not a directory (expected a kdgan.tune experiment)")
    return list(map(Path, dirs))


def _trial_seed(trials: pd.DataFrame) -> pd.Series:
    """Each trial's (first) seed, by trial_id; 0 where the trials have no seed column."""
    seed = trials["seed"] if "seed" in trials else pd.Series(0, index=trials.index)
    return pd.Series(seed.fillna(0).astype(int).values, index=trials["trial_id"].values)


def _with_population(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials with the population columns; an old experiment's trials as populations of one."""
    trials = trials.copy()
    one = trials["best_val_acc"].notna().astype(int)
    for col, default in (("population", 1), ("members", one), ("best_val_acc_se", np.nan),
                         ("test_acc_se", np.nan)):
        if col not in trials:
            trials[col] = default
    return trials


def _with_seed(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Epochs with a `seed` column: an old experiment's rows get their trial's seed."""
    if "seed" in epochs:
        return epochs
    return epochs.assign(seed=epochs["trial_id"].map(_trial_seed(trials)).fillna(0).astype(int))


def members_from_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """members.parquet's rows for an experiment written before seed populations: each trial
    one member, whose seed is the trial's `seed` and whose numbers are the trial's."""
    def col(name: str, default=np.nan) -> pd.Series:
        return trials[name] if name in trials else pd.Series(default, index=trials.index)

    status = trials["status"].map(_MEMBER_STATUS).fillna("stopped")
    reason = col("error", "").fillna("").astype(str).where(status == "diverged", "")
    return pd.DataFrame({
        "trial_id": trials["trial_id"].values, "seed": _trial_seed(trials).values,
        "val_acc": trials["best_val_acc"].values, "test_acc": trials["test_acc"].values,
        "best_epoch": col("best_epoch").values, "last_val_acc": np.nan, "last_test_acc": np.nan,
        "epochs_run": col("epochs_run").values, "status": status.values, "reason": reason.values})


def load_experiments(*dirs: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) of one or several experiment directories, with an `experiment`
    column holding each directory's name. Trials always have the population columns
    (`population`, `members`, `best_val_acc_se`, `test_acc_se`) and epochs a `seed` column:
    an experiment written before seed populations reads as populations of one member (SEs
    NaN). Epochs have a row per trial, epoch and member; `trial_epochs` averages the members."""
    trials, epochs = [], []
    for d in _experiment_dirs(dirs):
        t = read_parquet(d / TRIALS, TRIAL_COLUMNS)
        e = read_parquet(d / EPOCHS, EPOCH_COLUMNS)
        trials.append(_with_population(t).assign(experiment=d.name))
        epochs.append(_with_seed(e, t).assign(experiment=d.name))
    return pd.concat(trials, ignore_index=True), pd.concat(epochs, ignore_index=True)


def load_members(*dirs: Path | str) -> pd.DataFrame:
    """A row per trial and population member (members.parquet) of one or several experiment
    directories, with an `experiment` column; for an experiment without members.parquet
    (written before seed populations), one member per trial from trials.parquet."""
    frames = []
    for d in _experiment_dirs(dirs):
        if (d / MEMBERS).exists():
            m = read_parquet(d / MEMBERS, MEMBER_COLUMNS)
        else:
            m = members_from_trials(read_parquet(d / TRIALS, TRIAL_COLUMNS))
        frames.append(m.assign(experiment=d.name))
    return pd.concat(frames, ignore_index=True)


def trial_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Epochs averaged over each trial's members: a row per (experiment,) trial and epoch,
    the mean of every numeric metric over the members that reported that epoch, and
    `members`, how many did. Old experiments (one member) come back unchanged but for it."""
    keys = [k for k in ("experiment", "trial_id", "epoch") if k in epochs]
    numeric = [c for c in epochs.select_dtypes("number").columns if c not in keys and c != "seed"]
    g = epochs.groupby(keys, sort=False)
    out = g[numeric].mean()
    out["members"] = g.size()
    return out.reset_index()


def member_matrix(members: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """`metric` as a (trial, member) table: a row per (experiment, trial_id), a column per
    member position (0 = each experiment's lowest seed, 1 = the next, ...: the same seeds in
    every trial of a search), NaN where a member is missing or has no value (e.g. diverged)."""
    keys = [k for k in ("experiment", "trial_id") if k in members]
    m = members.dropna(subset=["seed"])
    rank = m.groupby(keys[:-1])["seed"].rank(method="dense") if keys[:-1] else m["seed"].rank(method="dense")
    m = m.assign(member=rank.astype(int) - 1)
    return m.groupby(keys + ["member"])[metric].mean().unstack("member")


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
