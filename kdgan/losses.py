"""The loss terms of KDGAN as small pure functions, each with the equation it computes.

Notation (paper Section 3): C's logits h(x), T's logits f(x), D's per-class scores s(x);
D(x, y) = sigmoid(<y, s(x)>) for a one-hot or relaxed label vector y. Shapes: B examples,
K labels. Every function returns a scalar averaged over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------
# Sampling: the concrete (Gumbel-softmax) distribution, paper Eq. 8.


def gumbel_noise(shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """g = -log(-log u), u ~ Uniform(0, 1), clamped away from 0 and 1 so g is finite."""
    u = torch.rand(shape, device=device, generator=generator)
    tiny = torch.finfo(u.dtype).tiny
    u = u.clamp(min=tiny, max=1.0 - torch.finfo(u.dtype).eps)
    return -torch.log(-torch.log(u))


def gumbel_softmax(log_p: torch.Tensor, tau: float, hard: bool = False,
                   generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """A sample of q(y|x) = softmax((log p(y|x) + g) / tau), g ~ Gumbel(0, 1) (paper Eq. 8).

    log_p: (B, K) log-probabilities (or logits: the softmax is shift-invariant).
    hard=True returns the one-hot argmax with the relaxed sample's gradient (straight-through).
    noise: g drawn beforehand (`gumbel_noise(log_p.shape, ...)`, e.g. outside torch.func.vmap,
    which draws the same numbers); None: drawn here.
    """
    g = gumbel_noise(log_p.shape, log_p.device, generator) if noise is None else noise
    soft = torch.softmax((log_p + g) / tau, dim=-1)  # (B, K)
    if not hard:
        return soft
    index = soft.argmax(dim=-1, keepdim=True)  # (B, 1)
    classes = torch.arange(soft.shape[-1], device=soft.device)
    one_hot = (index == classes).to(soft.dtype)  # (B, K), also under torch.func.vmap
    return one_hot + soft - soft.detach()


def tau_at(progress: float, tau_start: float = 1.0, tau_end: float = 0.1) -> float:
    """Exponential annealing tau(p) = tau_start * (tau_end / tau_start) ** p for p in [0, 1]
    (paper Section 4: start at 1.0, decay exponentially to 0.1)."""
    p = min(max(progress, 0.0), 1.0)
    return tau_start * math.exp(p * math.log(tau_end / tau_start))


# ----------------------------------------------------------------------------------------
# The supervised loss, over the labelled rows of a minibatch only.


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log p(y|x) averaged over the labelled rows: labels (B,) class indices, where
    kdgan.data.UNLABELED (torch's ignore_index, -100) marks an unlabelled row, or (B, K)
    label distributions, where an all-zero row is unlabelled. A minibatch with unlabelled
    rows (`Config.unlabeled`) gives the same value as its labelled rows alone."""
    if labels.ndim == 1:
        return F.cross_entropy(logits, labels)
    labelled = labels.sum(dim=-1) > 0
    if bool(labelled.all()):
        return F.cross_entropy(logits, labels)
    return F.cross_entropy(logits[labelled], labels[labelled])


# ----------------------------------------------------------------------------------------
# Distillation losses L_DS (paper Eq. 3). The target is detached: each player distils from
# the other's current prediction without pushing gradients into it.


