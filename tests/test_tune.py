"""Real searches with Ray started in-process, on tiny data with a smoke budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from benchmarks.faults import SPACE as FAULTS_SPACE
from kdgan import tune as tune_mod
from kdgan.searcher import optuna_search
from kdgan.results import EPOCHS, MEMBERS, TRIALS, read_epochs, read_trials

from conftest import write_blobs_npz

pytestmark = pytest.mark.filterwarnings("ignore")

SPACE = FAULTS_SPACE + "{extra}\n"  # the fault script's tiny space, plus a test's own lines


def _space(tmp_path: Path, epochs: int = 2, extra: str = "") -> Path:
    data = write_blobs_npz(tmp_path / "blobs.npz")
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(data=data, epochs=epochs, extra=extra))
    return path


def _study(experiment: Path) -> optuna.Study:
    storage = f"sqlite:///{experiment / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


@pytest.mark.slow
def test_a_four_trial_search_with_a_diverging_trial(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    space = _space(tmp_path, extra="  cls_lr: {choice: [1.0e-3, 1.0e+30]}")
    rc = tune_mod.main(["--space", str(space), "--num-samples", "4", "--storage-path",
                        str(tmp_path / "results"), "--name", "exp", "--seed", "1"])
    assert rc == 0
    # loopback-only Ray was asked for its start alone: a cluster started later may take nodes
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
    # nor did the in-memory token and the mode Ray set with it outlive the search
    assert "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_MODE" not in os.environ
    experiment = tmp_path / "results" / "exp"
    trials = pd.read_parquet(experiment / TRIALS)
    epochs = pd.read_parquet(experiment / EPOCHS)
    assert len(trials) == 4 and trials["trial_id"].is_unique
    for column in ("trial_id", "status", "error", "alpha", "beta", "gamma", "n", "method",
                   "best_val_acc", "test_acc", "best_epoch", "epochs_run", "wall_s", "node"):
        assert column in trials, column
    assert trials["alpha"].between(0, 1).all()
    assert trials["beta"].between(1e-3, 1e3).all() and trials["gamma"].between(1e-4, 1e2).all()
    assert np.ptp(np.log10(trials["beta"])) > 1 and np.ptp(np.log10(trials["gamma"])) > 1
    # the huge learning rate diverges with its reason; the other trials finish
    diverged = trials[trials["cls_lr"] > 1]
    finished = trials[trials["cls_lr"] < 1]
    assert len(diverged) and len(finished)
    assert (diverged["status"] == "DIVERGED").all()
    assert diverged["error"].str.contains(r"epoch \d+: non-finite loss in").all()
    assert (finished["status"] == "TERMINATED").all() and (finished["epochs_run"] == 2).all()
    assert (diverged["epochs_run"] < 2).all()
    # one row per trial per epoch (0 = after pretraining), every metric
    for t in finished["trial_id"]:
        assert epochs.loc[epochs["trial_id"] == t, "epoch"].tolist() == [0, 1, 2]
    assert {"val/acc", "test/acc", "cls/adv", "cls/distill", "dis/real"} <= set(epochs)
    # the test accuracy in trials.parquet is the one at the best validation epoch
    for _, row in finished.iterrows():
        rows = epochs[epochs["trial_id"] == row["trial_id"]]
        best = rows.loc[rows["val/acc"].idxmax()]
        assert row["test_acc"] == pytest.approx(best["test/acc"])
    # Optuna saw the finished trials as COMPLETE with their best validation accuracy
    study = _study(experiment)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(finished)
    assert states.count(optuna.trial.TrialState.FAIL) == len(diverged)
    assert sorted(t.value for t in study.trials if t.value is not None) == sorted(finished["best_val_acc"])
    # a finished trial keeps its selected classifier, history and summary, not the game
    for trial_dir in experiment.glob("kdgan_*"):
        (ckpt,) = trial_dir.glob("checkpoint_*")
        kept = {p.name for p in ckpt.iterdir()}
        assert {"model.pt", "history.parquet", "summary.json", "final.json"} <= kept, kept
        assert "state.pt" not in kept
    # the pretrained players were shared: one file per player for all four trials
    assert len(list((experiment / "pretrain").glob("*.pt"))) == 3


@pytest.mark.slow
def test_a_population_search_pairs_every_trial_on_the_same_seeds(tmp_path):
    """4 trials x 3 members: members.parquet's schema, the same seeds for every trial, the
    objective as the members' mean, epochs.parquet with a row per member, Optuna told the mean."""
    space = _space(tmp_path)
    rc = tune_mod.main(["--space", str(space), "--num-samples", "4", "--storage-path",
                        str(tmp_path / "results"), "--name", "pop", "--seed", "2",
                        "--set", "population=3", "--set", "seed=5"])
    assert rc == 0
    experiment = tmp_path / "results" / "pop"
    trials = pd.read_parquet(experiment / TRIALS)
    members = pd.read_parquet(experiment / MEMBERS)
    epochs = pd.read_parquet(experiment / EPOCHS)
    assert len(trials) == 4 and (trials["status"] == "TERMINATED").all()
    assert (trials["population"] == 3).all() and (trials["members"] == 3).all()
    assert list(members.columns) == ["trial_id", "seed", "val_acc", "test_acc", "best_epoch",
                                     "last_val_acc", "last_test_acc", "epochs_run", "status", "reason"]
    assert len(members) == 12 and (members["status"] == "finished").all()
    # pairing: every trial's members have the same seeds
    assert all(sorted(g) == [5, 6, 7] for _, g in members.groupby("trial_id")["seed"])
    for _, row in trials.iterrows():
        mine = members[members["trial_id"] == row["trial_id"]]
        assert row["best_val_acc"] == pytest.approx(mine["val_acc"].mean())
        assert row["best_val_acc_se"] == pytest.approx(mine["val_acc"].std(ddof=1) / np.sqrt(3))
        assert row["test_acc"] == pytest.approx(mine["test_acc"].mean())
        rows = epochs[epochs["trial_id"] == row["trial_id"]]
        assert rows[["epoch", "seed"]].values.tolist() == [[e, s] for e in (0, 1, 2) for s in (5, 6, 7)]
        for _, m in mine.iterrows():  # each member's selection is its own best epoch
            own = rows[rows["seed"] == m["seed"]]
            assert m["val_acc"] == own["val/acc"].max()
            assert m["best_epoch"] == own.loc[own["val/acc"].idxmax(), "epoch"]
    pd.testing.assert_frame_equal(read_trials(experiment).sort_values("trial_id").reset_index(drop=True),
                                  trials.reset_index(drop=True), check_like=True)
    study = _study(experiment)
    assert sorted(t.value for t in study.trials) == pytest.approx(sorted(trials["best_val_acc"]))
    # one pretrained set per seed, shared by the four trials
    assert len(list((experiment / "pretrain").glob("*.pt"))) == 3 * 3


