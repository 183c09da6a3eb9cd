"""Every figure and table that stored results support, as files and a report.md.

    python -m analysis.report ~/kdgan_results/kdgan-mnist --runs runs/compare-n100 --out docs/report

EXPERIMENT_DIR: kdgan.tune experiments (trials.parquet, epochs.parquet). --runs: directories
written by `python -m benchmarks.compare` or `benchmarks.table1` (runs.parquet and the runs'
history.parquet). --tag-runs: directories written by `benchmarks.table2` (Table 2).
Writes PNG and PDF figures, tables as Markdown and LaTeX, and report.md, which embeds them
with the numbers behind them and says which figures it skipped and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis import plots, tables
from analysis.load import (AnalysisError, load_experiments, load_histories, load_runs,
                           read_parquet)

SEARCHABLE = ("alpha", "beta", "gamma")


def param_importance(trials: pd.DataFrame, params: list[str], metric: str = "best_val_acc") -> pd.Series:
    """PED-ANOVA importances (Optuna; fANOVA's random forest would need scikit-learn) of the
    searched parameters for the objective, from the stored trials alone."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = trials[trials[metric].notna()]
    dists = {p: optuna.distributions.FloatDistribution(float(done[p].min()), float(done[p].max()),
                                                       log=p in plots.LOG_PARAMS) for p in params}
    study = optuna.create_study(direction="maximize")
    for _, r in done.iterrows():
        study.add_trial(optuna.trial.create_trial(params={p: float(r[p]) for p in params},
                                                  distributions=dists, value=float(r[metric])))
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    return pd.Series(optuna.importance.get_param_importances(study, evaluator=evaluator))


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


def build_report(experiments: list[Path], runs: list[Path], out: Path,
                 tag_runs: list[Path] | None = None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    md = ["# kdgan report", ""]
    skipped: list[str] = []
    if experiments:
        trials, epochs = load_experiments(*experiments)
        md += ["## Searches", ""]
        for name, t in trials.groupby("experiment"):
            counts = ", ".join(f"{k} {v}" for k, v in t["status"].value_counts().items())
            md.append(f"- **{name}**: {len(t)} trials ({counts})")
            bad = t[t["status"].isin(["ERROR", "DIVERGED"])]
            for _, r in bad.iterrows():
                md.append(f"  - {r['trial_id']} {r['status']}: {r.get('error', '')}")
            done = t[t["best_val_acc"].notna()]
            if len(done):
                b = done.loc[done["best_val_acc"].idxmax()]
                cfg = ", ".join(f"{p} = {b[p]:.4g}" for p in SEARCHABLE if p in b)
                md.append(f"  - best: {cfg}; validation {100 * b['best_val_acc']:.2f}, test at that "
                          f"epoch {100 * b['test_acc']:.2f} (epoch {int(b['best_epoch'])})")
        md.append("")
        searched = [p for p in SEARCHABLE if p in trials and trials[p].nunique() > 1]
        for p in SEARCHABLE:
            if p not in searched:
                skipped.append(f"sensitivity to {p}: {p} was not searched (one value in the trials)")
        if searched and len(trials) >= 3:
            by = next((c for c in ("n", "dataset") if c in trials and trials[c].nunique() > 1), None)
            fig = plots.sensitivity(trials[trials["best_val_acc"].notna()], searched, by=by)
            md += ["## Sensitivity (paper Figures 4, 5)", "",
                   "Each point a trial's best validation accuracy; lines: kernel-smoothed trend "
                   "of validation (solid) and test (dashed) accuracy with a 90% bootstrap band.", "",
                   f"![sensitivity]({_save(fig, out, 'sensitivity')})", ""]
        elif searched:
            skipped.append("sensitivity: fewer than 3 trials")
        if len(searched) >= 2 and trials["best_val_acc"].notna().sum() >= 8:
            imp = param_importance(trials, searched)
            md += ["## Hyperparameter importance (PED-ANOVA)", "",
                   "| parameter | importance |", "|---|---|"]
            md += [f"| {k} | {v:.3f} |" for k, v in imp.items()] + [""]
            md += [f"![importance]({_save(plots.importance(imp), out, 'importance')})", ""]
        else:
            skipped.append("hyperparameter importance: needs >= 2 searched parameters and >= 8 finished trials")
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
    args = p.parse_args(argv)
    plt.switch_backend("Agg")  # files only, whatever the environment's default
    if not args.experiments and not args.runs and not args.tag_runs:
        print("error: give at least one experiment directory, --runs or --tag-runs directory",
              file=sys.stderr)
        return 2
    try:
        build_report([e.expanduser() for e in args.experiments], [r.expanduser() for r in args.runs], args.out,
                     [r.expanduser() for r in args.tag_runs])
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
