"""One run: pretraining, then the game epoch by epoch, with evaluation, history and state.

`Run` is what both faces of kdgan drive: `kdgan.train` (one run, checkpoints in its output
directory) and `kdgan.tune` (one run per trial, checkpoints through Ray Tune). Its state
holds the whole game (every player and optimiser, the epoch, the history and the RNG
state), so a run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from kdgan import data as data_mod
from kdgan.config import Config, ConfigError
from kdgan.io import atomic_write
from kdgan.game import Game, NonFiniteLossError, effective_config, pretrain_epochs
from kdgan.losses import tau_at
from kdgan.metrics import METRICS
from kdgan.models import num_parameters

# Fields that a player's pretraining depends on: runs equal in them share that player's
# pretrained weights (whatever their method), e.g. one teacher per dataset, n and seed.
# tests/test_run.py records which fields a run reads up to the end of its pretraining and
# holds this list to them (a field read there must be here or be shown not to matter).
PRETRAIN_COMMON = ("dataset", "n", "val_size", "seed", "batch_size", "pretrain_lr",
                   "pretrain_epochs", "augment", "aug_rotation", "aug_shift", "aug_zoom")
PRETRAIN_FIELDS = {
    "cls": PRETRAIN_COMMON + ("cls_arch", "cls_dropout"),
    "tch": PRETRAIN_COMMON + ("tch_arch", "tch_dropout"),
    "dis": PRETRAIN_COMMON + ("dis_arch", "dis_dropout", "dis_pretrain_epochs", "tau_start",
                              "dis_target"),
}
# Fields that say where and how a run executes, not what it computes: a checkpoint may be
# resumed with other values (e.g. after moving a benchmark's output directory).
RUNTIME_FIELDS = ("pretrain_cache", "threads", "population_backend")
# Seed offset of the game phase: the game's random draws do not depend on whether the
# pretrained players were computed or read from the cache.
GAME_SEED_OFFSET = 7919


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r}: CUDA is not available on this machine")
    return device


def pretrain_key(cfg: Config, player: str, players: tuple[str, ...]) -> str:
    """A digest of everything the pretraining of `player` depends on. D is pretrained
    against the pretrained C and T, so its key includes theirs (and whether T exists)."""
    values: dict = {k: getattr(cfg, k) for k in PRETRAIN_FIELDS[player]}
    values["player"] = player
    if cfg.aug_flip:  # only when on, so that the keys of caches written before it stay valid
        values["aug_flip"] = True
    if player == "tch" and cfg.tch_folds:  # likewise (D's key includes T's)
        values["tch_folds"] = cfg.tch_folds
    if player == "cls":  # its own number of passes (the common one unless cls_pretrain_epochs)
        values["pretrain_epochs"] = pretrain_epochs(cfg, "cls")
    if getattr(cfg, f"{player}_weight_decay"):  # likewise
        values["weight_decay"] = getattr(cfg, f"{player}_weight_decay")
    if cfg.dataset not in ("mnist",):
        p = Path(cfg.dataset)
        if p.exists():
            st = p.stat()
            values["dataset"] = [str(p.resolve()), st.st_size, st.st_mtime_ns]
    if player == "dis":
        values["against"] = {q: pretrain_key(cfg, q, players) for q in ("cls", "tch") if q in players}
    blob = json.dumps(values, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def pretrain_lock_timeout() -> float:
    """Seconds a run waits for another pretraining the same player: $KDGAN_PRETRAIN_LOCK_TIMEOUT
    (default 3600); checked by kdgan.train and kdgan.tune before any work."""
    raw = os.environ.get("KDGAN_PRETRAIN_LOCK_TIMEOUT", "3600")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ConfigError(f"KDGAN_PRETRAIN_LOCK_TIMEOUT={raw!r}: expected seconds >= 0")
    return value


@contextlib.contextmanager
def _cache_lock(path: Path, wait_s: float):
    """Hold `path` (a file lock) for the block; a wait past `wait_s` is an error naming it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path), timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        raise RuntimeError(f"{path}: another run has been pretraining this player for over "
                           f"{wait_s:g} s; KDGAN_PRETRAIN_LOCK_TIMEOUT sets the wait") from None
    try:
        yield
    finally:
        lock.release()


