"""Seed populations: how large each searched hyperparameter's effect is against the seed noise.

A trial trains P members on the same seeds as every other trial of its search (paired by
seed); its objective is the members' mean validation accuracy. From the members alone:

- `seed_noise`: the pooled within-trial standard deviation of the members' validation
  accuracy, sqrt(sum_t (m_t - 1) s_t^2 / sum_t (m_t - 1)), and the standard error of a
  trial's mean it implies, pooled sd / sqrt(P) (P the typical number of members).
- `effects`: per searched parameter, the trials split into thirds by the parameter (on
  log10 for a log-uniform one); the spread of the thirds' mean objective (best third minus
  worst third) against a permutation test, and the high-minus-low third difference per seed
  with its paired t-interval (kdgan.stats.paired_interval).
- `importance_interval`: PED-ANOVA importances with a 95% percentile interval from a
  bootstrap over members (seed positions resampled jointly for every trial).

Reads nothing and draws nothing: DataFrames in, DataFrames out.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd

from kdgan.stats import paired_interval

# Hyperparameters searched on a log scale in the paper (Figure 4b, 4c).
LOG_PARAMS = {"beta", "gamma", "cls_lr", "tch_lr", "dis_lr", "pretrain_lr", "distill_temperature"}
PERMUTATIONS = 2000
RESAMPLES = 200
LEVEL = 0.95


def is_log(values: pd.Series, param: str | None = None) -> bool:
    """Whether a parameter is analysed on log10: a known log-scale one, or positive values
    spanning more than 2 decades (a log-uniform search)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if param in LOG_PARAMS and (v > 0).all():
        return True
    return bool(len(v) and (v > 0).all() and v.max() / v.min() > 100)


def seed_noise(matrix: pd.DataFrame | np.ndarray) -> dict:
    """The seed noise of a (trial x member) table of validation accuracies: `sd`, the pooled
    within-trial standard deviation over members (ddof 1 per trial); `members`, the median
    number of members per trial (P); `se`, sd / sqrt(P), the typical standard error of a
    trial's mean; `df`, the degrees of freedom pooled. sd and se are NaN with one member."""
    a = np.asarray(matrix, float)
    m = np.isfinite(a).sum(1)
    members = int(np.median(m[m > 0])) if (m > 0).any() else 0
    ok = m >= 2
    df = int((m[ok] - 1).sum())
    if df == 0:
        return {"sd": math.nan, "se": math.nan, "members": members, "df": 0}
    ss = np.nansum((a[ok] - np.nanmean(a[ok], 1, keepdims=True)) ** 2)
    sd = math.sqrt(ss / df)
    return {"sd": sd, "se": sd / math.sqrt(members), "members": members, "df": df}


def thirds(values: pd.Series, log: bool) -> np.ndarray:
    """0, 1, 2: the low, middle and high third of the trials by the value (on log10 when
    `log`), by rank (ties in the order given), sizes as equal as they can be."""
    u = np.log10(np.asarray(values, float)) if log else np.asarray(values, float)
    labels = np.empty(len(u), int)
    for k, idx in enumerate(np.array_split(np.argsort(u, kind="stable"), 3)):
        labels[idx] = k
    return labels


def aligned(matrix: pd.DataFrame, trials: pd.DataFrame) -> np.ndarray:
    """The rows of a `member_matrix` for `trials`, in their order (NaN for a trial without
    members), as an array (trials x member positions)."""
    keys = [k for k in ("experiment", "trial_id") if k in matrix.index.names and k in trials]
    index = (pd.MultiIndex.from_frame(trials[keys]) if len(keys) > 1
             else pd.Index(trials[keys[0]]))
    if len(keys) < len(matrix.index.names):  # one experiment's trials without the column
        matrix = matrix.reset_index().drop_duplicates(keys).set_index(keys)
        matrix = matrix.drop(columns=[c for c in ("experiment", "trial_id") if c in matrix])
    return matrix.reindex(index).to_numpy(float)


