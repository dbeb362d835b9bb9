"""Score every backend against the FP32 PyTorch model on the same held-out real images.

The scoring and the gates are ``export.parity``'s (one definition for ``banet-export`` and the
bench): mean and worst mask Jaccard agreement with the FP32 masks, JA vs the ground truth and its
change from FP32, pass/fail against ``export.parity.DEFAULT_GATES``. End-to-end backends (Triton)
return masks, not logits; for them the same agreement and the same gate are computed on the masks
(the logit difference is then not defined).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence

import numpy as np

from banet.inference import Runner
from banet.spec import MASK_THRESHOLD

from bench.backends import Backend
from bench.inputs import Batch

log = logging.getLogger(__name__)

GATE_PRECISION = {"fp32": "fp32", "fp16": "fp16", "bf16": "fp16", "int8": "int8"}
"""Which export gate a backend's precision is held to (BF16 autocast is held to the FP16 gate)."""


def as_runner(backend: Backend, image_size: int) -> Runner:
    """A tensor backend as a :data:`banet.inference.Runner` ``(B, 3, S, S) -> (B, 1, S, S)``."""

    prepared: list[int] = []  # re-prepare only when the batch size changes (CUDA graphs re-capture)

    def run(batch: np.ndarray) -> np.ndarray:
        fake = Batch(tuple("" for _ in batch), batch, (), tuple((image_size, image_size) for _ in batch))
        if prepared[-1:] != [len(batch)]:
            backend.prepare(len(batch))
            prepared.append(len(batch))
        out = backend.run(backend.stage(fake))
        backend.synchronize()
        return backend.logits(out)

    return run


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of ``(H, W, 3)`` uint8: decoding them gives back the same pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _score_end_to_end(backend: Backend, data, ref, *, gate, precision: str, batch_size: int,
                      threshold: float) -> dict:
    from export.parity import score_masks

    masks = []
    for start in range(0, len(data.images), batch_size):
        images = data.images[start:start + batch_size]
        batch = Batch(tuple(data.names[start:start + batch_size]), np.empty((len(images), 0)),
                      tuple(encode_png(img) for img in images), tuple(img.shape[:2] for img in images))
        backend.prepare(len(images))
        masks.extend(backend.masks(backend.run(backend.stage(batch)), batch, threshold))
    return score_masks(masks, data, ref, artifact=backend.name, precision=precision, gate=gate).to_dict()


def _score_one(backend: Backend, data, ref, *, image_size: int, batch_size: int, threshold: float) -> dict:
    """One backend's parity row: its ``ParityResult`` as a dict, or why it was skipped or failed."""
    from export.parity import DEFAULT_GATES, score

    ok, reason = backend.available()
    base = {"backend": backend.name, "precision": backend.precision, "device": backend.device}
    if not ok:
        return {**base, "skipped": reason}
    precision = GATE_PRECISION.get(backend.precision, "fp32")
    gate = DEFAULT_GATES[precision]
    try:
        if backend.end_to_end:
            result = _score_end_to_end(backend, data, ref, gate=gate, precision=precision,
                                       batch_size=batch_size, threshold=threshold)
        else:
            result = score(as_runner(backend, image_size), data, ref, artifact=backend.name,
                           precision=precision, image_size=image_size, gate=gate,
                           batch_size=batch_size, threshold=threshold).to_dict()
    except Exception as err:  # noqa: BLE001 - report the failure, keep scoring the others
        log.warning("parity of %s failed: %s", backend.name, err)
        return {**base, "skipped": f"failed: {type(err).__name__}: {err}"}
    return {**base, **result, "gate_precision": precision, "skipped": None}


def score_backends(backends: Sequence[Backend], reference_backend: Backend, data, *, image_size: int,
                   batch_size: int = 8, threshold: float = MASK_THRESHOLD, progress=None,
                   on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """One parity row per backend (``export.parity.ParityResult`` as a dict, or a skip/failure row).

    ``data`` is an ``export.parity.ParitySet``; ``reference_backend`` is FP32 PyTorch eager.
    ``on_row(row)`` is called as each row is made (references.gpu_check reports rows as they come).
    """
    from export.parity import reference

    ref = reference(as_runner(reference_backend, image_size), data, image_size=image_size,
                    batch_size=batch_size, threshold=threshold)
    rows = []
    for backend in backends:
        row = _score_one(backend, data, ref, image_size=image_size, batch_size=batch_size, threshold=threshold)
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if progress is not None and row["skipped"] is None:
            progress(1)
    return rows
