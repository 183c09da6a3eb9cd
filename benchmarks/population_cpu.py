"""A seed population against the same seeds run one by one, side by side, on this machine.

    python -m benchmarks.population_cpu --population 4 --pairs 3 --out results/population-cpu
    python -m benchmarks.population_cpu --quick --out /tmp/pop-cpu        # a check, seconds

A: one population of P members (kdgan.population; --backend, default auto: the loop on a
CPU). B: the P single runs of the same seeds, one after another in the same process (what a
script running seed after seed does, without the start-up of a process per run). Both train
MNIST kdgan at n = 100 with the defaults (one torch thread, as in a search's trials),
pretrained players read from one shared cache that
is filled before any timing (pretraining is shared between runs either way), so the clocks
cover the game epochs and their evaluations. A and B alternate (A B A B ...) and the ratio is
taken pair by pair, so that a drift of the machine's speed hits both sides of a pair alike.
Before timing, one pair's results are checked equal: each member's history is its single
run's.

Writes OUT/population-cpu.md (the pairs, the median ratio) and OUT/population-cpu.csv.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kdgan.config import Config
from kdgan.io import atomic_write
from kdgan.population import Population
from kdgan.run import Run


def _play(run) -> None:
    run.pretrain()
    while not run.finished:
        run.play_epoch()


def population(cfg: Config, size: int) -> tuple[float, pd.DataFrame, str]:
    """Seconds, the history and the backend of one population of `size` members."""
    t0 = time.perf_counter()
    pop = Population(cfg.replace(population=size))  # its backend: cfg.population_backend
    _play(pop)
    return time.perf_counter() - t0, pop.history_frame(), pop.backend


def singles(cfg: Config, size: int) -> tuple[float, pd.DataFrame]:
    t0 = time.perf_counter()
    frames = []
    for k in range(size):
        run = Run(cfg.replace(seed=cfg.seed + k))
        _play(run)
        frames.append(run.history_frame().assign(seed=cfg.seed + k))
    return time.perf_counter() - t0, pd.concat(frames, ignore_index=True)


def _same(a: pd.DataFrame, b: pd.DataFrame, exact: bool) -> bool:
    """Each member's history is its single run's: exactly (the loop), or the losses within
    rtol 1e-4 and the accuracies within one image of 10,000 (vmap's float rounding)."""
    drop = [c for c in a if c.startswith("time/") or c == "pretrain/from_cache"]
    a = a.drop(columns=drop).sort_values(["seed", "epoch"]).reset_index(drop=True)
    b = b.drop(columns=drop).sort_values(["seed", "epoch"]).reset_index(drop=True)[a.columns]
    if exact:
        return a.equals(b)
    for col in a:
        if col.endswith("/acc"):
            if (a[col] - b[col]).abs().max() > 1e-4 + 1e-12:
                return False
        elif not np.allclose(a[col], b[col], rtol=1e-4, atol=1e-6, equal_nan=True):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.population_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--population", type=int, default=4, help="P (default 4)")
    p.add_argument("--pairs", type=int, default=3, help="A B pairs timed (default 3)")
    p.add_argument("--epochs", type=int, default=30, help="game epochs (default 30, the default)")
    p.add_argument("--pretrain-cache", type=Path, default=Path("~/kdgan_results/pretrain-mnist"),
                   help="the shared cache of pretrained players (filled first if empty)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads of both sides (default 1, as Ray gives a search's trials)")
    p.add_argument("--backend", choices=("auto", "loop", "vmap"), default="auto",
                   help="the population's backend (default auto: the loop on a CPU)")
    p.add_argument("--quick", action="store_true", help="tiny budget: 2 members, 2 epochs, 1 pair")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.population < 2 or args.pairs < 1 or args.epochs < 1:
        print(f"error: --population {args.population} --pairs {args.pairs} --epochs {args.epochs}: "
              "expected a population >= 2, pairs >= 1, epochs >= 1", file=sys.stderr)
        return 2
    values = {"dataset": "mnist", "n": 100, "method": "kdgan", "epochs": args.epochs,
              "pretrain_cache": str(args.pretrain_cache.expanduser()), "device": "cpu",
              "threads": args.threads,
              "population_backend": args.backend}
    if args.quick:
        from kdgan.spaces import SMOKE

        values.update({**SMOKE, "epochs": 2})
        args.population, args.pairs = 2, 1
    cfg = Config.from_dict(values)
    size = args.population
    print(f"filling the pretraining cache for seeds {cfg.seed}..{cfg.seed + size - 1} "
          f"({cfg.pretrain_cache})", flush=True)
    for k in range(size):
        Run(cfg.replace(seed=cfg.seed + k)).pretrain()
    rows = []
    for i in range(args.pairs):
        a_s, a_hist, backend = population(cfg, size)
        b_s, b_hist = singles(cfg, size)
        if i == 0 and not _same(a_hist, b_hist, exact=backend == "loop"):
            print("error: the population's members differ from the single runs", file=sys.stderr)
            return 1
        rows.append({"pair": i + 1, "population_s": a_s, "singles_s": b_s, "ratio": a_s / b_s})
        print(f"pair {i + 1}: population {a_s:.1f}s, {size} single runs {b_s:.1f}s, "
              f"ratio {a_s / b_s:.3f}", flush=True)
    frame = pd.DataFrame(rows)
    median = statistics.median(frame["ratio"])
    lines = [f"# A population of {size} against its {size} single runs (this CPU)", "",
             f"MNIST kdgan n = 100, defaults, {cfg.epochs} game epochs, pretrained players from "
             f"the shared cache; backend {backend}. Each member's history was checked equal to "
             "its single run's" + (" (exactly)." if backend == "loop" else
                                   " (losses within rtol 1e-4, accuracies within one image)."), "",
             "| pair | population (s) | single runs (s) | ratio |", "|---|---|---|---|"]
    lines += [f"| {r.pair} | {r.population_s:.1f} | {r.singles_s:.1f} | {r.ratio:.3f} |"
              for r in frame.itertuples()]
    lines += ["", f"Median ratio (population / single runs): **{median:.3f}** "
              f"(min {frame['ratio'].min():.3f}, max {frame['ratio'].max():.3f}).", "",
              "Command: `python -m benchmarks.population_cpu " + " ".join(argv or sys.argv[1:]) + "`"]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "population-cpu.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    atomic_write(args.out / "population-cpu.csv", lambda tmp: frame.to_csv(tmp, index=False))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
