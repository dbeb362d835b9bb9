"""The folder layouts the paper's data sets are published in, read as images and their annotations.

:func:`scan` recognises, in this order:

``two-folders``
    ``ROOT/<images>/NAME.ext`` and ``ROOT/<masks>/NAME<suffix>.ext``. The image folder is the first of
    :data:`IMAGE_DIRS` present (``images``: Kvasir-SEG, ISIC-2017, CVC-ColonDB and CVC-ClinicDB as
    redistributed with PraNet; ``CXR_png``: the Shenzhen and Montgomery chest X-rays; ``Original``: CVC-ClinicDB),
    the mask folder the first of :data:`MASK_DIRS` (``masks``, ``mask``, ``Ground Truth``, ``GroundTruth``;
    letter case ignored). A mask pairs with the image of the same base name, also after one of
    :data:`MASK_SUFFIXES` is taken off (``CHNCXR_0001_0_mask.png`` is the mask of ``CHNCXR_0001_0.png``;
    ``ISIC_0000000_segmentation.png`` that of ``ISIC_0000000.jpg``), or with an expert tag (below).
``expert-tree``
    RIM-ONE: masks named after an expert anywhere under ``ROOT`` (release 1: ``Im001-exp1.bmp`` ...
    ``Im001-exp5.bmp``; release 3: ``Expert1_masks/N-10-R-1-Disc-exp1.png`` and
    ``Average_masks/N-10-R-Disc-Avg.png``), images being the other files (``Stereo Images/N-10-R.jpg``).
    Files pair within their top-level folder (``Healthy``, ``Glaucoma and suspects``, ``Normal``, ``Deep``
    ...); when a base name occurs in two such folders every name is prefixed with its folder
    (``Deep_Im001``). Optic-cup masks (``-Cup-``) are left out: the task is the optic disc. An image in a
    folder whose name contains ``stereo`` is a stereo pair whose left half is annotated
    (:attr:`~banet.data.pairs.Pair.stereo`).
``prefixed``
    CVC-ColonDB as first published: ``ROOT/N.bmp`` (or any image extension) with its polyp mask
    ``ROOT/pN.bmp``; ``sN`` (non-informative region) and ``cN`` (polyp contour) files are ignored.
``plain``
    Any other folder: its images, without masks (calibration data, client input).

Each image's annotations are ``{label: path}``: label ``""`` for a data set's one mask, ``"exp1"``,
``"exp2"`` ... for experts, ``"avg"`` for a published average. How several are combined is the
caller's choice (:mod:`banet.data.annotations`). Only file names are read here, never pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from banet.data.errors import DatasetError
from banet.spec import DICOM_SUFFIXES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", *DICOM_SUFFIXES)
"""Image (and mask) files of a data set; ``.dcm``/``.dicom``: DICOM images, and DICOM SEG masks (banet.data.annotations)."""
IMAGE_DIRS = ("images", "CXR_png", "Original")
MASK_DIRS = ("masks", "mask", "Ground Truth", "GroundTruth")
MASK_SUFFIXES = ("_mask", "-mask", "_segmentation", "_gt")
LAYOUTS = ("two-folders", "expert-tree", "prefixed", "plain")

_EXPERT = re.compile(r"^(?P<stem>.+?)(?:-\d+)?(?:-(?P<target>disc|cup))?[-_](?:exp(?P<expert>\d+)|(?P<avg>avg))$",
                     re.IGNORECASE)
_CVC_IMAGE = re.compile(r"^\d+$")
_CVC_MASK = re.compile(r"^p(\d+)$", re.IGNORECASE)
_CVC_OTHER = re.compile(r"^[sc]\d+$", re.IGNORECASE)
TARGET = "disc"
"""RIM-ONE masks of this structure are kept (release 3 also annotates the optic cup)."""


@dataclass(frozen=True)
class Scan:
    """What :func:`scan` found: the layout, ``name -> image``, ``name -> {label: mask}``.

    ``has_masks`` is False for a plain folder and for an image folder without a mask folder.
    ``stereo`` holds the names whose image is a stereo pair (annotated on its left half).
    """

    layout: str
    images: dict[str, Path]
    annotations: dict[str, dict[str, Path]]
    has_masks: bool
    stereo: frozenset[str] = field(default=frozenset())


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def images_in(folder: Path) -> dict[str, Path]:
    """``stem -> path`` for the image files directly in ``folder`` (two with one stem: an error naming both)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if is_image_file(path):
            if path.stem in found:
                raise DatasetError(f"two files share the base name {path.stem!r}: {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


def expert_tag(stem: str) -> tuple[str, str, str | None] | None:
    """``(image stem, label, structure)`` when ``stem`` names an expert's mask, else None.

    ``"Im001-exp2"`` -> ``("Im001", "exp2", None)``; ``"N-10-R-1-Disc-exp1"`` -> ``("N-10-R", "exp1", "disc")``;
    ``"N-10-R-Disc-Avg"`` -> ``("N-10-R", "avg", "disc")``.
    """
    match = _EXPERT.match(stem)
    if match is None:
        return None
    label = f"exp{int(match['expert'])}" if match["expert"] else "avg"
    target = match["target"].lower() if match["target"] else None
    return match["stem"], label, target


def _child_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    children = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def _add(annotations: dict[str, dict[str, Path]], name: str, label: str, path: Path) -> None:
    labels = annotations.setdefault(name, {})
    if label in labels:
        raise DatasetError(f"two masks for image {name!r}{f' by {label}' if label else ''}: {labels[label]} and {path}")
    labels[label] = path


def _mask_name(stem: str, images: dict[str, Path]) -> tuple[str, str] | None:
    """``(image name, label)`` for a mask file's stem; None for a mask of another structure."""
    if stem in images:
        return stem, ""
    tag = expert_tag(stem)
    if tag is not None and tag[0] in images:
        return (tag[0], tag[1]) if tag[2] in (None, TARGET) else None
    for suffix in MASK_SUFFIXES:
        if stem.lower().endswith(suffix) and stem[: -len(suffix)] in images:
            return stem[: -len(suffix)], ""
    if tag is not None:  # an expert mask whose image is missing: reported as unpaired under its image name
        return (tag[0], tag[1]) if tag[2] in (None, TARGET) else None
    return stem, ""


def _two_folders(root: Path, image_dir: Path) -> Scan:
    images = images_in(image_dir)
    mask_dir = _child_dir(root, MASK_DIRS)
    annotations: dict[str, dict[str, Path]] = {}
    if mask_dir is not None:
        for path in sorted(mask_dir.iterdir()):
            if is_image_file(path):
                named = _mask_name(path.stem, images)
                if named is not None:
                    _add(annotations, named[0], named[1], path)
    return Scan("two-folders", images, annotations, has_masks=mask_dir is not None)


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if is_image_file(p) and not any(
        part.startswith(".") for part in p.relative_to(root).parts))


