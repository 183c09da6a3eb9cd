"""The three-player game of KDGAN (paper Algorithm 1) and its relatives.

Players: classifier C (the deliverable; sees x), teacher T and discriminator D (see the
privileged input xp, which is x itself when the privilege is only model capacity).
D scores a label vector y against per-class scores s(xp): D(x, y) = sigmoid(<y, s(xp)>).

A method (`kdgan.methods`) is a choice of players and of how they are trained; the players,
pretraining and evaluation here, and the minibatches of `kdgan.batches`, are shared by all of
them. Every step takes the minibatch it works on and draws nothing for it.
Ray never appears here: `kdgan.run` drives a Game epoch by epoch, `kdgan.tune` wraps that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdgan import losses
from kdgan.batches import Batch, BatchSource
from kdgan.config import Config
from kdgan.data import Data, Split, TextInput
from kdgan.gradvar import GradientVariance
from kdgan.methods import METHODS, LossFn, Method
from kdgan.metrics import ranking_sums
from kdgan.models import build


# Seed offsets per player: a player's initial weights and its pretraining draws depend only
# on the run's seed and the player, not on which other players the method has, so every
# method of a seed starts from the same classifier and distils from the same teacher.
PLAYER_SEED = {"cls": 101, "tch": 202, "dis": 303}
PRETRAIN_SEED = {"cls": 1101, "tch": 2202, "dis": 3303}


def effective_config(cfg: Config) -> Config:
    """The config with the method's fixed settings applied: what the run actually uses."""
    fixed = dict(METHODS[cfg.method].fixed)
    return cfg.replace(**fixed) if fixed else cfg


def pretrain_epochs(cfg: Config, name: str) -> int:
    """Passes of supervised pretraining of C or T (C's may differ: `cls_pretrain_epochs`)."""
    if name == "cls" and cfg.cls_pretrain_epochs >= 0:
        return cfg.cls_pretrain_epochs
    return cfg.pretrain_epochs


class FoldedTeacher(nn.Module):
    """k teachers, member j trained on the labels of every fold but j (`Config.tch_folds`).

    forward(xp, fold): row i gets member fold[i]'s logits, the one that never saw its label
    (a row with fold -1, or every row when fold is None, gets the members' mean)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, xp: torch.Tensor | TextInput, fold: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.stack([m(xp) for m in self.members])  # (k, B, K)
        mean = out.mean(dim=0)
        if fold is None:
            return mean
        routed = out.gather(0, fold.clamp(min=0)[None, :, None].expand(1, -1, out.shape[-1]))[0]
        return torch.where((fold >= 0)[:, None], routed, mean)

    def fit_loss(self, xp: torch.Tensor | TextInput, y: torch.Tensor, fold: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each member on the rows outside its fold, averaged over members."""
        terms = [F.cross_entropy(m(xp[fold != j]), y[fold != j])
                 for j, m in enumerate(self.members) if bool((fold != j).any())]
        return torch.stack(terms).mean()


@dataclass(frozen=True)
class Weights:
    """The weights of the value function (Eq. 3), given to every step that uses them.

    alpha: the share of D's fake examples that come from C (the rest from T), which is also
    the weight of C's adversarial term (T's: 1 - alpha); beta, gamma: the weights of C's and
    T's distillation losses L_DS^c and L_DS^t."""

    alpha: float
    beta: float
    gamma: float

    @classmethod
    def of(cls, cfg: Config) -> "Weights":
        return cls(cfg.alpha, cfg.beta, cfg.gamma)

    def adversarial(self, name: str) -> float:
        """Weight of player `name`'s adversarial term, and of its fake examples in D's loss."""
        return self.alpha if name == "cls" else 1.0 - self.alpha

    def distillation(self, name: str) -> float:
        return self.beta if name == "cls" else self.gamma


