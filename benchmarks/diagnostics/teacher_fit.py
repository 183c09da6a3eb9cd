"""Does the pretrained teacher pass on anything its training labels do not?

    python -m benchmarks.diagnostics.teacher_fit results/table2-synthetic/synthetic/kdgan-s0 [RUN_DIR ...]

Distillation trains the classifier to match the teacher's distribution on the *training*
images. If the teacher has memorised those images' labels, that distribution is the labels
themselves and distilling adds nothing to supervised training. For each run directory (its
summary.json gives the configuration; the players come from its pretraining cache, or are
pretrained again with the same seed), this prints, for the classifier and the teacher after
pretraining, the accuracy (multi-label: MAP) on the run's n training images and on the test
set, and the mean probability mass the player puts on the true labels (multi-label: the
observed tags) of training and of test images. A teacher with train mass near 1 and test
mass far below it has memorised its training labels.

With --end, the same for the players at the end of the run's game, read from its
RUN_DIR/checkpoint.pt (kept by kdgan.train and the benchmarks, not committed): where the game
trains the teacher (kdgan, kdgan-wo-gm, codis), how far it has moved from the pretrained one.

    python -m benchmarks.diagnostics.teacher_fit --end results/table1-passes/n1000/kdgan-s0
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from benchmarks.core import run_config
from benchmarks.diagnostics import parser
from kdgan.config import ConfigError
from kdgan.data import DataError, Split
from kdgan.run import Run


def label_mass(model: torch.nn.Module, inputs, split: Split, batch: int = 1000) -> float:
    """Mean softmax probability on the split's labels (the tags, for multi-label data)."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(split), batch):
            p = torch.softmax(model(inputs[lo: lo + batch]), -1)
            y = split.y[lo: lo + batch]
            rel = (y > 0).to(p.dtype) if split.multilabel else torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)
            total += float((p * rel).sum())
    model.train(was_training)
    return total / len(split)


def fit_report(run_dir: Path, threads: int = 0, end: bool = False) -> list[dict]:
    """A row per player (C, T) after pretraining and, with `end`, at the end of the game
    (RUN_DIR/checkpoint.pt; a missing checkpoint is a DataError)."""
    cfg = run_config(run_dir, threads)
    run = Run(cfg)
    run.pretrain()
    rows = _rows(run, run_dir, "pretrained")
    if end:
        checkpoint = run_dir / "checkpoint.pt"
        if not checkpoint.is_file():
            raise DataError(f"{checkpoint}: no checkpoint to read the end of the game from (a "
                            "run keeps it unless kdgan.confirm dropped it)")
        run.load(checkpoint)
        rows += _rows(run, run_dir, f"end (epoch {run.epoch})")
    return rows


def _rows(run: Run, run_dir: Path, stage: str) -> list[dict]:
    game, data = run.game, run.data
    metric = "map" if data.train.multilabel else "acc"
    rows = []
    for name in ("cls", "tch"):
        if name not in game.players:
            continue
        row = {"run": str(run_dir), "stage": stage, "player": name, "metric": metric}
        for split_name in ("train", "test"):
            split = getattr(data, split_name)
            row[f"{split_name} {metric}"] = game.evaluate(name, split)[metric]
            row[f"{split_name} label mass"] = label_mass(game.players[name], game.inputs(name, split), split)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = parser("teacher_fit", __doc__)
    p.add_argument("--end", action="store_true",
                   help="also the players at the end of the game (RUN_DIR/checkpoint.pt)")
    args = p.parse_args(argv)
    print("| run | stage | player | train | test | train label mass | test label mass |")
    print("|---|---|---|---|---|---|---|")
    for run_dir in args.runs:
        try:
            rows = fit_report(run_dir, args.threads, args.end)
        except (ConfigError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for r in rows:
            m = r["metric"]
            print(f"| {r['run']} | {r['stage']} | {r['player']} | {m} {r[f'train {m}']:.3f} | {m} {r[f'test {m}']:.3f} "
                  f"| {r['train label mass']:.3f} | {r['test label mass']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
