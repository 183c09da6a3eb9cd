"""Paper Table 2: tag recommendation with privileged text, per label set, over seeds.

    python -m benchmarks.table2 --synthetic --seeds 0 1 2 --out runs/table2-synthetic
    python -m benchmarks.table2 --collection popular=DIR/yfcc-popular.parquet \\
        --collection random=DIR/yfcc-random.parquet --seeds 0 1 2 --out runs/table2-yfcc

Methods: knn (neighbour voting over image features, k chosen on validation from `KNN_K`),
supervised (C alone), teacher (T, which also reads the text: the privileged reference),
distn, nagan, kdgan. Every learned method is one `kdgan.train` run (resumed if interrupted),
selected at the epoch of best validation P@1.

Hyperparameters are chosen on validation only, as in benchmarks.table1: each point of a
method's grid (`GRID`: supervised's learning rate, DISTN's weight and temperature, KDGAN's
defaults against the best configuration of the project's own search on the synthetic
collection, each at its distillation temperature and at 1; `--search DIR` adds the best
trial of another search) runs on the selection seeds (default: the first three of --seeds);
the point with the best mean validation P@1 is used for every seed (`--no-grid`: defaults
only). A run lives in OUT/<label set>/<method>[-<overrides>]-s<seed>/ whether the grid or the
table asked for it, so the table reuses the selection's runs. The table gives test P@3, P@5,
F@3, F@5, MAP and MRR at the selected epoch, mean +- std over seeds, with the paper's figures
where it has them; OUT/select.md the grid's validation means, OUT/selection.json the choices.
`--synthetic` writes the synthetic collection of kdgan.tags (where the text names concepts
the image features blur and the tags leave out) to OUT/synthetic.parquet and runs on it.
Writes OUT/runs.parquet after every run and OUT/table.md at the end.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.tables import paired_verdicts, tag_select_markdown, tag_table, tag_to_markdown
from benchmarks import core
from benchmarks.core import tag, write_runs, write_table, write_text
from kdgan import tags
from kdgan.config import Config, ConfigError, parse_overrides
from kdgan.data import DataError
from kdgan.metrics import RANKING, ranking_metrics
from kdgan.spaces import SMOKE

TABLE_METHODS = ("knn", "supervised", "distn", "nagan", "kdgan", "teacher")
KNN_K = (5, 10, 20, 50, 100)
# What the table's verdicts check, each on every metric and paired by seed: (a, b, a beats b).
CLAIMS = [("teacher", "supervised", "the teacher (image + text) beats C alone"),
          ("kdgan", "supervised", "KDGAN's C (image only) beats supervised C"),
          ("kdgan", "distn", "KDGAN's C beats DISTN's")]

# The best configuration of the project's own search on the synthetic collection (32 trials,
# seed 0, n = 2,000; docs/RESULTS.md), selected there on validation P@1:
#   python -m kdgan.tune --space yfcc --set dataset=$PWD/results/table2-synthetic/synthetic.parquet \
#       --set n=2000 --set threads=1 --name kdgan-synthetic
SEARCH_BEST = {"alpha": 0.8411, "beta": 0.5632, "gamma": 0.008649}
# What `--search` takes from a search besides alpha, beta, gamma: the form of the game.
GAME_FIELDS = ("distill", "distill_temperature", "cls_ce_weight", "tch_ce_weight", "estimator",
               "reinforce_baseline", "tau_start", "tau_end", "adv_loss", "dis_target")
# Settings that say where a search ran, not what it computed: never reported as differences.
SEARCH_IGNORED = ("dataset", "seed", "pretrain_cache", "threads", "device", "eval_batch_size")

# Validation grid per method: config overrides, {} (the defaults) first.
# Temperature 1 beside the usual 3-4: a teacher that does not memorise its training tags
# (e.g. `tch_arch=text-linear` with `tch_weight_decay`) is already soft; heating it further
# flattens the ranking it passes on.
GRID: dict[str, list[dict]] = {
    "supervised": [{}, {"cls_lr": 1e-4}, {"cls_lr": 1e-3}],
    "distn": [{}] + [{"distn_p": p, "distn_temperature": t}
                     for p, t in itertools.product((0.3, 0.7, 0.9), (3.0, 4.0, 1.0))
                     if (p, t) != (0.7, 3.0)],
    "kdgan": [{}, SEARCH_BEST, {"distill_temperature": 1.0}, {**SEARCH_BEST, "distill_temperature": 1.0}],
}


def search_best(path: Path, base: Config) -> dict:
    """KDGAN's settings in the best finished trial (validation) of the kdgan.tune search at
    `path` (its trials.parquet): alpha, beta and gamma to 4 significant digits, and the form
    of the game (`GAME_FIELDS`, e.g. `--set distill_temperature=1` there) where it differs
    from the benchmark's own (`base`). The data, players and schedule stay the benchmark's;
    where the search ran with others, they are printed."""
    file = path / "trials.parquet"
    if not file.is_file():
        raise ConfigError(f"--search {path}: no trials.parquet there (expected a kdgan.tune experiment directory)")
    trials = pd.read_parquet(file)
    done = trials[(trials["status"] == "TERMINATED") & trials["best_val_acc"].notna()]
    if done.empty:
        raise ConfigError(f"--search {path}: no finished trial in {file}")
    best = done.loc[done["best_val_acc"].idxmax()]
    point = {k: float(f"{best[k]:.4g}") for k in ("alpha", "beta", "gamma")}
    ours, other = base.to_dict(), []
    for k in ours:
        if k in best.index and k not in point and best[k] != ours[k] and k not in SEARCH_IGNORED:
            value = best[k].item() if hasattr(best[k], "item") else best[k]
            if k in GAME_FIELDS:
                point[k] = value
            else:
                other.append(f"{k}={value!r} (here {ours[k]!r})")
    Config.from_dict({**ours, **point})
    print(f"-- kdgan grid: {tag(point)} from {file} (trial {best['trial_id']}, val P@1 "
          f"{best['best_val_acc']:.4f})" + (f"; the search ran with {', '.join(other)}" if other else ""),
          flush=True)
    return point


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


def run_dir(out: Path, label_set: str, method: str, seed: int, overrides: dict) -> Path:
    """OUT/<label set>/<method>-s<seed> for the defaults, <method>-<overrides>-s<seed> else."""
    name = method if not overrides else f"{method}-{tag(overrides)}"
    return out / label_set / f"{name}-s{seed}"


def knn_into(cfg: Config, rdir: Path) -> dict:
    """`knn_run`, its summary written to RUN_DIR/summary.json as a trained run's is."""
    summary = knn_run(cfg)
    rdir.mkdir(parents=True, exist_ok=True)
    write_text(rdir / "summary.json", json.dumps(summary, indent=2))
    return summary


