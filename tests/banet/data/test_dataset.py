"""Folder datasets: pairing, splits, format conversion, and clear errors for bad files."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from banet.data.dataset import SegmentationDataset, load_pair, load_split
from banet.data.pairs import DatasetError, Pair, find_pairs


def _write(root, name, image_mode="RGB", size=(40, 30), mask_mode="L", image_ext=".png", mask_ext=".png"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = (10, 120, 40)
    img = Image.fromarray(rgb).convert(image_mode)
    img.save(root / "images" / f"{name}{image_ext}")
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 200  # foreground is > 127, not == 255
    mask[0, 0] = 100  # below the threshold: background
    Image.fromarray(mask).convert(mask_mode).save(root / "masks" / f"{name}{mask_ext}")


def test_grayscale_rgba_and_rgb_masks_become_rgb_and_binary(tmp_path):
    _write(tmp_path, "gray", image_mode="L")
    _write(tmp_path, "rgba", image_mode="RGBA", mask_mode="RGB", image_ext=".png", mask_ext=".bmp")
    _write(tmp_path, "jpeg", image_ext=".jpg", mask_ext=".png")
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["gray", "jpeg", "rgba"]
    for pair in pairs:
        image, mask = load_pair(pair, 40)
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8
        assert mask.dtype == bool
        # the centre square (value 200 > 127) is foreground, the rest background
        assert mask[20, 20] and not mask[0, 0] and not mask[2, 38]
    gray = load_pair(pairs[0], 40)[0]
    assert np.array_equal(gray[..., 0], gray[..., 1])  # grayscale replicated to 3 channels


def test_unpaired_files_are_named_or_skipped(tmp_path):
    _write(tmp_path, "a")
    _write(tmp_path, "b")
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b\.png.*skip"):
        find_pairs(tmp_path)
    assert [p.name for p in find_pairs(tmp_path, skip_unpaired=True)] == ["a"]


def test_broken_image_is_named_before_training_or_skipped(tmp_path):
    _write(tmp_path, "good")
    _write(tmp_path, "bad")
    data = (tmp_path / "images" / "bad.png").read_bytes()
    (tmp_path / "images" / "bad.png").write_bytes(data[: len(data) // 2])  # truncated
    pairs = find_pairs(tmp_path)
    with pytest.raises(DatasetError, match=r"bad\.png.*--skip-broken"):
        SegmentationDataset(pairs, 32)
    ds = SegmentationDataset(pairs, 32, skip_broken=True)
    assert [p.name for p in ds.pairs] == ["good"] and len(ds) == 1


def test_mask_of_another_size_is_named(tmp_path):
    _write(tmp_path, "x")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "masks" / "x.png")
    with pytest.raises(DatasetError, match=r"x\.png: mask is 10x10 but its image .* is 40x30"):
        load_pair(find_pairs(tmp_path)[0], 32)


def test_split_by_csv_and_by_prefix(tmp_path):
    csv_root = tmp_path / "csv"
    for name in ("p", "q", "r"):
        _write(csv_root, name)
    with open(csv_root / "splits_mine.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "my_split"])
        w.writerows([("p.png", "train"), ("q.png", "val"), ("r.png", "train")])
    assert [p.name for p in find_pairs(csv_root, "train")] == ["p", "r"]
    ds = load_split(csv_root, "val", 16)
    assert [p.name for p in ds.pairs] == ["q"] and ds.images.shape == (1, 3, 16, 16)
    prefix_root = tmp_path / "prefix"
    for name in ("train_1", "train_2", "val_1"):
        _write(prefix_root, name)
    assert [p.name for p in find_pairs(prefix_root, "train")] == ["train_1", "train_2"]
    with pytest.raises(DatasetError, match="test_"):
        find_pairs(prefix_root, "test")


def test_split_of_a_plain_image_folder_is_not_ignored(tmp_path):
    # e.g. --calib-data DATA/images:train: the split used to be dropped silently, every image
    # (test ones included) came back
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("train_1", "train_2", "test_1"):
        Image.new("RGB", (8, 8)).save(flat / f"{name}.png")
    assert [p.name for p in find_pairs(flat, "train")] == ["train_1", "train_2"]
    assert [p.name for p in find_pairs(flat)] == ["test_1", "train_1", "train_2"]
    with pytest.raises(DatasetError, match=r"val_\*"):
        find_pairs(flat, "val")


def test_pair_without_mask_is_refused(tmp_path):
    _write(tmp_path, "a")
    with pytest.raises(DatasetError, match="no ground-truth mask"):
        load_pair(Pair("a", tmp_path / "images" / "a.png", None), 16)


def test_dataset_keeps_each_original_aspect_ratio(tmp_path):
    # augmentation rotates in the original image's frame, so the squashed cache must remember it
    _write(tmp_path, "wide", size=(40, 20))
    _write(tmp_path, "tall", size=(15, 30))
    ds = SegmentationDataset(find_pairs(tmp_path), 16, workers=1)
    assert [p.name for p in ds.pairs] == ["tall", "wide"]
    assert ds.aspect.tolist() == [0.5, 2.0] and ds.images.shape == (2, 3, 16, 16)
