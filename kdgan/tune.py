"""Hyperparameter search of KDGAN with Ray Tune and Optuna's TPE.

    python -m kdgan.tune --space mnist                   # Ray started inside this process
    python -m kdgan.tune --space mnist --smoke           # a tiny budget, to check a setup
    python -m kdgan.tune --space mnist --address auto    # join a running cluster (ray up)
    python -m kdgan.tune --list-spaces

Every trial runs the whole game of `kdgan.run.Run` (pretraining, shared between trials
through a file-locked cache, then the game) and reports each epoch. Validation accuracy is
the objective; test accuracy is recorded and never used for a choice. Results go to
<storage>/<name>/trials.parquet and epochs.parquet as trials end; the Optuna study lives in
<storage>/<name>/optuna.db. Run the same command again to resume a killed search.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the compact CLIReporter table, not logs
# One checkpoint kept per trial forces a snapshot of the experiment state at each
# checkpoint; that is what makes a killed search resumable, so the warning about it is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from kdgan import spaces  # noqa: E402
from kdgan.config import Config, ConfigError, parse_overrides  # noqa: E402
from kdgan.data import DataError  # noqa: E402
from kdgan.results import ParquetResults  # noqa: E402
from kdgan.io import atomic_write  # noqa: E402

TRAINABLE_NAME = "kdgan"
STATE_FILE = "state.pt"
OBJECTIVE = "best_val_acc"


# ---------------------------------------------------------------------------- trainable
def _maybe_crash(epoch: int, alpha: float) -> None:
    """Fault injection for the tests: KDGAN_CRASH_ONCE="EPOCH:MARKER" makes each trial (told
    apart by alpha) crash once before EPOCH; MARKER.<alpha> remembers that it did."""
    spec = os.environ.get("KDGAN_CRASH_ONCE")
    if not spec:
        return
    at, marker = spec.split(":", 1)
    done = Path(f"{marker}.{alpha}")
    if epoch == int(at) and not done.exists():
        done.touch()
        raise RuntimeError(f"injected crash before epoch {epoch}")


def kdgan_trainable(config: dict[str, Any]) -> None:
    """A Tune function trainable: one configuration, pretraining and game, reported each
    epoch; checkpoints every `checkpoint_every` epochs and resumes from Tune's checkpoint."""
    import ray
    from ray import tune

    from kdgan.game import NonFiniteLossError
    from kdgan.run import Run

    started = time.perf_counter()
    every = int(config.get("_checkpoint_every", 5))
    cfg = Config.from_dict({k: v for k, v in config.items() if not k.startswith("_")})
    run = Run(cfg)
    node = {"hostname": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}

    def report(row: dict[str, float], extra: dict[str, Any] | None = None,
               save: bool = False) -> None:
        h = run.history_frame()
        best = h.loc[h["val/acc"].idxmax()]
        metrics = {**row, OBJECTIVE: float(best["val/acc"]), "test_acc_at_best": float(best["test/acc"]),
                   "best_epoch": int(best["epoch"]), "epochs_total": run.cfg.epochs,
                   "wall_s": run.wall_s, "trial_s": time.perf_counter() - started,
                   "diverged": False, "error": "", **node, **(extra or {})}
        if not save:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            run.save(Path(d) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            run.load(Path(d) / STATE_FILE)
    else:  # with the shared cache, a restarted trial gets its pretraining back in a blink
        report(run.pretrain(), save=not cfg.pretrain_cache)
    while not run.finished:
        _maybe_crash(run.epoch + 1, run.cfg.alpha)
        try:
            row = run.play_epoch()
        except NonFiniteLossError as e:  # the trial ends with its reason; the search goes on
            # the last finished epoch's row again, flagged: no row for the epoch that failed
            report(run.history[-1], {"diverged": True, "error": str(e)})
            return
        # The last epoch always checkpoints: Tune snapshots the experiment when a trial saves,
        # and that snapshot is what lets a killed search know this trial had finished.
        report(row, save=run.finished or run.epoch % every == 0)


# ---------------------------------------------------------------------------- search
LOOPBACK = "127.0.0.1"
_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# One token per process: Ray's token loader caches the first token it reads.
_PROCESS_TOKEN = secrets.token_hex(32)


@contextlib.contextmanager
def _environ(values: dict[str, str], restore: tuple[str, ...] = ()):
    """Set `values` in os.environ; on exit put back those keys and `restore` as they were."""
    saved = {k: os.environ.get(k) for k in (*values, *restore)}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def local_ray(**init_kwargs: Any):
    """Ray inside this process, every socket of it on loopback, with token authentication
    whose token lives in memory; shut down (and the environment restored) on exit.

    Loopback: Ray binds its gRPC servers to 127.0.0.1 only when the node's address is
    127.0.0.1, and it turns a requested 127.0.0.1 into the machine's routable address unless
    `ray._private.ray_constants.ENABLE_RAY_CLUSTER` is false. That constant is read from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when Ray is first imported, so setting the
    variable here is too late whenever Ray is already imported (kdgan.results imports it).
    Both are set for the start alone: the constant for this process, the variable for the
    processes Ray starts (GCS, raylet, agents and workers inherit it). The node's address is
    checked afterwards, so a Ray that ignored both fails here instead of listening on the
    network.

    Token: a local `ray.init()` turns token authentication on and, without a token, writes
    one to ~/.ray/auth_token, after which every `ray start --head` on the machine requires
    it. Unless the user chose (RAY_AUTH_MODE, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH set),
    the search's Ray gets a random token through the environment instead, and nothing is
    written to the home folder.
    """
    import ray
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):  # guarded by a test as well
        raise RuntimeError("this Ray has no ray._private.ray_constants.ENABLE_RAY_CLUSTER: "
                           "kdgan cannot keep the in-process Ray on loopback")
    env = {_CLUSTER_ENV: "0"}
    if not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
        # With the mode unset, ray.init turns token mode on itself (for this process and the
        # ones it starts) and, finding this token, writes none to the home folder.
        env["RAY_AUTH_TOKEN"] = _PROCESS_TOKEN
    # Restored on exit (RAY_AUTH_MODE too, which ray.init sets): a Ray cluster this process
    # starts later (`ray start` in a subprocess) may take other nodes and choose its own auth.
    with _environ(env, restore=("RAY_AUTH_MODE",)):
        saved = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False
        try:
            ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=False,
                     configure_logging=False, log_to_driver=False, **init_kwargs)
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = saved
        try:
            node_ip = ray.util.get_node_ip_address()
            if node_ip != LOOPBACK:
                raise RuntimeError(f"the in-process Ray took address {node_ip}, not {LOOPBACK}:"
                                   " refusing to run a search that listens on the network")
            yield
        finally:
            ray.shutdown()


