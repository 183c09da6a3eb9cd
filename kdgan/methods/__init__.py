"""Every method `kdgan.train --method` accepts, by name.

The KDGAN family plays the three-player game (`kdgan.game`); each baseline of the paper's
Table 1 is a small module here with its equation and citation: `mimic`, `distn`, `noisy`,
`codis`, `teacher`. They share the game's players, minibatches, augmentation, pretraining
(and its cache: one teacher per dataset, n and seed for every method) and evaluation.
"""

from __future__ import annotations

from kdgan.config import METHODS as NAMES
from kdgan.methods import codis, distn, mimic, noisy, teacher
from kdgan.methods.base import PLAYERS, LossFn, Method, cross_entropy

METHODS: dict[str, Method] = {
    # Algorithm 1: C, T and D; C's samples through the Gumbel-softmax relaxation.
    "kdgan": Method(players=("cls", "tch", "dis"), adversarial=True),
    # NaGAN: C against D alone, the two-player game KDGAN extends (alpha = 1: all of D's
    # fake examples come from C; no teacher, no distillation).
    "nagan": Method(players=("cls", "dis"), adversarial=True, fixed=(("alpha", 1.0),)),
    # The paper's ablation: score-function gradients on discrete samples instead of Gumbel.
    "kdgan-wo-gm": Method(players=("cls", "tch", "dis"), adversarial=True,
                          fixed=(("estimator", "reinforce"),)),
    # The classifier alone on the labelled data: the floor every method must beat.
    "supervised": Method(players=("cls",), cls_loss=cross_entropy),
    "mimic": mimic.METHOD,
    "distn": distn.METHOD,
    "noisy": noisy.METHOD,
    "codis": codis.METHOD,
    "teacher": teacher.METHOD,
}
assert tuple(METHODS) == NAMES, "kdgan.config.METHODS and kdgan.methods.METHODS differ"

__all__ = ["METHODS", "PLAYERS", "LossFn", "Method", "cross_entropy"]
