"""What every loader returns: `Data` (splits of tensors), the text input of tag
recommendation, the error every bad data file raises, and the seeded draw of the training
subset that all sources share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from kdgan.config import ConfigError


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent. The message names the file and array."""


class TextShape(NamedTuple):
    """The input spec of a player that reads image features and text (`TextInput`)."""

    features: int  # d, the image feature size
    vocab: int     # token ids are in [0, vocab); 0 is padding, 1 an unknown word
    length: int    # L, tokens per text (padded)


@dataclass
class TextInput:
    """Image features and the tokens of their text: the privileged input of tag
    recommendation (paper Section 4.2), indexed like a tensor along the first axis."""

    features: torch.Tensor  # (N, d) float32
    tokens: torch.Tensor    # (N, L) int64, 0 = padding
    vocab: int

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index) -> "TextInput":  # noqa: ANN001 (tensor, slice or int array)
        return TextInput(self.features[index], self.tokens[index], self.vocab)

    def to(self, device: torch.device) -> "TextInput":
        return TextInput(self.features.to(device), self.tokens.to(device), self.vocab)

    @property
    def spec(self) -> TextShape:
        return TextShape(self.features.shape[1], self.vocab, self.tokens.shape[1])


UNLABELED = -100
"""The label of an unlabelled example (torch's cross-entropy ignore_index); multi-label
data marks one by an all-zero label row instead (`kdgan.losses.cross_entropy`)."""


@dataclass
class Split:
    x: torch.Tensor          # (N, ...) the classifier's input
    y: torch.Tensor          # (N,) int64 labels in [0, K), or (N, K) float32 label
                             # distributions for multi-label data (uniform over the tags)
    xp: torch.Tensor | TextInput | None  # privileged input of T and D; None: they see x

    def __len__(self) -> int:
        return len(self.y)

    @property
    def multilabel(self) -> bool:
        return self.y.ndim == 2

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device),
                     None if self.xp is None else self.xp.to(device))


@dataclass
class Data:
    train: Split
    val: Split
    test: Split
    num_classes: int
    train_indices: np.ndarray  # positions of the n training examples in the pool
    pool_size: int
    source: str
    unlabeled: Split | None = None  # cfg.unlabeled pool examples outside train, labels hidden

    def to(self, device: torch.device) -> "Data":
        return Data(self.train.to(device), self.val.to(device), self.test.to(device),
                    self.num_classes, self.train_indices, self.pool_size, self.source,
                    None if self.unlabeled is None else self.unlabeled.to(device))

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def priv_shape(self) -> tuple[int, ...]:
        xp = self.train.xp
        if isinstance(xp, TextInput):
            return xp.spec
        return self.in_shape if xp is None else tuple(xp.shape[1:])

    @property
    def multilabel(self) -> bool:
        return self.train.multilabel


def draw_subsets(pool: int, n: int, unlabeled: int, seed: int,
                 source: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted pool positions of the n labelled and the `unlabeled` unlabelled examples: the
    first n and the next `unlabeled` of a permutation drawn with `seed`, so they never
    overlap and a run with more unlabelled examples sees the same labelled ones."""
    if n > pool:
        raise ConfigError(f"n={n}: larger than the training pool of {pool} examples in {source}")
    if n + unlabeled > pool:
        raise ConfigError(f"unlabeled={unlabeled}: n + unlabeled = {n + unlabeled} is larger "
                          f"than the training pool of {pool} examples in {source}")
    perm = np.random.default_rng(seed).permutation(pool)
    return np.sort(perm[:n]), np.sort(perm[n:n + unlabeled])
