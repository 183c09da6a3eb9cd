"""The game epochs of P runs (seeds s..s+P-1) played as one vectorised model per player.

`VectorisedGame` takes the P members' `Game`s (same config but the seed, pretrained) and
plays their game epochs together: each player's weights are stacked along a leading member
dimension, its forward is one `torch.func.vmap` over a functional forward of its network,
and ONE Adam (the member optimiser's lr, betas, eps and weight decay) steps the stacked
weights. Adam is elementwise and the members' losses are summed (not averaged: a mean would
scale each member's gradient by 1/P), so each member's gradient and update depend on its own
loss alone: a member that diverges to NaN leaves the others as they were. Members whose
learning rates differ (`lr_plateau`: each cuts its own) get their Adam steps scaled
(`scale_lr`); a member that has stopped (early stopping) plays on in the stack, unrecorded.

Equivalence with single runs: every random number is drawn OUTSIDE vmap, per member, from
member k's own stream of torch's global RNG (`as_member(k)`, e.g. `RngStreams.member`), in
the order the single run with seed s+k draws it: in a step, the minibatch (the member's
`BatchSource.draw`: rows, then augmentation), then the trained player's dropout masks in
forward order (as nn.Dropout draws them: `F.dropout` of a tensor of ones of the activation's
shape, the same kernel on the same shape, so the same mask on CPU and CUDA), then the Gumbel
noise (as `losses.gumbel_noise`). Member k therefore sees exactly the minibatches, the
augmented images, the dropout masks and the noise of its single run; its numbers differ from
the single run's only by floating-point rounding (batched matrix products sum in another
order), which the tests bound (tests/test_vectorised.py).

Supported: the architectures mlp, lenet, linear, mlp-small and cifar-cnn (plain chains of
convolutions, pooling, linear layers and dropout); the methods whose steps draw nothing but
the above: kdgan and nagan (estimator gumbel or straight-through, either dis_target),
supervised, mimic, distn, codis, teacher. `unsupported(cfg)` names the reason otherwise.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ContextManager

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from kdgan import losses
from kdgan.config import Config, dataset_kind
from kdgan.game import Game, Weights, effective_config, epoch_steps
from kdgan.methods import METHODS, codis, distn, mimic
from kdgan.methods.base import cross_entropy as supervised_loss
from kdgan.models import MLP, CifarCNN, LeNet, Linear

# Architectures with a functional forward here (their modules are chains of the leaf layers
# `_forward` knows), and the loss functions of non-adversarial methods known to draw nothing.
ARCHS = ("mlp", "lenet", "linear", "mlp-small", "cifar-cnn")
PURE_LOSSES = (supervised_loss, mimic.loss, distn.loss, codis.loss)


def unsupported(cfg: Config) -> str | None:
    """None when cfg's game can run vectorised; else the reason, a short phrase."""
    cfg = effective_config(cfg)
    method = METHODS[cfg.method]
    if dataset_kind(cfg.dataset) == "tags":
        return "text inputs (a tagged collection)"
    if cfg.log_grad_variance:
        return "log_grad_variance (per-term gradients of each member)"
    if "tch" in method.players and cfg.tch_folds:
        return "tch_folds (an out-of-fold teacher)"
    for player in method.players:
        arch = getattr(cfg, f"{player}_arch")
        if arch.startswith("resnet"):
            return f"BatchNorm in {arch} ({player}_arch)"
        if arch.startswith("text-"):
            return f"text inputs ({player}_arch={arch})"
        if arch not in ARCHS:
            return f"no functional forward for {arch} ({player}_arch)"
    if method.adversarial and cfg.estimator == "reinforce":
        return ("estimator reinforce (torch.multinomial draws samples that depend on the "
                "probabilities)")
    for loss_fn in (method.cls_loss, method.tch_loss):
        if loss_fn is not None and loss_fn not in PURE_LOSSES:
            if cfg.method == "noisy":
                return "method noisy draws noise inside its loss"
            return f"method {cfg.method}'s loss is not known to draw nothing"
    return None


