"""A DICOM SEG drawn on its source, as a viewer overlays it (the picture in README, docs/serving.md, docs/dicom.md).

    python -m references.serving.dicom_overlay wrap IMAGE.jpg --out DCM          # DCM/<stem>_sc.dcm, DCM/<stem>_cr.dcm
    banet-client DCM --url HOST:8001 --out OUT --seg-label polyp
    python -m references.serving.dicom_overlay render DCM/<stem>_sc.dcm OUT/seg/<stem>_sc.dcm \\
        DCM/<stem>_cr.dcm OUT/seg/<stem>_cr.dcm --out docs/images/dicom_seg_overlay.png

``wrap`` makes two DICOM versions of an ordinary image (references/serving/dicom_samples.py): an RGB Secondary
Capture and a 12-bit MONOCHROME1 CR of its grey version with a Rescale Intercept and a window.

``render`` takes (source, SEG) pairs: the source is shown with banet/dicom.py's display transform (what the model was
given), the SEG is opened with highdicom's own reader and its segment fetched by reference to that source's SOP
instance (a SEG of another image is refused), the segment is tinted with its outline (banet.processing.overlay), and
the panels stand side by side at one height, each captioned with the source's photometric interpretation and bit
depth and the SEG's segment label and algorithm. Frame 1 of a multi-frame source (``--frame`` to choose).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CAPTION_HEIGHT = 28
"""Pixels of the caption strip above each panel (two lines of PIL's default font)."""


def wrap(image: Path, out_dir: Path, *, force: bool = False) -> list[Path]:
    """``out_dir/<stem>_sc.dcm`` (RGB Secondary Capture) and ``out_dir/<stem>_cr.dcm`` (12-bit MONOCHROME1 CR of
    the grey version) of an ordinary image file."""
    from PIL import Image

    from banet import processing
    from references.serving.dicom_samples import monochrome1_12bit, secondary_capture_rgb

    rgb = processing.load_image(image)
    paths = [out_dir / f"{Path(image).stem}_sc.dcm", out_dir / f"{Path(image).stem}_cr.dcm"]
    if not force and any(p.exists() for p in paths):
        raise FileExistsError(f"{', '.join(str(p) for p in paths if p.exists())} exists (pass --force to replace)")
    out_dir.mkdir(parents=True, exist_ok=True)
    secondary_capture_rgb(rgb, paths[0])
    monochrome1_12bit(np.asarray(Image.fromarray(rgb).convert("L")), paths[1])
    return paths


def segment_of(seg_path: Path, source, *, frame: int = 1) -> tuple[np.ndarray, object]:
    """``(mask (H, W) bool, segment item)``: segment 1 of the SEG at ``seg_path`` for frame ``frame`` of the pydicom
    Dataset ``source``, read with ``highdicom.seg.segread`` by source reference. Raises ValueError when the SEG does
    not reference ``source``."""
    import highdicom as hd

    seg = hd.seg.segread(str(seg_path))
    if source.SOPInstanceUID not in {uid for _, _, uid in seg.get_source_image_uids()}:
        raise ValueError(f"{seg_path} does not reference the source SOP instance {source.SOPInstanceUID}")
    if int(source.get("NumberOfFrames", 1) or 1) == 1:
        pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    else:
        pixels = seg.get_pixels_by_source_frame(source.SOPInstanceUID, [frame], segment_numbers=[1])
    return pixels[0, :, :, 0] > 0, seg.SegmentSequence[0]


def caption(source, segment, name: str) -> str:
    """Two lines: the source file and how it is stored; the segment and what made it."""
    ident = (segment.get("SegmentationAlgorithmIdentificationSequence") or [None])[0]
    made_by = segment.SegmentAlgorithmType
    if ident is not None:
        # banet.dicom_seg.Algorithm.parameters, written by highdicom as "key=value,key=value"
        params = dict(kv.split("=", 1) for kv in str(ident.get("AlgorithmParameters", "")).split(",") if "=" in kv)
        made_by = f"{ident.AlgorithmName} {ident.AlgorithmVersion}" + (
            f" ({params['precision']})" if "precision" in params else "")
    return (f"{name}: {source.PhotometricInterpretation}, {int(source.BitsStored)}-bit\n"
            f"SEG segment '{segment.SegmentLabel}' by {made_by}")


def render(pairs: list[tuple[Path, Path]], *, height: int = 320, frame: int = 1) -> np.ndarray:
    """The ``(source, SEG)`` pairs drawn side by side: ``(CAPTION_HEIGHT + height, sum of widths, 3)`` uint8."""
    from PIL import Image, ImageDraw

    from banet import processing
    from banet.dicom import read_dicom

    panels = []
    for source_path, seg_path in pairs:
        dicom = read_dicom(source_path)
        shown = dicom.frames[frame - 1]
        mask, segment = segment_of(seg_path, dicom.dataset, frame=frame)
        if mask.shape != shown.shape[:2]:
            raise ValueError(f"{seg_path}: segment {mask.shape} != source frame {shown.shape[:2]}")
        drawn = Image.fromarray(processing.overlay(shown, mask, thickness=3))
        width = round(drawn.width * height / drawn.height)
        panel = Image.new("RGB", (width, CAPTION_HEIGHT + height), "white")
        panel.paste(drawn.resize((width, height), Image.Resampling.BILINEAR), (0, CAPTION_HEIGHT))
        ImageDraw.Draw(panel).multiline_text((4, 2), caption(dicom.dataset, segment, Path(source_path).name),
                                             fill="black", spacing=2)
        panels.append(np.asarray(panel))
    return np.concatenate(panels, axis=1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m references.serving.dicom_overlay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wrap", help="DICOM versions (RGB secondary capture, 12-bit MONOCHROME1 CR) of an image")
    w.add_argument("image", type=Path)
    w.add_argument("--out", type=Path, required=True, help="folder for <stem>_sc.dcm and <stem>_cr.dcm")
    w.add_argument("--force", action="store_true", help="replace existing files")
    r = sub.add_parser("render", help="draw SEGs on their sources, side by side, into one PNG")
    r.add_argument("files", type=Path, nargs="+", help="SOURCE.dcm SEG.dcm [SOURCE.dcm SEG.dcm ...]")
    r.add_argument("--out", type=Path, required=True, help="the PNG to write")
    r.add_argument("--height", type=int, default=320, help="panel height in pixels (default: %(default)s)")
    r.add_argument("--frame", type=int, default=1, help="source frame of multi-frame files (default: %(default)s)")
    r.add_argument("--force", action="store_true", help="replace an existing PNG")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "wrap":
            for path in wrap(args.image, args.out, force=args.force):
                print(path)
            return 0
        if len(args.files) % 2:
            raise ValueError(f"render takes SOURCE SEG pairs, got {len(args.files)} files")
        if args.out.exists() and not args.force:
            raise FileExistsError(f"{args.out} exists (pass --force to replace)")
        from banet import processing

        picture = render(list(zip(args.files[::2], args.files[1::2])), height=args.height, frame=args.frame)
        processing.save_png(picture, args.out)
        print(f"{args.out}: {picture.shape[1]}x{picture.shape[0]}, {args.out.stat().st_size // 1024} KiB")
        return 0
    except (OSError, ValueError, AttributeError) as err:
        print(f"dicom_overlay: {type(err).__name__}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
