"""Tag recommendation: ranking metrics by hand, the collection format, YFCC parsing, KNN, the
multi-label game end to end on a small synthetic collection."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from kdgan import losses, tags
from kdgan import train as train_mod
from kdgan.config import Config, ConfigError
from kdgan.data import DataError
from kdgan.metrics import ranking_metrics
from analysis.tables import tag_table, tag_to_latex, tag_to_markdown


def test_ranking_metrics_against_hand_computed_cases():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5, 0.3],
                           [0.1, 0.2, 0.3, 0.4, 0.5]])
    relevant = torch.tensor([[0, 1, 0, 1, 0],
                             [0, 0, 0, 0, 1]], dtype=torch.bool)
    # row 1: ranking 0,1,3,4,2 -> hits 0,1,1,0,0; row 2: ranking 4,3,2,1,0 -> hits 1,0,0,0,0
    one = ranking_metrics(scores[:1], relevant[:1])
    assert one["p@1"] == 0 and one["p@3"] == pytest.approx(2 / 3) and one["p@5"] == pytest.approx(0.4)
    assert one["f@3"] == pytest.approx(0.8)                  # P 2/3, R 1
    assert one["f@5"] == pytest.approx(2 * 0.4 / 1.4)        # P 2/5, R 1
    assert one["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # precision at ranks 2 and 3
    assert one["mrr"] == pytest.approx(0.5)
    two = ranking_metrics(scores[1:], relevant[1:])
    assert (two["p@1"], two["map"], two["mrr"]) == (1.0, 1.0, 1.0)
    assert two["f@3"] == pytest.approx(0.5) and two["f@5"] == pytest.approx(1 / 3)
    both = ranking_metrics(scores, relevant)
    for k in both:
        assert both[k] == pytest.approx((one[k] + two[k]) / 2)
    # ties keep the lower label index first
    tie = ranking_metrics(torch.zeros(1, 3), torch.tensor([[False, False, True]]))
    assert tie["mrr"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no relevant label"):
        ranking_metrics(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool))


def test_dis_real_with_label_distributions_equals_the_one_hot_gather():
    s = torch.randn(4, 5)
    y = torch.tensor([0, 3, 2, 4])
    assert torch.allclose(losses.dis_real(s, y), losses.dis_real(s, torch.eye(5)[y]))
    dist = torch.tensor([[0.5, 0.5, 0, 0, 0]])  # two tags: the mean of their log D
    expected = -(torch.nn.functional.logsigmoid(s[:1, 0]) + torch.nn.functional.logsigmoid(s[:1, 1])) / 2
    assert torch.allclose(losses.dis_real(s[:1], dist), expected.mean())


def _small(seed: int = 0) -> tags.Collection:
    return tags.synthesize(n_train=300, n_val=100, n_test=100, num_labels=8, dim=16, seed=seed)


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


def test_knn_votes_of_the_nearest_images():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    train_tags = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    s = tags.knn_scores(train_x, train_tags, torch.tensor([[1.0, 0.05]]), k=2)
    assert s[0].argmax() == 0 and s[0, 1] > s[0, 2]
    assert torch.allclose(s[0].round(), torch.tensor([2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="k=4"):
        tags.knn_scores(train_x, train_tags, train_x, k=4)


def _yfcc_line(columns: int, pid: str, title: str, desc: str, user_tags: str, video: str = "0") -> str:
    f = ["x"] * columns
    c = tags.YFCC_COLUMNS[columns]
    f[c["id"]], f[c["title"]], f[c["description"]], f[c["tags"]], f[c["video"]] = (
        pid, title, desc, user_tags, video)
    return "\t".join(f)


def test_yfcc_lines_of_both_releases_are_parsed_and_decoded():
    for columns in (25, 23):
        rec = tags.parse_yfcc_line(_yfcc_line(columns, "42", "Sunset+at+the+Beach",
                                               "a%20nice%2C+day", "beach,sunset,New+York"))
        assert rec == {"id": "42", "text": "Sunset at the Beach a nice, day",
                       "tags": ["beach", "new york", "sunset"]}
    assert tags.parse_yfcc_line(_yfcc_line(25, "1", "t", "d", "a", video="1")) is None
    assert tags.parse_yfcc_line("too\tfew\tfields") is None


def test_build_yfcc_makes_both_label_sets(tmp_path):
    rng = np.random.default_rng(0)
    vocab = [f"t{i}" for i in range(30)]
    lines, ids = [], []
    for i in range(400):
        chosen = rng.choice(vocab, size=3, replace=False, p=np.linspace(2, 1, 30) / np.linspace(2, 1, 30).sum())
        lines.append(_yfcc_line(25, str(1000 + i), f"photo+{i}", "", ",".join(chosen)))
        ids.append(1000 + i)
    lines.append(_yfcc_line(25, "5", "no features", "", "t1"))  # no feature row: skipped
    (tmp_path / "dump").write_text("\n".join(lines) + "\n")
    np.savez(tmp_path / "feats.npz", ids=np.array(ids), features=rng.random((400, 6)).astype(np.float32))
    out = tags.build_yfcc(tmp_path / "dump", tmp_path / "feats.npz", tmp_path / "out", num_labels=10,
                          n_train=200, n_test=50, seed=1, min_count=5)
    popular, random = tags.read(out["popular"]), tags.read(out["random"])
    counts = pd.Series([t for line in lines[:-1] for t in line.split("\t")[10].split(",")]).value_counts()
    assert set(popular.labels) == set(counts.index[:10])  # the 10 most frequent tags
    assert len(random.labels) == 10 and set(random.labels) != set(popular.labels)
    for c in (popular, random):
        assert len(c) == 250 and (c.split == "test").sum() == 50
        assert all(set(t) <= set(c.labels) and t for t in c.tags)
    with pytest.raises(DataError, match="need n_train"):
        tags.build_yfcc(tmp_path / "dump", tmp_path / "feats.npz", tmp_path / "o2", num_labels=10,
                        n_train=1000, n_test=50, min_count=5)


def test_synthetic_text_names_what_the_tags_leave_out():
    c = tags.synthesize(n_train=2000, n_val=10, n_test=10, num_labels=10, dim=8, seed=0)
    words = [set(tags.tokenize(t)) for t in c.text]
    tagged = np.mean([len(t) for t in c.tags])
    mentioned = np.mean([len(w & set(c.labels)) for w in words])
    assert mentioned > tagged  # the text names more concepts than the tags keep
    extra = np.mean([bool((w & set(c.labels)) - set(t)) for w, t in zip(words, c.tags)])
    assert extra > 0.3  # a third of the images have a concept in the text but not in the tags


SMALL_GEN = dict(n_train=3000, n_val=0, n_test=0, num_labels=6, dim=8, seed=3)


@pytest.mark.parametrize("use_text", [False, True])
def test_the_generators_posterior_is_calibrated(use_text):
    # the expected number of images tagged with each label, summed from the posterior, matches
    # the count the generator drew (a wrong prior, likelihood or keep rule shifts it)
    c = tags.synthesize(**SMALL_GEN)
    rows = np.arange(len(c))
    post = tags.synthetic_posterior(c, rows, use_text=use_text, **SMALL_GEN)
    assert post.shape == (len(c), 6) and np.all((post >= 0) & (post <= 1))
    drawn = c.label_matrix().sum(axis=0)
    expected, spread = post.sum(axis=0), np.sqrt((post * (1 - post)).sum(axis=0))
    assert np.all(np.abs(expected - drawn) < 4 * spread + 1), (expected, drawn)


def test_without_noise_the_posterior_knows_each_images_concepts():
    gen = {**SMALL_GEN, "n_train": 300, "noise": 1e-3}
    c = tags.synthesize(**gen)
    post = tags.synthetic_posterior(c, np.arange(len(c)), **gen)
    for row, image_tags in zip(post, c.label_matrix()):
        support = row > 1e-6
        size = int(support.sum())
        assert 1 <= size <= 3 and np.all(image_tags[~support] == 0)  # the tags are among them
        assert np.allclose(row[support], 0.5 + 0.5 ** size / size)  # keep, or the one kept
    with pytest.raises(ValueError, match="dim=9"):
        tags.synthetic_posterior(c, np.arange(3), **{**gen, "dim": 9})


@pytest.mark.parametrize("method", ["kdgan", "supervised", "teacher", "distn", "nagan"])
def test_the_game_runs_on_a_tag_collection_and_reports_the_ranking_metrics(tmp_path, method):
    path = tags.write(tmp_path / "c.parquet", _small())
    cfg = Config.from_dict({"dataset": str(path), "method": method, "n": 100, "cls_arch": "mlp-small",
                            "pretrain_epochs": 2, "epochs": 2, "dis_pretrain_epochs": 1,
                            "batch_size": 20, "device": "cpu"})
    summary = train_mod.train(cfg, tmp_path / "out", quiet=True)
    for key in ("p@3", "p@5", "f@3", "f@5", "map", "mrr"):
        assert 0.0 <= summary["test_metrics"][key] <= 1.0
    assert summary["test_acc"] == summary["test_metrics"]["p@1"]
    history = pd.read_parquet(tmp_path / "out" / "history.parquet")
    assert {"val/map", "test/mrr", "val/acc"} <= set(history)


def test_unlabelled_images_bring_their_text_but_no_tags(tmp_path):
    from kdgan.game import Game, effective_config

    path = tags.write(tmp_path / "c.parquet", _small())
    cfg = Config.from_dict({"dataset": str(path), "method": "kdgan", "n": 50, "unlabeled": 100,
                            "batch_size": 20, "device": "cpu"})
    data = tags.load(cfg)
    # other images than the labelled ones (continuous features: no two rows are equal)
    assert not (data.unlabeled.x[:, None, :] == data.train.x[None]).all(-1).any()
    assert len(data.unlabeled) == 100 and (data.unlabeled.y == 0).all()
    assert data.unlabeled.xp.tokens.shape[1] == data.train.xp.tokens.shape[1]
    x, xp, y = Game(effective_config(cfg), data, torch.device("cpu")).batch(transfer=True)
    assert len(x) == len(y) == len(xp.features) == len(xp.tokens) == 40
    assert (y[:20].sum(1) > 0).all() and (y[20:] == 0).all()
    with pytest.raises(ConfigError, match="unlabeled=251: n \\+ unlabeled = 301"):
        tags.load(cfg.replace(unlabeled=251))
    cfg = cfg.replace(method="distn", cls_arch="mlp-small", pretrain_epochs=1, epochs=1)
    summary = train_mod.train(cfg, tmp_path / "out", quiet=True)
    assert 0.0 <= summary["test_metrics"]["map"] <= 1.0


def test_augmentation_on_feature_vectors_is_refused_before_training(tmp_path):
    path = tags.write(tmp_path / "c.parquet", _small())
    with pytest.raises(ConfigError, match="augment=True"):
        train_mod.train(Config.from_dict({"dataset": str(path), "augment": True, "n": 50}),
                        tmp_path / "o", quiet=True)


def test_table2_layout_carries_means_spreads_and_the_paper():
    rows = []
    for seed, v in enumerate((0.2, 0.4)):
        rows.append({"label_set": "popular", "method": "kdgan", "seed": seed, "status": "DONE",
                     **{f"test_{m}": v for m in ("p@3", "p@5", "f@3", "f@5", "map", "mrr")}})
    table = tag_table(pd.DataFrame(rows))
    r = table.iloc[0]
    assert r["map_mean"] == pytest.approx(0.3) and r["map_std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert r["map_paper"] == pytest.approx(0.7787)
    md = tag_to_markdown(table)
    assert "0.3000 +- 0.1414" in md and "kdgan (paper)" in md and "0.7787" in md
    assert r"\multicolumn{6}{c}{popular}" in tag_to_latex(table)
