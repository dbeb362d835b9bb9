"""MultiResUNet (Ibtehaz and Rahman, Neural Networks 121, 2020, arXiv:1902.04049), 2D.

A U-Net whose double convolutions are MultiRes blocks and whose skips are Res paths (the paper's
Fig. 3, 4 and 5, built as in the authors' Keras code nibtehaz/MultiResUNet, ``MultiResUNet.py``):

- MultiRes block of ``U`` filters, ``W = alpha * U`` (``alpha`` 1.67): three chained 3x3 convolutions
  with ``int(0.167 W)``, ``int(0.333 W)`` and ``int(0.5 W)`` filters (the chain stands for 3x3, 5x5 and
  7x7 receptive fields), concatenated, BatchNorm, plus a 1x1 convolution shortcut to the same width,
  ReLU, BatchNorm;
- Res path of length ``4, 3, 2, 1`` from the finest level down: each step a 3x3 convolution plus a 1x1
  convolution shortcut, ReLU, BatchNorm;
- the decoder up-samples by a 2x2 transposed convolution and concatenates the Res path's output.

Every convolution of the authors' ``conv2d_bn`` has no bias and a BatchNorm without scale (Keras
``scale=False``): :class:`BatchNormNoScale` keeps that, so the parameter count matches the paper's
7,262,750 (Keras counts BatchNorm's moving mean and variance; :func:`keras_parameter_count`).
Deviations: logits instead of the sigmoid output; at sizes that are not multiples of 16 the
up-sampled map is zero-padded to its skip's size.

Shapes: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)`` in train and eval mode alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from banet.model.unet import pad_to


@dataclass(frozen=True)
class MultiResUNetConfig:
    """Constructor arguments of :class:`MultiResUNet`: ``base_filters`` ``U`` of the first level (32
    in the paper, doubling per level), ``alpha`` (1.67), ``depth`` poolings (4). ``align_corners`` is
    accepted for the registry's common interface; MultiResUNet has no bilinear resize."""

    base_filters: int = 32
    alpha: float = 1.67
    depth: int = 4
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.depth < 1 or int(self.alpha * self.base_filters * 0.167) < 1:
            raise ValueError(f"need depth >= 1 and int(0.167 * alpha * base_filters) >= 1, got depth {self.depth}, "
                             f"alpha {self.alpha}, base_filters {self.base_filters}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchNormNoScale(nn.Module):
    """BatchNorm with a shift and no scale (Keras ``BatchNormalization(scale=False)``): ``(B, C, h, w)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) + self.bias.view(1, -1, 1, 1)


class ConvBNNoScale(nn.Sequential):
    """The authors' ``conv2d_bn``: convolution without bias -> :class:`BatchNormNoScale` [-> ReLU]."""

    def __init__(self, cin: int, cout: int, kernel_size: int, *, relu: bool) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False),
                                   BatchNormNoScale(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def multires_widths(filters: int, alpha: float) -> tuple[int, int, int]:
    """The three chained convolutions' widths of a MultiRes block of ``filters`` ``U``."""
    w = alpha * filters
    return int(w * 0.167), int(w * 0.333), int(w * 0.5)


class MultiResBlock(nn.Module):
    """MultiRes block: ``(B, cin, h, w) -> (B, sum(multires_widths(filters, alpha)), h, w)``."""

    def __init__(self, cin: int, filters: int, alpha: float = 1.67) -> None:
        super().__init__()
        c1, c2, c3 = multires_widths(filters, alpha)
        self.out_channels = c1 + c2 + c3
        self.shortcut = ConvBNNoScale(cin, self.out_channels, 1, relu=False)
        self.conv3 = ConvBNNoScale(cin, c1, 3, relu=True)
        self.conv5 = ConvBNNoScale(c1, c2, 3, relu=True)  # second 3x3: a 5x5 receptive field
        self.conv7 = ConvBNNoScale(c2, c3, 3, relu=True)  # third 3x3: a 7x7 receptive field
        self.norm = nn.BatchNorm2d(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.norm_out = nn.BatchNorm2d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv3(x)
        b = self.conv5(a)
        c = self.conv7(b)
        out = self.norm(torch.cat([a, b, c], dim=1)) + self.shortcut(x)
        return self.norm_out(self.relu(out))


class ResPathStep(nn.Module):
    """One step of a Res path: ``(B, cin, h, w) -> (B, filters, h, w)``."""

    def __init__(self, cin: int, filters: int) -> None:
        super().__init__()
        self.shortcut = ConvBNNoScale(cin, filters, 1, relu=False)
        self.conv = ConvBNNoScale(cin, filters, 3, relu=True)
        self.relu = nn.ReLU(inplace=True)
        self.norm = nn.BatchNorm2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.relu(self.conv(x) + self.shortcut(x)))


class ResPath(nn.Sequential):
    """``length`` :class:`ResPathStep` s: ``(B, cin, h, w) -> (B, filters, h, w)``."""

    def __init__(self, cin: int, filters: int, length: int) -> None:
        super().__init__(*(ResPathStep(cin if i == 0 else filters, filters) for i in range(length)))


class MultiResUNet(nn.Module):
    """MultiResUNet: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)``, H, W >= 2 ** depth."""

    def __init__(self, config: MultiResUNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MultiResUNetConfig()
        d, alpha = config.depth, config.alpha
        filters = [config.base_filters * 2 ** i for i in range(d + 1)]
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList()
        cin = 3
        for f in filters:                                   # levels 0..depth (the last is the bottleneck)
            block = MultiResBlock(cin, f, alpha)
            self.encoder.append(block)
            cin = block.out_channels
        enc_out = [b.out_channels for b in self.encoder]
        # Res path of level i has length depth - i (4, 3, 2, 1 for the paper's depth 4)
        self.res_paths = nn.ModuleList(ResPath(enc_out[i], filters[i], d - i) for i in range(d))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        cin = enc_out[-1]
        for i in reversed(range(d)):
            self.up.append(nn.ConvTranspose2d(cin, filters[i], 2, stride=2))
            block = MultiResBlock(2 * filters[i], filters[i], alpha)
            self.decoder.append(block)
            cin = block.out_channels
        self.head = ConvBNNoScale(cin, 1, 1, relu=False)    # the authors' last conv2d_bn, without its sigmoid

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for i, block in enumerate(self.encoder):
            x = block(self.pool(x) if i else x)
            skips.append(x)
        u = skips.pop()                                     # bottleneck
        for up, block, res_path in zip(self.up, self.decoder, reversed(self.res_paths)):
            skip = res_path(skips.pop())
            u = block(torch.cat([pad_to(up(u), skip.shape[-2:]), skip], dim=1))
        return self.head(u)


def keras_parameter_count(model: nn.Module) -> int:
    """Parameters as Keras's ``Total params`` counts them: trainable ones plus BatchNorm's moving
    mean and variance (the figure the MultiResUNet paper reports)."""
    stats = sum(m.running_mean.numel() + m.running_var.numel()
                for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return sum(p.numel() for p in model.parameters()) + stats


def build_multiresunet(config: MultiResUNetConfig | None = None, *,
                       imagenet_weights: str | None = None) -> MultiResUNet:
    """Build a :class:`MultiResUNet` (default: the paper's U = 32, alpha = 1.67, 4 levels). It has no
    ImageNet-pretrained encoder: ``imagenet_weights`` is refused."""
    if imagenet_weights is not None:
        raise ValueError("multiresunet has no ImageNet-pretrained encoder; imagenet_weights cannot be used")
    return MultiResUNet(config)
