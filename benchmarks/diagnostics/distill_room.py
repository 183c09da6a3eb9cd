"""How much can a teacher give the classifier on the synthetic collection?

    python -m benchmarks.diagnostics.distill_room results/table2-synthetic/synthetic/kdgan-s0 \\
        results/table2-synthetic/synthetic/kdgan-s1 results/table2-synthetic/synthetic/kdgan-s2 \\
        --threads 1 --out results/distill-room

Distillation trains the classifier on a teacher's distribution over the tags of the n
training images. This trains a fresh classifier (the run's architecture, dropout and
initialisation) on each kind of target for those same images, with one protocol for all
(`--epochs` passes of Adam at the run's pretraining rate, the pass of best validation MAP),
and reports its test metrics:

- tags: the images' label distributions (uniform over the tags): supervised training;
- teacher: the run's pretrained teacher (image + text), what KDGAN and DISTN distil;
- teacher, out of fold: `--folds` teachers pretrained like it, each on the other folds, each
  image's distribution from the one that never saw its tags (`--set tch_folds=K` in a run),
  mixed half and half with the tags (on its own it is worse than the tags);
- ideal teacher: the generator's posterior P(tag | features, text), what a perfect
  text-reading teacher would say (kdgan.tags.synthetic_posterior);
- ideal classifier: the generator's posterior P(tag | features), the classifier's own
  ideal, as a target.

The gap between "tags" and "ideal teacher" is the room that privileged text leaves for
distillation on these images; "teacher" and "teacher, out of fold" are what learned
teachers fill of it. Needs runs on a collection made by `kdgan.tags.synthesize` with its
defaults (as `python -m benchmarks.table2 --synthetic` writes). Prints a Markdown table and
writes OUT/room.md and OUT/room.parquet (a row per run and target).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from analysis.tables import room_markdown
from benchmarks.core import run_config, write_text
from benchmarks.diagnostics import parser
from kdgan import tags
from kdgan.config import Config, ConfigError
from kdgan.data import Data, DataError
from kdgan.game import Game
from kdgan.metrics import RANKING, ranking_metrics
from kdgan.io import atomic_write
from kdgan.run import Run

TARGETS = ("tags", "teacher", "teacher, out of fold", "ideal teacher", "ideal classifier")


def softmax_of(model: torch.nn.Module, inputs) -> torch.Tensor:  # noqa: ANN001
    model.eval()
    with torch.no_grad():
        return F.softmax(model(inputs), dim=-1)


def out_of_fold(cfg: Config, data: Data, folds: int, device: torch.device) -> torch.Tensor:
    """(n, K): each training image's distribution from the member of an out-of-fold teacher
    (`tch_folds`, pretrained as the run's teacher) that never saw its tags."""
    game = Game(cfg.replace(method="distn", tch_folds=folds), data, device)
    game.pretrain_player("tch")
    game.players["tch"].eval()
    with torch.no_grad():
        return F.softmax(game.players["tch"](data.train.xp, game.folds), dim=-1)


def train_student(cfg: Config, data: Data, target: torch.Tensor, epochs: int,
                  device: torch.device) -> dict:
    """A fresh classifier (the run's, same initialisation) trained as C is pretrained
    (Game.supervised_step: cross-entropy, here on soft targets for the training images, no
    augmentation), with Adam at the run's pretraining rate; test metrics at the pass of best
    validation MAP."""
    target = target / target.sum(dim=1, keepdim=True)
    soft = replace(data, train=replace(data.train, y=target))
    game = Game(cfg.replace(method="supervised", augment=False), soft, device)  # builds C as the run does
    model = game.players["cls"]
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.pretrain_lr)  # no weight decay: the protocol's
    val_rel, test_rel = tags.relevant(data.val), tags.relevant(data.test)
    best: dict = {"val_map": -1.0}
    for epoch in range(1, epochs + 1):
        for index in torch.randperm(len(target)).split(cfg.batch_size):  # on the CPU, as always
            game.supervised_step("cls", game.batches.draw(index), opt)
        val_map = ranking_metrics(softmax_of(model, data.val.x), val_rel)["map"]
        if val_map > best["val_map"]:
            test = ranking_metrics(softmax_of(model, data.test.x), test_rel)
            best = {"val_map": val_map, "epoch": epoch, **{f"test_{m}": test[m] for m in RANKING}}
    return best


def room(run_dir: Path, epochs: int = 60, folds: int = 5, threads: int = 0,
         generator: dict | None = None) -> list[dict]:
    """A row per target for one finished run (its summary.json gives the configuration;
    its pretrained teacher comes from the run's pretraining cache, or is pretrained again)."""
    cfg = run_config(run_dir, threads)
    collection = tags.read(cfg.dataset)  # before any training: a wrong file fails here
    run = Run(cfg.replace(method="distn"))  # a method with C and T: its pretrained teacher
    run.pretrain()
    data, device = run.data, run.device
    train_rows = tags.pool_rows(cfg)[data.train_indices]
    posterior = {use_text: tags.synthetic_posterior(collection, train_rows, use_text, **(generator or {}))
                 for use_text in (True, False)}
    if not np.allclose(collection.features[train_rows], data.train.x.cpu().numpy()):
        raise DataError(f"{run_dir}: the training rows of {cfg.dataset} do not match the run's")
    y = data.train.y
    t0 = time.perf_counter()
    targets = {
        "tags": y,
        "teacher": softmax_of(run.game.players["tch"], data.train.xp),
        "teacher, out of fold": 0.5 * out_of_fold(cfg, data, folds, device) + 0.5 * y / y.sum(1, keepdim=True),
        "ideal teacher": torch.tensor(posterior[True], dtype=y.dtype, device=y.device),
        "ideal classifier": torch.tensor(posterior[False], dtype=y.dtype, device=y.device),
    }
    out = []
    for name, target in targets.items():
        r = train_student(cfg, data, target, epochs, device)
        mass = float((target / target.sum(1, keepdim=True) * (y > 0)).sum(1).mean())
        out.append({"run": str(run_dir), "seed": cfg.seed, "target": name,
                    "train_tag_mass": mass, **r})
        print(f"   {run_dir} {name}: test MAP {r['test_map']:.4f} (val MAP {r['val_map']:.4f}, "
              f"pass {r['epoch']}), target mass on the tags {mass:.3f}", flush=True)
    print(f"   {run_dir}: {time.perf_counter() - t0:.0f}s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("distill_room", __doc__)
    p.add_argument("--epochs", type=int, default=60, help="passes of each student (default 60)")
    p.add_argument("--folds", type=int, default=5, help="out-of-fold teachers (default 5)")
    p.add_argument("--out", type=Path, default=None, help="write OUT/room.md and OUT/room.parquet")
    args = p.parse_args(argv)
    for flag, value, least in (("--epochs", args.epochs, 1), ("--folds", args.folds, 2)):
        if value < least:
            print(f"error: {flag} {value}: expected >= {least}", file=sys.stderr)
            return 2
    rows = []
    try:
        for run_dir in args.runs:
            if not (run_dir / "summary.json").exists():
                raise DataError(f"{run_dir}: no summary.json (expected a finished run directory)")
        for run_dir in args.runs:
            rows += room(run_dir, args.epochs, args.folds, args.threads)
    except (ConfigError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    text = room_markdown(df, list(TARGETS))
    print("\n" + text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out / "room.parquet", lambda tmp: df.to_parquet(tmp, index=False))
        write_text(args.out / "room.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