def run_config(method: str, path: str, seed: int, base: dict, out: Path,
               overrides: dict) -> Config:
    return Config.from_dict({**base, **overrides, "dataset": path, "seed": seed,
                             "method": "supervised" if method == "knn" else method,
                             "pretrain_cache": str(out / "pretrain")})


def prefill(method: str, label_set: str, path: str, seeds: list[int], base: dict, out: Path,
            overrides: dict) -> None:
    """The seeds of one (method, label set, grid point) as one seed population (core.prefill)."""
    if method != "knn":
        core.prefill([(run_config(method, path, s, base, out, overrides),
                       run_dir(out, label_set, method, s, overrides)) for s in seeds],
                     f"{method} {label_set} {tag(overrides)}")


def run_one(method: str, label_set: str, path: str, seed: int, base: dict, out: Path,
            overrides: dict | None = None) -> dict:
    """A row of runs.parquet: the run trained (knn: fitted) or read back; a saved run of
    another grid point than `overrides` is refused."""
    overrides = overrides or {}
    cfg = run_config(method, path, seed, base, out, overrides)
    summary, status = core.run_or_read(
        cfg, run_dir(out, label_set, method, seed, overrides),
        f"{method} {label_set} seed {seed} {tag(overrides)}",
        checked=set(overrides) | {k for point in GRID.get(method, [{}]) for k in point},
        run=knn_into if method == "knn" else None)
    row = {"label_set": label_set, "method": method, "seed": seed, "status": status,
           "overrides": json.dumps(overrides, sort_keys=True),
           "val_acc": summary.get("val_acc", np.nan), "wall_s": summary.get("wall_s", np.nan),
           "best_epoch": summary.get("best_epoch", np.nan),
           "val_map": summary.get("val_metrics", {}).get("map", np.nan)}
    for m in RANKING:
        row[f"test_{m}"] = summary.get("test_metrics", {}).get(m, np.nan)
        row[f"last_test_{m}"] = summary.get("last_test_metrics", {}).get(m, np.nan)
    if status == "DONE":
        print(f"   {method:10s} {label_set} seed {seed} {tag(overrides)}: val P@1 "
              f"{row['val_acc']:.4f}  test " + "  ".join(
                  f"{m.upper()} {row[f'test_{m}']:.4f}" for m in RANKING), flush=True)
    return row


