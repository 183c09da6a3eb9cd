"""kdgan.batches: which rows a minibatch holds, their folds, and the order of its draws."""

from __future__ import annotations

import torch

from kdgan import data as data_mod
from kdgan.augment import random_affine, random_flip
from kdgan.batches import BatchSource, fold_ids
from kdgan.config import Config

from conftest import TINY


def _source(blobs_npz, folds: int = 0, transfer: bool = True, **overrides) -> BatchSource:
    cfg = Config(dataset=str(blobs_npz), **{**TINY, **overrides})
    return BatchSource(cfg, data_mod.load(cfg), torch.device("cpu"), folds=folds, transfer=transfer)


def test_fold_ids_cut_a_seeded_permutation_into_equal_folds():
    ids = fold_ids(103, 5, seed=1)
    assert sorted(torch.bincount(ids).tolist()) == [20, 20, 21, 21, 21]
    assert torch.equal(ids, fold_ids(103, 5, seed=1))
    assert not torch.equal(ids, fold_ids(103, 5, seed=2))


def test_each_row_carries_its_fold_and_unlabelled_rows_none(blobs_npz):
    source = _source(blobs_npz, folds=3, unlabeled=50, augment=False)
    index = torch.tensor([4, 0, 17])
    b = source.draw(index)
    assert torch.equal(b.fold, source.folds[index]) and torch.equal(b.x, source.data.train.x[index])
    b = source.draw(transfer=True)
    size = source.cfg.batch_size
    assert len(b.fold) == len(b.y) == 2 * size
    assert (b.fold[:size] >= 0).all() and (b.fold[size:] == -1).all()
    assert (b.y[size:] == data_mod.UNLABELED).all()
    assert _source(blobs_npz).draw().fold is None  # one teacher: no folds
    # a method with nothing to learn from but the labels gets no unlabelled rows
    assert len(_source(blobs_npz, transfer=False, unlabeled=50).draw(transfer=True).y) == size


def test_an_epoch_visits_every_training_row_once(blobs_npz):
    source = _source(blobs_npz, augment=False, batch_size=25)
    n, size = len(source.data.train), source.cfg.batch_size
    rows = [b.x.flatten(1) for b in source.epoch()]
    assert [len(r) for r in rows] == [size] * (n // size) + [n % size]
    match = (torch.cat(rows)[:, None, :] == source.data.train.x.flatten(1)[None]).all(-1)  # (n, n)
    assert (match.sum(0) == 1).all() and (match.sum(1) == 1).all()


def test_the_draws_come_in_the_documented_order(blobs_npz):
    """Rows, their augmentation, then the unlabelled rows and theirs, from torch's global
    RNG and nothing else: the order a batch source with generators of its own must keep."""
    source = _source(blobs_npz, unlabeled=50, aug_flip=True)
    cfg, train, extra = source.cfg, source.data.train, source.data.unlabeled

    def augment(x: torch.Tensor) -> torch.Tensor:
        return random_flip(random_affine(x, cfg.aug_rotation, cfg.aug_shift, cfg.aug_zoom))

    torch.manual_seed(5)
    b = source.draw(transfer=True)
    next_draw = torch.rand(3)
    torch.manual_seed(5)
    x = augment(train.x[torch.randperm(len(train))[: cfg.batch_size]])
    ux = augment(extra.x[torch.randperm(len(extra))[: cfg.batch_size]])
    assert torch.equal(b.x, torch.cat([x, ux])) and b.xp is b.x
    assert torch.equal(torch.rand(3), next_draw)
