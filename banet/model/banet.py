"""BA-Net wiring: encoder -> per-stage PEE / mini-MTL -> CFF -> 1x1 decoder -> head."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from banet.model.blocks import ASPP, PEE, ConvBN, ConvBNReLU, CrossFeatureFusion, MiniMTL, resize_to
from banet.model.config import ModelConfig
from banet.model.encoder import ResNetEncoder


class BANetOutput(NamedTuple):
    """Training-mode output: final logits ``(B, 1, H, W)`` and, per stage (4, or none without
    mini-MTL), edge and segmentation logits upsampled to ``(B, 1, H, W)`` for deep supervision."""

    logits: torch.Tensor
    edge_logits: list[torch.Tensor]
    seg_logits: list[torch.Tensor]


class BANet(nn.Module):
    """Boundary-aware context network.

    ``eval()`` mode: ``forward(image (B, 3, H, W)) -> logits (B, 1, H, W)`` (what gets exported).
    ``train()`` mode: ``forward`` returns a :class:`BANetOutput` for deep supervision.
    Any input size the encoder accepts (odd sizes included) gives outputs of the input's size.

    An ablated part (``ModelConfig.pee/mtl/ia/cff`` False) is not built: its attribute is None
    and ``print(model)`` shows the graph that runs.
    """

    def __init__(self, config: ModelConfig | None = None, *, imagenet_weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        self.encoder = ResNetEncoder(config.backbone, config.width)
        if imagenet_weights is not None:
            self.encoder.load_imagenet(imagenet_weights)
        c = config.stage_channels
        self.aspp = ASPP(self.encoder.out_channels[-1], config.aspp_channels, config.aspp_rates)
        # Per stage: squeeze F_i to C channels (F'_i), then PEE and mini-MTL. Stage features are
        # pre-activation (they end at BatchNorm) so that the IA and CFF gates see both signs.
        self.squeeze = nn.ModuleList(ConvBN(cin, c, 1) for cin in self.encoder.out_channels)
        self.pee = nn.ModuleList(PEE(c, k) for k in config.pee_pool_sizes) if config.pee else None
        self.mtl = nn.ModuleList(MiniMTL(c, ia=config.ia) for _ in range(4)) if config.mtl else None
        self.cff = CrossFeatureFusion(config.align_corners) if config.cff else None
        self.act = nn.ReLU()  # after the gates, before the decoder reads F_iC
        # Decoder (eq. 11): D_4 = conv1x1([ASPP, F_4C]); D_i = conv1x1([D_{i+1}, F_iC]), i = 3, 2, 1.
        self.decode4 = ConvBNReLU(config.aspp_channels + c, c, 1)
        self.decode = nn.ModuleList(ConvBNReLU(2 * c, c, 1) for _ in range(3))  # stages 3, 2, 1
        self.head = nn.Conv2d(c, 1, 1)

    def _resize(self, x: torch.Tensor, size) -> torch.Tensor:
        return resize_to(x, size, align_corners=self.config.align_corners)

    def forward(self, image: torch.Tensor) -> torch.Tensor | BANetOutput:
        size = image.shape[-2:]
        f = self.encoder(image)                                          # F_1..F_4 at 1/4, 1/8, 1/8, 1/8
        context = self.aspp(f[3])
        f_prime = [sq(x) for sq, x in zip(self.squeeze, f)]              # F'_i, C channels
        f_p = [pee(x) for pee, x in zip(self.pee, f_prime)] if self.pee is not None else f_prime  # F_iP, eq. 2-3
        f_m, edges, segs = f_p, [], []                                   # F_iM, E_i, S_i (eq. 5-6)
        if self.mtl is not None:
            outs = [mtl(x) for mtl, x in zip(self.mtl, f_p)]
            f_m, edges, segs = [o[0] for o in outs], [o[1] for o in outs], [o[2] for o in outs]
        f_c = self.cff(f_m) if self.cff is not None else f_m             # F_iC, eq. 10
        f_c = [self.act(x) for x in f_c]
        d = self.decode4(torch.cat([context, f_c[3]], dim=1))            # D_4, eq. 11
        for conv, x in zip(self.decode, reversed(f_c[:3])):              # D_3, D_2, D_1
            d = conv(torch.cat([self._resize(d, x.shape[-2:]), x], dim=1))
        logits = self._resize(self.head(d), size)
        if not self.training:
            return logits
        return BANetOutput(
            logits,
            [self._resize(e, size) for e in edges],
            [self._resize(s, size) for s in segs],
        )


def build_model(config: ModelConfig | None = None, *, imagenet_weights: str | Path | None = None) -> BANet:
    """Build a BA-Net from a :class:`ModelConfig` (default: the paper's ResNet-101)."""
    return BANet(config, imagenet_weights=imagenet_weights)
