"""kdgan.run: the key of the shared pretraining cache.

Runs equal in a player's key share its pretrained weights, so the key must change with every
setting that changes that player's pretraining, and with nothing else (or a search would
pretrain again for every alpha). `PRETRAIN_FIELDS` is kept by hand; the tests below derive
what pretraining depends on by watching which config fields it reads, and hold the list to it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from kdgan import config as config_mod
from kdgan import tags
from kdgan.config import Config, ConfigError
from kdgan.game import effective_config
from kdgan.methods import METHODS
from kdgan.run import RUNTIME_FIELDS, Run, pretrain_key

from conftest import TINY

FIELDS = frozenset(f.name for f in dataclasses.fields(Config))
# Where a run executes, not what it computes: a cached player is shared across devices and
# thread counts (their last bits may differ) and cache directories.
WHERE_IT_RUNS = frozenset(RUNTIME_FIELDS) | {"device"}


class Recording(Config):
    """A Config that notes every field read from it since `reads` was last emptied."""

    def __getattribute__(self, name: str):  # noqa: ANN204
        if name in FIELDS:
            reads = object.__getattribute__(self, "__dict__").get("reads")
            if reads is not None:
                reads.add(name)
        return object.__getattribute__(self, name)


def recording(cfg: Config) -> Recording:
    rec = Recording(**cfg.to_dict())
    rec.reads = set()  # what validation read does not count
    return rec


def _players(cfg: Config) -> tuple[str, ...]:
    return METHODS[cfg.method].players


def _keys(cfg: Config) -> dict[str, str]:
    cfg = effective_config(cfg)
    return {p: pretrain_key(cfg, p, _players(cfg)) for p in _players(cfg)}


def _pretrained(cfg: Config) -> dict[str, tuple[dict, dict]]:
    """Each player's weights and stats after the pretraining a run does before its game."""
    run = Run(cfg)
    return {name: ({k: v.clone() for k, v in run.game.players[name].state_dict().items()},
                   run.game.pretrain_player(name))
            for name in run.game.players}


# Other values to try for fields that are not numbers or switches (the first valid one is used).
ARCHS = ("mlp-small", "linear", "mlp", "text-linear", "text-mlp", "lenet")
CHOICES = {"method": config_mod.METHODS, "distill": config_mod.DISTILL_LOSSES,
           "estimator": config_mod.ESTIMATORS, "adv_loss": config_mod.ADV_LOSSES,
           "dis_target": config_mod.DIS_TARGETS}


def _changed(cfg: Config, field: str) -> Config | None:
    """`cfg` with another valid value of `field`; None when `cfg` admits no other value
    (e.g. tch_ce_weight beside tch_folds): the field cannot change anything there."""
    value = getattr(cfg, field)
    if field == "dataset":
        path = Path(value)
        candidates = [str(path.with_name("other" + path.suffix))]
    elif field.endswith("_arch"):  # a text player stays one (the data decides)
        candidates = [a for a in ARCHS if a != value and a.startswith("text-") == value.startswith("text-")]
    elif field in CHOICES:
        candidates = [c for c in CHOICES[field] if c != value]
    elif isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, int):
        candidates = [value + 1, value + 2, value - 1]
    elif isinstance(value, float):
        candidates = [value / 2 if value else 0.1, value + 0.05]
    else:
        raise AssertionError(f"{field}={value!r}: add the values to try to CHOICES")
    for candidate in candidates:
        try:
            return cfg.replace(**{field: candidate})
        except ConfigError:
            continue
    return None


def _collection(tmp_path: Path) -> Path:
    c = tags.synthesize(n_train=200, n_val=50, n_test=50, num_labels=8, dim=16, seed=0)
    return tags.write(tmp_path / "c.parquet", c)


