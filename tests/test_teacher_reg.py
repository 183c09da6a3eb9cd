"""The linear text teacher and the players' L2 penalty (`*_weight_decay`)."""

from __future__ import annotations

import pytest
import torch

from kdgan import tags
from kdgan.config import Config, ConfigError
from kdgan.data import TextInput, TextShape
from kdgan.game import Game
from kdgan.models import build, num_parameters
from kdgan.run import pretrain_key


def test_text_linear_adds_the_image_score_and_the_votes_of_the_words():
    shape = TextShape(features=5, vocab=12, length=4)
    net = build("text-linear", shape, 3, 0.0)
    assert num_parameters(net) == (5 + 1) * 3 + 12 * 3
    # before training the words vote nothing: the scores are the image part alone
    x = TextInput(torch.randn(2, 5), torch.tensor([[3, 7, 7, 0], [0, 0, 0, 0]]), 12)
    torch.testing.assert_close(net(x), net.image(x.features))
    torch.nn.init.normal_(net.words.weight)
    with torch.no_grad():
        net.words.weight[0] = 0.0  # padding
    e = net.words.weight
    expected = net.image(x.features) + torch.stack([e[3] + 2 * e[7], torch.zeros(3)])
    torch.testing.assert_close(net(x), expected)  # a repeated word votes twice, padding never
    with pytest.raises(ValueError, match="TextShape"):
        build("text-linear", (1, 8, 8), 3, 0.0)


def _collection(tmp_path):
    c = tags.synthesize(n_train=300, n_val=100, n_test=100, num_labels=8, dim=16, seed=0)
    return tags.write(tmp_path / "c.parquet", c)


def test_the_penalty_reaches_the_optimisers_and_shrinks_the_teacher(tmp_path):
    base = Config.from_dict({"dataset": str(_collection(tmp_path)), "method": "distn", "n": 100,
                             "cls_arch": "mlp-small", "tch_arch": "text-linear", "pretrain_epochs": 10,
                             "pretrain_lr": 1e-2,
                             "batch_size": 20, "device": "cpu"})
    data = tags.load(base)
    norms = {}
    for decay in (0.0, 0.5):
        cfg = base.replace(tch_weight_decay=decay)
        game = Game(cfg, data, torch.device("cpu"))
        assert game.optimizers["tch"].param_groups[0]["weight_decay"] == decay
        assert game.optimizers["cls"].param_groups[0]["weight_decay"] == 0.0
        game.pretrain_player("tch")
        norms[decay] = sum(float(p.detach().pow(2).sum()) for p in game.players["tch"].parameters())
    assert norms[0.5] < 0.5 * norms[0.0]


def test_the_penalty_is_part_of_its_players_pretraining_key(tmp_path):
    cfg = Config.from_dict({"dataset": str(_collection(tmp_path)), "method": "kdgan", "n": 100})
    players = ("cls", "tch", "dis")
    decayed = cfg.replace(tch_weight_decay=1e-3)
    assert pretrain_key(decayed, "cls", players) == pretrain_key(cfg, "cls", players)
    assert pretrain_key(decayed, "tch", players) != pretrain_key(cfg, "tch", players)
    assert pretrain_key(decayed, "dis", players) != pretrain_key(cfg, "dis", players)  # trained against T


@pytest.mark.parametrize("key", ["cls_weight_decay", "tch_weight_decay", "dis_weight_decay"])
def test_a_bad_penalty_is_refused_with_its_value(key):
    with pytest.raises(ConfigError, match=f"{key}=-0.1: expected a value in \\[0, 1\\)"):
        Config.from_dict({key: -0.1})


def test_the_classifier_can_start_the_game_untrained_while_the_teacher_is_pretrained(tmp_path):
    cfg = Config.from_dict({"dataset": str(_collection(tmp_path)), "method": "distn", "n": 100,
                            "cls_arch": "mlp-small", "tch_arch": "text-linear", "pretrain_epochs": 2,
                            "cls_pretrain_epochs": 0, "batch_size": 20, "device": "cpu"})
    game = Game(cfg, tags.load(cfg), torch.device("cpu"))
    before = {k: {n: p.clone() for n, p in game.players[k].state_dict().items()} for k in ("cls", "tch")}
    game.pretrain()
    for name, changed in (("cls", False), ("tch", True)):
        after = game.players[name].state_dict()
        assert any(not torch.equal(after[n], p) for n, p in before[name].items()) == changed, name
    players = ("cls", "tch")
    same = cfg.replace(cls_pretrain_epochs=-1)
    assert pretrain_key(cfg, "cls", players) != pretrain_key(same, "cls", players)
    assert pretrain_key(cfg, "tch", players) == pretrain_key(same, "tch", players)
    # saying the teacher's number of passes is the default: the same cached classifier
    assert pretrain_key(same.replace(cls_pretrain_epochs=2), "cls", players) == pretrain_key(same, "cls", players)
    with pytest.raises(ConfigError, match="cls_pretrain_epochs=-2: expected -1"):
        cfg.replace(cls_pretrain_epochs=-2)


@pytest.mark.parametrize("overrides, message", [
    ({"tch_arch": "text-linear"}, "tch_arch='text-linear' reads text: expected a tagged collection"),
    ({"dis_arch": "text-mlp"}, "dis_arch='text-mlp' reads text"),
    ({"dataset": "c.parquet", "cls_arch": "text-linear"}, "the classifier never sees the text"),
])
def test_a_text_player_without_text_is_refused_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(overrides)  # MNIST by default
