"""Every figure and table that stored results support, as files and a report.md.

    python -m analysis.report ~/kdgan_results/kdgan-mnist --runs runs/compare-n100 --out docs/report

EXPERIMENT_DIR: kdgan.tune experiments (trials.parquet, epochs.parquet and, with seed
populations, members.parquet; older ones read as one member per trial). --runs: directories
written by `python -m benchmarks.compare` or `benchmarks.table1` (runs.parquet and the runs'
history.parquet). --tag-runs: directories written by `benchmarks.table2` (Table 2).
Writes PNG and PDF figures, tables as Markdown and LaTeX, and report.md, which embeds them
with the numbers behind them and says which figures it skipped and why.

For searches it reports, besides the best trials: the seed noise (pooled within-trial std
of the members' validation accuracy, and the SE of a trial's mean it implies); sensitivity
plots with each trial's mean +- its SE over members and a band of +-1 seed-noise SE around
the best trial; per searched parameter whether its effect is larger than the noise
(`analysis.population.effects`: a permutation test on the thirds of the parameter, and the
high-minus-low third difference paired over seeds); PED-ANOVA importances with a 95%
bootstrap interval over members (`analysis.population.importance_interval`); and the
training curves of the best trials, averaged over members.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis import plots, population, tables
from analysis.load import (AnalysisError, load_experiments, load_histories, load_members,
                           load_runs, member_matrix, read_parquet, trial_epochs)

param_importance = population.param_importance  # where the notebook and older code find it
SEARCHABLE = ("alpha", "beta", "gamma")
BEST_CURVES = 5  # trials in "training curves of the best trials"


def _save(fig, out: Path, name: str) -> str:
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=120)
    plt.close(fig)
    return f"{name}.png"


def _table_section(out: Path, stem: str, title: str, caption: str, markdown: str,
                   latex: str) -> list[str]:
    """Write OUT/<stem>.md and .tex; the report's lines for the table."""
    (out / f"{stem}.md").write_text(markdown)
    (out / f"{stem}.tex").write_text(latex)
    return [f"## {title}", "", f"{caption} Also in {stem}.md and {stem}.tex.", "", markdown]


def _pp(x: float, digits: int = 2) -> str:
    """Accuracy (a fraction) in percent, '-' when not finite."""
    return f"{100 * x:.{digits}f}" if math.isfinite(x) else "-"


def _p(p: float, eq: str = "") -> str:
    """A permutation p-value: '< 0.001' below that (the smallest is 1 / (permutations + 1))."""
    return "< 0.001" if p < 0.001 else f"{eq}{p:.3f}"


def _se(row: pd.Series, column: str) -> str:
    """' +- SE' (percent) of a trial's number, '' where it has none (one member)."""
    return f" +- {_pp(row[column])}" if math.isfinite(row[column]) else ""


def _of_members(row: pd.Series) -> str:
    return f"; means +- SE over {int(row['members'])} members" if row["members"] > 1 else ""


