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


class CifarCNN(nn.Module):
    """The paper's CIFAR-10 classifier, a LeNet-style CNN: conv5x5-32 (valid), ReLU, maxpool2,
    conv5x5-64 (valid), ReLU, maxpool2, fc280, ReLU, dropout, fcK. On 3x32x32 inputs the maps
    are (32, 28, 28) -> (32, 14, 14) -> (64, 10, 10) -> (64, 5, 5) -> 1600 features, and the
    network has 504,786 parameters for K = 10 (2,432 + 51,264 + 448,280 + 2,810)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"CifarCNN needs image inputs (C, H, W); got shape {in_shape}")
        c, h, w = in_shape
        fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2  # after conv, pool, conv, pool
        if fh < 1 or fw < 1:
            raise ValueError(f"CifarCNN needs images of at least 16x16; got shape {in_shape}")
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 5), nn.ReLU(), nn.MaxPool2d(2),   # (B, 32, (H-4)/2, (W-4)/2)
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, fh, fw)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * fh * fw, 280), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(280, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    """out = ReLU(BN(conv3x3(ReLU(BN(conv3x3(x))))) + shortcut(x)). Where the block halves the
    map and doubles the channels, the shortcut is option A of He et al.: the identity on every
    second pixel, zero-padded to the new channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            half = self.pad // 2  # zero channels before and after: (B, C_out, H/s, W/s)
            shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, half, self.pad - half))
        return torch.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet for CIFAR (He et al. 2016, Section 4.2), depth 6n + 2: conv3x3-16, BN, ReLU, then
    three stages of n basic blocks with 16, 32 and 64 channels (stride 2 at the start of stages
    2 and 3: 32x32 -> 16x16 -> 8x8 maps), global average pooling, dropout, fcK. Shortcuts are
    option A (identity, zero-padded channels where the shape changes), as in the paper's CIFAR
    runs. Parameters for K = 10: ResNet-20 (n = 3) 269,722; ResNet-110 (n = 18) 1,727,962, the
    KDGAN paper's CIFAR-10 teacher "ResNet of 1.7M". Convolutions use He (fan-out) init."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0,
                 n: int = 18) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"ResNet needs image inputs (C, H, W); got shape {in_shape}")
        if n < 1:
            raise ValueError(f"ResNet needs n >= 1 blocks per stage; got n={n}")
        layers: list[nn.Module] = [nn.Conv2d(in_shape[0], 16, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(16), nn.ReLU()]
        c_in = 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(n):
                layers.append(_BasicBlock(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.features = nn.Sequential(*layers)          # (B, 64, H/4, W/4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(64, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.features(x))


def _small_mlp(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> MLP:
    return MLP(in_shape, num_classes, dropout, hidden=(64,))


def _resnet110(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> ResNet:
    return ResNet(in_shape, num_classes, dropout, n=18)


def _resnet20(in_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> ResNet:
    return ResNet(in_shape, num_classes, dropout, n=3)


def _text_mlp(in_shape, num_classes: int, dropout: float = 0.5) -> nn.Module:  # noqa: ANN001
    from kdgan.textnet import TextImageNet  # reads kdgan.data's TextShape

    return TextImageNet(in_shape, num_classes, dropout)


def _text_linear(in_shape, num_classes: int, dropout: float = 0.0) -> nn.Module:  # noqa: ANN001
    from kdgan.textnet import TextImageLinear

    return TextImageLinear(in_shape, num_classes, dropout)


Builder = Callable[..., nn.Module]
REGISTRY: dict[str, Builder] = {
    "mlp": MLP,
    "lenet": LeNet,
    "linear": Linear,
    "mlp-small": _small_mlp,
    "cifar-cnn": CifarCNN,
    "resnet110": _resnet110,
    "resnet20": _resnet20,
    "text-mlp": _text_mlp,
    "text-linear": _text_linear,
}


def build(name: str, in_shape: tuple[int, ...], num_classes: int, dropout: float) -> nn.Module:
    """Instantiate a registered architecture for inputs of `in_shape` (no batch axis)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name](in_shape, num_classes, dropout=dropout)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
