"""Paper Table 2: tag recommendation with privileged text, per label set, over seeds.

    python -m benchmarks.table2 --synthetic --seeds 0 1 2 --out runs/table2-synthetic
    python -m benchmarks.table2 --collection popular=DIR/yfcc-popular.parquet \\
        --collection random=DIR/yfcc-random.parquet --seeds 0 1 2 --out runs/table2-yfcc

Methods: knn (neighbour voting over image features, k chosen on validation from `KNN_K`),
supervised (C alone), teacher (T, which also reads the text: the privileged reference),
distn, nagan, kdgan. Every learned method is one `kdgan.train` run in
OUT/<label set>/<method>-s<seed>/ (resumed if interrupted), selected at the epoch of best
validation P@1; the table gives test P@3, P@5, F@3, F@5, MAP and MRR there, mean +- std
over seeds, with the paper's figures where it has them. `--synthetic` writes the synthetic
collection of kdgan.tags (where the text names concepts the image features blur and the
tags leave out) to OUT/synthetic.parquet and runs on it. Writes OUT/runs.parquet after
every run and OUT/table.md at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.tables import tag_table, tag_to_markdown
from benchmarks import write_runs, write_text
from kdgan import tags
from kdgan.config import METHODS, Config, ConfigError, parse_overrides
from kdgan.data import DataError
from kdgan.game import NonFiniteLossError
from kdgan.metrics import ranking_metrics
from kdgan.train import train

TABLE_METHODS = ("knn", "supervised", "distn", "nagan", "kdgan", "teacher")
KNN_K = (5, 10, 20, 50, 100)
RANKING = ("p@3", "p@5", "f@3", "f@5", "map", "mrr")
SMOKE = {"pretrain_epochs": 2, "dis_pretrain_epochs": 1, "epochs": 2}


def knn_run(cfg: Config) -> dict:
    """KNN on the same training subset as the learned methods; k chosen on validation MAP."""
    data = tags.load(cfg)
    t0 = time.perf_counter()
    train_x, train_tags = data.train.x, tags.relevant(data.train).float()
    val = {k: ranking_metrics(tags.knn_scores(train_x, train_tags, data.val.x, k), tags.relevant(data.val))
           for k in KNN_K if k <= len(train_x)}
    best_k = max(val, key=lambda k: val[k]["map"])
    test = ranking_metrics(tags.knn_scores(train_x, train_tags, data.test.x, best_k), tags.relevant(data.test))
    return {"val_acc": val[best_k]["p@1"], "test_acc": test["p@1"], "best_epoch": 0,
            "test_metrics": test, "last_test_metrics": test, "knn_k": best_k,
            "wall_s": time.perf_counter() - t0}


def run_one(method: str, label_set: str, path: str, seed: int, base: dict, out: Path) -> dict:
    run_dir = out / label_set / f"{method}-s{seed}"
    summary_file = run_dir / "summary.json"
    status = "DONE"
    if summary_file.exists():
        summary = json.loads(summary_file.read_text())
    else:
        print(f"== {method} {label_set} seed {seed} -> {run_dir}", flush=True)
        cfg = Config.from_dict({**base, "dataset": path, "seed": seed,
                                "method": "supervised" if method == "knn" else method,
                                "pretrain_cache": str(out / "pretrain")})
        try:
            if method == "knn":  # no training: the config gives the data, n and seed
                summary = knn_run(cfg)
                run_dir.mkdir(parents=True, exist_ok=True)
                write_text(summary_file, json.dumps(summary, indent=2))
            else:
                summary = train(cfg, run_dir, quiet=True)
        except NonFiniteLossError as e:
            print(f"   diverged: {e}", flush=True)
            summary, status = {}, "DIVERGED"
    row = {"label_set": label_set, "method": method, "seed": seed, "status": status,
           "val_acc": summary.get("val_acc", np.nan), "wall_s": summary.get("wall_s", np.nan),
           "best_epoch": summary.get("best_epoch", np.nan)}
    for m in RANKING:
        row[f"test_{m}"] = summary.get("test_metrics", {}).get(m, np.nan)
        row[f"last_test_{m}"] = summary.get("last_test_metrics", {}).get(m, np.nan)
    if status == "DONE":
        print(f"   {method:10s} {label_set} seed {seed}: " + "  ".join(
            f"{m.upper()} {row[f'test_{m}']:.4f}" for m in RANKING), flush=True)
    return row


def verdicts(runs: pd.DataFrame) -> list[str]:
    """The claims of the issue, checked on every metric, paired by seed."""
    out = []
    done = runs[runs["status"] == "DONE"]
    for label_set, g in done.groupby("label_set", sort=False):
        by = {m: gm.set_index("seed") for m, gm in g.groupby("method")}
        for a, b, claim in (("teacher", "supervised", "the teacher (image + text) beats C alone"),
                            ("kdgan", "supervised", "KDGAN's C (image only) beats supervised C")):
            if a not in by or b not in by:
                continue
            seeds = by[a].index.intersection(by[b].index)
            wins = {m: bool((by[a].loc[seeds, f"test_{m}"].mean() > by[b].loc[seeds, f"test_{m}"].mean()))
                    for m in RANKING}
            per_seed = {m: int((by[a].loc[seeds, f"test_{m}"] > by[b].loc[seeds, f"test_{m}"]).sum())
                        for m in RANKING}
            ok = all(wins.values())
            out.append(f"- {label_set}: {claim} on every metric (means over {len(seeds)} seeds): "
                       f"{'yes' if ok else 'NO'}; seeds won per metric: "
                       + ", ".join(f"{m.upper()} {per_seed[m]}/{len(seeds)}" for m in RANKING))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.table2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collection", action="append", default=[], metavar="NAME=PATH",
                   help="a label set's collection (repeatable)")
    p.add_argument("--synthetic", action="store_true", help="write and use the synthetic collection")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(TABLE_METHODS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true", help="tiny budget, to check the pipeline")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    collections: dict[str, str] = {}
    try:
        for item in args.collection:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"--collection {item!r}: expected NAME=PATH")
            if not Path(path).expanduser().is_file():
                raise ConfigError(f"--collection {item!r}: no such file {path}")
            collections[name] = path
        if args.synthetic:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / "synthetic.parquet"
            if not path.exists():
                tags.write(path, tags.synthesize())
            collections["synthetic"] = str(path)
        if not collections:
            raise ConfigError("no collection: give --collection NAME=PATH or --synthetic")
        base = {**(SMOKE if args.smoke else {}), **parse_overrides(args.set)}
        for method in args.methods:
            if method != "knn" and method not in METHODS:
                raise ConfigError(f"--methods {method!r}: expected knn or some of {', '.join(METHODS)}")
        for path in collections.values():
            tags.read(path)  # every collection checked before the first run
            Config.from_dict({**base, "dataset": path})
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    rows = []
    for label_set, path in collections.items():
        for seed in args.seeds:
            for method in args.methods:
                rows.append(run_one(method, label_set, path, seed, base, args.out))
                runs = pd.DataFrame(rows)
                write_runs(args.out, runs)
    text = tag_to_markdown(tag_table(runs)) + "\n" + "\n".join(verdicts(runs)) + "\n"
    write_text(args.out / "table.md", text)
    print("\n" + text)
    print(f"{time.perf_counter() - t0:.0f}s; runs: {args.out / 'runs.parquet'}; table: {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
