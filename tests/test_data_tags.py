"""kdgan.data.tags: the collection format (round trip, every bad file's error) and its loader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from kdgan.config import Config, ConfigError
from kdgan.data import tags
from kdgan.data.synthetic import synthesize
from kdgan.data.types import DataError


def _small(seed: int = 0) -> tags.Collection:
    return synthesize(n_train=300, n_val=100, n_test=100, num_labels=8, dim=16, seed=seed)


def test_collection_round_trips_and_documents_its_labels(tmp_path):
    c = _small()
    path = tags.write(tmp_path / "c.parquet", c)
    meta = pq.read_schema(path).metadata
    assert json.loads(meta[b"kdgan.labels"]) == c.labels
    back = tags.read(path)
    assert back.image_id == c.image_id and back.tags == c.tags and back.text == c.text
    np.testing.assert_array_equal(back.features, c.features)
    assert list(back.split) == list(c.split)


@pytest.mark.parametrize("breakage,message", [
    (lambda c: c.tags.__setitem__(3, []), "has no tags"),
    (lambda c: c.tags.__setitem__(3, ["nope"]), "outside the label set"),
    (lambda c: c.image_id.__setitem__(1, c.image_id[0]), "not unique"),
    (lambda c: c.split.__setitem__(0, "dev"), "'dev'"),
    (lambda c: c.features.__setitem__((0, 0), np.nan), "NaN"),
])
def test_a_bad_collection_is_refused_with_the_reason(tmp_path, breakage, message):
    c = _small()
    breakage(c)
    with pytest.raises(DataError, match=message):
        tags.write(tmp_path / "bad.parquet", c)


def test_a_parquet_without_the_format_metadata_is_refused(tmp_path):
    pd.DataFrame({"image_id": ["a"], "tags": [["x"]]}).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(DataError, match="kdgan.format"):
        tags.read(tmp_path / "plain.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        tags.read(tmp_path / "junk.parquet")


def test_load_gives_features_to_c_and_text_to_t_and_d(tmp_path):
    c = _small()
    c.text[0] = c.text[0] + " onlyinthetrainpool"
    test_row = int(np.flatnonzero(c.split == "test")[0])
    c.text[test_row] = "onlyinthetestsplit"
    path = tags.write(tmp_path / "c.parquet", c)
    cfg = Config.from_dict({"dataset": str(path), "n": 50, "seed": 3})
    assert (cfg.cls_arch, cfg.tch_arch, cfg.augment) == ("mlp", "text-mlp", False)  # dataset defaults
    data = tags.load(cfg)
    assert data.multilabel and data.num_classes == 8 and len(data.train) == 50
    assert (len(data.val), len(data.test)) == (100, 100)
    torch.testing.assert_close(data.train.y.sum(1), torch.ones(50))
    assert data.train.xp.features is data.train.x or torch.equal(data.train.xp.features, data.train.x)
    # the vocabulary comes from the training pool only: a test-only word is unknown (id 1)
    assert data.test.xp.tokens[0, 0].item() == tags.UNK
    assert data.priv_shape.features == 16 and data.priv_shape.length == tags.MAX_TOKENS
    # the same seed draws the same subset; another seed another
    again = tags.load(cfg)
    assert np.array_equal(again.train_indices, data.train_indices)
    other = tags.load(cfg.replace(seed=4))
    assert not np.array_equal(other.train_indices, data.train_indices)
    with pytest.raises(ConfigError, match="n=400"):
        tags.load(cfg.replace(n=400))


def test_validation_is_held_out_of_the_pool_without_val_rows(tmp_path):
    c = _small()
    c.split = np.where(c.split == "val", "train", c.split).astype(object)
    path = tags.write(tmp_path / "noval.parquet", c)
    data = tags.load(Config.from_dict({"dataset": str(path), "n": 20, "val_size": 150}))
    assert len(data.val) == 150 and data.pool_size == 250
    with pytest.raises(ConfigError, match="val_size=400"):
        tags.load(Config.from_dict({"dataset": str(path), "n": 20, "val_size": 400}))
