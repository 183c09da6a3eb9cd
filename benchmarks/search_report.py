"""Figures of a kdgan.tune experiment: overhead, shared pretraining, best configuration, and
(given two experiments) best validation accuracy after k trials, e.g. TPE against random.

    python -m benchmarks.search_report ~/kdgan_results/kdgan-mnist
    python -m benchmarks.search_report ~/kdgan_results/kdgan-mnist ~/kdgan_results/kdgan-mnist-random \
        --plot docs/figures/tpe_vs_random.png

Reads only what the search stored: trials.parquet, epochs.parquet, search.json, optuna.db,
and confirm.parquet where `python -m kdgan.confirm` ran. Given two experiments confirmed on
the same fresh seeds, it compares their picks there: each search's best trial (rank 1, chosen
on the search's own seeds) against the other's, paired seed by seed (95% t interval), on
validation and on test accuracy. That, not the best score inside each search, says whether
one sampler found the better configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from kdgan import stats
from kdgan.results import EPOCHS, TRIALS


def load(experiment: Path) -> dict:
    trials = pd.read_parquet(experiment / TRIALS)
    epochs = pd.read_parquet(experiment / EPOCHS)
    invocations = json.loads((experiment / "search.json").read_text())
    storage = f"sqlite:///{experiment / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    confirmed = experiment / "confirm.parquet"
    return {"name": experiment.name, "trials": trials, "epochs": epochs,
            "invocations": invocations, "study": study,
            "confirm": pd.read_parquet(confirmed) if confirmed.exists() else None}


def confirmed_picks(a: dict, b: dict) -> str:
    """The two searches' best trials (rank 1) on the fresh seeds both confirmations ran:
    a's minus b's, paired by seed. Empty when either has no confirmation or no shared seed."""
    if a["confirm"] is None or b["confirm"] is None:
        return ""
    picks = []
    for x in (a, b):
        c = x["confirm"]
        picks.append(c[(c["rank"] == 1) & (c["status"] == "DONE")].set_index("seed"))
    seeds = sorted(set(picks[0].index) & set(picks[1].index))
    if not seeds:
        return ""
    lines = [f"### The picks on the same fresh seeds ({len(seeds)} seeds: {seeds[0]}..{seeds[-1]})", "",
             f"| | {a['name']} | {b['name']} | difference (paired, 95% t interval) | verdict |",
             "|---|---|---|---|---|"]
    for split in ("val", "test"):
        x, y = (p.loc[seeds, f"{split}_acc"].to_numpy() for p in picks)
        mean, low, high, n = stats.paired_interval(x, y)
        lines.append(f"| {split} accuracy (%) | {100 * x.mean():.2f} | {100 * y.mean():.2f} | "
                     f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}] | "
                     f"{stats.verdict(low, high, reference=b['name'] + ' pick')} |")
    trial = [p["trial_id"].iloc[0] for p in picks]
    lines += ["", f"Picks: {a['name']} trial {trial[0]}, {b['name']} trial {trial[1]} (each search's "
              "best trial on its own seeds)."]
    return "\n".join(lines)


def best_after_k(study: optuna.Study) -> pd.Series:
    """Best objective among the first k trials Optuna suggested, for k = 1..N (finished only
    count; a pruned or failed trial adds nothing but still uses up its place in the budget)."""
    values = [t.value if t.state == optuna.trial.TrialState.COMPLETE else np.nan
              for t in sorted(study.trials, key=lambda t: t.number)]
    return pd.Series(values, index=range(1, len(values) + 1)).cummax()


def describe(exp: dict) -> str:
    t, e, inv = exp["trials"], exp["epochs"], exp["invocations"]
    wall = sum(i["wall_s"] for i in inv)
    last = inv[-1]  # trials that can run at once: the flag, the CPUs, the number of trials
    conc = min(last["concurrency"] or len(t), int(last["cluster_cpus"] // last["cpus_per_trial"]), len(t))
    trial_sum = t["trial_s"].sum()
    ideal = trial_sum / conc
    lines = [f"## {exp['name']}",
             f"- trials: {len(t)} ({', '.join(f'{k} {v}' for k, v in t['status'].value_counts().items())}),"
             f" {len(inv)} invocation(s), wall {wall:.0f} s",
             f"- sum of the trials' own times {trial_sum:.0f} s / concurrency {conc} = {ideal:.0f} s;"
             f" search wall {wall:.0f} s: overhead {100 * (wall / ideal - 1):+.1f}%"]
    if all("ray_init_s" in i for i in inv):
        init = sum(i["ray_init_s"] for i in inv)
        lines.append(f"- of which starting Ray {init:.1f} s; without it the overhead is "
                     f"{100 * ((wall - init) / ideal - 1):+.1f}%")
    # epoch 0's time is the pretraining (or the wait and the read), a row per run: one per
    # trial, or one per member of a trial's seed population
    first = e[e["epoch"] == 0].reset_index(drop=True)
    pre = first["time/epoch_s"]
    what = "member run" if "seed" in first and first["seed"].nunique() > 1 else "trial"
    if len(pre) > 1:
        cached = (first["pretrain/from_cache"] == 1) if "pretrain/from_cache" in first else pre < pre.max()
        computed = pre[~cached]
        per_run = computed.mean()
        lines.append(f"- pretraining: computed by {len(computed)} {what}(s) in {per_run:.1f} s, read from the "
                     f"shared cache by {int(cached.sum())} {what}s in {pre[cached].median():.2f} s (median; "
                     f"a run that waited on the lock counts its wait): saved "
                     f"{cached.sum() * per_run - pre[cached].sum():.0f} s of trial time")
    done = t[t["best_val_acc"].notna()]
    if not done.empty:
        b = done.loc[done["best_val_acc"].idxmax()]
        searched = [c for c in ("alpha", "beta", "gamma") if c in b]
        lines.append(f"- best trial {b['trial_id']}: " + ", ".join(f"{c} = {b[c]:.4g}" for c in searched)
                     + (f"; validation {100 * b['best_val_acc']:.2f} +- {100 * b['best_val_acc_se']:.2f}, "
                        f"test {100 * b['test_acc']:.2f} +- {100 * b['test_acc_se']:.2f} (means +- "
                        f"standard errors over {int(b['members'])} seeds)"
                        if b.get("members", 1) > 1 else
                        f"; validation {100 * b['best_val_acc']:.2f}, test {100 * b['test_acc']:.2f}"
                        f" (epoch {int(b['best_epoch'])})"))
        lines.append(f"- validation accuracy over finished trials: median {100 * done['best_val_acc'].median():.2f},"
                     f" min {100 * done['best_val_acc'].min():.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.search_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="+", type=Path)
    p.add_argument("--plot", type=Path, help="PNG of best validation accuracy after k trials")
    args = p.parse_args(argv)
    exps = [load(e.expanduser()) for e in args.experiments]
    for exp in exps:
        print(describe(exp) + "\n")
    if len(exps) > 1:
        curves = pd.DataFrame({f"{x['name']} ({x['invocations'][-1]['sampler']})": best_after_k(x["study"])
                               for x in exps})
        ks = [k for k in (4, 8, 12, 16, 20, 24, 32, 48, 64) if k <= len(curves)]
        print("best validation accuracy (%) after k trials\n")
        print("| k | " + " | ".join(curves.columns) + " |")
        print("|---|" + "---|" * len(curves.columns))
        for k in ks:
            print(f"| {k} | " + " | ".join(f"{100 * curves.loc[k, c]:.2f}" for c in curves.columns) + " |")
        text = confirmed_picks(exps[0], exps[1])
        if text:
            print("\n" + text)
        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
            for c in curves.columns:
                ax.step(curves.index, 100 * curves[c], where="post", label=c)
            ax.set_xlabel("trials (in the order the sampler suggested them)")
            ax.set_ylabel("best validation accuracy so far (%)")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(args.plot, dpi=120)
            print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
