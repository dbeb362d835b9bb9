"""The accuracy gate: every artifact scored against the FP32 PyTorch model on held-out real images.

One definition, used by ``banet-export`` and the bench:

- agreement: Jaccard index between the artifact's mask and the FP32 PyTorch mask of the same
  image (both at the image's original size, through :func:`banet.inference.predict_masks`);
  mean over images and the worst image;
- the change in JA against the ground truth, in points (JA x 100): ``ja_loss`` is the FP32 model's
  mean JA minus the artifact's (positive = the artifact is worse);
- the largest absolute logit difference at network resolution (diagnostic, not gated).

An artifact passes when ``mean agreement >= gate.min_agreement``, ``worst agreement >=
gate.min_worst_agreement`` (one image whose mask is lost fails the gate even when the mean is high)
and ``ja_loss <= gate.max_ja_loss`` (the JA criterion is skipped when the images have no ground
truth).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from banet import processing
from banet.data.annotations import read_mask
from banet.data.pairs import SPLITS, find_pairs
from banet.inference import Runner, predict_logits, predict_served_masks
from banet.metrics import jaccard
from banet.spec import MASK_THRESHOLD

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    """Thresholds of the accuracy gate; ``max_ja_loss`` is in JA points (JA x 100)."""

    min_agreement: float
    max_ja_loss: float
    min_worst_agreement: float = 0.0
    """Lowest mask agreement allowed on any single image."""


DEFAULT_GATES: dict[str, Gate] = {
    "fp32": Gate(min_agreement=0.999, max_ja_loss=0.05, min_worst_agreement=0.99),
    "fp16": Gate(min_agreement=0.995, max_ja_loss=0.1, min_worst_agreement=0.95),
    "int8": Gate(min_agreement=0.98, max_ja_loss=0.5, min_worst_agreement=0.8),
}
"""Per precision. FP32 artifacts (ONNX, engines) differ from PyTorch only by kernel rounding. The
worst-image floors leave room for images whose predicted polyp is a few hundred pixels (a handful
of flipped border pixels moves their Jaccard a lot) and catch an image whose mask is lost."""


@dataclass(frozen=True)
class ParitySet:
    """Held-out images (``(H, W, 3)`` uint8) with optional ground truth (``(H, W)`` bool).

    ``encoded``: the image files' bytes, for the served path (which decodes them itself)."""

    source: str
    names: tuple[str, ...]
    images: tuple[np.ndarray, ...]
    truths: tuple[np.ndarray, ...] | None
    encoded: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class Reference:
    """The FP32 PyTorch model's logits ``(1, S, S)``, masks and per-image JA on a :class:`ParitySet`."""

    logits: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]
    ja: tuple[float, ...] | None


@dataclass(frozen=True)
class ParityResult:
    """How one artifact compares with the FP32 PyTorch model, and the gate's verdict."""

    artifact: str
    precision: str
    images: int
    mean_agreement: float
    worst_agreement: float
    worst_image: str
    max_abs_logit_diff: float
    reference_ja: float | None
    artifact_ja: float | None
    ja_loss: float | None
    gate: Gate
    passed: bool
    reasons: tuple[str, ...] = field(default=())
    reference_foreground: float | None = None
    """Mean foreground fraction of the reference masks: near 0 or 1, agreement says little."""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        return out


