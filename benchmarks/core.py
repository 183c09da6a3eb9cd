"""What every benchmark shares: a run trained into its folder or read back from it, the choice
of a grid point on validation, the common command line, and outputs written atomically.
The tables themselves are analysis.tables'."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from kdgan.config import METHODS, Config, ConfigError
from kdgan.data import DataError
from kdgan.game import NonFiniteLossError, effective_config
from kdgan.io import FolderInUse, atomic_write
from kdgan.train import train

SUMMARY = "summary.json"
DONE, DIVERGED, BUSY = "DONE", "DIVERGED", "BUSY"


def write_runs(out: Path, runs: pd.DataFrame) -> Path:
    """OUT/runs.parquet, a row per run."""
    path = out / "runs.parquet"
    atomic_write(path, lambda tmp: runs.to_parquet(tmp, index=False))
    return path


def write_text(path: Path, text: str) -> Path:
    """A Markdown (or JSON) output, written atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def write_table(out: Path, text: str, said: str = "") -> None:
    """OUT/table.md, printed, and where it and OUT/runs.parquet are."""
    write_text(out / "table.md", text)
    print("\n" + text)
    print(f"{said}runs: {out / 'runs.parquet'}; table: {out / 'table.md'}")


def run_config(run_dir: Path, threads: int = 0) -> Config:
    """The configuration of a finished kdgan.train run (RUN_DIR/summary.json), with `threads`."""
    summary_file = Path(run_dir) / SUMMARY
    if not summary_file.exists():
        raise DataError(f"{run_dir}: no summary.json (expected a finished run directory)")
    summary = json.loads(summary_file.read_text())
    if "config" not in summary:
        raise DataError(f"{summary_file}: no 'config' (expected a kdgan.train run, not e.g. knn)")
    return Config.from_dict({**summary["config"], "threads": threads})


def tag(overrides: dict) -> str:
    """A grid point as a name: 'default', or key=value pairs sorted by key."""
    return "default" if not overrides else "-".join(
        f"{k}={v}" if isinstance(v, str) else f"{k}={v:g}" for k, v in sorted(overrides.items()))


def _train(cfg: Config, run_dir: Path) -> dict:
    return train(cfg, run_dir, quiet=True)


def run_or_read(cfg: Config, run_dir: Path, label: str, checked: Iterable[str] = (),
                run: Callable[[Config, Path], dict] | None = None) -> tuple[dict, str]:
    """The summary of `cfg`'s run in `run_dir` and its status, DONE, DIVERGED or BUSY.

    A finished run (RUN_DIR/summary.json) is read back, unless its saved config differs from
    `cfg` in a `checked` key (the hyperparameters the folder's name does not pin): that is an
    error, not a silent mix of configurations. Otherwise `run` makes it (default: kdgan.train,
    which resumes an interrupted run from its checkpoint); a run whose losses become non-finite is DIVERGED,
    its reason under 'error', and the benchmark goes on. A run another process is training
    (kdgan.train holds its folder) is BUSY, left to that process: several invocations of one
    benchmark can share its runs, each taking those the others are not on.
    """
    summary_file = run_dir / SUMMARY
    if summary_file.exists():
        summary = json.loads(summary_file.read_text())
        saved = summary.get("config")
        asked = effective_config(cfg)  # a method's fixed settings (teacher: epochs 0) as saved
        stale = {k: (saved.get(k), getattr(asked, k)) for k in sorted(checked)
                 if saved is not None and saved.get(k) != getattr(asked, k)}
        if stale:  # e.g. the validation grid chose another point since this run was made
            raise DataError(f"{run_dir} holds a {cfg.method} run with other hyperparameters than "
                            f"asked for: {stale} (saved, asked); move it away to run the "
                            "configuration asked for")
        return summary, "DONE"
    print(f"== {label} -> {run_dir}", flush=True)
    try:
        return (run or _train)(cfg, run_dir), DONE
    except NonFiniteLossError as e:
        print(f"   diverged: {e}", flush=True)
        return {"error": str(e)}, DIVERGED
    except FolderInUse as e:
        print(f"   left to another process: {e}", flush=True)
        return {"error": str(e)}, BUSY


POPULATION_CHOICES = ("auto", "on", "off")