def _effects_section(trials: pd.DataFrame, matrix: pd.DataFrame, searched: list[str]) -> list[str]:
    """Per search, the table of `population.effects` and how it was computed."""
    md = ["## Effects against the seed noise", "",
          "Trials split into thirds by each parameter (on log10 where it is log-uniform: positive "
          "values over more than 2 decades); *spread* = the best third's mean objective minus the "
          "worst third's; *p* = the share of "
          f"{population.PERMUTATIONS} random reassignments of the parameter's values to the trials "
          "(the observed one counted) whose spread is at least as large. The same best-minus-worst "
          "choice is made in every reassignment, so picking the thirds on the data does not bias "
          "the test, and the null holds both the seed noise and the scatter from the other "
          "parameters: *larger than the noise* (p < 0.05) means the effect exceeds the seed noise "
          "and cannot come from the other parameters by chance (assuming trials sampled "
          "independently of one another, as in a random search; TPE only approximately). "
          "*high - low (paired)*: per seed, the members' mean over the high third minus over the "
          "low third, with a paired 95% t-interval over the seeds (kdgan.stats.paired_interval); "
          "it holds only the seed noise, so an imbalance of the other parameters between the two "
          "thirds shows in it too, and the verdict does not rest on it.", ""]
    for name, t in trials.groupby("experiment"):
        done = t[t["best_val_acc"].notna()]
        params = [p for p in searched if p in done and done[p].nunique() > 1]
        if len(done) < 6 or not params:
            md += [f"- **{name}**: fewer than 6 finished trials or no parameter searched: not tested", ""]
            continue
        eff = population.effects(done, matrix, params)
        per_trial = int(eff["members"].iloc[0])
        md += [f"**{name}** ({len(done)} finished trials, {per_trial} member(s) each)", "",
               "| parameter | scale | low / mid / high third (val %) | spread | p | "
               "high - low (paired over seeds, 95%) | larger than the noise? |",
               "|---|---|---|---|---|---|---|"]
        for r in eff.itertuples():
            paired = (f"{100 * r.diff:+.2f} [{100 * r.lo:+.2f}, {100 * r.hi:+.2f}] ({r.seeds} seeds)"
                      if math.isfinite(r.lo) else "- (one seed per trial)")
            md.append(f"| {r.parameter} | {'log' if r.log else 'linear'} | {_pp(r.low)} / {_pp(r.mid)} / "
                      f"{_pp(r.high)} | {_pp(r.spread)} | {_p(r.p)} | {paired} | "
                      f"{'**yes**' if r.larger else 'no'} |")
        md.append("")
        noise = "the seed noise" if per_trial >= 2 else "the trial-to-trial scatter (unpaired fallback)"
        for r in eff.itertuples():
            verdict = f"larger than {noise}" if r.larger else f"not distinguishable from {noise}"
            md.append(f"- {name}: the effect of {r.parameter} is {verdict} (permutation p {_p(r.p, '= ')})")
        if per_trial < 2:
            md.append(f"- {name}: one seed per trial, so no effect can be told from the seed noise on "
                      "its own (no pairing by seed, no measure of it); the unpaired fallback, the "
                      "permutation test, compares each effect with the whole trial-to-trial scatter, "
                      "which holds the seed noise and the other parameters' effects")
        md.append("")
    return md


def _importance_section(trials: pd.DataFrame, matrix: pd.DataFrame, searched: list[str],
                        out: Path, resamples: int) -> list[str]:
    imp = population.importance_interval(trials, matrix, searched, resamples=resamples)
    boot = int(imp["resamples"].max())
    md = ["## Hyperparameter importance (PED-ANOVA)", ""]
    if boot:
        md += [f"Importance on the trials' objective (the members' mean); 95% interval: the 2.5 and "
               f"97.5 percentiles over {boot} bootstrap resamples of the members (the seed positions "
               "drawn with replacement, the same for every trial since the seeds are shared; each "
               "trial's mean and the importances recomputed). It measures the seed noise only, "
               "not the choice of trials.", "",
               "| parameter | importance | 95% interval |", "|---|---|---|"]
        md += [f"| {k} | {r['importance']:.3f} | [{r['lo']:.3f}, {r['hi']:.3f}] |" for k, r in imp.iterrows()]
    else:
        md += ["One member per trial: no interval over seeds is possible (no resample of the "
               "members differs from the data).", "", "| parameter | importance |", "|---|---|"]
        md += [f"| {k} | {r['importance']:.3f} |" for k, r in imp.iterrows()]
    return md + ["", f"![importance]({_save(plots.importance(imp), out, 'importance')})", ""]


