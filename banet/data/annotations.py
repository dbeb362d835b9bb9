"""Read a pair's pixels: the image, and its ground truth from one mask or several experts' masks.

Several annotations of one image (RIM-ONE: five experts in release 1, two and their average in
release 3) become one mask by the pair's ``experts`` choice (``--experts`` in the CLIs):

- ``majority`` (the default): a pixel is foreground when more than half of the experts mark it
  (3 of 5, 2 of 2 or 3); the published average mask, if any, is not one of the votes;
- ``union`` / ``intersection``: any / every expert;
- ``exp1``, ``exp2`` ...: that expert alone; ``avg``: the published average mask (RIM-ONE r3).

A pair of the ``stereo`` kind (RIM-ONE r3 stereo images) is cut to its left half, the annotated
one; a mask as wide as the whole stereo image is cut the same way. Numpy and :mod:`banet.processing`
only. Shapes: images ``(H, W, 3)`` uint8 RGB, masks ``(H, W)`` bool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from banet import processing
from banet.spec import DICOM_SUFFIXES
from banet.data.errors import DatasetError

COMBINE_RULES = ("majority", "union", "intersection")
DEFAULT_EXPERTS = "majority"
_ONE = re.compile(r"^(exp\d+|avg)$")


def check_experts(experts: str) -> str:
    """``experts`` if it is a known choice (:data:`COMBINE_RULES`, ``expN``, ``avg``); else ValueError."""
    if experts in COMBINE_RULES or _ONE.match(experts):
        return experts
    raise ValueError(f"experts must be one of {list(COMBINE_RULES)}, 'expN' (one expert) or 'avg', got {experts!r}")


def choose(name: str, labels: Mapping[str, Path], experts: str) -> tuple[Path, ...]:
    """The mask files of image ``name`` that ``experts`` combines (one file for ``expN``/``avg``)."""
    if set(labels) == {""}:
        return (labels[""],)
    if "" in labels:
        raise DatasetError(f"image {name!r} has a plain mask and expert masks: {sorted(map(str, labels.values()))}")
    if experts in COMBINE_RULES:
        votes = tuple(path for label, path in sorted(labels.items(), key=_expert_order) if label != "avg")
        if not votes:  # only a published average
            return (labels["avg"],)
        return votes
    if experts not in labels:
        raise DatasetError(f"image {name!r} has no {experts} mask (it has {sorted(labels)}): "
                           f"{sorted(map(str, labels.values()))}")
    return (labels[experts],)


def _expert_order(item: tuple[str, Path]) -> tuple[int, str]:
    label = item[0]
    return (int(label[3:]) if label.startswith("exp") else 10**6, label)


def combine(masks: Sequence[np.ndarray], rule: str) -> np.ndarray:
    """One ``(H, W)`` bool mask from several of the same shape by ``rule`` (:data:`COMBINE_RULES`)."""
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    if rule == "majority":
        return stack.sum(axis=0) * 2 > len(masks)
    if rule == "union":
        return stack.any(axis=0)
    if rule == "intersection":
        return stack.all(axis=0)
    raise ValueError(f"rule must be one of {COMBINE_RULES}, got {rule!r}")



def _dicom_image(path: Path) -> np.ndarray:
    """A single-frame DICOM image as displayed (:mod:`banet.dicom`), ``(H, W, 3)`` uint8."""
    from banet.dicom import read_dicom

    frames = read_dicom(path).frames
    if len(frames) != 1:
        raise DatasetError(f"{path}: {len(frames)} frames; a data set image must be one frame")
    return frames[0]


def _dicom_mask(path: Path) -> np.ndarray:
    """A one-segment, single-frame binary DICOM SEG as ``(H, W)`` bool (:func:`banet.dicom_seg.read_segmentation_masks`)."""
    from banet.dicom_seg import read_segmentation_masks

    try:
        masks = read_segmentation_masks(path)
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on what is not a SEG
        raise DatasetError(f"{path}: not a readable DICOM SEG ({type(err).__name__}: {err})") from None
    if len(masks) != 1:
        raise DatasetError(f"{path}: a SEG of {len(masks)} frames; a data set mask must be one frame of one segment")
    return masks[0]


def _decoded(load, path: Path):
    """``load(path)``; a DICOM file (by suffix) is read as an image or a SEG, its errors as DatasetError."""
    from banet.dicom import DicomError

    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        load = _dicom_image if load is processing.load_image else _dicom_mask
    try:
        return load(path)
    except (processing.ImageDecodeError, DicomError) as err:
        raise DatasetError(str(err)) from None


def read_image(pair) -> np.ndarray:
    """The pair's image as ``(H, W, 3)`` uint8 RGB (left half of a stereo pair)."""
    image = _decoded(processing.load_image, pair.image)
    return image[:, : image.shape[1] // 2] if pair.stereo else image


def read_mask(pair, *, image_width: int | None = None) -> np.ndarray:
    """The pair's ground truth as ``(H, W)`` bool, combined from its annotations by ``pair.experts``.

    ``image_width``: the stereo image's full width (a mask that wide is cut to its left half).
    """
    if pair.mask is None:
        raise DatasetError(f"{pair.image}: no ground-truth mask")
    paths = pair.annotations or (pair.mask,)
    masks = []
    for path in paths:
        mask = _decoded(processing.load_mask, path)
        if pair.stereo and image_width is not None and mask.shape[1] == image_width:
            mask = mask[:, : image_width // 2]
        if masks and mask.shape != masks[0].shape:
            raise DatasetError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but {paths[0]} (another expert's "
                               f"mask of {pair.image}) is {masks[0].shape[1]}x{masks[0].shape[0]}")
        masks.append(mask)
    if len(masks) == 1:
        return masks[0]
    return combine(masks, pair.experts if pair.experts in COMBINE_RULES else DEFAULT_EXPERTS)


def read_pair(pair) -> tuple[np.ndarray, np.ndarray]:
    """``(image (H, W, 3) uint8, mask (H, W) bool)``; a mask of another size than its image is an error."""
    full = _decoded(processing.load_image, pair.image)
    image = full[:, : full.shape[1] // 2] if pair.stereo else full
    mask = read_mask(pair, image_width=full.shape[1])
    if image.shape[:2] != mask.shape:
        cut = " (left half of the stereo image)" if pair.stereo else ""
        raise DatasetError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                           f"{pair.image} is {image.shape[1]}x{image.shape[0]}{cut}")
    return image, mask
