"""kdgan.vectorised: P members' game epochs as one vectorised model per player, against the
single runs of the same seeds (weights, minibatches, per-step losses, accuracy), members that
do not interact (a NaN member), the round trip to the members, and the configs it refuses.

Tolerances: float32 batched products sum in another order than the single run's, so the
terms of the first steps agree to rtol 1e-5 with atol 1e-6 (observed: relative 5.7e-6 at most,
on distillation KLs near 0.02, i.e. 1e-7 absolute), the epoch means of two epochs to rtol
1e-4 (observed: 1e-5) and validation accuracy after two epochs to one image (observed:
equal). Everything drawn (initial weights, minibatches, augmented images, dropout masks,
noise) is bit-identical, and a NaN member leaves the others bit-identical."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from kdgan import data as data_mod
from kdgan.config import Config
from kdgan.game import Game
from kdgan.models import build
from kdgan.run import GAME_SEED_OFFSET, Run
from kdgan.vectorised import (
    ARCHS, RngStreams, VectorisedGame, draw_masks, dropout_shapes, forward, layers_of, unsupported,
)

from conftest import TINY, write_blobs_npz

SEEDS = (3, 4, 5)
RTOL = 1e-5


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> str:
    return str(write_blobs_npz(tmp_path_factory.mktemp("vec") / "blobs.npz"))


_PRETRAINED: dict[tuple, dict] = {}


def _config(blobs: str, seed: int, **kw) -> Config:
    return Config.from_dict({**TINY, "pretrain_epochs": 2, "dataset": blobs, "seed": seed, **kw})


def _run(blobs: str, seed: int, **kw) -> Run:
    """A pretrained Run of `seed`, in the state (and with the global RNG) Run.pretrain leaves;
    each config's pretraining is computed once and then read back from its state."""
    key = (blobs, seed, tuple(sorted(kw.items())))
    run = Run(_config(blobs, seed, **kw))
    if key not in _PRETRAINED:
        run.pretrain()
        _PRETRAINED[key] = copy.deepcopy(run.state_dict())  # not the live tensors
    else:
        run.load_state_dict(_PRETRAINED[key])  # also the RNG: the game's stream
    return run


def _population(blobs: str, seeds=SEEDS, **kw) -> tuple[list[Run], RngStreams, VectorisedGame]:
    runs, states = [], []
    for s in seeds:
        runs.append(_run(blobs, s, **kw))
        states.append(RngStreams.capture())  # the member's game stream, as Population keeps it
    streams = RngStreams(states)
    return runs, streams, VectorisedGame([r.game for r in runs], streams.member)


def _close(a: float, b: float, rtol: float = RTOL) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-6)


# ------------------------------------------------------------------ draws and forwards
@pytest.mark.parametrize("p", [0.5, 0.3, 0.0])
def test_dropout_masks_are_those_nn_dropout_draws(p):
    """On CPU, bernoulli_(1 - p) then 1/(1-p) is F.dropout's draw; draw_masks reproduces an
    nn.Dropout's output and leaves the RNG where it leaves it (p = 0 draws nothing)."""
    x = torch.randn(7, 13)
    torch.manual_seed(11)
    want = nn.Dropout(p).train()(x)
    after = torch.get_rng_state()
    torch.manual_seed(11)
    bern = x * torch.empty_like(x).bernoulli_(1 - p).div_(1 - p) if p > 0 else x
    assert torch.equal(bern, want) and torch.equal(torch.get_rng_state(), after)
    torch.manual_seed(11)
    masks = draw_masks([(p, (13,))] if p > 0 else [], 7, torch.device("cpu"))
    got = x * masks[0] if masks else x
    assert torch.equal(got, want) and torch.equal(torch.get_rng_state(), after)


@pytest.mark.parametrize("arch", ARCHS)
def test_functional_forward_is_the_module(arch):
    """Train mode (masks drawn as the module would) and eval mode, bit for bit on one
    member; under vmap over two members, to float rounding."""
    shape = (3, 32, 32) if arch == "cifar-cnn" else (1, 12, 12)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build(arch, shape, 5, 0.4))
    model, layers = models[0], layers_of(models[0])
    params = dict(model.named_parameters())
    x = torch.rand(6, *shape)
    torch.manual_seed(2)
    want = model.train()(x)
    torch.manual_seed(2)
    masks = draw_masks(dropout_shapes(layers, params, shape), 6, torch.device("cpu"))
    assert torch.equal(forward(layers, params, x, masks), want)
    assert torch.equal(forward(layers, params, x, None), model.eval()(x))
    stacked = {n: torch.stack([dict(m.named_parameters())[n] for m in models]) for n in params}
    both = torch.func.vmap(lambda p, xx: forward(layers, p, xx, None), in_dims=(0, None))(stacked, x)
    for k, m in enumerate(models):
        torch.testing.assert_close(both[k], m.eval()(x), rtol=1e-5, atol=1e-6)


