"""Tables of results beside the paper's, as Markdown and LaTeX."""

from __future__ import annotations

import pandas as pd

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
