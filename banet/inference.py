"""In-process inference over any backend: images in, masks out, through ``banet.processing``.

A backend is a ``run(batch) -> logits`` callable on ``(B, 3, S, S)`` float32 -> ``(B, 1, S, S)``
numpy arrays: PyTorch (:func:`torch_runner`), an ONNX Runtime session, a TensorRT engine, ... so
that evaluation, export gates and the bench share one path from pixels to masks.

The serving variant of a network (uint8 I/O, see :data:`banet.spec.SERVING_INPUT`) runs through
:func:`predict_served_masks`: encoded bytes in, masks out, by the same functions as the Triton models.
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


def predict_served_masks(run: Runner, encoded: Sequence[bytes], *, batch_size: int = 8,
                         threshold: float = MASK_THRESHOLD, size: int = IMAGE_SIZE,
                         decoder: str = "auto",
                         oversample: float = processing.REDUCED_DECODE_OVERSAMPLE) -> list[np.ndarray]:
    """The serving hot path in process, exactly as the Triton models run it.

    Encoded images -> :func:`banet.processing.network_image` ``(B, S, S, 3)`` uint8 -> ``run`` (a
    uint8-I/O network) -> ``(B, 1, S, S)`` float16 probabilities -> :func:`banet.processing.mask_from_probability`
    -> uint8 0/255 masks at each image's original size.
    """
    masks: list[np.ndarray] = []
    for chunk in batches(list(encoded), batch_size):
        decoded = [processing.network_image(data, size, decoder=decoder, oversample=oversample) for data in chunk]
        probabilities = run(np.stack([image for image, _ in decoded]))
        masks.extend(processing.mask_from_probability(p, original, threshold)
                     for p, (_, original) in zip(np.asarray(probabilities), decoded))
    return masks
