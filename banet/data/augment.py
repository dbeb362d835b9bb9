"""The paper's augmentation, applied to whole batches of tensors (CPU or GPU).

One random affine map per sample combines: a random crop of 50-100 % of the image area (square,
anywhere inside the image), a rotation in [-10, 10] degrees, and horizontal / vertical flips with
probability 0.5 each. The same map resamples the image (bilinear) and the mask (nearest), so they
stay aligned; the edge target is computed from the augmented mask by the loss, so it is aligned
too. Pixels that a rotation brings in from outside the image are black (image) and background
(mask).

Images arrive as uint8 ``(B, 3, S, S)`` already resized to the training size (see
:mod:`banet.data.dataset`): resampling happens once, from the cached array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from banet.spec import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class AugmentConfig:
    """Switches and ranges of the augmentation (paper defaults)."""

    hflip: bool = True
    vflip: bool = True
    rotate_degrees: float = 10.0
    crop_scale: tuple[float, float] = (0.5, 1.0)
    """Range of the crop's area as a fraction of the image area; (1, 1) disables cropping."""

    @classmethod
    def flips_only(cls) -> "AugmentConfig":
        return cls(rotate_degrees=0.0, crop_scale=(1.0, 1.0))

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(hflip=False, vflip=False, rotate_degrees=0.0, crop_scale=(1.0, 1.0))


def random_affine(batch: int, config: AugmentConfig, *, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Sample ``(B, 2, 3)`` affine matrices in normalized coordinates (for ``F.affine_grid``).

    Output pixel ``p`` (in [-1, 1]^2) samples input location ``A @ [p, 1]``: a crop of side
    ``sqrt(scale)`` centred at a random point that keeps the crop inside the image, rotated by
    ``angle`` and mirrored by the flips.
    """
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    side = uniform(*config.crop_scale).sqrt()                  # fraction of the image side
    cx = uniform(-1.0, 1.0) * (1.0 - side)
    cy = uniform(-1.0, 1.0) * (1.0 - side)
    angle = uniform(-config.rotate_degrees, config.rotate_degrees) * (math.pi / 180.0)
    sx = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0) if config.hflip else torch.ones(batch)
    sy = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0) if config.vflip else torch.ones(batch)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(batch, 2, 3)
    # A = [crop] @ [rotation] @ [flip]: flip the output, rotate it, then place it in the crop.
    theta[:, 0, 0] = side * cos * sx
    theta[:, 0, 1] = -side * sin * sy
    theta[:, 1, 0] = side * sin * sx
    theta[:, 1, 1] = side * cos * sy
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    return theta.to(device)


def warp(images: torch.Tensor, masks: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample float images ``(B, C, H, W)`` (bilinear) and masks ``(B, 1, H, W)`` (nearest) with ``theta``."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    masks = F.grid_sample(masks.to(grid.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return images, masks


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """Float ``(B, 3, H, W)`` in [0, 255] -> ImageNet-normalized (the spec's mean/std, as
    :func:`banet.processing.normalize` does for one numpy image)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images / 255.0 - mean) / std


def prepare_batch(images: torch.Tensor, masks: torch.Tensor, config: AugmentConfig | None, *,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(B, 3, S, S)`` images and ``(B, 1, S, S)`` 0/1 masks (on any device) -> augmented,
    normalized float32 images and float32 0/1 masks. ``config=None`` means no augmentation."""
    x = images.float()
    y = masks.float()
    if config is not None and config != AugmentConfig.none():
        theta = random_affine(x.shape[0], config, generator=generator, device=x.device)
        x, y = warp(x, y, theta)
    return normalize_batch(x), y
