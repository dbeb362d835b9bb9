"""The two real datasets load as they are: Kvasir-SEG (split CSV) and ISIC-2017 (name prefixes)."""

from __future__ import annotations

import numpy as np
import pytest

from banet.data.dataset import SegmentationDataset
from banet.data.pairs import find_pairs

pytestmark = pytest.mark.needs_data


@pytest.mark.parametrize("split, count", [("train", 800), ("val", 100), ("test", 100)])
def test_kvasir_split_counts(data_root, split, count):
    pairs = find_pairs(data_root / "kvasir-seg", split)
    assert len(pairs) == count
    assert all(p.image.stem == p.mask.stem for p in pairs)


@pytest.mark.parametrize("split, count", [("train", 2000), ("val", 150), ("test", 600)])
def test_isic_prefix_counts(data_root, split, count):
    pairs = find_pairs(data_root / "isic2017", split)
    assert len(pairs) == count
    assert all(p.name.startswith(f"{split}_") for p in pairs)


def test_kvasir_splits_are_disjoint(data_root):
    names = [{p.name for p in find_pairs(data_root / "kvasir-seg", s)} for s in ("train", "val", "test")]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])


@pytest.mark.parametrize("folder", ["kvasir-seg", "isic2017"])
def test_real_pairs_decode_to_rgb_and_binary_masks(data_root, folder):
    pairs = find_pairs(data_root / folder, "val")[:4]
    ds = SegmentationDataset(pairs, 64)
    image, mask = ds[0]
    assert image.shape == (3, 64, 64) and image.dtype.is_floating_point is False
    assert mask.shape == (1, 64, 64)
    values = np.unique(ds.masks.numpy())
    assert set(values.tolist()) <= {0, 1}
    # every lesion image has some foreground and some background
    fg = ds.masks.float().mean(dim=(1, 2, 3))
    assert bool(((fg > 0) & (fg < 1)).all()), fg
