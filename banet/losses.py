"""Deep-supervision loss (paper eq. 12) and the edge ground truth it needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

EDGE_RADIUS = 1
"""Half-width of the edge band in pixels at the training resolution (see :func:`edge_target`)."""


def edge_target(mask: torch.Tensor, radius: int = EDGE_RADIUS) -> torch.Tensor:
    """Edge ground truth G_E from a binary mask ``(B, 1, H, W)`` (float 0/1).

    The rule: the morphological gradient ``dilate(mask) - erode(mask)`` with a square
    ``(2 * radius + 1)`` structuring element, i.e. every pixel within ``radius`` pixels
    (Chebyshev distance) of the boundary on either side. With the default radius 1 the band is
    2 pixels wide (one inside, one outside the lesion) at the training resolution. Image borders
    are not boundaries: padding replicates the mask.
    """
    k = 2 * radius + 1
    padded = F.pad(mask, (radius,) * 4, mode="replicate")
    dilated = F.max_pool2d(padded, k, stride=1)
    eroded = -F.max_pool2d(-padded, k, stride=1)
    return dilated - eroded


def soft_dice_loss(logits: torch.Tensor, mask: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - mean_b (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)`` with ``p = sigmoid(logits)``.

    Per image, then averaged over the batch, as the authors' ``DiceLoss_with_softmax`` (whose
    softmax over two classes is this sigmoid of one logit). The authors write
    ``2 (sum(p g) + smooth) / (...)``, which gives an empty prediction of an empty mask a Dice of 2;
    here the smoothing term keeps the ratio in [0, 1].
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    g = mask.float().flatten(1)
    dice = (2 * (p * g).sum(1) + smooth) / (p.sum(1) + g.sum(1) + smooth)
    return 1 - dice.mean()


class DeepSupervisionLoss(torch.nn.Module):
    """``BCE(P, G) + dice_weight * Dice(P, G) + sum_i lambda_i * (BCE(E_i, G_E) + BCE(S_i, G_S))``
    on logits (paper eq. 12; the Dice term is the authors' code's, off by default).

    BCE is ``binary_cross_entropy_with_logits`` (the numerically stable log-sum-exp form) averaged
    over pixels; the paper's eq. 12 sums over pixels, which only rescales the loss (and the
    learning rate that suits it) by H x W. Stage outputs may be absent (ablations without
    mini-MTL); then only the main terms remain. Returns the total and a dict of its parts as
    detached 0-d float32 tensors (no device synchronisation per step; ``float()`` them to log).
    """

    def __init__(self, stage_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), edge_radius: int = EDGE_RADIUS,
                 dice_weight: float = 0.0) -> None:
        super().__init__()
        self.stage_weights = tuple(float(w) for w in stage_weights)
        self.edge_radius = edge_radius
        self.dice_weight = float(dice_weight)

    def forward(self, logits: torch.Tensor, edge_logits: Sequence[torch.Tensor],
                seg_logits: Sequence[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = mask.float()
        main = F.binary_cross_entropy_with_logits(logits.float(), mask)
        total = main
        parts = {"main": main.detach()}
        if self.dice_weight:
            dice = soft_dice_loss(logits, mask)
            total = total + self.dice_weight * dice
            parts["dice"] = dice.detach()
        if edge_logits or seg_logits:
            if len(edge_logits) != len(self.stage_weights) or len(seg_logits) != len(self.stage_weights):
                raise ValueError(f"expected {len(self.stage_weights)} stage outputs, got "
                                 f"{len(edge_logits)} edge and {len(seg_logits)} segmentation maps")
            edges = edge_target(mask, self.edge_radius)
            edge_sum = seg_sum = logits.new_zeros((), dtype=torch.float32)
            for w, e, s in zip(self.stage_weights, edge_logits, seg_logits):
                edge_sum = edge_sum + w * F.binary_cross_entropy_with_logits(e.float(), edges)
                seg_sum = seg_sum + w * F.binary_cross_entropy_with_logits(s.float(), mask)
            total = total + edge_sum + seg_sum
            parts["edge"] = edge_sum.detach()
            parts["seg"] = seg_sum.detach()
        parts["total"] = total.detach()
        return total, parts