def _everything_on(kind: str, tmp_path: Path, blobs_npz: Path) -> Config:
    """A kdgan config under which pretraining takes every branch it has: augmentation of
    every kind (images), out-of-fold teacher, unlabelled examples, penalties, C's own passes."""
    common = dict(method="kdgan", tch_folds=2, unlabeled=20, cls_weight_decay=0.01,
                  tch_weight_decay=0.02, dis_weight_decay=0.03, cls_pretrain_epochs=2,
                  pretrain_epochs=1, dis_pretrain_epochs=1, dis_target="sampled", batch_size=20,
                  device="cpu")
    if kind == "arrays":
        return Config(dataset=str(blobs_npz), **{**TINY, **common, "n": 40, "aug_flip": True,
                                                 "tch_arch": "mlp-small"})
    return Config.from_dict({"dataset": str(_collection(tmp_path)), "n": 60,
                             "cls_arch": "mlp-small", "tch_arch": "text-linear",
                             "dis_arch": "text-mlp", **common})


def _reads(cfg: Config) -> tuple[set[str], set[str]]:
    """The fields a run reads up to the end of its pretraining, and those its players' cache
    keys read."""
    rec = recording(cfg)
    Run(rec).game.pretrain()
    read = set(rec.reads)
    rec.reads = set()
    for player in _players(cfg):
        pretrain_key(rec, player, _players(cfg))
    return read, set(rec.reads)


# What a run reads before its game that its pretraining does not use: the game's optimisers
# and weights, the players the method has (the keys take them as an argument), the unlabelled
# examples (drawn after the labelled ones). The slow test below shows pretraining is the
# same whatever their values; a field that pretraining reads and the keys leave out must be
# added here (and pass that test) or to PRETRAIN_FIELDS.
BEFORE_THE_GAME = {"alpha", "beta", "gamma", "cls_lr", "tch_lr", "dis_lr", "log_grad_variance",
                   "method", "unlabeled"}


@pytest.fixture
def everything_on(tmp_path, blobs_npz) -> dict[str, Config]:
    return {kind: _everything_on(kind, tmp_path, blobs_npz) for kind in ("arrays", "tags")}


def test_every_field_pretraining_reads_is_in_the_keys_or_known_not_to_matter(everything_on):
    for kind, cfg in everything_on.items():
        read, key_read = _reads(cfg)
        assert {"pretrain_lr", "tch_folds", "dis_target"} <= read  # the recording works
        assert read - key_read - WHERE_IT_RUNS == BEFORE_THE_GAME, kind


def test_fields_pretraining_never_reads_leave_every_key_as_it_is(everything_on):
    reads = {kind: _reads(cfg) for kind, cfg in everything_on.items()}
    read = set().union(*(r for r, _ in reads.values()))  # aug_*: read where augment is on
    for kind, (_, key_read) in reads.items():
        assert key_read <= read, (kind, key_read - read)
    unread = sorted(set(FIELDS) - read - WHERE_IT_RUNS)
    assert {"epochs", "cls_steps", "estimator", "eval_batch_size"} <= set(unread)
    for cfg in everything_on.values():
        keys = _keys(cfg)
        for field in unread:
            changed = _changed(cfg, field)
            assert changed is None or _keys(changed) == keys, field


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["arrays", "tags"])
def test_a_player_whose_key_stays_is_pretrained_the_same(kind, everything_on):
    """Change, one at a time, every field the run reads up to the end of its pretraining:
    where a player's key stays as it was, its pretrained weights and stats must too."""
    cfg = everything_on[kind]
    read, _ = _reads(cfg)
    base, keys = _pretrained(cfg), _keys(cfg)
    checked = set()
    for field in sorted(read - WHERE_IT_RUNS):
        changed = _changed(cfg, field)
        same = [] if changed is None else [p for p, k in _keys(changed).items() if keys.get(p) == k]
        if not same:
            continue
        checked.add(field)
        after = _pretrained(changed)
        for p in same:
            (w0, s0), (w1, s1) = base[p], after[p]
            assert s0 == s1 and all(torch.equal(w0[k], w1[k]) for k in w0), (
                f"{field}: {getattr(cfg, field)!r} -> {getattr(changed, field)!r} changes the "
                f"pretraining of {p} but not its cache key: add it to PRETRAIN_FIELDS")
    assert BEFORE_THE_GAME <= checked