def population_wanted(choice: str, base: dict) -> bool:
    """--population: 'on', 'off', or 'auto': on where runs go to a CUDA device (where one
    vectorised population beats its members run one by one), off on a CPU, where it is no
    faster (docs/RESULTS.md)."""
    if choice != "auto":
        return choice == "on"
    from kdgan.run import resolve_device

    return resolve_device(str(base.get("device", Config.device))).type == "cuda"


def prefill(jobs: list[tuple[Config, Path]], label: str) -> None:
    """Train the unfinished runs of `jobs` (one configuration, consecutive seeds) as one seed
    population, each member's outputs written into its own run folder exactly as its single
    run would write them; `run_or_read` then reads them back. Runs that are not such a group
    are left to run one by one, and so is a member that diverges (it is recorded then)."""
    todo = [(cfg, d) for cfg, d in jobs if not (d / SUMMARY).exists()]
    if len(todo) < 2:
        return
    first = todo[0][0]
    seeds = [cfg.seed for cfg, _ in todo]
    if seeds != list(range(first.seed, first.seed + len(todo))) or any(
            cfg.replace(seed=first.seed) != first for cfg, _ in todo):
        return
    work = todo[0][1].parent / f".population-{todo[0][1].name}-{len(todo)}"
    print(f"== {label} seeds {seeds[0]}..{seeds[-1]} as one population -> {work}", flush=True)
    try:
        train(first.replace(population=len(todo)), work, quiet=True, members_to=[d for _, d in todo])
    except NonFiniteLossError as e:
        print(f"   every member diverged: {e}", flush=True)
        return
    except FolderInUse as e:  # another process holds a member (or the group): one by one then
        print(f"   not as a population: {e}", flush=True)
        return
    (work / "checkpoint.pt").unlink(missing_ok=True)  # each member's folder has what it needs


def select(grid: list[dict], seeds: list[int],
           run: Callable[[dict, int], dict],
           prefill_point: Callable[[dict], None] | None = None
           ) -> tuple[dict, list[tuple[dict, float, list[dict]]]]:
    """The grid point with the best mean validation accuracy over `seeds`, and every point
    with its mean and its runs' rows. `run(overrides, seed)` gives a row with `status` and
    `val_acc`; a point with a run that did not finish scores -inf. Of equal means the earlier
    point wins (the defaults, listed first, win a tie). A grid of one point runs nothing.
    prefill_point(overrides), when given, trains a point's seeds together first (`prefill`).
    A run another process is training (BUSY) leaves the choice unmade: once the other points
    have run, a DataError says so (run again when that process is done)."""
    if len(grid) == 1:
        return grid[0], []
    scored = []
    for overrides in grid:
        if prefill_point:
            prefill_point(overrides)
        rows = [run(overrides, seed) for seed in seeds]
        vals = [r["val_acc"] for r in rows if r["status"] == DONE]
        scored.append((overrides, float(np.mean(vals)) if len(vals) == len(rows) else float("-inf"), rows))
    busy = [r for _, _, rows in scored for r in rows if r["status"] == BUSY]
    if busy:
        raise DataError(f"the validation grid cannot choose yet: {len(busy)} of its runs are being "
                        "trained by another process (the 'left to another process' lines above); "
                        "run this again once it is done")
    return max(scored, key=lambda point: point[1])[0], scored


def check_methods(methods: Iterable[str], also: tuple[str, ...] = ()) -> None:
    """Every --methods entry is a kdgan method (or one of `also`)."""
    for method in methods:
        if method not in METHODS and method not in also:
            expected = " or ".join([*also, f"some of {', '.join(METHODS)}"])
            raise ConfigError(f"--methods {method!r}: expected {expected}")


def parser(prog: str, doc: str | None, seeds: list[int], methods: Iterable[str],
           population: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark takes: --seeds, --methods, --set, --smoke, --out."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=seeds)
    p.add_argument("--methods", nargs="+", default=list(methods))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field for every run (repeatable)")
    p.add_argument("--smoke", action="store_true", help="tiny budget, to check the pipeline")
    if population:
        p.add_argument("--population", choices=POPULATION_CHOICES, default="auto",
                       help="train a configuration's seeds as one seed population (kdgan."
                            "population; the same numbers as one run per seed): on, off, or auto "
                            "(default: on where runs go to a GPU, off on a CPU, where it is no "
                            "faster)")
    p.add_argument("--out", type=Path, required=True)
    return p
