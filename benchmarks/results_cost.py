"""What writing the results costs as a search grows: ParquetResults fed a simulated stream.

    python -m benchmarks.results_cost --trials 10000 --out results/results-cost

Each simulated trial reports `--epochs` + 1 results (epoch 0 = pretraining) with the metric
columns of a real MNIST trial, a checkpoint every `--checkpoint-every` epochs and at its end,
then ends. The callback runs on Tune's event loop, so what matters is the time of its calls:
a trial's end, and all of a trial's calls together, at trial 100, 1,000 and 10,000 (the
median over the 50 trials up to each). The compaction, which runs in a background thread
off the loop, is timed at the same points. The target: a trial's end at 10,000 within 2x of
its cost at 100 (before this design: 0.13 s at 100, 1.1 s at 1,000, 4.4 s at 4,000, growing
with the square of the search in all).
"""

from __future__ import annotations

import argparse
import atexit
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from kdgan.config import Config
from kdgan.io import atomic_write
from kdgan.results import Compactor, ParquetResults

METRICS = ("cls/adv", "cls/distill", "cls/ce", "tch/adv", "tch/distill", "dis/real",
           "dis/fake_cls", "dis/fake_tch", "dis/loss", "tau", "val/acc", "test/acc", "val/ce",
           "test/ce", "val/tch_acc", "time/epoch_s")


def _trial(i: int, rng: random.Random) -> SimpleNamespace:
    config = {**Config().to_dict(), "alpha": rng.random(), "beta": 10 ** rng.uniform(-3, 3),
              "gamma": 10 ** rng.uniform(-4, 2)}
    return SimpleNamespace(trial_id=f"{i:08x}", config=config, last_result=None, error_file=None)


def _result(epoch: int, epochs: int, checkpointed: bool, rng: random.Random) -> dict:
    row = {k: rng.random() for k in METRICS}
    row.update(epoch=epoch, best_val_acc=rng.random(), test_acc=rng.random(), best_epoch=epoch,
               epochs_total=epochs, wall_s=epoch * 2.0, trial_s=epoch * 2.0, life="a",
               diverged=False, error="", hostname="sim", node_id="n", node_ip="127.0.0.1",
               checkpointed=checkpointed, training_iteration=epoch + 1, time_this_iter_s=2.0)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.results_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.trials < 100 or args.epochs < 1 or args.checkpoint_every < 1:
        p.error("--trials >= 100, --epochs >= 1 and --checkpoint-every >= 1 expected")
    marks = [m for m in (100, 1_000, 10_000, args.trials) if m <= args.trials]
    marks = sorted(set(marks))
    rng = random.Random(0)
    experiment = Path(tempfile.mkdtemp(prefix="kdgan-results-cost-"))
    atexit.register(shutil.rmtree, experiment, True)
    callback = ParquetResults(experiment, compact_every_s=0)  # compaction timed apart, below
    compactor = Compactor(experiment)
    ends, totals, rows = [], [], []
    t_start = time.time()
    for i in range(1, args.trials + 1):
        trial = _trial(i, rng)
        spent = 0.0
        for epoch in range(args.epochs + 1):
            checkpointed = epoch == args.epochs or (epoch > 0 and epoch % args.checkpoint_every == 0)
            result = _result(epoch, args.epochs, checkpointed, rng)
            trial.last_result = result
            t0 = time.perf_counter()
            callback.on_trial_result(i, [], trial, result)
            spent += time.perf_counter() - t0
        t0 = time.perf_counter()
        callback.on_trial_complete(i, [], trial)
        end = time.perf_counter() - t0
        ends.append(end)
        totals.append(spent + end)
        if i in marks:
            t0 = time.perf_counter()
            compactor()
            compact_s = time.perf_counter() - t0
            row = {"trial": i, "end_ms": 1000 * statistics.median(ends[-args.window:]),
                   "trial_calls_ms": 1000 * statistics.median(totals[-args.window:]),
                   "compaction_s": compact_s, "elapsed_s": time.time() - t_start}
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                  flush=True)
    first, last = rows[0], rows[-1]
    verdict = {"end_ratio": last["end_ms"] / first["end_ms"],
               "trial_calls_ratio": last["trial_calls_ms"] / first["trial_calls_ms"]}
    print(json.dumps(verdict))
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.results_cost " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# The cost of writing results as a search grows", "", f"`{command}`", "",
             f"{args.epochs + 1} results a trial, a checkpoint every {args.checkpoint_every} epochs;"
             f" medians over the {args.window} trials up to each mark.", "",
             "| trial | a trial's end (ms) | all its calls (ms) | compaction, off the loop (s) |",
             "|---|---|---|---|"]
    lines += [f"| {r['trial']:,} | {r['end_ms']:.1f} | {r['trial_calls_ms']:.1f} | {r['compaction_s']:.2f} |"
              for r in rows]
    lines += ["", f"A trial's end at {last['trial']:,} / at 100: {verdict['end_ratio']:.2f}x; "
              f"all its calls: {verdict['trial_calls_ratio']:.2f}x (target <= 2x).", ""]
    atomic_write(args.out / "report.md", lambda tmp: tmp.write_text("\n".join(lines)))
    atomic_write(args.out / "report.json",
                 lambda tmp: tmp.write_text(json.dumps({"command": command, "rows": rows, **verdict}, indent=2)))
    return 0 if verdict["end_ratio"] <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
