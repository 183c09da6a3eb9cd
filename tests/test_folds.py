"""The out-of-fold teacher (`Config.tch_folds`): routing, and that no member sees its fold."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdgan import tags
from kdgan.config import Config, ConfigError
from kdgan.batches import fold_ids
from kdgan.game import FoldedTeacher, Game


def _teacher(k: int = 3, d: int = 4, classes: int = 5) -> FoldedTeacher:
    torch.manual_seed(0)
    return FoldedTeacher([nn.Linear(d, classes) for _ in range(k)])


def test_each_row_gets_the_member_of_its_fold_and_unassigned_rows_the_mean():
    t = _teacher()
    x = torch.randn(6, 4)
    fold = torch.tensor([0, 1, 2, -1, 1, 0])
    out = t(x, fold)
    each = [m(x) for m in t.members]
    for i, f in enumerate(fold.tolist()):
        expected = torch.stack(each).mean(0)[i] if f < 0 else each[f][i]
        assert torch.allclose(out[i], expected)
    assert torch.allclose(t(x), torch.stack(each).mean(0))
    out[0].sum().backward()  # row 0 is in fold 0: only member 0 moves
    assert [m.weight.grad is not None and bool(m.weight.grad.any()) for m in t.members] == [True, False, False]


def test_a_member_learns_from_every_fold_but_its_own():
    t = _teacher()
    x, y = torch.randn(9, 4), torch.randint(0, 5, (9,))
    fold = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    t.fit_loss(x, y, fold).backward()
    for j, m in enumerate(t.members):
        ref = nn.Linear(4, 5)
        ref.load_state_dict(m.state_dict())
        (F.cross_entropy(ref(x[fold != j]), y[fold != j]) / 3).backward()
        assert torch.allclose(m.weight.grad, ref.weight.grad)


def test_fold_ids_cut_a_seeded_permutation_into_equal_folds():
    ids = fold_ids(103, 5, seed=1)
    assert sorted(torch.bincount(ids).tolist()) == [20, 20, 21, 21, 21]
    assert torch.equal(ids, fold_ids(103, 5, seed=1))
    assert not torch.equal(ids, fold_ids(103, 5, seed=2))


def _collection(tmp_path):
    c = tags.synthesize(n_train=200, n_val=50, n_test=50, num_labels=8, dim=16, seed=0)
    path = tmp_path / "c.parquet"
    tags.write(path, c)
    return path


def test_pretraining_never_shows_a_member_the_labels_of_its_fold(tmp_path):
    path = _collection(tmp_path)
    cfg = Config.from_dict({"dataset": str(path), "method": "distn", "n": 120, "tch_folds": 3,
                            "pretrain_epochs": 3, "seed": 2})

    def pretrained(relabel_fold: int | None) -> list[dict]:
        game = Game(cfg, tags.load(cfg), torch.device("cpu"))
        if relabel_fold is not None:  # other labels for the rows of one fold
            rows = game.folds == relabel_fold
            game.data.train.y[rows] = game.data.train.y[rows].roll(1, dims=1)
        game.pretrain_player("tch")
        return [m.state_dict() for m in game.players["tch"].members]

    base, changed = pretrained(None), pretrained(1)
    for j in range(3):
        same = all(torch.equal(base[j][k], changed[j][k]) for k in base[j])
        assert same == (j == 1)  # member 1 never saw fold 1; the others did


def test_the_game_runs_with_an_out_of_fold_teacher_and_unlabelled_rows(tmp_path):
    path = _collection(tmp_path)
    cfg = Config.from_dict({"dataset": str(path), "method": "kdgan", "n": 100, "unlabeled": 50,
                            "tch_folds": 2, "pretrain_epochs": 1, "dis_pretrain_epochs": 1,
                            "cls_arch": "mlp-small"})
    game = Game(cfg, tags.load(cfg), torch.device("cpu"))
    game.pretrain()
    fold = game.batches.draw(transfer=True).fold
    assert (fold[: cfg.batch_size] >= 0).all() and (fold[cfg.batch_size:] == -1).all()
    terms = game.play_epoch(tau=1.0)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in terms.values())


@pytest.mark.parametrize("overrides, message", [
    ({"tch_folds": 1}, "tch_folds=1"),
    ({"tch_folds": 101, "n": 100}, "tch_folds=101"),
    ({"tch_folds": 3, "method": "codis"}, "codis"),
    ({"tch_folds": 3, "tch_ce_weight": 0.5}, "tch_ce_weight=0.5"),
])
def test_bad_folds_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(overrides)
