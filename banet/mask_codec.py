"""The compact mask of a served response: run lengths, zlib-compressed (numpy and the standard library only).

Chosen by measurement (``python -m references.serving.mask_encoding``, ``bench/results/mask_encoding_*``): on the
Kvasir-SEG test masks and 1920x1080 frames, uint32 run lengths + zlib level 1 was both the smallest and the
fastest to encode + decode of PNG (Pillow, mode ``L`` and 1-bit, levels 1 and 6), raw run lengths, ``packbits``
+ zlib and zlib of the raw bytes; ~0.02 % of the ``MASK`` + ``BOUNDARY`` tensors of a 1920x1080 frame.

Layout (all little endian)::

    b"BMR1"  zlib.compress( uint32 height, uint32 width, uint32 run lengths... , level 1 )

The runs cover the mask in row-major order, alternating background / foreground, background first (a mask
whose first pixel is foreground starts with a run of 0). Decoding gives back the exact ``(H, W)`` uint8 0 /
:data:`banet.spec.MASK_FOREGROUND_VALUE` array; malformed data raises :class:`MaskCodecError` naming why.
"""

from __future__ import annotations

import zlib

import numpy as np

from banet.spec import MASK_FOREGROUND_VALUE, MAX_IMAGE_PIXELS

FORMAT = "rle-u32-zlib1"
"""Name of the encoding (the one the ``MASK_ENCODED`` output carries)."""
MAGIC = b"BMR1"
ZLIB_LEVEL = 1
_RUN = np.dtype("<u4")


class MaskCodecError(ValueError):
    """Bytes that are not a mask this module encoded (wrong magic, corrupt, inconsistent sizes)."""


def encode_mask(mask: np.ndarray) -> bytes:
    """``(H, W)`` mask (bool, or uint8 with foreground > 0) -> compact bytes (see the module docstring)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    flat = mask.reshape(-1) > 0
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(edges)
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    body = np.asarray(mask.shape, _RUN).tobytes() + runs.astype(_RUN).tobytes()
    return MAGIC + zlib.compress(body, ZLIB_LEVEL)


def decode_mask(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Compact bytes -> the ``(H, W)`` uint8 mask, 0 or :data:`~banet.spec.MASK_FOREGROUND_VALUE`.

    Refuses (:class:`MaskCodecError`) a wrong magic, corrupt zlib data, a size over ``max_pixels`` and runs
    that do not add up to ``H * W``; the decompressed size is bounded before it is allocated.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MaskCodecError(f"a {FORMAT} mask is bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:len(MAGIC)] != MAGIC:
        raise MaskCodecError(f"not a {FORMAT} mask (magic {data[:len(MAGIC)]!r}, {len(data)} bytes)")
    inflate = zlib.decompressobj()
    limit = _RUN.itemsize * (max_pixels + 3)  # header + at most H*W + 1 runs
    try:
        raw = inflate.decompress(data[len(MAGIC):], limit)
    except zlib.error as err:
        raise MaskCodecError(f"corrupt {FORMAT} mask ({err})") from None
    if inflate.unconsumed_tail or not inflate.eof:
        raise MaskCodecError(f"{FORMAT} mask truncated or larger than {max_pixels} pixels allow")
    if len(raw) % _RUN.itemsize or len(raw) < 2 * _RUN.itemsize:
        raise MaskCodecError(f"{FORMAT} mask of {len(raw)} bytes after inflating: not a header and uint32 runs")
    values = np.frombuffer(raw, _RUN)
    height, width, runs = int(values[0]), int(values[1]), values[2:]
    if height * width > max_pixels:
        raise MaskCodecError(f"{FORMAT} mask claims {height}x{width} pixels, over the limit of {max_pixels}")
    if int(runs.sum(dtype=np.uint64)) != height * width:
        raise MaskCodecError(f"{FORMAT} mask runs cover {int(runs.sum(dtype=np.uint64))} pixels, not {height}x{width}")
    levels = np.zeros(runs.size, np.uint8)
    levels[1::2] = MASK_FOREGROUND_VALUE
    return np.repeat(levels, runs).reshape(height, width)