def build_report(experiments: list[Path], runs: list[Path], out: Path,
                 tag_runs: list[Path] | None = None, resamples: int = population.RESAMPLES) -> str:
    out.mkdir(parents=True, exist_ok=True)
    md = ["# kdgan report", ""]
    skipped: list[str] = []
    if experiments:
        trials, epochs = load_experiments(*experiments)
        matrix = member_matrix(load_members(*experiments))
        noise = population.seed_noise(matrix)
        md += ["## Searches", ""]
        for name, t in trials.groupby("experiment"):
            counts = ", ".join(f"{k} {v}" for k, v in t["status"].value_counts().items())
            population_size = int(t["population"].max())
            md.append(f"- **{name}**: {len(t)} trials ({counts}), " + (
                f"a population of {population_size} members per trial (the same seeds in every trial)"
                if population_size > 1 else "one member (seed) per trial"))
            bad = t[t["status"].isin(["ERROR", "DIVERGED"])]
            for _, r in bad.iterrows():
                md.append(f"  - {r['trial_id']} {r['status']}: {r.get('error', '')}")
            done = t[t["best_val_acc"].notna()]
            if len(done):
                b = done.loc[done["best_val_acc"].idxmax()]
                cfg = ", ".join(f"{p} = {b[p]:.4g}" for p in SEARCHABLE if p in b)
                md.append(f"  - best: {cfg}; validation {_pp(b['best_val_acc'])}{_se(b, 'best_val_acc_se')}, "
                          f"test at that epoch {_pp(b['test_acc'])}{_se(b, 'test_acc_se')} "
                          f"(epoch {int(b['best_epoch'])}{_of_members(b)})")
        if math.isfinite(noise["sd"]):
            md.append(f"- seed noise: pooled within-trial std of the members' validation accuracy "
                      f"{_pp(noise['sd'])} points ({noise['df']} degrees of freedom); SE of a trial's "
                      f"mean of {noise['members']} members (std / sqrt({noise['members']})): {_pp(noise['se'])}")
            members = load_members(*experiments)
            per_seed = members.groupby("seed")["val_acc"].mean()
            md.append("- the members' mean validation accuracy per seed over every trial: " + ", ".join(
                f"seed {int(k)} {_pp(v)}" for k, v in per_seed.items())
                + " (what the seeds share, which a comparison between trials on the same seeds cancels)")
        else:
            md.append("- seed noise: one member per trial, so it cannot be measured")
        md.append("")
        searched = [p for p in SEARCHABLE if p in trials and trials[p].nunique() > 1]
        for p in SEARCHABLE:
            if p not in searched:
                skipped.append(f"sensitivity to {p}: {p} was not searched (one value in the trials)")
        if searched and len(trials) >= 3:
            by = next((c for c in ("n", "dataset") if c in trials and trials[c].nunique() > 1), None)
            fig = plots.sensitivity(trials[trials["best_val_acc"].notna()], searched, by=by, noise=noise["se"])
            caption = ("Each point a trial's best validation accuracy (with several members: their mean, "
                       "with an error bar of +-1 standard error over the members, std(ddof=1) / sqrt(m)); "
                       "lines: kernel-smoothed trend of validation (solid) and test (dashed) accuracy "
                       "with a 90% bootstrap band.")
            if math.isfinite(noise["se"]):
                caption += (" Grey band: the best trial's mean +- the seed noise of a trial's mean, "
                            "i.e. the pooled within-trial std of the members' validation accuracy "
                            f"divided by sqrt(P) ({_pp(noise['se'])} points, P = {noise['members']}).")
            md += ["## Sensitivity (paper Figures 4, 5)", "", caption, "",
                   f"![sensitivity]({_save(fig, out, 'sensitivity')})", ""]
            md += _effects_section(trials, matrix, searched)
        elif searched:
            skipped.append("sensitivity: fewer than 3 trials")
        if len(searched) >= 2 and trials["best_val_acc"].notna().sum() >= 8:
            md += _importance_section(trials, matrix, searched, out, resamples)
        else:
            skipped.append("hyperparameter importance: needs >= 2 searched parameters and >= 8 finished trials")
        done = trials[trials["best_val_acc"].notna()].nlargest(BEST_CURVES, "best_val_acc")
        if len(done):
            per_trial = trial_epochs(epochs)
            if trials["experiment"].nunique() > 1:  # trial ids may repeat across experiments
                per_trial = per_trial.assign(trial_id=per_trial["experiment"] + "/" + per_trial["trial_id"])
                ids = list(done["experiment"] + "/" + done["trial_id"])
            else:
                ids = list(done["trial_id"])
            fig = plots.trial_curves(per_trial, ids)
            md += ["## Training curves of the best trials", "",
                   f"Validation accuracy per epoch of the {len(ids)} trials with the best objective, "
                   "each the mean over its members at that epoch.", "",
                   f"![trial curves]({_save(fig, out, 'trial_curves')})", ""]
    else:
        skipped.append("sensitivity and importance: no experiment directory given")
    if runs:
        frame = load_runs(*[r / "runs.parquet" for r in runs])
        table = tables.method_table(frame)
        md += _table_section(out, "table1", "Methods (paper Table 1, MNIST)",
                             "Test accuracy (%) at the best validation epoch and at the last epoch, "
                             "mean +- std over seeds; the paper's figure and our gap to it.",
                             tables.to_markdown(table), tables.to_latex(table))
        histories = pd.concat([load_histories(r) for r in runs], ignore_index=True)
        md += ["## Training curves (paper Figure 3)", "",
               f"![curves]({_save(plots.curves(histories), out, 'curves')})", ""]
        if "grad/adv_var" in histories and histories["grad/adv_var"].notna().any():
            g = histories.dropna(subset=["grad/adv_var"])
            summary = g.groupby("method")[["grad/adv_var", "grad/distill_var"]].median()
            md += ["## Gradient variance (paper Figure 7)", "",
                   "Median over epochs of the variance of the classifier's gradient from each term:", "",
                   "| method | adversarial | distillation |", "|---|---|---|"]
            md += [f"| {m} | {r['grad/adv_var']:.3g} | {r['grad/distill_var']:.3g} |" for m, r in summary.iterrows()]
            md += ["", f"![gradient variance]({_save(plots.grad_variance(g), out, 'grad_variance')})", ""]
        else:
            skipped.append("gradient variance (paper Figure 7): no run logged it (set log_grad_variance=true)")
    else:
        skipped.append("Table 1, training curves and gradient variance: no --runs directory given")
    if tag_runs:
        frame = pd.concat([read_parquet(r / "runs.parquet", ("label_set", "method", "seed"))
                           for r in tag_runs], ignore_index=True)
        table = tables.tag_table(frame)
        md += _table_section(out, "table2", "Tag recommendation (paper Table 2)",
                             "Test P@3, P@5, F@3, F@5, MAP and MRR at the best validation epoch, "
                             "mean +- std over seeds, per label set, with the paper's figures.",
                             tables.tag_to_markdown(table), tables.tag_to_latex(table))
    else:
        skipped.append("Table 2 (tag recommendation): no --tag-runs directory given")
    md += ["## Skipped", ""] + [f"- {s}" for s in skipped] + [""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="*", type=Path)
    p.add_argument("--runs", nargs="*", type=Path, default=[])
    p.add_argument("--tag-runs", nargs="*", type=Path, default=[],
                   help="directories written by benchmarks.table2 (Table 2)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--resamples", type=int, default=population.RESAMPLES,
                   help="bootstrap resamples of the members for the importance intervals")
    args = p.parse_args(argv)
    plt.switch_backend("Agg")  # files only, whatever the environment's default
    if not args.experiments and not args.runs and not args.tag_runs:
        print("error: give at least one experiment directory, --runs or --tag-runs directory",
              file=sys.stderr)
        return 2
    try:
        build_report([e.expanduser() for e in args.experiments], [r.expanduser() for r in args.runs], args.out,
                     [r.expanduser() for r in args.tag_runs], resamples=args.resamples)
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