@pytest.mark.slow
def test_asha_stopped_trials_reach_optuna_as_pruned(tmp_path):
    space = _space(tmp_path, epochs=4)
    rc = tune_mod.main(["--space", str(space), "--num-samples", "6", "--storage-path",
                        str(tmp_path / "results"), "--name", "asha", "--asha",
                        "--grace-epochs", "1", "--concurrency", "1", "--checkpoint-every", "1",
                        "--set", "population=2"])
    assert rc == 0
    experiment = tmp_path / "results" / "asha"
    trials = pd.read_parquet(experiment / TRIALS)
    stopped = trials[trials["status"] == "STOPPED"]
    assert len(stopped) >= 1 and (stopped["epochs_run"] < 4).all()
    # a stopped trial keeps what a finished one keeps, not its game (slimmed at the end)
    members = pd.read_parquet(experiment / MEMBERS)
    assert set(members.loc[members["trial_id"].isin(stopped["trial_id"]), "status"]) == {"stopped"}
    for trial_id in stopped["trial_id"]:
        (trial_dir,) = experiment.glob(f"kdgan_{trial_id}*")
        kept = {p.name for ckpt in trial_dir.glob("checkpoint_*") for p in ckpt.iterdir()}
        assert "state.pt" not in kept and {"model.pt", "history.parquet", "summary.json"} <= kept
    assert json.loads((experiment / "search.json").read_text())[-1]["stopped_checkpoints_slimmed"] == len(stopped)
    study = _study(experiment)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(pruned) == len(stopped)
    assert len(complete) == (trials["status"] == "TERMINATED").sum()
    # no early score poses as a finished trial: every COMPLETE trial ran every epoch
    assert all(max(t.intermediate_values) == 4 for t in complete)


