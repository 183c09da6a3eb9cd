"""An experiment folder of `kdgan.tune`: its name, where it lives, who holds it, and the
checks of its files that run before Ray starts. No Ray, no torch.

    <storage>/<name>/            Tune's state and trial folders (local storage), and:
        .lock, lock.json         the search that holds the experiment (one at a time)
        optuna.db                the Optuna study
        parts/, trials.parquet, epochs.parquet   the results (kdgan.results)
        search.json              one record per invocation
        pretrain/                the pretrained players shared by its trials

With remote storage (s3://, gs://, ...) Tune's state goes there and the rest stays on the
driver under ~/kdgan_results/<name>.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

from kdgan.io import FolderLock
from kdgan.results import PARTS, compact

# A name is one folder: letters, digits, '.', '_', '-', not starting with '.' or '-'.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
LOCK, HOLDER = FolderLock.LOCK, FolderLock.HOLDER
KEEP_ON_FRESH = ("pretrain", LOCK, HOLDER)  # pretrained players are keyed by what they read


class ExperimentError(ValueError):
    """Something about the experiment folder a user must act on; the message says what."""


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise ExperimentError(f"--name {name!r}: expected a plain folder name (letters, digits, "
                              "'.', '_', '-'; no '/', not starting with '.' or '-')")
    return name


def is_remote(storage: str) -> bool:
    return "://" in storage


def resolve_storage(storage: str) -> str:
    """A local storage path made absolute and checked writable; a URI returned as given."""
    if is_remote(storage):
        scheme = storage.split("://", 1)[0]
        if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
            raise ExperimentError(f"--storage-path {storage!r}: not a URI (scheme {scheme!r})")
        return storage
    if not storage:
        raise ExperimentError("--storage-path is empty: give a folder (relative paths work)")
    path = Path(storage).expanduser().absolute()
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ExperimentError(f"--storage-path {storage}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ExperimentError(f"--storage-path {storage}: {parent} is not writable")
            break
    return str(path)


def local_dir(storage: str, name: str) -> Path:
    """Where the driver keeps the experiment's own files (see the module docstring)."""
    root = Path("~/kdgan_results").expanduser() if is_remote(storage) else Path(storage)
    return root / name


class ExperimentLocked(ExperimentError):
    pass


class ExperimentLock(FolderLock):
    """One search per experiment: an exclusive lock on <experiment>/.lock, with the holder
    (host, PID, start time) in lock.json (kdgan.io.FolderLock: the kernel frees a killed
    holder's lock)."""

    def __init__(self, experiment: Path) -> None:
        super().__init__(experiment, "the search", "wait for that search to end, stop it, or use "
                         "another --name", refuse=ExperimentLocked)


def clear(experiment: Path, storage: str, name: str) -> list[str]:
    """--fresh: remove the experiment's results, study and Tune state (not its pretrained
    players, nor the lock this process holds). Returns what was removed."""
    removed = []
    for path in sorted(Path(experiment).iterdir()) if Path(experiment).is_dir() else []:
        if path.name in KEEP_ON_FRESH:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed.append(path.name)
    if is_remote(storage):  # Tune's state lives there
        import pyarrow.fs

        fs, root = pyarrow.fs.FileSystem.from_uri(f"{storage.rstrip('/')}/{name}")
        if fs.get_file_info(root).type != pyarrow.fs.FileType.NotFound:
            fs.delete_dir(root)
            removed.append(f"{storage.rstrip('/')}/{name}")
    return removed


def check_files(experiment: Path) -> None:
    """Before Ray starts: the results parts read (and the compacted files rebuilt from them,
    which repairs a damaged or stale trials.parquet / epochs.parquet), and the Optuna study
    opens. Each failure names the file and the way out."""
    from kdgan.results import ResultsError

    experiment = Path(experiment)
    if (experiment / PARTS).is_dir():
        try:
            compact(experiment)
        except ResultsError as e:
            raise ExperimentError(str(e)) from None
    db = experiment / "optuna.db"
    if db.exists():
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                tables = {r[0] for r in con.execute("select name from sqlite_master")}
        except sqlite3.DatabaseError as e:
            raise ExperimentError(f"{db}: not a readable Optuna study ({e}); start over with "
                                  "--fresh (the pretrained players are kept)") from None
        if "trials" not in tables or "studies" not in tables:
            raise ExperimentError(f"{db}: not an Optuna study (no trials table); start over "
                                  "with --fresh (the pretrained players are kept)")
