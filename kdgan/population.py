"""A seed population: P members of one configuration trained together in one process.

A run with seed s and `population` P trains P members with seeds s, s + 1, ..., s + P - 1.
Member k is the single run (`kdgan.run.Run`) of seed s + k: its own n-image subset, initial
weights, minibatches, augmentation, dropout, Gumbel noise and pretrained players (from the
shared cache, per seed). Every random draw of member k comes from its own stream
(`kdgan.vectorised.RngStreams`):
before the population touches a member, that member's generator state becomes torch's
current one, and it is saved back afterwards. So member k draws exactly what the single run
of seed s + k draws, and a single run is a population of one, unchanged.

Backends (`Config.population_backend`):
- loop: every phase steps the members one after another. The result is bit for bit the single
  runs'. On a CPU this is also the fastest (a vectorised step of several small networks
  measured slower here than the same steps in turn: docs/RESULTS.md).
- vmap: the game epochs and their evaluations run as one vectorised model per player
  (`kdgan.vectorised`), every random draw still made outside the vectorised step from each
  member's stream; equal to the single runs up to float rounding. For GPUs, where a small
  network's step is bound by kernel launches. Pretraining goes member by member.
- auto: vmap on CUDA when `kdgan.vectorised.unsupported` finds nothing against the config,
  else loop.

Selection and failure are per member: each member keeps its own best validation epoch and
model; a member whose losses become NaN or inf stops there (status "diverged", with the
reason) while the others go on, and the run fails only when every member has.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from kdgan.config import Config
from kdgan.game import NonFiniteLossError
from kdgan.io import atomic_write
from kdgan.run import Run
from kdgan.vectorised import RngStreams

FINISHED, RUNNING, DIVERGED = "finished", "running", "diverged"
# Per-epoch columns of a member that are not averaged into the population's row.
_NOT_AVERAGED = ("epoch", "seed")


def standard_error(values: list[float]) -> float:
    """std (ddof 1) / sqrt(m); NaN for fewer than two values."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def member_config(cfg: Config, k: int) -> Config:
    """Member k's config: the single run of seed cfg.seed + k."""
    return cfg.replace(seed=cfg.seed + k, population=1)


