"""The benchmarks on tiny budgets (compare, Table 1, Table 2, the diagnostics): outputs,
selection, resume; their shared core and smoke budget."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from analysis import tables
from benchmarks import compare, core, table1, table2
from benchmarks.diagnostics import distill_room
from kdgan import tags
from kdgan.config import Config, ConfigError
from kdgan.data import DataError
from kdgan.game import NonFiniteLossError
from kdgan.train import train

from conftest import TINY
from conftest import held as held_by

TINY_SET = ["--set", "cls_arch=mlp-small", "--set", "dis_arch=mlp-small", "--set", "batch_size=20",
            "--set", "cls_steps=2", "--set", "tch_steps=1", "--set", "dis_steps=1"]


@pytest.mark.slow
def test_compare_benchmark_table_pairs_by_seed(blobs_npz, tmp_path, capsys):
    out = tmp_path / "cmp"
    sets = [f"{k}={v}" for k, v in {**TINY, "epochs": 1}.items() if k != "n"]
    argv = ["--dataset", str(blobs_npz), "--n", "60", "--methods", "supervised", "kdgan",
            "--seeds", "0", "1", "--out", str(out)] + [a for kv in sets for a in ("--set", kv)]
    assert compare.main(argv) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 4 and set(runs["method"]) == {"supervised", "kdgan"}
    paired = (runs[runs.method == "kdgan"].set_index("seed")["test_acc"]
              - runs[runs.method == "supervised"].set_index("seed")["test_acc"]).mean()
    table = (out / "table.md").read_text()
    assert f"{100 * paired:+.2f}" in table
    # a second call reads the finished runs back instead of running them again
    capsys.readouterr()
    assert compare.main(argv) == 0
    assert "==" not in capsys.readouterr().out
    assert compare.main(argv[:-2] + ["--set", "alpha=3"]) == 2
    # a saved run made with other --set values is refused, not read back
    saved = out / "kdgan-s1" / "summary.json"
    tampered = json.loads(saved.read_text())
    tampered["config"]["cls_lr"] = 0.5
    saved.write_text(json.dumps(tampered))
    capsys.readouterr()
    assert compare.main(argv) == 2 and "cls_lr" in capsys.readouterr().err


def test_run_or_read_reads_back_refuses_another_config_and_records_a_divergence(tmp_path, capsys):
    made = []

    def run(cfg, run_dir):
        made.append(cfg)
        summary = {"val_acc": 0.5, "config": cfg.to_dict()}
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return summary

    cfg = Config.from_dict({"n": 60, "cls_lr": 1e-3})
    summary, status = core.run_or_read(cfg, tmp_path / "r", "a run", {"cls_lr"}, run=run)
    assert (status, len(made)) == ("DONE", 1) and "== a run -> " in capsys.readouterr().out
    summary, status = core.run_or_read(cfg, tmp_path / "r", "a run", {"cls_lr"}, run=run)
    assert (status, len(made), summary["config"]["cls_lr"]) == ("DONE", 1, 1e-3)  # read back
    with pytest.raises(DataError, match=r"'cls_lr': \(0.001, 0.0001\)"):
        core.run_or_read(cfg.replace(cls_lr=1e-4), tmp_path / "r", "a run", {"cls_lr"}, run=run)
    assert core.run_or_read(cfg.replace(cls_lr=1e-4), tmp_path / "r", "a run", run=run)[1] == "DONE"

    def diverge(cfg, run_dir):
        raise NonFiniteLossError("cls/adv is nan at epoch 2")

    summary, status = core.run_or_read(cfg, tmp_path / "d", "a run", run=diverge)
    assert status == "DIVERGED" and "cls/adv" in summary["error"] and not (tmp_path / "d").exists()


def test_select_takes_the_best_mean_the_earlier_of_equals_and_never_an_unfinished_point():
    val = {("a", 0): 0.25, ("a", 1): 0.75, ("b", 0): 0.5, ("b", 1): 0.5, ("c", 0): 0.9, ("c", 1): None}
    asked = []

    def run(overrides, seed):
        asked.append((overrides["p"], seed))
        v = val[(overrides["p"], seed)]
        return {"status": "DIVERGED" if v is None else "DONE", "val_acc": float("nan") if v is None else v}

    chosen, scored = core.select([{"p": "a"}, {"p": "b"}, {"p": "c"}], [0, 1], run)
    assert chosen == {"p": "a"}  # a and b tie at 0.5; c's best seed does not make up for a run lost
    assert [mean for _, mean, _ in scored] == [0.5, 0.5, float("-inf")] and len(asked) == 6
    assert core.select([{"p": "c"}], [0, 1], run) == ({"p": "c"}, []) and len(asked) == 6  # one point: no run


@pytest.mark.slow
def test_table1_selects_on_validation_runs_every_method_and_resumes(blobs_npz, tmp_path, capsys):
    out = tmp_path / "t1"
    argv = ["--smoke", "--dataset", str(blobs_npz), "--n", "60", "--seeds", "0", "1",
            "--methods", "teacher", "supervised", "distn", "kdgan", "--out", str(out), *TINY_SET]
    assert table1.main(argv) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs["method"].unique()) == ["distn", "kdgan", "supervised", "teacher"]
    assert len(runs) == 8 and (runs["status"] == "DONE").all()
    selection = json.loads((out / "selection.json").read_text())
    grid = selection["grid"]["distn"]
    assert len(grid) == len(table1.GRID["distn"])
    best = max(grid, key=lambda g: g["val_acc_mean"])  # chosen by validation accuracy
    assert selection["chosen"]["distn"] == best["overrides"]
    # one teacher per seed, shared by every method of that seed
    assert len(list((out / "pretrain").glob("tch-*.pt"))) == 2
    text = (out / "table.md").read_text()
    for method in ("teacher", "supervised", "distn", "kdgan"):
        assert f"| {method} |" in text
    assert "kdgan above every baseline" in text
    assert (out / "curves.png").exists() and "| kdgan |" in (out / "plateau.md").read_text()
    capsys.readouterr()
    assert table1.main(argv) == 0  # everything is read back, nothing runs again
    assert "== " not in capsys.readouterr().out
    # an invocation for fewer methods keeps the other methods' selection
    assert table1.main(argv[:8] + ["--methods", "supervised"] + argv[13:]) == 0
    assert json.loads((out / "selection.json").read_text())["chosen"]["distn"] == best["overrides"]
    assert table1.main(["--report-only", "--out", str(out)]) == 0
    assert "| distn |" in (out / "select.md").read_text()
    # an ablation reuses the selection and the pretrained players: no grid, no pretraining
    ablation = tmp_path / "t1u"
    before = sorted((out / "pretrain").glob("*.pt"))
    assert table1.main(argv[:8] + ["--methods", "distn", "kdgan", "--set", "unlabeled=40",
                                   "--reuse", str(out), "--out", str(ablation), *TINY_SET]) == 0
    assert not (ablation / "select").exists() and not (ablation / "pretrain").exists()
    assert sorted((out / "pretrain").glob("*.pt")) == before
    assert json.loads((ablation / "selection.json").read_text())["chosen"]["distn"] == best["overrides"]
    ablated = pd.read_parquet(ablation / "runs.parquet")
    assert len(ablated) == 4 and (ablated["status"] == "DONE").all()
    config = json.loads((ablation / "n60" / "distn-s0" / "summary.json").read_text())["config"]
    assert config["unlabeled"] == 40 and config["distn_p"] == best["overrides"]["distn_p"]
    assert table1.main(argv[:8] + ["--methods", "supervised", "--set", "unlabeled=40", "--reuse",
                                   str(out), "--out", str(ablation), *TINY_SET]) == 0
    assert set(json.loads((ablation / "selection.json").read_text())["chosen"]) == {
        "distn", "kdgan", "supervised"}  # a second invocation keeps the first one's choices
    assert table1.main(["--report-only", "--out", str(ablation), "--versus", str(out)]) == 0
    assert "| 60 | distn | 2 |" in (ablation / "versus.md").read_text()
    assert table1.main(["--report-only", "--out", str(ablation), "--versus", str(tmp_path)]) == 2
    assert table1.main(["--reuse", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    assert "selection.json" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert table1.main(["--reuse-selection", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    assert "--reuse-selection" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert table1.main(["--reuse", str(out), "--reuse-selection", str(out), "--out", str(tmp_path / "y")]) == 2
    assert "exclude each other" in capsys.readouterr().err and not (tmp_path / "y").exists()
    # a run made with other hyperparameters than the selection's is refused, not read back
    row = runs[(runs["method"] == "supervised") & (runs["seed"] == 1)].iloc[0]
    summary_file = out / row["run_dir"] / "summary.json"
    saved = summary_file.read_text()
    tampered = json.loads(saved)
    tampered["config"]["cls_lr"] = 0.5
    summary_file.write_text(json.dumps(tampered))
    capsys.readouterr()
    assert table1.main(argv) == 2
    assert "cls_lr" in capsys.readouterr().err
    summary_file.write_text(saved)
    # committed without weights and moved elsewhere, the results still render
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("checkpoint.pt", "pretrain"))
    (moved / "plateau.md").unlink()
    (moved / "runs.parquet").unlink()  # rebuilt from the runs' summaries
    assert table1.main(["--report-only", "--out", str(moved)]) == 0
    assert "| kdgan |" in (moved / "plateau.md").read_text()
    rebuilt = pd.read_parquet(moved / "runs.parquet")
    key = ["method", "n", "seed"]
    pd.testing.assert_frame_equal(rebuilt.sort_values(key).reset_index(drop=True)[runs.columns],
                                  runs.sort_values(key).reset_index(drop=True), check_dtype=False)


@pytest.mark.slow
def test_table1_as_populations_gives_the_runs_of_one_run_per_seed(blobs_npz, tmp_path, capsys):
    """--population on trains each method's seeds (and each grid point's) as one population
    and writes every member's folder as its single run would: the same runs.parquet."""
    argv = ["--smoke", "--dataset", str(blobs_npz), "--n", "60", "--seeds", "0", "1", "2", "3",
            "--select-seeds", "0", "1", "--methods", "supervised", "distn", *TINY_SET]
    assert table1.main(argv + ["--out", str(tmp_path / "one"), "--population", "off"]) == 0
    assert table1.main(argv + ["--out", str(tmp_path / "pop"), "--population", "on"]) == 0
    out = capsys.readouterr().out
    assert "supervised n=60 cls_lr=0.001 seeds 0..1 as one population" in out  # a grid point's
    assert "supervised n=60 seeds 2..3 as one population" in out  # the table's other seeds
    drop = ["wall_s", "pretrain_s"]  # the clocks
    a, b = (pd.read_parquet(tmp_path / d / "runs.parquet").drop(columns=drop) for d in ("one", "pop"))
    pd.testing.assert_frame_equal(a, b)
    for d in ("one", "pop"):  # each member's folder has a single run's files
        assert {p.name for p in (tmp_path / d / "n60" / "supervised-s3").iterdir()} >= {
            "summary.json", "history.parquet", "model.pt", "train_indices.json"}
    with pytest.raises(SystemExit) as exit_:  # argparse names the choices
        table1.main(["--population", "sometimes", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "--population: invalid choice: 'sometimes'" in capsys.readouterr().err


def test_table1_refuses_a_bad_method_before_running(tmp_path, capsys):
    assert table1.main(["--methods", "kdgn", "--out", str(tmp_path / "x")]) == 2
    assert "kdgn" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_plateau_epoch_is_where_99_percent_of_the_final_accuracy_is_reached():
    h = pd.DataFrame({"method": "m", "seed": 0, "epoch": range(8),
                      "val/acc": [0.5, 0.8, 0.9, 0.95, 1.0, 1.0, 1.0, 1.0]})
    p = tables.plateau(h, fraction=0.99, tail=4)
    assert p.iloc[0]["epoch_mean"] == 4


@pytest.mark.slow
def test_table2_selects_on_validation_and_resumes(tmp_path, capsys):
    path = tags.write(tmp_path / "c.parquet", tags.synthesize(n_train=200, n_val=60, n_test=60,
                                                              num_labels=8, dim=16))
    out = tmp_path / "t2"
    argv = ["--collection", f"syn={path}", "--seeds", "0", "1", "--select-seeds", "0", "--smoke",
            "--methods", "knn", "supervised", "kdgan", "teacher", "--set", "n=100",
            "--set", "cls_arch=mlp-small", "--out", str(out)]
    assert table2.main(argv) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["method"]) == {"knn", "supervised", "kdgan", "teacher"}
    assert len(runs) == 8 and runs[[f"test_{m}" for m in table2.RANKING]].notna().all().all()
    selection = json.loads((out / "selection.json").read_text())
    for method in ("supervised", "kdgan"):
        grid = selection["grid"]["syn"][method]
        assert [g["overrides"] for g in grid] == table2.GRID[method]
        best = max(grid, key=lambda g: g["val_p@1_mean"])  # chosen on validation, seed 0 only
        assert selection["chosen"]["syn"][method] == best["overrides"]
        chosen = runs[runs["method"] == method]
        assert set(chosen["overrides"]) == {json.dumps(best["overrides"], sort_keys=True)}
        config = json.loads((table2.run_dir(out, "syn", method, 1, best["overrides"])
                             / "summary.json").read_text())["config"]
        assert all(config[k] == v for k, v in best["overrides"].items())
    # every grid point ran on the selection seed only; seed 1 only for the chosen point
    assert len(list((out / "syn").glob("kdgan*-s0"))) == len(table2.GRID["kdgan"])
    assert len(list((out / "syn").glob("kdgan*-s1"))) == 1
    assert "| syn | kdgan |" in (out / "select.md").read_text()
    text = (out / "table.md").read_text()
    assert "**syn**" in text and "| knn | 2 |" in text
    assert "the teacher (image + text) beats C alone" in text
    assert "(means over 2 seeds)" in text and "(means over 1 seeds, seeds outside the selection)" in text
    capsys.readouterr()
    assert table2.main(argv) == 0  # everything is read back, nothing runs again
    assert "== " not in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), runs)
    # a saved run of another grid point than its folder names is refused, not read back
    saved = table2.run_dir(out, "syn", "supervised", 1, selection["chosen"]["syn"]["supervised"]) / "summary.json"
    tampered = json.loads(saved.read_text())
    tampered["config"]["cls_lr"] = 0.5
    saved.write_text(json.dumps(tampered))
    assert table2.main(argv) == 2 and "cls_lr" in capsys.readouterr().err
    assert table2.main(["--collection", "nope", "--out", str(out)]) == 2
    bad = tmp_path / "bad"  # refused before the synthetic collection is written
    assert table2.main(["--synthetic", "--set", "alpah=1", "--out", str(bad)]) == 2
    assert table2.main(["--synthetic", "--methods", "kdgn", "--out", str(bad)]) == 2
    assert table2.main(["--synthetic", "--search", str(tmp_path / "nope"), "--out", str(bad)]) == 2
    assert not bad.exists()


