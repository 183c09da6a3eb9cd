"""The searcher of kdgan.tune: Ray's OptunaSearch, telling Optuna what each trial was.

Imported by kdgan.tune only.
"""

from __future__ import annotations

from pathlib import Path


def optuna_search(metric: str, seed: int, storage_url: str, study_name: str,
                   sampler: str):
    """OptunaSearch whose trials reach Optuna for what they are.

    - Ray tells Optuna that a trial stopped by ASHA is COMPLETE with its last (early)
      value, so TPE would learn from first-epoch scores. Here such a trial is PRUNED (Optuna
      keeps its reported intermediate values) and a diverged trial is FAIL.
    - Intermediate values are keyed by epoch (Ray uses its iteration count), and the last
      report of an epoch wins: a trial restored from its checkpoint replays the epochs after
      it, and its intermediate values are then those of its final history, as in
      epochs.parquet (Optuna's `report` would keep the first and warn).
    """
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class KDGANOptunaSearch(OptunaSearch):
        def _storage_id(self, trial_id: str) -> int:
            """The trial's id in the storage, looked up once (a restored searcher starts
            without the cache: it is rebuilt as trials report)."""
            ids = self.__dict__.setdefault("_kdgan_storage_ids", {})
            if trial_id not in ids:
                storage = self._storage  # the RDBStorage given below
                ids[trial_id] = storage.get_trial_id_from_study_id_trial_number(
                    storage.get_study_id_from_name(self._study_name),
                    self._ot_trials[trial_id].number)
            return ids[trial_id]

        def _finished(self, trial_id: str) -> bool:
            """Told already: a search killed after Optuna heard of a trial's end but before
            Tune saved it replays the trial from its checkpoint, to the same end."""
            return self._storage.get_trial(self._storage_id(trial_id)).state.is_finished()

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if trial_id not in self._ot_trials or not result or "epoch" not in result:
                return
            try:
                self._storage.set_trial_intermediate_value(
                    self._storage_id(trial_id), int(result["epoch"]), float(result[self.metric]))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # a replay of a trial Optuna has closed (see _finished)

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            if trial_id in self._ot_trials and self._finished(trial_id):
                self._completed_trials.add(trial_id)
                return
            self.on_trial_result(trial_id, result)  # Tune hands the last result only here
            stopped = bool(result) and not error and result.get("epoch", 0) < result.get("epochs_total", 0)
            diverged = bool(result) and bool(result.get("diverged"))
            if (stopped or diverged) and trial_id not in self._completed_trials:
                state = optuna.trial.TrialState.FAIL if diverged else optuna.trial.TrialState.PRUNED
                self._ot_study.tell(self._ot_trials[trial_id], state=state)
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result, error)

    if sampler == "tpe":
        ot_sampler = optuna.samplers.TPESampler(seed=seed)
    else:
        ot_sampler = optuna.samplers.RandomSampler(seed=seed)
    storage = optuna.storages.RDBStorage(storage_url)
    return KDGANOptunaSearch(metric=metric, mode="max", sampler=ot_sampler, storage=storage,
                             study_name=study_name)


def fail_orphans(experiment: Path) -> int:
    """Optuna trials left RUNNING by an earlier life of the search (suggested, then the search
    was killed before Tune saved them): FAIL, with the reason. Only once the search has ended
    with every Tune trial finished, when no RUNNING trial can still report."""
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{experiment / 'optuna.db'}")
    failed = 0
    for summary in optuna.get_all_study_summaries(storage):
        study_id = storage.get_study_id_from_name(summary.study_name)
        for t in storage.get_all_trials(study_id, deepcopy=False,
                                        states=(optuna.trial.TrialState.RUNNING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, "kdgan_failed",
                                        "orphaned: the search was interrupted before Tune recorded it")
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            failed += 1
    return failed
