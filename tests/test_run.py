"""kdgan.run: the key of the shared pretraining cache."""

from __future__ import annotations

import pytest

from kdgan import tags
from kdgan.config import Config
from kdgan.run import pretrain_key


def _collection(tmp_path):
    c = tags.synthesize(n_train=200, n_val=50, n_test=50, num_labels=8, dim=16, seed=0)
    return tags.write(tmp_path / "c.parquet", c)


def test_the_penalty_is_part_of_its_players_pretraining_key(tmp_path):
    cfg = Config.from_dict({"dataset": str(_collection(tmp_path)), "method": "kdgan", "n": 100})
    players = ("cls", "tch", "dis")
    decayed = cfg.replace(tch_weight_decay=1e-3)
    assert pretrain_key(decayed, "cls", players) == pretrain_key(cfg, "cls", players)
    assert pretrain_key(decayed, "tch", players) != pretrain_key(cfg, "tch", players)
    assert pretrain_key(decayed, "dis", players) != pretrain_key(cfg, "dis", players)  # trained against T


def test_the_classifiers_own_passes_are_part_of_its_key_only(tmp_path):
    cfg = Config.from_dict({"dataset": str(_collection(tmp_path)), "method": "distn", "n": 100,
                            "pretrain_epochs": 2, "cls_pretrain_epochs": 0})
    players = ("cls", "tch")
    same = cfg.replace(cls_pretrain_epochs=-1)
    assert pretrain_key(cfg, "cls", players) != pretrain_key(same, "cls", players)
    assert pretrain_key(cfg, "tch", players) == pretrain_key(same, "tch", players)
    # saying the teacher's number of passes is the default: the same cached classifier
    assert pretrain_key(same.replace(cls_pretrain_epochs=2), "cls", players) == pretrain_key(same, "cls", players)