def test_label_mass_is_the_softmax_probability_on_the_labels():
    import torch
    from benchmarks.diagnostics.teacher_fit import label_mass
    from kdgan.data import Split

    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    model = torch.nn.Identity()  # its "logits" are log-probabilities: softmax gives probs back
    logp = probs.log()
    single = Split(logp, torch.tensor([0, 2]), None)
    assert abs(label_mass(model, logp, single) - (0.7 + 0.3) / 2) < 1e-6
    multi = Split(logp, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]), None)
    assert abs(label_mass(model, logp, multi) - (0.9 + 0.9) / 2) < 1e-6


@pytest.mark.slow
def test_teacher_fit_rebuilds_the_runs_pretrained_players(blobs_npz, tmp_path):
    from benchmarks.diagnostics.teacher_fit import fit_report, main
    from kdgan.config import Config
    from kdgan.train import train

    cfg = Config.from_dict({"dataset": str(blobs_npz), "method": "kdgan", "n": 60, "seed": 1,
                            "pretrain_epochs": 2, "dis_pretrain_epochs": 1, "epochs": 1,
                            "cls_arch": "mlp-small", "dis_arch": "mlp-small", "batch_size": 20,
                            "pretrain_cache": str(tmp_path / "cache")})
    run_dir = tmp_path / "run"
    train(cfg, run_dir, quiet=True)
    rows = {r["player"]: r for r in fit_report(run_dir)}
    history = pd.read_parquet(run_dir / "history.parquet")
    # the classifier rebuilt from the cache is the one the run started its game from
    assert abs(rows["cls"]["test acc"] - history.loc[history["epoch"] == 0, "test/acc"].item()) < 1e-9
    for r in rows.values():
        assert 0 <= r["test label mass"] <= 1 and 0 <= r["train label mass"] <= 1
    assert main([str(tmp_path / "nothing-here")]) == 2
    # --end: the players the game ended with, read from the checkpoint: the classifier is the
    # one the last epoch evaluated, and the teacher (trained in kdgan's game) has moved
    end = [r for r in fit_report(run_dir, end=True) if r["stage"] == "end (epoch 1)"]
    ends = {r["player"]: r for r in end}
    assert set(ends) == {"cls", "tch"}
    assert abs(ends["cls"]["test acc"] - history.loc[history["epoch"] == 1, "test/acc"].item()) < 1e-9
    assert ends["tch"]["test label mass"] != rows["tch"]["test label mass"]
    # --into: the same rows, in a table file that a failing run after them does not lose
    table = tmp_path / "teacher-end.md"
    assert main(["--end", "--into", str(table), str(run_dir), str(tmp_path / "nothing-here")]) == 2
    written = table.read_text().splitlines()
    assert len(written) == 2 + 4 and all(line.startswith(f"| {run_dir} | ") for line in written[2:])
    assert f"| {run_dir} | end (epoch 1) | tch | acc {ends['tch']['train acc']:.3f} |" in written[-1]
    (run_dir / "checkpoint.pt").unlink()
    assert main(["--end", str(run_dir)]) == 2