def _log_invocation(experiment: Path, record: dict[str, Any]) -> None:
    """Append this invocation of the search to <experiment>/search.json (one per resume)."""
    path = experiment / "search.json"
    history = json.loads(path.read_text()) if path.exists() else []
    history.append(record)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(history, indent=2)))


def _optuna_search(metric: str, seed: int, storage_url: str, study_name: str,
                   sampler: str):
    """OptunaSearch whose early-stopped and diverged trials reach Optuna for what they are.

    Ray tells Optuna that a trial stopped by ASHA is COMPLETE with its last (early) value,
    so TPE would learn from first-epoch scores. Here such a trial is PRUNED (Optuna keeps its
    reported intermediate values) and a diverged trial is FAIL (no value to learn from).
    """
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class KDGANOptunaSearch(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
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


def tune_space(space: spaces.Space) -> dict[str, Any]:
    from ray import tune

    makers = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
    out: dict[str, Any] = {}
    for key, dist in space.search.items():
        out[key] = tune.choice(list(dist.args)) if dist.kind == "choice" else makers[dist.kind](*dist.args)
    return out


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
                   help="where experiments live: a local directory, or s3:// / gs:// or a shared "
                        "mount on clusters (default $KDGAN_STORAGE_PATH, else ~/kdgan_results)")
    p.add_argument("--name", help="experiment name (default: kdgan-<space>[-smoke])")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (TPE's sampler)")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="join an existing Ray cluster ('auto' or host:port; default $RAY_ADDRESS)"
                        "; without it Ray starts inside this process")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_spaces:
        for name, path in spaces.available().items():
            print(f"{name:12s} {path}")
        return 0
    if not args.space:
        print("error: --space is required (see --list-spaces)", file=sys.stderr)
        return 2
    try:  # everything a user can get wrong is checked before Ray starts
        space = spaces.load(args.space)
        fixed = space.fixed_config(smoke=args.smoke, overrides=parse_overrides(args.set))
        overlap = set(fixed) & set(space.search)
        if overlap:
            raise ConfigError(f"--set {sorted(overlap)}: searched in {space.path}, cannot be fixed")
        spaces.check_against_config(spaces.Space(space.name, space.path, fixed, space.search))
        for key in ("num_samples", "concurrency"):
            value = getattr(args, key)
            if value is not None and value < 1:
                raise ConfigError(f"--{key.replace('_', '-')}={value}: expected >= 1")
        if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
            raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if args.address is None and "dataset" not in space.search:
            # In-process Ray: the data must be here, so a missing file fails now, not per trial.
            # (On a cluster the workers read it, so only they can tell.)
            from kdgan import data as data_mod

            data_mod.load(Config.from_dict({k: v for k, v in fixed.items() if k != "pretrain_cache"}))
    except (spaces.SpaceError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    num_samples = args.num_samples or (4 if args.smoke else 32)
    name = args.name or f"kdgan-{space.name}{'-smoke' if args.smoke else ''}"
    return run_search(space, fixed, args, name, num_samples)


def run_search(space: spaces.Space, fixed: dict[str, Any], args: argparse.Namespace,
               name: str, num_samples: int) -> int:
    import ray
    from ray import tune
    from ray.tune import CLIReporter
    from ray.tune.schedulers import ASHAScheduler

    # With s3:// or gs:// storage, the Optuna study (SQLite) and the Parquet files stay on
    # the driver under ~/kdgan_results/<name>; trials and checkpoints go to the storage.
    remote = "://" in args.storage_path
    experiment = Path("~/kdgan_results" if remote else args.storage_path).expanduser() / name
    experiment.mkdir(parents=True, exist_ok=True)
    pretrain_cache = args.pretrain_cache or str(experiment / "pretrain")
    if args.gpus_per_trial > 0 and "device" not in fixed:
        fixed["device"] = "cuda"
    param_space = {**fixed, **tune_space(space), "pretrain_cache": pretrain_cache,
                   "_checkpoint_every": args.checkpoint_every}
    if args.cpus_per_trial and "threads" not in fixed:
        param_space["threads"] = max(1, int(args.cpus_per_trial))

    t0 = time.time()
    with _connect(args.address):
        ray_init_s = time.time() - t0
        return _search(space, fixed, args, name, num_samples, experiment, param_space, t0,
                       ray_init_s)


@contextlib.contextmanager
def _connect(address: str | None):
    """Join the cluster at `address`, or start Ray here on loopback; shut down on exit."""
    import ray

    if not address:
        with local_ray():
            yield
        return
    ray.init(address=address)
    try:
        yield
    finally:
        ray.shutdown()


def _search(space, fixed, args, name, num_samples, experiment, param_space, t0, ray_init_s):
    import ray
    from ray import tune
    from ray.tune import CLIReporter
    from ray.tune.schedulers import ASHAScheduler

    trainable = tune.with_resources(kdgan_trainable, {"cpu": args.cpus_per_trial,
                                                      "gpu": args.gpus_per_trial})
    tune.register_trainable(TRAINABLE_NAME, trainable)
    results = ParquetResults(experiment)
    reporter = CLIReporter(
        parameter_columns={k: k for k in space.search},
        metric_columns={"epoch": "epoch", "val/acc": "val", OBJECTIVE: "best val",
                        "test_acc_at_best": "test@best"},
        max_report_frequency=30, sort_by_metric=True, metric=OBJECTIVE, mode="max")
    run_config = tune.RunConfig(
        name=name, storage_path=args.storage_path, callbacks=[results],
        failure_config=tune.FailureConfig(max_failures=args.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        progress_reporter=reporter, verbose=1)
    restore_path = f"{args.storage_path.rstrip('/')}/{name}"
    if tune.Tuner.can_restore(restore_path):
        print(f"resuming {restore_path}", flush=True)
        tuner = tune.Tuner.restore(restore_path, trainable=TRAINABLE_NAME, resume_errored=True,
                                   param_space=param_space)
    else:
        searcher = _optuna_search(OBJECTIVE, args.seed, f"sqlite:///{experiment / 'optuna.db'}",
                                  f"{name}-{int(t0)}", args.sampler)
        scheduler = None
        if args.asha:
            # ASHA compares trials on this epoch's validation accuracy: the running best would
            # tie every trial at the score of the pretraining they share.
            scheduler = ASHAScheduler(metric="val/acc", mode="max", time_attr="epoch",
                                      max_t=int(fixed.get("epochs", Config().epochs)),
                                      grace_period=args.grace_epochs)
        tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                      num_samples=num_samples, reuse_actors=True,
                                      max_concurrent_trials=args.concurrency)
        tuner = tune.Tuner(TRAINABLE_NAME, param_space=param_space, tune_config=tune_config,
                           run_config=run_config)
    cluster_cpus = ray.cluster_resources().get("CPU", 0)
    grid = tuner.fit()
    wall = time.time() - t0
    trials, _ = results.frames()
    _log_invocation(experiment, {"started": t0, "wall_s": wall, "num_samples": num_samples,
                                 "concurrency": args.concurrency, "cpus_per_trial": args.cpus_per_trial,
                                 "gpus_per_trial": args.gpus_per_trial, "sampler": args.sampler,
                                 "seed": args.seed, "asha": args.asha, "smoke": args.smoke,
                                 "address": args.address or "local", "trials": len(trials),
                                 "cluster_cpus": cluster_cpus, "ray_init_s": ray_init_s})
    print(f"\n{len(trials)} trials in {wall:.0f}s "
          f"({', '.join(f'{k} {v}' for k, v in trials['status'].value_counts().items())})")
    done = trials[trials["best_val_acc"].notna()]
    if not done.empty:
        best = done.loc[done["best_val_acc"].idxmax()]
        print(f"best trial {best['trial_id']}: " + ", ".join(f"{k}={best[k]:.4g}" for k in space.search
                                                             if isinstance(best[k], float))
              + f" | val {100 * best['best_val_acc']:.2f} test {100 * best['test_acc']:.2f} "
              f"(epoch {int(best['best_epoch'])})")
    print(f"results: {experiment / 'trials.parquet'}, {experiment / 'epochs.parquet'}; "
          f"Optuna study: sqlite:///{experiment / 'optuna.db'}")
    return 0 if grid.num_terminated else 1


if __name__ == "__main__":
    sys.exit(main())
