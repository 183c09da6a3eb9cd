"""analysis/ on generated experiments with a known structure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import plots, population, tables
from analysis.load import (AnalysisError, load_experiments, load_members, member_matrix,
                           trial_epochs)
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


def _population_experiment(path: Path, n_trials: int = 24, members: int = 4, seed: int = 0) -> Path:
    """A search with seed populations (members.parquet, epochs with a seed column): validation
    accuracy rises by 8 points over beta's 6 decades, far above the seed noise (a seed effect
    shared by every trial, sd 0.6 points, and 0.3 points per member); alpha has no effect."""
    rng = np.random.default_rng(seed)
    beta = 10 ** rng.uniform(-3, 3, n_trials)
    alpha = rng.uniform(0, 1, n_trials)
    seeds = np.arange(members)
    shared = rng.normal(0, 0.006, members)
    val = (0.8 + 0.04 * np.log10(beta) / 3)[:, None] + shared + rng.normal(0, 0.003, (n_trials, members))
    test = val - 0.005 + rng.normal(0, 0.003, (n_trials, members))
    ids = [f"t{i:02d}" for i in range(n_trials)]
    sqrt_m = np.sqrt(members)
    trials = pd.DataFrame({"trial_id": ids, "status": "TERMINATED", "error": "", "alpha": alpha,
                           "beta": beta, "gamma": 0.1, "n": 100, "seed": 0, "population": members,
                           "best_val_acc": val.mean(1), "best_val_acc_se": val.std(1, ddof=1) / sqrt_m,
                           "test_acc": test.mean(1), "test_acc_se": test.std(1, ddof=1) / sqrt_m,
                           "members": members, "best_epoch": 5})
    member_rows = pd.DataFrame([{"trial_id": t, "seed": int(s), "val_acc": val[i, j], "test_acc": test[i, j],
                                 "best_epoch": 5, "last_val_acc": val[i, j] - 0.001,
                                 "last_test_acc": test[i, j] - 0.001, "epochs_run": 6,
                                 "status": "finished", "reason": ""}
                                for i, t in enumerate(ids) for j, s in enumerate(seeds)])
    epochs = pd.DataFrame([{"trial_id": t, "epoch": e, "seed": int(s), "val/acc": val[i, j] * (0.9 + 0.02 * e),
                            "test/acc": test[i, j] * (0.9 + 0.02 * e)}
                           for i, t in enumerate(ids) for j, s in enumerate(seeds) for e in range(6)])
    path.mkdir(parents=True)
    trials.to_parquet(path / "trials.parquet")
    member_rows.to_parquet(path / "members.parquet")
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


def _importance_row(text: str, param: str) -> list[str]:
    """The cells after the parameter's name in the report's importance table."""
    section = text.split("## Hyperparameter importance")[1]
    return section.split(f"| {param} | ")[1].split("\n")[0].rstrip(" |").split(" | ")


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
    imp = _importance_row(text, "beta")[0]
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


def test_populations_load_as_members_and_member_means(tmp_path):
    exp = _population_experiment(tmp_path / "exp")
    trials, epochs = load_experiments(exp)
    members = load_members(exp)
    assert len(members) == 24 * 4 and set(members["seed"]) == {0, 1, 2, 3}
    matrix = member_matrix(members)
    assert matrix.shape == (24, 4)
    per_trial = trial_epochs(epochs)
    assert len(per_trial) == 24 * 6 and (per_trial["members"] == 4).all()
    first = per_trial[(per_trial["trial_id"] == "t00") & (per_trial["epoch"] == 5)]["val/acc"].item()
    assert first == pytest.approx(trials.loc[0, "best_val_acc"], rel=1e-9)  # 0.9 + 0.02 * 5 = 1
    noise = population.seed_noise(matrix)
    assert noise["members"] == 4 and noise["df"] == 24 * 3
    assert 0.002 < noise["sd"] < 0.02 and noise["se"] == pytest.approx(noise["sd"] / 2)


def test_old_experiments_read_as_populations_of_one(tmp_path):
    exp = _experiment(tmp_path / "exp")
    trials, epochs = load_experiments(exp)
    assert (trials["population"] == 1).all() and trials["best_val_acc_se"].isna().all()
    assert "seed" in epochs and len(trial_epochs(epochs)) == len(epochs)
    members = load_members(exp)
    assert len(members) == len(trials) and list(members["val_acc"]) == list(trials["best_val_acc"])
    assert members["status"].iloc[-1] == "diverged" and "non-finite" in members["reason"].iloc[-1]
    assert members["status"].iloc[0] == "finished" and members["reason"].iloc[0] == ""
    assert np.isnan(population.seed_noise(member_matrix(members))["sd"])


def test_effects_tell_the_planted_parameter_from_the_null_one(tmp_path):
    exp = _population_experiment(tmp_path / "exp")
    trials, _ = load_experiments(exp)
    eff = population.effects(trials, member_matrix(load_members(exp)), ["alpha", "beta"]).set_index("parameter")
    assert eff.loc["beta", "larger"] and eff.loc["beta", "p"] < 0.001 and eff.loc["beta", "log"]
    assert not eff.loc["alpha", "larger"] and not eff.loc["alpha", "log"]
    assert eff.loc["beta", "lo"] > 0.03 and eff.loc["beta", "seeds"] == 4  # the high third, ~5 points up
    assert eff.loc["beta", "high"] > eff.loc["beta", "mid"] > eff.loc["beta", "low"]


def test_effects_permutation_is_not_fooled_by_selecting_the_thirds():
    """Pure noise: picking the best and worst third on the data gives a positive spread every
    time, yet the permutation test (which picks them the same way) rejects at about its level."""
    rng = np.random.default_rng(1)
    rejections = 0
    for rep in range(40):
        trials = pd.DataFrame({"trial_id": [f"t{i}" for i in range(18)], "alpha": rng.uniform(0, 1, 18),
                               "best_val_acc": rng.normal(0.8, 0.01, 18)})
        matrix = trials.set_index("trial_id")[["best_val_acc"]]
        eff = population.effects(trials, matrix, ["alpha"], permutations=200, seed=rep)
        assert eff["spread"].item() > 0
        rejections += bool(eff["larger"].item())
    assert rejections <= 6  # 5% of 40 is 2


def test_importance_interval_holds_the_point_and_needs_members(tmp_path):
    exp = _population_experiment(tmp_path / "exp")
    trials, _ = load_experiments(exp)
    imp = population.importance_interval(trials, member_matrix(load_members(exp)), ["alpha", "beta"],
                                         resamples=40)
    assert (imp["resamples"] == 40).all()
    assert ((imp["lo"] <= imp["importance"] + 1e-9) & (imp["importance"] <= imp["hi"] + 1e-9)).all()
    assert imp.loc["beta", "importance"] > imp.loc["alpha", "importance"]
    fig = plots.importance(imp)
    assert len(fig.axes[0].containers) == 2  # the bars and the intervals' error bars
    old = _experiment(tmp_path / "old")
    t, _ = load_experiments(old)
    one = population.importance_interval(t, member_matrix(load_members(old)), ["alpha", "beta"])
    assert one["lo"].isna().all() and (one["resamples"] == 0).all()


def test_sensitivity_draws_each_trials_standard_error_and_the_seed_noise(tmp_path):
    from matplotlib.container import ErrorbarContainer

    exp = _population_experiment(tmp_path / "exp")
    trials, _ = load_experiments(exp)
    fig = plots.sensitivity(trials, ["alpha", "beta"], noise=0.004)
    for ax in fig.axes:
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 1
        segments = bars[0].lines[2][0].get_segments()  # one vertical segment per trial
        assert len(segments) == len(trials)
        heights = sorted(s[1, 1] - s[0, 1] for s in segments)
        assert heights == pytest.approx(sorted(2 * 100 * trials["best_val_acc_se"]))
        band = [p for p in ax.patches if p.get_gid() == "seed-noise"]
        assert len(band) == 1
    old, _ = load_experiments(_experiment(tmp_path / "old"))
    fig = plots.sensitivity(old, ["alpha", "beta"], noise=float("nan"))
    assert not fig.axes[0].containers and not fig.axes[0].patches  # nothing to draw with one member


def test_report_on_populations_says_which_effect_beats_the_seed_noise(tmp_path):
    exp = _population_experiment(tmp_path / "exp")
    text = build_report([exp], [], tmp_path / "out", resamples=30)
    assert "the effect of beta is larger than the seed noise" in text
    assert "the effect of alpha is not distinguishable from the seed noise" in text
    assert "a population of 4 members per trial" in text and "seed noise: pooled within-trial std" in text
    assert "95% interval" in text and "30 bootstrap resamples" in text
    row = _importance_row(text, "beta")
    point, (lo, hi) = float(row[0]), map(float, row[1].strip(" []").split(", "))
    assert lo <= point <= hi
    for name in ("sensitivity", "importance", "trial_curves"):
        assert (tmp_path / "out" / f"{name}.png").exists()
    trials, epochs = load_experiments(exp)
    fig = plots.trial_curves(trial_epochs(epochs), list(trials["trial_id"][:2]))
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[0].lines[0].get_xdata()) == 6  # a point per epoch
    assert "t00 (mean of 4)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_report_on_an_old_experiment_says_one_seed_per_trial(tmp_path):
    text = build_report([_experiment(tmp_path / "exp", search_gamma=False)], [], tmp_path / "out")
    assert "one member (seed) per trial" in text and "seed noise: one member per trial" in text
    assert "no effect can be told from the seed noise on its own" in text
    assert "trial-to-trial scatter (unpaired fallback)" in text
    assert "no interval over seeds is possible" in text
    assert (tmp_path / "out" / "trial_curves.png").exists() and (tmp_path / "out" / "importance.png").exists()


def test_splice_pastes_a_file_between_its_markers_demoting_its_headings(tmp_path, capsys):
    from analysis import splice

    doc = tmp_path / "doc.md"
    doc.write_text("# Doc\n<!-- t:begin -->\nold\n<!-- t:end -->\ntail\n")
    table = tmp_path / "table.md"
    table.write_text("## Part\n| a |\n```\n# not a heading\n```\n")
    assert splice.main([str(doc), "--check", f"t={table}"]) == 1  # differs: nothing written
    assert "old" in doc.read_text() and "section 't' differs" in capsys.readouterr().out
    assert splice.main([str(doc), "--demote", "2", f"t={table}"]) == 0
    assert doc.read_text() == ("# Doc\n<!-- t:begin -->\n#### Part\n| a |\n```\n# not a heading\n```\n"
                               "<!-- t:end -->\ntail\n")
    assert splice.main([str(doc), "--check", "--demote", "2", f"t={table}"]) == 0
    before = doc.read_text()
    for args, text in (([f"u={table}"], "section 'u': expected the lines <!-- u:begin --> and "
                                        "<!-- u:end --> once each in the document, found them 0 and 0 times"),
                       ([f"t={tmp_path / 'none.md'}"], "no such file"),
                       (["t"], "'t': expected NAME=FILE"),
                       (["--demote", "-1", f"t={table}"], "--demote -1: expected 0 or more")):
        assert splice.main([str(doc), *args]) == 2
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1, err
    doc.write_text("<!-- t:end -->\n<!-- t:begin -->\n")
    assert splice.main([str(doc), f"t={table}"]) == 2
    assert "end marker comes before its begin marker" in capsys.readouterr().err
    assert before.count("#### Part") == 1


def test_the_results_docs_tables_are_the_files_the_benchmarks_wrote():
    """docs/RESULTS.md's generated sections equal the committed files they were pasted from:
    a number there is never edited by hand."""
    from analysis import splice

    root = Path(__file__).resolve().parents[1]
    passes = root / "results" / "table1-passes"
    if not (passes / "table.md").exists():
        pytest.skip("results/table1-passes is not in this checkout")
    assert splice.main([str(root / "docs" / "RESULTS.md"), "--check", "--demote", "2",
                        f"table1-passes={passes / 'table.md'}",
                        f"teacher-end={passes / 'teacher-end.md'}",
                        f"collapse-dip={root / 'results' / 'table1-collapse' / 'dip.md'}"]) == 0
