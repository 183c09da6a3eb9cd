"""Interrupt a smoke search again and again at random moments, then check every file.

    python -m benchmarks.faults --interruptions 20 --out results/faults

Each round starts the same `python -m kdgan.tune` command (a tiny synthetic space, Ray in
its own process) and, after a random delay, sends SIGINT (Ctrl-C, to the whole process
group as a terminal does) or SIGKILL (to the group: the driver and the Ray it started).
Moments are drawn over the whole life of a search, so some fall while Ray starts, while a
trial writes its checkpoint, or while the Parquet files are rewritten. After the last
interruption the command runs to the end, and `audit` reads every file the search writes:

- trials.parquet and epochs.parquet against the parts they are compacted from;
- every trial once; every finished trial with every epoch, each once;
- optuna.db: one Optuna trial per Tune trial, none left RUNNING;
- Tune's own experiment state: the same trial ids as trials.parquet.

The report (report.md, report.json) gives interruptions, trials, rows lost, rows
duplicated and Optuna trials left RUNNING; the target is 0 in the last three.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdgan.io import atomic_write
from kdgan.results import EPOCHS, TRIALS, read_epochs, read_trials

SPACE = """
fixed:
  dataset: {data}
  n: 60
  cls_arch: mlp-small
  tch_arch: linear
  dis_arch: mlp-small
  batch_size: 20
  pretrain_epochs: 2
  dis_pretrain_epochs: 1
  epochs: {epochs}
  cls_steps: 1
  tch_steps: 1
  dis_steps: 1
  augment: false
  eval_batch_size: 500
search:
  alpha: {{uniform: [0.0, 1.0]}}
  beta: {{loguniform: [1.0e-3, 1.0e+3]}}
  gamma: {{loguniform: [1.0e-4, 1.0e+2]}}