def _count(experiment: Path, status: str) -> int:
    try:
        trials = read_trials(experiment)
        return int((trials["status"] == status).sum()) if len(trials) else 0
    except Exception:
        return 0


def _start(cmd: list[str], **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _interrupt_after(cmd: list[str], experiment: Path, finished: int, sig: int) -> subprocess.Popen:
    """Start the search and send `sig` to its process group once `finished` trials ended and
    the next one has reported."""
    # epochs of a quarter second at least, so that the signal lands inside a trial however
    # fast the machine (faults.slow_epochs through the test-only hook)
    tests_dir = str(Path(__file__).parent)
    proc = _start(cmd, KDGAN_EPOCH_HOOK="faults:slow_epochs", KDGAN_EPOCH_SLEEP="0.25",
                  PYTHONPATH=os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])))
    deadline = time.time() + 240
    while (_count(experiment, "TERMINATED") < finished or _count(experiment, "RUNNING") < 1) \
            and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_search_resumes_losing_and_repeating_nothing(tmp_path, sig):
    """kill -9 of the driver and its Ray, or Ctrl-C (SIGINT to the process group), after two
    trials have finished; the same command then completes the search, and every file agrees:
    trials.parquet, epochs.parquet, their parts, optuna.db and Tune's state."""
    from benchmarks.faults import audit

    space = _space(tmp_path, epochs=6)
    storage = tmp_path / "results"
    experiment = storage / "killed"
    cmd = [sys.executable, "-m", "kdgan.tune", "--space", str(space), "--num-samples", "6",
           "--concurrency", "1", "--storage-path", str(storage), "--name", "killed",
           "--checkpoint-every", "2"]
    first = _interrupt_after(cmd, experiment, 2, sig)
    if sig == signal.SIGINT:  # Ctrl-C: exit 130, and the cut trial does not look finished
        out = first.stdout.read()
        assert first.returncode == 130, out[-3000:]
        trials = pd.read_parquet(experiment / TRIALS)
        assert "INTERRUPTED" in set(trials["status"]) and "STOPPED" not in set(trials["status"])
    before = read_trials(experiment)
    done_before = before[before["status"] == "TERMINATED"]
    assert 2 <= len(done_before) < 6
    epochs_before = read_epochs(experiment)

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=400,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming" in second.stdout
    assert "6 trials" in second.stdout  # the final line counts every trial, not this life's
    after = pd.read_parquet(experiment / TRIALS)
    assert len(after) == 6 and after["trial_id"].is_unique
    assert (after["status"] == "TERMINATED").all()
    # the trials finished before the interruption are kept as they were, not run again
    kept = after.set_index("trial_id").loc[done_before["trial_id"]]
    assert (kept["alpha"].values == done_before["alpha"].values).all()
    assert (kept["best_val_acc"].values == done_before["best_val_acc"].values).all()
    assert (kept["wall_s"].values == done_before["wall_s"].values).all()  # not run again
    # and so are their epoch rows (the bug: a restore brought back an empty callback)
    epochs = pd.read_parquet(experiment / EPOCHS)
    old = epochs_before[epochs_before["trial_id"].isin(done_before["trial_id"])]
    new = epochs.merge(old[["trial_id", "epoch"]], on=["trial_id", "epoch"])
    assert len(new) == len(old) == 7 * len(done_before)
    report = audit(experiment, 6)
    assert report["epoch_rows_lost"] == report["epoch_rows_duplicated"] == 0, report
    assert report["optuna_running"] == 0 and report["optuna_complete"] == 6, report
    assert report["compacted_matches_parts"] and report["tune_matches_parquet"], report
    search_log = json.loads((experiment / "search.json").read_text())
    assert [r["trials"] for r in search_log][-1] == 6


