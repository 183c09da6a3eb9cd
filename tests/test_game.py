"""kdgan.game: Lemma 4.1 for D, the methods' players, the out-of-fold teacher, the players'
penalties, a short run that learns, and histories that repeat the recorded ones exactly."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdgan import data as data_mod
from kdgan import tags
from kdgan.config import Config
from kdgan.game import FoldedTeacher, Game, Weights, effective_config
from kdgan.methods import METHODS, codis, distn, mimic, noisy
from kdgan.run import Run

from conftest import TINY


def _constant_input_data(p_u: np.ndarray, n: int = 4000, seed: int = 0) -> data_mod.Data:
    """One input x = 0 with labels drawn from p_u: the toy problem of Lemma 4.1."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(p_u), size=n, p=p_u)
    x = np.zeros((n, 1), np.float32)
    arrays = {"x_pool": x, "y_pool": y, "x_val": x[:10], "y_val": y[:10],
              "x_test": x[:10], "y_test": y[:10]}
    return data_mod.build(arrays, n=n, seed=seed, source="toy")


def _fix_output(model: torch.nn.Module, probs: np.ndarray) -> None:
    """Make a linear player output log(probs) on x = 0 (its bias), and freeze it."""
    linear = model.net[-1]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.log(torch.tensor(probs, dtype=torch.float32)))
    for p in model.parameters():
        p.requires_grad_(False)


@pytest.mark.slow
@pytest.mark.parametrize("dis_target,tol", [("exact", 0.01), ("sampled", 0.04)])
def test_discriminator_reaches_lemma_4_1_optimum(dis_target, tol):
    """For fixed C and T, the optimal D is p_u / (p_u + p_alpha), p_alpha = a p_c + (1-a) p_t."""
    torch.manual_seed(0)
    p_u = np.array([0.5, 0.3, 0.2])
    p_c = np.array([0.2, 0.2, 0.6])
    p_t = np.array([0.6, 0.3, 0.1])
    alpha = 0.3
    data = _constant_input_data(p_u)
    cfg = Config(dataset="toy", n=len(data.train), method="kdgan", cls_arch="linear",
                 tch_arch="linear", dis_arch="linear", cls_dropout=0.0, tch_dropout=0.0,
                 dis_dropout=0.0, augment=False, batch_size=len(data.train), dis_lr=0.05, alpha=alpha,
                 dis_target=dis_target, device="cpu")
    game = Game(cfg, data, torch.device("cpu"))
    _fix_output(game.players["cls"], p_c)
    _fix_output(game.players["tch"], p_t)
    weights = Weights(alpha=alpha, beta=1.0, gamma=1.0)
    for _ in range(600):
        game.dis_step(game.batches.draw(), tau=0.1, w=weights)
    with torch.no_grad():
        d = torch.sigmoid(game.players["dis"](torch.zeros(1, 1)))[0].numpy()
    p_alpha = alpha * p_c + (1 - alpha) * p_t
    p_data = np.bincount(data.train.y.numpy(), minlength=3) / len(data.train)  # empirical p_u
    np.testing.assert_allclose(d, p_data / (p_data + p_alpha), atol=tol)


def test_the_weights_of_eq_3_go_to_their_players():
    w = Weights(alpha=0.2, beta=3.0, gamma=0.5)
    assert (w.adversarial("cls"), w.adversarial("tch")) == (0.2, 1.0 - 0.2)
    assert (w.distillation("cls"), w.distillation("tch")) == (3.0, 0.5)
    assert Weights.of(Config(alpha=0.3, beta=2.0, gamma=0.1)) == Weights(0.3, 2.0, 0.1)


