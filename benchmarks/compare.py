"""Compare methods over seeds with one command; resumable; writes Parquet and a Markdown table.

    python -m benchmarks.compare --n 100 --seeds 0 1 2 --out runs/compare-n100
    python -m benchmarks.compare --methods supervised kdgan --seeds 0 --smoke --out /tmp/c

Each (method, seed) is one `kdgan.train` run in OUT/<method>-s<seed>/; a finished run is
read back (refused if it ran with other --set values), an interrupted one resumes from its
checkpoint, one that diverges is said and left out of the table. Pretrained players are
shared through OUT/pretrain (kdgan and kdgan-wo-gm share theirs). Writes OUT/runs.parquet (a
row per run) and OUT/table.md: test accuracy at the best validation epoch and at the last
epoch, mean +- std over seeds, and each method's gain over `supervised` paired by seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from analysis.tables import compare_markdown
from benchmarks.core import check_methods, parser, run_or_read, write_runs, write_table
from kdgan.config import Config, ConfigError, parse_overrides
from kdgan.data import DataError
from kdgan.spaces import SMOKE

COLUMNS = ("method", "n", "seed", "val_acc", "test_acc", "best_epoch", "last_val_acc", "last_test_acc",
           "epochs_run", "wall_s", "pretrain_s")


def run_all(methods: list[str], seeds: list[int], base: dict, out: Path) -> pd.DataFrame:
    """A row per finished (method, seed); a run that diverged is said and left out."""
    rows = []
    for method in methods:
        for seed in seeds:
            cfg = Config.from_dict({**base, "method": method, "seed": seed,
                                    "pretrain_cache": str(out / "pretrain")})
            summary, status = run_or_read(cfg, out / f"{method}-s{seed}", f"{method} seed {seed}",
                                          checked=set(base) - {"dataset"})
            if status != "DONE":
                continue
            print(f"{method:12s} seed {seed}: test {100 * summary['test_acc']:.2f} at epoch "
                  f"{summary['best_epoch']} (val {100 * summary['val_acc']:.2f}), last "
                  f"{100 * summary['last_test_acc']:.2f}, {summary['wall_s']:.0f}s", flush=True)
            rows.append({k: summary[k] for k in COLUMNS})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = parser("benchmarks.compare", __doc__, seeds=[0, 1, 2],
               methods=["supervised", "kdgan", "nagan", "kdgan-wo-gm"])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--dataset", default="mnist")
    args = p.parse_args(argv)
    base: dict = {"dataset": args.dataset, "n": args.n, **(SMOKE if args.smoke else {})}
    try:
        base.update(parse_overrides(args.set))
        check_methods(args.methods)
        for method in args.methods:  # every error before the first run starts
            Config.from_dict({**base, "method": method})
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        runs = run_all(args.methods, args.seeds, base, args.out)
    except DataError as e:  # a saved run of another configuration
        print(f"error: {e}", file=sys.stderr)
        return 2
    if runs.empty:
        print("error: no run finished", file=sys.stderr)
        return 3
    write_runs(args.out, runs)
    write_table(args.out, compare_markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
