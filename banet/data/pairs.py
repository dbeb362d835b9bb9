"""Find image/mask pairs on disk and select a split.

The folder layouts (``images/`` + ``masks/`` with the same base names; Shenzhen's ``CXR_png/`` + ``masks/``
with ``_mask`` names; RIM-ONE's per-expert masks; CVC-ColonDB's ``N`` / ``pN`` files; a plain folder of
images without masks) are recognised by :mod:`banet.data.layouts`; the split (a CSV file, file-name
prefixes, or a seeded random split where a data set publishes none) is chosen as
:mod:`banet.data.splits` says. A plain folder of images gives pairs without masks (calibration data,
client input); a split there selects by file-name prefix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from banet.data import layouts, splits
from banet.data.annotations import DEFAULT_EXPERTS, check_experts, choose
from banet.data.errors import DatasetError
from banet.data.layouts import IMAGE_EXTENSIONS
from banet.data.splits import SPLIT_SEED, SPLITS

__all__ = ["IMAGE_EXTENSIONS", "SPLITS", "DatasetError", "Pair", "find_pairs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One sample: its base name, image path and mask path (None when there is no ground truth).

    ``annotations``: every mask file that makes the ground truth when there are several (experts),
    combined by ``experts`` (:mod:`banet.data.annotations`); ``mask`` is then the first of them.
    ``stereo``: the image is a stereo pair annotated on its left half (RIM-ONE r3).
    Read the pixels with :func:`banet.data.annotations.read_pair`.
    """

    name: str
    image: Path
    mask: Path | None = None
    annotations: tuple[Path, ...] = ()
    experts: str = DEFAULT_EXPERTS
    stereo: bool = False


def _plain(root: Path, scan: layouts.Scan, split: str | None) -> list[Pair]:
    images = scan.images
    if not images:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
    if split is not None:  # a split is never ignored: without images/ it can only be a prefix
        images = {n: p for n, p in images.items() if n.startswith(f"{split}_")}
        if not images:
            raise DatasetError(f"no images named {split}_* in {root} (a plain image folder: no images/ "
                               f"subfolder, so no split file applies); drop the :{split} or point at the dataset root")
    return [Pair(name, path) for name, path in images.items()]


def _unpaired(root: Path, scan: layouts.Scan, images: dict, annotations: dict, skip: bool) -> None:
    unpaired = sorted(set(images) ^ set(annotations)) if scan.has_masks else sorted(images)
    if not unpaired:
        return
    described = [str(images[n]) if n in images else ", ".join(map(str, annotations[n].values())) for n in unpaired]
    message = (f"{len(unpaired)} unpaired files in {root} ({scan.layout} layout; image without mask or mask "
               f"without image): {described[:10]}")
    if not skip:
        raise DatasetError(message + "; pass skip_unpaired / --skip-unpaired to leave them out")
    log.warning("%s; skipped", message)


def find_pairs(
    root: str | Path,
    split: str | None = None,
    *,
    split_file: str | Path | None = None,
    skip_unpaired: bool = False,
    experts: str = DEFAULT_EXPERTS,
    split_seed: int = SPLIT_SEED,
) -> list[Pair]:
    """List the samples of ``root`` (optionally one ``split``), sorted by name.

    An image without a mask (or a mask without an image) raises :class:`DatasetError` naming
    the files, unless ``skip_unpaired`` (then each is logged and left out). ``experts`` chooses how
    several masks of one image combine (:mod:`banet.data.annotations`); ``split_seed`` seeds the random
    split of a data set that has neither a split file nor split prefixes (:mod:`banet.data.splits`).
    """
    root = Path(root)
    check_experts(experts)
    scan = layouts.scan(root)
    if scan.layout == "plain":
        return _plain(root, scan, split)
    images, annotations = scan.images, scan.annotations
    names = sorted(set(images) | set(annotations))
    if split is not None:
        csv_path = splits.split_csv(root, split_file)
        if csv_path is not None:
            wanted = splits.names_in_split(csv_path, split)
            missing = [n for n in wanted if n not in images]
            if missing:
                raise DatasetError(f"{csv_path} names {len(missing)} images missing from {root}: {missing[:5]}")
            images = {n: images[n] for n in wanted}
            annotations = {n: annotations[n] for n in wanted if n in annotations}
        elif splits.has_prefixes(names):
            prefix = f"{split}_"
            images = {n: p for n, p in images.items() if n.startswith(prefix)}
            annotations = {n: a for n, a in annotations.items() if n.startswith(prefix)}
            if not images:
                raise DatasetError(f"no images named {prefix}* in {root} and no splits*.csv there")
        else:
            if split not in SPLITS:
                raise DatasetError(f"split must be one of {SPLITS} for a seeded split of {root}, got {split!r}")
            _unpaired(root, scan, images, annotations, skip_unpaired)
            paired = sorted(set(images) & set(annotations))
            assigned = splits.seeded_split(paired, seed=split_seed)
            log.info("%s has no splits*.csv and no train_/val_/test_ names: seeded random split (seed %d, "
                     "%s of %d paired images; pin it with python -m banet.data.splits)", root, split_seed,
                     "/".join(str(sum(1 for s in assigned.values() if s == k)) for k in SPLITS), len(paired))
            images = {n: images[n] for n in paired if assigned[n] == split}
            annotations = {n: annotations[n] for n in images}
            if not images:
                raise DatasetError(f"the seeded split of {root} ({len(paired)} paired images) leaves {split!r} empty")
    _unpaired(root, scan, images, annotations, skip_unpaired)
    pairs = []
    for name in sorted(set(images) & set(annotations)):
        chosen = choose(name, annotations[name], experts)
        pairs.append(Pair(name, images[name], chosen[0], chosen if len(chosen) > 1 else (), experts,
                          name in scan.stereo))
    return pairs
