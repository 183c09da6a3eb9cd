"""Hyperparameter search of KDGAN with Ray Tune and Optuna's TPE.

    python -m kdgan.tune --space mnist                   # Ray started inside this process
    python -m kdgan.tune --space mnist --smoke           # a tiny budget, to check a setup
    python -m kdgan.tune --space mnist --address auto    # join a running cluster (ray up)
    python -m kdgan.tune --list-spaces

Every trial trains one configuration as a seed population (`population` P in the space or
--set population=P: the members of seeds s .. s + P - 1, kdgan.population), pretraining
shared between trials through a file-locked cache, and reports each epoch. Every trial uses
the same seeds, so trials differ by their hyperparameters alone and compare seed by seed.
The objective is the members' mean best validation accuracy; ASHA (--asha) compares the
members' mean curve; test accuracy is recorded and never used for a choice. Results go to
<storage>/<name>/trials.parquet (the means, their standard errors, the member count),
members.parquet (a row per trial per member) and epochs.parquet (a row per trial, epoch and
member: its `seed` column) (kdgan.results); the Optuna study lives in
<storage>/<name>/optuna.db. Run the same command again to resume an interrupted search;
--fresh starts it over. An interrupted search exits 130.

Without --address, Ray starts inside this process and every socket of it is bound to
127.0.0.1. With --address, it joins that cluster (see docs/cluster.md for what a cluster
exposes and how it is protected).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__":  # Ctrl-C while torch and Ray import (seconds): 130, no traceback
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the compact CLIReporter table, not logs
# One checkpoint kept per trial forces a snapshot of the experiment state at each
# checkpoint; that is what makes a killed search resumable, so the warning about it is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from kdgan import data as data_mod  # noqa: E402
from kdgan import experiment as exp  # noqa: E402
from kdgan import raynode, searcher  # noqa: E402
from kdgan import spaces  # noqa: E402
from kdgan.config import Config, ConfigError, parse_overrides  # noqa: E402
from kdgan.io import atomic_write  # noqa: E402
from kdgan.run import pretrain_lock_timeout  # noqa: E402
from kdgan.results import (FINAL, MEMBER_ROWS, MEMBER_SELECTION, ParquetResults, ResultsError, compact,  # noqa: E402
                           mark_interrupted, read_trials, set_aside_orphans)

TRAINABLE_NAME = "kdgan"
STATE_FILE = "state.pt"      # a running trial's checkpoint: the whole game, to resume
MODEL_FILE = "model.pt"      # a finished trial's: the selected model (kdgan.run.Run.save_model)
FINAL_FILE = "final.json"    # ... and its last reported metrics
OBJECTIVE = "best_val_acc"  # the members' mean of each one's best validation accuracy
# A test-only hook: "module:function", called before each epoch of each trial with
# (trial_id, epoch, cfg); the tests inject faults through it. Unset in normal use.
EPOCH_HOOK_ENV = "KDGAN_EPOCH_HOOK"
INTERRUPTED = 130  # the exit status of a search stopped by SIGINT (as a shell reports it)


# ---------------------------------------------------------------------------- trainable
def _epoch_hook() -> Callable[..., None] | None:
    spec = os.environ.get(EPOCH_HOOK_ENV)
    if not spec:
        return None
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def _plain(value: Any) -> Any:
    """numpy and torch scalars as Python numbers, for JSON."""
    return value.item() if hasattr(value, "item") else str(value)


def kdgan_trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable: one configuration, pretraining and game, reported each
    epoch; checkpoints every `checkpoint_every` epochs and resumes from Tune's checkpoint."""
    import ray
    from ray import tune

    from kdgan.game import NonFiniteLossError
    from kdgan.population import Population

    started = time.perf_counter()
    life = uuid.uuid4().hex[:12]  # this start of the trial (a restore starts another)
    every = int(config.get("_checkpoint_every", 5))
    cfg = Config.from_dict({k: v for k, v in config.items() if not k.startswith("_")})
    run = Population(cfg)  # one member, or the seed population of cfg.population
    context = ray.get_runtime_context()
    node = {"hostname": socket.gethostname(), "node_id": context.get_node_id()}
    hook = _epoch_hook()

    def report(row: dict[str, Any], extra: dict[str, Any] | None = None,
               save: bool = False, final: bool = False) -> None:
        row = dict(row)
        members = row.pop("members", [])
        best = run.best()  # the members' means (the objective) and their standard errors
        metrics = {**row, OBJECTIVE: best["best_val_acc"], "test_acc": best["test_acc"],
                   f"{OBJECTIVE}_se": best["best_val_acc_se"], "test_acc_se": best["test_acc_se"],
                   "members": best["members"],
                   # what ASHA compares: the members' mean curve (a diverged member's last value)
                   "val/acc": best["val_acc_curve"],
                   "best_epoch": best["best_epoch"], "epochs_total": run.cfg.epochs,
                   "wall_s": run.wall_s, "trial_s": time.perf_counter() - started, "life": life,
                   "diverged": False, "error": "", **node, **(extra or {}),
                   # each member's row of this epoch and each member's selection so far, for
                   # kdgan.results (epochs.parquet with its seed column, members.parquet)
                   MEMBER_ROWS: json.dumps(members, default=_plain),
                   MEMBER_SELECTION: json.dumps(run.member_rows(), default=_plain)}
        metrics["checkpointed"] = save or final  # kdgan.results writes its part files then
        if not (save or final):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            if final:  # what a user needs of a finished trial, not what a resume needs
                run.save_model(Path(d) / MODEL_FILE)
                run.history_frame().to_parquet(Path(d) / "history.parquet")
                (Path(d) / "summary.json").write_text(json.dumps(run.summary(), indent=2))
                (Path(d) / FINAL_FILE).write_text(json.dumps(metrics, default=_plain))
            else:
                run.save(Path(d) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            if (Path(d) / FINAL_FILE).exists():  # finished before a kill hid it from Tune
                last = json.loads((Path(d) / FINAL_FILE).read_text())
                tune.report({**last, "life": life, "trial_s": time.perf_counter() - started,
                             "checkpointed": False})
                return
            run.load(Path(d) / STATE_FILE)
    else:  # with the shared cache, a restarted trial gets its pretraining back in a blink
        report(run.pretrain(), save=not cfg.pretrain_cache)
    while not run.finished:
        if hook:
            hook(trial_id=tune.get_context().get_trial_id(), epoch=run.epoch + 1, cfg=run.cfg)
        try:
            row = run.play_epoch()
        except NonFiniteLossError as e:  # the trial ends with its reason; the search goes on
            # the last finished epoch's row again, flagged: no row for the epoch that failed
            report(run.rows[-1], {"diverged": True, "error": str(e)}, final=True)
            return
        # The last epoch always checkpoints: Tune snapshots the experiment when a trial saves,
        # and that snapshot is what lets a killed search know this trial had finished. It
        # keeps the selected classifier, the history and the summary (a few MB), not the whole
        # game (three players and their optimisers: 90 MB a trial at MNIST's sizes).
        report(row, save=run.epoch % every == 0, final=run.finished)


def tune_space(space: spaces.Space) -> dict[str, Any]:
    from ray import tune

    makers = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
    out: dict[str, Any] = {}
    for key, dist in space.search.items():
        out[key] = tune.choice(list(dist.args)) if dist.kind == "choice" else makers[dist.kind](*dist.args)
    return out


# ---------------------------------------------------------------------------- the CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kdgan.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", help="a name in search_spaces/ or a path to a YAML file")
    p.add_argument("--list-spaces", action="store_true", help="list the search spaces and exit")
    p.add_argument("--num-samples", type=int, default=None,
                   help="trials to run (default 32; 4 with --smoke)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="trials at once (default: as many as the resources allow)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions allowed, e.g. 0.25")
    p.add_argument("--storage-path",
                   default=os.environ.get("KDGAN_STORAGE_PATH", str(Path("~/kdgan_results").expanduser())),
                   help="where experiments live: a local folder (relative paths work), or s3:// / "
                        "gs:// or a shared mount on clusters (default $KDGAN_STORAGE_PATH, else "
                        "~/kdgan_results)")
    p.add_argument("--name", help="experiment name, a plain folder name (default: "
                                  "kdgan-<space>[-smoke])")
    p.add_argument("--fresh", action="store_true",
                   help="start the experiment over: delete its trials, results and Optuna study "
                        "(the pretrained players are kept)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (TPE's sampler)")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="join an existing Ray cluster ('auto' or host:port; default $RAY_ADDRESS)"
                        "; without it Ray starts inside this process, on loopback")
    p.add_argument("--connect-timeout", type=float, default=30.0,
                   help="seconds to wait for the cluster at --address to answer (default 30)")
    p.add_argument("--wait-resources", type=float, default=60.0,
                   help="seconds to wait for a node that can run a trial (--cpus/--gpus-per-trial)"
                        " on a cluster, e.g. while an autoscaler adds one (default 60)")
    p.add_argument("--asha", action="store_true", help="stop poor trials early (ASHA)")
    p.add_argument("--grace-epochs", type=int, default=5, help="ASHA's grace period in epochs")
    p.add_argument("--max-failures", type=int, default=2,
                   help="retries of a failed trial from its last checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=5, help="epochs between checkpoints")
    p.add_argument("--pretrain-cache", default=None,
                   help="pretrained players shared by trials (default <experiment>/pretrain; "
                        "on a cluster give a shared mount)")
    p.add_argument("--smoke", action="store_true", help="tiny budget: the space's smoke settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a fixed setting of the space (repeatable)")
    return p


def plan(args: argparse.Namespace) -> tuple[spaces.Space, dict[str, Any], str, int]:
    """Everything a user can get wrong, checked before anything starts: the space, the
    settings, the numbers, the name, the storage path and (in-process) the data."""
    space = spaces.load(args.space)
    fixed = space.fixed_config(smoke=args.smoke, overrides=parse_overrides(args.set))
    overlap = set(fixed) & set(space.search)
    if overlap:
        raise ConfigError(f"--set {sorted(overlap)}: searched in {space.path}, cannot be fixed")
    spaces.check_against_config(spaces.Space(space.name, space.path, fixed, space.search))
    for key in ("num_samples", "concurrency", "checkpoint_every"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise ConfigError(f"--{key.replace('_', '-')}={value}: expected >= 1")
    for key in ("max_failures", "grace_epochs", "connect_timeout", "wait_resources"):
        if getattr(args, key) < 0:
            raise ConfigError(f"--{key.replace('_', '-')}={getattr(args, key)}: expected >= 0")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise ConfigError(f"--cpus-per-trial {args.cpus_per_trial:g} --gpus-per-trial "
                          f"{args.gpus_per_trial:g}: expected cpus > 0 and gpus >= 0")
    default = f"kdgan-{space.name}{'-smoke' if args.smoke else ''}"
    name = exp.check_name(default if args.name is None else args.name)
    args.storage_path = exp.resolve_storage(args.storage_path)
    pretrain_lock_timeout()  # read by every trial: a bad value fails here, not in each of them
    if args.address is None and "dataset" not in space.search:
        # In-process Ray: the data must be here, so a missing file fails now, not per trial.
        # (On a cluster the workers read it, so only they can tell.)
        data_mod.load(Config.from_dict({k: v for k, v in fixed.items() if k != "pretrain_cache"}))
    num_samples = args.num_samples or (4 if args.smoke else 32)
    return space, fixed, name, num_samples


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt again
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the search started, or after it ended
        print("interrupted; run the same command to resume", file=sys.stderr)
        return INTERRUPTED


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_spaces:
        for name, path in spaces.available().items():
            print(f"{name:12s} {path}")
        return 0
    if not args.space:
        print("error: --space is required (see --list-spaces)", file=sys.stderr)
        return 2
    try:
        space, fixed, name, num_samples = plan(args)
    except (spaces.SpaceError, ConfigError, data_mod.DataError, exp.ExperimentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return run_search(space, fixed, args, name, num_samples)
    except (exp.ExperimentError, ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except raynode.SearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------- the search
def run_search(space: spaces.Space, fixed: dict[str, Any], args: argparse.Namespace,
               name: str, num_samples: int) -> int:
    """Hold the experiment, check its files, start or join Ray, run the Tuner, report."""
    experiment = exp.local_dir(args.storage_path, name)
    with exp.ExperimentLock(experiment):
        if args.fresh:
            removed = exp.clear(experiment, args.storage_path, name)
            if removed:
                print(f"--fresh: removed {', '.join(removed)} from {experiment}", flush=True)
        exp.check_files(experiment)
        param_space = _param_space(space, fixed, args, experiment)
        t0 = time.time()
        with raynode.connect(args.address, args.connect_timeout):
            ray_init_s = time.time() - t0
            raynode.wait_for_resources(args.cpus_per_trial, args.gpus_per_trial,
                                       args.wait_resources, local=not args.address)
            results = ParquetResults(experiment)
            tuner = _tuner(space, fixed, args, name, num_samples, experiment, param_space,
                           results, t0)
            grid = tuner.fit()
            cluster_cpus = _cluster_cpus()
        return _finish(space, args, experiment, grid, num_samples, t0, ray_init_s, cluster_cpus)


def _cluster_cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", 0)


def _param_space(space: spaces.Space, fixed: dict[str, Any], args: argparse.Namespace,
                 experiment: Path) -> dict[str, Any]:
    fixed = dict(fixed)
    if args.gpus_per_trial > 0 and "device" not in fixed:
        fixed["device"] = "cuda"
    param_space = {**fixed, **tune_space(space),
                   "pretrain_cache": args.pretrain_cache or str(experiment / "pretrain"),
                   "_checkpoint_every": args.checkpoint_every}
    if "threads" not in fixed:
        param_space["threads"] = max(1, int(args.cpus_per_trial))
    return param_space


def _tuner(space, fixed, args, name, num_samples, experiment, param_space, results, t0):
    """A new Tuner, or the one of an interrupted search restored from its state."""
    from ray import tune
    from ray.tune import CLIReporter
    from ray.tune.schedulers import ASHAScheduler

    trainable = tune.with_resources(kdgan_trainable, {"cpu": args.cpus_per_trial,
                                                      "gpu": args.gpus_per_trial})
    tune.register_trainable(TRAINABLE_NAME, trainable)
    restore_path = f"{args.storage_path.rstrip('/')}/{name}"
    if tune.Tuner.can_restore(restore_path):
        print(f"resuming {restore_path}", flush=True)
        try:
            return tune.Tuner.restore(restore_path, trainable=TRAINABLE_NAME, resume_errored=True,
                                      param_space=param_space)
        except Exception as e:  # noqa: BLE001 - Tune raises many types for a damaged state
            raise exp.ExperimentError(f"{restore_path}: Tune's saved state cannot be restored "
                                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                                      "start over with --fresh") from None
    reporter = CLIReporter(
        parameter_columns={k: k for k in space.search},
        metric_columns={"epoch": "epoch", "val/acc": "val", OBJECTIVE: "best val",
                        "test_acc": "test@best"},
        max_report_frequency=30, sort_by_metric=True, metric=OBJECTIVE, mode="max")
    run_config = tune.RunConfig(
        name=name, storage_path=args.storage_path, callbacks=[results],
        failure_config=tune.FailureConfig(max_failures=args.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        progress_reporter=reporter, verbose=1)
    # The study is named after the experiment (one search holds it at a time: the lock).
    search_alg = searcher.optuna_search(OBJECTIVE, args.seed,
                                        f"sqlite:///{experiment / 'optuna.db'}", name, args.sampler)
    scheduler = None
    if args.asha:
        # ASHA compares trials on this epoch's validation accuracy: the running best would
        # tie every trial at the score of the pretraining they share.
        scheduler = ASHAScheduler(metric="val/acc", mode="max", time_attr="epoch",
                                  max_t=int(fixed.get("epochs", Config().epochs)),
                                  grace_period=args.grace_epochs)
    tune_config = tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                  num_samples=num_samples, reuse_actors=True,
                                  max_concurrent_trials=args.concurrency)
    return tune.Tuner(TRAINABLE_NAME, param_space=param_space, tune_config=tune_config,
                      run_config=run_config)


def _finish(space, args, experiment: Path, grid, num_samples: int, t0: float,
            ray_init_s: float, cluster_cpus: float) -> int:
    """Mark what did not finish, settle Optuna, compact the results, log and print."""
    # A search ends complete with num_samples finished trials; fewer, or a trial still
    # running, means it was interrupted (Tune handles SIGINT itself and returns normally).
    known = {t.trial_id: t.status for t in grid._experiment_analysis.trials}  # Tune's state
    set_aside_orphans(experiment, set(known))
    rows = read_trials(experiment)
    unfinished = set() if rows.empty else set(rows.loc[~rows["status"].isin(FINAL), "trial_id"])
    unfinished |= {t for t, status in known.items() if status not in ("TERMINATED", "ERROR")}
    interrupted = bool(unfinished) or int(0 if rows.empty else rows["status"].isin(FINAL).sum()) < num_samples
    mark_interrupted(experiment, unfinished)
    orphans = 0 if interrupted else searcher.fail_orphans(experiment)
    trials, _ = compact(experiment)
    slimmed = _slim_stopped(grid, trials)
    wall = time.time() - t0
    _log_invocation(experiment, {"started": t0, "wall_s": wall, "num_samples": num_samples,
                                 "concurrency": args.concurrency, "cpus_per_trial": args.cpus_per_trial,
                                 "gpus_per_trial": args.gpus_per_trial, "sampler": args.sampler,
                                 "seed": args.seed, "asha": args.asha, "smoke": args.smoke,
                                 "address": args.address or "local", "trials": len(trials),
                                 "interrupted": interrupted, "optuna_orphans_failed": orphans,
                                 "cluster_cpus": cluster_cpus, "ray_init_s": ray_init_s,
                                 "stopped_checkpoints_slimmed": slimmed})
    counts = trials["status"].value_counts() if not trials.empty else {}
    print(f"\n{len(trials)} trials, this invocation {wall:.0f}s "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
    done = trials[trials["best_val_acc"].notna()] if not trials.empty else trials
    if not done.empty:
        best = done.loc[done["best_val_acc"].idxmax()]
        members = int(best.get("members") or 1)
        se = (lambda key: f" +- {100 * best[key]:.2f}" if members > 1 and key in best else "")
        print(f"best trial {best['trial_id']}: " + ", ".join(f"{k}={best[k]:.4g}" for k in space.search
                                                             if isinstance(best[k], float))
              + f" | val {100 * best['best_val_acc']:.2f}{se('best_val_acc_se')} test "
              f"{100 * best['test_acc']:.2f}{se('test_acc_se')}"
              + (f" (mean +- standard error of {members} seeds; confirm it on fresh seeds: "
                 f"python -m kdgan.confirm {experiment} --top 3 --seeds 10)" if members > 1
                 else f" (epoch {int(best['best_epoch'])})"))
    print(f"results: {experiment / 'trials.parquet'}, {experiment / 'epochs.parquet'}; "
          f"Optuna study: sqlite:///{experiment / 'optuna.db'}")
    if interrupted:
        print(f"interrupted with {num_samples - len(trials) + len(unfinished)} trial(s) to run; "
              "run the same command to resume", file=sys.stderr)
        return INTERRUPTED
    return 0 if (trials["status"] == "TERMINATED").any() else 1


def _slim_stopped(grid, trials) -> int:
    """A trial that ASHA stopped keeps its last checkpoint as it was: the whole game of every
    member, for a resume that will never come (Tune does not tell a trial it is being
    stopped). Replace it by what a finished trial keeps (each member's selected model, the
    history, the summary). Local checkpoints only; returns how many were slimmed."""
    if trials.empty or not (trials["status"] == "STOPPED").any():
        return 0
    from kdgan.population import Population

    stopped = set(trials.loc[trials["status"] == "STOPPED", "trial_id"])
    slimmed = 0
    for result in grid:
        checkpoint = result.checkpoint
        if result.metrics.get("trial_id") not in stopped or checkpoint is None:
            continue
        folder = Path(checkpoint.path)
        if checkpoint.filesystem.type_name != "local" or not (folder / STATE_FILE).exists():
            continue
        run = Population(Config.from_dict({k: v for k, v in result.config.items()
                                           if not k.startswith("_")}))
        run.load(folder / STATE_FILE)
        run.save_model(folder / MODEL_FILE)
        atomic_write(folder / "history.parquet", lambda tmp: run.history_frame().to_parquet(tmp))
        atomic_write(folder / "summary.json", lambda tmp: tmp.write_text(json.dumps(run.summary(), indent=2)))
        (folder / STATE_FILE).unlink()
        slimmed += 1
    return slimmed


def _log_invocation(experiment: Path, record: dict[str, Any]) -> None:
    """Append this invocation of the search to <experiment>/search.json (one per resume)."""
    path = experiment / "search.json"
    try:
        history = json.loads(path.read_text()) if path.exists() else []
    except ValueError:
        history = []  # a damaged log is not worth failing a finished search for
    history.append(record)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(history, indent=2)))


if __name__ == "__main__":
    sys.exit(main())
