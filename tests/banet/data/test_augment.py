"""The paper's augmentation keeps image, mask and edge target aligned through every transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from banet import processing
from banet.data.augment import AugmentConfig, normalize_batch, prepare_batch, random_affine, warp
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
    cfg = AugmentConfig(hflip=True, vflip=True, rotate_degrees=0.0, crop_scale=(1.0, 1.0))
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


def test_affine_parameters_stay_in_the_paper_ranges():
    cfg = AugmentConfig()
    theta = random_affine(2000, cfg, generator=torch.Generator().manual_seed(2))
    linear = theta[:, :, :2]
    side_sq = linear.det().abs()  # = crop side^2 = crop area fraction
    assert side_sq.min() >= 0.5 - 1e-5 and side_sq.max() <= 1.0 + 1e-5
    # rotation angle from the first column, flips removed by taking absolute values
    angle = torch.rad2deg(torch.atan2(linear[:, 1, 0].abs(), linear[:, 0, 0].abs()))
    assert angle.max() <= 10.0 + 1e-3 and angle.max() > 8.0
    # the crop stays inside the image: |centre| + half-extent <= 1 along each axis, before rotation
    side = side_sq.sqrt()
    assert (theta[:, :, 2].abs() <= (1 - side[:, None]) + 1e-5).all()


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
