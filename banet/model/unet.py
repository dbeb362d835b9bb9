"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015), the padded variant that keeps the input size.

The paper's Fig. 1: a contracting path of ``depth`` levels (two 3x3 convolutions + ReLU, then 2x2
max pooling; the channels double at each level from ``base_channels``), a bottleneck, and an
expanding path (2x2 up-convolution that halves the channels, concatenation with the skip of the
same level, two 3x3 convolutions + ReLU) ending in a 1x1 convolution to the classes (here one
logit map). Deviations, as in the common re-implementations (docs/architecture.md):

- ``same`` padding instead of the paper's unpadded convolutions, so no input tiling/cropping is
  needed and the output has the input's size;
- BatchNorm after each convolution (``batch_norm``; the paper predates BatchNorm);
- one logit map with sigmoid/BCE instead of a 2-class softmax;
- at sizes that are not multiples of ``2 ** depth`` the up-sampled map is zero-padded to its skip's
  size (the paper crops the skip instead).

Shapes: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)`` in train and eval mode alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Constructor arguments of :class:`UNet`: ``base_channels`` at the first level (64 in the
    paper), ``depth`` poolings (4), ``batch_norm`` after every 3x3 convolution. ``align_corners``
    is accepted for the registry's common interface; U-Net has no bilinear resize."""

    base_channels: int = 64
    depth: int = 4
    batch_norm: bool = True
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.base_channels < 1 or self.depth < 1:
            raise ValueError(f"base_channels and depth must be positive, got {self.base_channels}, {self.depth}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DoubleConv(nn.Sequential):
    """(3x3 convolution -> [BatchNorm] -> ReLU) x 2, same padding: ``(B, cin, h, w) -> (B, cout, h, w)``."""

    def __init__(self, cin: int, cout: int, *, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def pad_to(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, h, w) at the bottom/right to ``size`` (a no-op when it already fits)."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (0, dw, 0, dh))


class UpBlock(nn.Module):
    """2x2 up-convolution halving the channels, concatenation with the skip, :class:`DoubleConv`.

    ``forward(x (B, 2c, h, w), skip (B, c, 2h or 2h-1, ...)) -> (B, c, skip's h, w)``.
    """

    def __init__(self, cin: int, cout: int, *, batch_norm: bool = True) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = DoubleConv(2 * cout, cout, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, pad_to(self.up(x), skip.shape[-2:])], dim=1))


class UNet(nn.Module):
    """U-Net: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)``, H, W >= 2 ** depth."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        widths = [config.base_channels * 2 ** i for i in range(config.depth + 1)]
        bn = config.batch_norm
        self.inc = DoubleConv(3, widths[0], batch_norm=bn)
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1], batch_norm=bn) for i in range(config.depth))
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i], batch_norm=bn) for i in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x0 = self.inc(image)                     # (B, c, H, W)
        skips = [x0]
        for down in self.down:                   # x1..x_depth at 1/2 .. 1/2**depth, channels doubling
            skips.append(down(self.pool(skips[-1])))
        u = skips.pop()                          # the bottleneck
        for up in self.up:                       # u_{depth-1} .. u_0, back to (B, c, H, W)
            u = up(u, skips.pop())
        return self.head(u)


def build_unet(config: UNetConfig | None = None, *, imagenet_weights: str | None = None) -> UNet:
    """Build a :class:`UNet` (default: the paper's 64-channel, 4-level network). It has no
    ImageNet-pretrained encoder: ``imagenet_weights`` is refused."""
    if imagenet_weights is not None:
        raise ValueError("unet has no ImageNet-pretrained encoder; imagenet_weights cannot be used")
    return UNet(config)
