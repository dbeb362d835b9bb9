"""DeepLabv3 (Chen, Papandreou, Schroff and Adam, arXiv:1706.05587, 2017), output stride 8.

The paper's Sec. 3.3 and 4.3: a ResNet whose last two stages use atrous convolution (rates 2 and
4) so that the features stay at 1/8 of the input, atrous spatial pyramid pooling (one 1x1 and three
3x3 convolutions with rates ``(12, 24, 36)`` at output stride 8, i.e. the ``(6, 12, 18)`` of output
stride 16 doubled, plus image-level pooling; 256 filters and BatchNorm; concatenated and merged by
a 1x1 convolution with 256 filters and BatchNorm), and a final 1x1 convolution that gives the
logits, bilinearly up-sampled to the input size. It shares BA-Net's encoder
(:class:`banet.model.encoder.ResNetEncoder`) and ASPP (:class:`banet.model.blocks.ASPP`, whose
image-pooling branch has no BatchNorm so that it trains at batch size 1; docs/architecture.md).

Shapes: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)`` in train and eval mode alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from banet.model.blocks import ASPP, resize_to
from banet.model.config import BACKBONES
from banet.model.encoder import ResNetEncoder


@dataclass(frozen=True)
class DeepLabV3Config:
    """Constructor arguments of :class:`DeepLabV3`: the ResNet ``backbone`` and ``width`` (64 loads
    ImageNet weights), ``aspp_channels`` (256) and ``aspp_rates`` (``(12, 24, 36)`` at output stride 8),
    ``align_corners`` of the final bilinear resize (as :class:`banet.model.ModelConfig`'s)."""

    backbone: str = "resnet101"
    width: int = 64
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = (12, 24, 36)
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if min(self.width, self.aspp_channels) < 1 or not self.aspp_rates or min(self.aspp_rates) < 1:
            raise ValueError("width, aspp_channels and aspp_rates must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeepLabV3(nn.Module):
    """DeepLabv3: encoder (OS 8) -> ASPP -> 1x1 head; ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)``."""

    def __init__(self, config: DeepLabV3Config | None = None, *, imagenet_weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = config = config or DeepLabV3Config()
        self.encoder = ResNetEncoder(config.backbone, config.width)  # stages 3-4 atrous: output stride 8
        if imagenet_weights is not None:
            self.encoder.load_imagenet(imagenet_weights)
        self.aspp = ASPP(self.encoder.out_channels[-1], config.aspp_channels, config.aspp_rates)
        self.head = nn.Conv2d(config.aspp_channels, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f4 = self.encoder(image)[3]                  # (B, C4, H/8, W/8)
        logits = self.head(self.aspp(f4))            # (B, 1, H/8, W/8)
        return resize_to(logits, image.shape[-2:], align_corners=self.config.align_corners)


def build_deeplabv3(config: DeepLabV3Config | None = None, *,
                    imagenet_weights: str | Path | None = None) -> DeepLabV3:
    """Build a :class:`DeepLabV3` (default: ResNet-101, output stride 8); ``imagenet_weights`` is a
    torchvision ResNet state dict for the encoder."""
    return DeepLabV3(config, imagenet_weights=imagenet_weights)
