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


def fit_report(run_dir: Path, threads: int = 0) -> list[dict]:
    cfg = run_config(run_dir, threads)
    run = Run(cfg)
    run.pretrain()
    game, data = run.game, run.data
    metric = "map" if data.train.multilabel else "acc"
    rows = []
    for name in ("cls", "tch"):
        if name not in game.players:
            continue
        row = {"run": str(run_dir), "player": name, "metric": metric}
        for split_name in ("train", "test"):
            split = getattr(data, split_name)
            row[f"{split_name} {metric}"] = game.evaluate(name, split)[metric]
            row[f"{split_name} label mass"] = label_mass(game.players[name], game.inputs(name, split), split)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = parser("teacher_fit", __doc__)
    args = p.parse_args(argv)
    print("| run | player | train | test | train label mass | test label mass |")
    print("|---|---|---|---|---|---|")
    for run_dir in args.runs:
        try:
            rows = fit_report(run_dir, args.threads)
        except (ConfigError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for r in rows:
            m = r["metric"]
            print(f"| {r['run']} | {r['player']} | {m} {r[f'train {m}']:.3f} | {m} {r[f'test {m}']:.3f} "
                  f"| {r['train label mass']:.3f} | {r['test label mass']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
