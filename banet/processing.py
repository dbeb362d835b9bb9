"""Numpy-only pre- and post-processing: the one definition of decode/resize/normalize/threshold.

Training, evaluation, export parity checks, the Triton Python models, the gRPC client and the
bench all call these functions, so every path sees exactly the same pixels. Only numpy and
pillow are imported (the Triton server's Python has no torch).

Shapes: images are ``(H, W, 3)`` uint8 RGB; network inputs ``(3, S, S)`` float32; logits
``(1, S, S)`` or ``(S, S)``; masks ``(H, W)`` uint8 with values 0 / 255.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from banet.spec import (
    GROUND_TRUTH_THRESHOLD,
    IMAGE_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MASK_FOREGROUND_VALUE,
    MASK_THRESHOLD,
    MAX_IMAGE_PIXELS,
)

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


class ImageDecodeError(ValueError):
    """An image could not be decoded or was refused; the message says which and why."""


# --- decoding ----------------------------------------------------------------------------------
def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ...) into ``(H, W, 3)`` uint8 RGB.

    - The pixel count is checked from the header before any pixel is decoded (decompression
      bombs are refused without allocating them).
    - The EXIF orientation tag is honoured: the image is rotated as a viewer would show it.
    - Grayscale, palette, RGBA/LA (alpha dropped), CMYK and 16-bit/32-bit integer or float images
      are converted to 8-bit RGB; high bit depths are scaled by their full range (65535 for 16 bit).

    Raises :class:`ImageDecodeError` naming ``name`` for empty, truncated, unknown or oversized data.
    """
    if not data:
        raise ImageDecodeError(f"{name}: empty payload (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageDecodeError(f"{name}: image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of "
                    f"{max_pixels} pixels"
                )
            img.load()
            return _to_rgb_array(ImageOps.exif_transpose(img))
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not a recognised image format ({len(data)} bytes)") from None
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"{name}: refused as a decompression bomb ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated / corrupt data
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({err})") from None


def load_image(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read and decode an image file into ``(H, W, 3)`` uint8 RGB (see :func:`decode_image`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read ({err.strerror or err})") from None
    return decode_image(data, max_pixels=max_pixels, name=str(path))


def load_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask file into ``(H, W)`` bool (foreground is ``value > 127``).

    RGB masks (three equal channels) are accepted; their first channel is used.
    """
    image = load_image(path)
    return image[..., 0] > GROUND_TRUTH_THRESHOLD


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        full_scale = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        if mode == "I" and array.max() <= 65535:
            full_scale = 65535.0 if array.max() > 255 else 255.0
        gray = np.clip(array / full_scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


# --- network input ------------------------------------------------------------------------------
def resize_image(image: np.ndarray, size: int | tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``(size, size, 3)`` (or ``(h, w)``) with bilinear filtering."""
    height, width = (size, size) if isinstance(size, int) else size
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a ``(H, W)`` bool mask with nearest-neighbour sampling (labels stay labels)."""
    height, width = (size, size) if isinstance(size, int) else size
    if mask.shape[:2] == (height, width):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((width, height), Image.NEAREST)) > 127


def normalize(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 with ImageNet mean/std."""
    chw = image.astype(np.float32).transpose(2, 0, 1) / 255.0
    return (chw - _MEAN) / _STD


def denormalize(chw: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize`: ``(3, H, W)`` float32 -> ``(H, W, 3)`` uint8."""
    image = (chw * _STD + _MEAN) * 255.0
    return np.clip(image.transpose(1, 2, 0) + 0.5, 0, 255).astype(np.uint8)


def preprocess(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> network input ``(3, size, size)`` float32."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return normalize(resize_image(image, size))


# --- network output -----------------------------------------------------------------------------
def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    logits = np.asarray(logits, dtype=np.float32)
    return (0.5 * (np.tanh(0.5 * logits) + 1.0)).astype(np.float32)


def probability_map(logits: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """Logits ``(1, S, S)`` or ``(S, S)`` -> probabilities ``(H, W)`` float32 at the original size.

    The probability (not the thresholded mask) is resized, bilinearly, so that the mask boundary
    at full resolution is smooth rather than blocky.
    """
    shape = np.shape(logits)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)):
        raise ValueError(f"expected logits of shape (1, H, W) or (H, W), got {shape}")
    prob = sigmoid(np.reshape(logits, shape[-2:]))
    height, width = int(original_size[0]), int(original_size[1])
    if prob.shape != (height, width):
        prob = np.asarray(Image.fromarray(prob, mode="F").resize((width, height), Image.BILINEAR))
    return prob


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as float, or raise ValueError if it is outside [0, 1] or not finite."""
    threshold = float(threshold)
    if not (0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    return threshold


def postprocess(
    logits: np.ndarray, original_size: tuple[int, int], threshold: float = MASK_THRESHOLD
) -> np.ndarray:
    """Logits -> uint8 mask ``(H, W)`` at the original size, 0 or 255 (``prob > threshold``)."""
    prob = probability_map(logits, original_size)
    return np.where(prob > check_threshold(threshold), MASK_FOREGROUND_VALUE, 0).astype(np.uint8)


def boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel inner contour of a mask ``(H, W)``: foreground pixels with a background 4-neighbour.

    Pixels on the image border count as boundary when they are foreground. Returns uint8 0/255.
    """
    fg = np.asarray(mask) > 0
    padded = np.pad(fg, 1, mode="constant", constant_values=False)
    interior = (
        padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & fg
    )
    return np.where(fg & ~interior, MASK_FOREGROUND_VALUE, 0).astype(np.uint8)


def mask_area(mask: np.ndarray) -> int:
    """Number of foreground pixels."""
    return int(np.count_nonzero(np.asarray(mask) > 0))


# --- visualisation ------------------------------------------------------------------------------
PREDICTION_COLOUR = (255, 64, 32)
GROUND_TRUTH_COLOUR = (32, 255, 96)


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    ground_truth: np.ndarray | None = None,
    *,
    alpha: float = 0.35,
    thickness: int = 2,
) -> np.ndarray:
    """Draw the predicted mask (tinted, with its contour) and optionally the ground-truth contour.

    ``image`` is ``(H, W, 3)`` uint8; masks are ``(H, W)`` (bool or 0/255). Returns ``(H, W, 3)`` uint8.
    """
    out = image.astype(np.float32).copy()
    pred = np.asarray(mask) > 0
    colour = np.asarray(PREDICTION_COLOUR, dtype=np.float32)
    out[pred] = (1 - alpha) * out[pred] + alpha * colour
    for region, rgb in ((pred, PREDICTION_COLOUR), (ground_truth, GROUND_TRUTH_COLOUR)):
        if region is None:
            continue
        edge = _thick_boundary(np.asarray(region) > 0, thickness)
        out[edge] = rgb
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _thick_boundary(mask: np.ndarray, thickness: int) -> np.ndarray:
    edge = boundary(mask) > 0
    for _ in range(max(thickness - 1, 0)):
        grown = edge.copy()
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG, atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(tmp, format="PNG")
    tmp.replace(path)