def _row_means(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row (or column) of NaN only
        return np.nanmean(a, 1)


def _spreads(y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Best-third mean minus worst-third mean, for each row of `labels` (rows: assignments)."""
    labels = np.atleast_2d(labels)
    means = np.stack([((labels == k) * y).sum(1) / (labels == k).sum(1) for k in range(3)], 1)
    return means.max(1) - means.min(1)


def effects(trials: pd.DataFrame, matrix: pd.DataFrame, params: list[str],
            metric: str = "best_val_acc", permutations: int = PERMUTATIONS, alpha: float = 0.05,
            seed: int = 0) -> pd.DataFrame:
    """Per parameter, whether its effect on the objective is larger than the noise.

    `trials`: one search's finished trials (trial_id, the parameters, `metric`); `matrix`:
    their members' validation accuracy, a row per trial_id, a column per seed position.
    Columns: parameter, log, trials, members, low/mid/high (the thirds' mean objective),
    spread (best third - worst third), p (permutation p-value of the spread: the share of
    `permutations` random reassignments of the parameter's values to the trials whose spread
    is at least as large, counting the observed one), larger (p < alpha), and diff, lo, hi,
    seeds: the high-minus-low third difference of the members' mean, per seed, with its
    paired `LEVEL` t-interval over seeds (NaN with one member per trial)."""
    done = trials[trials[metric].notna()].reset_index(drop=True)
    y = done[metric].to_numpy(float)
    members = aligned(matrix, done)
    per_trial = int(np.median(np.isfinite(members).sum(1))) if len(members) else 0
    rng = np.random.default_rng(seed)
    rows = []
    for p in params:
        log = is_log(done[p], p)
        labels = thirds(done[p], log)
        spread = float(_spreads(y, labels)[0])
        shuffled = rng.permuted(np.tile(labels, (permutations, 1)), axis=1)
        pval = (1 + int((_spreads(y, shuffled) >= spread - 1e-12).sum())) / (permutations + 1)
        diff = lo = hi = math.nan
        n = 0
        if per_trial >= 2:
            low, high = _row_means(members[labels == 0].T), _row_means(members[labels == 2].T)
            diff, lo, hi, n = paired_interval(list(high), list(low), level=LEVEL)
        rows.append({"parameter": p, "log": log, "trials": len(done), "members": per_trial,
                     **{k: float(y[labels == i].mean()) for i, k in enumerate(("low", "mid", "high"))},
                     "spread": spread, "p": pval, "larger": pval < alpha,
                     "diff": diff, "lo": lo, "hi": hi, "seeds": n})
    return pd.DataFrame(rows)


def param_importance(trials: pd.DataFrame, params: list[str], metric: str = "best_val_acc",
                     values: np.ndarray | None = None) -> pd.Series:
    """PED-ANOVA importances (Optuna; fANOVA's random forest would need scikit-learn) of the
    searched parameters for the objective, from the stored trials alone; `values` (one per
    trial, NaN to leave a trial out) replaces the trials' `metric`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    y = trials[metric].to_numpy(float) if values is None else np.asarray(values, float)
    done, y = trials[np.isfinite(y)], y[np.isfinite(y)]
    dists = {p: optuna.distributions.FloatDistribution(float(done[p].min()), float(done[p].max()),
                                                       log=p in LOG_PARAMS) for p in params}
    study = optuna.create_study(direction="maximize")
    for (_, r), v in zip(done.iterrows(), y):
        study.add_trial(optuna.trial.create_trial(params={p: float(r[p]) for p in params},
                                                  distributions=dists, value=float(v)))
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    return pd.Series(optuna.importance.get_param_importances(study, evaluator=evaluator))


def importance_interval(trials: pd.DataFrame, matrix: pd.DataFrame, params: list[str],
                        metric: str = "best_val_acc", resamples: int = RESAMPLES,
                        max_seconds: float = 30.0, seed: int = 0) -> pd.DataFrame:
    """PED-ANOVA importances with a bootstrap over members: each resample draws P seed
    positions with replacement, the same for every trial (the seeds are shared), takes each
    trial's mean over the drawn members and recomputes the importances. Rows: parameters;
    columns importance (on the trials' `metric`), lo and hi (the 2.5 and 97.5 percentiles of
    the resamples; NaN with one member per trial, where no resample differs), resamples
    (how many ran: fewer than asked when `max_seconds` ran out)."""
    done = trials[trials[metric].notna()].reset_index(drop=True)
    point = param_importance(done, params, metric)
    a = aligned(matrix, done)
    per_trial = int(np.median(np.isfinite(a).sum(1))) if len(a) else 0
    out = pd.DataFrame({"importance": point, "lo": math.nan, "hi": math.nan, "resamples": 0})
    if per_trial < 2:
        return out
    rng = np.random.default_rng(seed)
    draws, start = [], time.monotonic()
    for _ in range(resamples):
        idx = rng.integers(0, a.shape[1], a.shape[1])
        y = _row_means(a[:, idx])
        draws.append(param_importance(done, params, metric, values=y).reindex(out.index))
        if time.monotonic() - start > max_seconds:
            break
    d = pd.DataFrame(draws)
    out["lo"], out["hi"] = d.quantile(0.025), d.quantile(0.975)
    out["resamples"] = len(d)
    return out
