"""NOISY: distillation from a noisy teacher (Sau & Balasubramanian, "Deep model compression:
distilling knowledge from noisy teachers", 2016).

The classifier regresses the teacher's logits as in MIMIC, but the logits are perturbed with
multiplicative Gaussian noise, which acts like several teachers and regularises the student:

    z'(x) = f(x) * (1 + xi),  xi ~ N(0, sigma^2) per logit,   L_C = 1/2 || h(x) - z'(x) ||^2

Each minibatch is perturbed with probability `noisy_rate` (1 = every minibatch), else its
logits are used as they are. Default sigma = 0.1, the KDGAN authors' MNIST value.
"""

from __future__ import annotations

import torch

from kdgan import losses
from kdgan.config import Config
from kdgan.methods.base import Method


def perturb(teacher: torch.Tensor, sigma: float, rate: float) -> torch.Tensor:
    """f(x) * (1 + xi), xi ~ N(0, sigma^2), for the whole minibatch with probability `rate`."""
    if rate < 1.0 and float(torch.rand(())) >= rate:
        return teacher
    return teacher * (1.0 + sigma * torch.randn_like(teacher))


def loss(cfg: Config, logits: torch.Tensor, teacher: torch.Tensor | None,
         y: torch.Tensor) -> dict[str, torch.Tensor]:
    l2 = losses.l2_logits(logits, perturb(teacher, cfg.noisy_sigma, cfg.noisy_rate))
    return {"loss": l2, "distill": l2}


METHOD = Method(players=("cls", "tch"), cls_loss=loss)
