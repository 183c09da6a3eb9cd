"""The training minibatches of a run: which rows, their augmentation, the unlabelled rows a
transfer step adds, and the fold of each row for an out-of-fold teacher (`Config.tch_folds`).

Every random draw of a minibatch happens here, from torch's global RNG on the run's device,
in this order: the rows (a permutation), the augmentation of the labelled rows, then (in a
transfer step) the unlabelled rows and their augmentation. The steps of `kdgan.game` take a
`Batch` and draw nothing for it, so a batch source with a generator of its own would change
the minibatches and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from kdgan.augment import random_affine, random_flip
from kdgan.config import Config
from kdgan.data import Data, Split, TextInput


@dataclass
class Batch:
    """A training minibatch as every player sees it."""

    x: torch.Tensor             # (B, ...) C's input, augmented when the config says so
    xp: torch.Tensor | TextInput  # (B, ...) T's and D's: x itself without privileged input
    y: torch.Tensor             # (B,) labels or (B, K) tags; unlabelled rows marked UNLABELED
    fold: torch.Tensor | None   # (B,) each row's fold, -1 for unlabelled rows; None: one teacher


def fold_ids(n: int, folds: int, seed: int) -> torch.Tensor:
    """Each of n rows' fold in [0, folds): a seeded permutation cut into near-equal parts."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds={folds}: expected 2 to n = {n}")
    ids = np.empty(n, np.int64)
    ids[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return torch.from_numpy(ids)


def _cat(a: torch.Tensor | TextInput, b: torch.Tensor | TextInput) -> torch.Tensor | TextInput:
    """Two privileged inputs (tensors, or image features with their text) as one batch."""
    if isinstance(a, TextInput):
        return TextInput(torch.cat([a.features, b.features]), torch.cat([a.tokens, b.tokens]), a.vocab)
    return torch.cat([a, b])


class BatchSource:
    """Minibatches of the training subset (and of the unlabelled examples, `Config.unlabeled`).

    folds: the teacher's number of out-of-fold members (0: one teacher, no folds).
    transfer: whether transfer steps may add unlabelled rows (a method with a player to learn
    from besides the labels); without unlabelled examples in the data they add none.
    """

    def __init__(self, cfg: Config, data: Data, device: torch.device, folds: int,
                 transfer: bool) -> None:
        self.cfg = cfg
        self.data = data
        self.device = device
        self.transfer = transfer and data.unlabeled is not None
        # (n,) the fold of each training example, or None
        self.folds = fold_ids(len(data.train), folds, cfg.seed).to(device) if folds else None

    def draw(self, index: torch.Tensor | None = None, transfer: bool = False) -> Batch:
        """The training rows at `index` (positions in the training subset; batch_size random
        ones when None). transfer: append batch_size unlabelled examples when the source has
        them (their labels marked unlabelled, which the cross-entropy terms skip). When T and
        D see x itself, they see the same augmented images as C."""
        x, xp, y, index = self._rows(self.data.train, index)
        fold = None if self.folds is None else self.folds[index]
        if transfer and self.transfer:
            extra = self.data.unlabeled
            ux, uxp, uy, _ = self._rows(extra, None)
            x, y = torch.cat([x, ux]), torch.cat([y, uy])
            xp = x if extra.xp is None else _cat(xp, uxp)
            if fold is not None:  # no member saw an unlabelled example: the mean
                fold = torch.cat([fold, fold.new_full((len(uy),), -1)])
        return Batch(x, xp, y, fold)

    def epoch(self) -> Iterator[Batch]:
        """One pass over the training subset in shuffled minibatches of batch_size: the
        permutation is drawn when the pass starts, each batch's augmentation when it is
        reached (after the previous batch's step)."""
        perm = torch.randperm(len(self.data.train), device=self.device)
        for index in perm.split(self.cfg.batch_size):
            yield self.draw(index)

    def _rows(self, split: Split, index: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor | TextInput, torch.Tensor, torch.Tensor]:
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