# ----------------------------------------------------------------------------------------
# Per-member streams of torch's global RNG.


class RngStreams:
    """P streams of torch's global RNG, one per member: `member(k)` makes member k's stream
    the global RNG for a block (CPU and, on a CUDA device, that device's generator) and saves
    it back when the block ends, restoring the RNG state found on entry.

    A state is a dict {"torch": CPU state[, "cuda": the device's state]}, the format of
    `Run.state_dict()["rng"]`, so a member's stream can be checkpointed and restored."""

    def __init__(self, states: Iterable[dict[str, torch.Tensor]],
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._states = [self._copy(s) for s in states]
        self._active: int | None = None

    @classmethod
    def seeded(cls, seeds: Iterable[int], device: torch.device | str = "cpu") -> "RngStreams":
        """Member k's stream as torch.manual_seed(seeds[k]) leaves it."""
        device = torch.device(device)
        outer = cls.capture(device)
        states = []
        try:
            for seed in seeds:
                torch.manual_seed(seed)
                states.append(cls.capture(device))
        finally:
            cls.restore(outer, device)
        return cls(states, device)

    @staticmethod
    def capture(device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The global RNG state now (CPU, plus the CUDA device's when it is one)."""
        device = torch.device(device)
        state = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(device)
        return state

    @staticmethod
    def restore(state: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        torch.set_rng_state(state["torch"])
        if device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)

    def __len__(self) -> int:
        return len(self._states)

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """A copy of member k's stream (as saved when its last block ended)."""
        return self._copy(self._states[k])

    def set_state(self, k: int, state: dict[str, torch.Tensor]) -> None:
        if self._active is not None:
            raise RuntimeError(f"set_state({k}) inside member({self._active})")
        self._states[k] = self._copy(state)

    @contextlib.contextmanager
    def member(self, k: int) -> Iterator[None]:
        if self._active is not None:
            raise RuntimeError(f"member({k}) inside member({self._active}): streams do not nest")
        outer = self.capture(self.device)
        self.restore(self._states[k], self.device)
        self._active = k
        try:
            yield
        finally:
            self._states[k] = self.capture(self.device)
            self._active = None
            self.restore(outer, self.device)

    @staticmethod
    def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: v.clone() for key, v in state.items()}


# ----------------------------------------------------------------------------------------
# Functional forwards with explicit dropout masks.

Layers = list[tuple[str, nn.Module]]
_LEAVES = (nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Conv2d, nn.MaxPool2d)


def layers_of(model: nn.Module) -> Layers:
    """The leaf layers of a supported network in forward order, with their parameter prefix."""
    if isinstance(model, (MLP, Linear)):
        chains = [("net", model.net)]
    elif isinstance(model, (LeNet, CifarCNN)):
        chains = [("features", model.features), ("head", model.head)]
    else:
        raise TypeError(f"no functional forward for {type(model).__name__}")
    out = [(f"{prefix}.{name}", layer) for prefix, chain in chains
           for name, layer in chain.named_children()]
    for name, layer in out:
        if not isinstance(layer, _LEAVES) or (isinstance(layer, nn.Conv2d)
                                              and layer.padding_mode != "zeros"):
            raise TypeError(f"no functional forward for layer {name} ({layer})")
    return out


def forward(layers: Layers, params: dict[str, torch.Tensor], x: torch.Tensor,
            masks: Sequence[torch.Tensor] | None) -> torch.Tensor:
    """The network of `layers` with weights `params` on a batch x (B, ...): what the module
    computes, with each dropout layer (p > 0) multiplying by the next of `masks` (already
    scaled by 1/(1-p)); masks=None: eval mode. Works on one member's tensors, so under vmap."""
    i = 0
    for name, layer in layers:
        if isinstance(layer, nn.Linear):
            x = F.linear(x, params[f"{name}.weight"], params.get(f"{name}.bias"))
        elif isinstance(layer, nn.Conv2d):
            x = F.conv2d(x, params[f"{name}.weight"], params.get(f"{name}.bias"), layer.stride,
                         layer.padding, layer.dilation, layer.groups)
        elif isinstance(layer, nn.ReLU):
            x = torch.relu(x)
        elif isinstance(layer, nn.MaxPool2d):
            x = F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                             ceil_mode=layer.ceil_mode)
        elif isinstance(layer, nn.Flatten):
            x = x.flatten(layer.start_dim, layer.end_dim)
        elif isinstance(layer, nn.Dropout) and layer.p > 0 and masks is not None:
            x = x * masks[i]
            i += 1
    return x


def dropout_shapes(layers: Layers, params: dict[str, torch.Tensor],
                   in_shape: tuple[int, ...]) -> list[tuple[float, tuple[int, ...]]]:
    """(p, per-example shape) of the input of each dropout layer with p > 0, in forward order."""
    out: list[tuple[float, tuple[int, ...]]] = []
    with torch.no_grad():
        x = torch.zeros((1, *in_shape), device=next(iter(params.values())).device)
        for name, layer in layers:
            if isinstance(layer, nn.Dropout):
                if layer.p > 0:
                    out.append((layer.p, tuple(x.shape[1:])))
                continue
            x = forward([(name, layer)], params, x, None)
    return out


def draw_masks(shapes: list[tuple[float, tuple[int, ...]]], batch: int,
               device: torch.device) -> list[torch.Tensor]:
    """One member's dropout masks for a training forward on `batch` rows, drawn from the
    global RNG exactly as the module's nn.Dropout layers draw them: F.dropout of ones of the
    activation's shape runs the same kernel on the same shape (bernoulli_(1 - p) then the
    1/(1-p) scale on CPU, the fused kernel on CUDA), and p = 0 draws nothing."""
    return [F.dropout(torch.ones((batch, *shape), device=device), p, training=True)
            for p, shape in shapes]


# ----------------------------------------------------------------------------------------


@dataclass
class _Drawn:
    """The members' minibatches and draws of one step, stacked along the member dimension."""

    x: torch.Tensor                 # (P, B, ...)
    xp: torch.Tensor                # (P, B, ...) x itself without privileged input
    y: torch.Tensor                 # (P, B)
    masks: list[torch.Tensor]       # the trained player's, each (P, B, ...)
    noise: list[torch.Tensor]       # Gumbel noise, each (P, B, K)


def _stack(items: list) -> list[torch.Tensor]:
    """[[a0, b0], [a1, b1]] -> [stack(a), stack(b)]."""
    return [torch.stack(column) for column in zip(*items)] if items and items[0] else []


class VectorisedGame:
    """The game epochs of P member Games played as one vectorised model per player.

    games: the members' Games (same config but the seed, same device), already pretrained.
    as_member(k): a context manager under which torch's global RNG is member k's stream
    (`RngStreams.member`). The members' players and optimisers are read once here; the game
    then lives in the stacked weights until `write_back` copies it into the members."""

    def __init__(self, games: list[Game], as_member: Callable[[int], ContextManager]) -> None:
        if not games:
            raise ValueError("VectorisedGame needs at least one member Game")
        cfg = games[0].cfg
        for g in games[1:]:
            if g.cfg.replace(seed=cfg.seed) != cfg:
                diff = {k: (v, getattr(g.cfg, k)) for k, v in cfg.to_dict().items()
                        if k != "seed" and getattr(g.cfg, k) != v}
                raise ValueError(f"members differ in more than the seed: {diff}")
            if g.device != games[0].device:
                raise ValueError(f"members on different devices: {games[0].device}, {g.device}")
        reason = unsupported(cfg)
        if reason:
            raise ValueError(f"cannot vectorise method={cfg.method!r}: {reason}")
        self.games = games
        self.as_member = as_member
        self.cfg = cfg
        self.device = games[0].device
        self.method = games[0].method
        self.weights = Weights.of(cfg)
        self.num_classes = games[0].data.num_classes
        g0 = games[0]
        self.layers = {name: layers_of(p) for name, p in g0.players.items()}
        self.params: dict[str, dict[str, torch.Tensor]] = {}
        self.optimizers: dict[str, torch.optim.Adam] = {}
        self.masks: dict[str, list[tuple[float, tuple[int, ...]]]] = {}
        for name, player in g0.players.items():
            self.params[name] = {
                n: torch.stack([dict(g.players[name].named_parameters())[n].detach()
                                for g in games]).requires_grad_(True)
                for n, _ in player.named_parameters()}
            hyper = {k: v for k, v in g0.optimizers[name].param_groups[0].items()
                     if k in ("lr", "betas", "eps", "weight_decay", "amsgrad")}
            self.optimizers[name] = torch.optim.Adam(list(self.params[name].values()), **hyper)
            shape = g0.data.in_shape if name == "cls" else g0.data.priv_shape
            first = {n: p.detach() for n, p in player.named_parameters()}
            self.masks[name] = dropout_shapes(self.layers[name], first, shape)
        self._shared: dict[tuple[str, str], bool] = {}
        # each member's factor on its game learning rates (`lr_plateau`): None while all are 1
        self._lr_scales: list[float] | None = None
        self.read_members()

    @property
    def size(self) -> int:
        return len(self.games)

    # ------------------------------------------------------------------ draws
    def draw(self, transfer: bool, trained: str | None, noise: int) -> _Drawn:
        """Each member's step draws, under its own stream, in its single run's order: the
        minibatch, then `trained`'s dropout masks, then `noise` Gumbel draws of shape (B, K)."""
        batches, masks, gumbel = [], [], []
        for k, g in enumerate(self.games):
            with self.as_member(k):
                b = g.batches.draw(transfer=transfer)
                rows = len(b.y)
                masks.append(draw_masks(self.masks[trained], rows, self.device) if trained else [])
                gumbel.append([losses.gumbel_noise((rows, self.num_classes), self.device)
                               for _ in range(noise)])
            batches.append(b)
        x = torch.stack([b.x for b in batches])
        same = all(b.xp is b.x for b in batches)
        xp = x if same else torch.stack([b.xp for b in batches])
        return _Drawn(x, xp, torch.stack([b.y for b in batches]), _stack(masks), _stack(gumbel))

    # ------------------------------------------------------------------ forwards
    def _fn(self, name: str) -> Callable:
        layers = self.layers[name]
        return lambda params, x, masks: forward(layers, params, x, masks)

    def logits(self, name: str, x: torch.Tensor, masks: list[torch.Tensor] | None = None,
               shared: bool = False) -> torch.Tensor:
        """(P, B, K): every member's player `name` on its x (P, B, ...), or on one x (B, ...)
        for all when shared; masks (each (P, B, ...)) for a training forward, None for eval."""
        fn = self._fn(name)
        if masks is None:
            return vmap(lambda p, xx: fn(p, xx, None), in_dims=(0, None if shared else 0))(
                self.params[name], x)
        return vmap(fn)(self.params[name], x, masks)

    def _input(self, name: str, d: _Drawn) -> torch.Tensor:
        return d.x if name == "cls" else d.xp

    def scale_lr(self, scales: Sequence[float]) -> None:
        """Member k's game learning rates are its `<player>_lr` x scales[k] (`lr_plateau`: each
        member's factor follows its own validation accuracy), as `Game.scale_lr` sets them in
        its single run. Adam's moments do not depend on the rate and its step is linear in it,
        so ONE Adam over the stack steps at the base rate and member k's step is then scaled
        by scales[k] (skipped when every member has the same factor: the rate is set instead)."""
        if len(scales) != self.size:
            raise ValueError(f"{len(scales)} learning-rate scales for {self.size} members")
        scales = [float(x) for x in scales]
        same = len(set(scales)) == 1
        for name, opt in self.optimizers.items():
            opt.param_groups[0]["lr"] = getattr(self.cfg, f"{name}_lr") * (scales[0] if same else 1.0)
        self._lr_scales = None if same else scales

    def lr_of(self, name: str, k: int) -> float:
        """Member k's learning rate of player `name`, as its own optimiser would hold it."""
        lr = self.optimizers[name].param_groups[0]["lr"]
        return lr * self._lr_scales[k] if self._lr_scales is not None else lr

    def _update(self, name: str, losses_per_member: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        losses_per_member.sum().backward()  # a sum: member k's gradient is its loss's alone
        if self._lr_scales is None:
            opt.step()
            return
        params = list(self.params[name].values())
        before = [p.detach().clone() for p in params]
        opt.step()
        with torch.no_grad():
            scales = torch.tensor(self._lr_scales, dtype=params[0].dtype, device=self.device)
            for p, b in zip(params, before):
                p.copy_(b + scales.view(-1, *([1] * (p.dim() - 1))) * (p - b))

    # ------------------------------------------------------------------ steps
    def dis_step(self, tau: float, w: Weights | None = None) -> dict[str, torch.Tensor]:
        """Game.dis_step for every member on its own minibatch; terms (P,) per key."""
        cfg, w = self.cfg, w or self.weights
        has_tch = "tch" in self.params
        sampled = cfg.dis_target != "exact"
        d = self.draw(False, "dis", (2 if has_tch else 1) if sampled else 0)
        with torch.no_grad():
            log_pc = F.log_softmax(self.logits("cls", d.x), dim=-1)
            log_pt = F.log_softmax(self.logits("tch", d.xp), dim=-1) if has_tch else None
        fn, k = self._fn("dis"), self.num_classes
        a_cls, a_tch = w.adversarial("cls"), w.adversarial("tch")

        def member(params, inp):
            s = fn(params, inp["xp"], inp["masks"])
            y, noise = inp["y"], inp["noise"]
            real = losses.dis_real(s, y)

            def fake(log_p, j):
                if not sampled:
                    return losses.dis_fake_exact(s, log_p.exp())
                return losses.dis_fake_sampled(s, losses.gumbel_softmax(log_p, tau, noise=noise[j]))

            terms = {"dis/real": real, "dis/fake_cls": fake(inp["log_pc"], 0)}
            loss = real + a_cls * terms["dis/fake_cls"]
            if "log_pt" in inp:
                terms["dis/fake_tch"] = fake(inp["log_pt"], 1)
                loss = loss + a_tch * terms["dis/fake_tch"]
            dd = torch.sigmoid(s.detach())
            real_y = y if y.ndim == 2 else (y[:, None] == torch.arange(k, device=y.device)).to(dd.dtype)
            terms["dis/d_real"] = (dd * real_y).sum(-1).mean()
            terms["dis/d_fake_cls"] = (dd * inp["log_pc"].exp()).sum(-1).mean()
            terms["dis/loss"] = loss
            return loss, terms

        inp = {"xp": d.xp, "y": d.y, "masks": d.masks, "noise": d.noise, "log_pc": log_pc}
        if log_pt is not None:
            inp["log_pt"] = log_pt
        loss, terms = vmap(member)(self.params["dis"], inp)
        self._update("dis", loss)
        return {key: v.detach() for key, v in terms.items()}

    def generator_step(self, name: str, tau: float, w: Weights | None = None) -> dict[str, torch.Tensor]:
        """Game.generator_step of player `name` ('cls' or 'tch') for every member."""
        cfg, w = self.cfg, w or self.weights
        other = "tch" if name == "cls" else "cls"
        ce_weight = getattr(cfg, f"{name}_ce_weight")
        adversarial = w.adversarial(name) > 0 and "dis" in self.params
        d = self.draw(True, name, 1 if adversarial else 0)
        inp = {"x": self._input(name, d), "y": d.y, "masks": d.masks, "noise": d.noise}
        with torch.no_grad():
            if adversarial:
                inp["s"] = self.logits("dis", d.xp)
            if other in self.params:
                inp["target"] = self.logits(other, self._input(other, d))
        fn = self._fn(name)
        a, b = w.adversarial(name), w.distillation(name)
        hard = cfg.estimator == "straight-through"

        def member(params, inp):
            logits = fn(params, inp["x"], inp["masks"])
            terms = {}
            loss = logits.new_zeros(())
            if "s" in inp:
                adv = losses.adv_pathwise(logits, inp["s"], tau, cfg.adv_loss, hard=hard,
                                          noise=inp["noise"][0])
                terms[f"{name}/adv"] = adv
                loss = loss + a * adv
            if "target" in inp:
                ds = losses.distillation(cfg.distill, logits, inp["target"], cfg.distill_temperature)
                terms[f"{name}/distill"] = ds
                loss = loss + b * ds
            if ce_weight > 0:
                terms[f"{name}/ce"] = losses.cross_entropy(logits, inp["y"])
                loss = loss + ce_weight * terms[f"{name}/ce"]
            terms[f"{name}/loss"] = loss
            return loss, terms

        loss, terms = vmap(member)(self.params[name], inp)
        self._update(name, loss)
        return {key: v.detach() for key, v in terms.items()}

    def loss_step(self, name: str, loss_fn: Callable) -> dict[str, torch.Tensor]:
        """Game.loss_step (a non-adversarial method's step) of player `name` for every member."""
        other = "tch" if name == "cls" else "cls"
        d = self.draw(True, name, 0)
        inp = {"x": self._input(name, d), "y": d.y, "masks": d.masks}
        if other in self.params:
            with torch.no_grad():
                inp["target"] = self.logits(other, self._input(other, d))
        fn, cfg = self._fn(name), self.cfg

        def member(params, inp):
            terms = loss_fn(cfg, fn(params, inp["x"], inp["masks"]), inp.get("target"), inp["y"])
            return terms["loss"], terms

        loss, terms = vmap(member)(self.params[name], inp)
        self._update(name, loss)
        return {f"{name}/{key}": v.detach() for key, v in terms.items()}

    def play_epoch(self, tau: float) -> list[dict[str, float]]:
        """One game epoch for every member, the steps of Game.play_epoch in its order;
        each member's epoch-mean terms (the keys of Game.play_epoch)."""
        cfg, w, players = self.cfg, self.weights, self.params
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}

        def add(terms: dict[str, torch.Tensor]) -> None:
            for key, v in terms.items():
                sums[key] = sums.get(key, 0) + v
                counts[key] = counts.get(key, 0) + 1

        for kind, name in epoch_steps(cfg, self.method, tuple(players)):
            if kind == "dis":
                add(self.dis_step(tau, w))
            elif kind == "generator":
                add(self.generator_step(name, tau, w))
            else:
                add(self.loss_step(name, self.method.loss(name)))
        columns = {key: v.cpu().tolist() for key, v in sums.items()}
        return [{key: float(columns[key][k]) / counts[key] for key in sums}
                for k in range(self.size)]

    # ------------------------------------------------------------------ evaluation
    def _is_shared(self, name: str, split_name: str) -> bool:
        """Whether every member's split holds the same inputs and labels (e.g. MNIST's
        validation and test sets): then one copy of them goes to every member."""
        key = (name, split_name)
        if key not in self._shared:
            splits = [getattr(g.data, split_name) for g in self.games]
            first = Game.inputs(name, splits[0])

            def same(a: torch.Tensor, b: torch.Tensor) -> bool:
                return a is b or (a.shape == b.shape and bool(torch.equal(a, b)))

            self._shared[key] = all(same(Game.inputs(name, s), first) and same(s.y, splits[0].y)
                                    for s in splits[1:])
        return self._shared[key]

    @torch.no_grad()
    def evaluate(self, name: str, split_name: str) -> list[dict[str, float]]:
        """Game.evaluate(name, its split `split_name`) of every member, vectorised over them
        (multi-label splits: through the members' own Games after `write_back`)."""
        splits = [getattr(g.data, split_name) for g in self.games]
        if any(s.multilabel for s in splits):
            self.write_back()
            return [g.evaluate(name, s) for g, s in zip(self.games, splits)]
        n = len(splits[0])
        if any(len(s) != n for s in splits):
            raise ValueError(f"members' {split_name} splits differ in size")
        shared = self._is_shared(name, split_name)
        inputs = [Game.inputs(name, s) for s in splits]
        # rows per chunk: the eval batch size up to 8 members, then fewer per member
        rows = max(1, self.cfg.eval_batch_size // max(1, math.ceil(self.size / 8)))
        correct = torch.zeros(self.size, device=self.device, dtype=torch.long)
        ce = torch.zeros(self.size, device=self.device)
        for lo in range(0, n, rows):
            if shared:
                x, y = inputs[0][lo: lo + rows], splits[0].y[lo: lo + rows]
            else:
                x = torch.stack([inp[lo: lo + rows] for inp in inputs])
                y = torch.stack([s.y[lo: lo + rows] for s in splits])
            logits = self.logits(name, x, shared=shared)  # (P, b, K)
            yy = y.expand(self.size, -1) if shared else y
            ce += vmap(lambda lg, t: F.cross_entropy(lg, t, reduction="sum"))(logits, yy)
            correct += (logits.argmax(-1) == yy).sum(-1)
        ce_l, acc_l = ce.cpu().tolist(), correct.cpu().tolist()
        return [{"ce": ce_l[k] / n, "acc": acc_l[k] / n} for k in range(self.size)]

    # ------------------------------------------------------------------ members
    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked weights and Adam states into each member's players and game
        optimisers (so member Games can be evaluated, checkpointed, resumed alone)."""
        for name, stacked in self.params.items():
            opt = self.optimizers[name]
            for k, g in enumerate(self.games):
                member_opt = g.optimizers[name]
                member_opt.state.clear()
                for (n, sp), p in zip(stacked.items(), g.players[name].parameters()):
                    p.copy_(sp[k])
                    state = opt.state.get(sp)
                    if state:
                        member_opt.state[p] = {key: v.clone() if key == "step" else v[k].clone()
                                               for key, v in state.items()}
                for key in ("betas", "eps", "weight_decay"):
                    member_opt.param_groups[0][key] = opt.param_groups[0][key]
                member_opt.param_groups[0]["lr"] = self.lr_of(name, k)

    @torch.no_grad()
    def read_members(self) -> None:
        """The reverse of `write_back`: the stacked weights and Adam states from the members
        (e.g. after each member's Game loaded a checkpoint). Every member's optimiser must
        have taken the same number of steps (none, at the start of the game)."""
        for name, stacked in self.params.items():
            opt = self.optimizers[name]
            opt.state.clear()
            members = [list(g.players[name].parameters()) for g in self.games]
            for i, (n, sp) in enumerate(stacked.items()):
                sp.copy_(torch.stack([m[i].detach() for m in members]))
                sp.grad = None
                states = [g.optimizers[name].state.get(m[i]) for g, m in zip(self.games, members)]
                if not any(states):
                    continue
                if not all(states):
                    raise ValueError(f"{name}.{n}: some members' optimisers have state, others none")
                steps = {float(s["step"]) for s in states}
                if len(steps) != 1:
                    raise ValueError(f"{name}.{n}: members' optimisers at different steps {steps}")
                opt.state[sp] = {key: states[0][key].clone() if key == "step"
                                 else torch.stack([s[key] for s in states]) for key in states[0]}
            group = self.games[0].optimizers[name].param_groups[0]
            for key in ("lr", "betas", "eps", "weight_decay"):
                opt.param_groups[0][key] = group[key]
