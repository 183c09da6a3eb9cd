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

With --into FILE, the rows go into FILE, a table this command wrote before: the rows of the
runs measured now replace theirs there, every other run's rows stay, and the runs are sorted
by folder, seed and name. So a table over many runs grows as runs finish, without measuring
the old ones again (their checkpoints may be gone).

    python -m benchmarks.diagnostics.teacher_fit --end --into results/table1-passes/teacher-end.md RUN_DIR ...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from benchmarks.core import run_config
from benchmarks.diagnostics import parser
from kdgan.config import ConfigError
from kdgan.data import DataError, Split
from kdgan.io import atomic_write
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


HEADER = ["| run | stage | player | train | test | train label mass | test label mass |",
          "|---|---|---|---|---|---|---|"]


def _line(r: dict) -> str:
    m = r["metric"]
    return (f"| {r['run']} | {r['stage']} | {r['player']} | {m} {r[f'train {m}']:.3f} | {m} {r[f'test {m}']:.3f} "
            f"| {r['train label mass']:.3f} | {r['test label mass']:.3f} |")


def _table_runs(path: Path) -> dict[str, list[str]]:
    """FILE's rows by run (no file: none); a file that is not this command's table is a DataError."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    if lines[:2] != HEADER:
        raise DataError(f"--into {path}: not a table teacher_fit wrote (its first lines are not "
                        f"{HEADER[0]!r} and its rule); give a new file or one this command wrote")
    runs: dict[str, list[str]] = {}
    for line in lines[2:]:
        if line.strip():
            runs.setdefault(line.split("|")[1].strip(), []).append(line)
    return runs


def _run_order(run: str) -> tuple:
    """Folder (numbers compared as numbers: n100 before n1000), then seed (-sK), then name."""
    folder, _, name = run.rpartition("/")
    natural = tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", folder) if t)
    seed = re.search(r"-s(\d+)$", name)
    return natural, int(seed.group(1)) if seed else -1, name


def merge_into(path: Path, new: dict[str, list[str]]) -> int:
    """Put `new` (rows by run) into the table at `path`, replacing those runs' old rows;
    returns the number of runs the table then has."""
    runs = {**_table_runs(path), **new}
    body = [line for run in sorted(runs, key=_run_order) for line in runs[run]]
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(HEADER + body) + "\n"))
    return len(runs)


def main(argv: list[str] | None = None) -> int:
    p = parser("teacher_fit", __doc__)
    p.add_argument("--end", action="store_true",
                   help="also the players at the end of the game (RUN_DIR/checkpoint.pt)")
    p.add_argument("--into", type=Path, metavar="FILE",
                   help="merge the rows into FILE (a table this command wrote), replacing the "
                        "rows of the runs measured now")
    args = p.parse_args(argv)
    if args.into:
        try:
            _table_runs(args.into)  # a wrong FILE fails before any run is measured
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print("\n".join(HEADER))
    new: dict[str, list[str]] = {}
    status = 0
    for run_dir in args.runs:
        try:
            lines = [_line(r) for r in fit_report(run_dir, args.threads, args.end)]
        except (ConfigError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
            break
        print("\n".join(lines), flush=True)
        new[str(run_dir)] = lines
    if args.into and new:  # the runs measured before a failure are kept
        total = merge_into(args.into, new)
        print(f"{args.into}: {len(new)} runs measured now, {total} in all", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
