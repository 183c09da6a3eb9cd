"""Compare methods over seeds with one command; resumable; writes Parquet and a Markdown table.

    python -m benchmarks.compare --n 100 --seeds 0 1 2 --out runs/compare-n100
    python -m benchmarks.compare --methods supervised kdgan --seeds 0 --smoke --out /tmp/c

Each (method, seed) is one `kdgan.train` run in OUT/<method>-s<seed>/; a finished run is
read back, an interrupted one resumes from its checkpoint. Pretrained players are shared
through OUT/pretrain (kdgan and kdgan-wo-gm share theirs). Writes OUT/runs.parquet (a row
per run) and OUT/table.md: test accuracy at the best validation epoch and at the last
epoch, mean +- std over seeds, and each method's gain over `supervised` paired by seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from benchmarks import write_runs, write_text
from kdgan.config import METHODS, Config, ConfigError, parse_overrides
from kdgan.spaces import SMOKE
from kdgan.train import train


def run_all(methods: list[str], seeds: list[int], base: dict, out: Path) -> pd.DataFrame:
    rows = []
    for method in methods:
        for seed in seeds:
            run_dir = out / f"{method}-s{seed}"
            summary_file = run_dir / "summary.json"
            if summary_file.exists():
                summary = json.loads(summary_file.read_text())
            else:
                cfg = Config.from_dict({**base, "method": method, "seed": seed,
                                        "pretrain_cache": str(out / "pretrain")})
                print(f"== {method} seed {seed} -> {run_dir}", flush=True)
                summary = train(cfg, run_dir, quiet=True)
            print(f"{method:12s} seed {seed}: test {100 * summary['test_acc']:.2f} at epoch "
                  f"{summary['best_epoch']} (val {100 * summary['val_acc']:.2f}), last "
                  f"{100 * summary['last_test_acc']:.2f}, {summary['wall_s']:.0f}s", flush=True)
            rows.append({k: summary[k] for k in ("method", "n", "seed", "val_acc", "test_acc",
                                                 "best_epoch", "last_val_acc", "last_test_acc",
                                                 "epochs_run", "wall_s", "pretrain_s")})
    return pd.DataFrame(rows)


def table(runs: pd.DataFrame) -> str:
    """Markdown: mean +- std (percent) per method; the paired gain over supervised."""
    pct = runs.assign(test_acc=100 * runs["test_acc"], last_test_acc=100 * runs["last_test_acc"],
                      val_acc=100 * runs["val_acc"])
    base = pct[pct["method"] == "supervised"].set_index("seed")
    lines = ["| method | seeds | val acc (selected) | test acc at best val epoch | test acc at last epoch "
             "| last - selected | gain over supervised (paired) | wall s per run |",
             "|---|---|---|---|---|---|---|---|"]
    for method, g in pct.groupby("method", sort=False):
        def ms(col: str) -> str:
            return f"{g[col].mean():.2f} +- {g[col].std(ddof=1):.2f}" if len(g) > 1 else f"{g[col].mean():.2f}"
        drift = (g["last_test_acc"] - g["test_acc"]).mean()
        gain = "-"
        if method != "supervised" and not base.empty:
            paired = g.set_index("seed")["test_acc"] - base["test_acc"]
            paired = paired.dropna()
            if len(paired):
                gain = f"{paired.mean():+.2f} (min {paired.min():+.2f}, n={len(paired)})"
        lines.append(f"| {method} | {len(g)} | {ms('val_acc')} | {ms('test_acc')} | "
                     f"{ms('last_test_acc')} | {drift:+.2f} | {gain} | {g['wall_s'].mean():.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["supervised", "kdgan", "nagan", "kdgan-wo-gm"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field for every run (repeatable)")
    p.add_argument("--smoke", action="store_true", help="tiny budget, to check the pipeline")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    base: dict = {"dataset": args.dataset, "n": args.n}
    if args.smoke:
        base.update(SMOKE)
    try:
        base.update(parse_overrides(args.set))
        for method in args.methods:  # every error before the first run starts
            if method not in METHODS:
                raise ConfigError(f"--methods {method!r}: expected some of {', '.join(METHODS)}")
            Config.from_dict({**base, "method": method})
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    runs = run_all(args.methods, args.seeds, base, args.out)
    write_runs(args.out, runs)
    text = table(runs)
    write_text(args.out / "table.md", text)
    print("\n" + text)
    print(f"runs: {args.out / 'runs.parquet'}; table: {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
