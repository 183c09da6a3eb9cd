"""The CLI and the run: outputs, resume equal to an uninterrupted run, errors, divergence."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from kdgan import train as train_mod
from kdgan.augment import random_affine
from kdgan.config import Config
from kdgan.game import NonFiniteLossError
from kdgan.models import build, num_parameters
from kdgan.run import Run

from conftest import TINY, held


def _cfg(npz, **kw) -> Config:
    return Config(dataset=str(npz), **{**TINY, **kw})


def _metrics(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame if c.startswith("time/")])


def test_outputs_of_a_run(blobs_npz, tmp_path):
    summary = train_mod.train(_cfg(blobs_npz), tmp_path / "out", quiet=True)
    out = tmp_path / "out"
    saved = json.loads((out / "summary.json").read_text())
    for key in ("method", "dataset", "n", "seed", "val_acc", "test_acc", "best_epoch",
                "last_test_acc", "wall_s", "config"):
        assert key in saved
    assert saved == json.loads(json.dumps(summary))
    history = pd.read_parquet(out / "history.parquet")
    assert list(history["epoch"]) == [0, 1, 2, 3]
    best = history.loc[history["val/acc"].idxmax()]
    assert saved["test_acc"] == pytest.approx(best["test/acc"])  # test at the best val epoch
    assert {"cls/adv", "cls/distill", "tch/adv", "tch/distill", "dis/real"} <= set(history)
    assert len(json.loads((out / "train_indices.json").read_text())) == TINY["n"]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(state["game"]["players"]) == {"cls", "tch", "dis"}
    assert set(state["game"]["optimizers"]) == {"cls", "tch", "dis"} and state["epoch"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("unlabeled", [0, 100])
def test_resume_equals_an_uninterrupted_run(blobs_npz, tmp_path, monkeypatch, unlabeled):
    cfg = _cfg(blobs_npz, epochs=4, unlabeled=unlabeled)
    train_mod.train(cfg, tmp_path / "straight", quiet=True)

    calls = {"n": 0}
    real_play = Run.play_epoch

    def dies_after_two(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during the third epoch
        return real_play(self)

    monkeypatch.setattr(Run, "play_epoch", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "resumed", quiet=True)
    monkeypatch.setattr(Run, "play_epoch", real_play)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    train_mod.train(cfg, tmp_path / "resumed", quiet=True)

    a = _metrics(pd.read_parquet(tmp_path / "straight" / "history.parquet"))
    b = _metrics(pd.read_parquet(tmp_path / "resumed" / "history.parquet"))
    pd.testing.assert_frame_equal(a, b)
    sa = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    sb = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    for player, weights in sa["game"]["players"].items():
        for name, tensor in weights.items():
            assert torch.equal(tensor, sb["game"]["players"][player][name]), (player, name)


@pytest.mark.slow
def test_shared_pretraining_gives_the_same_run(blobs_npz, tmp_path):
    """A run that reads its pretrained players from the cache equals one that computed them."""
    cache = tmp_path / "cache"
    first = train_mod.train(_cfg(blobs_npz, pretrain_cache=str(cache)), tmp_path / "a", quiet=True)
    assert sorted(f.name.split("-")[0] for f in cache.glob("*.pt")) == ["cls", "dis", "tch"]
    again = train_mod.train(_cfg(blobs_npz, pretrain_cache=str(cache)), tmp_path / "b", quiet=True)
    plain = train_mod.train(_cfg(blobs_npz), tmp_path / "c", quiet=True)
    for s in (again, plain):
        assert (s["val_acc"], s["test_acc"], s["best_epoch"]) == (
            first["val_acc"], first["test_acc"], first["best_epoch"])
    # alpha, beta and gamma do not change what pretraining computes: three files still
    train_mod.train(_cfg(blobs_npz, pretrain_cache=str(cache), alpha=0.9, beta=3.0),
                    tmp_path / "d", quiet=True)
    assert len(list(cache.glob("*.pt"))) == 3


def test_every_method_of_a_seed_shares_one_teacher_and_one_classifier_start(blobs_npz, tmp_path):
    """One pretrained teacher per (dataset, n, seed) whatever the method; the cached players
    are bit-identical to the ones a run without the cache computes."""
    cache = tmp_path / "cache"
    for method in ("supervised", "distn", "kdgan", "teacher"):
        train_mod.train(_cfg(blobs_npz, method=method, epochs=1, pretrain_cache=str(cache)),
                        tmp_path / method, quiet=True)
    names = sorted(f.name.split("-")[0] for f in cache.glob("*.pt"))
    assert names == ["cls", "dis", "tch"], names
    plain = Run(_cfg(blobs_npz, method="mimic"))
    plain.pretrain()
    (tch_file,) = cache.glob("tch-*.pt")
    cached = torch.load(tch_file, weights_only=True)["weights"]
    for name, tensor in plain.game.players["tch"].state_dict().items():
        assert torch.equal(tensor, cached[name]), name
    # the teacher method reports exactly that pretrained teacher
    teacher = json.loads((tmp_path / "teacher" / "summary.json").read_text())
    assert teacher["epochs_run"] == 0 and teacher["params"].keys() == {"tch"}
    assert teacher["val_acc"] == pytest.approx(plain.game.evaluate("tch", plain.data.val)["acc"])


def test_the_saved_model_is_the_selected_one(blobs_npz, tmp_path):
    """model.pt holds C at the first epoch of best validation accuracy: loaded into a fresh
    classifier it scores exactly the summary's validation and test accuracy."""
    summary = train_mod.train(_cfg(blobs_npz, epochs=3), tmp_path / "o", quiet=True)
    assert summary["best_epoch"] < 3  # so the last epoch's classifier would not pass
    blob = torch.load(tmp_path / "o" / "model.pt", weights_only=True)
    assert blob["player"] == "cls" and blob["arch"] == TINY["cls_arch"]
    assert blob["epoch"] == summary["best_epoch"] and blob["val_acc"] == summary["val_acc"]
    run = Run(_cfg(blobs_npz, epochs=3))
    run.game.players["cls"].load_state_dict(blob["weights"])
    assert run.game.evaluate("cls", run.data.val)["acc"] == summary["val_acc"]
    assert run.game.evaluate("cls", run.data.test)["acc"] == summary["test_acc"]