def _expert_tree(root: Path, files: list[Path]) -> Scan:
    def group(path: Path) -> str:
        parts = path.relative_to(root).parts
        return parts[0] if len(parts) > 1 else ""

    images: dict[tuple[str, str], Path] = {}
    masks: list[tuple[tuple[str, str], str, Path]] = []
    for path in files:
        tag = expert_tag(path.stem)
        in_mask_folder = any("mask" in part.lower() for part in path.relative_to(root).parts[:-1])
        if tag is not None:
            if tag[2] in (None, TARGET):
                masks.append(((group(path), tag[0]), tag[1], path))
        elif in_mask_folder:  # a mask without an expert tag: the image's one annotation
            masks.append(((group(path), path.stem), "", path))
        else:
            key = (group(path), path.stem)
            if key in images:
                raise DatasetError(f"two images share the base name {path.stem!r}: {images[key]} and {path}")
            images[key] = path
    keys = set(images) | {key for key, _, _ in masks}
    stems = [stem for _, stem in keys]
    qualify = len(stems) != len(set(stems))

    def name(key: tuple[str, str]) -> str:
        folder, stem = key
        return f"{folder.replace(' ', '_')}_{stem}" if qualify and folder else stem

    annotations: dict[str, dict[str, Path]] = {}
    for key, label, path in masks:
        _add(annotations, name(key), label, path)
    named = {name(key): path for key, path in images.items()}
    stereo = frozenset(n for n, p in named.items()
                       if any("stereo" in part.lower() for part in p.relative_to(root).parts[:-1]))
    return Scan("expert-tree", dict(sorted(named.items())), annotations, has_masks=True, stereo=stereo)


def _prefixed(root: Path, files: dict[str, Path]) -> Scan | None:
    masks = {m[1]: path for stem, path in files.items() if (m := _CVC_MASK.match(stem))}
    if not masks or not any(n in files for n in masks):
        return None
    images = {stem: path for stem, path in files.items()
              if not (_CVC_MASK.match(stem) or _CVC_OTHER.match(stem))}
    unexpected = sorted(stem for stem in images if not _CVC_IMAGE.match(stem))
    if unexpected:
        raise DatasetError(f"{root} looks like CVC-ColonDB (N.ext images, pN.ext masks) but also holds "
                           f"{[str(images[s]) for s in unexpected[:5]]}")
    return Scan("prefixed", images, {n: {"": p} for n, p in masks.items()}, has_masks=True)


def scan(root: str | Path) -> Scan:
    """Recognise the layout of ``root`` (see the module docstring) and list its images and masks."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    image_dir = _child_dir(root, IMAGE_DIRS)
    if image_dir is not None:
        return _two_folders(root, image_dir)
    flat = images_in(root)
    prefixed = _prefixed(root, flat)
    if prefixed is not None:
        return prefixed
    files = _files_under(root)
    if any(expert_tag(p.stem) is not None for p in files):
        return _expert_tree(root, files)
    return Scan("plain", flat, {}, has_masks=False)