# Keys of caches written before the key was checked this way (MNIST: no file in the key).
# Changing any of them would orphan pretrained players already on disk.
KEYS = [
    ({}, "cls", "910a71640fb03bd2"),
    ({}, "tch", "5cc692268f9eca31"),
    ({}, "dis", "61b9ea64c7202d72"),
    ({"method": "nagan"}, "dis", "46cacd715594b329"),
    ({"method": "distn", "n": 1000, "seed": 3}, "tch", "d029cb8b575f0f98"),
    ({"tch_folds": 5}, "tch", "30ccd696780aca7f"),
    ({"tch_folds": 5}, "dis", "c7541bacb56fddb3"),
    ({"aug_flip": True}, "cls", "47f5871c422bcd8a"),
    ({"augment": False}, "tch", "904a5053ee31d8db"),
    ({"cls_pretrain_epochs": 7}, "cls", "7ddb5f8b99f3361a"),
    ({"cls_weight_decay": 1e-4, "dis_weight_decay": 1e-2}, "dis", "3d184aa7d0b6c495"),
    ({"tch_weight_decay": 1e-3}, "tch", "5743d14e5c4dd7c6"),
    ({"dis_target": "sampled", "tau_start": 2.0}, "dis", "a04a3e3c2c0b2d58"),
    ({"dataset": "cifar10"}, "cls", "40e192d195582cb3"),
    ({"dis_pretrain_epochs": 0}, "dis", "4433aa92499da284"),
]


@pytest.mark.parametrize("overrides, player, key", KEYS)
def test_existing_cache_keys_stay(overrides, player, key):
    cfg = effective_config(Config.from_dict(overrides))
    assert pretrain_key(cfg, player, _players(cfg)) == key


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


def test_a_pretraining_lock_held_too_long_is_an_error_naming_it(tmp_path, monkeypatch):
    from filelock import FileLock

    from kdgan.run import _cache_lock

    path = tmp_path / "cls-x.pt.lock"
    holder = FileLock(str(path))
    holder.acquire()
    try:
        t0 = time.time()
        with pytest.raises(RuntimeError, match=r"cls-x.pt.lock: another run has been pretraining"):
            with _cache_lock(path, 0.5):
                pass
        assert time.time() - t0 < 10
    finally:
        holder.release()
    with _cache_lock(path, 0.5):  # free again: taken at once
        pass


# ------------------------------------------------------------------ early stopping (patience)
def _supervised(npz: Path, **kw) -> Config:
    return Config(dataset=str(npz), **{**TINY, "method": "supervised", "seed": 3, "epochs": 12, **kw})


def _played(cfg: Config) -> Run:
    run = Run(cfg)
    run.pretrain()
    while not run.finished:
        run.play_epoch()
    return run


def _no_clocks(run) -> list[dict]:
    """The history without its clocks, NaN (epoch 0's tau) as None so that rows compare."""
    return [{k: (None if v != v else v) for k, v in row.items() if not k.startswith("time/")}
            for row in run.history]


def test_patience_is_checked():
    for bad in (-1, "x"):
        with pytest.raises(ConfigError, match="patience"):
            Config.from_dict({"patience": bad})
    assert Config().patience == 0


def test_a_run_stops_after_patience_epochs_without_a_new_best(blobs_npz):
    """A student that cannot learn (a learning rate of 1e-9) never beats epoch 0's validation
    accuracy: with patience 2 it stops after epoch 2, its best epoch is 0."""
    run = _played(_supervised(blobs_npz, cls_lr=1e-9, patience=2))
    s = run.summary()
    assert run.stopped_early and s["stopped_early"] is True
    assert s["epochs_run"] == 2 < run.cfg.epochs and s["best_epoch"] == 0
    assert [h["epoch"] for h in run.history] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="finished"):
        run.play_epoch()


