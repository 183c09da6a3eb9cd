"""Seed populations: member k is the single run of seed s + k (weights, batches, losses,
accuracies), a diverging member stops alone, a killed population resumes as if never stopped."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from kdgan import train as train_mod
from kdgan.config import Config, ConfigError
from kdgan.game import NonFiniteLossError
from kdgan.population import DIVERGED, FINISHED, Population, standard_error
from kdgan.run import Run

from conftest import TINY

SEED, P = 3, 3


def _cfg(npz, **kw) -> Config:
    return Config(dataset=str(npz), **{**TINY, "seed": SEED, **kw})


def _metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """A history without its clocks (and the seed column a population adds)."""
    return frame.drop(columns=[c for c in frame if c.startswith("time/") or c == "seed"]).reset_index(drop=True)


def _weights(game) -> dict[str, torch.Tensor]:
    return {f"{p}.{k}": v for p, m in game.players.items() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("method", ["kdgan", "distn", "noisy"])
def test_members_start_and_draw_exactly_as_single_runs(blobs_npz, method):
    """Initial weights, the training subset and the first minibatches (augmentation
    included) of member k are the single run's of seed s + k, bit for bit."""
    pop = Population(_cfg(blobs_npz, method=method, population=P))
    assert pop.seeds == [SEED, SEED + 1, SEED + 2] and pop.backend == "loop"
    firsts = []
    for k in range(P):
        single = Run(_cfg(blobs_npz, method=method, seed=SEED + k))
        member = pop.members[k]
        assert (member.data.train_indices == single.data.train_indices).all()
        a, b = _weights(member.game), _weights(single.game)
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
        with pop.streams.member(k):
            mine = [member.game.batches.draw() for _ in range(3)]
        theirs = [single.game.batches.draw() for _ in range(3)]
        for x, y in zip(mine, theirs):
            assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)
        firsts.append(mine[0].x)
    assert not torch.equal(firsts[0], firsts[1])  # and the members differ from each other


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kdgan", "supervised", "noisy"])
def test_each_member_is_its_single_run_step_by_step(blobs_npz, tmp_path, method):
    """Every epoch's losses and accuracies of every member equal the single run's exactly
    (tolerance 0: the loop backend makes the same calls on the same streams)."""
    cfg = _cfg(blobs_npz, method=method, population=P, epochs=3)
    summary = train_mod.train(cfg, tmp_path / "pop", quiet=True)
    history = pd.read_parquet(tmp_path / "pop" / "history.parquet")
    assert sorted(history["seed"].unique()) == pop_seeds()
    singles = []
    for k, seed in enumerate(pop_seeds()):
        single = train_mod.train(_cfg(blobs_npz, method=method, seed=seed, epochs=3),
                                 tmp_path / f"s{seed}", quiet=True)
        singles.append(single)
        mine = _metrics(history[history["seed"] == seed])
        theirs = _metrics(pd.read_parquet(tmp_path / f"s{seed}" / "history.parquet"))
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
        m = summary["members"][k]
        assert (m["seed"], m["val_acc"], m["test_acc"], m["best_epoch"], m["last_test_acc"]) == (
            seed, single["val_acc"], single["test_acc"], single["best_epoch"], single["last_test_acc"])
        assert m["status"] == FINISHED and m["reason"] == ""
    vals = [s["val_acc"] for s in singles]
    assert summary["val_acc"] == pytest.approx(sum(vals) / P)
    assert summary["val_acc_se"] == pytest.approx(standard_error(vals))
    assert summary["population"] == P and summary["seeds"] == pop_seeds()
    # model.pt: each member's selected classifier, scoring its val_acc
    blob = torch.load(tmp_path / "pop" / "model.pt", weights_only=True)
    assert [b["seed"] for b in blob["members"]] == pop_seeds()
    for b, single in zip(blob["members"], singles):
        assert b["val_acc"] == single["val_acc"] and b["epoch"] == single["best_epoch"]
        ref = torch.load(tmp_path / f"s{b['seed']}" / "model.pt", weights_only=True)["weights"]
        assert all(torch.equal(ref[n], b["weights"][n]) for n in ref)


def _poisoned(cfg: Config) -> Population:
    """A population whose member 1 has NaN classifier weights after pretraining, played out."""
    pop = Population(cfg)
    pop.pretrain()
    with torch.no_grad():
        for w in pop.members[1].game.players["cls"].parameters():
            w.fill_(float("nan"))
    while not pop.finished:
        pop.play_epoch()
    return pop


def _killed(monkeypatch, cls, name: str, at: int, start) -> None:
    """start() is killed (KeyboardInterrupt) at the at-th call of cls.name; then the real one."""
    calls = {"n": 0}
    real = getattr(cls, name)

    def dies(self):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(cls, name, dies)
    with pytest.raises(KeyboardInterrupt):
        start()
    monkeypatch.setattr(cls, name, real)


