"""Re-run a search's best configurations and the defaults on fresh seeds, paired by seed.

    python -m kdgan.confirm ~/kdgan_results/kdgan-mnist --top 3 --seeds 5
    python -m kdgan.confirm ~/kdgan_results/kdgan-mnist-smoke --top 2 --seeds 2 --smoke

A search picks the trial with the best validation accuracy, on one seed: where seed-to-seed
spread exceeds what the hyperparameters change, that pick is mostly noise (and its score is
optimistic). This re-runs the K best finished trials (TERMINATED, highest best_val_acc) and
the defaults on M seeds no trial used, the same M for every configuration, and compares each
with the defaults seed by seed (kdgan.stats: a 95% Student t interval on the per-seed
differences). The verdict is on validation accuracy; test accuracy is reported beside it.

- The searched fields are the Config fields whose values differ between the experiment's
  trials (any status), with alpha, beta and gamma always among them; seed and the fields that
  say where a run executes (pretrain_cache, threads, device) never are.
- The defaults: the trials' common settings with every searched field left to Config (its
  default, or the dataset kind's default that Config.from_dict gives it).
- The fresh seeds: the M integers after the largest seed any trial used (a trial with a
  `population` column P used seeds s .. s + P - 1).
- Each configuration runs as one seed population over the M fresh seeds (kdgan.population:
  member k is exactly the single run of its seed), a kdgan.train run in
  EXPERIMENT/confirm/<label>/seeds<first>-<last>/, sharing pretrained players through the
  trials' pretrain_cache where that folder exists, else EXPERIMENT/pretrain (pretraining
  does not depend on alpha, beta or gamma). A finished run (summary.json) is read back, an
  interrupted one resumes from its checkpoint at its last epoch, a member whose losses
  become non-finite is recorded as DIVERGED and the others go on (a configuration all of
  whose members diverge is recorded in diverged.json): kill it and run the same command
  again. Single runs per seed left by earlier versions (<label>/s<seed>/) are read back.
- --smoke applies kdgan.spaces.SMOKE to every run; its runs and outputs are kept apart
  (confirm-smoke/, confirm-smoke.parquet, confirm-smoke.md), never mixed with full ones.

Writes EXPERIMENT/confirm.parquet (a row per configuration per seed, each configuration's
statistics on its rows) and EXPERIMENT/confirm.md (the table, the seeds, the command).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from kdgan import stats
from kdgan.config import Config, ConfigError
from kdgan.io import CheckpointError, atomic_write
from kdgan.results import CONFIG_FIELDS, PARTS, TRIALS, ResultsError, read_trials
from kdgan.spaces import SMOKE

LEVEL = 0.95
ALWAYS_SEARCHED = ("alpha", "beta", "gamma")
# How and where a run executes, or its seed: never a searched hyperparameter.
NOT_SEARCHED = ("seed", "pretrain_cache", "threads", "device", "population",
                "population_backend")
DEFAULTS = "defaults"
DONE, DIVERGED = "DONE", "DIVERGED"
SUMMARY, DIVERGED_FILE = "summary.json", "diverged.json"


class ConfirmError(ValueError):
    """Bad input (arguments, an experiment folder, a stale run); the message says which."""


@dataclass
class Candidate:
    label: str               # folder name under confirm/: 'defaults' or 'trial-<trial_id>'
    rank: int                # 1 = the search's best; 0 = the defaults
    trial_id: str
    search_val_acc: float    # the trial's best_val_acc in the search (NaN for the defaults)
    values: dict[str, Any]   # the Config fields this configuration sets


@dataclass
class Plan:
    experiment: Path
    trials: int              # rows in the experiment
    finished: int            # TERMINATED rows
    searched: list[str]
    used_seeds: list[int]
    seeds: list[int]
    candidates: list[Candidate]   # the defaults first
    smoke: bool
    pretrain_cache: str
    threads: int = 0  # torch CPU threads of the runs (0: torch's default)

    @property
    def out(self) -> Path:
        return self.experiment / ("confirm-smoke" if self.smoke else "confirm")

    def config(self, candidate: Candidate) -> Config:
        """The candidate as one seed population over the fresh seeds."""
        return Config.from_dict({**candidate.values, "seed": self.seeds[0],
                                 "population": len(self.seeds),
                                 "pretrain_cache": self.pretrain_cache, "threads": self.threads,
                                 **(SMOKE if self.smoke else {})})

    def run_dir(self, candidate: Candidate) -> Path:
        return self.out / candidate.label / f"seeds{self.seeds[0]}-{self.seeds[-1]}"

    def seed_dir(self, candidate: Candidate, seed: int) -> Path:
        """Where earlier versions ran each seed alone (read back when every seed is there:
        the single run of a seed is exactly that member of the population)."""
        return self.out / candidate.label / f"s{seed}"


# ---------------------------------------------------------------------------- the plan
def load_trials(experiment: Path) -> pd.DataFrame:
    """The experiment's trial rows: its parts when it has them (up to date), else trials.parquet."""
    if not experiment.is_dir():
        raise ConfirmError(f"{experiment}: no such folder (expected a kdgan.tune experiment, "
                           "<storage>/<name>)")
    parts = experiment / PARTS / "trials"
    has_parts = parts.is_dir() and any(parts.glob("*.parquet"))
    if not has_parts and not (experiment / TRIALS).exists():
        raise ConfirmError(f"{experiment}: not a kdgan.tune experiment (no {TRIALS} and no "
                           f"{PARTS}/trials/)")
    try:
        trials = read_trials(experiment) if has_parts else pd.read_parquet(experiment / TRIALS)
    except ResultsError as e:
        raise ConfirmError(str(e)) from None
    except (OSError, ValueError) as e:  # pyarrow's errors for a damaged file are of these kinds
        raise ConfirmError(f"{experiment / TRIALS}: not a readable Parquet file "
                           f"({type(e).__name__})") from None
    if trials.empty:
        raise ConfirmError(f"{experiment}: no trials yet; nothing to confirm")
    missing = [c for c in ("trial_id", "status", "best_val_acc", *ALWAYS_SEARCHED) if c not in trials]
    if missing:
        raise ConfirmError(f"{experiment}: its trials have no {', '.join(missing)} column "
                           "(expected kdgan.tune's trials)")
    return trials