def test_rng_streams_are_the_seeded_global_rng_and_restore_it():
    streams = RngStreams.seeded([7, 8])
    outer = torch.get_rng_state()
    with streams.member(1):
        a = torch.rand(3)
        with pytest.raises(RuntimeError, match="nest"):
            with streams.member(0):
                pass
    assert torch.equal(torch.get_rng_state(), outer)
    with streams.member(1):
        b = torch.rand(3)
    torch.manual_seed(8)
    assert torch.equal(torch.cat([a, b]), torch.rand(6))
    torch.manual_seed(7)
    with streams.member(0):
        c = torch.rand(2)
    assert torch.equal(c, torch.rand(2))  # member 0 drew from its own stream, not the global one


def test_unsupported_names_the_reason():
    base = Config(device="cpu")
    assert unsupported(base) is None
    for method in ("nagan", "supervised", "mimic", "distn", "codis", "teacher"):
        assert unsupported(base.replace(method=method)) is None, method
    assert unsupported(base.replace(dis_target="sampled", estimator="straight-through")) is None
    cases = {
        "tch_folds": dict(tch_folds=5),
        "BatchNorm in resnet110": dict(tch_arch="resnet110"),
        "log_grad_variance": dict(log_grad_variance=True),
        "method noisy draws noise inside its loss": dict(method="noisy"),
        "reinforce": dict(method="kdgan-wo-gm"),
    }
    for reason, change in cases.items():
        assert reason in (unsupported(base.replace(**change)) or ""), change
    assert unsupported(base.replace(method="supervised", tch_arch="resnet20")) is None  # no T
    assert unsupported(base.replace(lr_plateau=3, lr_cuts=2, patience=5)) is None  # per-member rates


# ------------------------------------------------------------------ against single runs
def test_initial_weights_are_the_single_runs(blobs):
    """Fresh Games (Run's seeding: manual_seed(seed), then each player's own seed) and the
    stacked weights built from them; and the same after pretraining."""
    games = []
    for s in SEEDS:
        cfg = _config(blobs, s)
        torch.manual_seed(s)
        games.append(Game(cfg, data_mod.load(cfg), torch.device("cpu")))
    vg = VectorisedGame(games, RngStreams.seeded([s + GAME_SEED_OFFSET for s in SEEDS]).member)
    for k, s in enumerate(SEEDS):
        torch.manual_seed(s)
        single = Game(_config(blobs, s), games[k].data, torch.device("cpu"))
        for name, player in single.players.items():
            for n, p in player.named_parameters():
                assert torch.equal(vg.params[name][n][k], p), (s, name, n)
    runs, _, vg = _population(blobs)
    for k, s in enumerate(SEEDS):
        ref = _run(blobs, s)
        for name, player in ref.game.players.items():
            for n, p in player.named_parameters():
                assert torch.equal(vg.params[name][n][k], p), (s, name, n)


def _record_draws(game: Game) -> list:
    seen = []
    draw = game.batches.draw

    def recording(index=None, transfer=False):
        b = draw(index, transfer)
        seen.append(b)
        return b

    game.batches.draw = recording
    return seen


def test_minibatches_and_augmentation_are_the_single_runs(blobs):
    """Every minibatch member k draws in two epochs (rows, labels, augmented images) is
    bit-identical to its single run's."""
    runs, _, vg = _population(blobs, unlabeled=30)
    seen = [_record_draws(r.game) for r in runs]
    vg.play_epoch(1.0)
    vg.play_epoch(0.5)
    for k, s in enumerate(SEEDS):
        ref = _run(blobs, s, unlabeled=30)
        want = _record_draws(ref.game)
        ref.game.play_epoch(1.0)
        ref.game.play_epoch(0.5)
        assert len(seen[k]) == len(want) == 2 * (TINY["dis_steps"] + TINY["tch_steps"] + TINY["cls_steps"])
        for a, b in zip(seen[k], want):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.xp, b.xp)
        assert not torch.equal(seen[k][0].x, seen[(k + 1) % len(SEEDS)][0].x)


@pytest.mark.parametrize("kw", [{}, {"dis_target": "sampled", "estimator": "straight-through",
                                      "cls_ce_weight": 0.5, "tch_ce_weight": 0.2}],
                         ids=["kdgan", "sampled-st-ce"])