def select(method: str, label_set: str, path: str, seeds: list[int], base: dict, out: Path,
           grid: list[dict], population: bool = False) -> tuple[dict, list[dict]]:
    """The grid point with the best mean validation P@1 over `seeds` (benchmarks.core.select),
    and every point's scores (none for a grid of one point, which runs nothing here)."""
    chosen, scored = core.select(
        grid, seeds, lambda o, s: run_one(method, label_set, path, s, base, out, o),
        (lambda o: prefill(method, label_set, path, seeds, base, out, o)) if population else None)
    scores = []
    for overrides, mean, rows in scored:
        done = [r["val_map"] for r in rows if r["status"] == "DONE"]
        scores.append({"overrides": overrides, "val_p@1_mean": mean, "seeds": seeds,
                       "val_map_mean": float(np.mean(done)) if done else np.nan})
    if scored:
        best = max(mean for _, mean, _ in scored)
        print(f"-- {method} {label_set}: selected {tag(chosen)} (mean val P@1 "
              f"{best:.4f} over seeds {seeds})", flush=True)
    return chosen, scores


def select_points(selection: dict) -> pd.DataFrame:
    """Every grid point of OUT/selection.json, named, for OUT/select.md."""
    return pd.DataFrame([{"label set": label_set, "method": method, "overrides": tag(pt["overrides"]),
                          "val P@1": pt["val_p@1_mean"], "val MAP": pt["val_map_mean"], "seeds": pt["seeds"],
                          "chosen": pt["overrides"] == selection["chosen"][label_set][method]}
                         for label_set, methods in selection["grid"].items()
                         for method, points in methods.items() for pt in points])


def ceiling(path: str) -> list[str]:
    """The synthetic collection's ideal scorers on the test set: its generator's own posterior
    P(tag | features), the classifier's ideal (no image-only scorer has a higher expected
    P@k), and P(tag | features, text), the teacher's; kdgan.tags.synthetic_posterior."""
    c = tags.read(path)
    rows = np.where(c.split == "test")[0]
    truth = torch.from_numpy(c.label_matrix()[rows] > 0)
    out = []
    for use_text, who in ((False, "image only, C's ideal"), (True, "image + text, T's ideal")):
        m = ranking_metrics(torch.from_numpy(tags.synthetic_posterior(c, rows, use_text)), truth)
        out.append(f"- synthetic: the generator's posterior ({who}) on the test set: "
                   + ", ".join(f"{k.upper()} {m[k]:.4f}" for k in RANKING))
    return out


