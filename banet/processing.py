"""Numpy-only pre- and post-processing: the one definition of decode/resize/normalize/threshold.

Training, evaluation, export parity checks, the Triton Python models, the gRPC client and the
bench all call these functions, so every path sees exactly the same pixels. Only numpy and
pillow are imported (the Triton server's Python has no torch).

Shapes: images are ``(H, W, 3)`` uint8 RGB; network inputs ``(3, S, S)`` float32; logits
``(1, S, S)`` or ``(S, S)``; masks ``(H, W)`` uint8 with values 0 / 255.

Two routes from bytes to masks share these definitions:

- the reference route (training, evaluation, the export gate's FP32 reference): :func:`decode_image`
  at full resolution, :func:`preprocess` (:func:`resize_image` + :func:`normalize`) to float32,
  float logits, :func:`postprocess` (sigmoid, bilinear float resize, threshold);
- the serving hot path (the Triton models, the uint8 network variant, the bench): :func:`network_image`
  decodes JPEGs straight to a reduced size (DCT scaling) when the image is at least twice the network
  size and resizes in uint8 with the same :func:`resize_image`; the network graph itself normalizes
  (:func:`normalization_affine`) and returns the probability as float16;
  :func:`mask_from_probability` decides the upsampled mask on that small map.
  The export gate scores this route against the reference route (mask Jaccard) like any artifact.
"""

from __future__ import annotations

import importlib.util
import io
from functools import lru_cache
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
    PROBABILITY_SCALE,
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
    with _decoding(data, name):
        with _open_checked(data, max_pixels, name) as img:
            img.load()
            return _to_rgb_array(ImageOps.exif_transpose(img))


class _decoding:
    """Turn the decoders' own exceptions into :class:`ImageDecodeError` naming the input."""

    def __init__(self, data: bytes, name: str) -> None:
        self.size, self.name = len(data), name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, tb) -> bool:
        if err is None or isinstance(err, ImageDecodeError):
            return False
        if isinstance(err, UnidentifiedImageError):
            raise ImageDecodeError(f"{self.name}: not a recognised image format ({self.size} bytes)") from None
        if isinstance(err, Image.DecompressionBombError):
            raise ImageDecodeError(f"{self.name}: refused as a decompression bomb ({err})") from None
        if isinstance(err, (OSError, SyntaxError, ValueError)):  # truncated / corrupt data
            raise ImageDecodeError(f"{self.name}: corrupt or truncated image ({err})") from None
        return False


def _open_checked(data: bytes, max_pixels: int, name: str) -> Image.Image:
    """Open the header only and refuse empty, pixel-less or oversized images before any pixel is decoded."""
    if not data:
        raise ImageDecodeError(f"{name}: empty payload (0 bytes)")
    img = Image.open(io.BytesIO(data))
    width, height = img.size
    if width < 1 or height < 1:
        img.close()
        raise ImageDecodeError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        img.close()
        raise ImageDecodeError(
            f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels"
        )
    return img


# EXIF orientation -> the transpose that shows the image upright (the table of ImageOps.exif_transpose)
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112
REDUCED_DECODE_OVERSAMPLE = 3.0
"""A reduced JPEG decode keeps both sides >= this many times the network size (and happens only when
the image is at least twice that, so the DCT scaling drops >= 3/4 of the decoding work); the bilinear
resize after it then still averages >= 3 decoded pixels per network pixel. Chosen by mask parity:
with a tiny BA-Net trained one epoch on Kvasir-SEG at 128 px, served masks against today's full
decode on the Kvasir-SEG test split (mean / worst Jaccard) were 0.972 / 0.799 at 1x, 0.992 / 0.943 at
2x, 0.9997 / 0.993 at 3x and 0.9998 / 0.9986 without reduction (references/serving/hotpath.py re-measures it).
Models whose masks tolerate more may be served with less (the repository's ``decode_oversample``)."""


@lru_cache(maxsize=1)
def simplejpeg_available() -> bool:
    """True when ``simplejpeg`` (libjpeg-turbo with DCT-domain scaling, a 1 MB wheel) is importable."""
    return importlib.util.find_spec("simplejpeg") is not None


