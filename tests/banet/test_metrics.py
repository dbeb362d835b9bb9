"""Paper metrics (eq. 13) against hand-counted masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from banet.metrics import METRIC_NAMES, Confusion, MetricAccumulator, confusion, jaccard, scores

# 3x4 masks: TP at (0,0),(0,1); FP at (1,0); FN at (0,2),(2,3); the other 7 pixels TN
PRED = np.array([[1, 1, 0, 0],
                 [1, 0, 0, 0],
                 [0, 0, 0, 0]], dtype=np.uint8) * 255
TARGET = np.array([[1, 1, 1, 0],
                   [0, 0, 0, 0],
                   [0, 0, 0, 1]], dtype=bool)


def test_confusion_by_hand():
    assert confusion(PRED, TARGET) == Confusion(tp=2, tn=7, fp=1, fn=2)


def test_scores_by_hand():
    s = scores(confusion(PRED, TARGET))
    assert s["AC"] == pytest.approx(9 / 12)
    assert s["DI"] == pytest.approx(4 / 7)   # 2TP / (2TP + FP + FN)
    assert s["JA"] == pytest.approx(2 / 5)   # TP / (TP + FP + FN)
    assert s["SE"] == pytest.approx(2 / 4)
    assert s["SP"] == pytest.approx(7 / 8)
    assert s["DI"] == pytest.approx(2 * s["JA"] / (1 + s["JA"]))


@pytest.mark.parametrize("pred, target, want", [
    (np.zeros((4, 4)), np.zeros((4, 4)), {"AC": 1, "DI": 1, "JA": 1, "SE": 1, "SP": 1}),
    (np.zeros((4, 4)), np.eye(4), {"AC": 12 / 16, "DI": 0, "JA": 0, "SE": 0, "SP": 1}),
    (np.eye(4), np.zeros((4, 4)), {"AC": 12 / 16, "DI": 0, "JA": 0, "SE": 1, "SP": 12 / 16}),
    (np.ones((4, 4)), np.ones((4, 4)), {"AC": 1, "DI": 1, "JA": 1, "SE": 1, "SP": 1}),
])
def test_empty_and_full_masks_have_defined_scores(pred, target, want):
    s = scores(confusion(pred, target))
    assert not any(math.isnan(v) for v in s.values())
    assert s == pytest.approx(want)


def test_jaccard_and_shape_mismatch():
    assert jaccard(PRED, TARGET) == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"\(3, 4\) and target \(4, 3\)"):
        confusion(PRED, TARGET.T)


def test_accumulator_mean_over_images_and_aggregate_over_pixels():
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="no images"):
        acc.compute()
    assert acc.update(PRED, TARGET)["JA"] == pytest.approx(0.4)
    acc.update(np.zeros((2, 2)), np.zeros((2, 2)))  # an empty, correctly predicted image: JA 1
    result = acc.compute()
    assert len(acc) == 2 and result["images"] == 2
    assert set(result["mean"]) == set(METRIC_NAMES)
    assert result["mean"]["JA"] == pytest.approx((0.4 + 1.0) / 2)
    assert result["aggregate"]["JA"] == pytest.approx(2 / 5)  # the empty image adds only TN
    assert result["aggregate"]["AC"] == pytest.approx((9 + 4) / 16)
