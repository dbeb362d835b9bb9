"""Benchmark inputs drawn from real images: a pool of decoded, pre-processed images and batches of it.

Every timed call gets a fresh batch (a new array gathered from the pool at a rotating offset), so
no backend is timed on zeros or on one cached tensor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from banet import processing
from banet.spec import IMAGE_SIZE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """One batch in the two forms the backends consume.

    ``tensor`` is the network input ``(B, 3, S, S)`` float32; ``encoded`` the original image files
    (for end-to-end backends such as Triton); ``sizes`` each image's ``(H, W)``.
    """

    names: tuple[str, ...]
    tensor: np.ndarray
    encoded: tuple[bytes, ...]
    sizes: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class InputPool:
    """Real images, decoded once: ``tensors`` ``(N, 3, S, S)`` float32, ``images`` ``(H, W, 3)`` uint8."""

    names: tuple[str, ...]
    images: tuple[np.ndarray, ...]
    encoded: tuple[bytes, ...]
    tensors: np.ndarray
    masks: tuple[np.ndarray | None, ...]

    def __len__(self) -> int:
        return len(self.names)

    def batch(self, batch_size: int, index: int = 0) -> Batch:
        """The ``index``-th batch of ``batch_size`` images, wrapping around the pool."""
        idx = (index * batch_size + np.arange(batch_size)) % len(self)
        return Batch(
            names=tuple(self.names[i] for i in idx),
            tensor=self.tensors[idx],  # fancy indexing: a fresh array every call
            encoded=tuple(self.encoded[i] for i in idx),
            sizes=tuple(self.images[i].shape[:2] for i in idx),
        )

    def chunks(self, batch_size: int):
        """Consecutive batches covering every image exactly once (the last may be shorter)."""
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            idx = np.arange(start, stop)
            yield Batch(
                names=tuple(self.names[i] for i in idx),
                tensor=self.tensors[idx],
                encoded=tuple(self.encoded[i] for i in idx),
                sizes=tuple(self.images[i].shape[:2] for i in idx),
            )


def load_pool(data: str | Path, *, split: str | None = "test", limit: int | None = None,
              size: int = IMAGE_SIZE) -> InputPool:
    """Load the first ``limit`` pairs of ``split`` in ``data`` (sorted by name) into an :class:`InputPool`.

    Raises :class:`banet.data.pairs.DatasetError` (naming the folder) when there is nothing to load.
    """
    from banet.data.annotations import read_mask
    from banet.data.pairs import DatasetError, find_pairs

    pairs = find_pairs(data, split)
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        raise DatasetError(f"no images found in {data} (split {split!r})")
    names, images, encoded, tensors, masks = [], [], [], [], []
    for pair in pairs:
        raw = Path(pair.image).read_bytes()
        image = processing.decode_image(raw, name=str(pair.image))
        names.append(pair.name)
        images.append(image)
        encoded.append(raw)
        tensors.append(processing.preprocess(image, size))
        masks.append(read_mask(pair) if pair.mask is not None else None)
    log.info("loaded %d images from %s (split %s)", len(names), data, split)
    return InputPool(tuple(names), tuple(images), tuple(encoded), np.stack(tensors), tuple(masks))