@pytest.mark.slow
def test_a_failed_trial_is_retried_from_its_last_checkpoint(tmp_path, monkeypatch):
    """Each trial crashes once before epoch 4; FailureConfig retries it from the checkpoint
    of epoch 2, and it ends with the same history as a trial that never crashed."""
    space = _space(tmp_path, epochs=4)
    tests_dir = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("KDGAN_EPOCH_HOOK", "faults:crash_once")
    monkeypatch.setenv("KDGAN_CRASH_AT", "4")
    monkeypatch.setenv("KDGAN_CRASH_DIR", str(tmp_path / "crashed"))
    rc = tune_mod.main(["--space", str(space), "--num-samples", "2", "--storage-path",
                        str(tmp_path / "results"), "--name", "retry", "--checkpoint-every", "2",
                        "--max-failures", "1"])
    assert rc == 0
    assert len(list((tmp_path / "crashed").iterdir())) == 2  # both trials did crash
    experiment = tmp_path / "results" / "retry"
    trials = pd.read_parquet(experiment / TRIALS)
    assert (trials["status"] == "TERMINATED").all() and (trials["epochs_run"] == 4).all()
    # the files keep the history: a failure and a second life each, the time of both lives
    assert (trials["failures"] == 1).all() and (trials["lives"] == 2).all()
    assert (trials["trial_s"] > 0).all()
    epochs = pd.read_parquet(experiment / EPOCHS)
    for t in trials["trial_id"]:
        assert epochs.loc[epochs["trial_id"] == t, "epoch"].tolist() == [0, 1, 2, 3, 4]
    # rerun the first trial's configuration without crashing: the same validation curve
    from kdgan.config import Config
    from kdgan.run import Run

    row = trials.iloc[0]
    fields = {k: row[k] for k in Config().to_dict() if k in row and k != "pretrain_cache"}
    run = Run(Config.from_dict({k: (v.item() if hasattr(v, "item") else v) for k, v in fields.items()}))
    run.pretrain()
    while not run.finished:
        run.play_epoch()
    got = epochs[epochs["trial_id"] == row["trial_id"]]["val/acc"].tolist()
    assert got == pytest.approx(run.history_frame()["val/acc"].tolist())


def test_the_ray_internals_kdgan_relies_on_are_there(tmp_path):
    """Fails loudly when a Ray upgrade moves what kdgan reads: the loopback switch of
    `local_ray` and the attributes of OptunaSearch that KDGANOptunaSearch tells Optuna with."""
    from ray import tune
    from ray._private import ray_constants

    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
    searcher = optuna_search("m", 0, f"sqlite:///{tmp_path / 'o.db'}", "s", "tpe")
    searcher.set_search_properties("m", "max", {"a": tune.uniform(0, 1)})
    assert searcher.suggest("t1")["a"] is not None
    assert set(searcher._ot_trials) == {"t1"}
    assert searcher._storage.get_study_id_from_name(searcher._study_name) is not None
    searcher.on_trial_result("t1", {"m": 0.25, "epoch": 1})  # by epoch; the last report wins
    searcher.on_trial_result("t1", {"m": 0.5, "epoch": 1})
    assert searcher._ot_study.trials[0].intermediate_values == {1: 0.5}
    assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.RUNNING
    searcher.on_trial_complete("t1", {"m": 0.5, "epoch": 1, "epochs_total": 3})  # stopped early
    assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert "t1" in searcher._completed_trials


@pytest.mark.slow
def test_resources_no_node_has_fail_at_once_instead_of_pending_forever(tmp_path, capsys):
    space = _space(tmp_path)
    t0 = time.time()
    rc = tune_mod.main(["--space", str(space), "--storage-path", str(tmp_path / "results"),
                        "--name", "gpu", "--gpus-per-trial", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and time.time() - t0 < 60
    assert "error: no node can run a trial with --cpus-per-trial 1 --gpus-per-trial 1; nodes: " \
           "127.0.0.1: " in err and " 0 GPU" in err
    assert not (tmp_path / "results" / "gpu" / TRIALS).exists()  # no trial row pretends to be one


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.5, 3.0])
def test_ctrl_c_while_the_search_starts_exits_130_without_a_traceback(tmp_path, after_s):
    """While torch and Ray import, or while Ray starts: 130 (what a shell shows for Ctrl-C),
    one line, nothing else (before: a KeyboardInterrupt traceback and death by SIGINT)."""
    space = _space(tmp_path)
    proc = _start([sys.executable, "-m", "kdgan.tune", "--space", str(space), "--storage-path",
                   str(tmp_path / "results"), "--name", "early"])
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert "Traceback" not in out