"""


def write_space(folder: Path, epochs: int) -> Path:
    """A tiny synthetic dataset (3 classes of 8x8 patterns) and a space over it."""
    rng = np.random.default_rng(0)
    patterns = np.random.default_rng(1234).random((3, 8, 8)) > 0.6

    def blobs(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, size=n)
        x = patterns[y].astype(np.float32) + 0.35 * rng.standard_normal((n, 8, 8))
        return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)

    arrays = {}
    for split, n in (("train", 300), ("val", 200), ("test", 200)):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = blobs(n)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "blobs.npz", **arrays)
    space = folder / "space.yaml"
    space.write_text(SPACE.format(data=folder / "blobs.npz", epochs=epochs))
    return space


def audit(experiment: Path, num_samples: int | None = None) -> dict[str, Any]:
    """Read every file a finished search wrote and count what disagrees."""
    import optuna

    experiment = Path(experiment)
    out: dict[str, Any] = {}
    trials = pd.read_parquet(experiment / TRIALS)
    epochs = pd.read_parquet(experiment / EPOCHS)
    parts_t, parts_e = read_trials(experiment), read_epochs(experiment)
    out["trials"] = len(trials)
    out["trials_duplicated"] = int(trials["trial_id"].duplicated().sum())
    out["compacted_matches_parts"] = bool(
        set(trials["trial_id"]) == set(parts_t["trial_id"]) and len(epochs) == len(parts_e))
    key = epochs[["trial_id", "epoch"]]
    out["epoch_rows_duplicated"] = int(key.duplicated().sum())
    lost = 0
    finished = trials[trials["status"].isin(["TERMINATED", "STOPPED", "DIVERGED"])]
    for _, t in finished.iterrows():
        have = set(epochs.loc[epochs["trial_id"] == t["trial_id"], "epoch"].astype(int))
        lost += len(set(range(int(t["epochs_run"]) + 1)) - have)
    out["epoch_rows_lost"] = lost
    out["trials_not_finished"] = int((~trials["status"].isin(
        ["TERMINATED", "STOPPED", "DIVERGED", "ERROR"])).sum())
    if num_samples is not None:
        out["trials_lost"] = max(0, num_samples - len(trials))
    storage = f"sqlite:///{experiment / 'optuna.db'}"
    studies = optuna.get_all_study_summaries(storage)
    ot = [t for s in studies
          for t in optuna.load_study(study_name=s.study_name, storage=storage).trials]
    out["optuna_trials"] = len(ot)
    out["optuna_running"] = sum(t.state == optuna.trial.TrialState.RUNNING for t in ot)
    out["optuna_complete"] = sum(t.state == optuna.trial.TrialState.COMPLETE for t in ot)
    tune_ids = _tune_trial_ids(experiment)
    out["tune_trials"] = len(tune_ids)
    out["tune_matches_parquet"] = tune_ids == set(trials["trial_id"])
    return out


def _tune_trial_ids(experiment: Path) -> set[str]:
    """The trial ids in Tune's newest experiment state file (by the time in its name: Tune's
    final sync rewrites the older files too, so their mtimes say nothing)."""
    states = sorted(experiment.glob("experiment_state-*.json"), key=lambda p: p.name)
    if not states:
        return set()
    state = json.loads(states[-1].read_text())
    ids = set()
    for entry in state.get("trial_data", []):
        meta = json.loads(entry[0]) if isinstance(entry, list) else entry
        ids.add(meta.get("trial_id") or json.loads(meta["metadata"])["trial_id"])
    return ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interruptions", type=int, default=20, help="in all, over every search")
    p.add_argument("--per-search", type=int, default=5, help="interruptions before a search is "
                                                               "let finish and audited")
    p.add_argument("--num-samples", type=int, default=6)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-delay", type=float, default=30.0,
                   help="an interruption comes 1 to this many seconds after the start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.interruptions < 1 or args.per_search < 1 or args.num_samples < 1:
        p.error("--interruptions, --per-search and --num-samples must be >= 1")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kdgan-faults-"))
    atexit.register(shutil.rmtree, work, True)  # the report keeps what the audit found
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(work / "ray")}
    (work / "ray").mkdir()
    space = write_space(work, args.epochs)
    rounds: list[dict[str, Any]] = []
    searches: list[dict[str, Any]] = []
    done = 0
    search = 0
    while done < args.interruptions:
        search += 1
        name = f"faults-{search}"
        cmd = [sys.executable, "-m", "kdgan.tune", "--space", str(space), "--num-samples",
               str(args.num_samples), "--concurrency", "2", "--checkpoint-every", "1",
               "--storage-path", str(work / "results"), "--name", name, "--seed", str(search)]
        for _ in range(min(args.per_search, args.interruptions - done)):
            sig = rng.choice([signal.SIGINT, signal.SIGKILL])
            delay = rng.uniform(1.0, args.max_delay)
            proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            t0 = time.time()
            try:
                proc.wait(timeout=delay)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:  # SIGINT not heeded within 2 minutes
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            _reap(proc.pid)
            rounds.append({"search": name, "signal": "none" if finished else sig.name,
                           "after_s": round(time.time() - t0, 1), "exit": proc.returncode})
            print(f"{name}: {rounds[-1]}", flush=True)
            done += 0 if finished else 1
        last = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        result = {"search": name, "final_exit": last.returncode}
        if last.returncode:
            result["final_stderr"] = last.stderr.strip().splitlines()[-1:] if last.stderr.strip() else []
        result.update(audit(work / "results" / name, args.num_samples))
        searches.append(result)
        print(f"{name}: {result}", flush=True)
    totals = {"interruptions": sum(r["signal"] != "none" for r in rounds),
              "sigint": sum(r["signal"] == "SIGINT" for r in rounds),
              "sigkill": sum(r["signal"] == "SIGKILL" for r in rounds),
              "searches": len(searches),
              "trials": sum(s["trials"] for s in searches),
              "trials_lost": sum(s["trials_lost"] for s in searches),
              "rows_lost": sum(s["epoch_rows_lost"] for s in searches),
              "rows_duplicated": sum(s["epoch_rows_duplicated"] + s["trials_duplicated"]
                                     for s in searches),
              "optuna_running": sum(s["optuna_running"] for s in searches),
              "all_files_agree": all(s["compacted_matches_parts"] and s["tune_matches_parquet"]
                                     and s["final_exit"] == 0 for s in searches)}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(["python -m benchmarks.faults", *(argv or sys.argv[1:])]),
              "totals": totals, "searches": searches, "rounds": rounds}
    atomic_write(args.out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    lines = ["# Interrupted searches", "", f"`{report['command']}`", "", *_markdown([totals]), "",
             *_markdown(searches), ""]
    atomic_write(args.out / "report.md", lambda tmp: tmp.write_text("\n".join(lines)))
    print(json.dumps(totals))
    ok = totals["rows_lost"] == totals["rows_duplicated"] == totals["optuna_running"] == 0
    return 0 if ok and totals["all_files_agree"] else 1


def _markdown(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(rows[0]) if rows else []
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
            *("| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows)]


def _reap(pgid: int) -> None:
    """Kill what is left of a search's process group (Ray's daemons after a SIGINT)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    sys.exit(main())