def test_methods_choose_their_players_and_fixed_settings(blobs_npz):
    data = data_mod.load(Config(dataset=str(blobs_npz), **TINY))
    expected = {"kdgan": {"cls", "tch", "dis"}, "kdgan-wo-gm": {"cls", "tch", "dis"},
                "nagan": {"cls", "dis"}, "supervised": {"cls"}, "mimic": {"cls", "tch"},
                "distn": {"cls", "tch"}, "noisy": {"cls", "tch"}, "codis": {"cls", "tch"},
                "teacher": {"tch"}}
    assert set(expected) == set(METHODS)
    for method, players in expected.items():
        cfg = effective_config(Config(dataset=str(blobs_npz), method=method, **TINY))
        assert set(Game(cfg, data, torch.device("cpu")).players) == players
    assert effective_config(Config(method="nagan")).alpha == 1.0
    assert effective_config(Config(method="kdgan-wo-gm")).estimator == "reinforce"
    assert effective_config(Config(method="teacher")).epochs == 0


@pytest.mark.parametrize("method", ["kdgan", "nagan", "kdgan-wo-gm", "supervised", "mimic",
                                    "distn", "noisy", "codis"])
@pytest.mark.slow
def test_every_method_logs_its_terms_per_player(blobs_npz, method):
    run = Run(Config(dataset=str(blobs_npz), method=method, **{**TINY, "epochs": 1}))
    run.pretrain()
    row = run.play_epoch()
    expected = {
        "kdgan": {"dis/real", "dis/fake_cls", "dis/fake_tch", "tch/adv", "tch/distill",
                  "cls/adv", "cls/distill"},
        "kdgan-wo-gm": {"dis/real", "dis/fake_cls", "dis/fake_tch", "tch/adv", "cls/adv"},
        "nagan": {"dis/real", "dis/fake_cls", "cls/adv"},
        "supervised": {"cls/ce"},
        "mimic": {"cls/distill"},
        "distn": {"cls/distill", "cls/ce"},
        "noisy": {"cls/distill"},
        "codis": {"cls/ce", "cls/distill", "tch/ce", "tch/distill"},
    }[method]
    assert expected <= set(row), sorted(row)
    assert "cls/distill" not in row if method in ("nagan", "supervised") else True
    assert not any(k.startswith("tch/") for k in row) if method in ("mimic", "distn", "noisy") else True


@pytest.mark.slow
def test_fixed_teacher_baselines_leave_the_teacher_alone_and_codis_trains_it(blobs_npz):
    for method, trains_teacher in (("mimic", False), ("distn", False), ("noisy", False),
                                   ("codis", True)):
        run = Run(Config(dataset=str(blobs_npz), method=method, **{**TINY, "epochs": 1}))
        run.pretrain()
        before = {k: v.clone() for k, v in run.game.players["tch"].state_dict().items()}
        cls_before = {k: v.clone() for k, v in run.game.players["cls"].state_dict().items()}
        run.play_epoch()
        same = all(torch.equal(v, run.game.players["tch"].state_dict()[k]) for k, v in before.items())
        assert same is not trains_teacher, method
        assert not all(torch.equal(v, run.game.players["cls"].state_dict()[k])
                       for k, v in cls_before.items()), method


def test_unlabelled_examples_join_the_label_free_steps_only(blobs_npz):
    cfg = Config(dataset=str(blobs_npz), **{**TINY, "augment": False, "unlabeled": 100})
    data = data_mod.load(cfg)
    for method, extra in (("kdgan", True), ("distn", True), ("nagan", True), ("supervised", False),
                          ("teacher", False)):
        game = Game(effective_config(cfg.replace(method=method)), data, torch.device("cpu"))
        batch = game.batches.draw(transfer=True)
        x, xp, y, b = batch.x, batch.xp, batch.y, cfg.batch_size
        assert len(x) == len(y) == (2 * b if extra else b), method
        assert (y[:b] >= 0).all() and (y[b:] == data_mod.UNLABELED).all()
        # the appended rows are unlabelled pool examples, and T and D see the same images
        pool = data.unlabeled.x.flatten(1)
        assert all((pool == row).all(1).any() for row in x[b:].flatten(1))
        assert xp is x
        assert len(game.batches.draw().x) == b  # D's steps and pretraining: labelled only


