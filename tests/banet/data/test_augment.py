"""Augmentation: image, mask and edge target stay aligned; the paper's and the authors' ranges and odds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from banet import processing
from banet.data.augment import AUTHORS, PAPER, AugmentConfig, normalize_batch, prepare_batch, random_affine, warp
from banet.losses import edge_target


def _blobs(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Masks ``(B, 1, S, S)`` 0/1 with off-centre ellipses (asymmetric, so flips/rotations show)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(batch):
        cy, cx = rng.uniform(0.25, 0.6, 2) * size
        ry, rx = rng.uniform(0.1, 0.25, 2) * size
        out.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return torch.from_numpy(np.stack(out)[:, None].astype(np.uint8))


def _image_from_mask(masks: torch.Tensor) -> torch.Tensor:
    """uint8 images whose three channels encode the mask (255 inside, 0 outside)."""
    return (masks * 255).repeat(1, 3, 1, 1)


def test_image_mask_and_edge_target_stay_aligned():
    size = 64
    masks = _blobs(16, size)
    images = _image_from_mask(masks)
    gen = torch.Generator().manual_seed(0)
    x, y = prepare_batch(images, masks, AugmentConfig(), generator=gen)
    # undo the normalization: the image channel should show the same blob as the mask
    pixels = np.stack([processing.denormalize(chw) for chw in x.numpy()])[..., 0]
    from_image = torch.from_numpy(pixels > 127)[:, None]
    from_mask = y > 0.5
    assert not torch.equal(from_mask, masks.bool()), "augmentation changed nothing"
    # bilinear (image) and nearest (mask) sampling may differ only right at the boundary
    band = edge_target(y, radius=1) > 0
    assert not (from_image ^ from_mask)[~band].any()
    assert (from_image ^ from_mask).float().mean() < 0.01
    # the edge target computed from the augmented mask sits on the augmented image's boundary
    edges_from_image = edge_target(from_image.float(), radius=1) > 0
    edges_from_mask = edge_target(y, radius=1) > 0
    overlap = (edges_from_image & edges_from_mask).sum() / edges_from_mask.sum()
    assert overlap > 0.85


def test_flips_are_exact_mirrors():
    masks = _blobs(64, 32)
    images = _image_from_mask(masks) // 2 + torch.arange(32, dtype=torch.uint8).view(1, 1, 1, 32)
    gen = torch.Generator().manual_seed(1)
    cfg = AugmentConfig.flips_only()
    x, y = prepare_batch(images, masks, cfg, generator=gen)
    reference = normalize_batch(images.float())
    seen = set()
    for i in range(64):
        for dims in ([], [-1], [-2], [-2, -1]):
            ref = reference[i].flip(dims) if dims else reference[i]
            if torch.allclose(x[i], ref, atol=1e-4):
                assert torch.equal(y[i], masks[i].float().flip(dims) if dims else masks[i].float())
                seen.add(tuple(dims))
                break
        else:
            pytest.fail(f"sample {i} is not a flip of its input")
    assert len(seen) == 4, f"all four flip combinations should occur in 64 samples, saw {seen}"


def _decompose(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(crop side, rotation angle in degrees) of square-frame affine maps, flips removed."""
    linear = theta[:, :, :2]
    side = linear.det().abs().sqrt()
    angle = torch.rad2deg(torch.atan2(linear[:, 1, 0].abs(), linear[:, 0, 0].abs()))
    return side, angle


def test_paper_augmentation_ranges():
    theta = random_affine(4000, PAPER, generator=torch.Generator().manual_seed(2))
    side, angle = _decompose(theta)
    assert AugmentConfig() == PAPER
    assert side.min() >= 0.5 - 1e-5 and side.max() <= 1.0 + 1e-5      # 50-100 % of the side
    assert (side < 0.55).any() and (side > 0.95).any()
    assert angle.max() <= 10.0 + 1e-3 and angle.max() > 9.5             # [-10, 10] degrees
    assert (angle > 0.01).float().mean() > 0.99                         # on every sample
    assert torch.equal(theta[:, :, 2], torch.zeros(4000, 2))            # centred crop


