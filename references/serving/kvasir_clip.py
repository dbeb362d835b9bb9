"""A test video from real Kvasir-SEG frames: the test split's images in name order, each held for a few frames.

    python -m references.serving.kvasir_clip clip720.mp4 --data ../shared/data --size 1280x720 --fps 25 --seconds 8

Each image is scaled to fit ``--size`` keeping its aspect ratio and centred on black (an endoscope's view
with its dark border), then shown for ``--hold`` frames, drifting ``--pan`` pixels per frame (so that every
frame differs and the encoder and decoder see motion, as in a real recording); the clip is H.264 (libx264 from the PyAV wheel,
:func:`banet.video.write_video`), written atomically, refused if it exists unless ``--force``. Kvasir-SEG is
a still-image set: the clip is a slideshow at a video's rate and size, not a real colonoscopy recording
(consecutive frames are identical within a hold, then jump). The clip is not committed; the tests make a
small one in a temporary folder.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def fit_frame(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` ``(h, w, 3)`` uint8 scaled to fit ``(height, width)`` with its aspect kept, centred on black."""
    from banet import processing

    scale = min(width / image.shape[1], height / image.shape[0])
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top:top + h, left:left + w] = processing.resize_image(image, (h, w))
    return canvas


def kvasir_frames(data: str | Path, *, width: int, height: int, fps: float, seconds: float, hold: int,
                  pan: int = 2, split: str = "test") -> Iterator[np.ndarray]:
    """``round(fps * seconds)`` frames: the ``split`` images of ``data/kvasir-seg`` in name order, ``hold`` frames
    each, the view moving ``pan`` pixels right and down per frame."""
    from banet import processing
    from banet.data.pairs import find_pairs

    pairs = sorted(find_pairs(Path(data) / "kvasir-seg", split), key=lambda p: p.name)
    total = round(fps * seconds)
    needed = math.ceil(total / hold)
    if needed > len(pairs):
        raise ValueError(f"{needed} images needed ({total} frames, {hold} each) but the {split} split has {len(pairs)}")
    for index in range(total):
        step = index % hold
        if step == 0:
            margin = pan * (hold - 1)
            big = fit_frame(processing.load_image(pairs[index // hold].image), width + margin, height + margin)
        yield np.ascontiguousarray(big[step * pan:step * pan + height, step * pan:step * pan + width])


def parse_size(text: str) -> tuple[int, int]:
    """``1280x720`` -> ``(1280, 720)``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 2 or height < 2:
        raise argparse.ArgumentTypeError(f"size too small: {text}")
    return width, height


def make_clip(out: str | Path, data: str | Path, *, size: tuple[int, int] = (1280, 720), fps: float = 25.0,
              seconds: float = 8.0, hold: int = 5, pan: int = 2, split: str = "test", force: bool = False) -> Path:
    from banet.video import write_video

    width, height = size
    return write_video(kvasir_frames(data, width=width, height=height, fps=fps, seconds=seconds, hold=hold, pan=pan,
                                     split=split),
                       out, fps=fps, force=force)


def main(argv: list[str] | None = None) -> int:
    from banet.data import data_root

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the clip to write (.mp4)")
    p.add_argument("--data", type=Path, default=data_root(), help="folder holding kvasir-seg/ (default: %(default)s)")
    p.add_argument("--split", default="test", help="which split's images (default: %(default)s)")
    p.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default: 1280x720)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=8.0, help="length (default: %(default)s)")
    p.add_argument("--hold", type=int, default=5, help="frames per image (default: %(default)s)")
    p.add_argument("--pan", type=int, default=2, help="pixels the view moves per frame (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing clip")
    args = p.parse_args(argv)
    if not (args.data / "kvasir-seg").is_dir():
        p.error(f"{args.data / 'kvasir-seg'}: not found (give --data)")
    try:
        path = make_clip(args.out, args.data, size=args.size, fps=args.fps, seconds=args.seconds, hold=args.hold,
                         pan=args.pan, split=args.split, force=args.force)
    except (FileExistsError, ValueError) as err:
        print(f"kvasir_clip: {err}", file=sys.stderr)
        return 2
    print(f"{path}: {round(args.fps * args.seconds)} frames, {args.size[0]}x{args.size[1]} at {args.fps:g} fps, "
          f"{path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