def pop_seeds() -> list[int]:
    return list(range(SEED, SEED + P))


def test_a_population_of_one_is_the_single_run(blobs_npz, tmp_path):
    one = train_mod.train(_cfg(blobs_npz), tmp_path / "one", quiet=True)
    direct = Run(_cfg(blobs_npz))
    direct.pretrain()
    while not direct.finished:
        direct.play_epoch()
    ref = direct.summary()
    for key in ("val_acc", "test_acc", "best_epoch", "last_test_acc", "seed", "config"):
        assert one[key] == ref[key], key
    assert one["members"] == [{"seed": SEED, "val_acc": ref["val_acc"], "test_acc": ref["test_acc"],
                               "best_epoch": ref["best_epoch"], "last_val_acc": ref["last_val_acc"],
                               "last_test_acc": ref["last_test_acc"], "epochs_run": ref["epochs_run"],
                               "status": FINISHED, "reason": ""}]
    assert one["val_acc_se"] != one["val_acc_se"]  # NaN: no spread from one member
    state = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    assert set(state["game"]["players"]) == {"cls", "tch", "dis"}  # the single run's format


@pytest.mark.slow
def test_a_diverging_member_stops_alone(blobs_npz, tmp_path):
    """Member 1's classifier is poisoned after pretraining: it stops at epoch 1 with its
    reason; the others finish exactly as their single runs."""
    cfg = _cfg(blobs_npz, population=P)
    pop = _poisoned(cfg)
    s = pop.summary()
    statuses = [m["status"] for m in s["members"]]
    assert statuses == [FINISHED, DIVERGED, FINISHED] and s["diverged"] == 1
    assert "epoch 1: non-finite loss" in s["members"][1]["reason"]
    assert s["members"][1]["epochs_run"] == 0
    for k in (0, 2):
        ref = train_mod.train(_cfg(blobs_npz, seed=SEED + k), tmp_path / f"s{k}", quiet=True)
        assert s["members"][k]["val_acc"] == ref["val_acc"]
    h = pop.history_frame()
    assert h[h["seed"] == SEED + 1]["epoch"].tolist() == [0]
    # every member diverging fails the run, naming each
    pop = Population(cfg)
    pop.pretrain()
    with torch.no_grad():
        for m in pop.members:
            for w in m.game.players["cls"].parameters():
                w.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="every member diverged: seed 3: epoch 1"):
        pop.play_epoch()


@pytest.mark.slow
def test_a_killed_population_resumes_equal_to_an_uninterrupted_one(blobs_npz, tmp_path, monkeypatch):
    cfg = _cfg(blobs_npz, population=P, epochs=4)
    train_mod.train(cfg, tmp_path / "straight", quiet=True)
    # the population is killed inside its third epoch, after member 0's
    _killed(monkeypatch, Run, "play_epoch", 2 * P + 2, lambda: train_mod.train(cfg, tmp_path / "resumed", quiet=True))
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    train_mod.train(cfg, tmp_path / "resumed", quiet=True)
    # every file the run writes
    a, b = tmp_path / "straight", tmp_path / "resumed"
    pd.testing.assert_frame_equal(_metrics(pd.read_parquet(a / "history.parquet")),
                                  _metrics(pd.read_parquet(b / "history.parquet")))
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (sa, sb):
        s.pop("wall_s"), s.pop("pretrain_s")
    assert sa == sb
    assert (a / "train_indices.json").read_text() == (b / "train_indices.json").read_text()
    ma, mb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    for x, y in zip(ma["members"], mb["members"]):
        assert x["seed"] == y["seed"] and all(torch.equal(x["weights"][n], y["weights"][n]) for n in x["weights"])
    ca, cb = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (a, b))
    for x, y in zip(ca["members"], cb["members"]):
        for player, weights in x["game"]["players"].items():
            assert all(torch.equal(t, y["game"]["players"][player][n]) for n, t in weights.items())
        assert torch.equal(x["rng"]["torch"], y["rng"]["torch"])


def test_population_is_checked_before_any_work(blobs_npz):
    with pytest.raises(ConfigError, match=r"population=0: expected an integer >= 1"):
        Config.from_dict({"population": 0})
    with pytest.raises(ConfigError, match=r"population_backend='gpu': expected one of"):
        Config.from_dict({"population_backend": "gpu"})
    pop = Population(_cfg(blobs_npz, population=2))
    state = pop.state_dict()
    other = Population(_cfg(blobs_npz, population=3))
    with pytest.raises(ValueError, match="different config"):
        other.load_state_dict(state)


# ---------------------------------------------------------------------------- the vmap backend
VMAP_RTOL = 1e-4          # loss terms: float rounding of batched matmuls
VMAP_ACC_IMAGES = 1       # accuracies: at most one validation or test image apart