def test_authors_augmentation_odds():
    n = 20000
    theta = random_affine(n, AUTHORS, generator=torch.Generator().manual_seed(3))
    side, angle = _decompose(theta)
    untouched = side > 1 - 1e-6
    upper = (side >= 2 / 3) & ~untouched  # zoom-ins (side 1/zoom in (2/3, 1)) and the upper crops
    rotated = angle > 1e-3
    # p 0.25 zoom-in 1-1.5x, p 0.25 crop of 50-100 % of the side (of all samples), 0.5 neither; rotation p 0.5
    assert untouched.float().mean().item() == pytest.approx(0.5, abs=0.015)
    assert (side < 2 / 3).float().mean().item() == pytest.approx(0.25 / 3, abs=0.01)
    assert upper.float().mean().item() == pytest.approx(0.25 + 0.25 * 2 / 3, abs=0.015)
    assert rotated.float().mean().item() == pytest.approx(0.5, abs=0.015)
    assert angle.max() <= 10.0 + 1e-3 and side.min() >= 0.5 - 1e-5
    # flips stay 0.5 each whatever else is drawn, and both settings see the same flips for one seed
    flips = torch.sign(theta[:, 0, 0] * torch.cos(torch.deg2rad(angle)))
    assert (flips < 0).float().mean().item() == pytest.approx(0.5, abs=0.015)
    same_seed = random_affine(n, AugmentConfig.flips_only(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.sign(same_seed[:, 0, 0]), torch.sign(theta[:, 0, 0]))


def test_rotation_happens_in_the_original_images_frame():
    # a 2:1 image squashed to a square: a rotation of the original is a shear of the square, and
    # the affine map (in normalized coordinates) is diag(1/a, 1) R diag(a, 1)
    cfg = AugmentConfig(hflip=False, vflip=False, crop_p=0.0, rotate_degrees=10.0, rotate_p=1.0)
    gen = torch.Generator().manual_seed(4)
    theta = random_affine(64, cfg, generator=gen, aspect=torch.full((64,), 2.0))
    square = random_affine(64, cfg, generator=torch.Generator().manual_seed(4))
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    back = a @ theta[:, :, :2] @ torch.linalg.inv(a)  # undo the frame change: a pure rotation again
    torch.testing.assert_close(back, square[:, :, :2])
    assert not torch.allclose(theta[:, :, :2], square[:, :, :2])
    # a circle drawn in the original frame stays a circle (the mask area keeps its size)
    h, w = 64, 128
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2 - 20) ** 2 <= 15 ** 2).astype(np.uint8)
    mask = torch.from_numpy(processing.resize_mask(disc, 96)).float()[None, None]
    _, rotated = warp(mask.repeat(64, 3, 1, 1), mask.repeat(64, 1, 1, 1), theta)
    assert rotated.sum(dim=(1, 2, 3)).std() / mask.sum() < 0.03


def test_augment_config_refuses_bad_values():
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(rotate_p=1.5)
    with pytest.raises(ValueError, match="crop_side"):
        AugmentConfig(crop_side=(0.0, 1.0))
    with pytest.raises(ValueError, match="zoom"):
        AugmentConfig(zoom=(0.5, 1.0))


def test_no_augmentation_is_the_identity_and_spec_normalization():
    masks = _blobs(2, 16)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    x, y = prepare_batch(images, masks, None)
    expected = np.stack([processing.normalize(img.permute(1, 2, 0).numpy()) for img in images])
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    assert torch.equal(y, masks.float())
    theta = random_affine(3, AugmentConfig.none())
    x2, y2 = warp(images.float()[:1].repeat(3, 1, 1, 1), masks.float()[:1].repeat(3, 1, 1, 1), theta)
    torch.testing.assert_close(x2[0], images.float()[0], atol=1e-3, rtol=0)


def test_zoom_and_crop_probabilities_cannot_exceed_one():
    with pytest.raises(ValueError, match="zoom_p \\+ crop_p"):
        AugmentConfig(zoom_p=0.5, crop_p=0.75)
