"""Trial results as Parquet: `trials.parquet` (a row per trial) and `epochs.parquet` (a row
per trial per epoch), written atomically each time a trial ends, so that a search killed at
any moment leaves readable files with every finished trial in them.

`ParquetResults` is a Ray Tune callback on the driver. It seeds itself from the files already
in the experiment directory, so a resumed search keeps the rows of its earlier life.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from kdgan.config import Config
from kdgan.io import atomic_write

try:  # the module imports without Ray, for readers of the files
    from ray.tune import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
CONFIG_FIELDS = list(Config().to_dict())
# Ray's bookkeeping that says nothing about the model; dropped from epochs.parquet.
_RAY_KEYS = {"config", "timestamp", "checkpoint_dir_name", "should_checkpoint", "done",
             "training_iteration", "time_this_iter_s", "time_since_restore", "pid",
             "iterations_since_restore", "date", "experiment_tag", "time_total_s"}


def trial_status(status: str, last: dict[str, Any] | None) -> str:
    """TERMINATED trials that did not run all epochs were stopped early (ASHA) or diverged."""
    if status != "TERMINATED" or not last:
        return status
    if last.get("diverged"):
        return "DIVERGED"
    if last.get("epoch", 0) < last.get("epochs_total", 0):
        return "STOPPED"
    return "TERMINATED"


class ParquetResults(Callback):
    def __init__(self, experiment_dir: Path) -> None:
        self.dir = Path(experiment_dir)
        self.epochs: dict[tuple[str, int], dict[str, Any]] = {}
        self.trials: dict[str, dict[str, Any]] = {}
        self._configs: dict[str, dict[str, Any]] = {}  # each trial's full config, parsed once
        self._load_existing()

    def _load_existing(self) -> None:
        if (self.dir / EPOCHS).exists():
            for row in pd.read_parquet(self.dir / EPOCHS).to_dict("records"):
                self.epochs[(row["trial_id"], int(row["epoch"]))] = row
        if (self.dir / TRIALS).exists():
            for row in pd.read_parquet(self.dir / TRIALS).to_dict("records"):
                self.trials[row["trial_id"]] = row

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        row = {"trial_id": trial.trial_id}
        row.update({k: v for k, v in result.items()
                    if k not in _RAY_KEYS and not isinstance(v, (dict, list))})
        self.epochs[(trial.trial_id, int(result["epoch"]))] = row
        self.trials[trial.trial_id] = self._trial_row(trial, "RUNNING", result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.trials[trial.trial_id] = self._trial_row(trial, "TERMINATED", trial.last_result)
        self.flush()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.trials[trial.trial_id] = self._trial_row(trial, "ERROR", trial.last_result)
        self.flush()

    def on_experiment_end(self, trials, **info) -> None:
        for trial in trials:
            if trial.trial_id not in self.trials or self.trials[trial.trial_id]["status"] == "RUNNING":
                self.trials[trial.trial_id] = self._trial_row(trial, trial.status, trial.last_result)
        self.flush()

    # ------------------------------------------------------------------ rows and files
    def _trial_row(self, trial, status: str, last: dict[str, Any] | None) -> dict[str, Any]:
        last = last or {}
        row: dict[str, Any] = {"trial_id": trial.trial_id,
                               "status": trial_status(status, last),
                               "error": _error_text(trial, last) if status == "ERROR" or last.get("diverged") else ""}
        if trial.trial_id not in self._configs:  # every field, defaults filled in
            self._configs[trial.trial_id] = Config.from_dict(
                {k: v for k, v in trial.config.items() if k in CONFIG_FIELDS}).to_dict()
        row.update(self._configs[trial.trial_id])
        row["best_val_acc"] = last.get("best_val_acc")
        row["test_acc"] = last.get("test_acc_at_best")
        row["best_epoch"] = last.get("best_epoch")
        row["epochs_run"] = last.get("epoch")
        row["wall_s"] = last.get("wall_s")      # pretraining and game, over all resumptions
        row["trial_s"] = last.get("trial_s")    # this life of the trial, data loading included
        row["node"] = last.get("hostname")
        row["node_id"] = last.get("node_id")
        row["node_ip"] = last.get("node_ip")
        return row

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        trials = pd.DataFrame(list(self.trials.values()))
        epochs = pd.DataFrame(list(self.epochs.values()))
        if not epochs.empty:
            epochs = epochs.sort_values(["trial_id", "epoch"]).reset_index(drop=True)
        return trials, epochs

    def flush(self) -> None:
        trials, epochs = self.frames()
        if not epochs.empty:
            atomic_write(self.dir / EPOCHS, lambda tmp: epochs.to_parquet(tmp, index=False))
        if not trials.empty:
            atomic_write(self.dir / TRIALS, lambda tmp: trials.to_parquet(tmp, index=False))


def _error_text(trial, last: dict[str, Any]) -> str:
    if last.get("diverged"):
        return str(last.get("error", "diverged"))
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        text = Path(path).read_text().strip().splitlines()
        return text[-1] if text else "error"
    return "error"
