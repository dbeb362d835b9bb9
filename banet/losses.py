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


class DeepSupervisionLoss(torch.nn.Module):
    """``BCE(P, G) + sum_i lambda_i * (BCE(E_i, G_E) + BCE(S_i, G_S))`` on logits (paper eq. 12).

    Uses ``binary_cross_entropy_with_logits`` (the numerically stable log-sum-exp form). Stage
    outputs may be absent (ablations without mini-MTL); then only the main term remains.
    Returns the total and a dict of its parts (detached floats) for logging.
    """

    def __init__(self, stage_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), edge_radius: int = EDGE_RADIUS) -> None:
        super().__init__()
        self.stage_weights = tuple(float(w) for w in stage_weights)
        self.edge_radius = edge_radius

    def forward(self, logits: torch.Tensor, edge_logits: Sequence[torch.Tensor],
                seg_logits: Sequence[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mask = mask.to(logits.dtype)
        main = F.binary_cross_entropy_with_logits(logits.float(), mask.float())
        total = main
        parts = {"main": float(main.detach())}
        if edge_logits or seg_logits:
            if len(edge_logits) != len(self.stage_weights) or len(seg_logits) != len(self.stage_weights):
                raise ValueError(f"expected {len(self.stage_weights)} stage outputs, got "
                                 f"{len(edge_logits)} edge and {len(seg_logits)} segmentation maps")
            edges = edge_target(mask.float(), self.edge_radius)
            edge_sum = seg_sum = logits.new_zeros((), dtype=torch.float32)
            for w, e, s in zip(self.stage_weights, edge_logits, seg_logits):
                edge_sum = edge_sum + w * F.binary_cross_entropy_with_logits(e.float(), edges)
                seg_sum = seg_sum + w * F.binary_cross_entropy_with_logits(s.float(), mask.float())
            total = total + edge_sum + seg_sum
            parts["edge"] = float(edge_sum.detach())
            parts["seg"] = float(seg_sum.detach())
        parts["total"] = float(total.detach())
        return total, parts
