"""What a method is: which players it has, how each is trained in an epoch, what it fixes.

The KDGAN family (kdgan, nagan, kdgan-wo-gm) plays the adversarial game of `kdgan.game`.
Every other method trains its players by plain gradient steps on a per-minibatch loss
(`LossFn`), sharing the game's players, minibatches (with the same augmentation),
pretraining and evaluation. A baseline is therefore one loss function and one `Method`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from kdgan import losses
from kdgan.config import Config

PLAYERS = ("cls", "tch", "dis")

# loss(cfg, logits, other_logits, labels) -> {"loss": scalar, other named terms...}
# logits (B, K) of the player being trained, with gradient; other_logits (B, K) of the other
# player (the teacher for the classifier, the classifier for the teacher) in eval mode and
# without gradient, or None when the method has no such player; labels (B,).
LossFn = Callable[[Config, torch.Tensor, Optional[torch.Tensor], torch.Tensor],
                  dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Method:
    """Which players a method has and how they are trained after pretraining."""

    players: tuple[str, ...]
    """Subset of ('cls', 'tch', 'dis'), built and pretrained in this order."""
    adversarial: bool = False
    """Play KDGAN's game (k_D discriminator, k_T teacher, k_C classifier steps per epoch)."""
    cls_loss: LossFn | None = None
    """Non-adversarial methods: the classifier's loss in each of its k_C steps per epoch."""
    tch_loss: LossFn | None = None
    """Non-adversarial methods: the teacher's loss in each of its k_T steps (None: the
    pretrained teacher stays fixed)."""
    evaluated: str = "cls"
    """The player whose accuracy the run reports."""
    fixed: tuple[tuple[str, object], ...] = ()
    """Config fields the method sets, e.g. NaGAN's alpha = 1."""

    def loss(self, name: str) -> LossFn:
        """A non-adversarial method's loss of player `name` ('cls' or 'tch')."""
        fn = self.cls_loss if name == "cls" else self.tch_loss
        if fn is None:
            raise ValueError(f"player {name!r} has no loss in this method")
        return fn

    def __post_init__(self) -> None:
        if not self.players or any(p not in PLAYERS for p in self.players):
            raise ValueError(f"players={self.players}: expected a subset of {PLAYERS}")
        if self.evaluated not in self.players:
            raise ValueError(f"evaluated={self.evaluated!r} is not one of {self.players}")


def cross_entropy(cfg: Config, logits: torch.Tensor, other: torch.Tensor | None,
                  y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The plain supervised loss -log p(y|x) on the true labels (`supervised`)."""
    ce = losses.cross_entropy(logits, y)
    return {"loss": ce, "ce": ce}
