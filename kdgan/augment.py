"""Random affine augmentation of image batches, on whatever device the batch lives.

The authors' MNIST runs used Keras' ImageDataGenerator with rotation_range=15,
width/height_shift_range=0.1 and zoom_range=0.1. This is the same family of transforms done
with affine_grid / grid_sample on a (B, C, H, W) tensor (torchvision has no CPU build here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, rotation: float, shift: float, zoom: float) -> torch.Tensor:
    """Rotate by U(-rotation, rotation) degrees, shift by U(-shift, shift) of the side in each
    axis and zoom by a factor U(1 - zoom, 1 + zoom), independently per image. Zero padding."""
    if x.ndim != 4:
        raise ValueError(f"augmentation needs image batches (B, C, H, W); got shape {tuple(x.shape)}")
    b = x.shape[0]

    def uniform(*shape: int) -> torch.Tensor:  # U(-1, 1) on the batch's device
        return torch.rand(*shape, device=x.device, dtype=x.dtype) * 2 - 1

    angle = uniform(b) * math.radians(rotation)
    scale = 1 + uniform(b) * zoom          # > 1 zooms in
    offset = uniform(b, 2) * shift * 2     # grid coordinates span [-1, 1]: a side is 2 units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # theta maps output coordinates to input coordinates, (B, 2, 3)
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], dim=1),
                         torch.stack([sin, cos, offset[:, 1]], dim=1)], dim=1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_flip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror each image of a (B, C, H, W) batch left-right (x[..., w] -> x[..., W-1-w]) with
    probability p, independently per image, drawing from torch's global RNG on x's device."""
    if x.ndim != 4:
        raise ValueError(f"random_flip needs image batches (B, C, H, W); got {tuple(x.shape)}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_flip: p={p} is not a probability in [0, 1]")
    flip = torch.rand(x.shape[0], device=x.device) < p  # (B,) True: mirror this image
    return torch.where(flip[:, None, None, None], x.flip(3), x)