def decode_reduced(data: bytes, size: int = IMAGE_SIZE, *, max_pixels: int = MAX_IMAGE_PIXELS,
                   name: str = "image", decoder: str = "auto",
                   oversample: float = REDUCED_DECODE_OVERSAMPLE) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode for a ``size`` x ``size`` network: ``(h, w, 3)`` uint8 RGB and the original ``(H, W)``.

    A JPEG whose sides are both at least twice ``oversample * size`` is decoded straight to a smaller
    size by scaling in the DCT domain (1/2, 1/4, 1/8 ...: the decoder skips the work for pixels the
    resize would throw away); both decoded sides stay >= ``oversample * size``. Every other image is
    decoded as :func:`decode_image` does. ``(H, W)`` is the size :func:`decode_image` would return
    (after the EXIF orientation), i.e. the size the mask must have. The same checks and errors as
    :func:`decode_image` apply (header pixel limit before any pixel, :class:`ImageDecodeError`).

    ``decoder``: ``"simplejpeg"`` (libjpeg-turbo's scaled decode, fastest), ``"pillow"`` (Pillow's
    JPEG ``draft`` mode, no extra package) or ``"auto"`` (simplejpeg when installed).
    """
    if decoder not in ("auto", "simplejpeg", "pillow"):
        raise ValueError(f"decoder must be auto, simplejpeg or pillow, got {decoder!r}")
    with _decoding(data, name):
        with _open_checked(data, max_pixels, name) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if "exif" in img.info else 1
            transpose = _ORIENTATION_TRANSPOSE.get(orientation)
            original = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
            target = int(np.ceil(oversample * size))
            reduce = img.format == "JPEG" and min(width, height) >= 2 * target
            use_simplejpeg = (reduce and img.mode in ("RGB", "L") and decoder != "pillow"
                              and (decoder == "simplejpeg" or simplejpeg_available()))
            if use_simplejpeg:
                import simplejpeg

                # strict: a corrupt or truncated stream raises (ValueError) instead of coming back grey
                array = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=target, min_width=target, strict=True)
                if transpose is None:
                    return array, original
                return np.asarray(Image.fromarray(array).transpose(transpose)), original
            if reduce:
                img.draft("RGB" if img.mode in ("RGB", "YCbCr") else None, (target, target))
            img.load()
            return _to_rgb_array(ImageOps.exif_transpose(img)), original


def network_image(data: bytes, size: int = IMAGE_SIZE, *, max_pixels: int = MAX_IMAGE_PIXELS,
                  name: str = "image", decoder: str = "auto",
                  oversample: float = REDUCED_DECODE_OVERSAMPLE) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded bytes -> the uint8 network input ``(size, size, 3)`` and the original ``(H, W)``.

    The serving hot path's pre-processing: :func:`decode_reduced`, then the one :func:`resize_image`
    (bilinear, in uint8). The network's graph does the normalization (:func:`normalization_affine`).
    """
    image, original = decode_reduced(data, size, max_pixels=max_pixels, name=name, decoder=decoder,
                                     oversample=oversample)
    return resize_image(image, size), original


