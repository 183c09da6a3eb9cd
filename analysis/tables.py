"""Tables of results beside the paper's, as Markdown and LaTeX: every table the report and the
benchmarks write (a DataFrame of runs in, text out; no file is read or written here)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdgan.metrics import RANKING

# Paper Table 1, MNIST, "average accuracy over 10 runs" (percent) by n.
PAPER_TABLE1_MNIST = {
    "codis": {100: 74.02, 1000: 95.77, 10000: 98.89},
    "distn": {100: 68.34, 1000: 93.97, 10000: 98.79},
    "noisy": {100: 66.53, 1000: 93.45, 10000: 98.58},
    "mimic": {100: 67.35, 1000: 93.78, 10000: 98.65},
    "nagan": {100: 64.90, 1000: 93.60, 10000: 98.95},
    "kdgan": {100: 77.95, 1000: 96.42, 10000: 99.25},
}


def _std(values: pd.Series) -> float:
    """The standard deviation over runs (ddof 1); NaN for a single run."""
    return values.std(ddof=1) if len(values) > 1 else float("nan")


def _pm(mean: float, std: float, digits: int = 2, sign: str = "") -> str:
    """'mean +- std', or the mean alone where there is no std (one run); sign '+' signs the mean."""
    shown = f"{mean:{sign}.{digits}f}"
    return shown if pd.isna(std) else f"{shown} +- {std:.{digits}f}"


def method_table(runs: pd.DataFrame, paper: dict | None = None) -> pd.DataFrame:
    """Per method and n: runs, mean and std (percent) of the test accuracy at the best
    validation epoch and at the last epoch, the paper's figure and the gap to it, the mean
    of last - selected; and the validation accuracy and wall time where the runs have them."""
    paper = PAPER_TABLE1_MNIST if paper is None else paper
    rows = []
    for (method, n), g in runs.groupby(["method", "n"], sort=False):
        sel, last = 100 * g["test_acc"], 100 * g["last_test_acc"]
        ref = paper.get(method, {}).get(int(n))
        row = {"method": method, "n": int(n), "runs": len(g),
               "selected_mean": sel.mean(), "selected_std": _std(sel),
               "last_mean": last.mean(), "last_std": _std(last),
               "paper": ref, "gap": sel.mean() - ref if ref is not None else None,
               "drift": (last - sel).mean()}
        if "val_acc" in g:
            val = 100 * g["val_acc"]
            row.update(val_mean=val.mean(), val_std=_std(val))
        if "wall_s" in g:
            row["wall_s"] = g["wall_s"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _cells(r: pd.Series) -> list[str]:
    return [r["method"], f"{r['n']:,}", str(r["runs"]), _pm(r["selected_mean"], r["selected_std"]),
            _pm(r["last_mean"], r["last_std"]), "-" if pd.isna(r["paper"]) else f"{r['paper']:.2f}",
            "-" if pd.isna(r["gap"]) else f"{r['gap']:+.2f}"]


HEADER = ["method", "n", "runs", "test acc at best val epoch", "test acc at last epoch",
          "paper", "ours - paper"]


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for _, r in table.iterrows()]
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    def esc(s: str) -> str:
        return s.replace("+-", r"$\pm$").replace("_", r"\_").replace(",", "{,}")

    lines = [r"\begin{tabular}{lrrrrrr}", r"\toprule",
             " & ".join(HEADER).replace("_", r"\_") + r" \\", r"\midrule"]
    lines += [" & ".join(esc(c) for c in _cells(r)) + r" \\" for _, r in table.iterrows()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def compare_markdown(runs: pd.DataFrame) -> str:
    """benchmarks.compare's table (one n): per method, mean +- std (percent) over seeds of the
    selected validation accuracy and of the test accuracy at that epoch and at the last, the
    mean of last - selected, the gain over supervised paired by seed, the wall time per run."""
    table = method_table(runs, paper={})
    base = 100 * runs[runs["method"] == "supervised"].set_index("seed")["test_acc"]
    lines = ["| method | seeds | val acc (selected) | test acc at best val epoch | test acc at last epoch "
             "| last - selected | gain over supervised (paired) | wall s per run |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        gain = "-"
        if r["method"] != "supervised" and not base.empty:
            paired = (100 * runs[runs["method"] == r["method"]].set_index("seed")["test_acc"] - base).dropna()
            if len(paired):
                gain = f"{paired.mean():+.2f} (min {paired.min():+.2f}, n={len(paired)})"
        lines.append(f"| {r['method']} | {r['runs']} | {_pm(r['val_mean'], r['val_std'])} | "
                     f"{_pm(r['selected_mean'], r['selected_std'])} | {_pm(r['last_mean'], r['last_std'])} | "
                     f"{r['drift']:+.2f} | {gain} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def table1_markdown(runs: pd.DataFrame, methods: list[str], targets: dict[int, float]) -> str:
    """benchmarks.table1's table: per method and n, mean +- std over seeds of the test
    accuracy at the best validation epoch and at the last epoch, the paper's figure and the
    gap, seeds per n, wall time; then `target_lines` and the runs that did not finish."""
    done = runs[runs["status"] == "DONE"]
    ns = sorted(done["n"].unique())
    stats = method_table(done).set_index(["method", "n"])
    head = ["method"] + [c for n in ns for c in (f"n={n:,} best val", "last", "paper", "gap")]
    head += ["seeds", "wall s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in methods:
        g = done[done["method"] == method]
        if g.empty:
            continue
        cells = [method]
        for n in ns:
            paper = PAPER_TABLE1_MNIST.get(method, {}).get(int(n))
            shown = f"{paper:.2f}" if paper else "-"
            if (method, n) not in stats.index:
                cells += ["-", "-", shown, "-"]
                continue
            r = stats.loc[(method, n)]
            cells += [_pm(r["selected_mean"], r["selected_std"]), _pm(r["last_mean"], r["last_std"]),
                      shown, f"{r['gap']:+.2f}" if paper else "-"]
        counts = g.groupby("n")["seed"].nunique()
        cells += ["/".join(str(counts.get(n, 0)) for n in ns), f"{g['wall_s'].mean():.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Test accuracy (%) at the epoch of best validation accuracy ('best val') and at "
                 "the last epoch, mean +- std over seeds; 'gap' = ours - paper; 'seeds' per n.")
    lines += target_lines(done, targets)
    failed = runs[runs["status"] != "DONE"]
    if len(failed):
        lines.append(f"Runs that did not finish: {len(failed)} ("
                     + ", ".join(f"{r.method} n={r.n} seed {r.seed}: {r.status}"
                                 for r in failed.itertuples()) + ")")
    return "\n".join(lines) + "\n"


def target_lines(done: pd.DataFrame, targets: dict[int, float]) -> list[str]:
    """Per n: kdgan's mean test accuracy against its target and against every baseline, over
    the seeds that every method of that n has finished."""
    out = ["", "Targets (kdgan, mean test accuracy at the best validation epoch, over the seeds "
                "that every method of that n has finished):"]
    for n, g in done.groupby("n"):
        seed_sets = [set(m["seed"]) for _, m in g.groupby("method")]
        common = set.intersection(*seed_sets)
        if not common:
            continue
        g = g[g["seed"].isin(common)]
        if any(len(s) > len(common) for s in seed_sets):
            out.append(f"- n={n:,}: compared on the {len(common)} seeds every method has "
                       f"({', '.join(map(str, sorted(common)))})")
        means = g.groupby("method")["test_acc"].mean() * 100
        if "kdgan" not in means:
            continue
        kd = means["kdgan"]
        others = means.drop(["kdgan", "teacher"], errors="ignore")
        above = bool((kd > others).all()) if len(others) else True
        target = targets.get(int(n))
        if target is not None:
            out.append(f"- n={n:,}: kdgan {kd:.2f} vs target {target}: "
                       f"{'met' if kd >= target else 'NOT met'}")
        beaten = ", ".join(f"{m} {v:.2f}" for m, v in others.items() if v >= kd)
        out.append(f"- n={n:,}: kdgan above every baseline: {'yes' if above else 'NO'}"
                   + ("" if above else f" (at or above kdgan: {beaten})"))
    return out


def versus_markdown(runs: pd.DataFrame, other: pd.DataFrame, here: str, there: str,
                    order: list[str]) -> str:
    """Per n and method (in `order`), mean test accuracy (best validation epoch) in `runs`
    and in `other` on the seeds both finished, and the paired difference mean +- std."""
    key = ["method", "n", "seed"]
    both = (runs[runs["status"] == "DONE"][key + ["test_acc"]]
            .merge(other[other["status"] == "DONE"][key + ["test_acc"]], on=key, suffixes=("", "_o")))
    lines = [f"| n | method | seeds | {here} | {there} | difference (paired) |",
             "|---|---|---|---|---|---|"]
    rank = {m: i for i, m in enumerate(order)}
    for (n, method), g in sorted(both.groupby(["n", "method"]), key=lambda kv: (kv[0][0], rank.get(kv[0][1], 99))):
        d = 100 * (g["test_acc"] - g["test_acc_o"])
        lines.append(f"| {n:,} | {method} | {len(g)} | {100 * g['test_acc'].mean():.2f} | "
                     f"{100 * g['test_acc_o'].mean():.2f} | {_pm(d.mean(), _std(d), sign='+')} |")
    lines += ["", "Test accuracy (%) at the epoch of best validation accuracy, mean over the seeds "
              "both benchmarks finished; difference = here - there, per seed, mean +- std."]
    return "\n".join(lines) + "\n"


def plateau(history: pd.DataFrame, fraction: float = 0.99, tail: int = 5) -> pd.DataFrame:
    """Per method and seed: the first epoch whose validation accuracy reaches `fraction` of
    the final accuracy (the mean of the last `tail` epochs); then mean and std per method."""
    rows = []
    for (method, seed), g in history.groupby(["method", "seed"]):
        g = g.sort_values("epoch")
        final = g["val/acc"].tail(tail).mean()
        reached = g[g["val/acc"] >= fraction * final]
        best = g.loc[g["val/acc"].idxmax()]
        rows.append({"method": method, "seed": seed, "final_val_acc": final,
                     "epoch": int(reached["epoch"].iloc[0]) if len(reached) else np.nan,
                     "best_val_acc": best["val/acc"], "best_epoch": best["epoch"]})
    per_seed = pd.DataFrame(rows)
    return per_seed.groupby("method").agg(
        epoch_mean=("epoch", "mean"), epoch_std=("epoch", "std"),
        final_val_acc=("final_val_acc", "mean"), best_val_acc=("best_val_acc", "mean"),
        best_epoch=("best_epoch", "mean"), seeds=("seed", "nunique")).reset_index()


def plateau_markdown(history: pd.DataFrame) -> str:
    """`plateau` of the histories as Markdown (benchmarks.table1's plateau.md)."""
    lines = ["| method | seeds | epoch reaching 99% of final val acc | final val acc (mean of last 5) "
             "| best val acc | its epoch |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.method} | {r.seeds} | {r.epoch_mean:.1f} +- {0 if pd.isna(r.epoch_std) else r.epoch_std:.1f} "
              f"| {100 * r.final_val_acc:.2f} | {100 * r.best_val_acc:.2f} | {r.best_epoch:.1f} |"
              for r in plateau(history).itertuples()]
    lines += ["", "Means over seeds. A final accuracy far below the best one means the run collapsed: "
              "its 'epoch reaching 99% of final' says nothing about convergence."]
    return "\n".join(lines) + "\n"


def grid_markdown(rows: pd.DataFrame) -> str:
    """benchmarks.table1's select.md: each validation-grid point's mean validation accuracy
    (percent) over the seeds finished so far; rows: n, method, grid point, seed, val_acc."""
    g = rows.groupby(["n", "method", "grid point"], sort=False)["val_acc"]
    lines = ["| n | method | grid point | seeds done | mean val acc |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {m} | {p} | {len(v)} | {v.mean():.2f} |" for (n, m, p), v in g]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------
# Table 2: tag recommendation, the ranking metrics (kdgan.metrics.RANKING) per label set.

# Paper Table 2 (YFCC100M): 'popular' = the 200 most popular tags, 'random' = 200 sampled.
PAPER_TABLE2 = {
    "popular": {
        "knn": (.2320, .1680, .2339, .1633, .5755, .5852),
        "nagan": (.2892, .1880, .3516, .2352, .7432, .7555),
        "kdgan": (.3047, .1968, .3678, .2526, .7787, .7905),
    },
    "random": {
        "knn": (.1623, .1198, .1575, .1088, .3970, .4092),
        "nagan": (.2415, .1495, .2693, .1867, .5791, .5911),
        "kdgan": (.2572, .1666, .2946, .2009, .6302, .6452),
    },
}


def tag_table(runs: pd.DataFrame, paper: dict | None = None) -> pd.DataFrame:
    """Per label set and method: runs, mean and std of each test metric (columns
    `test_p@3` ... `test_mrr` of the runs), and the paper's figures where it has them."""
    paper = PAPER_TABLE2 if paper is None else paper
    if "status" in runs:
        runs = runs[runs["status"] == "DONE"]
    missing = [f"test_{m}" for m in RANKING if f"test_{m}" not in runs]
    if missing or "label_set" not in runs:
        raise ValueError(f"tag runs need columns label_set and {missing or 'test_p@3 ...'}")
    rows = []
    for (label_set, method), g in runs.groupby(["label_set", "method"], sort=False):
        row = {"label_set": label_set, "method": method, "runs": len(g)}
        for m in RANKING:
            row[f"{m}_mean"] = g[f"test_{m}"].mean()
            row[f"{m}_std"] = _std(g[f"test_{m}"])
        ref = paper.get(label_set, {}).get(method)
        for m, v in zip(RANKING, ref or [None] * len(RANKING)):
            row[f"{m}_paper"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def tag_to_markdown(table: pd.DataFrame) -> str:
    """One block per label set: a row per method (and a 'paper' row where the paper has it)."""
    out = []
    for label_set, g in table.groupby("label_set", sort=False):
        head = ["method", "runs"] + [m.upper() for m in RANKING]
        lines = [f"**{label_set}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in g.iterrows():
            lines.append(f"| {r['method']} | {r['runs']} | "
                         + " | ".join(_pm(r[f"{m}_mean"], r[f"{m}_std"], 4) for m in RANKING) + " |")
            if not pd.isna(r.get(f"{RANKING[0]}_paper")):
                lines.append(f"| {r['method']} (paper) | - | "
                             + " | ".join(f"{r[f'{m}_paper']:.4f}" for m in RANKING) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def tag_to_latex(table: pd.DataFrame) -> str:
    """The paper's layout: label sets side by side, a row per method, mean $\\pm$ std."""
    sets = list(dict.fromkeys(table["label_set"]))
    methods = list(dict.fromkeys(table["method"]))
    cols = "l" + "r" * (len(RANKING) * len(sets))
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & " + " & ".join(rf"\multicolumn{{{len(RANKING)}}}{{c}}{{{s}}}" for s in sets) + r" \\",
             "method & " + " & ".join(m.upper().replace("@", "@") for _ in sets for m in RANKING) + r" \\",
             r"\midrule"]
    for method in methods:
        cells = [method.replace("_", r"\_")]
        for s in sets:
            r = table[(table["label_set"] == s) & (table["method"] == method)]
            for m in RANKING:
                if r.empty:
                    cells.append("-")
                else:
                    mean, std = r.iloc[0][f"{m}_mean"], r.iloc[0][f"{m}_std"]
                    cells.append(f"{mean:.3f}" if pd.isna(std) else rf"{mean:.3f} $\pm$ {std:.3f}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def paired_verdicts(runs: pd.DataFrame, claims: list[tuple[str, str, str]],
                    select_seeds: list[int] | None = None) -> list[str]:
    """Per label set and claim (a, b, what 'a beats b' says): whether a's mean beats b's on
    every ranking metric over the seeds both have, and on how many seeds per metric; again on
    the seeds the validation grid did not use, when there are some (a check no choice saw)."""
    out = []
    done = runs[runs["status"] == "DONE"]
    for label_set, g in done.groupby("label_set", sort=False):
        by = {m: gm.set_index("seed") for m, gm in g.groupby("method")}
        for a, b, claim in claims:
            if a not in by or b not in by:
                continue
            seeds = by[a].index.intersection(by[b].index)
            held_out = seeds.difference(select_seeds or [])
            subsets = [(seeds, "")] + ([(held_out, ", seeds outside the selection")]
                                       if 0 < len(held_out) < len(seeds) else [])
            for subset, which in subsets:
                wins = {m: bool(by[a].loc[subset, f"test_{m}"].mean() > by[b].loc[subset, f"test_{m}"].mean())
                        for m in RANKING}
                per_seed = {m: int((by[a].loc[subset, f"test_{m}"] > by[b].loc[subset, f"test_{m}"]).sum())
                            for m in RANKING}
                out.append(f"- {label_set}: {claim} on every metric (means over {len(subset)} seeds"
                           f"{which}): {'yes' if all(wins.values()) else 'NO'}; seeds won per metric: "
                           + ", ".join(f"{m.upper()} {per_seed[m]}/{len(subset)}" for m in RANKING))
    return out


def tag_select_markdown(points: pd.DataFrame) -> str:
    """benchmarks.table2's select.md: every grid point's validation means, the chosen one
    marked; points: label set, method, overrides (named), val P@1, val MAP, seeds, chosen."""
    if points.empty:
        return "No validation grid ran (--no-grid, or no method with a grid): defaults only.\n"
    lines = ["| label set | method | overrides | val P@1 (mean) | val MAP (mean) | seeds | chosen |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {p['label set']} | {p['method']} | {p['overrides']} | {p['val P@1']:.4f} | "
              f"{p['val MAP']:.4f} | {' '.join(map(str, p['seeds']))} | {'yes' if p['chosen'] else ''} |"
              for _, p in points.iterrows()]
    lines += ["", "Validation only (the test set is never read for a choice): the point with the "
              "best mean validation P@1 is used for every seed."]
    return "\n".join(lines) + "\n"


def room_markdown(rooms: pd.DataFrame, targets: list[str]) -> str:
    """benchmarks.diagnostics.distill_room's table: per target (in `targets`), the test
    metrics of the students trained on it, mean +- std over runs, and MAP - the tags'."""
    lines = ["| target | runs | mass on the tags | " + " | ".join(m.upper() for m in RANKING)
             + " | MAP - tags |", "|---|---|---|" + "---|" * (len(RANKING) + 1)]
    ref = rooms[rooms["target"] == "tags"].set_index("run")["test_map"]
    for name in targets:
        g = rooms[rooms["target"] == name]
        if g.empty:
            continue
        # one run shows '+- 0.0000' here (elsewhere the mean alone), as this table always has
        cells = [_pm(g[f"test_{m}"].mean(), g[f"test_{m}"].std(ddof=1) if len(g) > 1 else 0, 4)
                 for m in RANKING]
        diff = g.set_index("run")["test_map"] - ref
        lines.append(f"| {name} | {len(g)} | {g['train_tag_mass'].mean():.3f} | " + " | ".join(cells)
                     + f" | {diff.mean():+.4f} |")
    lines += ["", "Test metrics of a fresh classifier trained on each target for the run's n "
              "training images, at its pass of best validation MAP; mean +- std over runs. "
              "'mass on the tags': the target's mean probability on the observed tags."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------
# Table 1, paired: per n, a method's per-seed test accuracy against another's (issue 16).

ABOVE, BELOW, SAME_AS, FEW = "above", "below", "not distinguishable", "too few seeds"


def interval_verdict(low: float, high: float) -> str:
    """'above' (the interval of a - b above 0), 'below' (under 0), 'not distinguishable'
    (it holds 0, ends included), 'too few seeds' (no interval: fewer than two pairs)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return FEW
    return ABOVE if low > 0 else BELOW if high < 0 else SAME_AS


def table1_pairs(methods: list[str], distillers: tuple[str, ...]) -> list[tuple[str, str]]:
    """(a, b) pairs compared as a - b: kdgan against every other method (the teacher aside),
    then every distiller in `distillers` against supervised (kdgan - supervised once)."""
    pairs = [("kdgan", m) for m in methods if "kdgan" in methods and m not in ("kdgan", "teacher")]
    if "supervised" in methods:
        pairs += [(m, "supervised") for m in methods
                  if m in distillers and (m, "supervised") not in pairs]
    return pairs


def paired_table(done: pd.DataFrame, pairs: list[tuple[str, str]], level: float = 0.95) -> pd.DataFrame:
    """Per n and pair (a, b): the seeds both finished, a's and b's mean test accuracy (percent,
    best validation epoch), the mean of the per-seed differences a - b with its `level`
    t-interval (kdgan.stats.paired_interval), its verdict, and the same difference at the
    last epoch."""
    from kdgan.stats import paired_interval

    rows = []
    for n, g in done.groupby("n"):
        by = {m: gm.set_index("seed") for m, gm in g.groupby("method")}
        for a, b in pairs:
            if a not in by or b not in by:
                continue
            seeds = by[a].index.intersection(by[b].index).sort_values()
            if not len(seeds):
                continue
            row = {"n": int(n), "a": a, "b": b, "seeds": len(seeds),
                   "a_mean": 100 * by[a].loc[seeds, "test_acc"].mean(),
                   "b_mean": 100 * by[b].loc[seeds, "test_acc"].mean()}
            for col, prefix in (("test_acc", ""), ("last_test_acc", "last_")):
                d, lo, hi, _ = paired_interval((100 * by[a].loc[seeds, col]).tolist(),
                                               (100 * by[b].loc[seeds, col]).tolist(), level)
                row.update({f"{prefix}diff": d, f"{prefix}low": lo, f"{prefix}high": hi,
                            f"{prefix}verdict": interval_verdict(lo, hi)})
            rows.append(row)
    return pd.DataFrame(rows)


def interval_text(d: float, lo: float, hi: float) -> str:
    """A difference with its interval, as in '+0.25 [-0.55, +1.05]' (the difference alone
    where it has no interval: fewer than two seeds)."""
    return f"{d:+.2f}" + ("" if pd.isna(lo) else f" [{lo:+.2f}, {hi:+.2f}]")


def paired_markdown(paired: pd.DataFrame, level: float = 0.95) -> str:
    """`paired_table` as Markdown, then per n the verdict lines read from its intervals."""
    if paired.empty:
        return "No pair of methods with a seed in common yet.\n"
    pct = f"{level:.0%}"
    lines = [f"| n | a | b | seeds | a | b | a - b [{pct} CI] | verdict | last epoch: a - b [{pct} CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.n:,} | {r.a} | {r.b} | {r.seeds} | {r.a_mean:.2f} | {r.b_mean:.2f} | "
              f"{interval_text(r.diff, r.low, r.high)} | {r.verdict} | {interval_text(r.last_diff, r.last_low, r.last_high)} |"
              for r in paired.itertuples()]
    lines += ["", f"Test accuracy (%) at the epoch of best validation accuracy, mean over the seeds "
              f"both methods finished; a - b: the mean of the per-seed differences with its {pct} "
              "Student t-interval over seeds (paired: the same seed is the same labelled subset, "
              "pretrained start and teacher); verdict: a is 'above' b when the interval lies above "
              "0, 'below' under it, else 'not distinguishable'. The last column: the same at the "
              "last epoch.", "", "Verdicts:"]
    said = {ABOVE: "above", BELOW: "below", SAME_AS: "not distinguishable from",
            FEW: "too few seeds to tell against"}
    for n, g in paired.groupby("n"):
        for a, ga in g.groupby("a", sort=False):
            parts = [f"{said[verdict]} {', '.join(ga.loc[ga['verdict'] == verdict, 'b'])}"
                     for verdict in said if (ga["verdict"] == verdict).any()]
            lines.append(f"- n={n:,}: {a} is " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def effort_markdown(done: pd.DataFrame, methods: list[str]) -> str:
    """Per method and n: wall seconds per run (mean; pretraining included), game epochs run
    and the best validation epoch (means over seeds), and the runs' total wall time."""
    lines = ["| method | n | runs | wall s/run | of it pretraining s | epochs run | best epoch | "
             "total wall s |", "|---|---|---|---|---|---|---|---|"]
    for method in methods:
        for n, g in done[done["method"] == method].groupby("n"):
            lines.append(f"| {method} | {n:,} | {len(g)} | {g['wall_s'].mean():.0f} | "
                         f"{g['pretrain_s'].mean():.0f} | {g['epochs_run'].mean():.1f} | "
                         f"{g['best_epoch'].mean():.1f} | {g['wall_s'].sum():.0f} |")
    lines += ["", "Wall time on the machine that ran each run (a pretrained player read from the "
              "shared cache costs its run nothing, so the first method of a seed pays for it)."]
    return "\n".join(lines) + "\n"


def student_target_lines(done: pd.DataFrame, targets: dict[int, float], method: str = "supervised") -> list[str]:
    """Per n in `targets`: `method`'s mean test accuracy (best validation epoch) against it."""
    out = []
    for n, target in sorted(targets.items()):
        g = done[(done["method"] == method) & (done["n"] == n)]
        if len(g):
            acc = 100 * g["test_acc"].mean()
            out.append(f"- n={n:,}: {method} {acc:.2f} over {len(g)} seeds vs target {target}: "
                       f"{'met' if acc >= target else 'NOT met'}")
    return out
