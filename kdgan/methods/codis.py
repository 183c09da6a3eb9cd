"""CODIS: online co-distillation (Anil, Pereyra, Passos, Ormandi, Dahl & Hinton, "Large
scale distributed neural network training through online distillation", ICLR 2018).

Two networks train at the same time on the labels, each also distilling from the other's
*current* predictions (not from a converged, fixed teacher):

    L_C = CE(y, p_c) + psi * KL( p_t || p_c ),    L_T = CE(y, p_t) + psi * KL( p_c || p_t )

with p = softmax of the logits at temperature 1 and the other's prediction held constant
(no gradient flows into it), psi = `codis_weight`. Anil et al. start distilling after a
burn-in of plain supervised training; here the burn-in is the shared pretraining of C and T,
after which each epoch runs k_T teacher and k_C classifier steps, as KDGAN's game does.
"""

from __future__ import annotations

import torch

from kdgan import losses
from kdgan.config import Config
from kdgan.methods.base import Method


def loss(cfg: Config, logits: torch.Tensor, other: torch.Tensor | None,
         y: torch.Tensor) -> dict[str, torch.Tensor]:
    ce = losses.cross_entropy(logits, y)
    kl = losses.kl_distill(logits, other, 1.0)
    return {"loss": ce + cfg.codis_weight * kl, "ce": ce, "distill": kl}


METHOD = Method(players=("cls", "tch"), cls_loss=loss, tch_loss=loss)