def test_teacher_fit_into_merges_the_runs_measured_now_into_the_table(tmp_path, capsys):
    from benchmarks.diagnostics.teacher_fit import HEADER, main, merge_into

    def rows(run, value):
        return [f"| {run} | {stage} | tch | acc {value} | acc {value} | 1.000 | 0.900 |"
                for stage in ("pretrained", "end (epoch 3)")]

    table = tmp_path / "teacher-end.md"
    table.write_text("\n".join(HEADER + rows("r/n1000/kdgan-s1", "0.5") + rows("r/n100/kdgan-s10", "0.6")
                               + rows("r/n100/kdgan-s2", "0.7")) + "\n")
    total = merge_into(table, {"r/n1000/kdgan-s1": rows("r/n1000/kdgan-s1", "0.8"),
                               "r/n100/codis-s2": rows("r/n100/codis-s2", "0.9")})
    lines = table.read_text().splitlines()
    assert total == 4 and lines[:2] == HEADER and len(lines) == 2 + 4 * 2
    # folders with numbers as numbers (n100 before n1000), then seed (2 before 10), then name
    order = [line.split("|")[1].strip() for line in lines[2::2]]
    assert order == ["r/n100/codis-s2", "r/n100/kdgan-s2", "r/n100/kdgan-s10", "r/n1000/kdgan-s1"]
    assert lines[-2:] == rows("r/n1000/kdgan-s1", "0.8")  # the old rows of a run measured again are gone
    # a file that is not this command's table is refused before anything is measured
    other = tmp_path / "notes.md"
    other.write_text("# my notes\n")
    capsys.readouterr()
    assert main(["--into", str(other), str(tmp_path / "no-run")]) == 2
    assert "--into" in capsys.readouterr().err and other.read_text() == "# my notes\n"


