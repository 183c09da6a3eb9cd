"""Tag recommendation: ranking metrics by hand, the command line (python -m kdgan.tags), the
multi-label game end to end on a small synthetic collection. The collection format, the
generator, YFCC parsing and KNN: tests/test_data_tags.py, test_data_synthetic.py,
test_data_yfcc.py, test_knn.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from kdgan import losses, tags
from kdgan import train as train_mod
from kdgan.config import Config, ConfigError
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


def test_the_command_line_writes_and_describes_a_synthetic_collection(tmp_path, capsys):
    out = tmp_path / "s.parquet"
    assert tags.main(["synth", "--out", str(out), "--n-train", "100", "--labels", "8",
                      "--seed", "1"]) == 0
    assert f"wrote {out}: 2100 images, 8 labels" in capsys.readouterr().out
    c, made = tags.read(out), tags.synthesize(n_train=100, num_labels=8, seed=1)
    assert (c.image_id, c.tags, c.text) == (made.image_id, made.tags, made.text)
    np.testing.assert_array_equal(c.features, made.features)
    assert tags.main(["info", str(out)]) == 0
    assert ("{'train': 100, 'val': 1000, 'test': 1000}; 8 labels; features d=64"
            in capsys.readouterr().out)
    assert tags.main(["info", str(tmp_path / "absent.parquet")]) == 2
    assert "absent.parquet: no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_kdgan_tags_runs(tmp_path):
    path = tags.write(tmp_path / "c.parquet", _small())
    done = subprocess.run([sys.executable, "-m", "kdgan.tags", "info", str(path)],
                          capture_output=True, text=True, check=True)
    assert "{'train': 300, 'val': 100, 'test': 100}; 8 labels" in done.stdout


@pytest.mark.slow
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
