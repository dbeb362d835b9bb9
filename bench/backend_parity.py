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
from dataclasses import dataclass, field, fields

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


@dataclass
class ParityRow:
    """One backend's parity against FP32 PyTorch (``export.parity.ParityResult``'s fields), or why it was
    skipped or failed. :meth:`to_dict` is the one JSON encoding (a results file's ``parity`` entry);
    :meth:`from_dict` reads it back. ``precision`` is the gate's precision once scored (BF16 -> fp16)."""

    backend: str
    precision: str
    device: str
    skipped: str | None = None
    artifact: str | None = None
    images: int | None = None
    mean_agreement: float | None = None
    worst_agreement: float | None = None
    worst_image: str | None = None
    max_abs_logit_diff: float | None = None
    reference_ja: float | None = None
    artifact_ja: float | None = None
    ja_loss: float | None = None
    gate: dict | None = None
    passed: bool | None = None
    reasons: list[str] = field(default_factory=list)
    reference_foreground: float | None = None
    gate_precision: str | None = None

    SCORED = ("artifact", "images", "mean_agreement", "worst_agreement", "worst_image", "max_abs_logit_diff",
              "reference_ja", "artifact_ja", "ja_loss", "gate", "passed", "reasons", "reference_foreground")

    @classmethod
    def scored(cls, backend: Backend, result: dict, gate_precision: str) -> ParityRow:
        """The row of ``result`` (``ParityResult.to_dict()``, or ``score_masks``'s) for ``backend``."""
        return cls(backend=backend.name, device=backend.device, gate_precision=gate_precision,
                   **{"precision": backend.precision, **result})

    def to_dict(self) -> dict:
        base = {"backend": self.backend, "precision": self.precision, "device": self.device}
        if self.gate_precision is None:
            return {**base, "skipped": self.skipped}
        return {**base, **{k: getattr(self, k) for k in self.SCORED}, "gate_precision": self.gate_precision,
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, data: dict) -> ParityRow:
        """The row :meth:`to_dict` wrote; a scored row must hold its agreement, worst image and verdict."""
        missing = [k for k in ("backend", "precision", "device") if k not in data]
        if not data.get("skipped"):
            missing += [k for k in ("mean_agreement", "worst_agreement", "worst_image", "passed", "gate_precision")
                        if data.get(k) is None]
        if missing:
            raise ValueError(f"parity row {data.get('backend', '?')}: no {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _score_one(backend: Backend, data, ref, *, image_size: int, batch_size: int, threshold: float) -> ParityRow:
    """One backend's parity row: its ``ParityResult``, or why it was skipped or failed."""
    from export.parity import DEFAULT_GATES, score

    ok, reason = backend.available()
    if not ok:
        return ParityRow(backend.name, backend.precision, backend.device, skipped=reason)
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
        return ParityRow(backend.name, backend.precision, backend.device, skipped=f"failed: {type(err).__name__}: {err}")
    return ParityRow.scored(backend, result, precision)


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
        row = _score_one(backend, data, ref, image_size=image_size, batch_size=batch_size,
                         threshold=threshold).to_dict()
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if progress is not None and row["skipped"] is None:
            progress(1)
    return rows