def network_input_of_pixels(pixels: np.ndarray, size: int = IMAGE_SIZE, network_io: str = "uint8", *,
                            max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Decoded ``(B, H, W, 3)`` uint8 RGB -> the network input and the ``(B, 2)`` int32 original sizes.

    ``network_io`` "uint8": ``(B, size, size, 3)`` uint8 by :func:`resize_image` (the hot path, as
    :func:`network_image` does after decoding a PNG in full); "float32": ``(B, 3, size, size)`` by
    :func:`preprocess`. Raises ValueError for another shape or dtype, no pixels, or more than ``max_pixels``.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected (B, H, W, 3) uint8 RGB pixels, got {pixels.shape} {pixels.dtype}")
    height, width = int(pixels.shape[1]), int(pixels.shape[2])
    if height < 1 or width < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    if height * width > max_pixels:
        raise ValueError(f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels")
    if network_io == "uint8":
        batch = np.stack([resize_image(np.ascontiguousarray(image), size) for image in pixels])
    else:
        batch = np.stack([preprocess(np.ascontiguousarray(image), size) for image in pixels])
    return batch, np.asarray([(height, width)] * len(pixels), dtype=np.int32)


def load_image(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read and decode an image file into ``(H, W, 3)`` uint8 RGB (see :func:`decode_image`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read ({err.strerror or err})") from None
    return decode_image(data, max_pixels=max_pixels, name=str(path))


LOSSLESS_MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif")


def load_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask file into ``(H, W)`` bool (foreground is ``value > 127``).

    RGB masks (three equal channels) are accepted; their first channel is used. A lossless mask
    (PNG, BMP, TIFF, GIF) whose only values are 0 and 1 is a label image: 1 is foreground (with the
    127 threshold it would silently be empty). A JPEG never is: its noise reaches 1 on black.
    """
    channel = load_image(path)[..., 0]
    if Path(path).suffix.lower() in LOSSLESS_MASK_EXTENSIONS and channel.max() == 1:
        return channel == 1
    return channel > GROUND_TRUTH_THRESHOLD


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


def normalization_affine() -> tuple[np.ndarray, np.ndarray]:
    """:func:`normalize` as ``x * scale + bias`` on uint8 pixel values: two ``(3,)`` float32 arrays.

    The uint8-input network variant puts exactly this affine map into its graph (export/serving_graph.py),
    so the GPU normalizes with the constants of :mod:`banet.spec`; ``scale = 1 / (255 std)``,
    ``bias = -mean / std``.
    """
    mean, std = _MEAN.reshape(3).astype(np.float64), _STD.reshape(3).astype(np.float64)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


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


def probability_to_uint8(probability: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 ``round(PROBABILITY_SCALE * p)`` (what the uint8 network variant returns)."""
    scaled = np.rint(np.asarray(probability, dtype=np.float32) * np.float32(PROBABILITY_SCALE))
    return np.clip(scaled, 0, PROBABILITY_SCALE).astype(np.uint8)


def mask_from_probability(probability: np.ndarray, original_size: tuple[int, int],
                             threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """Probabilities ``(1, S, S)`` or ``(S, S)`` -> uint8 mask ``(H, W)`` 0/255 at the original size.

    ``probability``: float16 (what the serving graph returns) or float32 in [0, 1], or uint8 levels
    ``round(PROBABILITY_SCALE * p)`` (:func:`probability_to_uint8`). The hot-path counterpart of
    :func:`postprocess`, with the same meaning: foreground where the bilinearly resized probability
    exceeds ``threshold``. The upsampling
    is decided on the small map: the output pixels that share their four input samples form a cell,
    which is all foreground (background) when the four samples are all above (at or below) the
    threshold, whatever the weights; only the cells that straddle the threshold (along the contour)
    are interpolated pixel by pixel, the rest is filled by repeating the cells.
    The result equals thresholding Pillow's float bilinear resize of the map (same taps,
    clamped edges); an axis that shrinks (an image smaller than the network input) uses that resize.
    """
    shape = np.shape(probability)
    dtype = np.asarray(probability).dtype
    if not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)) or dtype not in (np.uint8, np.float16, np.float32):
        raise ValueError(f"expected uint8, float16 or float32 probabilities of shape (1, H, W) or (H, W), "
                         f"got {shape} {dtype}")
    level = np.float32(check_threshold(threshold) * (PROBABILITY_SCALE if dtype == np.uint8 else 1.0))
    small = np.reshape(probability, shape[-2:])
    height, width = int(original_size[0]), int(original_size[1])
    if height < small.shape[0] or width < small.shape[1]:  # a shrinking axis: the anti-aliased resize
        resized = Image.fromarray(small.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)
        return np.where(np.asarray(resized) > level, MASK_FOREGROUND_VALUE, 0).astype(np.uint8)
    rows, cols = _bilinear_taps(small.shape[0], height), _bilinear_taps(small.shape[1], width)
    # A cell is the block of output pixels that share their four input samples: foreground (background)
    # when all four are above (at or below) the level, whatever the weights; else it straddles.
    grid = small.astype(np.float32)
    # min / max over each sample and its right/lower neighbours (clamped at the edge): the cell of taps
    # (i, min(i + 1, n - 1)) reads entry i
    edge = np.pad(grid, ((0, 1), (0, 1)), mode="edge")
    lowest = np.minimum(np.minimum(edge[:-1, :-1], edge[1:, :-1]), np.minimum(edge[:-1, 1:], edge[1:, 1:]))
    highest = np.maximum(np.maximum(edge[:-1, :-1], edge[1:, :-1]), np.maximum(edge[:-1, 1:], edge[1:, 1:]))
    if rows.run_low.size != grid.shape[0] or cols.run_low.size != grid.shape[1]:  # not every tap pair is used
        lowest, highest = lowest[rows.run_low][:, cols.run_low], highest[rows.run_low][:, cols.run_low]
    cells = np.where(lowest > level, MASK_FOREGROUND_VALUE, 0).astype(np.uint8)
    straddle = (lowest <= level) & (highest > level)
    mask = np.repeat(np.repeat(cells, rows.run_length, axis=0), cols.run_length, axis=1)
    cell_row, cell_col = np.nonzero(straddle)
    if cell_row.size:  # interpolate the pixels of the straddling cells only (along the contour)
        n_rows, n_cols = rows.run_length[cell_row], cols.run_length[cell_col]
        counts = n_rows * n_cols
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        n_cols_each = np.repeat(n_cols, counts)
        y = np.repeat(rows.run_start[cell_row], counts) + within // n_cols_each
        x = np.repeat(cols.run_start[cell_col], counts) + within % n_cols_each
        wy, wx = rows.weight[y], cols.weight[x]
        top = grid[rows.low[y], cols.low[x]] * (1.0 - wx) + grid[rows.low[y], cols.high[x]] * wx
        bottom = grid[rows.high[y], cols.low[x]] * (1.0 - wx) + grid[rows.high[y], cols.high[x]] * wx
        mask[y, x] = np.where(top * (1.0 - wy) + bottom * wy > level, MASK_FOREGROUND_VALUE, 0)
    return mask


class _Taps:
    """Two-tap bilinear sampling of ``n_in`` samples at ``n_out`` positions, and its runs of equal taps."""

    def __init__(self, n_in: int, n_out: int) -> None:
        # Pillow's BILINEAR for upsampling: output pixel x samples the input at (x + 0.5) * n_in / n_out - 0.5,
        # edges clamped (the tap outside the image gets no weight)
        position = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        position = np.clip(position, 0.0, n_in - 1)
        self.low = np.floor(position).astype(np.intp)
        self.high = np.minimum(self.low + 1, n_in - 1)
        self.weight = (position - self.low).astype(np.float32)
        starts = np.flatnonzero(np.diff(self.low, prepend=-1))
        self.run_start = starts
        self.run_length = np.diff(starts, append=n_out)
        self.run_low, self.run_high = self.low[starts], self.high[starts]


@lru_cache(maxsize=256)
def _bilinear_taps(n_in: int, n_out: int) -> _Taps:
    return _Taps(n_in, n_out)


def boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel inner contour of a mask ``(H, W)``: foreground pixels with a background 4-neighbour.

    Pixels on the image border count as boundary when they are foreground. Returns uint8 0/255.
    (Computed inside the foreground's bounding box only, with in-place shifted ANDs.)
    """
    fg = np.asarray(mask) > 0
    out = np.zeros(fg.shape, dtype=np.uint8)
    rows = np.flatnonzero(fg.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(fg[rows[0]:rows[-1] + 1].any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    inside = fg[box]
    interior = inside.copy()
    interior[1:] &= inside[:-1]
    interior[:-1] &= inside[1:]
    interior[:, 1:] &= inside[:, :-1]
    interior[:, :-1] &= inside[:, 1:]
    # the box's own edge: interior only where the box does not touch the image border (outside the
    # box everything is background, so a foreground pixel on the box edge is always contour)
    interior[0] = interior[-1] = False
    interior[:, 0] = interior[:, -1] = False
    np.logical_xor(inside, interior, out=interior)  # interior lies inside the foreground: xor leaves the contour
    out[box] = interior.view(np.uint8) * np.uint8(MASK_FOREGROUND_VALUE)
    return out


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
    out = np.array(image, dtype=np.uint8, copy=True)
    pred = np.asarray(mask) > 0
    regions = [(pred, PREDICTION_COLOUR)]
    if ground_truth is not None:
        regions.append((np.asarray(ground_truth) > 0, GROUND_TRUTH_COLOUR))
    # only the masks' bounding box (grown by the contour's thickness) changes: a video frame's overlay then
    # costs a few ms instead of a float copy of the whole frame; the pixels are the same as blending it all
    rows = np.flatnonzero(np.logical_or.reduce([r.any(axis=1) for r, _ in regions]))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(np.logical_or.reduce([r.any(axis=0) for r, _ in regions]))
    grow = max(thickness - 1, 0)
    box = (slice(max(rows[0] - grow, 0), rows[-1] + grow + 1), slice(max(cols[0] - grow, 0), cols[-1] + grow + 1))
    # within the box the contour is the same as in the whole image: outside the box every mask is background,
    # and the grown margin holds the thickened contour (the image border cuts it in both alike)
    view = out[box]
    tint = pred[box]
    colour = np.asarray(PREDICTION_COLOUR, dtype=np.float32)
    view[tint] = np.clip((1 - alpha) * view[tint].astype(np.float32) + alpha * colour + 0.5, 0, 255).astype(np.uint8)
    for region, rgb in regions:
        view[_thick_boundary(region[box], thickness)] = rgb
    return out


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


def encode_png(array: np.ndarray) -> bytes:
    """A uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG, atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(tmp, format="PNG")
    tmp.replace(path)