def test_checkpoint_of_another_config_is_refused(blobs_npz, tmp_path):
    train_mod.train(_cfg(blobs_npz, epochs=1), tmp_path / "o", quiet=True)
    with pytest.raises(ValueError, match=r"different config.*alpha"):
        train_mod.train(_cfg(blobs_npz, epochs=1, alpha=0.7), tmp_path / "o", quiet=True)
    # where the pretraining cache lives and how many threads run do not change the run
    train_mod.train(_cfg(blobs_npz, epochs=1, threads=1, pretrain_cache=str(tmp_path / "c")),
                    tmp_path / "o", quiet=True)


def test_a_damaged_or_foreign_checkpoint_is_one_line_naming_it(blobs_npz, tmp_path, capsys):
    base = ["--dataset", str(blobs_npz), "--out", str(tmp_path / "o"), "--quiet",
            *(f"--set={k}={v}" for k, v in {**TINY, "epochs": 1}.items())]
    assert train_mod.main(base) == 0
    capsys.readouterr()
    assert train_mod.main([*base, "--set", "alpha=0.7"]) == 2  # another config's folder
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint.pt: checkpoint was written by a different config" in err
    assert "alpha" in err and "--fresh" in err
    (tmp_path / "o" / "checkpoint.pt").write_bytes(b"\x80\x02 not a checkpoint")
    assert train_mod.main(base) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'o' / 'checkpoint.pt'}: not a readable kdgan checkpoint")
    assert err.count("\n") == 1 and "--fresh" in err
    assert train_mod.main([*base, "--fresh"]) == 0  # the way out it names


@pytest.mark.slow
def test_a_folder_another_run_holds_is_refused_at_once_and_free_once_it_dies(blobs_npz, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["--dataset", str(blobs_npz), "--out", str(out), "--quiet",
            *(f"--set={k}={v}" for k, v in {**TINY, "epochs": 1}.items())]
    with held(out) as holder:
        assert train_mod.main(base) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out} is in use by the run of PID {holder.pid} on ")
        assert err.count("\n") == 1 and "another --out" in err
        assert sorted(p.name for p in out.iterdir()) == [".lock", "lock.json"]  # nothing written
        holder.kill()  # no release: the kernel frees a dead holder's lock
        holder.join(60)
    assert train_mod.main(base) == 0
    assert (out / "summary.json").exists() and not (out / "lock.json").exists()


def test_cli_bad_inputs_exit_2_with_the_key(blobs_npz, tmp_path, capsys):
    cases = [
        (["--set", "alpha=2"], "alpha=2.0: expected a value in [0, 1]"),
        (["--set", "bta=1"], "unknown key 'bta' (did you mean beta?)"),
        (["--n", "100000"], "n=100000: larger than the training pool"),
        (["--method", "kd"], "method='kd'"),
        (["--dataset", str(tmp_path / "none.npz")], "none.npz: no such file"),
    ]
    for extra, message in cases:
        args = ["--dataset", str(blobs_npz), "--out", str(tmp_path / "x"), "--quiet", *extra]
        assert train_mod.main(args) == 2
        assert message in capsys.readouterr().err


def test_divergence_ends_the_run_with_the_term_named(blobs_npz):
    run = Run(_cfg(blobs_npz, cls_lr=1e30, tch_lr=1e30, dis_lr=1e30, pretrain_epochs=1))
    run.pretrain()
    with pytest.raises(NonFiniteLossError, match=r"epoch \d+: non-finite loss in .*(cls|tch|dis)/"):
        while not run.finished:
            run.play_epoch()


def test_reference_parameter_counts():
    assert num_parameters(build("mlp", (1, 28, 28), 10, 0.5)) == 1_276_810
    assert num_parameters(build("lenet", (1, 28, 28), 10, 0.5)) == 3_274_634


def test_augmentation_identity_and_shift():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10:18, 10:18] = 1.0
    same = random_affine(x, rotation=0.0, shift=0.0, zoom=0.0)
    torch.testing.assert_close(same, x)
    torch.manual_seed(0)
    batch = random_affine(x.expand(500, 1, 28, 28), rotation=15.0, shift=0.1, zoom=0.1)
    cols = torch.arange(28.0)
    centre = (batch.sum(2)[:, 0] * cols).sum(-1) / batch.sum((1, 2, 3))
    # centre of mass moves by at most 10% of the side (2.8 px), plus a little for rotation
    assert (centre - 13.5).abs().max() < 3.5 and centre.std() > 1.0
