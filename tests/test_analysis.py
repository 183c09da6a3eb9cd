"""analysis/ on generated experiments with a known structure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import plots, tables
from analysis.load import AnalysisError, load_experiments
from analysis.report import build_report, main as report_main
from kdgan.metrics import RANKING


def _experiment(path: Path, n_trials: int = 40, search_gamma: bool = True, seed: int = 0) -> Path:
    """Validation accuracy peaks at beta = 10 (log10 beta = 1); alpha has no effect."""
    rng = np.random.default_rng(seed)
    beta = 10 ** rng.uniform(-3, 3, n_trials)
    alpha = rng.uniform(0, 1, n_trials)
    gamma = 10 ** rng.uniform(-4, 2, n_trials) if search_gamma else np.full(n_trials, 0.1)
    val = 0.9 - 0.01 * (np.log10(beta) - 1) ** 2 + rng.normal(0, 0.002, n_trials)
    ids = [f"t{i:02d}" for i in range(n_trials)]
    status = ["TERMINATED"] * (n_trials - 1) + ["DIVERGED"]
    trials = pd.DataFrame({"trial_id": ids, "status": status, "error": [""] * (n_trials - 1) + ["epoch 3: non-finite loss in cls/adv"],
                           "alpha": alpha, "beta": beta, "gamma": gamma, "n": 100,
                           "best_val_acc": val, "test_acc": val - 0.005, "best_epoch": 5})
    epochs = pd.DataFrame([{"trial_id": t, "epoch": e, "val/acc": v * (0.9 + 0.02 * e)}
                           for t, v in zip(ids, val) for e in range(6)])
    path.mkdir(parents=True)
    trials.to_parquet(path / "trials.parquet")
    epochs.to_parquet(path / "epochs.parquet")
    return path


def _runs(path: Path) -> Path:
    path.mkdir(parents=True)
    rows = []
    for method, base in (("supervised", 0.85), ("kdgan", 0.88)):
        for seed, delta in enumerate((-0.01, 0.0, 0.01)):
            rows.append({"method": method, "n": 100, "seed": seed, "test_acc": base + delta,
                         "last_test_acc": base + delta - 0.002, "val_acc": base})
            h = pd.DataFrame({"epoch": range(4), "val/acc": [base - 0.03 + 0.01 * e + delta for e in range(4)]})
            (path / f"{method}-s{seed}").mkdir()
            h.to_parquet(path / f"{method}-s{seed}" / "history.parquet")
    pd.DataFrame(rows).to_parquet(path / "runs.parquet")
    return path


def test_trend_finds_the_known_peak(tmp_path):
    trials, _ = load_experiments(_experiment(tmp_path / "exp"))
    t = plots.trend(trials["beta"], trials["best_val_acc"], log=True)
    assert np.log10(t.loc[t["mean"].idxmax(), "x"]) == pytest.approx(1.0, abs=0.4)
    assert (t["lo"] <= t["mean"] + 1e-12).all() and (t["mean"] <= t["hi"] + 1e-12).all()


def test_sensitivity_figure_puts_the_peak_where_it_is(tmp_path):
    trials, _ = load_experiments(_experiment(tmp_path / "exp"))
    fig = plots.sensitivity(trials, ["alpha", "beta", "gamma"])
    beta_ax = fig.axes[1]
    assert beta_ax.get_xscale() == "log" and fig.axes[0].get_xscale() == "linear"
    x, y = beta_ax.lines[0].get_data()  # the validation trend
    assert np.log10(x[np.argmax(y)]) == pytest.approx(1.0, abs=0.4)
    assert len(beta_ax.collections[0].get_offsets()) == len(trials)  # every trial a point


def test_tables_carry_means_spreads_and_the_paper(tmp_path):
    runs = pd.read_parquet(_runs(tmp_path / "runs") / "runs.parquet")
    t = tables.method_table(runs).set_index("method")
    assert t.loc["kdgan", "selected_mean"] == pytest.approx(88.0)
    assert t.loc["kdgan", "selected_std"] == pytest.approx(1.0)
    assert t.loc["kdgan", "paper"] == 77.95 and t.loc["kdgan", "gap"] == pytest.approx(10.05)
    md, tex = tables.to_markdown(t.reset_index()), tables.to_latex(t.reset_index())
    assert "88.00 +- 1.00" in md and r"88.00 $\pm$ 1.00" in tex and r"\end{tabular}" in tex


@pytest.mark.slow
def test_report_writes_figures_and_lists_what_it_skipped(tmp_path):
    exp = _experiment(tmp_path / "exp", search_gamma=False)
    text = build_report([exp], [_runs(tmp_path / "runs")], tmp_path / "out")
    for name in ("sensitivity", "importance", "curves"):
        assert (tmp_path / "out" / f"{name}.png").exists() and (tmp_path / "out" / f"{name}.pdf").exists()
    assert "gamma was not searched" in text
    assert "DIVERGED: epoch 3: non-finite loss" in text
    assert (tmp_path / "out" / "table1.tex").exists()
    imp = text.split("| beta | ")[1].split(" |")[0]
    assert float(imp) > 0.5  # beta drives the objective, alpha does not


@pytest.mark.parametrize("make,pattern", [
    (lambda d: None, "no such file"),
    (lambda d: (d / "trials.parquet").write_bytes(b"not parquet"), "not a readable Parquet"),
    (lambda d: pd.DataFrame({"trial_id": []}).to_parquet(d / "trials.parquet"), "missing column"),
    (lambda d: pd.DataFrame({c: [] for c in ("trial_id", "status", "best_val_acc", "test_acc")})
     .to_parquet(d / "trials.parquet"), "no rows"),
])
def test_bad_parquet_gives_a_clear_error(tmp_path, make, pattern, capsys):
    d = tmp_path / "exp"
    d.mkdir()
    make(d)
    with pytest.raises(AnalysisError, match=pattern):
        load_experiments(d)
    assert report_main([str(d), "--out", str(tmp_path / "o")]) == 2
    assert pattern in capsys.readouterr().err


def test_analysis_never_imports_torch(tmp_path):
    import subprocess

    code = ("import sys, analysis.report, analysis.plots, analysis.tables; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_gradient_variance_section_appears_only_with_the_data(tmp_path):
    runs = _runs(tmp_path / "runs")
    text = build_report([], [runs], tmp_path / "a")
    assert "no run logged it (set log_grad_variance=true)" in text
    h = pd.read_parquet(runs / "kdgan-s0" / "history.parquet")
    h["grad/adv_var"], h["grad/distill_var"] = 10.0, 0.5
    h.to_parquet(runs / "kdgan-s0" / "history.parquet")
    text = build_report([], [runs], tmp_path / "b")
    assert "| kdgan | 10 | 0.5 |" in text and (tmp_path / "b" / "grad_variance.png").exists()


@pytest.mark.slow
def test_the_notebook_runs_on_a_generated_experiment(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    exp = _experiment(tmp_path / "exp")
    monkeypatch.setenv("KDGAN_EXPERIMENT", str(exp))
    root = Path(__file__).resolve().parent.parent
    nb = nbformat.read(root / "notebooks" / "explore_search.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(root)}}).execute()
    outputs = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "40 trials" in outputs and "image/png" in outputs


def test_report_renders_table2_from_tag_runs_and_says_when_it_has_none(tmp_path):
    rows = [{"label_set": s, "method": m, "seed": seed, "status": "DONE",
             **{f"test_{k}": base + 0.01 * seed for k in RANKING}}
            for s in ("popular", "random") for m, base in (("supervised", 0.3), ("kdgan", 0.4))
            for seed in range(3)]
    runs_dir = tmp_path / "tagruns"
    runs_dir.mkdir()
    pd.DataFrame(rows).to_parquet(runs_dir / "runs.parquet")
    text = build_report([], [], tmp_path / "out", [runs_dir])
    assert "paper Table 2" in text and "**random**" in text and "0.4100 +- 0.0100" in text
    assert (tmp_path / "out" / "table2.tex").exists()
    without = build_report([], [], tmp_path / "o3", [])
    assert "Table 2 (tag recommendation): no --tag-runs directory given" in without
