"""Plots as functions from a DataFrame to a matplotlib Figure. No file I/O here."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.population import LOG_PARAMS  # noqa: F401  (searched on a log scale)


def trend(x: np.ndarray, y: np.ndarray, log: bool, points: int = 100, bandwidth: float = 0.15,
          boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Gaussian kernel regression of y on x (on log10 x when `log`), with a 90% bootstrap band.

    bandwidth is a fraction of the x range. Returns columns x, mean, lo, hi on a grid.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log else True)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise ValueError(f"a trend needs at least 2 points, got {len(x)}")
    u = np.log10(x) if log else x
    grid = np.linspace(u.min(), u.max(), points)
    h = bandwidth * max(u.max() - u.min(), 1e-12)

    def fit(uu: np.ndarray, yy: np.ndarray) -> np.ndarray:
        w = np.exp(-0.5 * ((grid[:, None] - uu[None, :]) / h) ** 2)  # (points, n)
        return (w * yy).sum(1) / np.maximum(w.sum(1), 1e-300)

    mean = fit(u, y)
    rng = np.random.default_rng(seed)
    draws = np.stack([fit(u[i], y[i]) for i in (rng.integers(0, len(u), len(u)) for _ in range(boot))])
    lo, hi = np.nanpercentile(draws, [5, 95], axis=0)
    return pd.DataFrame({"x": 10**grid if log else grid, "mean": mean, "lo": lo, "hi": hi})


def sensitivity(trials: pd.DataFrame, params: list[str], by: str | None = None,
                metric: str = "best_val_acc", test_metric: str | None = "test_acc",
                se: str | None = "best_val_acc_se", noise: float | None = None) -> Figure:
    """Paper Figures 4 and 5: accuracy against each hyperparameter, one panel each; every trial
    a point (validation: its members' mean) with +-1 standard error over its members as an
    error bar (column `se`, where finite), a smoothed trend with its 90% band, and the test
    trend dashed. `noise` (accuracy, not percent): the typical standard error of a trial's
    mean from seed noise (`population.seed_noise`'s se), drawn as a grey band of +-noise
    around the best trial's mean (gid 'seed-noise'); trials inside it are within one such
    standard error of the best."""
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.6), squeeze=False)
    groups = [(None, trials)] if by is None else list(trials.groupby(by))
    for ax, param in zip(axes[0], params):
        log = param in LOG_PARAMS
        for i, (name, g) in enumerate(groups):
            color = f"C{i}"
            label = "" if name is None else f"{by}={name} "
            ax.scatter(g[param], 100 * g[metric], s=14, alpha=0.6, color=color, label=f"{label}trials (val)")
            if se and se in g and np.isfinite(g[se]).any():
                e = g[np.isfinite(g[se])]
                ax.errorbar(e[param], 100 * e[metric], yerr=100 * e[se], fmt="none", ecolor=color,
                            elinewidth=0.8, alpha=0.6, label=f"{label}+-1 SE over members")
            if len(g) >= 3:
                t = trend(g[param], 100 * g[metric], log)
                ax.plot(t["x"], t["mean"], color=color, label=f"{label}trend (val)")
                ax.fill_between(t["x"], t["lo"], t["hi"], color=color, alpha=0.15)
                if test_metric and test_metric in g:
                    tt = trend(g[param], 100 * g[test_metric], log)
                    ax.plot(tt["x"], tt["mean"], color=color, ls="--", label=f"{label}trend (test)")
        if noise is not None and np.isfinite(noise) and trials[metric].notna().any():
            best = 100 * trials[metric].max()
            ax.axhspan(best - 100 * noise, best + 100 * noise, color="0.5", alpha=0.2, lw=0,
                       gid="seed-noise", label="best trial +- seed-noise SE")
        ax.set_xscale("log" if log else "linear")
        ax.set_xlabel(param)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def curves(history: pd.DataFrame, metric: str = "val/acc", by: str = "method") -> Figure:
    """Paper Figure 3: accuracy per epoch, mean over seeds with a +-1 std band, per method."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, g) in enumerate(history.groupby(by, sort=False)):
        stats = g.groupby("epoch")[metric].agg(["mean", "std", "count"])
        mean, std = 100 * stats["mean"], 100 * stats["std"].fillna(0)
        ax.plot(stats.index, mean, color=f"C{i}", label=f"{name} (n={int(stats['count'].max())})")
        ax.fill_between(stats.index, mean - std, mean + std, color=f"C{i}", alpha=0.15)
    ax.set_xlabel("epoch (0 = after pretraining)")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def trial_curves(epochs: pd.DataFrame, trial_ids: list[str], metric: str = "val/acc") -> Figure:
    """`metric` per epoch of the given trials, each the mean over its members
    (load.trial_epochs' rows: one per trial and epoch), labelled with its trial_id and,
    with more than one, the number of members."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for trial_id in trial_ids:
        c = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        n = int(c["members"].max()) if "members" in c and len(c) else 1
        ax.plot(c["epoch"], 100 * c[metric], label=trial_id + (f" (mean of {n})" if n > 1 else ""))
    ax.set_xlabel("epoch (0 = after pretraining)")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance(importances: pd.Series | pd.DataFrame, title: str = "") -> Figure:
    """Horizontal bars of hyperparameter importances (they sum to 1): a Series, or
    population.importance_interval's frame (importance, lo, hi), whose finite lo and hi
    become error bars (the 95% bootstrap interval over members)."""
    frame = importances if isinstance(importances, pd.DataFrame) else importances.to_frame("importance")
    s = frame.sort_values("importance")
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(s)))
    ax.barh(s.index, s["importance"], color="C0")
    interval = {"lo", "hi"} <= set(s) and np.isfinite(s[["lo", "hi"]].to_numpy(float)).all()
    if interval:  # the interval itself, lo to hi (a percentile interval need not hold the bar's end)
        ax.errorbar((s["lo"] + s["hi"]) / 2, s.index, xerr=(s["hi"] - s["lo"]) / 2, fmt="none",
                    ecolor="k", capsize=3)
    ax.set_xlabel("importance" + (" (95% bootstrap interval over members)" if interval else ""))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def grad_variance(history: pd.DataFrame, by: str = "method") -> Figure:
    """Paper Figure 7: per epoch, the variance (trace of the covariance over the epoch's
    steps) of the classifier's gradient from the adversarial term and from the distillation
    term, per method (log axis), mean over seeds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, g) in enumerate(history.groupby(by, sort=False)):
        for col, ls in (("grad/adv_var", "-"), ("grad/distill_var", "--")):
            if col in g and g[col].notna().any():
                m = g.groupby("epoch")[col].mean().dropna()
                ax.plot(m.index, m.values, color=f"C{i}", ls=ls, label=f"{name}: {col.split('/')[1].split('_')[0]}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("gradient variance (trace)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
