"""Find image/mask pairs on disk and select a split.

Layouts:
- ``ROOT/images/NAME.ext`` + ``ROOT/masks/NAME.ext`` (same base name, any common image format);
  a split is chosen by a CSV file (``ROOT/splits*.csv`` or ``split_file``: a ``name`` column and a
  column whose name ends in ``split``) or, without one, by file-name prefix (``train_``, ``val_``,
  ``test_`` as in ISIC-2017).
- A plain folder of images (no ``images/`` subfolder): pairs without masks (calibration data,
  client input); a split there selects by file-name prefix.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder, split or pair is missing or inconsistent; the message names the files."""


@dataclass(frozen=True)
class Pair:
    """One sample: its base name, image path and mask path (None when there is no ground truth)."""

    name: str
    image: Path
    mask: Path | None = None


def _images_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            if path.stem in found:
                raise DatasetError(f"two files share the base name {path.stem!r}: {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


def _split_csv(root: Path, split_file: Path | None) -> Path | None:
    if split_file is not None:
        if not Path(split_file).is_file():
            raise DatasetError(f"split file not found: {split_file}")
        return Path(split_file)
    candidates = sorted(root.glob("splits*.csv"))
    return candidates[0] if candidates else None


def _names_in_split(csv_path: Path, split: str) -> list[str]:
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        split_cols = [c for c in columns if c.lower().endswith("split")]
        if "name" not in columns or not split_cols:
            raise DatasetError(f"{csv_path}: needs a 'name' column and a '*split' column, has {columns}")
        rows = list(reader)
    names = [Path(r["name"]).stem for r in rows if r[split_cols[0]] == split]
    if not names:
        known = sorted({r[split_cols[0]] for r in rows})
        raise DatasetError(f"{csv_path}: no rows in split {split!r} (splits present: {known})")
    return names


def find_pairs(
    root: str | Path,
    split: str | None = None,
    *,
    split_file: str | Path | None = None,
    skip_unpaired: bool = False,
) -> list[Pair]:
    """List the samples of ``root`` (optionally one ``split``), sorted by name.

    An image without a mask (or a mask without an image) raises :class:`DatasetError` naming
    the files, unless ``skip_unpaired`` (then each is logged and left out).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir():  # a plain folder of images, no ground truth
        images = _images_in(root)
        if not images:
            raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
        if split is not None:  # a split is never ignored: without images/ it can only be a prefix
            images = {n: p for n, p in images.items() if n.startswith(f"{split}_")}
            if not images:
                raise DatasetError(f"no images named {split}_* in {root} (a plain image folder: no images/ "
                                   f"subfolder, so no split file applies); drop the :{split} or point at the dataset root")
        return [Pair(name, path) for name, path in images.items()]
    images = _images_in(image_dir)
    masks = _images_in(mask_dir) if mask_dir.is_dir() else {}
    if split is not None:
        csv_path = _split_csv(root, Path(split_file) if split_file else None)
        if csv_path is not None:
            wanted = _names_in_split(csv_path, split)
            missing = [n for n in wanted if n not in images]
            if missing:
                raise DatasetError(f"{csv_path} names {len(missing)} images missing from {image_dir}: {missing[:5]}")
            images = {n: images[n] for n in wanted}
            masks = {n: masks[n] for n in wanted if n in masks}
        else:
            prefix = f"{split}_"
            images = {n: p for n, p in images.items() if n.startswith(prefix)}
            masks = {n: p for n, p in masks.items() if n.startswith(prefix)}
            if not images:
                raise DatasetError(f"no images named {prefix}* in {image_dir} and no splits*.csv in {root}")
    unpaired = sorted(set(images) ^ set(masks)) if mask_dir.is_dir() else sorted(images)
    if unpaired:
        described = [str(images.get(n) or masks.get(n)) for n in unpaired]
        message = f"{len(unpaired)} unpaired files in {root} (image without mask or mask without image): {described[:10]}"
        if not skip_unpaired:
            raise DatasetError(message + "; pass skip_unpaired / --skip-unpaired to leave them out")
        log.warning("%s; skipped", message)
    return [Pair(n, images[n], masks[n]) for n in sorted(set(images) & set(masks))]
