"""BA-Net's building blocks: ASPP, PEE, mini-MTL with interactive attention, CFF.

Every block keeps the spatial size of its input. Shapes are ``(B, C, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``k x k`` convolution (same padding) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def resize_to(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``size`` (a no-op when it already has that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling on the last encoder stage.

    Four parallel atrous convolutions (a 1x1 and three 3x3 with ``rates``, DeepLabv3's choice;
    the paper names four parallel atrous convolutions without their rates) and one global
    average pooling branch, concatenated and merged by a 1x1 convolution to ``out_channels``
    (256 in the paper). The pooling branch has no BatchNorm, so that it also trains at batch
    size 1 (a 1x1 map has a single value per channel).
    """

    def __init__(self, cin: int, out_channels: int = 256, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        branches = [ConvBNReLU(cin, out_channels, 1)]
        branches += [ConvBNReLU(cin, out_channels, 3, dilation=r) for r in rates]
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = ConvBNReLU(out_channels * (len(branches) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class PEE(nn.Module):
    """Pyramid edge extraction (paper eq. 1-2).

    Edge features are ``F' - AvgPool_k(F')`` for each pooling size ``k`` (stride 1, padding
    ``k // 2`` so the size is kept; padded zeros are not counted in the average, so the image
    border does not read as an edge). They are concatenated with ``F'`` and merged by a 1x1
    convolution back to ``channels``.
    """

    def __init__(self, channels: int, pool_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.pools = nn.ModuleList(
            nn.AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False) for k in pool_sizes
        )
        self.merge = ConvBNReLU(channels * (len(pool_sizes) + 1), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edges = [x - pool(x) for pool in self.pools]
        return self.merge(torch.cat([x, *edges], dim=1))


def interactive_attention(e: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interactive attention (paper eq. 4-5), parameter free and simultaneous::

        E' = E + (1 - sigmoid(E)) * S
        S' = S + (1 - sigmoid(S)) * E

    Both updates read the features from before the exchange.
    """
    return e + (1 - torch.sigmoid(e)) * s, s + (1 - torch.sigmoid(s)) * e


class MiniMTL(nn.Module):
    """Mini multi-task learning module: an edge branch and a segmentation branch.

    Each branch is two 3x3 convolutions; interactive attention exchanges information between the
    branches after the first one (``ia=False`` skips the exchange with the same parameters). Each
    branch predicts a 1-channel map (logits at the stage's resolution), and the two branch
    features are concatenated and merged by a 1x1 convolution into ``F_M``.

    Returns ``(F_M, edge_logits, seg_logits)`` with shapes ``(B, C, h, w)``, ``(B, 1, h, w)`` x 2.
    """

    def __init__(self, channels: int, ia: bool = True) -> None:
        super().__init__()
        self.ia = ia
        self.edge1 = ConvBNReLU(channels, channels, 3)
        self.edge2 = ConvBNReLU(channels, channels, 3)
        self.seg1 = ConvBNReLU(channels, channels, 3)
        self.seg2 = ConvBNReLU(channels, channels, 3)
        self.edge_head = nn.Conv2d(channels, 1, 1)
        self.seg_head = nn.Conv2d(channels, 1, 1)
        self.merge = ConvBNReLU(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e, s = self.edge1(x), self.seg1(x)
        if self.ia:
            e, s = interactive_attention(e, s)
        e, s = self.edge2(e), self.seg2(s)
        return self.merge(torch.cat([e, s], dim=1)), self.edge_head(e), self.seg_head(s)


def cross_feature_fusion(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cross feature fusion (paper eq. 6), parameter free::

        F_iC = F_iM + (1 - sigmoid(F_iM)) * sum_{j != i} sigmoid(F_jM) * F_jM

    where each ``F_jM`` is bilinearly resized to stage ``i``'s resolution. All stages must have
    the same number of channels.
    """
    gated = [torch.sigmoid(f) * f for f in features]
    fused = []
    for i, f in enumerate(features):
        others = sum(resize_to(g, f.shape[-2:]) for j, g in enumerate(gated) if j != i)
        fused.append(f + (1 - torch.sigmoid(f)) * others)
    return fused
