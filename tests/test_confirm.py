"""kdgan.stats (t quantiles and paired intervals against reference values, verdicts) and
kdgan.confirm on generated experiments: the plan (searched fields, fresh seeds, defaults),
bad inputs, outputs, divergence, resume; one end-to-end confirmation with real tiny runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kdgan import confirm, stats
from kdgan.config import Config

from conftest import TINY

# A tiny game: a linear teacher, one game epoch (about a second a run on 2 CPU cores).
FAST = {**TINY, "tch_arch": "linear", "pretrain_epochs": 2, "epochs": 1, "dis_steps": 1, "threads": 1}
# (alpha, beta, gamma, best_val_acc, status, seed): three finished trials; an ERROR trial
# with the best score (never chosen) on another seed (the fresh seeds come after it).
TRIALS = [(0.1, 2.0, 0.5, 0.80, "TERMINATED", 0), (0.5, 0.1, 1.0, 0.90, "TERMINATED", 0),
          (0.9, 10.0, 0.01, 0.70, "TERMINATED", 0), (0.3, 1.0, 0.1, 0.95, "ERROR", 5)]


def write_experiment(folder: Path, dataset: Path, trials=TRIALS, extra: dict | None = None) -> Path:
    """A kdgan.tune experiment folder as the search leaves it: trials.parquet, a row per trial
    with every Config field (the tiny FAST game on `dataset`)."""
    folder.mkdir(parents=True)
    rows = []
    for i, (alpha, beta, gamma, val, status, seed) in enumerate(trials):
        cfg = Config.from_dict({"dataset": str(dataset), **FAST, "alpha": alpha, "beta": beta,
                                "gamma": gamma, "seed": seed, "pretrain_cache": str(folder / "pretrain")})
        rows.append({"trial_id": f"a1b2c_{i:05d}", "status": status, "error": "", **cfg.to_dict(),
                     "best_val_acc": val, "test_acc": val - 0.01, **(extra or {})})
    pd.DataFrame(rows).to_parquet(folder / "trials.parquet")
    return folder


# ---------------------------------------------------------------------------- kdgan.stats
@pytest.mark.parametrize("df, t", [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_quantiles_match_the_table(df, t):
    assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-t, abs=5e-4)


def test_t_quantiles_match_the_closed_forms_and_other_levels():
    for q in (0.6, 0.9, 0.975, 0.995):
        assert stats.t_quantile(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-10)
        assert stats.t_quantile(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-10)
    assert stats.t_quantile(0.995, 5) == pytest.approx(4.032, abs=5e-4)
    assert stats.t_quantile(0.95, 30) == pytest.approx(1.697, abs=5e-4)
    assert stats.t_quantile(0.975, 2000) == pytest.approx(1.961, abs=5e-4)  # towards 1.960
    assert stats.t_quantile(0.5, 7) == 0.0
    for bad in ((1.0, 3), (0.0, 3), (0.9, 0), (0.9, 2.5)):
        with pytest.raises(ValueError):
            stats.t_quantile(*bad)


def test_paired_interval_by_hand():
    # differences 2, 3, 1, 4: mean 2.5, sd sqrt(5/3); t(0.975, 3) = 3.182446
    half = 3.182446 * math.sqrt(5 / 3) / 2
    mean, low, high, n = stats.paired_interval([3, 5, 4, 6], [1, 2, 3, 2])
    assert (mean, n) == (2.5, 4)
    assert (low, high) == (pytest.approx(2.5 - half, abs=1e-6), pytest.approx(2.5 + half, abs=1e-6))
    # a pair with a NaN (a diverged run) is left out; one pair gives a mean, no interval
    assert stats.paired_interval([3, math.nan, 4, 6], [1, 2, math.nan, 2])[::3] == (3.0, 2)
    mean, low, high, n = stats.paired_interval([1.0], [0.5])
    assert (mean, n) == (0.5, 1) and math.isnan(low) and math.isnan(high)
    assert stats.paired_interval([], [])[3] == 0
    with pytest.raises(ValueError):
        stats.paired_interval([1, 2], [1])


def test_verdicts():
    assert stats.verdict(0.1, 0.5) == "better than the defaults"
    assert stats.verdict(-0.5, -0.1) == "worse than the defaults"
    assert stats.verdict(-0.1, 0.2) == "not distinguishable from the defaults"
    assert stats.verdict(0.0, 0.3) == "not distinguishable from the defaults"  # ends included
    assert stats.verdict(math.nan, math.nan) == "too few seeds to tell"
    assert stats.verdict(0.1, 0.5, reference="supervised") == "better than supervised"


def test_stats_needs_neither_torch_nor_pandas():
    code = "import sys, kdgan.stats; print(sorted({'torch', 'pandas', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(stats.__file__).parent.parent)
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- the plan
def test_plan_searched_fields_fresh_seeds_defaults_and_ranks(tmp_path):
    exp = write_experiment(tmp_path / "exp", tmp_path / "blobs.npz")
    plan = confirm.make_plan(exp, top=2, m=3)
    assert plan.searched == ["alpha", "beta", "gamma"]  # seed varies too, and is never one
    assert plan.used_seeds == [0, 5] and plan.seeds == [6, 7, 8]
    assert [c.label for c in plan.candidates] == ["defaults", "trial-a1b2c_00001", "trial-a1b2c_00000"]
    defaults = plan.config(plan.candidates[0])
    assert (defaults.alpha, defaults.beta, defaults.gamma) == (Config.alpha, Config.beta, Config.gamma)
    assert defaults.epochs == FAST["epochs"] and defaults.pretrain_cache == str(exp / "pretrain")
    best = plan.config(plan.candidates[1])  # one population over the fresh seeds
    assert (best.alpha, best.beta, best.gamma, best.seed, best.population) == (0.5, 0.1, 1.0, 6, 3)
    assert plan.run_dir(plan.candidates[1]).name == "seeds6-8"
    smoke = confirm.make_plan(exp, top=1, m=1, smoke=True)
    assert smoke.config(smoke.candidates[1]).pretrain_epochs == 2 and smoke.out.name == "confirm-smoke"


def test_plan_reads_a_population_and_any_varying_field(tmp_path):
    trials = [t[:5] + (0,) for t in TRIALS]
    exp = write_experiment(tmp_path / "exp", tmp_path / "blobs.npz", trials, extra={"population": 4})
    plan = confirm.make_plan(exp, top=1, m=2)
    assert plan.used_seeds == [0, 1, 2, 3] and plan.seeds == [4, 5]
    assert plan.config(plan.candidates[1]).population == 2  # the search's 4 is not carried over
    frame = pd.read_parquet(exp / "trials.parquet")
    frame.loc[1, "cls_lr"] = 0.01
    frame.to_parquet(exp / "trials.parquet")
    assert confirm.make_plan(exp, top=1, m=2).searched == ["cls_lr", "alpha", "beta", "gamma"]


@pytest.mark.parametrize("args, said", [
    (["--top", "0"], "--top 0: expected an integer >= 1"),
    (["--seeds", "0"], "--seeds 0: expected an integer >= 1"),
    (["--seeds", "-2"], "--seeds -2: expected an integer >= 1"),
    (["--threads", "-1"], "--threads -1: expected an integer >= 0"),
    (["--top", "4"], "--top 4: the experiment has 3 finished trials"),
])
def test_bad_arguments_are_one_line_exit_2_before_any_run(tmp_path, capsys, args, said):
    exp = write_experiment(tmp_path / "exp", tmp_path / "blobs.npz")
    assert confirm.main([str(exp), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {said}") and err.count("\n") == 1
    assert not (exp / "confirm").exists()


def test_bad_folders_are_one_line_exit_2(tmp_path, capsys):
    none_finished = [t[:4] + ("ERROR", 0) for t in TRIALS]
    cases = {tmp_path / "missing": "no such folder",
             tmp_path: "not a kdgan.tune experiment (no trials.parquet",
             write_experiment(tmp_path / "x", tmp_path / "b.npz", none_finished): "no finished trial"}
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "trials.parquet").write_text("not parquet")
    cases[tmp_path / "damaged"] = "not a readable Parquet file"
    for folder, said in cases.items():
        assert confirm.main([str(folder), "--top", "1", "--seeds", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, err


# ---------------------------------------------------------------------------- runs and outputs
def _fake_runner(calls: list):
    """Populations without training: accuracies by alpha and seed (the defaults' alpha is
    0.2), a kdgan.train summary.json with its members; alpha 0.9 diverges on seed 8."""
    base = {6: 0.60, 7: 0.70, 8: 0.65}
    delta = {0.2: [0, 0, 0], 0.5: [0.04, 0.05, 0.06], 0.1: [-0.03, -0.05, -0.04], 0.9: [0.05, -0.05, 0.0]}

    def run(cfg, run_dir):
        calls.append((cfg.alpha, cfg.seed, cfg.population))
        members = []
        for seed in range(cfg.seed, cfg.seed + cfg.population):
            if cfg.alpha == 0.9 and seed == 8:
                members.append({"seed": seed, "status": "diverged",
                                "reason": "epoch 1: non-finite loss in cls/adv"})
                continue
            val = base[seed] + delta[cfg.alpha][seed - 6]
            members.append({"seed": seed, "val_acc": val, "test_acc": val - 0.02,
                            "last_test_acc": val - 0.03, "best_epoch": 1, "status": "finished",
                            "reason": ""})
        summary = {"wall_s": 0.3, "members": members, "config": cfg.to_dict()}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return summary

    return run


def test_verdicts_divergence_outputs_and_resume(tmp_path, capsys, monkeypatch):
    exp = write_experiment(tmp_path / "exp", tmp_path / "blobs.npz")
    calls: list = []
    monkeypatch.setattr(confirm, "_train", _fake_runner(calls))
    argv = [str(exp), "--top", "3", "--seeds", "3"]
    assert confirm.main(argv) == 0
    out = capsys.readouterr().out
    assert calls == [(a, 6, 3) for a in (0.2, 0.5, 0.1, 0.9)]  # a population per configuration
    assert "[4/4] trial-a1b2c_00002: 2/3 seeds done" in out
    runs = pd.read_parquet(exp / "confirm.parquet")
    assert len(runs) == 12 and all(sorted(g) == [6, 7, 8] for _, g in runs.groupby("label")["seed"])
    assert (exp / "confirm" / "trial-a1b2c_00002" / "seeds6-8" / "summary.json").exists()
    by = runs.drop_duplicates("label").set_index("trial_id")
    assert by.loc["a1b2c_00001", "verdict"] == "better than the defaults"
    assert by.loc["a1b2c_00000", "verdict"] == "worse than the defaults"
    assert by.loc["a1b2c_00002", "verdict"] == "not distinguishable from the defaults"
    assert by.loc["a1b2c_00002", "pairs"] == 2  # the diverged seed is left out of the pairs
    assert by.loc["a1b2c_00001", "val_diff"] == pytest.approx(0.05)
    assert by.loc["a1b2c_00001", "test_diff"] == pytest.approx(0.05)
    diverged = runs[runs["status"] == "DIVERGED"]
    assert len(diverged) == 1 and math.isnan(diverged["val_acc"].iloc[0])
    md = (exp / "confirm.md").read_text()
    assert "Seeds: 6, 7, 8" in md and "the search used 0, 5" in md
    assert f"`python -m kdgan.confirm {exp} --top 3 --seeds 3`" in md
    # 0.05 +- 4.303 * 0.01 / sqrt(3), in percent; the diverged seed's pair is left out
    assert ("| trial-a1b2c_00001 | 0.5 | 0.1 | 1 | 90.00 | 3 | 70.00 +- 5.57 | 68.00 +- 5.57 | "
            "+5.00 [+2.52, +7.48] | +5.00 [+2.52, +7.48] | better than the defaults |") in md
    assert "| +0.00 [-63.53, +63.53], n=2 |" in md
    assert "- trial-a1b2c_00002 seed 8: epoch 1: non-finite loss in cls/adv" in md
    assert md in out  # the table is printed too
    # again: every outcome is read back, nothing runs
    calls.clear()
    assert confirm.main(argv) == 0
    assert calls == [] and capsys.readouterr().out.count("read back") == 4
    # a saved run made with other settings is refused, not mixed in
    saved = exp / "confirm" / "defaults" / "seeds6-8" / "summary.json"
    summary = json.loads(saved.read_text())
    summary["config"]["beta"] = 3.0
    saved.write_text(json.dumps(summary))
    assert confirm.main(argv) == 2
    err = capsys.readouterr().err
    assert "'beta': (3.0, 1.0)" in err and err.count("\n") == 1 and calls == []


@pytest.mark.slow
def test_a_real_confirmation_of_tiny_runs_pairs_seeds_and_resumes(blobs_npz, tmp_path, capsys):
    exp = write_experiment(tmp_path / "exp", blobs_npz, TRIALS[:3])
    argv = [str(exp), "--top", "2", "--seeds", "2"]
    assert confirm.main(argv) == 0
    runs = pd.read_parquet(exp / "confirm.parquet")
    assert len(runs) == 6 and set(runs["label"]) == {"defaults", "trial-a1b2c_00001", "trial-a1b2c_00000"}
    assert all(sorted(g) == [1, 2] for _, g in runs.groupby("label")["seed"])  # after seed 0
    assert (runs["status"] == "DONE").all() and runs[["val_acc", "test_acc", "last_test_acc"]].notna().all().all()
    for label, g in runs[runs["label"] != "defaults"].groupby("label"):
        paired = g.merge(runs[runs["label"] == "defaults"], on="seed", suffixes=("", "_d"))
        for split in ("val", "test"):
            mean, low, high, n = stats.paired_interval(paired[f"{split}_acc"], paired[f"{split}_acc_d"])
            assert g[[f"{split}_diff", f"{split}_low", f"{split}_high"]].iloc[0].tolist() == \
                pytest.approx([mean, low, high], nan_ok=True)
        assert g["verdict"].iloc[0] == stats.verdict(g["val_low"].iloc[0], g["val_high"].iloc[0])
    # the seeds' pretrained players are made once and shared by the three configurations
    assert len(list((exp / "pretrain").glob("*.pt"))) == 2 * 3
    md = (exp / "confirm.md").read_text()
    assert "Seeds: 1, 2" in md and "--top 2 --seeds 2" in md
    # a finished population keeps its summary, history and models, not its whole game
    assert not list((exp / "confirm").glob("*/seeds1-2/checkpoint.pt"))
    assert len(list((exp / "confirm").glob("*/seeds1-2/model.pt"))) == 3
    summaries = sorted((exp / "confirm").glob("*/seeds1-2/summary.json"))
    mtimes = [p.stat().st_mtime_ns for p in summaries]
    assert len(summaries) == 3
    capsys.readouterr()
    assert confirm.main(argv) == 0
    assert capsys.readouterr().out.count("read back") == 3
    assert [p.stat().st_mtime_ns for p in summaries] == mtimes
    assert pd.read_parquet(exp / "confirm.parquet").equals(runs)


def test_single_runs_per_seed_of_earlier_versions_are_read_back(tmp_path, capsys, monkeypatch):
    exp = write_experiment(tmp_path / "exp", tmp_path / "blobs.npz")
    calls: list = []
    monkeypatch.setattr(confirm, "_train", _fake_runner(calls))
    plan = confirm.make_plan(exp, top=1, m=2)
    for seed in plan.seeds:  # the defaults ran seed by seed before populations
        cfg = plan.config(plan.candidates[0]).replace(seed=seed, population=1)
        d = plan.seed_dir(plan.candidates[0], seed)
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"seed": seed, "val_acc": 0.5, "test_acc": 0.4,
                                                    "config": cfg.to_dict()}))
    assert confirm.main([str(exp), "--top", "1", "--seeds", "2"]) == 0
    assert [c[0] for c in calls] == [0.5]  # only the trial ran
    runs = pd.read_parquet(exp / "confirm.parquet")
    assert runs[runs["label"] == "defaults"]["val_acc"].tolist() == [0.5, 0.5]


def test_an_interruption_exits_130_and_the_next_invocation_goes_on(tmp_path, capsys, monkeypatch):
    exp = write_experiment(tmp_path / "exp", tmp_path / "blobs.npz")
    calls: list = []
    finish = _fake_runner(calls)

    def interrupted(cfg, run_dir):
        if len(calls) == 1:
            raise KeyboardInterrupt
        return finish(cfg, run_dir)

    monkeypatch.setattr(confirm, "_train", interrupted)
    argv = [str(exp), "--top", "1", "--seeds", "2"]
    assert confirm.main(argv) == 130 and "run the same command" in capsys.readouterr().err
    monkeypatch.setattr(confirm, "_train", finish)
    assert confirm.main(argv) == 0 and len(calls) == 2  # one before, one after
    assert capsys.readouterr().out.count("read back") == 1
