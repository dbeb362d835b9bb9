"""In-process inference over any backend: images in, masks out, through ``banet.processing``.

A backend is a ``run(batch) -> logits`` callable on ``(B, 3, S, S)`` float32 -> ``(B, 1, S, S)``
numpy arrays: PyTorch (:func:`torch_runner`), an ONNX Runtime session, a TensorRT engine, ... so
that evaluation, export gates and the bench share one path from pixels to masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from banet import processing
from banet.spec import IMAGE_SIZE, MASK_THRESHOLD

Runner = Callable[[np.ndarray], np.ndarray]


def torch_runner(model, device: str = "cpu") -> Runner:
    """Wrap an eval-mode BA-Net as a :data:`Runner` (no autograd, float32 in and out)."""
    import torch

    model = model.eval().to(device)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
        return out.float().cpu().numpy()

    return run


def batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]


def predict_logits(run: Runner, images: Sequence[np.ndarray], *, batch_size: int = 8,
                   size: int = IMAGE_SIZE) -> list[np.ndarray]:
    """``(H, W, 3)`` uint8 images -> list of ``(1, size, size)`` logits at network resolution."""
    out: list[np.ndarray] = []
    for chunk in batches(list(images), batch_size):
        batch = np.stack([processing.preprocess(img, size) for img in chunk])
        out.extend(np.asarray(run(batch), dtype=np.float32))
    return out


def predict_masks(run: Runner, images: Sequence[np.ndarray], *, batch_size: int = 8,
                  threshold: float = MASK_THRESHOLD, size: int = IMAGE_SIZE) -> list[np.ndarray]:
    """``(H, W, 3)`` uint8 images -> uint8 0/255 masks at each image's original size."""
    logits = predict_logits(run, images, batch_size=batch_size, size=size)
    return [processing.postprocess(lg, img.shape[:2], threshold) for lg, img in zip(logits, images)]