@pytest.mark.slow
def test_pretraining_does_not_depend_on_the_unlabelled_examples(blobs_npz):
    """So a run with a transfer set shares the pretrained players of one without it."""
    runs = [Run(Config(dataset=str(blobs_npz), method="kdgan", **{**TINY, "unlabeled": u}))
            for u in (0, 100)]
    for run in runs:
        run.pretrain()
    for name in ("cls", "tch", "dis"):
        a, b = (r.game.players[name].state_dict() for r in runs)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    row = runs[1].play_epoch()  # and the game runs on the larger minibatches
    assert np.isfinite(row["cls/distill"]) and np.isfinite(row["dis/real"])


def test_baseline_losses_against_hand_values():
    cfg = Config(distn_p=0.7, distn_temperature=2.0, codis_weight=0.5)
    h = torch.tensor([[1.0, 0.0, -1.0]])
    f = torch.tensor([[2.0, 1.0, 0.0]])
    y = torch.tensor([0])
    # MIMIC: 1/2 ||h - f||^2 = 1/2 * 3
    assert mimic.loss(cfg, h, f, y)["loss"].item() == pytest.approx(1.5)
    # DISTN: p T^2 KL(softmax(f/T) || softmax(h/T)) + (1-p) CE(y, h)
    p_t = np.exp(f[0].numpy() / 2) / np.exp(f[0].numpy() / 2).sum()
    q = np.exp(h[0].numpy() / 2) / np.exp(h[0].numpy() / 2).sum()
    kl = (p_t * np.log(p_t / q)).sum()
    ce = -np.log(np.exp(1.0) / np.exp(h[0].numpy()).sum())
    assert distn.loss(cfg, h, f, y)["loss"].item() == pytest.approx(0.7 * 4 * kl + 0.3 * ce, rel=1e-5)
    # CODIS: CE + psi KL at temperature 1, the other's prediction as target
    p1 = np.exp(f[0].numpy()) / np.exp(f[0].numpy()).sum()
    q1 = np.exp(h[0].numpy()) / np.exp(h[0].numpy()).sum()
    kl1 = (p1 * np.log(p1 / q1)).sum()
    assert codis.loss(cfg, h, f, y)["loss"].item() == pytest.approx(ce + 0.5 * kl1, rel=1e-5)
    # NOISY: sigma 0 is MIMIC; rate 0 never perturbs; otherwise f (1 + xi) with std sigma f
    assert noisy.loss(cfg.replace(noisy_sigma=1e-12), h, f, y)["loss"].item() == pytest.approx(1.5)
    assert torch.equal(noisy.perturb(f, 5.0, 0.0), f)
    torch.manual_seed(0)
    big = f.expand(20000, 3)
    xi = noisy.perturb(big, 0.1, 1.0) / big - 1  # relative perturbation of the nonzero logits
    assert xi[:, :2].std().item() == pytest.approx(0.1, rel=0.03)
    assert abs(xi[:, :2].mean().item()) < 3e-3
    with torch.no_grad():
        rates = np.mean([not torch.equal(noisy.perturb(f, 0.1, 0.3), f) for _ in range(4000)])
    assert rates == pytest.approx(0.3, abs=0.03)


@pytest.mark.slow
def test_a_short_kdgan_run_learns(blobs_npz):
    """Three classes (chance 33%): pretraining and a few game epochs reach far above chance,
    and the game does not destroy what pretraining learned."""
    torch.manual_seed(0)
    run = Run(Config(dataset=str(blobs_npz), method="kdgan",
                     **{**TINY, "pretrain_epochs": 10, "epochs": 5}))
    first = run.pretrain()
    while not run.finished:
        last = run.play_epoch()
    assert first["val/acc"] > 0.8
    assert last["val/acc"] > 0.8
    s = run.summary()
    assert s["best_epoch"] in range(0, 6) and 0.8 < s["test_acc"] <= 1.0


