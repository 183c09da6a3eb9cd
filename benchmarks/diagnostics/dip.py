"""Does a run's game fall apart in its first passes, and does its discriminator see it?

    python -m benchmarks.diagnostics.dip --passes 10 results/table1-passes/n10000/kdgan-s[0-4]

For each run directory (its history.parquet; summary.json for the game's weights, where the
run has one), one row per seed: the validation accuracy after pretraining (epoch 0), the
lowest validation accuracy of epochs 1 .. K and the epoch it fell to, the accuracy at epoch K
(or the run's last, if it stopped before), and how far the discriminator got from 1/2 by then
(the largest |D(real) - 1/2| of those epochs: 0 is a discriminator that tells nothing apart),
and, where the run has finished, its own result: the test accuracy at its best validation
epoch (from summary.json), that epoch and the epochs it ran.
docs/RESULTS.md uses it on the n = 10,000 runs of Table 1 whose validation accuracy fell from
about 96 to 15-80 within five passes.

With --against RUN_DIR ..., the runs of a second configuration are matched to the first by
seed, and the paired differences (first minus second) of the lowest validation accuracy, of
the accuracy at epoch K and (where both finished with the same most epochs, `epochs`) of the
test accuracy at the best validation epoch follow the table, each with its 95% t-interval over
the seeds.

    python -m benchmarks.diagnostics.dip --passes 10 results/table1-collapse/gamma0.1-s[0-3] \
        --against results/table1-passes/n10000/kdgan-s[0-3]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from analysis.tables import interval_text
from benchmarks.diagnostics import parser
from kdgan.data import DataError
from kdgan.stats import paired_interval

HEADER = ["| run | seed | alpha | beta | gamma | val epoch 0 | lowest val (epoch) | val at K "
          "| D: max abs(D(real) - 1/2) | test at best val (epoch / run) |",
          "|---|---|---|---|---|---|---|---|---|---|"]


def dip_rows(run_dir: Path, passes: int) -> list[dict]:
    """A row per seed of the run (a population has several) over epochs 1 .. `passes`."""
    history_file = Path(run_dir) / "history.parquet"
    if not history_file.is_file():
        raise DataError(f"{run_dir}: no history.parquet (expected a kdgan.train run directory)")
    history = pd.read_parquet(history_file)
    summary_file = Path(run_dir) / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    cfg = summary.get("config", {})
    finished = {m["seed"]: m for m in summary.get("members", []) if m.get("status") == "finished"}
    if "seed" not in history:
        history = history.assign(seed=cfg.get("seed", 0))
    rows = []
    for seed, h in history.groupby("seed", sort=True):
        h = h.set_index("epoch").sort_index()
        if 0 not in h.index or len(h.loc[1:passes]) == 0:
            raise DataError(f"{run_dir}, seed {seed}: expected epoch 0 and at least one epoch of "
                            f"1 .. {passes} in its history")
        game = h.loc[1:passes]
        d_real = game["dis/d_real"] if "dis/d_real" in game else pd.Series(dtype=float)
        rows.append({"run": str(run_dir), "seed": int(seed), **{k: cfg.get(k) for k in ("alpha", "beta", "gamma")},
                     "val_start": float(h.loc[0, "val/acc"]), "val_low": float(game["val/acc"].min()),
                     "low_epoch": int(game["val/acc"].idxmin()), "val_end": float(game["val/acc"].iloc[-1]),
                     "end_epoch": int(game.index[-1]),
                     "d_off": float((d_real - 0.5).abs().max()) if d_real.notna().any() else None,
                     "epochs": cfg.get("epochs"),
                     **{k: finished.get(int(seed), {}).get(k) for k in ("test_acc", "best_epoch", "epochs_run")}})
    return rows


def _line(r: dict) -> str:
    def num(x):
        return "-" if x is None else f"{x:g}"
    d_off = "-" if r["d_off"] is None else f"{r['d_off']:.3f}"
    own = ("-" if r["test_acc"] is None else
           f"{100 * r['test_acc']:.2f} ({r['best_epoch']} / {r['epochs_run']})")
    return (f"| {r['run']} | {r['seed']} | {num(r['alpha'])} | {num(r['beta'])} | {num(r['gamma'])} "
            f"| {100 * r['val_start']:.2f} | {100 * r['val_low']:.2f} ({r['low_epoch']}) "
            f"| {100 * r['val_end']:.2f} ({r['end_epoch']}) | {d_off} | {own} |")


def paired_lines(first: list[dict], second: list[dict], passes: int) -> list[str]:
    """First minus second, matched by seed: the lowest validation accuracy and the one at K."""
    a = {r["seed"]: r for r in first}
    b = {r["seed"]: r for r in second}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise DataError(f"--against: no seed in common (first: {sorted(a)}, second: {sorted(b)})")
    lines = [f"Paired over seeds {', '.join(map(str, seeds))} (first runs minus --against runs, "
             "95% t-interval):"]
    measures = [("val_low", f"lowest val of epochs 1-{passes}"), ("val_end", f"val at epoch {passes}")]
    if all(a[s]["test_acc"] is not None and b[s]["test_acc"] is not None
           and a[s]["epochs"] == b[s]["epochs"] for s in seeds):  # finished, on the same budget
        measures.append(("test_acc", "test at each run's best validation epoch"))
    for key, name in measures:
        mean, low, high, n = paired_interval([100 * a[s][key] for s in seeds], [100 * b[s][key] for s in seeds])
        lines.append(f"- {name}: {interval_text(mean, low, high)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = parser("dip", __doc__)
    p.add_argument("--passes", type=int, default=10, metavar="K",
                   help="the first K epochs of the game (default 10)")
    p.add_argument("--against", nargs="+", type=Path, metavar="RUN_DIR", default=[],
                   help="runs of a second configuration, compared with the first by seed")
    args = p.parse_args(argv)
    if args.passes < 1:
        print(f"error: --passes {args.passes}: expected at least 1", file=sys.stderr)
        return 2
    print("\n".join(HEADER).replace("at K", f"at {args.passes}"))
    groups: list[list[dict]] = [[], []]
    try:
        for group, runs in enumerate((args.runs, args.against)):
            for run_dir in runs:
                rows = dip_rows(run_dir, args.passes)
                groups[group] += rows
                print("\n".join(_line(r) for r in rows), flush=True)
        if args.against:
            print("\n" + "\n".join(paired_lines(*groups, args.passes)))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
