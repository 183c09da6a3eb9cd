"""The players' networks and the registry a config names them by.

Every network maps an input batch to K scores: logits for the classifier and the teacher,
per-class scores s(x) for the discriminator, whose D(x, y) = sigmoid(<y, s(x)>).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


class MLP(nn.Module):
    """The paper's MNIST classifier: 784-800-800-10, ReLU, dropout (1,276,810 parameters)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.5,
                 hidden: tuple[int, ...] = (800, 800)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, *in_shape) -> (B, K)
        return self.net(x)


class LeNet(nn.Module):
    """The authors' MNIST teacher and discriminator: conv5x5-32, maxpool2, conv5x5-64,
    maxpool2, fc1024, dropout, fcK (3,274,634 parameters on 1x28x28 inputs)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"LeNet needs image inputs (C, H, W); got shape {in_shape}")
        c, h, w = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # (B, 32, H/2, W/2)
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, H/4, W/4)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), 1024), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.features(x))


class Linear(nn.Module):
    """A linear scorer over flattened inputs: the smallest player, for tests and toy problems."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                 nn.Linear(math.prod(in_shape), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _small_mlp(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> MLP:
    return MLP(in_shape, num_classes, dropout, hidden=(64,))


Builder = Callable[..., nn.Module]
REGISTRY: dict[str, Builder] = {
    "mlp": MLP,
    "lenet": LeNet,
    "linear": Linear,
    "mlp-small": _small_mlp,
}


def build(name: str, in_shape: tuple[int, ...], num_classes: int, dropout: float) -> nn.Module:
    """Instantiate a registered architecture for inputs of `in_shape` (no batch axis)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name](in_shape, num_classes, dropout=dropout)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
