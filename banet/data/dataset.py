"""Segmentation datasets in memory: decoded, RGB, resized once, ready for batched augmentation.

Every image goes through :func:`banet.data.annotations.read_pair` (:mod:`banet.processing`'s
``load_image``/``load_mask``: grayscale, RGBA, palette and 16-bit images become 8-bit RGB; masks are
``value > 127`` or 0/1 label images, RGB masks accepted; several experts' masks combined; the left half
of a stereo image) and is resized to the training size once, in the main process. A broken file therefore raises a
:class:`~banet.data.pairs.DatasetError` naming it before training starts (or is logged and left
out with ``skip_broken``), never a crash deep inside a DataLoader worker.

Samples are ``(image (3, S, S) uint8, mask (1, S, S) uint8 0/1)`` tensors; augmentation and
normalization happen afterwards on whole batches (:mod:`banet.data.augment`), on the GPU when
there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from banet import processing
from banet.data.annotations import DEFAULT_EXPERTS, read_pair
from banet.data.pairs import DatasetError, Pair, find_pairs

log = logging.getLogger(__name__)


def load_pair(pair: Pair, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pair and resize it: ``(size, size, 3)`` uint8 RGB and ``(size, size)`` bool.

    Raises :class:`DatasetError` naming the file when it cannot be decoded or when the image and
    mask sizes differ (a mask that does not belong to its image).
    """
    image, mask, _ = _load_sized(pair, size)
    return image, mask


def _load_sized(pair: Pair, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`load_pair` plus the decoded original image's aspect ratio (width / height)."""
    image, mask = read_pair(pair)
    aspect = image.shape[1] / image.shape[0]
    return processing.resize_image(image, size), processing.resize_mask(mask, size), aspect


class SegmentationDataset(torch.utils.data.Dataset):
    """Image/mask pairs decoded and resized to ``size`` x ``size`` once, kept in memory.

    ``__getitem__`` returns ``(image (3, S, S) uint8, mask (1, S, S) uint8 in {0, 1})``;
    ``aspect`` ``(N,)`` float32 holds each original image's width / height (augmentation rotates in
    the original image's frame).
    ``pairs`` keeps the samples that loaded (broken ones are left out only with ``skip_broken``).
    Decoding runs on ``workers`` threads (PIL releases the GIL while decoding).
    """

    def __init__(self, pairs: Sequence[Pair], size: int, *, skip_broken: bool = False, workers: int = 2,
                 progress: Callable[[int], None] | None = None) -> None:
        if not pairs:
            raise DatasetError("no image/mask pairs to load")
        self.size = size

        def load(pair: Pair):
            try:
                return _load_sized(pair, size)
            except DatasetError as err:
                return err

        with ThreadPoolExecutor(max(1, workers)) as pool:
            results = []
            for result in pool.map(load, pairs):
                results.append(result)
                if progress is not None:
                    progress(1)
        errors = [r for r in results if isinstance(r, DatasetError)]
        if errors and not skip_broken:
            listed = "; ".join(str(e) for e in errors[:5])
            raise DatasetError(f"{len(errors)} broken file(s): {listed}; pass --skip-broken to leave them out")
        for err in errors:
            log.warning("skipped: %s", err)
        kept = [(p, r) for p, r in zip(pairs, results) if not isinstance(r, DatasetError)]
        if not kept:
            raise DatasetError("every pair failed to load")
        self.pairs = [p for p, _ in kept]
        self.images = torch.from_numpy(np.stack([r[0] for _, r in kept])).permute(0, 3, 1, 2).contiguous()
        self.masks = torch.from_numpy(np.stack([r[1] for _, r in kept])).unsqueeze(1).to(torch.uint8)
        self.aspect = torch.tensor([r[2] for _, r in kept], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]


def load_split(root: str | Path, split: str, size: int, *, split_file: str | Path | None = None,
               skip_unpaired: bool = False, skip_broken: bool = False, workers: int = 2,
               experts: str = DEFAULT_EXPERTS,
               progress: Callable[[int], None] | None = None) -> SegmentationDataset:
    """:func:`find_pairs` + :class:`SegmentationDataset` for one split of a dataset folder."""
    pairs = find_pairs(root, split, split_file=split_file, skip_unpaired=skip_unpaired, experts=experts)
    return SegmentationDataset(pairs, size, skip_broken=skip_broken, workers=workers, progress=progress)
