"""The three-player game of KDGAN (paper Algorithm 1) and its relatives.

Players: classifier C (the deliverable; sees x), teacher T and discriminator D (see the
privileged input xp, which is x itself when the privilege is only model capacity).
D scores a label vector y against per-class scores s(xp): D(x, y) = sigmoid(<y, s(xp)>).

A method (`kdgan.methods`) is a choice of players and of how they are trained; the players,
minibatches, pretraining and evaluation here are shared by all of them.
Ray never appears here: `kdgan.run` drives a Game epoch by epoch, `kdgan.tune` wraps that.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdgan import losses
from kdgan.augment import random_affine, random_flip
from kdgan.config import Config
from kdgan.data import Data, Split, TextInput
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


def fold_ids(n: int, folds: int, seed: int) -> torch.Tensor:
    """Each of n rows' fold in [0, folds): a seeded permutation cut into near-equal parts."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds={folds}: expected 2 to n = {n}")
    ids = np.empty(n, np.int64)
    ids[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return torch.from_numpy(ids)


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


def _cat(a: torch.Tensor | TextInput, b: torch.Tensor | TextInput) -> torch.Tensor | TextInput:
    """Two privileged inputs (tensors, or image features with their text) as one batch."""
    if isinstance(a, TextInput):
        return TextInput(torch.cat([a.features, b.features]), torch.cat([a.tokens, b.tokens]), a.vocab)
    return torch.cat([a, b])


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the message names the term and the epoch."""


class Game:
    """Players, optimisers and the steps of Algorithm 1 for one run."""

    def __init__(self, cfg: Config, data: Data, device: torch.device) -> None:
        self.cfg = cfg
        self.data = data
        self.device = device
        self.method: Method = METHODS[cfg.method]
        k = data.num_classes
        shapes = {"cls": data.in_shape, "tch": data.priv_shape, "dis": data.priv_shape}
        self.players: dict[str, nn.Module] = {}
        self.folds: torch.Tensor | None = None  # fold of each training example (tch_folds)
        self._batch_fold: torch.Tensor | None = None  # of the last batch's rows (-1: none)
        for name in self.method.players:
            torch.manual_seed(cfg.seed * 10_007 + PLAYER_SEED[name])
            arch, drop = getattr(cfg, f"{name}_arch"), getattr(cfg, f"{name}_dropout")
            if name == "tch" and cfg.tch_folds:
                self.players[name] = FoldedTeacher([build(arch, shapes[name], k, drop)
                                                    for _ in range(cfg.tch_folds)]).to(device)
                self.folds = fold_ids(len(data.train), cfg.tch_folds, cfg.seed).to(device)
            else:
                self.players[name] = build(arch, shapes[name], k, drop).to(device)
        lrs = {"cls": cfg.cls_lr, "tch": cfg.tch_lr, "dis": cfg.dis_lr}
        self.optimizers = {name: self.optimizer(name, lrs[name]) for name in self.players}
        self._grad_stats: dict[str, list] = {}

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        """Adam over a player's weights at `lr`, with the player's L2 penalty."""
        decay = getattr(self.cfg, f"{name}_weight_decay")
        return torch.optim.Adam(self.players[name].parameters(), lr=lr, weight_decay=decay)

    # ------------------------------------------------------------------ batches
    def batch(self, index: torch.Tensor | None = None,
              transfer: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A training minibatch (x, xp, y), augmented when the config says so.

        index: positions in the training subset; a random batch_size of them when None.
        transfer: when the data has unlabelled examples (`Config.unlabeled`) and the method
        has a player to learn from besides the labels, append batch_size of them (their
        labels marked unlabelled, which the cross-entropy terms skip).
        When T and D see x itself, they see the same augmented images as C.
        """
        x, xp, y, index = self._draw(self.data.train, index)
        fold = None if self.folds is None else self.folds[index]
        extra = self.data.unlabeled
        if transfer and extra is not None and len(self.players) > 1:
            ux, uxp, uy, _ = self._draw(extra, None)
            x, y = torch.cat([x, ux]), torch.cat([y, uy])
            xp = x if extra.xp is None else _cat(xp, uxp)
            if fold is not None:  # no member saw an unlabelled example: the mean
                fold = torch.cat([fold, fold.new_full((len(uy),), -1)])
        self._batch_fold = fold
        return x, xp, y

    def _draw(self, split: Split, index: torch.Tensor | None):
        if index is None:
            n = len(split)
            index = torch.randperm(n, device=self.device)[: min(self.cfg.batch_size, n)]
        x, y = split.x[index], split.y[index]
        if self.cfg.augment:
            x = self._augment(x)
        xp = x if split.xp is None else split.xp[index]
        return x, xp, y, index

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if c.aug_rotation or c.aug_shift or c.aug_zoom:
            x = random_affine(x, c.aug_rotation, c.aug_shift, c.aug_zoom)
        return random_flip(x) if c.aug_flip else x

    def epoch_batches(self) -> list[torch.Tensor]:
        """One pass over the training subset in shuffled minibatches of batch_size."""
        perm = torch.randperm(len(self.data.train), device=self.device)
        return list(perm.split(self.cfg.batch_size))

    # ------------------------------------------------------------------ steps
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

    def _logits(self, name: str, x: torch.Tensor, xp: torch.Tensor | TextInput) -> torch.Tensor:
        """A player's logits on the last training batch (an out-of-fold teacher routes each
        row to the member that never saw its label)."""
        if name == "cls":
            return self.players["cls"](x)
        if name == "tch" and self.folds is not None:
            return self.players["tch"](xp, self._batch_fold)
        return self.players[name](xp)

    def supervised_step(self, name: str, index: torch.Tensor | None = None,
                        opt: torch.optim.Optimizer | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy on the true labels for C or T (pretraining; `supervised` method)."""
        self._train_only(name)
        x, xp, y = self.batch(index)
        if name == "tch" and self.folds is not None:  # each member on the other folds only
            loss = self.players["tch"].fit_loss(xp, y, self._batch_fold)
        else:
            loss = F.cross_entropy(self._logits(name, x, xp), y)
        self._update(name, loss, opt)
        return {f"{name}/ce": loss.detach()}

    def dis_step(self, tau: float, alpha: float, index: torch.Tensor | None = None,
                 opt: torch.optim.Optimizer | None = None) -> dict[str, torch.Tensor]:
        """Algorithm 1, lines 3-5: D ascends E_pu[log D] + alpha E_pc[log(1-D)]
        + (1-alpha) E_pt[log(1-D)]; we descend its negative."""
        cfg = self.cfg
        self._train_only("dis")
        x, xp, y = self.batch(index)
        with torch.no_grad():
            log_pc = F.log_softmax(self.players["cls"](x), dim=-1)  # (B, K)
            log_pt = F.log_softmax(self._logits("tch", x, xp), dim=-1) if "tch" in self.players else None
        s = self.players["dis"](xp)  # (B, K) per-class scores
        real = losses.dis_real(s, y)

        def fake(log_p: torch.Tensor) -> torch.Tensor:
            if cfg.dis_target == "exact":
                return losses.dis_fake_exact(s, log_p.exp())
            return losses.dis_fake_sampled(s, losses.gumbel_softmax(log_p, tau))

        terms = {"dis/real": real, "dis/fake_cls": fake(log_pc)}
        loss = real + alpha * terms["dis/fake_cls"]
        if log_pt is not None:
            terms["dis/fake_tch"] = fake(log_pt)
            loss = loss + (1 - alpha) * terms["dis/fake_tch"]
        self._update("dis", loss, opt)
        with torch.no_grad():
            d = torch.sigmoid(s)
            real_y = y if y.ndim == 2 else F.one_hot(y, d.shape[1]).to(d.dtype)
            terms["dis/d_real"] = (d * real_y).sum(-1).mean()
            terms["dis/d_fake_cls"] = (d * log_pc.exp()).sum(-1).mean()
        terms["dis/loss"] = loss
        return {k: v.detach() for k, v in terms.items()}

    def generator_step(self, name: str, tau: float) -> dict[str, torch.Tensor]:
        """Algorithm 1, lines 6-8 (T) and 9-11 (C): weight * adversarial + distillation.

        C: alpha * L_AD^n(q_c) + beta * L_DS^c(p_c, p_t) [+ cls_ce_weight * CE]
        T: (1 - alpha) * L_AD^n(q_t) + gamma * L_DS^t(p_t, p_c) [+ tch_ce_weight * CE]
        """
        cfg = self.cfg
        other = "tch" if name == "cls" else "cls"
        adv_weight = cfg.alpha if name == "cls" else 1.0 - cfg.alpha
        ds_weight = cfg.beta if name == "cls" else cfg.gamma
        ce_weight = cfg.cls_ce_weight if name == "cls" else cfg.tch_ce_weight
        self._train_only(name)
        x, xp, y = self.batch(transfer=True)
        logits = self._logits(name, x, xp)  # (B, K)
        terms: dict[str, torch.Tensor] = {}
        loss = logits.new_zeros(())
        if adv_weight > 0 and "dis" in self.players:
            with torch.no_grad():
                s = self.players["dis"](xp)  # (B, K); D is fixed in this step
            if cfg.estimator == "reinforce":
                adv = losses.adv_reinforce(logits, s, cfg.adv_loss, cfg.reinforce_baseline)
            else:
                adv = losses.adv_pathwise(logits, s, tau, cfg.adv_loss,
                                          hard=cfg.estimator == "straight-through")
            terms[f"{name}/adv"] = adv
            loss = loss + adv_weight * adv
        if other in self.players:
            with torch.no_grad():
                target = self._logits(other, x, xp)
            ds = losses.distillation(cfg.distill, logits, target, cfg.distill_temperature)
            terms[f"{name}/distill"] = ds
            loss = loss + ds_weight * ds
        if ce_weight > 0:
            terms[f"{name}/ce"] = losses.cross_entropy(logits, y)
            loss = loss + ce_weight * terms[f"{name}/ce"]
        if name == "cls" and cfg.log_grad_variance:
            self._track_gradients(terms)
        self._update(name, loss)
        terms[f"{name}/loss"] = loss
        return {k: v.detach() for k, v in terms.items()}

    def loss_step(self, name: str, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        """One step of a non-adversarial method: player `name` descends loss_fn(cfg, its
        logits, the other player's logits (fixed) or None, labels) on a training minibatch."""
        other = "tch" if name == "cls" else "cls"
        self._train_only(name)
        x, xp, y = self.batch(transfer=True)
        logits = self._logits(name, x, xp)
        target = None
        if other in self.players:
            with torch.no_grad():
                target = self._logits(other, x, xp)
        terms = loss_fn(self.cfg, logits, target, y)
        self._update(name, terms["loss"])
        return {f"{name}/{k}": v.detach() for k, v in terms.items()}

    def _track_gradients(self, terms: dict[str, torch.Tensor]) -> None:
        """Accumulate the classifier's gradient of each term (unweighted) over the epoch:
        sums of g and g^2 per parameter, for the total variance trace(Cov g) (Figure 7)."""
        params = [p for p in self.players["cls"].parameters() if p.requires_grad]
        for term in ("cls/adv", "cls/distill"):
            if term not in terms:
                continue
            grads = torch.autograd.grad(terms[term], params, retain_graph=True)
            g = torch.cat([x.reshape(-1) for x in grads])
            acc = self._grad_stats.setdefault(term, [torch.zeros_like(g), torch.zeros_like(g), 0])
            acc[0] += g
            acc[1] += g * g
            acc[2] += 1

    def gradient_variances(self) -> dict[str, float]:
        """Per tracked term: trace of the gradient covariance over the epoch's steps, and the
        squared norm of the mean gradient; resets the accumulators."""
        out = {}
        for term, (s1, s2, k) in self._grad_stats.items():
            mean = s1 / k
            out[f"grad/{term.split('/')[1]}_var"] = float((s2 / k - mean * mean).sum())
            out[f"grad/{term.split('/')[1]}_mean_sq"] = float((mean * mean).sum())
        self._grad_stats = {}
        return out

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
                batches = self.epoch_batches()
                total = sum(self.supervised_step(name, i, opt)[f"{name}/ce"] for i in batches)
                ce = float(total) / len(batches)
                if log and (e + 1) % max(1, epochs // 4) == 0:
                    log(f"pretrain {name} epoch {e + 1}/{epochs} ce {ce:.4f}")
            return {f"pretrain/{name}_ce": ce}
        opt = self.optimizer("dis", cfg.pretrain_lr)
        alpha = 0.5 if "tch" in self.players else 1.0
        for _ in range(cfg.dis_pretrain_epochs):
            for index in self.epoch_batches():
                terms = self.dis_step(cfg.tau_start, alpha, index, opt)
        return {"pretrain/dis_loss": float(terms["dis/loss"])} if cfg.dis_pretrain_epochs else {}

    def play_epoch(self, tau: float) -> dict[str, float]:
        """One epoch: k_D discriminator, k_T teacher, k_C classifier steps (Algorithm 1,
        lines 3-11) for the KDGAN family; for the other methods, k_T steps on the teacher's
        loss (when it trains) and k_C on the classifier's. Returns epoch-mean terms."""
        cfg = self.cfg
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}

        def add(terms: dict[str, torch.Tensor]) -> None:
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v
                counts[k] = counts.get(k, 0) + 1

        if self.method.adversarial:
            for _ in range(cfg.dis_steps if "dis" in self.players else 0):
                add(self.dis_step(tau, cfg.alpha))
            for _ in range(cfg.tch_steps if "tch" in self.players else 0):
                add(self.generator_step("tch", tau))
            for _ in range(cfg.cls_steps):
                add(self.generator_step("cls", tau))
        else:
            if self.method.tch_loss is not None:
                for _ in range(cfg.tch_steps):
                    add(self.loss_step("tch", self.method.tch_loss))
            if self.method.cls_loss is not None:
                for _ in range(cfg.cls_steps):
                    add(self.loss_step("cls", self.method.cls_loss))
        means = {k: float(v) / counts[k] for k, v in sums.items()}
        return {**means, **self.gradient_variances()} if cfg.log_grad_variance else means

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