class Population:
    """P members (seeds cfg.seed + k) trained epoch by epoch in lockstep, with the surface of
    `kdgan.run.Run`: pretrain, play_epoch, finished, history_frame, summary, save/load,
    save_model. A population of one is exactly a Run."""

    def __init__(self, cfg: Config, log: Callable[[str], None] | None = None) -> None:
        self.requested = cfg
        self.log = log or (lambda msg: None)
        self.size = cfg.population
        self.members: list[Run] = []
        states = []
        for k in range(self.size):
            mcfg = member_config(cfg, k)
            outer = RngStreams.capture()
            run = Run(mcfg, log=self._member_log(mcfg.seed))  # seeds torch itself
            states.append(RngStreams.capture(run.device))  # member k's stream from here on
            RngStreams.restore(outer)
            self.members.append(run)
        self.streams = RngStreams(states, self.members[0].device)
        self.cfg = self.members[0].cfg.replace(seed=cfg.seed, population=self.size)
        self.device = self.members[0].device
        self.data = self.members[0].data  # the validation and test splits are every member's
        self.status = [RUNNING] * self.size
        self.reasons = [""] * self.size
        self.epoch = -1
        self.wall_s = 0.0
        self.pretrain_s = 0.0
        self.backend = self._choose_backend()
        self._vectorised = None
        self.rows: list[dict[str, float]] = []  # the population's rows (members' means)

    def _member_log(self, seed: int) -> Callable[[str], None]:
        if self.size == 1:
            return lambda msg: self.log(msg)
        return lambda msg: self.log(f"[seed {seed}] {msg}")

    def _choose_backend(self) -> str:
        choice = self.cfg.population_backend
        if choice == "loop" or self.size == 1 or (choice == "auto" and self.device.type != "cuda"):
            return "loop"
        from kdgan.vectorised import unsupported

        reason = unsupported(self.cfg)
        if choice == "vmap":
            if reason:
                from kdgan.config import ConfigError
                raise ConfigError(f"population_backend='vmap': {reason} cannot run vectorised; "
                                  "use population_backend=loop (or auto)")
            return "vmap"
        return "loop" if reason else "vmap"

    # ------------------------------------------------------------------ phases
    @property
    def seeds(self) -> list[int]:
        return [m.cfg.seed for m in self.members]

    @property
    def finished(self) -> bool:
        return self.epoch >= self.cfg.epochs or not self.playing

    @property
    def live(self) -> list[int]:
        """The members that have not diverged."""
        return [k for k, s in enumerate(self.status) if s != DIVERGED]

    @property
    def playing(self) -> list[int]:
        """The members that play the next epoch: not diverged, not finished (a member's run
        may finish before the population's last epoch, e.g. by its own early stopping)."""
        return [k for k in self.live if not self.members[k].finished]

    def pretrain(self) -> dict[str, float]:
        """Pretrain (or read from the cache) each member's players; record epoch 0."""
        t0 = time.perf_counter()
        rows = []
        for k, m in enumerate(self.members):
            with self.streams.member(k):
                rows.append(m.pretrain())
        self.pretrain_s = time.perf_counter() - t0
        return self._record(0, rows, self.pretrain_s)

    def play_epoch(self) -> dict[str, float]:
        """The next game epoch of every live member; the population's row (members' means,
        with `members`: each member's row). Raises NonFiniteLossError when every member has
        diverged."""
        if self.epoch < 0:
            raise RuntimeError("pretrain() before play_epoch()")
        if self.finished:
            raise RuntimeError(f"the run has finished its {self.cfg.epochs} epochs")
        t0 = time.perf_counter()
        if self.backend == "vmap":
            rows = self._play_vectorised()
        else:
            rows = []
            for k in self.playing:
                with self.streams.member(k):
                    try:
                        rows.append(self.members[k].play_epoch())
                    except NonFiniteLossError as e:
                        self._diverge(k, str(e))
                        if self.size == 1:  # a single run's failure, as it always read
                            raise
        if not self.live:
            raise NonFiniteLossError("every member diverged: " + "; ".join(
                f"seed {s}: {r}" for s, r in zip(self.seeds, self.reasons)))
        return self._record(self.epoch + 1, rows, time.perf_counter() - t0)

    def _diverge(self, k: int, reason: str) -> None:
        self.status[k] = DIVERGED
        self.reasons[k] = reason
        self.log(f"[seed {self.seeds[k]}] stopped: {reason}")

    def _play_vectorised(self) -> list[dict[str, float]]:
        from kdgan.vectorised import VectorisedGame

        if self._vectorised is None:
            self._vectorised = VectorisedGame([m.game for m in self.members], self.streams.member)
        e = self.epoch + 1
        members = self.members
        tau = members[0].tau_at(e)
        scales = [m.lr_scale for m in members] if self.cfg.lr_plateau else None
        if scales:  # each member's rates follow its own history, as in its single run
            self._vectorised.scale_lr(scales)
        terms = self._vectorised.play_epoch(tau)
        if scales:
            for k, t in enumerate(terms):
                t["lr_scale"] = scales[k]
        self._vectorised.write_back()  # the members' players, for their records and checkpoints
        evaluated = members[0].game.method.evaluated
        metrics: list[dict[str, float]] = [{} for _ in members]
        for split in ("val", "test"):  # every member at once
            for k, m in enumerate(self._vectorised.evaluate(evaluated, split)):
                metrics[k].update({f"{split}/{key}": v for key, v in m.items()})
        rows = []
        for k in self.playing:
            bad = [key for key, v in terms[k].items() if not np.isfinite(v)]
            if bad:
                self._diverge(k, f"epoch {e}: non-finite loss in {', '.join(bad)} "
                                 f"({', '.join(f'{key}={terms[k][key]}' for key in bad)})")
                continue
            rows.append(members[k].record_epoch(e, tau, terms[k], time.perf_counter(), metrics[k]))
        return rows

    def _record(self, epoch: int, rows: list[dict[str, float]], elapsed: float) -> dict[str, float]:
        """The population's row: the mean over the members that played this epoch of every
        numeric column; `members` (one dict per member, with its seed) beside it."""
        self.epoch = epoch
        self.wall_s += elapsed
        if self.size == 1:  # exactly the single run's row
            row = dict(rows[0])
        else:
            keys = dict.fromkeys(k for r in rows for k in r if k not in _NOT_AVERAGED)
            row = {"epoch": epoch}
            for key in keys:
                vals = [r[key] for r in rows if key in r and r[key] == r[key]]
                row[key] = float(np.mean(vals)) if vals else float("nan")
            row["time/epoch_s"] = elapsed
        self.rows.append(row)
        return {**row, "members": [{"seed": self.members[k].cfg.seed, **self.members[k].history[-1]}
                                   for k in self.live if self.members[k].epoch == epoch]}

    # ------------------------------------------------------------------ selection
    def best(self) -> dict[str, float]:
        """The objective so far: the members' mean of each one's best validation accuracy (a
        diverged member keeps the best of its epochs before), with its standard error, and
        likewise the test accuracy at each member's selected epoch."""
        ms = self.member_rows()
        val = [m["val_acc"] for m in ms]
        test = [m["test_acc"] for m in ms]
        return {"best_val_acc": float(np.mean(val)), "best_val_acc_se": standard_error(val),
                "test_acc": float(np.mean(test)), "test_acc_se": standard_error(test),
                "members": len(ms),
                # the selected epoch: the member's own, or the members' median
                "best_epoch": int(np.median([m["best_epoch"] for m in ms])),
                # the curve ASHA compares: each member's latest validation accuracy (a diverged
                # member's last one), averaged
                "val_acc_curve": float(np.mean([m["last_val_acc"] for m in ms]))}

    def member_rows(self) -> list[dict]:
        """Each member's selection: seed, val_acc and test_acc at its best validation epoch,
        best_epoch, the last epoch's accuracies, epochs_run, status and reason."""
        out = []
        for k, m in enumerate(self.members):
            if not m.history:
                continue
            h = m.history_frame()
            best = h.loc[h["val/acc"].idxmax()]
            last = h.iloc[-1]
            status = self.status[k] if self.status[k] == DIVERGED else (
                FINISHED if m.finished else RUNNING)
            out.append({"seed": m.cfg.seed, "val_acc": float(best["val/acc"]),
                        "test_acc": float(best["test/acc"]), "best_epoch": int(best["epoch"]),
                        "last_val_acc": float(last["val/acc"]), "last_test_acc": float(last["test/acc"]),
                        "epochs_run": int(last["epoch"]), "status": status, "reason": self.reasons[k]})
        return out

    # ------------------------------------------------------------------ results
    def history_frame(self) -> pd.DataFrame:
        """Every member's epochs, with a `seed` column, sorted by epoch then seed."""
        frames = [m.history_frame().assign(seed=m.cfg.seed) for m in self.members if m.history]
        if not frames:
            return pd.DataFrame()
        h = pd.concat(frames, ignore_index=True)
        return h.sort_values(["epoch", "seed"], kind="stable").reset_index(drop=True)

    def summary(self) -> dict:
        """A single run's summary for a population of one, plus `members`; for more members,
        the members' means (and standard errors) of the selected and last accuracies."""
        members = self.member_rows()
        if not members:
            raise RuntimeError("no epochs recorded yet")
        if self.size == 1:
            return self.member_summary(0)
        b = self.best()
        first = self.members[0].summary()
        out = {k: first[k] for k in ("method", "dataset", "val_size", "test_size",
                                     "num_classes", "data_source", "params", "device",
                                     "torch") if k in first}
        out.update({"n": self.cfg.n, "seed": self.cfg.seed,
                    "val_acc": b["best_val_acc"], "test_acc": b["test_acc"],
                    "best_epoch": b["best_epoch"],
                    "last_val_acc": float(np.mean([m["last_val_acc"] for m in members])),
                    "last_test_acc": float(np.mean([m["last_test_acc"] for m in members])),
                    "epochs_run": max(m["epochs_run"] for m in members),
                    "wall_s": self.wall_s, "pretrain_s": self.pretrain_s,
                    "config": self.cfg.to_dict()})
        for key in ("test_metrics", "last_test_metrics", "val_metrics"):
            if key in first:
                per = [r.summary()[key] for r in self.members if r.history]
                out[key] = {m: float(np.mean([p[m] for p in per])) for m in first[key]}
        out.update({"population": self.size, "backend": self.backend, "seeds": self.seeds,
                    "val_acc_se": b["best_val_acc_se"], "test_acc_se": b["test_acc_se"],
                    "last_test_acc_se": standard_error([m["last_test_acc"] for m in members]),
                    "diverged": sum(m["status"] == DIVERGED for m in members),
                    "members": members})
        return out

    def member_summary(self, k: int) -> dict:
        """Member k's summary as the single run of its seed writes it (a population of one)."""
        m = self.members[k]
        row = next(r for r in self.member_rows() if r["seed"] == m.cfg.seed)
        nan = float("nan")
        return {**m.summary(), "population": 1, "backend": self.backend, "seeds": [m.cfg.seed],
                "val_acc_se": nan, "test_acc_se": nan, "last_test_acc_se": nan,
                "diverged": int(row["status"] == DIVERGED), "members": [row]}

    def write_member(self, k: int, folder: Path) -> None:
        """Member k's outputs in `folder` as kdgan.train writes a single run's (summary.json,
        history.parquet, model.pt, train_indices.json; no checkpoint)."""
        m = self.members[k]
        folder.mkdir(parents=True, exist_ok=True)
        history = m.history_frame().assign(seed=m.cfg.seed)
        summary = self.member_summary(k)
        indices = m.data.train_indices.tolist()
        atomic_write(folder / "train_indices.json", lambda tmp: tmp.write_text(json.dumps(indices)))
        atomic_write(folder / "history.parquet", lambda tmp: history.to_parquet(tmp))
        m.save_model(folder / "model.pt")
        atomic_write(folder / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        if self._vectorised is not None:
            self._vectorised.write_back()
        members = []
        for k, m in enumerate(self.members):
            with self.streams.member(k):
                members.append(m.state_dict())
        if self.size == 1:  # a population of one checkpoints as the single run always has
            return members[0]
        return {"population": self.size, "seed": self.cfg.seed, "members": members,
                "status": list(self.status), "reasons": list(self.reasons), "epoch": self.epoch,
                "wall_s": self.wall_s, "pretrain_s": self.pretrain_s, "rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        if "members" not in state:  # a single run's checkpoint (kdgan.run.Run.state_dict)
            state = {"population": 1, "seed": Config.from_dict(state["config"]).seed,
                     "members": [state], "status": [RUNNING], "reasons": [""],
                     "epoch": int(state["epoch"]), "wall_s": float(state["wall_s"]),
                     "pretrain_s": float(state["pretrain_s"]), "rows": list(state["history"])}
        if state["population"] != self.size or state["seed"] != self.cfg.seed:
            raise ValueError(f"checkpoint was written by a different config: "
                             f"{{'population': ({state['population']}, {self.size}), "
                             f"'seed': ({state['seed']}, {self.cfg.seed})}} (saved, requested)")
        for k, (m, s) in enumerate(zip(self.members, state["members"])):
            with self.streams.member(k):
                m.load_state_dict(s)
        self.status = list(state["status"])
        self.reasons = list(state["reasons"])
        self.epoch = int(state["epoch"])
        self.wall_s = float(state["wall_s"])
        self.pretrain_s = float(state["pretrain_s"])
        self.rows = list(state["rows"])
        if self._vectorised is not None:
            self._vectorised.read_members()

    def save(self, path: Path) -> None:
        state = self.state_dict()
        atomic_write(Path(path), lambda tmp: torch.save(state, tmp))

    def load(self, path: Path) -> None:
        """Restore from a checkpoint file; weights_only=True: tensors and plain data only."""
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    def save_model(self, path: Path) -> None:
        """A population of one: `Run.save_model`'s file. More members: {'members': [that
        file's dict for each member, with its seed], 'population', 'config'}."""
        if self.size == 1:
            self.members[0].save_model(path)
            return
        blobs = [m.model_blob() for m in self.members if m.best_model is not None]
        blob = {"population": self.size, "config": self.cfg.to_dict(), "members": blobs}
        atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))
