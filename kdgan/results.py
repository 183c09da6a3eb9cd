"""Trial results as Parquet: `trials.parquet` (a row per trial) and `epochs.parquet` (a row
per trial per epoch), both derived from per-trial part files that are the record.

    <experiment>/parts/trials/<trial_id>.parquet   the trial's row, rewritten at each result
    <experiment>/parts/epochs/<trial_id>.parquet   the trial's epoch rows, likewise
    <experiment>/parts/members/<trial_id>.parquet  its members' selections, with its row
    <experiment>/trials.parquet, epochs.parquet,   every part in one file (compacted)
                 members.parquet

A trial trains a seed population (kdgan.population; one member unless `population` says
more). trials.parquet has the members' means (best_val_acc, the objective, and test_acc),
their standard errors (best_val_acc_se, test_acc_se; NaN with one member) and the member
count (members). members.parquet has a row per trial per member: seed, val_acc and test_acc
at the member's best validation epoch, best_epoch, last_val_acc, last_test_acc, epochs_run,
status (finished, running, diverged) and reason. epochs.parquet has a row per trial, epoch
and member (seed): the member's own metrics (val/acc, test/acc, the losses) beside the
trial's running objective. Every trial of a search has the same seeds.

A result costs one write of that trial's row (its epoch rows too with a checkpoint and at
the trial's end), whatever the size of the search (a rewrite of every row, as before, grew with the square of the search and
blocked Tune's event loop). The compacted files are rebuilt from the parts in a background thread at most every
`compact_every_s` seconds, when the search ends and when it starts again, so a reader opens
one path with pandas as before; `read_trials` / `read_epochs` read the parts directly.

Nothing the callback holds in memory is needed to rebuild the files: a trial's part is read
back the first time the trial is seen, so a search resumed by `Tuner.restore` (which brings
back this callback as it was pickled when the experiment started) keeps every row of its
earlier lives, and a killed trial's replayed epochs overwrite their first reports.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kdgan.config import Config
from kdgan.io import atomic_write

try:  # the module imports without Ray, for readers of the files
    from ray.tune import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
MEMBERS = "members.parquet"
# The trainable's per-member results (JSON text in each result): this epoch's row of each
# member that played it, and every member's selection so far.
MEMBER_ROWS, MEMBER_SELECTION = "member_rows", "member_selection"
PARTS = "parts"
CONFIG_FIELDS = list(Config().to_dict())
# Ray's bookkeeping that says nothing about the model; dropped from epochs.parquet.
_RAY_KEYS = {"config", "timestamp", "checkpoint_dir_name", "should_checkpoint", "done",
             "training_iteration", "time_this_iter_s", "time_since_restore", "pid",
             "iterations_since_restore", "date", "experiment_tag", "time_total_s", "life",
             "checkpointed", MEMBER_ROWS, MEMBER_SELECTION}
# Trial statuses whose rows are final; any other row belongs to a trial still to run.
FINAL = ("TERMINATED", "STOPPED", "DIVERGED", "ERROR")


class ResultsError(ValueError):
    """A results file that cannot be read; the message names it and what to do."""


def trial_status(status: str, last: dict[str, Any] | None) -> str:
    """TERMINATED trials that did not run all epochs were stopped early (ASHA) or diverged."""
    if status != "TERMINATED" or not last:
        return status
    if last.get("diverged"):
        return "DIVERGED"
    if last.get("epoch", 0) < last.get("epochs_total", 0):
        return "STOPPED"
    return "TERMINATED"


def _read_table(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise ResultsError(f"{path}: not a readable Parquet file ({type(e).__name__}); delete it "
                           "and resume (its trial's rows are written again as it reports), or "
                           "start over with --fresh") from None


def _read_part(path: Path) -> pd.DataFrame:
    return _read_table(path).to_pandas()


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = dict.fromkeys(k for row in rows for k in row)  # every row's columns, in order
    table = pa.Table.from_pydict({k: [row.get(k) for row in rows] for k in keys})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


class _Parts:
    """The part files of one kind, read back as one table; a file is read again only when
    it changed, so a compaction re-reads what the search wrote since the last one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, tuple[float, pa.Table]] = {}

    def table(self) -> pa.Table | None:
        seen = {}
        for path in self.folder.glob("*.parquet") if self.folder.is_dir() else []:
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:  # set aside between the listing and now
                continue
            cached = self._cache.get(path.name)
            seen[path.name] = cached if cached and cached[0] == mtime else (mtime, _read_table(path))
        self._cache = seen
        tables = [t for _, (_, t) in sorted(seen.items()) if t.num_rows]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")


