"""CE-Net (Gu et al., IEEE TMI 38(10), 2019, arXiv:1903.02740): context encoder network.

The paper's Fig. 2-4, built as in the authors' code (Guzaiwang/CE-Net, ``networks/cenet.py``,
``CE_Net_``):

- feature encoder: a plain ResNet-34 (strides 4, 8, 16, 32; ImageNet-pretrained in the paper),
  :class:`banet.model.encoder.ResNetEncoder` with ``dilate=(False, False, False)``;
- DAC, dense atrous convolution (Fig. 3): four cascade branches of 3x3 atrous convolutions with
  rates 1; 3; 1-3; 1-3-5, the last three ending in a 1x1 convolution, each followed by ReLU and
  summed with the input. As in the authors' code the branches share their convolutions (one rate-1,
  one rate-3, one rate-5 and one 1x1 convolution, with bias, no BatchNorm);
- RMP, residual multi-kernel pooling (Fig. 4): max pooling with kernels (and strides) 2, 3, 5 and
  6, one shared 1x1 convolution to a single channel, bilinear up-sampling, concatenated with the
  input (C + 4 channels);
- feature decoder: per level a 1x1 convolution to C/4, a 3x3 transposed convolution (stride 2), a
  1x1 convolution to the finer level's channels (each with BatchNorm and ReLU), added to the
  encoder's feature of that level; then a 4x4 transposed convolution to 32 channels and two 3x3
  convolutions to the logits at the input size.

Deviations (docs/architecture.md): one logit map instead of the sigmoid; where a pooling kernel is
larger than the stride-32 map (inputs under 192 px) it is clamped to the map's size; at sizes that
are not multiples of 32 a decoder output is bilinearly resized to its skip's size (and the logits to
the input's), which the authors' code (448 px inputs) never needs.

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
class CENetConfig:
    """Constructor arguments of :class:`CENet`: the ResNet ``backbone`` (ResNet-34 in the paper) and
    ``width`` (64 loads ImageNet weights), the RMP ``pool_sizes`` (2, 3, 5, 6), the channels of the
    final transposed convolution (32) and ``align_corners`` of the bilinear resizes."""

    backbone: str = "resnet34"
    width: int = 64
    pool_sizes: tuple[int, ...] = (2, 3, 5, 6)
    final_channels: int = 32
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if min(self.width, self.final_channels) < 1 or not self.pool_sizes or min(self.pool_sizes) < 1:
            raise ValueError("width, final_channels and pool_sizes must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DAC(nn.Module):
    """Dense atrous convolution block: ``(B, C, h, w) -> (B, C, h, w)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dilate1 = nn.Conv2d(channels, channels, 3, padding=1, dilation=1)
        self.dilate3 = nn.Conv2d(channels, channels, 3, padding=3, dilation=3)
        self.dilate5 = nn.Conv2d(channels, channels, 3, padding=5, dilation=5)
        self.conv1x1 = nn.Conv2d(channels, channels, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r1 = self.dilate1(x)
        b1 = self.relu(r1)                                                   # rate 1
        b2 = self.relu(self.conv1x1(self.dilate3(x)))                        # rate 3
        r13 = self.dilate3(r1)
        b3 = self.relu(self.conv1x1(r13))                                    # rates 1, 3
        b4 = self.relu(self.conv1x1(self.dilate5(r13)))                      # rates 1, 3, 5
        return x + b1 + b2 + b3 + b4


class RMP(nn.Module):
    """Residual multi-kernel pooling: ``(B, C, h, w) -> (B, C + len(pool_sizes), h, w)``."""

    def __init__(self, channels: int, pool_sizes: tuple[int, ...] = (2, 3, 5, 6), *, align_corners: bool = False) -> None:
        super().__init__()
        self.pool_sizes = tuple(pool_sizes)
        self.align_corners = align_corners
        self.conv = nn.Conv2d(channels, 1, 1)  # shared by the pooled maps, as in the authors' code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # static kernels: an exported graph has a fixed input size
        maps = []
        for k in self.pool_sizes:
            kernel = (min(k, h), min(k, w))  # a kernel larger than the map would leave nothing
            pooled = nn.functional.max_pool2d(x, kernel, stride=kernel)
            maps.append(resize_to(self.conv(pooled), (h, w), align_corners=self.align_corners))
        return torch.cat([*maps, x], dim=1)

    def extra_repr(self) -> str:
        return f"pool_sizes={self.pool_sizes}, align_corners={self.align_corners}"


class DecoderBlock(nn.Sequential):
    """1x1 to cin/4 -> 3x3 transposed convolution, stride 2 -> 1x1 to ``cout``, each with BatchNorm
    and ReLU: ``(B, cin, h, w) -> (B, cout, 2h, 2w)``."""

    def __init__(self, cin: int, cout: int) -> None:
        mid = max(cin // 4, 1)
        super().__init__(
            nn.Conv2d(cin, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class CENet(nn.Module):
    """CE-Net: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)``, H, W >= 32."""

    def __init__(self, config: CENetConfig | None = None, *, imagenet_weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = config = config or CENetConfig()
        self.encoder = ResNetEncoder(config.backbone, config.width, dilate=(False, False, False))
        if imagenet_weights is not None:
            self.encoder.load_imagenet(imagenet_weights)
        c = self.encoder.out_channels
        self.dac = DAC(c[3])
        self.rmp = RMP(c[3], config.pool_sizes, align_corners=config.align_corners)
        self.decoder4 = DecoderBlock(c[3] + len(config.pool_sizes), c[2])
        self.decoder3 = DecoderBlock(c[2], c[1])
        self.decoder2 = DecoderBlock(c[1], c[0])
        self.decoder1 = DecoderBlock(c[0], c[0])
        f = config.final_channels
        self.final = nn.Sequential(nn.ConvTranspose2d(c[0], f, 4, stride=2, padding=1), nn.ReLU(inplace=True),
                                   nn.Conv2d(f, f, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(f, 1, 3, padding=1)

    def _to(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return resize_to(x, ref.shape[-2:], align_corners=self.config.align_corners)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        e1, e2, e3, e4 = self.encoder(image)              # strides 4, 8, 16, 32
        context = self.rmp(self.dac(e4))                  # (B, C4 + 4, H/32, W/32)
        d4 = self._to(self.decoder4(context), e3) + e3
        d3 = self._to(self.decoder3(d4), e2) + e2
        d2 = self._to(self.decoder2(d3), e1) + e1
        d1 = self.decoder1(d2)                            # stride 2
        return self._to(self.head(self.final(d1)), image)


def build_cenet(config: CENetConfig | None = None, *, imagenet_weights: str | Path | None = None) -> CENet:
    """Build a :class:`CENet` (default: the paper's ResNet-34); ``imagenet_weights`` is a
    torchvision ResNet state dict for the encoder."""
    return CENet(config, imagenet_weights=imagenet_weights)