def parse_data_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``"ROOT"`` or ``"ROOT:SPLIT"`` (e.g. ``../shared/data/kvasir-seg:test``) -> (root, split)."""
    text = str(spec)
    root, sep, split = text.rpartition(":")
    if sep and split in SPLITS:
        return Path(root), split
    return Path(text), None


def image_paths(spec: str | Path) -> list[Path]:
    """Image files of a folder or dataset split spec (see :func:`parse_data_spec`)."""
    root, split = parse_data_spec(spec)
    return [p.image for p in find_pairs(root, split)]


def load_parity_set(spec: str | Path, *, count: int | None = None,
                    progress: Callable[[int], None] | None = None) -> ParitySet:
    """Load up to ``count`` images (evenly spread, sorted by name) and their masks when present."""
    root, split = parse_data_spec(spec)
    pairs = find_pairs(root, split)
    if count is not None and count < len(pairs):
        picks = np.linspace(0, len(pairs) - 1, count).round().astype(int)
        pairs = [pairs[i] for i in picks]
    images, truths, encoded = [], [], []
    for pair in pairs:
        try:
            encoded.append(pair.image.read_bytes())
        except OSError as err:
            raise processing.ImageDecodeError(f"{pair.image}: cannot read ({err.strerror or err})") from None
        image = processing.decode_image(encoded[-1], name=str(pair.image))
        if pair.stereo:  # the annotated left half, and its bytes for the served path
            full_width, image = image.shape[1], image[:, : image.shape[1] // 2]
            encoded[-1] = processing.encode_png(image)
        else:
            full_width = image.shape[1]
        images.append(image)
        if pair.mask is not None:
            truth = read_mask(pair, image_width=full_width)
            if truth.shape != images[-1].shape[:2]:
                raise ValueError(f"{pair.mask}: mask {truth.shape} and image {images[-1].shape[:2]} differ in size")
            truths.append(truth)
        if progress is not None:
            progress(1)
    has_truth = len(truths) == len(images)
    return ParitySet(str(spec), tuple(p.name for p in pairs), tuple(images), tuple(truths) if has_truth else None,
                     tuple(encoded))


def _masks(logits: Sequence[np.ndarray], images: Sequence[np.ndarray], threshold: float) -> list[np.ndarray]:
    return [processing.postprocess(lg, img.shape[:2], threshold) for lg, img in zip(logits, images)]


def reference(run: Runner, data: ParitySet, *, image_size: int, batch_size: int = 8,
              threshold: float = MASK_THRESHOLD) -> Reference:
    """Score the FP32 reference (normally :func:`banet.inference.torch_runner`) once per parity set."""
    logits = predict_logits(run, data.images, batch_size=batch_size, size=image_size)
    masks = _masks(logits, data.images, threshold)
    ja = None if data.truths is None else tuple(jaccard(m, t) for m, t in zip(masks, data.truths))
    return Reference(tuple(logits), tuple(masks), ja)


def score(run: Runner, data: ParitySet, ref: Reference, *, artifact: str, precision: str,
          image_size: int, gate: Gate | None = None, batch_size: int = 8,
          threshold: float = MASK_THRESHOLD) -> ParityResult:
    """Compare ``run`` (an artifact's runner) with ``ref`` on ``data`` and apply ``gate``."""
    logits = predict_logits(run, data.images, batch_size=batch_size, size=image_size)
    # np.max, not max(): the builtin drops a NaN that is not first, and NaN must fail the gate
    max_diff = float(np.max([np.max(np.abs(a - b)) for a, b in zip(logits, ref.logits)]))
    return score_masks(_masks(logits, data.images, threshold), data, ref, artifact=artifact,
                       precision=precision, gate=gate, max_abs_logit_diff=max_diff)


def score_served(run: Runner, data: ParitySet, ref: Reference, *, artifact: str, precision: str,
                 image_size: int, gate: Gate | None = None, batch_size: int = 8,
                 threshold: float = MASK_THRESHOLD,
                 oversample: float = processing.REDUCED_DECODE_OVERSAMPLE) -> ParityResult:
    """Score a uint8-I/O serving graph over the whole served path against ``ref`` (today's reference route).

    ``run``: ``(B, S, S, 3)`` uint8 -> ``(B, 1, S, S)`` float16 probabilities. The masks come from the
    encoded files through :func:`banet.inference.predict_served_masks` (reduced JPEG decode, uint8
    resize, the graph, the small-map mask), so the gate sees what Triton will serve.
    """
    if data.encoded is None:
        raise ValueError(f"{artifact}: the parity set has no encoded images (load it with load_parity_set)")
    masks = predict_served_masks(run, data.encoded, batch_size=batch_size, threshold=threshold, size=image_size,
                                 oversample=oversample)
    return score_masks(masks, data, ref, artifact=artifact, precision=precision, gate=gate)


def score_masks(masks: Sequence[np.ndarray], data: ParitySet, ref: Reference, *, artifact: str,
                precision: str, gate: Gate | None = None,
                max_abs_logit_diff: float | None = None) -> ParityResult:
    """Score masks at the images' original sizes against ``ref`` and apply ``gate``.

    The one scoring rule for every backend: those that return logits go through :func:`score`;
    those that return only masks (Triton end to end) call this directly, without a logit difference.
    """
    gate = gate or DEFAULT_GATES[precision]
    if len(masks) != len(data.images) or len(ref.masks) != len(data.images):
        raise ValueError(f"{artifact}: {len(masks)} masks for {len(data.images)} images "
                         f"({len(ref.masks)} reference masks); every parity image must be scored")
    agreement = [jaccard(a, b) for a, b in zip(masks, ref.masks)]
    worst = int(np.argmin(agreement))
    ref_ja = art_ja = loss = None
    if data.truths is not None and ref.ja is not None:
        ref_ja = 100.0 * float(np.mean(ref.ja))
        art_ja = 100.0 * float(np.mean([jaccard(m, t) for m, t in zip(masks, data.truths)]))
        loss = ref_ja - art_ja
    mean_agreement = float(np.mean(agreement))
    reasons = []
    if max_abs_logit_diff is not None and not np.isfinite(max_abs_logit_diff):
        reasons.append("non-finite logits")
    if not mean_agreement >= gate.min_agreement:
        reasons.append(f"mask agreement {mean_agreement:.4f} < {gate.min_agreement}")
    if not agreement[worst] >= gate.min_worst_agreement:
        reasons.append(f"worst image {data.names[worst]}: mask agreement {agreement[worst]:.4f} "
                       f"< {gate.min_worst_agreement}")
    if loss is not None and not loss <= gate.max_ja_loss:
        reasons.append(f"JA loss {loss:.2f} points > {gate.max_ja_loss}")
    result = ParityResult(
        artifact=artifact, precision=precision, images=len(masks),
        mean_agreement=mean_agreement, worst_agreement=float(agreement[worst]),
        worst_image=data.names[worst],
        max_abs_logit_diff=float("nan") if max_abs_logit_diff is None else max_abs_logit_diff,
        reference_ja=ref_ja, artifact_ja=art_ja, ja_loss=loss, gate=gate,
        passed=not reasons, reasons=tuple(reasons),
        reference_foreground=float(np.mean([np.count_nonzero(m) / m.size for m in ref.masks])),
    )
    log.info("%s: agreement %.4f (worst %.4f), %s", artifact, mean_agreement, result.worst_agreement,
             "PASS" if result.passed else "FAIL: " + "; ".join(reasons))
    return result