def test_dip_finds_the_lowest_validation_epoch_of_the_first_passes(tmp_path, capsys):
    from benchmarks.diagnostics.dip import dip_rows, main

    run = tmp_path / "kdgan-s0"
    run.mkdir()
    # two members (a population's history): seed 3 falls at epoch 2, seed 4 never falls
    val = {3: [0.90, 0.91, 0.40, 0.85, 0.20], 4: [0.80, 0.81, 0.82, 0.83, 0.84]}
    real = {3: [None, 0.50, 0.62, 0.45, 0.50], 4: [None, 0.50, 0.50, 0.51, 0.50]}
    pd.DataFrame([{"epoch": e, "seed": s, "val/acc": val[s][e], "dis/d_real": real[s][e]}
                  for s in val for e in range(5)]).to_parquet(run / "history.parquet")
    members = [{"seed": 3, "status": "finished", "test_acc": 0.89, "best_epoch": 1, "epochs_run": 4},
               {"seed": 4, "status": "finished", "test_acc": 0.84, "best_epoch": 4, "epochs_run": 4}]
    (run / "summary.json").write_text(json.dumps({"config": {"alpha": 0.5, "beta": 2.0, "gamma": 0.01},
                                                  "members": members}))
    first, second = dip_rows(run, passes=3)  # epoch 4 (0.20) is past the window
    assert (first["seed"], first["val_start"], first["val_low"], first["low_epoch"]) == (3, 0.90, 0.40, 2)
    assert (first["val_end"], first["end_epoch"], round(first["d_off"], 6)) == (0.85, 3, 0.12)
    assert (second["seed"], second["val_low"], second["low_epoch"], round(second["d_off"], 6)) == (4, 0.81, 1, 0.01)
    assert dip_rows(run, passes=10)[0]["end_epoch"] == 4  # a run that stopped before K: its last epoch
    capsys.readouterr()
    assert main(["--passes", "3", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| 3 | 0.5 | 2 | 0.01 | 90.00 | 40.00 (2) | 85.00 (3) | 0.120 | 89.00 (1 / 4) |" in out and "val at 3" in out
    assert main([str(tmp_path / "nothing-here")]) == 2
    assert "no history.parquet" in capsys.readouterr().err
    # --against: the same seeds in a second configuration, paired by seed
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame([{"epoch": e, "seed": s, "val/acc": v - (0.10 if s == 3 else 0.30) * (e > 0), "dis/d_real": 0.5}
                  for s in (3, 4, 5) for e, v in enumerate(val.get(s, val[4]))]).to_parquet(other / "history.parquet")
    assert main(["--passes", "3", str(run), "--against", str(other)]) == 0
    out = capsys.readouterr().out
    # lowest val: seed 3 0.40 vs 0.30, seed 4 0.81 vs 0.51 -> differences 10 and 30 points,
    # mean 20, sd 14.14, t(0.975, 1) = 12.706 -> half-width 127.06
    assert "Paired over seeds 3, 4 " in out
    assert "- lowest val of epochs 1-3: +20.00 [-107.06, +147.06]" in out
    assert "- val at epoch 3: +20.00 [-107.06, +147.06]" in out
    assert "test at each run's best" not in out  # `other` has no summary: unfinished
    assert "| - |" in out.splitlines()[-7]  # its rows say so
    other_members = [{**m, "test_acc": m["test_acc"] - 0.01 * (m["seed"] - 2)} for m in members]
    (other / "summary.json").write_text(json.dumps({"config": {"epochs": 100}, "members": other_members}))
    assert main(["--passes", "3", str(run), "--against", str(other)]) == 0
    assert "test at each run's best" not in capsys.readouterr().out  # another budget: not comparable
    (other / "summary.json").write_text(json.dumps({"members": other_members}))
    assert main(["--passes", "3", str(run), "--against", str(other)]) == 0
    # test at best: seed 3 0.89 vs 0.88, seed 4 0.84 vs 0.82 -> 1 and 2 points, mean 1.5,
    # sd 0.7071, half-width 12.706 * 0.5 = 6.353
    assert "- test at each run's best validation epoch: +1.50 [-4.85, +7.85]" in capsys.readouterr().out
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    pd.DataFrame([{"epoch": e, "seed": 9, "val/acc": 0.5} for e in range(3)]).to_parquet(lonely / "history.parquet")
    assert main([str(run), "--against", str(lonely)]) == 2
    assert "no seed in common" in capsys.readouterr().err


def test_targets_compare_methods_on_the_seeds_they_all_have():
    rows = [("kdgan", 0, 0.90), ("kdgan", 1, 0.80), ("distn", 0, 0.84), ("distn", 1, 0.84),
            ("distn", 2, 0.99)]  # distn's seed 2 has no kdgan counterpart yet
    done = pd.DataFrame([{"method": m, "n": 100, "seed": s, "test_acc": a} for m, s, a in rows])
    lines = "\n".join(tables.target_lines(done, table1.TARGETS))
    assert "compared on the 2 seeds every method has (0, 1)" in lines
    assert "kdgan 85.00 vs target 88.5: NOT met" in lines
    # distn: 84 over seeds 0-1 (89 over 0-2, which would put it above kdgan)
    assert "kdgan above every baseline: yes" in lines


def test_versus_pairs_the_seeds_both_benchmarks_have():
    def runs(rows):
        return pd.DataFrame([{"method": m, "n": 100, "seed": s, "status": "DONE", "test_acc": a}
                             for m, s, a in rows])
    here = runs([("distn", 0, 0.90), ("distn", 1, 0.92), ("distn", 2, 0.99), ("kdgan", 0, 0.91)])
    there = runs([("distn", 0, 0.88), ("distn", 1, 0.89), ("kdgan", 1, 0.80)])
    text = tables.versus_markdown(here, there, "with", "without", list(table1.TABLE_METHODS))
    # distn: seeds 0 and 1 only (seed 2 is not in `there`); differences 2 and 3 points
    assert "| 100 | distn | 2 | 91.00 | 88.50 | +2.50 +- 0.71 |" in text
    assert "kdgan" not in text.split("\n\n")[0]  # no seed in common


@pytest.mark.slow
def test_table2_states_the_synthetic_collections_ceilings(tmp_path):
    path = tags.write(tmp_path / "s.parquet", tags.synthesize())
    image, text = table2.ceiling(str(path))
    assert "C's ideal" in image and "T's ideal" in text
    map_of = [float(line.split("MAP ")[1].split(",")[0]) for line in (image, text)]
    assert 0.3 < map_of[0] < map_of[1] <= 1.0  # the text can only help the posterior


@pytest.mark.slow
def test_distill_room_trains_a_student_on_each_target(tmp_path):
    gen = dict(n_train=200, n_val=60, n_test=60, num_labels=8, dim=16)
    path = tags.write(tmp_path / "c.parquet", tags.synthesize(**gen))
    cfg = Config.from_dict({"dataset": str(path), "method": "kdgan", "n": 120, "seed": 1,
                            "pretrain_epochs": 40, "dis_pretrain_epochs": 1, "epochs": 1,
                            "cls_arch": "mlp-small"})
    run_dir = tmp_path / "run"
    train(cfg, run_dir, quiet=True)
    rows = pd.DataFrame(distill_room.room(run_dir, epochs=2, folds=2, generator=gen))
    assert list(rows["target"]) == list(distill_room.TARGETS)
    mass = rows.set_index("target")["train_tag_mass"]
    assert mass["tags"] == pytest.approx(1.0)
    assert mass["ideal teacher"] < 0.99  # the generator knows the tags are incomplete
    # the teacher fitted to these images memorised their tags; teachers that never saw an
    # image (half the out-of-fold target) put far less on them
    assert mass["teacher"] > 0.9 and 2 * (mass["teacher, out of fold"] - 0.5) < mass["teacher"] - 0.2
    assert rows[[f"test_{m}" for m in distill_room.RANKING]].apply(lambda c: c.between(0, 1)).all().all()
    assert "| ideal teacher | 1 |" in tables.room_markdown(rows, list(distill_room.TARGETS))
    assert distill_room.main([str(tmp_path / "missing")]) == 2
    assert distill_room.main([str(run_dir), "--folds", "1"]) == 2


def test_table2_takes_the_best_finished_trial_of_a_search_with_the_settings_it_ran_under(tmp_path, capsys):
    path = tags.write(tmp_path / "c.parquet", tags.synthesize(n_train=200, n_val=60, n_test=60,
                                                              num_labels=8, dim=16))
    base = Config.from_dict({"dataset": str(path), "n": 100})
    row = {**base.to_dict(), "dataset": "/elsewhere/c.parquet", "threads": 4}
    trials = pd.DataFrame([
        {**row, "trial_id": "a", "status": "TERMINATED", "best_val_acc": 0.41, "alpha": 0.1, "beta": 2.0, "gamma": 0.5},
        {**row, "trial_id": "b", "status": "ERROR", "best_val_acc": 0.99, "alpha": 0.9, "beta": 9.0, "gamma": 9.0},
        {**row, "trial_id": "c", "status": "TERMINATED", "best_val_acc": 0.45, "alpha": 0.123456,
         "beta": 0.0262345, "gamma": 7.0, "distill_temperature": 1.0, "tch_arch": "text-linear"},
    ])
    search = tmp_path / "search"
    search.mkdir()
    trials.to_parquet(search / "trials.parquet")
    capsys.readouterr()
    point = table2.search_best(search, base)
    # the errored trial's score is not a result; the game's form comes along, the players stay ours
    assert point == {"alpha": 0.1235, "beta": 0.02623, "gamma": 7.0, "distill_temperature": 1.0}
    assert core.tag(point) == "alpha=0.1235-beta=0.02623-distill_temperature=1-gamma=7"
    said = capsys.readouterr().out
    assert "the search ran with tch_arch='text-linear' (here 'text-mlp')" in said
    assert "dataset" not in said and "threads" not in said  # where it ran is no difference
    with pytest.raises(ConfigError, match="no trials.parquet"):
        table2.search_best(tmp_path / "nope", base)
    argv = ["--collection", f"syn={path}", "--search", str(search), "--out", str(tmp_path / "t2")]
    assert table2.main(argv + ["--no-grid"]) == 2
    assert "--search adds to KDGAN's validation grid" in capsys.readouterr().err
    assert not (tmp_path / "t2").exists()


# The smoke budgets as they resolve (every space, every entry point); sharing one budget
# must leave each exactly as it was.
SPACE_SMOKE = {
    "cifar10": {"dataset": "cifar10", "n": 500, "method": "kdgan", "pretrain_epochs": 1,
                "tch_arch": "resnet20", "dis_pretrain_epochs": 1, "epochs": 2, "cls_steps": 1,
                "tch_steps": 1, "dis_steps": 1},
    "mnist": {"dataset": "mnist", "n": 100, "method": "kdgan", "population": 2, "pretrain_epochs": 2,
              "dis_pretrain_epochs": 1, "epochs": 2, "cls_steps": 1, "tch_steps": 1, "dis_steps": 1},
    "synthetic": {"dataset": "~/kdgan_data/synthetic.parquet", "n": 200, "method": "kdgan",
                  "pretrain_epochs": 1, "tch_arch": "text-linear", "tch_weight_decay": 0.001,
                  "cls_pretrain_epochs": 0, "cls_steps": 7, "distill_temperature": 1.0,
                  "dis_pretrain_epochs": 1, "epochs": 2, "tch_steps": 1, "dis_steps": 1},
    "yfcc": {"dataset": "~/kdgan_data/yfcc-popular.parquet", "n": 200, "val_size": 2000,
             "method": "kdgan", "pretrain_epochs": 1, "dis_pretrain_epochs": 1, "epochs": 2,
             "cls_steps": 1, "tch_steps": 1, "dis_steps": 1},
}


def test_every_spaces_smoke_config_is_what_it_was():
    from kdgan import spaces

    assert sorted(spaces.available()) == sorted(SPACE_SMOKE)
    for name, expected in SPACE_SMOKE.items():
        assert spaces.load(name).fixed_config(smoke=True) == expected


class _Captured(Exception):
    pass


def _first_config(monkeypatch, main, argv) -> Config:
    """The config of the first run `main(argv)` starts (caught as the run is built)."""
    import kdgan.train

    seen = []

    def capture(cfg, log=None):
        seen.append(cfg)
        raise _Captured

    monkeypatch.setattr(kdgan.train, "Population", capture)
    with pytest.raises(_Captured):
        main(argv)
    return seen[0]


def test_every_benchmarks_smoke_config_is_what_it_was(blobs_npz, tmp_path, monkeypatch):
    import kdgan.train
    from benchmarks import compare

    smoke = {"pretrain_epochs": 2, "dis_pretrain_epochs": 1, "epochs": 2}
    cfg, _ = kdgan.train.parse_args(["--smoke", "--out", str(tmp_path / "r")])
    assert cfg == Config.from_dict(smoke)
    data = str(blobs_npz)
    common = ["--smoke", "--seeds", "0", "--methods", "supervised"]
    out = tmp_path / "cmp"
    cfg = _first_config(monkeypatch, compare.main, [*common, "--dataset", data, "--n", "60", "--out", str(out)])
    assert cfg == Config.from_dict({**smoke, "dataset": data, "n": 60, "method": "supervised", "seed": 0,
                                    "pretrain_cache": str(out / "pretrain")})
    out = tmp_path / "t1"
    cfg = _first_config(monkeypatch, table1.main, [*common, "--dataset", data, "--n", "60", "--out", str(out)])
    assert cfg == Config.from_dict({**smoke, "epochs": 3, "dataset": data, "n": 60, "method": "supervised",
                                    "seed": 0, "pretrain_cache": str(out / "pretrain")})
    path = str(tags.write(tmp_path / "c.parquet", tags.synthesize(n_train=200, n_val=60, n_test=60,
                                                                  num_labels=8, dim=16)))
    out = tmp_path / "t2"
    cfg = _first_config(monkeypatch, table2.main, [*common, "--collection", f"syn={path}", "--set", "n=100",
                                                   "--out", str(out)])
    assert cfg == Config.from_dict({**smoke, "dataset": path, "n": 100, "method": "supervised", "seed": 0,
                                    "pretrain_cache": str(out / "pretrain")})


def _plain_student(cfg, data, target, epochs):
    """distill_room's student as it was first written, its own Adam loop: the reference."""
    import torch
    import torch.nn.functional as F
    from kdgan.game import Game
    from kdgan.metrics import RANKING, ranking_metrics

    def probs(model, x):
        model.eval()
        with torch.no_grad():
            return F.softmax(model(x), dim=-1)

    model = Game(cfg.replace(method="supervised"), data, torch.device("cpu")).players["cls"]
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.pretrain_lr)
    target = target / target.sum(dim=1, keepdim=True)
    best = {"val_map": -1.0}
    for epoch in range(1, epochs + 1):
        model.train()
        for index in torch.randperm(len(target)).split(cfg.batch_size):
            loss = -(target[index] * F.log_softmax(model(data.train.x[index]), -1)).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_map = ranking_metrics(probs(model, data.val.x), tags.relevant(data.val))["map"]
        if val_map > best["val_map"]:
            test = ranking_metrics(probs(model, data.test.x), tags.relevant(data.test))
            best = {"val_map": val_map, "epoch": epoch, **{f"test_{m}": test[m] for m in RANKING}}
    return best


def test_distill_rooms_student_trains_exactly_as_the_plain_loop(tmp_path):
    import torch

    path = tags.write(tmp_path / "c.parquet", tags.synthesize(n_train=200, n_val=60, n_test=60,
                                                              num_labels=8, dim=16))
    cfg = Config.from_dict({"dataset": str(path), "n": 120, "seed": 3, "cls_arch": "mlp-small",
                            "batch_size": 32, "device": "cpu"})
    data = tags.load(cfg)
    y = data.train.y
    target = 0.5 * y / y.sum(1, keepdim=True) + 0.5 * torch.softmax(
        torch.randn(y.shape, generator=torch.Generator().manual_seed(0)), -1)
    reference = _plain_student(cfg, data, target, epochs=4)
    student = distill_room.train_student(cfg, data, target, 4, torch.device("cpu"))
    assert student == reference  # every metric to the last bit, the same pass
    assert data.train.y is y  # the run's data is left as it was


def test_search_report_compares_two_searches_picks_on_the_shared_fresh_seeds():
    from benchmarks import search_report

    def confirm(name: str, shift: float) -> dict:
        rows = [{"label": "trial-x", "rank": 1, "trial_id": f"{name}1", "seed": seed, "status": "DONE",
                 "val_acc": 0.80 + 0.01 * seed + shift, "test_acc": 0.79 + 0.01 * seed + shift}
                for seed in (4, 5, 6)]
        rows.append({"label": "defaults", "rank": 0, "trial_id": "", "seed": 4, "status": "DONE",
                     "val_acc": 0.0, "test_acc": 0.0})
        return {"name": name, "confirm": pd.DataFrame(rows)}

    text = search_report.confirmed_picks(confirm("tpe", 0.02), confirm("random", 0.0))
    assert "3 seeds: 4..6" in text and "Picks: tpe trial tpe1, random trial random1" in text
    # every seed 2 points apart: a zero-width interval above 0
    assert "| val accuracy (%) | 87.00 | 85.00 | +2.00 [+2.00, +2.00] | better than random pick |" in text
    assert search_report.confirmed_picks(confirm("a", 0), {"name": "b", "confirm": None}) == ""


# ------------------------------------------------------------------ table1 --protocol passes
def test_passes_budget_is_one_pass_per_epoch_in_the_default_ratio():
    steps = {n: {k: table1.budget(n, False, "passes")[k] for k in ("cls_steps", "tch_steps", "dis_steps")}
             for n in (100, 1000, 5000, 10000)}
    # ceil(n / 32) classifier steps; teacher and discriminator at 2/8 and 4/8 of it, rounded up
    assert steps == {100: {"cls_steps": 4, "tch_steps": 1, "dis_steps": 2},
                     1000: {"cls_steps": 32, "tch_steps": 8, "dis_steps": 16},
                     5000: {"cls_steps": 157, "tch_steps": 40, "dis_steps": 79},
                     10000: {"cls_steps": 313, "tch_steps": 79, "dis_steps": 157}}
    assert table1.pass_steps(1000, 64) == {"cls_steps": 16, "tch_steps": 4, "dis_steps": 8}
    assert table1.pass_steps(10, 32) == {"cls_steps": 1, "tch_steps": 1, "dis_steps": 1}
    for n in (100, 1000, 10000):  # PASSES' epochs, patience and D pretraining; BUDGET's pretraining
        b = table1.budget(n, False, "passes")
        assert {k: b[k] for k in table1.PASSES[n]} == table1.PASSES[n]
        assert b["pretrain_epochs"] == table1.BUDGET[n]["pretrain_epochs"] and 0 < b["patience"] < b["epochs"]
        assert b["lr_plateau"] * 4 == b["patience"] and b["lr_cuts"] == 3  # three halvings, then a stop
        Config.from_dict({**b, "n": n})  # a valid configuration
    assert table1.budget(5000, False, "passes")["epochs"] == table1.PASSES[1000]["epochs"]
    # D's pretraining (in D steps) shrinks relative to the game's D steps as n grows
    share = [table1.budget(n, False, "passes")["dis_pretrain_epochs"] / table1.budget(n, False, "passes")["epochs"]
             for n in (100, 1000, 10000)]
    assert share == sorted(share, reverse=True)
    # the fixed protocol is what it was: BUDGET's pretraining, the defaults' game
    assert table1.budget(1000, False) == table1.budget(1000, False, "fixed") == {"pretrain_epochs": 40}
    assert table1.budget(60, True, "passes", 20) == {**table1.SMOKE_PASSES, "cls_steps": 3, "tch_steps": 1,
                                                     "dis_steps": 2}
    with pytest.raises(ConfigError, match="protocol"):
        table1.budget(100, False, "epochs")


def _fake_runs() -> pd.DataFrame:
    sup = [0.90, 0.91, 0.92, 0.93]
    acc = {"supervised": sup,
           "kdgan": [s + d for s, d in zip(sup, (0.011, 0.009, 0.011, 0.009))],  # +1.0 +- 0.1
           "codis": [s + 0.01 + d for s, d in zip(sup, (-0.01, 0.01, -0.02, 0.02))],  # kdgan - codis: 0 on average
           "teacher": [0.99] * 4}
    acc["distn"] = [k + 0.02 for k in acc["kdgan"]]  # kdgan - distn = -2 on every seed
    rows = [{"method": m, "n": 100, "seed": s, "status": "DONE", "test_acc": a, "last_test_acc": a - 0.001}
            for m, accs in acc.items() for s, a in enumerate(accs)]
    rows.append({"method": "nagan", "n": 100, "seed": 0, "status": "DONE", "test_acc": 0.5, "last_test_acc": 0.1})
    return pd.DataFrame(rows)


def test_paired_intervals_and_their_verdicts():
    runs = _fake_runs()
    methods = [m for m in table1.TABLE_METHODS if m in set(runs["method"])]
    pairs = tables.table1_pairs(methods, table1.DISTILLERS)
    assert pairs == [("kdgan", "supervised"), ("kdgan", "distn"), ("kdgan", "codis"), ("kdgan", "nagan"),
                     ("distn", "supervised"), ("codis", "supervised"), ("nagan", "supervised")]
    p = tables.paired_table(runs, pairs).set_index(["a", "b"])
    r = p.loc[("kdgan", "supervised")]
    half = 3.182446 * 0.11547005 / 2  # t(0.975, 3) * sd / sqrt(4)
    assert r["seeds"] == 4 and r["diff"] == pytest.approx(1.0)
    assert (r["low"], r["high"]) == pytest.approx((1.0 - half, 1.0 + half), abs=1e-4)
    assert r["verdict"] == "above" and r["last_verdict"] == "above"
    assert p.loc[("kdgan", "distn"), "diff"] == pytest.approx(-2.0) and p.loc[("kdgan", "distn"), "verdict"] == "below"
    assert p.loc[("kdgan", "codis"), "verdict"] == "not distinguishable"
    assert p.loc[("distn", "supervised"), "verdict"] == "above"
    assert p.loc[("kdgan", "nagan"), "seeds"] == 1 and p.loc[("kdgan", "nagan"), "verdict"] == "too few seeds"
    text = tables.paired_markdown(tables.paired_table(runs, pairs))
    assert "| 100 | kdgan | distn | 4 | 92.50 | 94.50 | -2.00 [-2.00, -2.00] | below |" in text
    assert ("- n=100: kdgan is above supervised; below distn; not distinguishable from codis; "
            "too few seeds to tell against nagan") in text
    assert "- n=100: distn is above supervised" in text
    # the passes table has them, the supervised targets and the wall time per n; the fixed one does not
    runs = runs.assign(val_acc=runs["test_acc"], best_epoch=3, epochs_run=5, wall_s=10.0, pretrain_s=2.0,
                       n=1000)
    passes, fixed = table1.table(runs, "passes"), table1.table(runs, "fixed")
    assert "## Paired comparisons" in passes and "## Paired comparisons" not in fixed
    assert "- n=1,000: supervised 91.50 over 4 seeds vs target 96.0: NOT met" in passes
    assert "| kdgan | 1,000 | 4 | 10 | 2 | 5.0 | 3.0 | 40 |" in passes
    assert fixed == tables.table1_markdown(runs, [m for m in table1.TABLE_METHODS if m in set(runs["method"])],
                                           table1.TARGETS)


@pytest.mark.slow
def test_table1_passes_protocol_runs_records_and_refuses_a_mix(blobs_npz, tmp_path, capsys, monkeypatch):
    chosen = tmp_path / "chosen"  # the hyperparameters, as an earlier benchmark chose them
    chosen.mkdir()
    (chosen / "selection.json").write_text(json.dumps({"chosen": {"supervised": {}, "kdgan": {}}, "grid": {}}))
    out = tmp_path / "t1p"
    # the teacher's saved config has epochs 0 (fixed by its method), not the budget's: read back
    argv = ["--smoke", "--protocol", "passes", "--dataset", str(blobs_npz), "--n", "60", "--seeds", "0", "1",
            "--methods", "teacher", "supervised", "kdgan", "--reuse-selection", str(chosen), "--out", str(out), *TINY_SET]
    assert table1.main(argv) == 0
    # the choices came from `chosen`; the pretraining was written here, not there
    assert not (chosen / "pretrain").exists() and any((out / "pretrain").glob("*.pt"))
    assert json.loads((out / "selection.json").read_text())["reused_from"] == str(chosen)
    assert not (out / "select").exists()
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["protocol"] == "passes"
    b = protocol["budgets"]["60"]  # batch_size 20 from --set: 3 classifier steps a pass
    assert (b["cls_steps"], b["tch_steps"], b["dis_steps"], b["patience"]) == (3, 1, 2, 2)
    assert "| 60 |" in (out / "protocol.md").read_text()
    summary = json.loads((out / "n60" / "kdgan-s0" / "summary.json").read_text())
    assert summary["config"]["cls_steps"] == 3 and summary["config"]["patience"] == 2
    text = (out / "table.md").read_text()
    assert "## Paired comparisons" in text and "| 60 | kdgan | supervised | 2 |" in text
    assert (out / "curves-n60.png").exists() and "### n = 60" in (out / "plateau.md").read_text()
    # the folder remembers its protocol: resumed without --protocol, rendered the same
    capsys.readouterr()
    assert table1.main([a for a in argv if a not in ("--protocol", "passes")]) == 0
    assert "== " not in capsys.readouterr().out
    assert table1.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "table.md").read_text() == text
    # a run of another budget (the protocol's settings changed since) is refused, not read back
    monkeypatch.setattr(table1, "SMOKE_PASSES", {**table1.SMOKE_PASSES, "lr_plateau": 2})
    assert table1.main(argv) == 2
    assert "lr_plateau" in capsys.readouterr().err
    monkeypatch.undo()
    # a folder of one protocol refuses the other
    assert table1.main(["--report-only", "--protocol", "fixed", "--out", str(out)]) == 2
    assert "protocol" in capsys.readouterr().err
    fixed = tmp_path / "t1f"
    assert table1.main([a for a in argv if a not in ("--protocol", "passes")][:-len(TINY_SET) - 2]
                       + ["--out", str(fixed), *TINY_SET]) == 0
    assert not (fixed / "protocol.json").exists()
    assert table1.main(argv[:-len(TINY_SET) - 2] + ["--out", str(fixed), *TINY_SET]) == 2
    assert "fixed protocol" in capsys.readouterr().err