@pytest.mark.slow
def test_gradient_variance_logging_matches_a_plain_computation(blobs_npz):
    """The switch logs trace(Cov) of the classifier's per-step term gradients; off, nothing."""
    off = Run(Config(dataset=str(blobs_npz), method="kdgan", **{**TINY, "epochs": 1}))
    off.pretrain()
    assert not any(k.startswith("grad/") for k in off.play_epoch())
    run = Run(Config(dataset=str(blobs_npz), method="kdgan", log_grad_variance=True,
                     **{**TINY, "epochs": 1, "cls_steps": 3}))
    run.pretrain()
    seen = []
    real = run.game.gradvar.track

    def spy(terms):
        params = [p for p in run.game.players["cls"].parameters()]
        g = torch.autograd.grad(terms["cls/adv"], params, retain_graph=True)
        seen.append(torch.cat([x.reshape(-1) for x in g]))
        real(terms)

    run.game.gradvar.track = spy
    row = run.play_epoch()
    stacked = torch.stack(seen)  # (steps, params)
    expected = stacked.var(dim=0, unbiased=False).sum().item()
    assert row["grad/adv_var"] == pytest.approx(expected, rel=1e-4)
    assert row["grad/distill_var"] > 0 and "grad/adv_mean_sq" in row


# ---------------------------------------------------------------- the out-of-fold teacher
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


def _collection(tmp_path, n_train: int = 200, n_eval: int = 50):
    c = tags.synthesize(n_train=n_train, n_val=n_eval, n_test=n_eval, num_labels=8, dim=16, seed=0)
    return tags.write(tmp_path / "c.parquet", c)


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_game_runs_with_an_out_of_fold_teacher_and_unlabelled_rows(tmp_path):
    path = _collection(tmp_path)
    cfg = Config.from_dict({"dataset": str(path), "method": "kdgan", "n": 100, "unlabeled": 50,
                            "tch_folds": 2, "pretrain_epochs": 1, "dis_pretrain_epochs": 1,
                            "cls_arch": "mlp-small"})
    game = Game(cfg, tags.load(cfg), torch.device("cpu"))
    game.pretrain()
    terms = game.play_epoch(tau=1.0)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in terms.values())


# ---------------------------------------------------------------- the players' penalties
def test_the_penalty_reaches_the_optimisers_and_shrinks_the_teacher(tmp_path):
    base = Config.from_dict({"dataset": str(_collection(tmp_path, 300, 100)), "method": "distn",
                             "n": 100, "cls_arch": "mlp-small", "tch_arch": "text-linear",
                             "pretrain_epochs": 10, "pretrain_lr": 1e-2, "batch_size": 20,
                             "device": "cpu"})
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


def test_the_classifier_can_start_the_game_untrained_while_the_teacher_is_pretrained(tmp_path):
    cfg = Config.from_dict({"dataset": str(_collection(tmp_path, 300, 100)), "method": "distn",
                            "n": 100, "cls_arch": "mlp-small", "tch_arch": "text-linear",
                            "pretrain_epochs": 2, "cls_pretrain_epochs": 0, "batch_size": 20,
                            "device": "cpu"})
    game = Game(cfg, tags.load(cfg), torch.device("cpu"))
    before = {k: {n: p.clone() for n, p in game.players[k].state_dict().items()} for k in ("cls", "tch")}
    game.pretrain()
    for name, changed in (("cls", False), ("tch", True)):
        after = game.players[name].state_dict()
        assert any(not torch.equal(after[n], p) for n, p in before[name].items()) == changed, name