def l2_logits(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L2 regression on logits (Ba & Caruana 2014): mean_b 1/2 ||z_s - z_t||^2."""
    return 0.5 * (student - teacher.detach()).pow(2).sum(dim=-1).mean()


def kl_distill(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature-scaled KL (Hinton et al. 2015): T^2 KL(softmax(z_t/T) || softmax(z_s/T)),
    averaged over the batch. The T^2 factor keeps gradient scales comparable across T."""
    log_q = F.log_softmax(student / temperature, dim=-1)
    log_p = F.log_softmax(teacher.detach() / temperature, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return temperature**2 * kl.mean()


def distillation(kind: str, student: torch.Tensor, teacher: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    if kind == "l2":
        return l2_logits(student, teacher)
    if kind == "kl":
        return kl_distill(student, teacher, temperature)
    raise ValueError(f"distill={kind!r}: expected 'l2' or 'kl'")


# ----------------------------------------------------------------------------------------
# The discriminator (paper Eq. 3, maximised by D; we minimise its negative).


def dis_real(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-E_{y~p_u}[log D(x, y)] with D(x, y) = sigmoid(s_y(x)). scores (B, K); labels (B,)
    class indices, or (B, K) label distributions p_u(y|x) (multi-label: uniform over the
    tags), for which the expectation is exact: -sum_k p_u(k|x) log sigmoid(s_k)."""
    if labels.ndim == 2:
        return -(labels * F.logsigmoid(scores)).sum(dim=-1).mean()
    return -F.logsigmoid(scores.gather(1, labels[:, None])).mean()


def dis_fake_exact(scores: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """-E_{y~p}[log(1 - D(x, y))] summed exactly over the K labels: -sum_k p_k log sigmoid(-s_k).

    probs (B, K) is a generator's p(y|x), detached. Training D on the exact expectation gives
    every label's score a signal, so no label is left untrained because it was never drawn.
    """
    return -(probs.detach() * F.logsigmoid(-scores)).sum(dim=-1).mean()


def dis_fake_sampled(scores: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """-mean_b log(1 - D(x, y)) for label vectors y (B, K) drawn from a concrete distribution."""
    return -F.logsigmoid(-(samples.detach() * scores).sum(dim=-1)).mean()


# ----------------------------------------------------------------------------------------
# The generators' adversarial terms (C and T; paper Eq. 3 and Algorithm 1, lines 7 and 11).


def adversarial_cost(score: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example cost of a pseudo label with D's logit `score` = <y, s(x)>, shape (B,).

    'saturating': log(1 - D(x, y)), the term of Eq. 3 that C and T minimise;
    'nonsaturating': -log D(x, y), the usual GAN substitute with the same fixed point.
    """
    if kind == "saturating":
        return F.logsigmoid(-score)
    if kind == "nonsaturating":
        return -F.logsigmoid(score)
    raise ValueError(f"adv_loss={kind!r}: expected 'saturating' or 'nonsaturating'")


def adv_pathwise(logits: torch.Tensor, dis_scores: torch.Tensor, tau: float, kind: str,
                 hard: bool = False, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Reparameterised adversarial loss: mean_b cost(<y~, s(x)>), y~ ~ q(y|x) (paper Eq. 8-9).

    logits (B, K) of the generator (C or T), with gradient; dis_scores (B, K), D's s(x), fixed.
    The relaxed sample carries the gradient into the generator (pathwise estimator).
    noise: the Gumbel noise (B, K) drawn beforehand, or None to draw it here.
    """
    y = gumbel_softmax(F.log_softmax(logits, dim=-1), tau, hard=hard, noise=noise)  # (B, K)
    return adversarial_cost((y * dis_scores.detach()).sum(dim=-1), kind).mean()


def adv_reinforce(logits: torch.Tensor, dis_scores: torch.Tensor, kind: str,
                  baseline: bool = True) -> torch.Tensor:
    """Score-function (REINFORCE) surrogate: mean_b log p(y_b|x_b) (cost_b - b), y_b ~ p(y|x)
    discrete (Algorithm 1 as written, lines 7 and 11; the paper's KDGAN-WO-GM ablation).

    Its value is not the loss; its gradient is the unbiased score-function estimate of the
    gradient of E_{y~p}[cost(y)]. b is the batch-mean cost when `baseline` is on, else 0.
    """
    log_p = F.log_softmax(logits, dim=-1)  # (B, K)
    with torch.no_grad():
        y = torch.multinomial(log_p.exp(), 1)  # (B, 1)
        cost = adversarial_cost(dis_scores.gather(1, y).squeeze(1), kind)  # (B,)
        advantage = cost - cost.mean() if baseline else cost
    return (log_p.gather(1, y).squeeze(1) * advantage).mean()
