"""references.training.precision_side_by_side: the split subset, the mask agreement and the verdict."""

import csv

import numpy as np
import pytest

from references.training import precision_side_by_side as sbs


def _history(curve):
    return [{"val": {"mean": {"JA": ja}}, "train_seconds": 2.0, "step": 2 * (i + 1)}
            for i, ja in enumerate(curve)]


def test_subset_split_keeps_the_first_train_names_and_all_val(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    rows = [("a.jpg", "train"), ("b.jpg", "train"), ("c.jpg", "train"), ("v.jpg", "val"), ("t.jpg", "test")]
    with open(root / "splits_x.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("name", "x_split"), *rows])
    out = sbs.subset_split(root, 2, tmp_path / "split.csv")
    with open(out, newline="") as fh:
        assert list(csv.reader(fh)) == [["name", "split"], ["a", "train"], ["b", "train"], ["v", "val"]]
    with pytest.raises(SystemExit, match="exceeds the 3 train images"):
        sbs.subset_split(root, 4, tmp_path / "split2.csv")


def test_mean_jaccard_per_image_with_empty_pairs_as_one():
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, :2], b[0, :1] = True, True  # 4 of 8 pixels agree
    assert sbs.mean_jaccard(a, b) == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.parametrize("bf16_curve, agree_bf16, within", [
    ([0.30, 0.50], 0.90, True),    # gaps 0.00/0.00 vs seed gaps 0.05/0.05, masks agree better than the seeds
    ([0.30, 0.40], 0.90, False),   # epoch 2 gap 0.10 exceeds the seeds' 0.05
    ([0.30, 0.50], 0.70, False),   # masks agree less than the two fp32 seeds do
])
def test_the_verdict_needs_both_the_curve_and_the_masks_within_noise(bf16_curve, agree_bf16, within):
    histories = {"fp32": _history([0.30, 0.50]), "bf16": _history(bf16_curve), "fp32_seed1": _history([0.35, 0.45])}
    s = sbs.summarize(histories, {"fp32 vs bf16": agree_bf16, "fp32 vs fp32_seed1": 0.80})
    assert s["bf16_within_noise"] is within
    assert s["seconds_per_step_median"]["fp32"] == pytest.approx(1.0)