def _frame(table: pa.Table | None) -> pd.DataFrame:
    return pd.DataFrame() if table is None else table.to_pandas()


def read_trials(experiment: Path) -> pd.DataFrame:
    """Every trial's row, from the parts (up to date while the search runs)."""
    trials = _frame(_Parts(Path(experiment) / PARTS / "trials").table())
    return trials[[c for c in trials.columns if not c.startswith("_")]]


def _epoch_order(columns: list[str]) -> list[str]:
    return ["trial_id", "epoch"] + (["seed"] if "seed" in columns else [])


def read_epochs(experiment: Path) -> pd.DataFrame:
    """Every trial's epoch rows, from the parts, sorted by trial, epoch and member seed."""
    epochs = _frame(_Parts(Path(experiment) / PARTS / "epochs").table())
    if not epochs.empty:
        epochs = epochs.sort_values(_epoch_order(list(epochs.columns))).reset_index(drop=True)
    return epochs


def read_members(experiment: Path) -> pd.DataFrame:
    """Every trial's members (a row per trial per seed), from the parts."""
    members = _frame(_Parts(Path(experiment) / PARTS / "members").table())
    if not members.empty:
        members = members.sort_values(["trial_id", "seed"]).reset_index(drop=True)
    return members


class Compactor:
    """Rebuilds trials.parquet, epochs.parquet and members.parquet from the parts,
    re-reading changed parts only."""

    def __init__(self, experiment: Path) -> None:
        self.dir = Path(experiment)
        self._trials = _Parts(self.dir / PARTS / "trials")
        self._epochs = _Parts(self.dir / PARTS / "epochs")
        self._members = _Parts(self.dir / PARTS / "members")

    def __call__(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        trials, epochs = self._trials.table(), self._epochs.table()
        members = self._members.table()
        if members is not None:
            members = members.sort_by([("trial_id", "ascending"), ("seed", "ascending")])
            atomic_write(self.dir / MEMBERS, lambda tmp: pq.write_table(members, tmp))
        if trials is not None:
            trials = trials.select([c for c in trials.column_names if not c.startswith("_")])
            trials = trials.sort_by("trial_id")
            atomic_write(self.dir / TRIALS, lambda tmp: pq.write_table(trials, tmp))
        if epochs is not None:
            epochs = epochs.sort_by([(c, "ascending") for c in _epoch_order(epochs.column_names)])
            atomic_write(self.dir / EPOCHS, lambda tmp: pq.write_table(epochs, tmp))
        return _frame(trials), _frame(epochs)


def compact(experiment: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild trials.parquet, epochs.parquet and members.parquet from the parts
    (atomically); return the first two."""
    return Compactor(experiment)()


def set_aside_orphans(experiment: Path, known: set[str]) -> list[str]:
    """Move the parts of trials that Tune has no record of to parts/orphaned/.

    A search killed (SIGKILL) after a new trial reported but before Tune saved its state
    restarts without that trial: Tune samples a new one in its place. The orphan's rows are
    kept aside for the record, not counted as a trial of the search."""
    experiment = Path(experiment)
    moved = []
    for kind in ("trials", "epochs", "members"):
        folder = experiment / PARTS / kind
        for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
            if path.stem not in known:
                target = experiment / PARTS / "orphaned" / kind / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                path.replace(target)
                moved.append(path.stem)
    return sorted(set(moved))


def mark_interrupted(experiment: Path, trial_ids: set[str]) -> None:
    """The rows of trials cut short by an interruption say so (not STOPPED, which is ASHA's)."""
    for trial_id in trial_ids:
        path = Path(experiment) / PARTS / "trials" / f"{trial_id}.parquet"
        if path.exists():
            rows = _read_table(path).to_pylist()
            _write_table(path, [{**row, "status": "INTERRUPTED"} for row in rows])
        path = Path(experiment) / PARTS / "members" / f"{trial_id}.parquet"
        if path.exists():
            rows = _read_table(path).to_pylist()
            _write_table(path, [{**row, "status": "interrupted" if row["status"] == "running"
                                 else row["status"]} for row in rows])


class ParquetResults(Callback):
    """A Tune callback on the driver that keeps the part files of the trials it sees."""

    def __init__(self, experiment_dir: Path, compact_every_s: float = 30.0) -> None:
        self.dir = Path(experiment_dir)
        self.compact_every_s = compact_every_s
        self._init_runtime()

    def _init_runtime(self) -> None:
        # Per running trial: its epoch rows and its row, read back from its parts when first
        # seen; dropped when the trial ends, so memory does not grow with the search.
        self._epochs: dict[str, dict[tuple[int, Any], dict[str, Any]]] = {}
        self._rows: dict[str, dict[str, Any]] = {}
        self._members: dict[str, list[dict[str, Any]]] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Tune pickles its callbacks with the experiment state; a restore brings the object back
    # without threads or memory, which are rebuilt here (the rows come back from the parts).
    def __getstate__(self) -> dict[str, Any]:
        return {"dir": self.dir, "compact_every_s": self.compact_every_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # ------------------------------------------------------------------ Tune hooks
    def setup(self, **info) -> None:
        self.start_compactor()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._load(trial.trial_id)
        row = {"trial_id": trial.trial_id}
        row.update({k: v for k, v in result.items()
                    if k not in _RAY_KEYS and not isinstance(v, (dict, list))})
        epoch = int(result["epoch"])
        members = json.loads(result[MEMBER_ROWS]) if result.get(MEMBER_ROWS) else []
        for m in members:  # the row of each member that played this epoch, with its seed
            self._epochs[trial.trial_id][(epoch, m["seed"])] = {**row, **m}
        if not members:  # a result without them (a diverged trial's repeated last row)
            for key, old in list(self._epochs[trial.trial_id].items()):
                if key[0] == epoch:
                    self._epochs[trial.trial_id][key] = {**old, **{k: v for k, v in row.items()
                                                                  if k in ("diverged", "error")}}
        if result.get(MEMBER_SELECTION):
            self._members[trial.trial_id] = json.loads(result[MEMBER_SELECTION])
        self._update(trial, "RUNNING", result)
        # The trial's row (one line) at every result; its epoch rows with each checkpoint: a
        # trial that dies resumes from its last checkpoint and reports the epochs after it
        # again, so rows up to the checkpoint are all it needs.
        self._write(trial.trial_id, epochs=bool(result.get("checkpointed") or result.get("diverged")))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """A trial failed and will be retried from its last checkpoint."""
        self._load(trial.trial_id)
        self._count(trial, "failures")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._load(trial.trial_id)
        self._count(trial, "failures", write=False)  # _end writes the row
        self._end(trial, "ERROR")

    def on_experiment_end(self, trials, **info) -> None:
        """Keep what the trials still running (an interruption) did; kdgan.tune compacts
        once it has settled the trials' statuses."""
        for trial_id in list(self._rows):
            if self._rows[trial_id]:
                self._write(trial_id, epochs=True)
        self.stop_compactor()

    # ------------------------------------------------------------------ rows and parts
    def _part(self, kind: str, trial_id: str) -> Path:
        return self.dir / PARTS / kind / f"{trial_id}.parquet"

    def _load(self, trial_id: str) -> None:
        if trial_id in self._rows:
            return
        self._epochs[trial_id] = {}
        self._rows[trial_id] = {}
        self._members[trial_id] = []
        path = self._part("epochs", trial_id)
        if path.exists():
            for r in _read_part(path).to_dict("records"):
                self._epochs[trial_id][(int(r["epoch"]), r.get("seed"))] = r
        path = self._part("members", trial_id)
        if path.exists():
            self._members[trial_id] = _read_part(path).to_dict("records")
        path = self._part("trials", trial_id)
        if path.exists():
            rows = _read_part(path).to_dict("records")
            self._rows[trial_id] = rows[-1] if rows else {}

    def _count(self, trial, key: str, write: bool = True) -> None:
        row = self._rows[trial.trial_id]
        row[key] = int(row.get(key) or 0) + 1
        if write:
            self._write(trial.trial_id, epochs=False)

    def _end(self, trial, status: str) -> None:
        self._load(trial.trial_id)
        self._update(trial, status, trial.last_result)
        if self._rows[trial.trial_id]["status"] in ("STOPPED", "ERROR"):  # ASHA's, or a crash
            end = self._rows[trial.trial_id]["status"].lower()
            self._members[trial.trial_id] = [{**m, "status": end if m["status"] == "running" else m["status"]}
                                             for m in self._members.get(trial.trial_id, [])]
        self._write(trial.trial_id, epochs=True)
        for d in (self._epochs, self._rows, self._configs, self._members):
            d.pop(trial.trial_id, None)

    def _update(self, trial, status: str, last: dict[str, Any] | None) -> None:
        last = last or {}
        old = self._rows[trial.trial_id]
        if trial.trial_id not in self._configs:  # every field, defaults filled in
            self._configs[trial.trial_id] = Config.from_dict(
                {k: v for k, v in trial.config.items() if k in CONFIG_FIELDS}).to_dict()
        row: dict[str, Any] = {"trial_id": trial.trial_id,
                               "status": trial_status(status, last),
                               "error": _error_text(trial, last) if status == "ERROR" or last.get("diverged") else ""}
        row.update(self._configs[trial.trial_id])
        row["best_val_acc"] = last.get("best_val_acc")  # the members' mean
        row["best_val_acc_se"] = last.get("best_val_acc_se")
        row["test_acc"] = last.get("test_acc")
        row["test_acc_se"] = last.get("test_acc_se")
        row["members"] = last.get("members")
        row["best_epoch"] = last.get("best_epoch")
        row["epochs_run"] = last.get("epoch")
        row["wall_s"] = last.get("wall_s")  # pretraining and game, over all lives
        # A trial lives again after a failure or a killed search (from its last checkpoint):
        # each life reports its own clock, so the trial's time adds up its lives.
        life, life_s = last.get("life"), last.get("trial_s")
        earlier_s = float(old.get("_trial_s_earlier") or 0.0)
        lives = int(old.get("lives") or 0)
        if life is not None and life != old.get("_life"):
            if old.get("_life") is not None:
                earlier_s += float(old.get("_life_s") or 0.0)
            lives += 1
        row["lives"] = max(lives, 1)  # 1 + the times it was restored from a checkpoint
        # bookkeeping for the sum, kept in the part, dropped from what readers see
        row["_life"], row["_life_s"], row["_trial_s_earlier"] = life or old.get("_life"), life_s, earlier_s
        row["trial_s"] = earlier_s + float(life_s or 0.0)  # every life, data loading included
        row["failures"] = int(old.get("failures") or 0)
        nodes = [n for n in str(old.get("nodes") or "").split(",") if n]
        if last.get("hostname") and last["hostname"] not in nodes:
            nodes.append(last["hostname"])
        row["node"] = last.get("hostname", old.get("node"))  # the last node it ran on
        row["nodes"] = ",".join(nodes)  # every node it ran on, in order
        row["node_id"] = last.get("node_id", old.get("node_id"))
        row["node_ip"] = last.get("node_ip", old.get("node_ip"))
        # Nodes can share a hostname (containers, network namespaces): their addresses tell
        # them apart.
        ips = [n for n in str(old.get("node_ips") or "").split(",") if n]
        if row["node_ip"] and row["node_ip"] not in ips:
            ips.append(row["node_ip"])
        row["node_ips"] = ",".join(ips)  # every node address it ran on, in order
        self._rows[trial.trial_id] = row

    def _write(self, trial_id: str, epochs: bool) -> None:
        if self._members.get(trial_id):  # before the trial's row: a reader never finds a
            _write_table(self._part("members", trial_id),  # row without its members
                         [{"trial_id": trial_id, **m} for m in self._members[trial_id]])
        _write_table(self._part("trials", trial_id), [self._rows[trial_id]])
        if epochs and self._epochs[trial_id]:
            rows = self._epochs[trial_id]
            order = sorted(rows, key=lambda key: (key[0], -1 if key[1] is None else key[1]))
            _write_table(self._part("epochs", trial_id), [rows[key] for key in order])
        self._dirty.set()

    # ------------------------------------------------------------------ compaction
    def start_compactor(self) -> None:
        if self._thread is None and self.compact_every_s > 0:
            self._thread = threading.Thread(target=self._compactor, name="kdgan-compact", daemon=True)
            self._thread.start()

    def stop_compactor(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _compactor(self) -> None:
        """Every compact_every_s at least, and at least ten times as long as a compaction
        takes, so that it never takes more than a tenth of a core, however large the search."""
        compactor = Compactor(self.dir)
        wait = self.compact_every_s
        while not self._stop.wait(wait):
            if self._dirty.is_set():
                self._dirty.clear()
                t0 = time.perf_counter()
                try:
                    compactor()
                except Exception:  # noqa: BLE001 - never fatal here: the compaction that
                    pass           # ends the search (kdgan.tune) meets the same file and says so
                wait = max(self.compact_every_s, 10 * (time.perf_counter() - t0))


def _error_text(trial, last: dict[str, Any]) -> str:
    if last.get("diverged"):
        return str(last.get("error", "diverged"))
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        text = Path(path).read_text().strip().splitlines()
        return text[-1] if text else "error"
    return "error"
