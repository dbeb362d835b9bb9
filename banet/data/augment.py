"""Training augmentation on whole batches of tensors (CPU or GPU): the paper's and the authors'.

One random affine map per sample resamples the image (bilinear) and the mask (nearest), so they
stay aligned; the loss computes the edge target from the augmented mask, so it is aligned too.
Pixels brought in from outside the image are black (image) and background (mask).

Two settings (:data:`PAPER`, :data:`AUTHORS`), each applied in the order of the authors' code:
flips, then a centred crop or zoom, then a rotation about the centre, then the resize to the
training size.

- ``PAPER`` (the paper's text): horizontal and vertical flips (p = 0.5 each), a centred crop of
  50-100 % of the image side, a rotation in [-10, 10] degrees; crop and rotation on every sample
  (the text gives no probabilities).
- ``AUTHORS`` (their ``Kvasir_data.py``): the same flips; with p = 0.25 a centred zoom-in by 1-1.5x
  (crop of side 1/zoom), else with p = 0.25 a centred crop of 50-100 % of the side; with p = 0.5 a
  rotation in [-10, 10] degrees.

Rotations happen in the original image's frame (its aspect ratio, as the authors rotate before
resizing), so a rotation stays a rotation of the scene and not a shear once the image is squashed
to a square. Pixels are resampled from the image already resized to the training size (see
:mod:`banet.data.dataset`), not from the full-resolution original: the geometry is the authors',
the detail of a 50 % crop is that of the resized image upsampled 2x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from banet.spec import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class AugmentConfig:
    """Switches, ranges and probabilities of the augmentation (defaults: the paper's)."""

    hflip: bool = True
    """Mirror left-right with probability 0.5."""
    vflip: bool = True
    """Mirror top-bottom with probability 0.5."""
    crop_side: tuple[float, float] = (0.5, 1.0)
    """Range of a centred crop's side as a fraction of the image side; (1, 1) disables cropping."""
    crop_p: float = 1.0
    """Probability of a crop, of all samples (zoom and crop exclude each other: ``zoom_p + crop_p <= 1``)."""
    zoom: tuple[float, float] = (1.0, 1.0)
    """Range of a centred zoom-in factor (a crop of side 1/zoom)."""
    zoom_p: float = 0.0
    rotate_degrees: float = 10.0
    rotate_p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("crop_p", "zoom_p", "rotate_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.zoom_p + self.crop_p > 1.0 + 1e-9:
            raise ValueError(f"zoom_p + crop_p must be <= 1 (zoom and crop exclude each other), got "
                             f"{self.zoom_p} + {self.crop_p}")
        lo, hi = self.crop_side
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_side must satisfy 0 < low <= high <= 1, got {self.crop_side}")
        lo, hi = self.zoom
        if not 1.0 <= lo <= hi:
            raise ValueError(f"zoom must satisfy 1 <= low <= high, got {self.zoom}")

    @classmethod
    def flips_only(cls) -> "AugmentConfig":
        return cls(crop_side=(1.0, 1.0), crop_p=0.0, rotate_degrees=0.0, rotate_p=0.0)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(hflip=False, vflip=False, crop_side=(1.0, 1.0), crop_p=0.0, rotate_degrees=0.0, rotate_p=0.0)


PAPER = AugmentConfig()
AUTHORS = AugmentConfig(crop_side=(0.5, 1.0), crop_p=0.25, zoom=(1.0, 1.5), zoom_p=0.25,
                        rotate_degrees=10.0, rotate_p=0.5)
"""The authors' code: zoom with p 0.25, else crop with p 0.25 (so 0.25 / 0.25 / 0.5 none), rotation with p 0.5."""


def random_affine(batch: int, config: AugmentConfig, *, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", aspect: torch.Tensor | None = None) -> torch.Tensor:
    """Sample ``(B, 2, 3)`` affine matrices in normalized coordinates (for ``F.affine_grid``).

    Output pixel ``p`` (in [-1, 1]^2) samples input location ``A @ [p, 1]`` with
    ``A = flip @ crop @ rotation``: the image is flipped, centre-cropped (side ``s``: scale by
    ``s``), then rotated about its centre. ``aspect`` ``(B,)`` is each original image's width /
    height: the rotation is a rotation of the original image's pixel grid (default 1, square).

    Every call draws the same six values per sample, whatever the config, so two configs sharing
    a seed see the same flips. A choice and its value come from one uniform draw (given that
    ``u < p``, ``u / p`` is uniform again).
    """
    u = torch.rand(6, batch, generator=generator)  # rows: scale, -, -, angle, hflip, vflip

    def pick(values: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, the uniform value rescaled to [0, 1) for the chosen samples)."""
        return values < p, (values / max(p, 1e-12)).clamp(max=1.0)

    # one draw decides: [0, zoom_p) zoom, [zoom_p, zoom_p + crop_p) crop, the rest neither; so crop_p is the
    # probability of a crop among all samples, as in the authors' code (0.25 / 0.25 / 0.5)
    zoomed, t_zoom = pick(u[0], config.zoom_p)
    cropped, t_crop = pick((u[0] - config.zoom_p).clamp(min=0.0), config.crop_p)
    cropped &= ~zoomed
    zoom = config.zoom[0] + (config.zoom[1] - config.zoom[0]) * t_zoom
    side = config.crop_side[0] + (config.crop_side[1] - config.crop_side[0]) * t_crop
    scale = torch.where(zoomed, 1.0 / zoom, torch.where(cropped, side, torch.ones(batch)))
    rotated, t_angle = pick(u[3], config.rotate_p)
    angle = torch.where(rotated, (2 * t_angle - 1) * config.rotate_degrees, torch.zeros(batch)) * (math.pi / 180.0)
    sx = torch.where(u[4] < 0.5, -1.0, 1.0) if config.hflip else torch.ones(batch)
    sy = torch.where(u[5] < 0.5, -1.0, 1.0) if config.vflip else torch.ones(batch)
    a = torch.ones(batch) if aspect is None else aspect.to(torch.float32).cpu()
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation of the pixel grid, in normalized coordinates: diag(1/a, 1) @ R @ diag(a, 1)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = sx * scale * cos
    theta[:, 0, 1] = -sx * scale * sin / a
    theta[:, 1, 0] = sy * scale * sin * a
    theta[:, 1, 1] = sy * scale * cos
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
                  generator: torch.Generator | None = None, aspect: torch.Tensor | None = None,
                  theta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(B, 3, S, S)`` images and ``(B, 1, S, S)`` 0/1 masks (on any device) -> augmented,
    normalized float32 images and float32 0/1 masks. ``config=None`` means no augmentation;
    ``aspect`` ``(B,)`` is each original image's width / height (see :func:`random_affine`).
    ``theta`` ``(B, 2, 3)``, already on the images' device, replaces the draw (the training loop
    samples a whole epoch's maps at once, so that no step waits for a host-to-device copy)."""
    x = images.float()
    y = masks.float()
    if config is not None and config != AugmentConfig.none():
        if theta is None:
            theta = random_affine(x.shape[0], config, generator=generator, device=x.device, aspect=aspect)
        x, y = warp(x, y, theta)
    return normalize_batch(x), y
