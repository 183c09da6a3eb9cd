"""MIMIC: the classifier regresses the teacher's logits (Ba & Caruana, "Do deep nets really
need to be deep?", NeurIPS 2014).

    L_C = 1/2 || h(x) - f(x) ||^2,  averaged over the minibatch,

with h the classifier's and f the (pretrained, fixed) teacher's logits. No label term: the
student learns from the teacher's logits alone.
"""

from __future__ import annotations

import torch

from kdgan import losses
from kdgan.config import Config
from kdgan.methods.base import Method


def loss(cfg: Config, logits: torch.Tensor, teacher: torch.Tensor | None,
         y: torch.Tensor) -> dict[str, torch.Tensor]:
    l2 = losses.l2_logits(logits, teacher)
    return {"loss": l2, "distill": l2}


METHOD = Method(players=("cls", "tch"), cls_loss=loss)