@pytest.mark.slow
@pytest.mark.parametrize("method", ["kdgan", "distn"])
def test_vmap_members_match_their_single_runs_within_float_rounding(blobs_npz, tmp_path, method):
    cfg = _cfg(blobs_npz, method=method, population=P, epochs=3, population_backend="vmap")
    summary = train_mod.train(cfg, tmp_path / "pop", quiet=True)
    assert summary["backend"] == "vmap"
    history = pd.read_parquet(tmp_path / "pop" / "history.parquet")
    for seed in pop_seeds():
        single = Run(_cfg(blobs_npz, method=method, seed=seed, epochs=3))
        single.pretrain()
        while not single.finished:
            single.play_epoch()
        mine = _metrics(history[history["seed"] == seed])
        theirs = _metrics(single.history_frame())
        assert list(mine.columns) == list(theirs.columns)
        images = len(single.data.val)
        for col in mine:
            if col.endswith("/acc"):
                assert (mine[col] - theirs[col]).abs().max() * images <= VMAP_ACC_IMAGES + 1e-9, col
            else:
                pd.testing.assert_series_equal(mine[col], theirs[col], rtol=VMAP_RTOL, atol=1e-6)


@pytest.mark.slow
def test_vmap_members_cut_their_rates_and_stop_each_on_their_own(blobs_npz):
    """lr_plateau and patience under vmap: seeds 3, 4, 5 cut their learning rates and stop at
    different epochs; each member's history (its lr_scale column included) is its single
    run's within float rounding, and its optimisers hold the rates its single run's hold."""
    base = _cfg(blobs_npz, method="supervised", epochs=12, patience=3, lr_plateau=1, lr_cuts=2,
                cls_lr=3e-3)
    singles = []
    for seed in pop_seeds():
        single = Run(base.replace(seed=seed))
        single.pretrain()
        while not single.finished:
            single.play_epoch()
        singles.append(single)
    stops = [r.epoch for r in singles]
    cuts = [[h["lr_scale"] for h in r.history[1:]] for r in singles]
    assert len(set(stops)) > 1 and max(stops) < base.epochs  # the premise: they stop apart
    assert len({tuple(c[:min(stops)]) for c in cuts}) > 1  # ... and cut apart while all play
    pop = Population(base.replace(population=P, population_backend="vmap"))
    assert pop.backend == "vmap"
    pop.pretrain()
    while not pop.finished:
        pop.play_epoch()
    assert [m.epoch for m in pop.members] == stops
    for m, single in zip(pop.members, singles):
        mine, theirs = _metrics(m.history_frame()), _metrics(single.history_frame())
        assert list(mine.columns) == list(theirs.columns)
        for col in mine:
            if col.endswith("/acc"):
                assert (mine[col] - theirs[col]).abs().max() * len(single.data.val) <= VMAP_ACC_IMAGES + 1e-9, col
            else:
                pd.testing.assert_series_equal(mine[col], theirs[col], rtol=VMAP_RTOL, atol=1e-6)
    last = min(stops)  # after the epoch every member played, each one's rate is its own
    for m, single in zip(pop.members, singles):
        if m.epoch == last:
            assert m.game.optimizers["cls"].param_groups[0]["lr"] == single.game.optimizers["cls"].param_groups[0]["lr"]


@pytest.mark.slow
@pytest.mark.parametrize("lr_plateau", [0, 1])
def test_a_killed_vmap_population_resumes_equal_to_an_uninterrupted_one(blobs_npz, tmp_path, monkeypatch,
                                                                          lr_plateau):
    cfg = _cfg(blobs_npz, population=P, epochs=4, population_backend="vmap", lr_plateau=lr_plateau)
    train_mod.train(cfg, tmp_path / "straight", quiet=True)
    _killed(monkeypatch, Population, "_play_vectorised", 3, lambda: train_mod.train(cfg, tmp_path / "resumed", quiet=True))
    train_mod.train(cfg, tmp_path / "resumed", quiet=True)
    pd.testing.assert_frame_equal(_metrics(pd.read_parquet(tmp_path / "straight" / "history.parquet")),
                                  _metrics(pd.read_parquet(tmp_path / "resumed" / "history.parquet")))


@pytest.mark.slow
def test_a_diverging_member_stops_alone_under_vmap(blobs_npz):
    s = _poisoned(_cfg(blobs_npz, population=P, population_backend="vmap")).summary()
    assert [m["status"] for m in s["members"]] == [FINISHED, DIVERGED, FINISHED]
    assert "epoch 1: non-finite loss" in s["members"][1]["reason"]
    assert all(m["val_acc"] == m["val_acc"] for m in s["members"])  # the others are numbers


def test_vmap_refuses_what_it_cannot_vectorise_before_any_work(blobs_npz):
    with pytest.raises(ConfigError, match="population_backend='vmap': method noisy draws noise"):
        Population(_cfg(blobs_npz, method="noisy", population=2, population_backend="vmap"))
    # auto on a CPU is the loop, whatever the method
    assert Population(_cfg(blobs_npz, method="noisy", population=2)).backend == "loop"
