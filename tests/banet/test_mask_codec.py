"""banet.mask_codec: exact round trips, refusals of malformed bytes, against an independent run-length reference."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from banet import mask_codec, spec


def _masks():
    rng = np.random.default_rng(0)
    yield np.zeros((7, 9), np.uint8)                                  # empty
    yield np.full((7, 9), 255, np.uint8)                              # full: the first run (background) is 0
    yield (rng.random((33, 47)) > 0.5).astype(np.uint8) * 255         # noise: many runs
    yield np.asarray([[255]], np.uint8)                               # 1x1 foreground
    yield np.asarray([[0]], np.uint8)
    disc = np.hypot(*np.mgrid[-40:40, -60:60]) < 30
    yield disc                                                        # bool input
    yield np.where(disc, 1, 0).astype(np.uint8)                       # label 1 counts as foreground


@pytest.mark.parametrize("mask", list(_masks()), ids=["empty", "full", "noise", "1x1-fg", "1x1-bg", "bool", "labels"])
def test_round_trip_is_exact(mask):
    data = mask_codec.encode_mask(mask)
    back = mask_codec.decode_mask(data)
    want = np.where(np.asarray(mask) > 0, spec.MASK_FOREGROUND_VALUE, 0).astype(np.uint8)
    assert back.dtype == np.uint8 and back.shape == want.shape
    np.testing.assert_array_equal(back, want)


def test_layout_is_the_documented_run_lengths():
    """An independent reading of the layout: magic, zlib(height, width, runs background-first)."""
    mask = np.asarray([[255, 255, 0], [0, 0, 255]], np.uint8)
    data = mask_codec.encode_mask(mask)
    assert data[:4] == b"BMR1"
    values = np.frombuffer(zlib.decompress(data[4:]), "<u4").tolist()
    assert values == [2, 3, 0, 2, 3, 1]  # 0 background, 2 fg, 3 bg, 1 fg


def test_a_frame_is_a_few_kilobytes():
    """A 1920x1080 disc: far under 5 % of the 2 x H x W bytes of MASK + BOUNDARY."""
    mask = np.hypot(*np.mgrid[-540:540, -960:960]) < 300
    assert len(mask_codec.encode_mask(mask)) < 0.05 * 2 * mask.size / 100  # < 0.05 %


@pytest.mark.parametrize("data, reason", [
    (b"", "not a rle-u32-zlib1 mask"),
    (b"\x89PNG\r\n\x1a\n....", "not a rle-u32-zlib1 mask"),
    (b"BMR1" + b"garbage", "corrupt"),
    (b"BMR1" + zlib.compress(np.asarray([2, 2, 1, 1], "<u4").tobytes()), "cover 2 pixels, not 2x2"),
    (b"BMR1" + zlib.compress(np.asarray([100000, 100000, 0], "<u4").tobytes()), "over the limit"),
    (b"BMR1" + zlib.compress(b"abc"), "not a header"),
    (mask_codec.encode_mask(np.zeros((4, 4), np.uint8))[:-3], "truncated|corrupt"),
], ids=["empty", "png", "not-zlib", "short-runs", "huge", "odd-length", "truncated"])
def test_malformed_bytes_are_refused_by_name(data, reason):
    with pytest.raises(mask_codec.MaskCodecError, match=reason):
        mask_codec.decode_mask(data)


def test_inflating_is_bounded_before_allocation():
    bomb = b"BMR1" + zlib.compress(np.asarray([10, 10], "<u4").tobytes() + bytes(50_000_000), 9)
    with pytest.raises(mask_codec.MaskCodecError, match="larger than"):
        mask_codec.decode_mask(bomb, max_pixels=1000)
