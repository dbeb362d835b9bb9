"""The paper's metrics (eq. 13): AC, DI, JA, SE, SP from pixel counts, numpy only.

Empty masks have a defined value instead of NaN: when a ratio's denominator is zero the
prediction made no error of that kind, so the score is 1 (e.g. an empty prediction of an empty
ground truth has DI = JA = SE = 1; an all-foreground image has SP = 1). The authors' code scores
an empty prediction of an empty mask 0 and leaves other 0/0 cases NaN; Kvasir-SEG and ISIC-2017
have no empty or all-foreground mask, so the conventions agree there (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRIC_NAMES = ("AC", "DI", "JA", "SE", "SP")
PAPER_SCORE_SIZE = 256
"""The resolution at which the paper's tables are scored: the authors' ``batch_sores`` compares the network's
output with the label both resized to 256x256 (experiment/main.py). :func:`banet.evaluate.evaluate` scores at
this size (``model_paper``) beside each image's original size (``model``)."""


@dataclass
class Confusion:
    """Pixel counts of one image or of a whole set."""

    tp: int = 0
    tn: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.tn + other.tn, self.fp + other.fp, self.fn + other.fn)


def confusion(pred: np.ndarray, target: np.ndarray) -> Confusion:
    """Count TP/TN/FP/FN between two same-shape masks (anything > 0 is foreground)."""
    pred = np.asarray(pred) > 0
    target = np.asarray(target) > 0
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    tp = int(np.count_nonzero(pred & target))
    fp = int(np.count_nonzero(pred & ~target))
    fn = int(np.count_nonzero(~pred & target))
    return Confusion(tp, pred.size - tp - fp - fn, fp, fn)


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def scores(c: Confusion) -> dict[str, float]:
    """AC, DI, JA, SE, SP of a confusion count (paper eq. 13)."""
    return {
        "AC": _ratio(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn),
        "DI": _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        "JA": _ratio(c.tp, c.tp + c.fp + c.fn),
        "SE": _ratio(c.tp, c.tp + c.fn),
        "SP": _ratio(c.tn, c.tn + c.fp),
    }


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard index of two masks (1.0 when both are empty)."""
    return scores(confusion(a, b))["JA"]


class MetricAccumulator:
    """Collects per-image confusions; reports the mean over images (the paper's averaged
    metrics) and the aggregate over all pixels."""

    def __init__(self) -> None:
        self.per_image: list[dict[str, float]] = []
        self.total = Confusion()

    def update(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        c = confusion(pred, target)
        self.total = self.total + c
        result = scores(c)
        self.per_image.append(result)
        return result

    def __len__(self) -> int:
        return len(self.per_image)

    def compute(self) -> dict[str, dict[str, float]]:
        if not self.per_image:
            raise ValueError("no images were scored")
        mean = {k: float(np.mean([s[k] for s in self.per_image])) for k in METRIC_NAMES}
        return {"mean": mean, "aggregate": scores(self.total), "images": len(self.per_image)}
