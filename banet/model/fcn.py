"""FCN-8s (Long, Shelhamer and Darrell, CVPR 2015) on a ResNet backbone.

The paper's skip architecture (Sec. 4.2, Fig. 3): class scores are predicted by 1x1 convolutions
("score layers") on the stride-32, stride-16 and stride-8 features; the stride-32 scores are
up-sampled 2x and summed with the stride-16 scores, that sum is up-sampled 2x and summed with the
stride-8 scores, and the result is up-sampled 8x to the image. The score layers of the finer
features start at zero (the paper's initialisation), so training starts from the FCN-32s output.

Which FCN (docs/architecture.md): the paper's backbone is VGG16 with its fully connected layers made
convolutional (134 M parameters); here the three features are the plain (not atrous) ResNet's
stages 2, 3 and 4 (:class:`banet.model.encoder.ResNetEncoder` with ``dilate=(False, False, False)``,
ResNet-101 at paper scale, as BA-Net's paper preset). The 2x up-samplings are fixed bilinear
interpolation, where the paper learns them from a bilinear initialisation.

Shapes: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)`` in train and eval mode alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from banet.model.blocks import resize_to
from banet.model.config import BACKBONES
from banet.model.encoder import ResNetEncoder


@dataclass(frozen=True)
class FCNConfig:
    """Constructor arguments of :class:`FCN8s`: the ResNet ``backbone`` and ``width`` (64 loads
    ImageNet weights) and ``align_corners`` of the bilinear up-samplings."""

    backbone: str = "resnet101"
    width: int = 64
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.width < 1:
            raise ValueError(f"width must be positive, got {self.width}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FCN8s(nn.Module):
    """FCN-8s: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)``."""

    def __init__(self, config: FCNConfig | None = None, *, imagenet_weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = config = config or FCNConfig()
        self.encoder = ResNetEncoder(config.backbone, config.width, dilate=(False, False, False))
        if imagenet_weights is not None:
            self.encoder.load_imagenet(imagenet_weights)
        c = self.encoder.out_channels
        self.score32 = nn.Conv2d(c[3], 1, 1)
        self.score16 = nn.Conv2d(c[2], 1, 1)
        self.score8 = nn.Conv2d(c[1], 1, 1)
        for layer in (self.score16, self.score8):  # the paper zero-initialises the skip score layers
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _up(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return resize_to(x, ref.shape[-2:], align_corners=self.config.align_corners)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        _, f8, f16, f32 = self.encoder(image)          # strides 8, 16, 32
        s16 = self.score16(f16) + self._up(self.score32(f32), f16)
        s8 = self.score8(f8) + self._up(s16, f8)       # (B, 1, H/8, W/8)
        return self._up(s8, image)


def build_fcn(config: FCNConfig | None = None, *, imagenet_weights: str | Path | None = None) -> FCN8s:
    """Build an :class:`FCN8s` (default: ResNet-101); ``imagenet_weights`` is a torchvision ResNet
    state dict for the encoder."""
    return FCN8s(config, imagenet_weights=imagenet_weights)
