"""BA-Net's building blocks: ASPP, PEE, mini-MTL with interactive attention, CFF.

Every block keeps the spatial size of its input. Shapes are ``(B, C, H, W)``.

Stage features (F', F_P, F_M, F_C) are *pre-activation*: the block that makes one ends with
BatchNorm, and the block that reads one applies ReLU first. The two attention gates
(interactive attention, cross feature fusion) read them as they are, so a gate's input takes
both signs and ``sigmoid`` spans (0, 1); on post-ReLU features (>= 0) ``sigmoid`` would be stuck
in [0.5, 1) and the reverse gate ``1 - sigmoid`` in (0, 0.5]. The authors' code also gates on
pre-activation features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Sequential):
    """``k x k`` convolution (same padding) -> BatchNorm: a pre-activation stage feature."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
        )


class ConvBNReLU(ConvBN):
    """``k x k`` convolution (same padding) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__(cin, cout, kernel_size, dilation)
        self.append(nn.ReLU(inplace=True))


def resize_to(x: torch.Tensor, size: torch.Size | tuple[int, int], *, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``size`` (a no-op when it already has that size).

    ``align_corners`` is :attr:`banet.model.ModelConfig.align_corners` (docs/architecture.md).
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


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
    """Pyramid edge extraction (paper eq. 2-3).

    ``forward(F' (B, C, h, w)) -> F_P (B, C, h, w)``, both pre-activation. On ``X = ReLU(F')``
    the edge features are ``X - AvgPool_k(X)`` for each pooling size ``k`` (stride 1, padding
    ``k // 2`` so the size is kept; padded zeros are not counted in the average, so the image
    border does not read as an edge). They are concatenated with ``X`` and merged by a 1x1
    convolution -> BatchNorm back to ``channels``.
    """

    def __init__(self, channels: int, pool_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.pools = nn.ModuleList(
            nn.AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False) for k in pool_sizes
        )
        self.merge = ConvBN(channels * (len(pool_sizes) + 1), channels, 1)

    def forward(self, f_prime: torch.Tensor) -> torch.Tensor:
        x = self.act(f_prime)
        edges = [x - pool(x) for pool in self.pools]
        return self.merge(torch.cat([x, *edges], dim=1))


def interactive_attention(e: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interactive attention (paper eq. 5), parameter free and simultaneous::

        E' = E + (1 - sigmoid(E)) * S
        S' = S + (1 - sigmoid(S)) * E

    Both updates read the features from before the exchange. ``e`` and ``s`` are pre-activation
    features (both signs), so each reverse gate ``1 - sigmoid`` spans (0, 1).
    """
    return e + (1 - torch.sigmoid(e)) * s, s + (1 - torch.sigmoid(s)) * e


class InteractiveAttention(nn.Module):
    """:func:`interactive_attention` (eq. 5) as a module, so that ``print(model)`` shows where it
    acts and a forward hook can read its inputs. ``forward(e, s) -> (e', s')``."""

    def forward(self, e: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return interactive_attention(e, s)


class MiniMTL(nn.Module):
    """Mini multi-task learning module: an edge branch and a segmentation branch.

    ``forward(F_P (B, C, h, w)) -> (F_M (B, C, h, w), edge_logits (B, 1, h, w), seg_logits (B, 1, h, w))``.
    Each branch is two 3x3 convolutions on ``ReLU(F_P)``. The first ends at BatchNorm; interactive
    attention (eq. 5; absent with ``ia=False``, same parameters) exchanges information between
    these pre-activation features, and ReLU follows the exchange. Each branch predicts a 1-channel
    map, and the two branch features are concatenated and merged by a 1x1 convolution ->
    BatchNorm into the pre-activation ``F_M`` (eq. 6).
    """

    def __init__(self, channels: int, ia: bool = True) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.edge1 = ConvBN(channels, channels, 3)
        self.edge2 = ConvBNReLU(channels, channels, 3)
        self.seg1 = ConvBN(channels, channels, 3)
        self.seg2 = ConvBNReLU(channels, channels, 3)
        self.ia = InteractiveAttention() if ia else None
        self.edge_head = nn.Conv2d(channels, 1, 1)
        self.seg_head = nn.Conv2d(channels, 1, 1)
        self.merge = ConvBN(2 * channels, channels, 1)

    def forward(self, f_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.act(f_p)
        e, s = self.edge1(x), self.seg1(x)  # pre-activation: the gates see both signs
        if self.ia is not None:
            e, s = self.ia(e, s)
        e, s = self.edge2(self.act(e)), self.seg2(self.act(s))
        f_m = self.merge(torch.cat([e, s], dim=1))
        return f_m, self.edge_head(e), self.seg_head(s)


def cross_feature_fusion(features: list[torch.Tensor], *, align_corners: bool = False) -> list[torch.Tensor]:
    """Cross feature fusion (paper eq. 10), parameter free::

        F_iC = F_iM + (1 - sigmoid(F_iM)) * sum_{j != i} sigmoid(F_jM) * F_jM

    where each ``F_jM`` is bilinearly resized to stage ``i``'s resolution. All stages must have
    the same number of channels. The ``F_iM`` are pre-activation features (both signs).
    """
    gated = [torch.sigmoid(f) * f for f in features]
    fused = []
    for i, f in enumerate(features):
        others = sum(resize_to(g, f.shape[-2:], align_corners=align_corners)
                     for j, g in enumerate(gated) if j != i)
        fused.append(f + (1 - torch.sigmoid(f)) * others)
    return fused


class CrossFeatureFusion(nn.Module):
    """:func:`cross_feature_fusion` (eq. 10) as a module: ``forward([F_1M..F_4M]) -> [F_1C..F_4C]``."""

    def __init__(self, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return cross_feature_fusion(features, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"align_corners={self.align_corners}"