def test_patience_zero_or_never_reached_changes_nothing(blobs_npz):
    """patience=0 (the default) plays every epoch; a patience the run never reaches gives the
    same epochs, bit for bit, as no patience at all; the summary of a run without patience has
    no stopped_early (the summaries written before it stay as they were)."""
    plain = _played(_supervised(blobs_npz, epochs=4))
    loose = _played(_supervised(blobs_npz, epochs=4, patience=10))
    assert plain.epoch == loose.epoch == 4
    assert _no_clocks(plain) == _no_clocks(loose)
    assert "stopped_early" not in plain.summary() and loose.summary()["stopped_early"] is False
    for name, w in plain.game.players["cls"].state_dict().items():
        assert torch.equal(w, loose.game.players["cls"].state_dict()[name])


@pytest.mark.parametrize("lr_plateau", [0, 1])
def test_early_stopping_is_the_same_after_a_resume(blobs_npz, tmp_path, monkeypatch, lr_plateau):
    """Seed 4 stops at epoch 8 of 12 (the patience rule reads the history alone): killed after
    epoch 3 and resumed from its checkpoint, it stops at the same epoch with the same history,
    every file the run writes the same. With lr_plateau 1 (seed 3, patience 4, which stops
    at epoch 4) its learning rate was cut twice before the kill and is cut again after it."""
    from kdgan import train as train_mod

    cfg = _supervised(blobs_npz, seed=3 if lr_plateau else 4, patience=2 + 2 * lr_plateau,
                      cls_lr=1e-3, lr_plateau=lr_plateau)
    straight = train_mod.train(cfg, tmp_path / "straight", quiet=True)
    assert straight["stopped_early"] and straight["epochs_run"] < cfg.epochs
    if lr_plateau:  # the premise: the rate was cut before the kill after epoch 3, and again later
        scales = pd.read_parquet(tmp_path / "straight" / "history.parquet")["lr_scale"].tolist()
        assert scales[1] == 1.0 and min(scales[1:4]) < 1.0 and min(scales[1:]) < min(scales[1:4])
    calls = {"n": 0}
    real_play = Run.play_epoch

    def dies(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_play(self)

    monkeypatch.setattr(Run, "play_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "resumed", quiet=True)
    monkeypatch.setattr(Run, "play_epoch", real_play)
    resumed = train_mod.train(cfg, tmp_path / "resumed", quiet=True)
    for s in (straight, resumed):
        s.pop("wall_s"), s.pop("pretrain_s")
    assert json.dumps(resumed, sort_keys=True) == json.dumps(straight, sort_keys=True)  # NaN too
    a, b = (pd.read_parquet(tmp_path / d / "history.parquet") for d in ("straight", "resumed"))
    clocks = [c for c in a.columns if c.startswith("time/")]
    pd.testing.assert_frame_equal(a.drop(columns=clocks), b.drop(columns=clocks))
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == sorted(
        p.name for p in (tmp_path / "resumed").iterdir())
    for name in ("train_indices.json",):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
    models = [torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("straight", "resumed")]
    weights = [m.pop("weights") for m in models]
    assert models[0] == models[1] and weights[0].keys() == weights[1].keys()
    for k, w in weights[0].items():
        assert torch.equal(w, weights[1][k]), k


# ------------------------------------------------------------------ learning rate on plateaus
def test_plateau_scale_reference_values():
    from kdgan.run import plateau_scale, plateaus

    assert plateau_scale([], 3, 0.5) == 1.0
    assert plateau_scale([0.5, 0.4, 0.4, 0.4], 0, 0.5) == 1.0       # 0: constant rates
    assert plateau_scale([0.5, 0.4, 0.4], 3, 0.5) == 1.0             # 2 epochs without a best
    assert plateau_scale([0.5, 0.4, 0.4, 0.4], 3, 0.5) == 0.5        # 3: one cut
    assert plateau_scale([0.5, 0.5, 0.5, 0.5], 3, 0.5) == 0.5        # a tie is no new best
    assert plateau_scale([0.5] + [0.4] * 6, 3, 0.5) == 0.25          # counted again after a cut
    assert plateau_scale([0.5] + [0.4] * 5, 3, 0.5) == 0.5
    assert plateau_scale([0.5, 0.4, 0.4, 0.6, 0.4, 0.4], 3, 0.5) == 1.0  # a new best resets
    assert plateau_scale([0.5, 0.4, 0.4, 0.4, 0.6, 0.4, 0.4, 0.4], 3, 0.1) == pytest.approx(0.01)
    assert plateau_scale([0.5] + [0.4] * 9, 3, 0.5) == 0.125
    assert plateau_scale([0.5] + [0.4] * 9, 3, 0.5, cuts=2) == 0.25  # at most 2 cuts
    # creeping: a new best by a hair after every third epoch keeps counting plateaus
    creep = [0.5, 0.4, 0.4, 0.4, 0.501, 0.4, 0.4, 0.4, 0.502, 0.4, 0.4, 0.4]
    assert plateaus(creep, 3) == 3 and plateaus(creep[:-1], 3) == 2 and plateaus(creep, 0) == 0


def test_lr_plateau_and_lr_factor_are_checked():
    for key, bad in (("lr_plateau", -1), ("lr_plateau", "x"), ("lr_factor", 0.0), ("lr_factor", 1.0),
                     ("lr_factor", 1.5), ("lr_factor", -0.5), ("lr_cuts", -1)):
        with pytest.raises(ConfigError, match=key):
            Config.from_dict({key: bad, "lr_plateau": 2} if key == "lr_cuts" else {key: bad})
    with pytest.raises(ConfigError, match="lr_cuts=3 with lr_plateau=0"):
        Config.from_dict({"lr_cuts": 3})
    assert (Config().lr_plateau, Config().lr_factor, Config().lr_cuts) == (0, 0.5, 0)


def test_lr_cuts_end_a_creeping_run_that_patience_lets_go_on(blobs_npz):
    """Seed 9 at lr_plateau 1 finds a new best now and then (its patience of 4 never ends
    it within 12 epochs) but has five plateaus: with lr_cuts 2 it stops at its third, its
    history is the uncapped run's up to that epoch, and the rate never went below 1/4."""
    cfg = _supervised(blobs_npz, seed=9, patience=4, lr_plateau=1, cls_lr=1e-3)
    free = _played(cfg)
    capped = _played(cfg.replace(lr_cuts=2))
    accs = [h["val/acc"] for h in free.history]
    from kdgan.run import plateaus
    third = next(e for e in range(len(accs)) if plateaus(accs[:e + 1], 1) == 3)
    assert not free.stopped_early and free.epoch == cfg.epochs  # the premise: patience never ends it
    assert capped.stopped_early and capped.epoch == third < cfg.epochs
    assert _no_clocks(capped) == _no_clocks(free)[:third + 1]
    assert min(h["lr_scale"] for h in capped.history[1:]) == 0.25
    assert capped.summary()["stopped_early"] is True and capped.summary()["epochs_run"] == third


def test_lr_plateau_cuts_every_players_game_rate(blobs_npz):
    """A kdgan student that cannot learn (cls_lr 1e-12) never beats epoch 0's validation
    accuracy: with lr_plateau 2 every player's rate is halved before epochs 3 and 5, the
    history records the factor each epoch was played at, and the optimisers hold the rates."""
    cfg = Config(dataset=str(blobs_npz), **{**TINY, "method": "kdgan", "seed": 3, "epochs": 6,
                                            "cls_lr": 1e-12, "lr_plateau": 2})
    run = _played(cfg)
    assert len({h["val/acc"] for h in run.history}) == 1  # the premise: no new best
    assert [h["lr_scale"] for h in run.history[1:]] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert "lr_scale" not in run.history[0]  # pretraining is not the game
    for name, opt in run.game.optimizers.items():
        assert {g["lr"] for g in opt.param_groups} == {getattr(cfg, f"{name}_lr") * 0.25}, name
    assert set(run.game.optimizers) == {"cls", "tch", "dis"}
    plain = _played(cfg.replace(lr_plateau=0))
    assert "lr_scale" not in plain.history[-1]
    for name, opt in plain.game.optimizers.items():
        assert {g["lr"] for g in opt.param_groups} == {getattr(cfg, f"{name}_lr")}, name


@pytest.mark.parametrize("lr_plateau", [0, 1])
def test_population_members_stop_each_on_its_own(blobs_npz, lr_plateau):
    """Seeds 3, 4, 5 stop at different epochs on their own; as one population each member
    stops where its single run does, and the others play on (with lr_plateau, each member's
    learning rate follows its own history, as in its single run)."""
    from kdgan.population import Population

    cfg = _supervised(blobs_npz, patience=2, cls_lr=1e-3, lr_plateau=lr_plateau)
    singles = [_played(cfg.replace(seed=s)) for s in (3, 4, 5)]
    stops = [r.epoch for r in singles]
    assert len(set(stops)) > 1 and max(stops) < cfg.epochs  # the test's premise
    pop = Population(cfg.replace(population=3))
    pop.pretrain()
    while not pop.finished:
        pop.play_epoch()
    assert pop.epoch == max(stops) and [m.epoch for m in pop.members] == stops
    for m, r in zip(pop.members, singles):
        assert _no_clocks(m) == _no_clocks(r)
    assert [row["epochs_run"] for row in pop.member_rows()] == stops


@pytest.mark.parametrize("patience", [0, 2])
def test_eval_teacher_reads_the_teacher_where_the_run_ends(blobs_npz, patience):
    """eval_teacher: the teacher's accuracies are in epoch 0's row and in the row of the epoch
    the run ends at, its last (patience 0) or an early stop (patience 2, a classifier that
    cannot learn), and nowhere between; the figures are the teacher's as the game left it."""
    cfg = Config(dataset=str(blobs_npz), **{**TINY, "method": "kdgan", "seed": 3, "epochs": 5,
                                            "cls_lr": 1e-12, "tch_lr": 1e-2, "patience": patience,
                                            "eval_teacher": True})
    run = _played(cfg)
    assert run.epoch == (2 if patience else 5)  # the premise: patience 2 stops the run early
    with_teacher = [h["epoch"] for h in run.history if "test/tch_acc" in h]
    assert with_teacher == [0, run.epoch]
    for split in ("val", "test"):
        now = run.game.evaluate("tch", getattr(run.data, split))["acc"]
        assert run.history[-1][f"{split}/tch_acc"] == now
    assert run.history[-1]["test/tch_acc"] != run.history[0]["test/tch_acc"]  # the game moved it
    assert "test/tch_acc" not in _played(cfg.replace(eval_teacher=False)).history[-1]


def test_eval_teacher_in_a_vectorised_population_is_each_members_own(blobs_npz):
    """In a vmap population each member's last row holds its teacher's accuracies, as its
    single run's does."""
    from kdgan.population import Population

    cfg = Config(dataset=str(blobs_npz), **{**TINY, "method": "kdgan", "seed": 3, "epochs": 3,
                                            "eval_teacher": True})
    pop = Population(cfg.replace(population=2, population_backend="vmap"))
    pop.pretrain()
    while not pop.finished:
        pop.play_epoch()
    for m, seed in zip(pop.members, (3, 4)):
        single = _played(cfg.replace(seed=seed))
        assert m.history[-1]["test/tch_acc"] == pytest.approx(single.history[-1]["test/tch_acc"], abs=0.02)
        assert m.history[-1]["test/tch_acc"] == m.game.evaluate("tch", m.data.test)["acc"]
