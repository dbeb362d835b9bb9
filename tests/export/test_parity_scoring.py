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