def test_first_steps_losses_agree_with_single_runs(blobs, kw):
    """D, T and C steps in the game's order: each member's terms equal its single run's to
    rtol 1e-5."""
    _, _, vg = _population(blobs, **kw)
    steps = [("dis", 0.9), ("dis", 0.9), ("tch", 0.9), ("cls", 0.9), ("cls", 0.8)]
    got = []
    for name, tau in steps:
        got.append(vg.dis_step(tau) if name == "dis" else vg.generator_step(name, tau))
    worst = 0.0
    for k, s in enumerate(SEEDS):
        g = _run(blobs, s, **kw).game
        for (name, tau), terms in zip(steps, got):
            if name == "dis":
                want = g.dis_step(g.batches.draw(), tau, g.weights)
            else:
                want = g.generator_step(name, g.batches.draw(transfer=True), tau, g.weights)
            assert set(want) == set(terms)
            for key, v in want.items():
                assert _close(float(terms[key][k]), float(v)), (s, name, key, float(terms[key][k]), float(v))
                rel = abs(float(terms[key][k]) - float(v)) / max(abs(float(v)), 1e-7)
                worst = max(worst, rel)
                if rel == worst:
                    which = (s, name, key, float(v))
    print(f"max relative difference of the step terms: {worst:.2e} at {which}")


@pytest.mark.parametrize("method", ["kdgan", "codis", "distn"])
def test_short_run_accuracy_agrees_with_single_runs(blobs, method):
    """Two game epochs: each member's epoch terms agree to rtol 1e-4 and its validation
    accuracy to one image, through `evaluate` and through the members after `write_back`."""
    runs, _, vg = _population(blobs, method=method)
    terms = [vg.play_epoch(1.0), vg.play_epoch(0.1)]
    val = vg.evaluate("cls", "val")
    vg.write_back()
    one_image = 1 / len(runs[0].data.val)
    worst, acc_diff = 0.0, 0.0
    for k, s in enumerate(SEEDS):
        ref = _run(blobs, s, method=method)
        want = [ref.game.play_epoch(1.0), ref.game.play_epoch(0.1)]
        for got_e, want_e in zip(terms, want):
            assert set(got_e[k]) == set(want_e)
            for key in want_e:
                assert _close(got_e[k][key], want_e[key], 1e-4), (s, key, got_e[k][key], want_e[key])
                worst = max(worst, abs(got_e[k][key] - want_e[key]) / max(abs(want_e[key]), 1e-7))
        acc = ref.game.evaluate("cls", ref.data.val)["acc"]
        acc_diff = max(acc_diff, abs(val[k]["acc"] - acc))
        assert abs(val[k]["acc"] - acc) <= one_image + 1e-9
        assert abs(runs[k].game.evaluate("cls", runs[k].data.val)["acc"] - acc) <= one_image + 1e-9
        assert _close(val[k]["ce"], ref.game.evaluate("cls", ref.data.val)["ce"], 1e-4)
    print(f"{method}: max relative difference of the epoch terms {worst:.2e}, "
          f"of val accuracy {acc_diff} ({acc_diff / one_image:g} images)")


def test_a_nan_member_leaves_the_others_as_they_were(blobs):
    """Member 1's classifier set to NaN: the others' terms and weights are those of a
    population without the NaN, bit for bit; member 1's are NaN."""
    _, _, clean = _population(blobs)
    _, _, bad = _population(blobs)
    with torch.no_grad():
        for p in bad.params["cls"].values():
            p[1].fill_(float("nan"))
    got, want = bad.play_epoch(1.0), clean.play_epoch(1.0)
    assert math.isnan(got[1]["cls/loss"]) and math.isnan(got[1]["dis/loss"])
    for k in (0, 2):
        assert got[k] == want[k]
        for name in bad.params:
            for n, p in bad.params[name].items():
                assert torch.equal(p[k], clean.params[name][n][k]), (k, name, n)
    assert all(torch.isnan(p[1]).all() for p in bad.params["cls"].values())


def test_write_back_then_read_members_continues_the_same_game(blobs):
    """After an epoch, the members hold the stacked weights and Adam states; a new
    VectorisedGame read from them plays the next epoch exactly as the first one does."""
    runs, streams, vg = _population(blobs)
    vg.play_epoch(1.0)
    vg.write_back()
    for k, r in enumerate(runs):
        for name, player in r.game.players.items():
            opt = r.game.optimizers[name]
            for n, p in player.named_parameters():
                assert torch.equal(p, vg.params[name][n][k])
                assert torch.equal(opt.state[p]["exp_avg"],
                                   vg.optimizers[name].state[vg.params[name][n]]["exp_avg"][k])
    saved = [streams.state(k) for k in range(len(SEEDS))]
    again = VectorisedGame([r.game for r in runs], RngStreams(saved).member)
    assert again.play_epoch(0.5) == vg.play_epoch(0.5)
    for name in vg.params:
        for n, p in vg.params[name].items():
            assert torch.equal(p, again.params[name][n])


def test_refuses_members_of_other_configs(blobs):
    a, b = _run(blobs, 3), _run(blobs, 4, alpha=0.5)
    with pytest.raises(ValueError, match="alpha"):
        VectorisedGame([a.game, b.game], RngStreams.seeded([0, 1]).member)
    c = _run(blobs, 3, method="noisy")
    with pytest.raises(ValueError, match="noisy"):
        VectorisedGame([c.game], RngStreams.seeded([0]).member)
