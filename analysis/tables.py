"""Tables of results beside the paper's, as Markdown and LaTeX."""

from __future__ import annotations

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


def method_table(runs: pd.DataFrame, paper: dict | None = None) -> pd.DataFrame:
    """Per method and n: runs, mean and std (percent) of the test accuracy at the best
    validation epoch and at the last epoch, the paper's figure and the gap to it."""
    paper = PAPER_TABLE1_MNIST if paper is None else paper
    rows = []
    for (method, n), g in runs.groupby(["method", "n"], sort=False):
        sel, last = 100 * g["test_acc"], 100 * g["last_test_acc"]
        ref = paper.get(method, {}).get(int(n))
        rows.append({"method": method, "n": int(n), "runs": len(g),
                     "selected_mean": sel.mean(), "selected_std": sel.std(ddof=1) if len(g) > 1 else float("nan"),
                     "last_mean": last.mean(), "last_std": last.std(ddof=1) if len(g) > 1 else float("nan"),
                     "paper": ref, "gap": sel.mean() - ref if ref is not None else None})
    return pd.DataFrame(rows)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} +- {std:.2f}"


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
            row[f"{m}_std"] = g[f"test_{m}"].std(ddof=1) if len(g) > 1 else float("nan")
        ref = paper.get(label_set, {}).get(method)
        for m, v in zip(RANKING, ref or [None] * len(RANKING)):
            row[f"{m}_paper"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _tag_cell(mean: float, std: float) -> str:
    return f"{mean:.4f}" if pd.isna(std) else f"{mean:.4f} +- {std:.4f}"


def tag_to_markdown(table: pd.DataFrame) -> str:
    """One block per label set: a row per method (and a 'paper' row where the paper has it)."""
    out = []
    for label_set, g in table.groupby("label_set", sort=False):
        head = ["method", "runs"] + [m.upper() for m in RANKING]
        lines = [f"**{label_set}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, r in g.iterrows():
            lines.append(f"| {r['method']} | {r['runs']} | "
                         + " | ".join(_tag_cell(r[f"{m}_mean"], r[f"{m}_std"]) for m in RANKING) + " |")
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
