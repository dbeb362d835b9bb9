"""A synthetic lesion dataset: the real layout (images/ + masks/ + splits.csv), made in seconds.

Each image is a textured background with one lesion-like shape: a blob whose radius varies with
angle (a few random harmonics), a soft boundary (the lesion's colour fades in over a few pixels),
its own texture, and Gaussian pixel noise. The mask is the blob at ``radius`` (0/255 PNG). The demo
trains on it when no dataset is given; tests use it as a small real-format dataset.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from banet import processing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthConfig:
    count: int = 60
    size: int = 128
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 3:
            raise ValueError(f"count must be >= 3 (one image per split at least), got {self.count}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
        n_train, n_val, n_test = self.split_counts()
        if n_train < 1:
            raise ValueError(f"count {self.count} with val {self.val_fraction} and test {self.test_fraction} "
                             f"leaves no training image ({n_val} val + {n_test} test)")

    def split_counts(self) -> tuple[int, int, int]:
        """``(train, val, test)`` image counts; val and test get at least one image when asked for."""
        n_val = max(1, round(self.count * self.val_fraction)) if self.val_fraction else 0
        n_test = max(1, round(self.count * self.test_fraction)) if self.test_fraction else 0
        return self.count - n_val - n_test, n_val, n_test


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a ``cells`` x ``cells`` random grid upsampled bilinearly."""
    from PIL import Image

    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    up = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 255.0


def make_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One ``(size, size, 3)`` uint8 image and its ``(size, size)`` bool mask."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = rng.uniform(0.3, 0.7, size=2) * size
    radius = rng.uniform(0.12, 0.3) * size
    angle = np.arctan2(yy - cy, xx - cx)
    shape = np.ones_like(angle)
    for k in range(2, 6):  # lobes: a few random harmonics of the radius
        shape += rng.uniform(0, 0.12) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    dist = np.hypot(yy - cy, xx - cx) / (radius * shape)
    mask = dist <= 1.0
    softness = rng.uniform(0.04, 0.12)
    alpha = 1.0 / (1.0 + np.exp(np.clip((dist - 1.0) / softness, -50, 50)))  # soft boundary, 0.5 at the mask edge
    background = rng.uniform(120, 220, size=3)
    lesion = background * rng.uniform(0.35, 0.7, size=3)
    bg_tex = _smooth_noise(rng, size, 6)[..., None] - 0.5
    lesion_tex = _smooth_noise(rng, size, 12)[..., None] - 0.5
    image = (background + 60 * bg_tex) * (1 - alpha[..., None]) + (lesion + 50 * lesion_tex) * alpha[..., None]
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask


def write_dataset(out: str | Path, config: SynthConfig = SynthConfig(), *, force: bool = False) -> Path:
    """Write ``OUT/images/synth_NNNN.png``, ``OUT/masks/synth_NNNN.png`` and ``OUT/splits.csv``.

    ``splits.csv`` has columns ``name`` and ``split`` (train / val / test), the layout
    :func:`banet.data.pairs.find_pairs` reads. Refuses a non-empty ``out`` unless ``force``; with
    ``force`` the generator's own earlier ``synth_*.png`` files are removed first (other files stay).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; pass --force to write into it")
    if force:  # a larger earlier set would leave pairs that splits.csv no longer names
        for folder in (out / "images", out / "masks"):
            for stale in folder.glob("synth_*.png") if folder.is_dir() else ():
                stale.unlink()
    rng = np.random.default_rng(config.seed)
    n_train, n_val, n_test = config.split_counts()
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    rows = []
    for i, split in enumerate(splits):
        name = f"synth_{i:04d}"
        image, mask = make_sample(rng, config.size)
        processing.save_png(image, out / "images" / f"{name}.png")
        processing.save_png(mask.astype(np.uint8) * 255, out / "masks" / f"{name}.png")
        rows.append((f"{name}.png", split))
    with open(out / "splits.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "split"])
        writer.writerows(rows)
    log.info("wrote %d synthetic pairs to %s", len(rows), out)
    return out