def main(argv: list[str] | None = None) -> int:
    p = core.parser("benchmarks.table2", __doc__, seeds=[0, 1, 2], methods=TABLE_METHODS,
                    population=True)
    p.add_argument("--collection", action="append", default=[], metavar="NAME=PATH",
                   help="a label set's collection (repeatable)")
    p.add_argument("--synthetic", action="store_true", help="write and use the synthetic collection")
    p.add_argument("--select-seeds", nargs="+", type=int, default=None,
                   help="seeds of the validation grid (default: the first three of --seeds)")
    p.add_argument("--no-grid", action="store_true", help="every method with its defaults")
    p.add_argument("--search", action="append", default=[], type=Path, metavar="DIR",
                   help="add the best trial of the kdgan.tune search in DIR (its alpha, beta, "
                        "gamma and form of the game, e.g. distill_temperature) to KDGAN's "
                        "validation grid (repeatable)")
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
        core.check_methods(args.methods, also=("knn",))
        base = {**(SMOKE if args.smoke else {}), **parse_overrides(args.set)}
        synthetic = args.out / "synthetic.parquet"
        if args.synthetic:
            collections["synthetic"] = str(synthetic)
        if not collections:
            raise ConfigError("no collection: give --collection NAME=PATH or --synthetic")
        # the settings and searches checked before the synthetic collection is written
        cfg = Config.from_dict({**base, "dataset": next(iter(collections.values()))})
        if args.search and (args.no_grid or "kdgan" not in args.methods):
            raise ConfigError("--search adds to KDGAN's validation grid: expected kdgan among "
                              "--methods and no --no-grid")
        searched = [search_best(d, cfg) for d in args.search]
        if args.synthetic and not synthetic.exists():
            args.out.mkdir(parents=True, exist_ok=True)
            tags.write(synthetic, tags.synthesize())
        for path in collections.values():
            tags.read(path)  # every collection checked before the first run
            Config.from_dict({**base, "dataset": path})
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    select_seeds = args.select_seeds if args.select_seeds is not None else args.seeds[:3]
    population = core.population_wanted(args.population, base)
    selection: dict = {"chosen": {}, "grid": {}, "select_seeds": select_seeds}
    rows = []
    try:
        for label_set, path in collections.items():
            chosen = selection["chosen"].setdefault(label_set, {})
            for method in args.methods:
                grid = [{}] if args.no_grid else GRID.get(method, [{}])
                if method == "kdgan":  # --search (refused with --no-grid)
                    grid = grid + [pt for pt in searched if pt not in grid]
                chosen[method], scores = select(method, label_set, path, select_seeds, base,
                                                args.out, grid, population)
                if scores:
                    selection["grid"].setdefault(label_set, {})[method] = scores
                    write_text(args.out / "selection.json", json.dumps(selection, indent=2))
            if population:  # each method's seeds as one population, read back below
                for method in args.methods:
                    prefill(method, label_set, path, args.seeds, base, args.out, chosen[method])
            for seed in args.seeds:
                for method in args.methods:
                    row = run_one(method, label_set, path, seed, base, args.out, chosen[method])
                    if row["status"] == core.BUSY:  # another invocation is training it
                        raise DataError(f"{method} {label_set} seed {seed}: its run is being "
                                        "trained by another process (above); run this again "
                                        "once it is done")
                    rows.append(row)
                    runs = pd.DataFrame(rows)
                    write_runs(args.out, runs)
    except DataError as e:  # a saved run of another configuration (benchmarks.core.run_or_read)
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_text(args.out / "selection.json", json.dumps(selection, indent=2))
    write_text(args.out / "select.md", tag_select_markdown(select_points(selection)))
    lines = (paired_verdicts(runs, CLAIMS, select_seeds)
             + (ceiling(collections["synthetic"]) if args.synthetic else []))
    write_table(args.out, tag_to_markdown(tag_table(runs)) + "\n" + "\n".join(lines) + "\n",
                said=f"{time.perf_counter() - t0:.0f}s; ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