def test_committed_table1_renders_as_it_was(tmp_path):
    """results/table1 (the fixed protocol) re-rendered with --report-only gives its committed
    table.md and plateau.md, byte for byte, and no protocol file."""
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "results" / "table1"
    if not (committed / "table.md").exists():
        pytest.skip("results/table1 is not in this checkout")
    copy = tmp_path / "table1"
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("pretrain", "*.pt"))
    assert table1.main(["--report-only", "--out", str(copy)]) == 0
    for name in ("table.md", "plateau.md", "select.md"):
        assert (copy / name).read_text() == (committed / name).read_text(), name
    assert not (copy / "protocol.json").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "runs.parquet"), pd.read_parquet(committed / "runs.parquet"))


def test_committed_table1_passes_renders_as_it_was(tmp_path):
    """results/table1-passes re-rendered with --report-only from its committed run folders
    gives its committed table.md, plateau.md and protocol.md, byte for byte."""
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "results" / "table1-passes"
    if not (committed / "table.md").exists():
        pytest.skip("results/table1-passes is not in this checkout")
    copy = tmp_path / "passes"
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("pretrain", "*.pt", "*.png"))
    assert table1.main(["--report-only", "--out", str(copy)]) == 0
    for name in ("table.md", "plateau.md", "protocol.md"):
        assert (copy / name).read_text() == (committed / name).read_text(), name
    assert {p.name for p in copy.glob("curves-n*.png")} == {p.name for p in committed.glob("curves-n*.png")}