def searched_fields(trials: pd.DataFrame) -> list[str]:
    """The Config fields whose values differ between trials, alpha, beta and gamma always
    (seed and NOT_SEARCHED never), in Config's order."""
    varying = {c for c in CONFIG_FIELDS if c in trials and trials[c].nunique(dropna=False) > 1}
    return [c for c in CONFIG_FIELDS
            if (c in varying or c in ALWAYS_SEARCHED) and c not in NOT_SEARCHED]


def used_seeds(trials: pd.DataFrame) -> list[int]:
    """Every seed a trial used: s, or s .. s + population - 1 where a population column says so."""
    seeds = trials["seed"] if "seed" in trials else pd.Series([Config().seed] * len(trials))
    sizes = trials["population"] if "population" in trials else pd.Series([1] * len(trials))
    used: set[int] = set()
    for seed, size in zip(seeds, sizes):
        if pd.isna(seed):
            continue
        size = 1 if pd.isna(size) else max(1, int(size))
        used.update(range(int(seed), int(seed) + size))
    return sorted(used)


def fresh_seeds(used: list[int], m: int) -> list[int]:
    """The m integers after the largest used seed (0 .. m-1 when none was recorded)."""
    start = max(used) + 1 if used else 0
    return list(range(start, start + m))


def _native(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # numpy scalars: Config wants int


def _common(trials: pd.DataFrame, searched: list[str]) -> dict[str, Any]:
    """The settings every trial shares (the first row's, for the fields not searched)."""
    first = trials.iloc[0]
    return {c: _native(first[c]) for c in CONFIG_FIELDS
            if c in trials and c not in searched and c not in NOT_SEARCHED
            and not pd.isna(first[c])}


def _label(trial_id: str) -> str:
    return "trial-" + re.sub(r"[^A-Za-z0-9._-]", "_", trial_id)


def make_plan(experiment: Path, top: int, m: int, smoke: bool = False, threads: int = 0) -> Plan:
    """Everything the confirmation will run, checked: a bad input raises ConfirmError here,
    before any run starts."""
    if top < 1:
        raise ConfirmError(f"--top {top}: expected an integer >= 1")
    if m < 1:
        raise ConfirmError(f"--seeds {m}: expected an integer >= 1 (the number of fresh seeds)")
    experiment = Path(experiment).expanduser()
    trials = load_trials(experiment)
    finished = trials[(trials["status"] == "TERMINATED") & trials["best_val_acc"].notna()]
    if finished.empty:
        counts = trials["status"].value_counts()
        said = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        raise ConfirmError(f"{experiment}: no finished trial (TERMINATED) among its {len(trials)} "
                           f"trials ({said}); nothing to confirm")
    if top > len(finished):
        raise ConfirmError(f"--top {top}: the experiment has {len(finished)} finished trial"
                           f"{'s' if len(finished) != 1 else ''} (TERMINATED)")
    searched = searched_fields(trials)
    common = _common(trials, searched)
    ranked = finished.sort_values(["best_val_acc", "trial_id"], ascending=[False, True]).head(top)
    candidates = [Candidate(DEFAULTS, 0, "", math.nan, common)]
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        values = {**common, **{c: _native(row[c]) for c in searched
                               if c in row and not pd.isna(row[c])}}
        candidates.append(Candidate(_label(str(row["trial_id"])), rank, str(row["trial_id"]),
                                    float(row["best_val_acc"]), values))
    used = used_seeds(trials)
    cache = [str(v) for v in trials.get("pretrain_cache", pd.Series(dtype=str)).dropna().unique()]
    pretrain = (cache[0] if len(cache) == 1 and cache[0] and Path(cache[0]).expanduser().is_dir()
                else str(experiment / "pretrain"))
    plan = Plan(experiment, len(trials), len(finished), searched, used, fresh_seeds(used, m),
                candidates, smoke, pretrain, threads)
    for c in candidates:  # every configuration valid before the first run
        try:
            plan.config(c)
        except ConfigError as e:
            raise ConfirmError(f"{c.label}: {e}") from None
    return plan


# ---------------------------------------------------------------------------- the runs
def _train(cfg: Config, run_dir: Path) -> dict:
    from kdgan.train import train

    return train(cfg, run_dir)  # a line per epoch: a population of many seeds takes a while


def check_saved(plan: Plan) -> None:
    """A finished run in a folder of the plan must be the run the plan asks for (e.g. not one
    made before the search went on and another trial took a rank's place, or by another budget)."""
    from kdgan.game import effective_config
    from kdgan.run import RUNTIME_FIELDS

    for c in plan.candidates:
        asked = effective_config(plan.config(c)).to_dict()
        places = [(plan.run_dir(c), {})] + [(plan.seed_dir(c, s), {"seed": s, "population": 1})
                                             for s in plan.seeds]
        for run_dir, change in places:
            for name in (SUMMARY, DIVERGED_FILE):
                if not (run_dir / name).exists():
                    continue
                saved = json.loads((run_dir / name).read_text()).get("config") or {}
                saved.setdefault("population", 1)
                stale = {k: (saved.get(k), v) for k, v in {**asked, **change}.items()
                         if k not in RUNTIME_FIELDS and saved.get(k, Config().to_dict().get(k)) != v}
                if stale:
                    raise ConfirmError(f"{run_dir / name} was made with other settings than asked "
                                       f"for: {stale} (saved, asked); move it away to run it again")


def run_or_read(cfg: Config, run_dir: Path,
                runner: Callable[[Config, Path], dict]) -> tuple[dict, str, bool]:
    """(summary, DONE or DIVERGED, whether it ran now). A recorded outcome is read back."""
    if (run_dir / SUMMARY).exists():
        return json.loads((run_dir / SUMMARY).read_text()), DONE, False
    if (run_dir / DIVERGED_FILE).exists():
        return json.loads((run_dir / DIVERGED_FILE).read_text()), DIVERGED, False
    from kdgan.game import NonFiniteLossError, effective_config

    try:
        summary = runner(cfg, run_dir)
        # a finished population's checkpoint is its whole game, every member's (about 1 GB
        # for 10 members at MNIST's sizes) and nothing reads it again: summary.json,
        # history.parquet and model.pt (each member's selected model) are what is kept
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
        return summary, DONE, True
    except NonFiniteLossError as e:  # recorded, so that a second invocation reads it back
        record = {"error": str(e), "config": effective_config(cfg).to_dict()}  # as summary.json's
        atomic_write(run_dir / DIVERGED_FILE, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
        return record, DIVERGED, True


def _members(plan: Plan, c: Candidate, runner: Callable[[Config, Path], dict]
             ) -> tuple[list[dict], bool]:
    """Each fresh seed's outcome for candidate c ({seed, status, val_acc, ...}) and whether
    anything ran now. Runs c as one population; single runs of every seed left by earlier
    versions are read back instead (each is exactly its member)."""
    singles = [plan.seed_dir(c, s) / SUMMARY for s in plan.seeds]
    if all(p.exists() for p in singles):
        return [{**json.loads(p.read_text()), "status": DONE} for p in singles], False
    summary, status, ran = run_or_read(plan.config(c), plan.run_dir(c), runner)
    if status == DIVERGED:  # every member diverged
        return [{"seed": s, "status": DIVERGED, "error": summary.get("error", "")}
                for s in plan.seeds], ran
    members = []
    for m in summary["members"]:
        diverged = m["status"] == "diverged"
        members.append({**m, "status": DIVERGED if diverged else DONE,
                        "error": m.get("reason", "") if diverged else "",
                        "wall_s": summary.get("wall_s", math.nan) / len(plan.seeds)})
    return members, ran


def run_all(plan: Plan, runner: Callable[[Config, Path], dict] | None = None) -> pd.DataFrame:
    """A row per (configuration, seed): each configuration runs as one seed population over
    the fresh seeds (their pretrained players are made once, then shared); a progress line
    per configuration, and per epoch while it trains."""
    rows = []
    for i, c in enumerate(plan.candidates, start=1):
        t0 = time.perf_counter()
        cfg = plan.config(c)
        print(f"[{i}/{len(plan.candidates)}] {c.label}: seeds {plan.seeds[0]}..{plan.seeds[-1]} "
              f"in {plan.run_dir(c)}", flush=True)
        members, ran = _members(plan, c, runner or _train)
        for m in members:
            status = m["status"]
            row = {"label": c.label, "rank": c.rank, "trial_id": c.trial_id, "seed": int(m["seed"]),
                   **{k: getattr(cfg, k) for k in plan.searched},
                   "search_val_acc": c.search_val_acc, "status": status}
            for key in ("val_acc", "test_acc", "last_test_acc", "best_epoch", "wall_s"):
                row[key] = m.get(key, math.nan) if status == DONE else math.nan
            row["error"] = m.get("error", "") if status == DIVERGED else ""
            row["run_dir"] = str(plan.run_dir(c))
            rows.append(row)
        done = [r for r in rows if r["label"] == c.label and r["status"] == DONE]
        val = sum(r["val_acc"] for r in done) / max(1, len(done))
        how = f"{time.perf_counter() - t0:.1f}s" if ran else "read back"
        print(f"[{i}/{len(plan.candidates)}] {c.label}: {len(done)}/{len(members)} seeds done, "
              f"mean val {100 * val:.2f} | {how}", flush=True)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- statistics
STAT_COLUMNS = ("pairs", "val_diff", "val_low", "val_high", "test_diff", "test_low", "test_high",
                "verdict")


def summarise(runs: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """A row per configuration: finished seeds, mean and std of val and test accuracy, and the
    paired difference to the defaults with its interval (NaN and no verdict for the defaults)."""
    acc = runs.pivot(index="seed", columns="label", values=["val_acc", "test_acc"])
    out = []
    for label, g in runs.groupby("label", sort=False):
        first = g.iloc[0]
        row = {"label": label, "rank": int(first["rank"]), "trial_id": first["trial_id"],
               "search_val_acc": first["search_val_acc"], "seeds": int((g["status"] == DONE).sum()),
               "val_mean": g["val_acc"].mean(), "val_std": g["val_acc"].std(ddof=1),
               "test_mean": g["test_acc"].mean(), "test_std": g["test_acc"].std(ddof=1)}
        row.update(dict.fromkeys(STAT_COLUMNS, math.nan))
        row["verdict"] = ""
        if label != DEFAULTS:
            for split in ("val", "test"):
                d, lo, hi, n = stats.paired_interval(acc[f"{split}_acc"][label].tolist(),
                                                     acc[f"{split}_acc"][DEFAULTS].tolist(), level)
                row.update({f"{split}_diff": d, f"{split}_low": lo, f"{split}_high": hi, "pairs": n})
            row["verdict"] = stats.verdict(row["val_low"], row["val_high"])
        out.append(row)
    return pd.DataFrame(out).sort_values("rank").reset_index(drop=True)


def _pct(x: float, sign: str = "") -> str:
    return "-" if pd.isna(x) else f"{100 * x:{sign}.2f}"


def _pm(mean: float, std: float) -> str:
    return _pct(mean) if pd.isna(std) else f"{_pct(mean)} +- {_pct(std)}"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(plan: Plan, runs: pd.DataFrame, table: pd.DataFrame, command: str) -> str:
    """confirm.md: what ran, the table, and how to read it."""
    hp = plan.searched
    budget = f"smoke (kdgan.spaces.SMOKE: {json.dumps(SMOKE)})" if plan.smoke else "the trials' own"
    values = runs.drop_duplicates("label").set_index("label")
    lines = [f"# Confirmation of {plan.experiment.name}", "",
             f"Command: `{command}`", "",
             f"- Experiment: `{plan.experiment}`: {plan.trials} trials, {plan.finished} finished "
             f"(TERMINATED); the {len(plan.candidates) - 1} with the best validation accuracy and "
             "the defaults re-run.",
             f"- Searched fields (the Config fields that differ between trials, alpha, beta and "
             f"gamma always): {', '.join(hp)}.",
             f"- Seeds: {', '.join(map(str, plan.seeds))}, the same for every configuration; the "
             f"search used {', '.join(map(str, plan.used_seeds)) or 'none'}.",
             f"- Budget: {budget}; "
             f"pretrained players: `{plan.pretrain_cache}`.", "",
             f"| configuration | {' | '.join(hp)} | search val | seeds | val | test | "
             f"val - defaults [{LEVEL:.0%} CI] | test - defaults [{LEVEL:.0%} CI] | verdict |",
             "|---|" + "---:|" * (len(hp) + 6) + "---|"]
    for r in table.itertuples():
        cells = [_value(values.loc[r.label, k]) for k in hp]
        fewer = f", n={r.pairs:.0f}" if r.pairs < len(plan.seeds) else ""  # some diverged
        diffs = [f"{_pct(getattr(r, f'{s}_diff'), '+')} [{_pct(getattr(r, f'{s}_low'), '+')}, "
                 f"{_pct(getattr(r, f'{s}_high'), '+')}]{fewer}" if r.label != DEFAULTS else "-"
                 for s in ("val", "test")]
        lines.append(f"| {r.label} | {' | '.join(cells)} | {_pct(r.search_val_acc)} | {r.seeds} | "
                     f"{_pm(r.val_mean, r.val_std)} | {_pm(r.test_mean, r.test_std)} | "
                     f"{' | '.join(diffs)} | {r.verdict or '(the reference)'} |")
    lines += ["",
              "Accuracies in percent, at each run's best validation epoch: mean +- std over the "
              "seeds that finished. 'search val' is the trial's score in the search (on its seeds, "
              "one or a population's mean: the score it was picked by, so optimistic).",
              f"A difference is the configuration's accuracy minus the defaults', seed by seed, "
              f"averaged over the n seeds both finished (n = {len(plan.seeds)} unless one diverged); its "
              f"interval is the paired Student t interval mean +- t({(1 + LEVEL) / 2:.3f}, n - 1) "
              "sd / sqrt(n) (kdgan.stats).",
              "The verdict reads the validation difference: better than the defaults (interval "
              "above 0), worse than the defaults (below 0), not distinguishable from the defaults "
              "(it holds 0). Test accuracy is reported beside it, never used for a choice."]
    diverged = runs[runs["status"] == DIVERGED]
    if not diverged.empty:
        lines += ["", "Diverged runs (left out of the means and the pairs):"]
        lines += [f"- {r.label} seed {r.seed}: {r.error}" for r in diverged.itertuples()]
    return "\n".join(lines) + "\n"


def write_outputs(plan: Plan, runs: pd.DataFrame, table: pd.DataFrame, text: str) -> list[Path]:
    """EXPERIMENT/confirm.parquet (runs, with their configuration's statistics) and confirm.md."""
    frame = runs.merge(table[["label", *STAT_COLUMNS]], on="label", how="left")
    parquet, md = (plan.experiment / f"{plan.out.name}{ext}" for ext in (".parquet", ".md"))
    atomic_write(parquet, lambda tmp: frame.to_parquet(tmp, index=False))
    atomic_write(md, lambda tmp: tmp.write_text(text))
    return [parquet, md]


# ---------------------------------------------------------------------------- the CLI
def _run_errors() -> tuple[type[Exception], ...]:
    """What a run raises for a user's error (a data file, a damaged checkpoint): one line, as
    kdgan.train says them."""
    from kdgan.data import DataError

    return ConfigError, DataError, CheckpointError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m kdgan.confirm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", type=Path, help="a kdgan.tune experiment folder, <storage>/<name>")
    p.add_argument("--top", type=int, default=3, help="how many of the best trials (default 3)")
    p.add_argument("--seeds", type=int, default=5, help="how many fresh seeds (default 5)")
    p.add_argument("--smoke", action="store_true",
                   help="the tiny budget kdgan.spaces.SMOKE on every run")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: torch's own choice). On a machine busy "
                        "with other work, 1 is much faster than threads that wait for each other")
    args = p.parse_args(argv)
    command = shlex.join(["python", "-m", "kdgan.confirm", *argv])
    try:
        if args.threads < 0:
            raise ConfirmError(f"--threads {args.threads}: expected an integer >= 0")
        plan = make_plan(args.experiment, args.top, args.seeds, args.smoke, args.threads)
        check_saved(plan)
        print(f"confirming {len(plan.candidates) - 1} trial(s) and the defaults of {plan.experiment} "
              f"on seeds {', '.join(map(str, plan.seeds))}; searched: {', '.join(plan.searched)}",
              flush=True)
        runs = run_all(plan)
    except ConfirmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _run_errors() as e:  # evaluated only when a run raises: no torch for bad input
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what finished is kept; an interrupted run resumes
        print("interrupted; run the same command to resume", file=sys.stderr)
        return 130
    table = summarise(runs)
    text = markdown(plan, runs, table, command)
    parquet, md = write_outputs(plan, runs, table, text)
    print(f"\n{text}\nruns: {parquet}; table: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
