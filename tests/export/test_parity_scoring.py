"""The gate's scoring rule on hand-made logits (no model needed): non-finite logits always fail."""

from __future__ import annotations

import numpy as np
import pytest

from export import parity

SIZE = 32


def _data(count: int) -> parity.ParitySet:
    images = tuple(np.full((SIZE, SIZE, 3), 40 * i, dtype=np.uint8) for i in range(count))
    return parity.ParitySet("hand-made", tuple(f"img{i}" for i in range(count)), images, None)


def test_nan_logits_on_a_later_image_fail_the_gate():
    data = _data(3)

    def background(batch: np.ndarray) -> np.ndarray:  # the reference: confident background everywhere
        return np.full((len(batch), 1, SIZE, SIZE), -10.0, dtype=np.float32)

    def nan_on_last(batch: np.ndarray) -> np.ndarray:  # NaN only on the last image of the set
        out = background(batch)
        out[-1] = np.nan
        return out

    ref = parity.reference(background, data, image_size=SIZE, batch_size=8)
    result = parity.score(nan_on_last, data, ref, artifact="nan", precision="fp16", image_size=SIZE)
    assert np.isnan(result.max_abs_logit_diff)
    assert not result.passed and "non-finite logits" in result.reasons


def test_masks_must_cover_every_image():
    # zip() used to drop the images without a mask: a backend that lost one was scored on the rest
    data = _data(3)

    def background(batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 1, SIZE, SIZE), -10.0, dtype=np.float32)

    ref = parity.reference(background, data, image_size=SIZE)
    masks = [np.zeros((SIZE, SIZE), np.uint8)] * 2
    with pytest.raises(ValueError, match="2 masks for 3 images"):
        parity.score_masks(masks, data, ref, artifact="short", precision="fp32")


def test_one_lost_mask_fails_the_gate_even_with_a_high_mean():
    """50 images: 49 identical, one whose mask is lost (agreement 0.0): mean 0.98, which passed
    the INT8 gate when only the mean was checked."""
    data = _data(50)

    def half_foreground(batch: np.ndarray) -> np.ndarray:
        out = np.full((len(batch), 1, SIZE, SIZE), -10.0, dtype=np.float32)
        out[:, :, : SIZE // 2] = 10.0
        return out

    ref = parity.reference(half_foreground, data, image_size=SIZE)
    masks = [m.copy() for m in ref.masks]
    masks[17][:] = 0  # this image's lesion is gone
    result = parity.score_masks(masks, data, ref, artifact="lost", precision="int8")
    assert result.mean_agreement == pytest.approx(0.98) and result.mean_agreement >= result.gate.min_agreement
    assert result.worst_agreement == 0.0 and result.worst_image == "img17"
    assert not result.passed and any(r.startswith("worst image img17") for r in result.reasons), result.reasons
    relaxed = parity.Gate(min_agreement=0.98, max_ja_loss=0.5, min_worst_agreement=0.0)
    assert parity.score_masks(masks, data, ref, artifact="lost", precision="int8", gate=relaxed).passed