def epoch_steps(cfg: Config, method: Method, players: tuple[str, ...]) -> list[tuple[str, str]]:
    """The steps of one game epoch in their order, as (kind, player): for the KDGAN family
    k_D ('dis', 'dis'), k_T ('generator', 'tch') and k_C ('generator', 'cls') steps (Algorithm
    1, lines 3-11); for the other methods k_T ('loss', 'tch') steps when the teacher trains and
    k_C ('loss', 'cls') when the classifier does. `Game.play_epoch` and the vectorised game of
    `kdgan.vectorised` both follow it."""
    if method.adversarial:
        return ([("dis", "dis")] * (cfg.dis_steps if "dis" in players else 0)
                + [("generator", "tch")] * (cfg.tch_steps if "tch" in players else 0)
                + [("generator", "cls")] * cfg.cls_steps)
    return ([("loss", "tch")] * (cfg.tch_steps if method.tch_loss is not None else 0)
            + [("loss", "cls")] * (cfg.cls_steps if method.cls_loss is not None else 0))


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the term and the epoch."""


class Game:
    """Players, optimisers, minibatches and the steps of Algorithm 1 for one run."""

    def __init__(self, cfg: Config, data: Data, device: torch.device) -> None:
        self.cfg = cfg
        self.data = data
        self.device = device
        self.method: Method = METHODS[cfg.method]
        self.players: dict[str, nn.Module] = {p: self._build(p) for p in self.method.players}
        self.optimizers = {p: self.optimizer(p, getattr(cfg, f"{p}_lr")) for p in self.players}
        self.weights = Weights.of(cfg)
        folded = "tch" in self.players and cfg.tch_folds
        self.batches = BatchSource(cfg, data, device, folds=cfg.tch_folds if folded else 0,
                                   transfer=len(self.players) > 1)
        self.gradvar = GradientVariance(self.players["cls"]) if cfg.log_grad_variance else None

    def _build(self, name: str) -> nn.Module:
        """Player `name` with initial weights drawn from the run's seed and the player alone."""
        cfg, k = self.cfg, self.data.num_classes
        shape = self.data.in_shape if name == "cls" else self.data.priv_shape
        torch.manual_seed(cfg.seed * 10_007 + PLAYER_SEED[name])
        arch, drop = getattr(cfg, f"{name}_arch"), getattr(cfg, f"{name}_dropout")
        if name == "tch" and cfg.tch_folds:
            members = [build(arch, shape, k, drop) for _ in range(cfg.tch_folds)]
            return FoldedTeacher(members).to(self.device)
        return build(arch, shape, k, drop).to(self.device)

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        """Adam over a player's weights at `lr`, with the player's L2 penalty."""
        decay = getattr(self.cfg, f"{name}_weight_decay")
        return torch.optim.Adam(self.players[name].parameters(), lr=lr, weight_decay=decay)

    def scale_lr(self, scale: float) -> None:
        """Set every game optimiser's learning rate to its player's `<player>_lr` x scale
        (Adam's moments are kept)."""
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = getattr(self.cfg, f"{name}_lr") * scale

    @property
    def folds(self) -> torch.Tensor | None:
        """(n,) the fold of each training example when the teacher is out-of-fold, else None."""
        return self.batches.folds

    def batch(self, index: torch.Tensor | None = None,
              transfer: bool = False) -> tuple[torch.Tensor, torch.Tensor | TextInput, torch.Tensor]:
        """(x, xp, y) of a training minibatch as the steps draw it (`BatchSource.draw`)."""
        b = self.batches.draw(index, transfer)
        return b.x, b.xp, b.y

    # ------------------------------------------------------------------ phases
    def pretrain(self, log: Callable[[str], None] | None = None) -> dict[str, float]:
        """Algorithm 1, line 1: every player in turn (`pretrain_player`)."""
        out: dict[str, float] = {}
        for name in self.players:
            out.update(self.pretrain_player(name, log))
        return out

    def pretrain_player(self, name: str, log: Callable[[str], None] | None = None) -> dict[str, float]:
        """Pretrain one player, with random draws seeded by the run's seed and the player alone.

        C and T: cross-entropy on the labelled data. D (after C and T): against the pretrained
        C and T, its fake examples from an even mix of C and T (or C alone without a teacher),
        so that pretraining does not depend on alpha and can be shared by every trial of a
        search.
        """
        cfg = self.cfg
        torch.manual_seed(cfg.seed * 10_007 + PRETRAIN_SEED[name])
        if name in ("cls", "tch"):
            opt = self.optimizer(name, cfg.pretrain_lr)
            ce = float("nan")
            epochs = pretrain_epochs(cfg, name)
            for e in range(epochs):
                ces = [self.supervised_step(name, b, opt)[f"{name}/ce"] for b in self.batches.epoch()]
                ce = float(sum(ces)) / len(ces)
                if log and (e + 1) % max(1, epochs // 4) == 0:
                    log(f"pretrain {name} epoch {e + 1}/{epochs} ce {ce:.4f}")
            return {f"pretrain/{name}_ce": ce}
        opt = self.optimizer("dis", cfg.pretrain_lr)
        even = replace(self.weights, alpha=0.5 if "tch" in self.players else 1.0)  # not alpha
        for _ in range(cfg.dis_pretrain_epochs):
            for b in self.batches.epoch():
                terms = self.dis_step(b, cfg.tau_start, even, opt)
        return {"pretrain/dis_loss": float(terms["dis/loss"])} if cfg.dis_pretrain_epochs else {}

    def play_epoch(self, tau: float) -> dict[str, float]:
        """One epoch: k_D discriminator, k_T teacher, k_C classifier steps (Algorithm 1,
        lines 3-11) for the KDGAN family; for the other methods, k_T steps on the teacher's
        loss (when it trains) and k_C on the classifier's. Returns epoch-mean terms."""
        cfg, w, draw = self.cfg, self.weights, self.batches.draw
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}

        def add(terms: dict[str, torch.Tensor]) -> None:
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v
                counts[k] = counts.get(k, 0) + 1

        for kind, name in epoch_steps(cfg, self.method, tuple(self.players)):
            if kind == "dis":
                add(self.dis_step(draw(), tau, w))
            elif kind == "generator":
                add(self.generator_step(name, draw(transfer=True), tau, w))
            else:
                add(self.loss_step(name, draw(transfer=True), self.method.loss(name)))
        means = {k: float(v) / counts[k] for k, v in sums.items()}
        return {**means, **self.gradvar.summary()} if self.gradvar else means

    # ------------------------------------------------------------------ steps
    def supervised_step(self, name: str, batch: Batch,
                        opt: torch.optim.Optimizer | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy on the true labels for C or T (pretraining)."""
        self._train_only(name)
        if name == "tch" and batch.fold is not None:  # each member on the other folds only
            loss = self.players["tch"].fit_loss(batch.xp, batch.y, batch.fold)
        else:
            loss = F.cross_entropy(self._logits(name, batch), batch.y)
        self._update(name, loss, opt)
        return {f"{name}/ce": loss.detach()}

    def dis_step(self, batch: Batch, tau: float, w: Weights,
                 opt: torch.optim.Optimizer | None = None) -> dict[str, torch.Tensor]:
        """Algorithm 1, lines 3-5: D ascends E_pu[log D] + alpha E_pc[log(1-D)]
        + (1-alpha) E_pt[log(1-D)]; we descend its negative."""
        cfg, y = self.cfg, batch.y
        self._train_only("dis")
        with torch.no_grad():
            log_pc = F.log_softmax(self._logits("cls", batch), dim=-1)  # (B, K)
            log_pt = F.log_softmax(self._logits("tch", batch), dim=-1) if "tch" in self.players else None
        s = self.players["dis"](batch.xp)  # (B, K) per-class scores
        real = losses.dis_real(s, y)

        def fake(log_p: torch.Tensor) -> torch.Tensor:
            if cfg.dis_target == "exact":
                return losses.dis_fake_exact(s, log_p.exp())
            return losses.dis_fake_sampled(s, losses.gumbel_softmax(log_p, tau))

        terms = {"dis/real": real, "dis/fake_cls": fake(log_pc)}
        loss = real + w.adversarial("cls") * terms["dis/fake_cls"]
        if log_pt is not None:
            terms["dis/fake_tch"] = fake(log_pt)
            loss = loss + w.adversarial("tch") * terms["dis/fake_tch"]
        self._update("dis", loss, opt)
        with torch.no_grad():
            d = torch.sigmoid(s)
            real_y = y if y.ndim == 2 else F.one_hot(y, d.shape[1]).to(d.dtype)
            terms["dis/d_real"] = (d * real_y).sum(-1).mean()
            terms["dis/d_fake_cls"] = (d * log_pc.exp()).sum(-1).mean()
        terms["dis/loss"] = loss
        return {k: v.detach() for k, v in terms.items()}

    def generator_step(self, name: str, batch: Batch, tau: float, w: Weights) -> dict[str, torch.Tensor]:
        """Algorithm 1, lines 6-8 (T) and 9-11 (C): weight * adversarial + distillation.

        C: alpha * L_AD^n(q_c) + beta * L_DS^c(p_c, p_t) [+ cls_ce_weight * CE]
        T: (1 - alpha) * L_AD^n(q_t) + gamma * L_DS^t(p_t, p_c) [+ tch_ce_weight * CE]
        """
        cfg = self.cfg
        other = "tch" if name == "cls" else "cls"
        ce_weight = getattr(cfg, f"{name}_ce_weight")
        self._train_only(name)
        logits = self._logits(name, batch)  # (B, K)
        terms: dict[str, torch.Tensor] = {}
        loss = logits.new_zeros(())
        if w.adversarial(name) > 0 and "dis" in self.players:
            with torch.no_grad():
                s = self.players["dis"](batch.xp)  # (B, K); D is fixed in this step
            if cfg.estimator == "reinforce":
                adv = losses.adv_reinforce(logits, s, cfg.adv_loss, cfg.reinforce_baseline)
            else:
                adv = losses.adv_pathwise(logits, s, tau, cfg.adv_loss,
                                          hard=cfg.estimator == "straight-through")
            terms[f"{name}/adv"] = adv
            loss = loss + w.adversarial(name) * adv
        if other in self.players:
            with torch.no_grad():
                target = self._logits(other, batch)
            ds = losses.distillation(cfg.distill, logits, target, cfg.distill_temperature)
            terms[f"{name}/distill"] = ds
            loss = loss + w.distillation(name) * ds
        if ce_weight > 0:
            terms[f"{name}/ce"] = losses.cross_entropy(logits, batch.y)
            loss = loss + ce_weight * terms[f"{name}/ce"]
        if name == "cls" and self.gradvar:
            self.gradvar.track(terms)
        self._update(name, loss)
        terms[f"{name}/loss"] = loss
        return {k: v.detach() for k, v in terms.items()}

    def loss_step(self, name: str, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        """One step of a non-adversarial method: player `name` descends loss_fn(cfg, its
        logits, the other player's logits (fixed) or None, labels) on a training minibatch."""
        other = "tch" if name == "cls" else "cls"
        self._train_only(name)
        logits = self._logits(name, batch)
        target = None
        if other in self.players:
            with torch.no_grad():
                target = self._logits(other, batch)
        terms = loss_fn(self.cfg, logits, target, batch.y)
        self._update(name, terms["loss"])
        return {f"{name}/{k}": v.detach() for k, v in terms.items()}

    def _train_only(self, name: str) -> None:
        """Put `name` in train mode and the others in eval mode (their outputs are targets)."""
        for other, p in self.players.items():
            p.train(other == name)

    def _update(self, name: str, loss: torch.Tensor,
                opt: torch.optim.Optimizer | None = None) -> None:
        """One optimiser step of player `name` (its game optimiser unless `opt` is given)."""
        opt = opt or self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _logits(self, name: str, batch: Batch) -> torch.Tensor:
        """A player's logits on a training batch (an out-of-fold teacher routes each row to
        the member that never saw its label)."""
        if name == "cls":
            return self.players["cls"](batch.x)
        if name == "tch" and batch.fold is not None:
            return self.players["tch"](batch.xp, batch.fold)
        return self.players[name](batch.xp)

    # ------------------------------------------------------------------ evaluation
    @staticmethod
    def inputs(name: str, split: Split):
        """What player `name` sees of a split: C the image, T and D the privileged input
        where the data has one."""
        return split.x if name == "cls" or split.xp is None else split.xp

    @torch.no_grad()
    def evaluate(self, name: str, split: Split) -> dict[str, float]:
        """Accuracy and cross-entropy of player `name` on a split, in eval mode. For
        multi-label data `acc` is P@1 (the top label is one of the tags) and the ranking
        metrics of kdgan.metrics come with it."""
        model = self.players[name]
        was_training = model.training
        model.eval()
        inputs = self.inputs(name, split)
        correct = torch.zeros((), device=self.device)
        ce = torch.zeros((), device=self.device)
        ranking: dict[str, float] = {}
        for lo in range(0, len(split), self.cfg.eval_batch_size):
            logits = model(inputs[lo: lo + self.cfg.eval_batch_size])
            y = split.y[lo: lo + self.cfg.eval_batch_size]
            ce += F.cross_entropy(logits, y, reduction="sum")
            if split.multilabel:
                for k, v in ranking_sums(logits, y > 0).items():
                    ranking[k] = ranking.get(k, 0.0) + v
            else:
                correct += (logits.argmax(-1) == y).sum()
        model.train(was_training)
        out = {"ce": float(ce) / len(split)}
        if split.multilabel:
            count = ranking.pop("count")
            out.update({k: v / count for k, v in ranking.items()})
            out["acc"] = out["p@1"]
        else:
            out["acc"] = float(correct) / len(split)
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"players": {k: p.state_dict() for k, p in self.players.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, p in self.players.items():
            p.load_state_dict(state["players"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
