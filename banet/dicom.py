"""DICOM in: pixel data decoded with pydicom and shown the way a viewer shows it, as ``(H, W, 3)`` uint8 frames.

    from banet.dicom import read_dicom
    image = read_dicom("scan.dcm")      # DicomImage: .frames (F of (H, W, 3) uint8), .dataset, .display

The display transform (docs/dicom.md), per photometric interpretation:

- ``MONOCHROME1`` / ``MONOCHROME2``: the Modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence,
  :func:`pydicom.pixels.apply_modality_lut`), then the first VOI LUT or window (Window Center/Width,
  :func:`pydicom.pixels.apply_voi_lut`), whose output range ``[y_min, y_max]`` is mapped linearly onto 0..255:
  what a viewer shows when it opens the image with its stored default window. pydicom's VOI output range is
  read from pydicom itself (the transform applied to values far below and above the window), not recomputed.
  Without a VOI LUT or window, the full range of the file's values after the Modality LUT (min..max over all
  frames) is mapped onto 0..255: viewers do the same for an image without a window (an "auto" or "full
  dynamic" window), and it keeps the contrast the model saw on 8-bit images; a nominal range (0..4095 for 12
  bits) would give a dark image whenever the data use part of it. ``MONOCHROME1`` is then inverted (its
  minimum is white). Grayscale is replicated to 3 channels (the network takes RGB).
- ``RGB``, ``YBR_FULL``, ``YBR_FULL_422`` (and ``YBR_RCT``/``YBR_ICT`` of JPEG 2000): pydicom returns RGB
  (``as_rgb``: its own YCbCr conversion or the decoder's); 16/32-bit samples are scaled by ``2**BitsStored - 1``
  (colour has no VOI window).
- ``PALETTE COLOR``: :func:`pydicom.pixels.apply_color_lut`, scaled by the LUT's entry bit depth.

Refused with :class:`DicomError` naming the file and the reason: not DICOM (no File Meta Information), objects
without image semantics (structured reports, RT plans/structures, RT dose, waveforms, segmentations, presentation
states: by SOP Class and by the absence of Pixel Data), a compressed transfer syntax that no installed plugin
decodes (the syntax UID and name, and the packages pydicom says would decode it), truncated or malformed pixel
data, float pixel data, unsupported photometric interpretations, and frames over :data:`banet.spec.MAX_IMAGE_PIXELS`.

pydicom is imported when a file is read, so ``import banet`` stays light (the ``dicom`` extra installs it).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from banet.spec import MAX_IMAGE_PIXELS

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
PREAMBLE_BYTES = 128
"""A DICOM Part 10 file starts with a 128-byte preamble, then ``b"DICM"`` (PS3.10 section 7.1)."""
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")
PALETTE = "PALETTE COLOR"
SUPPORTED_PHOTOMETRIC = (*GRAYSCALE, *COLOUR, PALETTE)

NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose (a dose grid, not an image to segment)",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation (already a segmentation, not an image)",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map (float pixels)",
}
"""SOP Classes that may carry Pixel Data without being an image a viewer displays for reading."""

INSTALL_HINT = "pip install 'banet-deploy[dicom]'"
"""The one line that installs pydicom, highdicom and the chosen decoder plugins (pyproject.toml's ``dicom`` extra)."""


class DicomError(ValueError):
    """A DICOM file cannot be segmented; the message names the file and why."""


@dataclass(frozen=True)
class DicomImage:
    """One DICOM file ready for the model.

    ``frames``: ``F`` arrays ``(H, W, 3)`` uint8 RGB (one for a single-frame file); ``dataset``: the pydicom
    Dataset as read (the SEG writer references it); ``display``: the transform applied, in words.
    """

    path: Path
    frames: tuple[np.ndarray, ...]
    dataset: object
    display: str

    @property
    def multi_frame(self) -> bool:
        return len(self.frames) > 1


def available() -> bool:
    """Whether pydicom is installed (``pip install 'banet-deploy[dicom]'``)."""
    import importlib.util

    return importlib.util.find_spec("pydicom") is not None


def has_dicom_preamble(path: str | Path) -> bool:
    """True when the file has the Part 10 ``DICM`` marker at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(PREAMBLE_BYTES)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_file(path: str | Path) -> bool:
    """A DICOM input: suffix ``.dcm`` / ``.dicom`` (any case), or the ``DICM`` marker (files without a suffix)."""
    path = Path(path)
    if not path.is_file() or path.name.startswith("."):
        return False
    return path.suffix.lower() in DICOM_SUFFIXES or (path.suffix == "" and has_dicom_preamble(path))


def _require_pydicom(path: Path):
    try:
        import pydicom
    except ImportError:
        raise DicomError(f"{path}: reading DICOM needs pydicom ({INSTALL_HINT})") from None
    return pydicom


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False):
    """``pydicom.dcmread`` with its errors turned into :class:`DicomError` naming the file."""
    path = Path(path)
    pydicom = _require_pydicom(path)
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about tolerated oddities; refusals raise below
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as err:
        raise DicomError(f"{path}: not a DICOM Part 10 file ({err}); a file without the File Meta Information "
                         "(no transfer syntax) is refused rather than guessed") from None
    except OSError as err:
        raise DicomError(f"{path}: cannot read ({err.strerror or err})") from None
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on malformed files
        raise DicomError(f"{path}: malformed DICOM ({type(err).__name__}: {err})") from None


def sop_class_name(ds) -> str:
    uid = ds.get("SOPClassUID")
    if uid is None:
        return "no SOP Class UID"
    return f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)


def check_image(ds, path: Path) -> None:
    """Refuse, naming why, a dataset that is not an image this model can read (before any decoding)."""
    sop = str(ds.get("SOPClassUID", ""))
    if sop in NON_IMAGE_SOP_CLASSES:
        raise DicomError(f"{path}: {NON_IMAGE_SOP_CLASSES[sop]}: SOP Class {sop_class_name(ds)} has no image to segment")
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise DicomError(f"{path}: float pixel data ({sop_class_name(ds)}) is not a displayable image")
    if "PixelData" not in ds:
        modality = ds.get("Modality", "no modality")
        raise DicomError(f"{path}: no Pixel Data: {sop_class_name(ds)}, modality {modality}, is not an image "
                         "(structured report, RT plan, waveform, ... or an image without its pixels)")
    for keyword in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation"):
        if keyword not in ds:
            raise DicomError(f"{path}: malformed image: the required element {keyword} is missing")
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomError(f"{path}: photometric interpretation {photometric!r} is not supported "
                         f"(supported: {', '.join(SUPPORTED_PHOTOMETRIC)})")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (TypeError, ValueError) as err:
        raise DicomError(f"{path}: malformed image header ({err})") from None
    if rows * columns > MAX_IMAGE_PIXELS:
        raise DicomError(f"{path}: {columns}x{rows} pixels per frame exceeds the limit of {MAX_IMAGE_PIXELS}")
    if frames < 1:
        raise DicomError(f"{path}: Number of Frames is {frames}")


def check_decoder(ds, path: Path) -> None:
    """Refuse a transfer syntax that no installed plugin decodes, naming it and what would decode it."""
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if ts is None:
        raise DicomError(f"{path}: malformed: the File Meta Information has no Transfer Syntax UID")
    if not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise DicomError(f"{path}: transfer syntax {ts} ({ts.name}): pydicom has no decoder for it") from None
    if not decoder.is_available:
        would = "; ".join(decoder.missing_dependencies) or "no plugin known to pydicom"
        raise DicomError(f"{path}: transfer syntax {ts} ({ts.name}) has no decoder installed; it would be decoded "
                         f"by: {would} ({INSTALL_HINT} installs the project's choice)")


DECODER_PREFERENCE = {"1.2.840.10008.1.2.4.50": "pillow"}
"""Transfer syntax -> the plugin tried first. JPEG Baseline: Pillow, the decoder of the project's JPEG/PNG path, so
a JPEG wrapped in DICOM gives the same pixels as the same JPEG file (pylibjpeg differs by up to 3 levels; measured
in bench/results/dicom_decoders_*). Other syntaxes: pydicom's own order among the installed plugins."""


def _pixels(ds, path: Path) -> np.ndarray:
    """All frames as pydicom decodes them: ``(F, H, W)`` or ``(F, H, W, 3)``, colour as RGB."""
    from pydicom.pixels import pixel_array

    ts = str(ds.file_meta.TransferSyntaxUID)
    preferred = DECODER_PREFERENCE.get(ts, "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                array = pixel_array(ds, decoding_plugin=preferred, as_rgb=True) if preferred else \
                    pixel_array(ds, as_rgb=True)
            except (ValueError, RuntimeError) as err:
                if not preferred or "not available" in str(err):
                    raise
                array = pixel_array(ds, as_rgb=True)  # the preferred plugin failed: pydicom's own order
    except Exception as err:  # noqa: BLE001 - decoders raise their own types; the message is what counts
        text = " ".join(str(err).split())
        kind = "truncated or malformed pixel data" if "less than expected" in text or "Missing" in text \
            else f"cannot decode the pixel data ({ds.file_meta.TransferSyntaxUID.name})"
        raise DicomError(f"{path}: {kind}: {text[:400]}") from None
    # pydicom returns (F, H, W[, 3]) for a multi-frame file, (H, W[, 3]) for one frame
    return array if int(ds.get("NumberOfFrames", 1) or 1) > 1 else array[None]


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``[low, high]`` linearly onto 0..255 uint8 (rounded; a constant image is 0)."""
    values = np.asarray(values, dtype=np.float64)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip(np.rint((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def _has_voi(ds) -> bool:
    return "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)


def _first(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def grayscale_display(stored: np.ndarray, ds) -> tuple[np.ndarray, str]:
    """``(F, H, W)`` stored values -> ``(F, H, W)`` uint8 as displayed, and the transform in words."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(stored, ds)
    if _has_voi(ds):
        shown = apply_voi_lut(values, ds, index=0)
        # the VOI output range as pydicom itself produces it: its transform of values far outside the window
        if "VOILUTSequence" in ds and not ("WindowCenter" in ds and "WindowWidth" in ds):
            probe = np.array([-2.0 ** 40, 2.0 ** 40])
            what = "VOI LUT (first of the VOI LUT Sequence)"
        else:
            centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            probe = np.array([centre - abs(width) - 1.0, centre + abs(width) + 1.0])
            what = f"window centre {centre:g} width {width:g} ({ds.get('VOILUTFunction', 'LINEAR')})"
        low, high = (float(v) for v in apply_voi_lut(probe.astype(np.float64), ds, index=0))
        low, high = min(low, high), max(low, high)
        gray = _scale(shown, low, high)
    else:
        low, high = float(np.min(values)), float(np.max(values))
        what = f"full range of the values {low:g}..{high:g} (no VOI LUT or window in the file)"
        gray = _scale(values, low, high)
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        what = "modality LUT, then " + what
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        gray = 255 - gray
        what += ", inverted (MONOCHROME1)"
    return gray, what


def display_frames(ds, path: str | Path = "image") -> tuple[tuple[np.ndarray, ...], str]:
    """Decode ``ds``'s pixel data and apply the display transform (module docstring): ``F`` frames ``(H, W, 3)`` uint8."""
    path = Path(path)
    check_image(ds, path)
    check_decoder(ds, path)
    array = _pixels(ds, path)
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric in GRAYSCALE:
        if array.ndim != 3:
            raise DicomError(f"{path}: {photometric} with {int(ds.SamplesPerPixel)} samples per pixel is malformed")
        gray, what = grayscale_display(array, ds)
        rgb = np.repeat(gray[..., None], 3, axis=-1)
        what += "; replicated to 3 channels"
    elif photometric == PALETTE:
        from pydicom.pixels import apply_color_lut

        colour = apply_color_lut(array, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        rgb = _scale(colour, 0, 2 ** bits - 1)
        what = f"palette colour expanded ({bits}-bit LUT entries)"
    else:
        bits = int(ds.get("BitsStored", ds.BitsAllocated))
        if array.ndim != 4 or array.shape[-1] != 3:
            raise DicomError(f"{path}: {photometric} pixel data of shape {array.shape} is not 3-sample colour")
        rgb = array.astype(np.uint8) if bits == 8 and array.dtype == np.uint8 else _scale(array, 0, 2 ** bits - 1)
        what = "RGB" if photometric == "RGB" else f"{photometric} converted to RGB by pydicom"
        if bits != 8:
            what += f", {bits}-bit samples scaled by {2 ** bits - 1}"
    frames = tuple(np.ascontiguousarray(frame) for frame in rgb)
    return frames, what


def read_dicom(path: str | Path) -> DicomImage:
    """Read one DICOM file into display-ready frames; :class:`DicomError` naming the file and reason otherwise."""
    path = Path(path)
    ds = read_dataset(path)
    frames, what = display_frames(ds, path)
    log.debug("%s: %d frame(s) %s, %s", path, len(frames), frames[0].shape, what)
    return DicomImage(path=path, frames=frames, dataset=ds, display=what)
