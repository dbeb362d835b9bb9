"""Deep-supervision loss (eq. 12) and the edge ground truth."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from banet.losses import EDGE_RADIUS, DeepSupervisionLoss, edge_target, soft_dice_loss


def _square(size: int = 16, lo: int = 4, hi: int = 12) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., lo:hi, lo:hi] = 1
    return mask


def test_edge_band_is_two_pixels_wide_at_default_radius():
    assert EDGE_RADIUS == 1
    mask = torch.zeros(1, 1, 8, 10)
    mask[..., :, :5] = 1  # vertical boundary between columns 4 and 5
    edge = edge_target(mask)
    assert edge[0, 0].sum(dim=0).tolist() == [0, 0, 0, 0, 8, 8, 0, 0, 0, 0]


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_edge_band_width_scales_with_radius(radius):
    mask = torch.zeros(1, 1, 12, 20)
    mask[..., :, :10] = 1
    cols = edge_target(mask, radius)[0, 0, 0]
    assert cols.sum().item() == 2 * radius
    assert cols.nonzero().flatten().tolist() == list(range(10 - radius, 10 + radius))


def test_edge_band_of_a_square_by_hand():
    # 8x8 square in a 16x16 image: the band is the 10x10 ring outside-in minus the 6x6 core
    edge = edge_target(_square())
    assert edge.sum().item() == 10 * 10 - 6 * 6
    assert set(edge.unique().tolist()) == {0.0, 1.0}


def test_image_border_is_not_an_edge():
    assert edge_target(torch.ones(1, 1, 9, 9)).sum().item() == 0
    assert edge_target(torch.zeros(1, 1, 9, 9)).sum().item() == 0
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., :, :4] = 1  # touches three borders: only the inner vertical boundary is an edge
    assert edge_target(mask).sum().item() == 2 * 9


def _perfect(mask: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    return (mask * 2 - 1) * scale


def test_loss_is_near_zero_for_perfect_and_large_for_wrong_predictions():
    mask = _square().repeat(2, 1, 1, 1)
    edges = edge_target(mask)
    loss_fn = DeepSupervisionLoss()
    good, good_parts = loss_fn(_perfect(mask), [_perfect(edges)] * 4, [_perfect(mask)] * 4, mask)
    bad, bad_parts = loss_fn(-_perfect(mask), [-_perfect(edges)] * 4, [-_perfect(mask)] * 4, mask)
    assert good.item() < 1e-6
    assert bad.item() > 20 * 9 * 0.99  # nine terms of ~20 nats each
    assert float(bad_parts["main"]) == pytest.approx(20.0, rel=1e-3)
    assert float(good_parts["total"]) == pytest.approx(good.item())
    assert all(t.dim() == 0 and not t.requires_grad for t in good_parts.values())  # no sync per step


def test_loss_is_the_sum_of_eq_12_terms():
    torch.manual_seed(0)
    mask = _square()
    logits = torch.randn(1, 1, 16, 16)
    edges = [torch.randn(1, 1, 16, 16) for _ in range(4)]
    segs = [torch.randn(1, 1, 16, 16) for _ in range(4)]
    weights = (0.5, 1.0, 2.0, 0.25)
    total, parts = DeepSupervisionLoss(weights)(logits, edges, segs, mask)
    bce = F.binary_cross_entropy_with_logits
    g_e = edge_target(mask)
    want = bce(logits, mask) + sum(w * (bce(e, g_e) + bce(s, mask)) for w, e, s in zip(weights, edges, segs))
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    assert float(parts["main"] + parts["edge"] + parts["seg"]) == pytest.approx(float(parts["total"]), rel=1e-6)


def test_dice_term_is_the_authors_main_output_dice():
    torch.manual_seed(0)
    mask = _square().repeat(2, 1, 1, 1)
    logits = torch.randn(2, 1, 16, 16)
    p, g = torch.sigmoid(logits), mask
    by_hand = 1 - torch.stack([(2 * (p[i] * g[i]).sum() + 1) / (p[i].sum() + g[i].sum() + 1) for i in range(2)]).mean()
    assert soft_dice_loss(logits, mask).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert soft_dice_loss(_perfect(mask), mask).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(torch.full((1, 1, 4, 4), -30.0), torch.zeros(1, 1, 4, 4)).item() == pytest.approx(0.0)
    edges = [torch.zeros(2, 1, 16, 16)] * 4
    plain, parts0 = DeepSupervisionLoss()(logits, edges, edges, mask)
    total, parts = DeepSupervisionLoss(dice_weight=0.5)(logits, edges, edges, mask)
    assert "dice" not in parts0 and float(parts["dice"]) == pytest.approx(by_hand.item(), rel=1e-6)
    assert total.item() == pytest.approx(plain.item() + 0.5 * by_hand.item(), rel=1e-6)  # dice on P only


def test_loss_is_stable_for_extreme_logits_and_accepts_bool_masks():
    mask = _square().bool()
    total, _ = DeepSupervisionLoss()(torch.full((1, 1, 16, 16), 1e4), [], [], mask)
    assert torch.isfinite(total)


def test_loss_rejects_wrong_number_of_stage_outputs():
    mask = _square()
    with pytest.raises(ValueError, match="expected 4 stage outputs, got 3 edge"):
        DeepSupervisionLoss()(mask, [mask] * 3, [mask] * 3, mask)
