"""DISTN: knowledge distillation (Hinton, Vinyals & Dean, "Distilling the knowledge in a
neural network", 2015).

    L_C = p * T^2 KL( softmax(f(x)/T) || softmax(h(x)/T) ) + (1 - p) * CE(y, softmax(h(x)))

with h the classifier's and f the (pretrained, fixed) teacher's logits. The T^2 factor keeps
the soft term's gradient scale independent of T. Defaults p = 0.7, T = 3: the values of the
KDGAN authors' DISTN baseline (`distn_p`, `distn_temperature`).
"""

from __future__ import annotations

import torch

from kdgan import losses
from kdgan.config import Config
from kdgan.methods.base import Method


def loss(cfg: Config, logits: torch.Tensor, teacher: torch.Tensor | None,
         y: torch.Tensor) -> dict[str, torch.Tensor]:
    soft = losses.kl_distill(logits, teacher, cfg.distn_temperature)
    hard = losses.cross_entropy(logits, y)
    return {"loss": cfg.distn_p * soft + (1.0 - cfg.distn_p) * hard, "distill": soft, "ce": hard}


METHOD = Method(players=("cls", "tch"), cls_loss=loss)
