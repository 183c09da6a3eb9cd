"""One run from the command line.

    python -m kdgan.train --dataset mnist --n 100 --method kdgan --seed 0 --out runs/kdgan-0
    python -m kdgan.train --method supervised --set epochs=20 --set cls_lr=3e-4 --out DIR
    python -m kdgan.train --seed 0 --set population=4 --out DIR   # seeds 0-3 in one process

Writes DIR/summary.json, DIR/history.parquet (one row per epoch, every logged metric),
DIR/train_indices.json and DIR/checkpoint.pt (every player and optimiser, the epoch, the
history and the RNG state). Run the same command again to resume from the checkpoint; the
resumed run ends where an uninterrupted one would. While it runs it holds DIR (DIR/.lock, its
holder in DIR/lock.json): a second process given DIR is refused at once, naming the holder.

With --set population=P the run trains the P members of seeds seed .. seed + P - 1
(kdgan.population): history.parquet has a row per epoch per member (its `seed` column),
summary.json the members' means and standard errors and a `members` list, model.pt each
member's selected classifier.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from kdgan.config import METHODS, Config, ConfigError, parse_overrides
from kdgan.data import DataError
from kdgan.game import NonFiniteLossError
from kdgan.io import CheckpointError, FolderInUse, FolderLock, atomic_write
from kdgan.population import Population
from kdgan.run import pretrain_lock_timeout
from kdgan.spaces import SMOKE

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"  # the selected model: C at the best validation epoch


def parse_args(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m kdgan.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="mnist, cifar10, a .npz file, an IDX or CIFAR-10 directory, or a .parquet tag collection")
    p.add_argument("--n", type=int, help="labelled training examples")
    p.add_argument("--method", help=f"one of {', '.join(METHODS)} (kdgan.methods)")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field (repeatable), e.g. --set alpha=0.3")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--fresh", action="store_true",
                   help="ignore a checkpoint in --out and start over")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny budget (2 pretraining epochs, 2 game epochs) to check a setup")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = p.parse_args(argv)
    values: dict[str, object] = {}
    if args.smoke:
        values.update(SMOKE)
    for key in ("dataset", "n", "method", "seed"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    values.update(parse_overrides(args.set))
    return Config.from_dict(values), args


def format_row(row: dict[str, float], epochs: int) -> str:
    """One compact progress line per epoch."""
    parts = [f"epoch {int(row['epoch']):>3}/{epochs}"]
    if row["tau"] == row["tau"]:  # not NaN
        parts.append(f"tau {row['tau']:.3f}")
    for key in ("dis/loss", "tch/adv", "tch/distill", "cls/adv", "cls/distill", "cls/ce"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"val {100 * row['val/acc']:.2f}  test {100 * row['test/acc']:.2f}")
    if row.get("val/tch_acc") is not None and row["val/tch_acc"] == row["val/tch_acc"]:
        parts.append(f"tch val {100 * row['val/tch_acc']:.2f}")
    parts.append(f"{row['time/epoch_s']:.1f}s")
    return " | ".join(parts)


def train(cfg: Config, out: Path, fresh: bool = False, quiet: bool = False,
          members_to: list[Path] | None = None) -> dict:
    """Run (or resume) one configuration into `out`; returns the summary. members_to: a
    folder per member of a population, where each member's outputs are written as its single
    run's would be (kdgan.population.Population.write_member) once the run has finished.

    The run holds `out` (and each of `members_to`) for its whole length (kdgan.io.FolderLock):
    a second process given a folder in use is refused at once (FolderInUse, naming the
    holder), before it reads or writes anything there, so two never write one run."""
    with contextlib.ExitStack() as held:
        for folder in [*(members_to or []), out]:  # out last: a refusal leaves no new folder
            held.enter_context(FolderLock(folder, "the run", "wait for it to end, or give "
                                          "another --out"))
        return _train(cfg, out, fresh, quiet, members_to)


def _train(cfg: Config, out: Path, fresh: bool, quiet: bool,
           members_to: list[Path] | None) -> dict:
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    ckpt = out / CHECKPOINT
    run = Population(cfg, log=say)
    if ckpt.exists() and not fresh:
        try:
            run.load(ckpt)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "different config" not in reason:  # torch's own text suggests unsafe loading
                reason = f"not a readable kdgan checkpoint ({type(e).__name__})"
            raise CheckpointError(f"{ckpt}: {reason}; rerun with --fresh to start over in "
                                  f"{out}, or give another --out") from None
        say(f"resumed from {ckpt} at epoch {run.epoch}/{run.cfg.epochs}")
    else:
        seeds = f"seed={cfg.seed}" if run.size == 1 else f"seeds={cfg.seed}..{cfg.seed + run.size - 1} ({run.backend})"
        game = run.members[0].game
        say(f"{run.cfg.method} on {run.data.source}: n={cfg.n} {seeds} "
            f"device={run.device} params={ {k: sum(p.numel() for p in m.parameters()) for k, m in game.players.items()} }")
        indices = [m.data.train_indices.tolist() for m in run.members]
        atomic_write(out / "train_indices.json",
                     lambda tmp: tmp.write_text(json.dumps(indices[0] if run.size == 1 else
                                                           dict(zip(map(str, run.seeds), indices)))))
        say(format_row(run.pretrain(), run.cfg.epochs))
        run.save(ckpt)
    while not run.finished:
        row = run.play_epoch()
        say(format_row(row, run.cfg.epochs))
        run.save(ckpt)
        atomic_write(out / "history.parquet", lambda tmp: run.history_frame().to_parquet(tmp))
    atomic_write(out / "history.parquet", lambda tmp: run.history_frame().to_parquet(tmp))
    summary = run.summary()
    run.save_model(out / MODEL)
    for k, folder in enumerate(members_to or []):
        if run.status[k] != "diverged":  # a diverged member has no single run's outputs
            run.write_member(k, Path(folder))
    atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    if run.size == 1:
        say(f"best validation epoch {summary['best_epoch']}: val {100 * summary['val_acc']:.2f} "
            f"test {100 * summary['test_acc']:.2f} | last epoch: test {100 * summary['last_test_acc']:.2f}"
            f" | {summary['wall_s']:.1f}s | {out}")
    else:
        for m in summary["members"]:
            say(f"seed {m['seed']}: best validation epoch {m['best_epoch']}: val "
                f"{100 * m['val_acc']:.2f} test {100 * m['test_acc']:.2f} | {m['status']}"
                + (f" ({m['reason']})" if m["reason"] else ""))
        say(f"{run.size} members, mean (standard error): val {100 * summary['val_acc']:.2f} "
            f"({100 * summary['val_acc_se']:.2f}) test {100 * summary['test_acc']:.2f} "
            f"({100 * summary['test_acc_se']:.2f}) | last epoch: test "
            f"{100 * summary['last_test_acc']:.2f} | {summary['wall_s']:.1f}s | {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, args = parse_args(argv)
        pretrain_lock_timeout()
        t0 = time.perf_counter()
        train(cfg, args.out, fresh=args.fresh, quiet=args.quiet)
    except (ConfigError, DataError, CheckpointError, FolderInUse) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        return 3
    if not args.quiet:
        print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
