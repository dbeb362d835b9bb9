"""Attention U-Net, "AG-net" in the seed paper's tables (Oktay et al., MIDL 2018, arXiv:1804.03999).

A U-Net whose skip connections pass through additive attention gates (the paper's Fig. 3 and
eq. 1-2): the skip ``x_l`` and the gating signal ``g`` (the coarser decoder feature) are mapped to
``F_int`` channels, ``x_l`` with a stride-2 2x2 convolution to ``g``'s grid (``W_x``) and ``g`` with a
1x1 convolution (``W_g``); ``q = psi(ReLU(W_x x_l + W_g g + b_g)) + b_psi`` and the attention
coefficients ``alpha = sigmoid(q)`` are resampled bilinearly to ``x_l``'s grid, and the gate returns
``alpha * x_l`` (followed by a 1x1 convolution + BatchNorm, as in the authors' code
ozan-oktay/Attention-Gated-Networks, ``GridAttentionBlock2D``). As in that code's ``MultiAttentionBlock``
(models/networks/unet_CT_multi_att_dsv_3D.py), every gated skip has two such gates side by side, each with
``F_int`` equal to the skip's full width (``inter_size=filters[i]``), and a 1x1 convolution + BatchNorm +
ReLU combines their two outputs (``combine_gates``). The gating signal of the deepest skip is a 1x1
convolution + BatchNorm + ReLU of the bottleneck, the finest skip is not gated, and the decoder up-samples
bilinearly before its two 3x3 convolutions.

Deviations (docs/architecture.md): 2D instead of the paper's 3D CT network; the paper's deep
supervision is left out (side outputs stay BA-Net's); channel widths follow the 2D U-Net
(``base_channels`` 64) rather than the 3D model's 16-256.

Shapes: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)`` in train and eval mode alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from banet.model.blocks import ConvBN, ConvBNReLU, resize_to
from banet.model.unet import DoubleConv


@dataclass(frozen=True)
class AttentionUNetConfig:
    """Constructor arguments of :class:`AttentionUNet`: ``base_channels`` and ``depth`` as in
    :class:`banet.model.unet.UNetConfig`; ``align_corners`` is the corner convention of the
    bilinear resizes (gate coefficients, decoder up-sampling), as :class:`banet.model.ModelConfig`'s."""

    base_channels: int = 64
    depth: int = 4
    align_corners: bool = False

    def __post_init__(self) -> None:
        if self.base_channels < 2 or self.depth < 1:
            raise ValueError(f"base_channels must be >= 2 and depth >= 1, got {self.base_channels}, {self.depth}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AttentionGate(nn.Module):
    """Additive attention gate (eq. 1-2 of the paper).

    ``forward(x (B, Cx, h, w), g (B, Cg, h', w')) -> (B, Cx, h, w)`` with ``h' ~ h / 2``: the skip
    ``x`` weighted by ``alpha (B, 1, h, w)`` in (0, 1), then a 1x1 convolution + BatchNorm.
    """

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int, *, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.theta_x = nn.Conv2d(x_channels, inter_channels, 2, stride=2, bias=False)  # W_x, to g's grid
        self.phi_g = nn.Conv2d(g_channels, inter_channels, 1)                           # W_g, b_g
        self.relu = nn.ReLU()
        self.psi = nn.Conv2d(inter_channels, 1, 1)                                      # psi, b_psi
        self.out = ConvBN(x_channels, x_channels, 1)

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The attention coefficients ``alpha (B, 1, h, w)`` on ``x``'s grid."""
        theta = self.theta_x(x)
        phi = resize_to(self.phi_g(g), theta.shape[-2:], align_corners=self.align_corners)
        q = self.psi(self.relu(theta + phi))
        return resize_to(torch.sigmoid(q), x.shape[-2:], align_corners=self.align_corners)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.out(self.coefficients(x, g) * x)


class MultiAttentionGate(nn.Module):
    """Two :class:`AttentionGate` s on one skip, their outputs combined by a 1x1 convolution + BatchNorm + ReLU
    (the authors' ``MultiAttentionBlock``). ``forward(x (B, Cx, h, w), g) -> (B, Cx, h, w)``."""

    def __init__(self, x_channels: int, g_channels: int, inter_channels: int, *, align_corners: bool = False) -> None:
        super().__init__()
        self.gate1 = AttentionGate(x_channels, g_channels, inter_channels, align_corners=align_corners)
        self.gate2 = AttentionGate(x_channels, g_channels, inter_channels, align_corners=align_corners)
        self.combine = ConvBNReLU(2 * x_channels, x_channels, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.combine(torch.cat([self.gate1(x, g), self.gate2(x, g)], dim=1))


class AttentionUNet(nn.Module):
    """Attention U-Net: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)``, H, W >= 2 ** (depth + 1)."""

    def __init__(self, config: AttentionUNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AttentionUNetConfig()
        widths = [config.base_channels * 2 ** i for i in range(config.depth + 1)]
        ac = config.align_corners
        self.inc = DoubleConv(3, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(config.depth))
        self.gating = ConvBNReLU(widths[-1], widths[-1], 1)
        # decoder level i (from depth-1 down to 0): gate skip i with the level below (i + 1), then
        # up-sample the level below and merge; the finest skip (i = 0) is not gated
        levels = list(reversed(range(config.depth)))
        self.gates = nn.ModuleList(
            MultiAttentionGate(widths[i], widths[i + 1], widths[i], align_corners=ac) if i > 0 else nn.Identity()
            for i in levels)
        self.merge = nn.ModuleList(DoubleConv(widths[i] + widths[i + 1], widths[i]) for i in levels)
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x0 = self.inc(image)
        skips = [x0]
        for down in self.down:                                   # x1..x_depth
            skips.append(down(self.pool(skips[-1])))
        u = skips.pop()                                          # bottleneck
        g = self.gating(u)                                       # gating signal of the deepest skip
        for gate, merge in zip(self.gates, self.merge):
            skip = skips.pop()
            gated = gate(skip, g) if isinstance(gate, MultiAttentionGate) else skip
            up = resize_to(u, skip.shape[-2:], align_corners=self.config.align_corners)
            u = merge(torch.cat([gated, up], dim=1))
            g = u                                                # the next gate is gated by this level
        return self.head(u)


def build_attention_unet(config: AttentionUNetConfig | None = None, *,
                         imagenet_weights: str | None = None) -> AttentionUNet:
    """Build an :class:`AttentionUNet` (default: 64 base channels, 4 levels). It has no
    ImageNet-pretrained encoder: ``imagenet_weights`` is refused."""
    if imagenet_weights is not None:
        raise ValueError("attention_unet has no ImageNet-pretrained encoder; imagenet_weights cannot be used")
    return AttentionUNet(config)