@pytest.mark.slow
def test_table1_leaves_a_run_another_process_trains_to_it_and_takes_it_up_after(blobs_npz, tmp_path, capsys):
    """Invocations side by side share the runs: one whose folder another live process holds
    is skipped (as a population member too: the others then run one by one), nothing of it
    is written, and the next invocation trains it."""
    out = tmp_path / "t1"
    argv = ["--smoke", "--dataset", str(blobs_npz), "--n", "60", "--select-seeds", "0",
            "--methods", "supervised", "--population", "on", "--out", str(out), *TINY_SET]
    assert table1.main(argv + ["--seeds", "0"]) == 0  # the selection, and seed 0
    chosen = json.loads((out / "selection.json").read_text())["chosen"]["supervised"]
    held = table1.table_dir(out, "supervised", 60, 2, chosen)
    with held_by(held) as holder:
        capsys.readouterr()
        assert table1.main(argv + ["--seeds", "0", "1", "2", "3"]) == 0
        said = capsys.readouterr().out
        assert f"left to another process: {held} is in use by the run of PID {holder.pid}" in said
        assert "not as a population: " in said and "1 runs were left to the other processes" in said
        assert sorted(p.name for p in held.iterdir()) == [".lock", "lock.json"]  # nothing written
        assert not list((out / "n60").glob(".population-*"))  # the refused population left no folder
        runs = pd.read_parquet(out / "runs.parquet")
        assert sorted(runs["seed"]) == [0, 1, 3] and (runs["status"] == "DONE").all()
    assert table1.main(argv + ["--seeds", "0", "1", "2", "3"]) == 0
    said = capsys.readouterr().out
    assert said.count("== ") == 1 and f"-> {held}" in said  # only the run left before
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs["seed"]) == [0, 1, 2, 3] and (runs["status"] == "DONE").all()
    assert (held / "summary.json").exists() and not (held / "lock.json").exists()


def test_select_waits_for_no_one_a_grid_with_a_run_in_another_process_chooses_nothing():
    asked = []

    def run(overrides, seed):
        asked.append((overrides["p"], seed))
        busy = (overrides["p"], seed) == ("a", 1)
        return {"status": core.BUSY if busy else core.DONE, "val_acc": float("nan") if busy else 0.5}

    with pytest.raises(DataError, match="the validation grid cannot choose yet: 1 of its runs"):
        core.select([{"p": "a"}, {"p": "b"}], [0, 1], run)
    assert len(asked) == 4  # the other points ran first