def plateaus(val_accs: list[float], plateau: int) -> int:
    """How many plateaus the epochs whose validation accuracies are `val_accs` hold: one each
    time `plateau` epochs in a row (counted from the last best or the last plateau) bring no
    new best (a tie is none). 0 when plateau is 0."""
    count, best, wait = 0, float("-inf"), 0
    if plateau <= 0:
        return count
    for acc in val_accs:
        if acc > best:
            best, wait = acc, 0
        else:
            wait += 1
            if wait >= plateau:
                count, wait = count + 1, 0
    return count


def plateau_scale(val_accs: list[float], plateau: int, factor: float, cuts: int = 0) -> float:
    """The learning-rate factor after the epochs of `val_accs`: `factor` to the number of
    `plateaus`, at most `cuts` of them when cuts > 0."""
    n = plateaus(val_accs, plateau)
    return factor ** (min(n, cuts) if cuts > 0 else n)


class Run:
    """A KDGAN (or baseline) run over its epochs. Epoch 0 is the state after pretraining."""

    def __init__(self, cfg: Config, data: data_mod.Data | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.requested = cfg
        self.cfg = effective_config(cfg)
        self.log = log or (lambda msg: None)
        self.device = resolve_device(self.cfg.device)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        self.data = (data or data_mod.load(self.cfg)).to(self.device)
        if self.cfg.augment and self.data.train.x.ndim != 4:
            raise ConfigError(f"augment=True: the inputs of {self.data.source} have shape "
                              f"{tuple(self.data.train.x.shape[1:])}, not images (C, H, W); "
                              "set augment=false")
        self.game = Game(self.cfg, self.data, self.device)
        self.history: list[dict[str, float]] = []
        # The evaluated player's weights (C's, the deliverable; T's for method teacher) at the
        # first epoch of best validation accuracy: the model the run selects.
        self.best_model: dict[str, torch.Tensor] | None = None
        self.epoch = -1        # last finished epoch; -1 before pretraining
        self.wall_s = 0.0      # seconds spent in this run, over all resumptions
        self.pretrain_s = 0.0

    # ------------------------------------------------------------------ phases
    @property
    def finished(self) -> bool:
        """All `epochs` played, or stopped early (`stopped_early`)."""
        return self.epoch >= self.cfg.epochs or self.stopped_early

    @property
    def stopped_early(self) -> bool:
        """With `patience` p > 0: the last p recorded epochs brought no new best validation
        accuracy (the first epoch of the best is p or more epochs back). With `lr_cuts` c > 0:
        the history holds more than c plateaus (`lr_plateau`). A function of the history
        alone, so a run resumed from its checkpoint stops where it would have."""
        accs = self.val_accs
        if self.cfg.lr_cuts and plateaus(accs, self.cfg.lr_plateau) > self.cfg.lr_cuts:
            return True
        p = self.cfg.patience
        if p <= 0 or len(self.history) <= p:
            return False
        best = accs.index(max(accs))  # the first epoch of the best (history[i] is epoch i)
        return len(accs) - 1 - best >= p

    @property
    def val_accs(self) -> list[float]:
        """The validation accuracy of every recorded epoch (history[i] is epoch i)."""
        return [h["val/acc"] for h in self.history]

    @property
    def lr_scale(self) -> float:
        """The factor on every game learning rate for the next epoch (`lr_plateau`)."""
        return plateau_scale(self.val_accs, self.cfg.lr_plateau, self.cfg.lr_factor,
                             self.cfg.lr_cuts)

    def pretrain(self) -> dict[str, float]:
        """Pretrain every player (or read them from the shared cache) and record epoch 0."""
        t0 = time.perf_counter()
        stats, from_cache = self._pretrain_or_load()
        stats["pretrain/from_cache"] = float(from_cache)
        torch.manual_seed(self.cfg.seed + GAME_SEED_OFFSET)
        self.pretrain_s = time.perf_counter() - t0
        row = {"epoch": 0, "tau": float("nan"), **stats,
               **self._evaluate(teacher=self.cfg.eval_teacher),
               "time/epoch_s": self.pretrain_s}
        self._record(row, self.pretrain_s)
        return row

    def play_epoch(self) -> dict[str, float]:
        """Play the next game epoch, evaluate, and return its history row."""
        if self.epoch < 0:
            raise RuntimeError("pretrain() before play_epoch()")
        if self.finished:
            raise RuntimeError(f"the run has finished its {self.cfg.epochs} epochs")
        t0 = time.perf_counter()
        e = self.epoch + 1
        tau = self.tau_at(e)
        if self.cfg.lr_plateau:
            scale = self.lr_scale
            self.game.scale_lr(scale)
        terms = self.game.play_epoch(tau)
        if self.cfg.lr_plateau:
            terms["lr_scale"] = scale
        bad = [k for k, v in terms.items() if not np.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"epoch {e}: non-finite loss in {', '.join(bad)} "
                                     f"({', '.join(f'{k}={terms[k]}' for k in bad)})")
        return self.record_epoch(e, tau, terms, t0)

    def tau_at(self, epoch: int) -> float:
        """The Gumbel-softmax temperature of game epoch `epoch` (1-based)."""
        return tau_at((epoch - 1) / max(1, self.cfg.epochs - 1), self.cfg.tau_start, self.cfg.tau_end)

    def record_epoch(self, e: int, tau: float, terms: dict[str, float], t0: float,
                     evaluated: dict[str, float] | None = None) -> dict[str, float]:
        """Evaluate after game epoch `e` (played from perf_counter time t0), record its row.
        evaluated: the evaluated player's val/ and test/ metrics when already computed (a
        vectorised population evaluates every member at once)."""
        if evaluated is None:
            evaluated = self._evaluate(teacher=False)
        row = {"epoch": e, "tau": tau, **terms, **evaluated}
        elapsed = time.perf_counter() - t0
        row["time/epoch_s"] = elapsed
        self._record(row, elapsed)
        if self.cfg.eval_teacher and self.finished:
            # the run ends here, at its last epoch or by an early stop (which this row's
            # validation accuracy decided): the teacher as the game left it, in the same row
            t1 = time.perf_counter()
            row.update(self._evaluate_teacher())
            extra = time.perf_counter() - t1
            row["time/epoch_s"] += extra
            self.wall_s += extra
        return row

    def _record(self, row: dict[str, float], elapsed: float) -> None:
        best = max((h["val/acc"] for h in self.history), default=float("-inf"))
        if row["val/acc"] > best or self.best_model is None:  # the first epoch of the best
            player = self.game.players[self.game.method.evaluated]
            self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in player.state_dict().items()}
        self.history.append(row)
        self.epoch = int(row["epoch"])
        self.wall_s += elapsed

    def _evaluate(self, teacher: bool) -> dict[str, float]:
        out = {}
        evaluated = self.game.method.evaluated
        for split in ("val", "test"):
            m = self.game.evaluate(evaluated, getattr(self.data, split))
            out.update({f"{split}/{k}": v for k, v in m.items()})
        return {**out, **self._evaluate_teacher()} if teacher else out

    def _evaluate_teacher(self) -> dict[str, float]:
        """The teacher's accuracy beside the evaluated player's (when it is another)."""
        out = {}
        if "tch" in self.game.players and self.game.method.evaluated != "tch":
            for split in ("val", "test"):
                out[f"{split}/tch_acc"] = self.game.evaluate("tch", getattr(self.data, split))["acc"]
        return out

    # ------------------------------------------------------------------ pretraining cache
    def _pretrain_or_load(self) -> tuple[dict[str, float], bool]:
        """Pretrain each player, or read it from `pretrain_cache` when a run with the same
        pretraining settings (of any method) wrote it. Returns the stats and whether every
        player came from the cache.

        The file lock makes concurrent runs (trials of a search, on one node or on several
        sharing a file system) wait for the first one instead of pretraining in parallel.
        """
        if not self.cfg.pretrain_cache:
            return self.game.pretrain(self.log), False
        # Another run pretraining the same player is a legitimate wait, but not an endless
        # one; a lock left by a dead run is free at once (the kernel's flock dies with it).
        wait_s = pretrain_lock_timeout()
        stats: dict[str, float] = {}
        all_cached = True
        players = tuple(self.game.players)
        cache = Path(self.cfg.pretrain_cache).expanduser()
        cache.mkdir(parents=True, exist_ok=True)
        for name, player in self.game.players.items():
            path = cache / f"{name}-{pretrain_key(self.cfg, name, players)}.pt"
            with _cache_lock(Path(str(path) + ".lock"), wait_s):
                if path.exists():
                    state = torch.load(path, map_location=self.device, weights_only=True)
                    player.load_state_dict(state["weights"])
                    stats.update({k: float(v) for k, v in state["stats"].items()})
                    self.log(f"pretrained {name} read from {path}")
                    continue
                all_cached = False
                player_stats = self.game.pretrain_player(name, self.log)
                state = {"weights": player.state_dict(), "stats": player_stats,
                         "config": self.cfg.to_dict()}
                atomic_write(path, lambda tmp: torch.save(state, tmp))
                stats.update(player_stats)
                self.log(f"pretrained {name} written to {path}")
        return stats, all_cached

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"config": self.cfg.to_dict(), "game": self.game.state_dict(),
                "epoch": self.epoch, "history": self.history, "wall_s": self.wall_s,
                "pretrain_s": self.pretrain_s, "rng": rng, "best_model": self.best_model,
                "train_indices": torch.from_numpy(self.data.train_indices)}

    def load_state_dict(self, state: dict) -> None:
        saved = Config.from_dict(state["config"])
        diff = {k: (v, getattr(self.cfg, k)) for k, v in saved.to_dict().items()
                if getattr(self.cfg, k) != v and k not in RUNTIME_FIELDS}
        if diff:
            raise ValueError(f"checkpoint was written by a different config: {diff} "
                             "(saved, requested)")
        self.game.load_state_dict(state["game"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.wall_s = float(state["wall_s"])
        self.pretrain_s = float(state["pretrain_s"])
        self.best_model = state.get("best_model")  # absent from checkpoints written before it
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def save(self, path: Path) -> None:
        atomic_write(Path(path), lambda tmp: torch.save(self.state_dict(), tmp))

    def load(self, path: Path) -> None:
        """Restore from a checkpoint file; weights_only=True: tensors and plain data only."""
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    def model_blob(self) -> dict:
        """The selected model (`best_model`) with what it takes to use it: its player and
        architecture, the epoch and the validation accuracy that selected it, the config."""
        if self.best_model is None:
            raise RuntimeError("no epoch recorded yet")
        s = self.summary()
        player = self.game.method.evaluated
        return {"player": player, "arch": getattr(self.cfg, f"{player}_arch"),
                "weights": self.best_model, "epoch": s["best_epoch"], "val_acc": s["val_acc"],
                "seed": self.cfg.seed, "config": self.cfg.to_dict()}

    def save_model(self, path: Path) -> None:
        """`model_blob` as a file. Read it with torch.load(path, weights_only=True) and
        `kdgan.models.build`."""
        blob = self.model_blob()
        atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))

    # ------------------------------------------------------------------ results
    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    def summary(self) -> dict:
        h = self.history_frame()
        if h.empty:
            raise RuntimeError("no epochs recorded yet")
        best = h.loc[h["val/acc"].idxmax()]  # the first epoch with the best validation accuracy
        last = h.iloc[-1]
        cfg = self.cfg
        out = {
            "method": cfg.method, "dataset": cfg.dataset, "n": cfg.n, "seed": cfg.seed,
            "val_acc": float(best["val/acc"]), "test_acc": float(best["test/acc"]),
            "best_epoch": int(best["epoch"]),
            "last_val_acc": float(last["val/acc"]), "last_test_acc": float(last["test/acc"]),
            "epochs_run": int(last["epoch"]), "wall_s": self.wall_s, "pretrain_s": self.pretrain_s,
            "val_size": len(self.data.val), "test_size": len(self.data.test),
            "num_classes": self.data.num_classes, "data_source": self.data.source,
            "params": {k: num_parameters(p) for k, p in self.game.players.items()},
            "device": str(self.device), "torch": torch.__version__,
            "config": cfg.to_dict(),
        }
        if cfg.patience or cfg.lr_cuts:  # only then: older summaries stay as they were
            out["stopped_early"] = self.stopped_early
        ranking = [m for m in METRICS if f"test/{m}" in h]
        if ranking:  # multi-label data: the ranking metrics at the selected and last epochs
            out["test_metrics"] = {m: float(best[f"test/{m}"]) for m in ranking}
            out["last_test_metrics"] = {m: float(last[f"test/{m}"]) for m in ranking}
            out["val_metrics"] = {m: float(best[f"val/{m}"]) for m in ranking}
        for split in ("val", "test"):
            col = f"{split}/tch_acc"
            if col in h:
                done = h[col].dropna()
                out[f"tch_{split}_acc_pretrained"] = float(done.iloc[0])
                out[f"tch_{split}_acc_last"] = float(done.iloc[-1])
        overridden = {k: (getattr(self.requested, k), getattr(cfg, k))
                      for k in cfg.to_dict() if getattr(self.requested, k) != getattr(cfg, k)}
        if overridden:
            out["method_overrides"] = {k: v[1] for k, v in overridden.items()}
        return out