# Per-epoch values of short runs on `blobs_npz`, recorded from the game before it was split
# into kdgan.batches and kdgan.gradvar (one CPU thread: a second one changes the last bits of
# some reductions). Exact equality: the same random draws in the same order, the same
# arithmetic. `digest` covers every other column of the history.
GOLDEN_RUNS = {
    "kdgan": {"method": "kdgan"},
    "kdgan-wo-gm": {"method": "kdgan-wo-gm"},
    "kdgan-folds-unlabeled-gradvar": {"method": "kdgan", "tch_folds": 2, "unlabeled": 100,
                                      "log_grad_variance": True},
    "codis": {"method": "codis"},
    "noisy": {"method": "noisy", "noisy_rate": 0.5},
}
GOLDEN = {
    "kdgan": {
        "digest": "c633ae6aa4026d93",
        "pretrain/cls_ce": [1.0465083122253418],
        "pretrain/tch_ce": [1.002566973368327],
        "pretrain/dis_loss": [1.3661127090454102],
        "dis/loss": [1.3756073713302612, 1.3791537284851074, 1.3743170499801636],
        "tch/loss": [0.5494163632392883, 0.5558916926383972, 0.5443582534790039],
        "cls/loss": [0.15414565801620483, 0.17671479284763336, 0.183680921792984],
        "val/acc": [0.595, 0.785, 0.765, 0.425],
    },
    "kdgan-wo-gm": {
        "digest": "bf3910db21f04dcf",
        "pretrain/cls_ce": [1.0465083122253418],
        "pretrain/tch_ce": [1.002566973368327],
        "pretrain/dis_loss": [1.3661127090454102],
        "dis/loss": [1.3756073713302612, 1.3574692010879517, 1.3786654472351074],
        "tch/loss": [0.005924862809479237, -0.0012356439838185906, -0.0015235436148941517],
        "cls/loss": [0.017514675855636597, 0.03228450566530228, 0.03978439420461655],
        "val/acc": [0.595, 0.82, 0.87, 0.425],
    },
    "kdgan-folds-unlabeled-gradvar": {
        "digest": "0702a8efb05862b4",
        "pretrain/cls_ce": [1.0465083122253418],
        "pretrain/tch_ce": [1.0283393859863281],
        "pretrain/dis_loss": [1.3656492233276367],
        "dis/loss": [1.37611985206604, 1.3609429597854614, 1.3594775199890137],
        "tch/loss": [0.5392443537712097, 0.5498398542404175, 0.5398222208023071],
        "cls/loss": [0.1570816934108734, 0.17397555708885193, 0.17867396771907806],
        "grad/adv_var": [5.0169273890787736e-05, 0.00036999201984144747, 0.0006790895713493228],
        "val/acc": [0.595, 0.8, 0.81, 0.445],
    },
    "codis": {
        "digest": "03ab775e11aa3a5b",
        "pretrain/cls_ce": [1.0465083122253418],
        "pretrain/tch_ce": [1.002566973368327],
        "tch/loss": [0.9596801400184631, 0.9456145167350769, 0.9092111587524414],
        "cls/loss": [1.0176169872283936, 1.0042946338653564, 1.0148296356201172],
        "val/acc": [0.595, 0.605, 0.615, 0.62],
    },
    "noisy": {
        "digest": "da5003050f840710",
        "pretrain/cls_ce": [1.0465083122253418],
        "pretrain/tch_ce": [1.002566973368327],
        "cls/loss": [0.0708976686000824, 0.057275526225566864, 0.041199810802936554],
        "val/acc": [0.595, 0.45, 0.32, 0.315],
    },
}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _digest(history: pd.DataFrame) -> str:
    h = history.drop(columns=["time/epoch_s"])
    blob = "|".join(h.columns).encode() + h.to_numpy(np.float64).tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]


@pytest.mark.parametrize("name", list(GOLDEN_RUNS))
def test_a_run_repeats_the_recorded_histories_exactly(blobs_npz, one_thread, name):
    run = Run(Config(dataset=str(blobs_npz), **{**TINY, **GOLDEN_RUNS[name], "threads": 1}))
    run.pretrain()
    while not run.finished:
        run.play_epoch()
    h = run.history_frame()
    for column, values in GOLDEN[name].items():
        if column != "digest":
            assert h[column].dropna().tolist() == values, column
    assert _digest(h) == GOLDEN[name]["digest"]
