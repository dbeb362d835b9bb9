"""DICOM in: pixel data decoded with pydicom and shown the way a viewer shows it, as ``(H, W, 3)`` uint8 frames.

    from banet.dicom import read_dicom
    image = read_dicom("scan.dcm")      # DicomImage: .frames (F of (H, W, 3) uint8), .dataset, .display

The display transform (docs/dicom.md), per photometric interpretation:

- ``MONOCHROME1`` / ``MONOCHROME2``: the Modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence,
  :func:`pydicom.pixels.apply_modality_lut`), then one VOI transform, chosen explicitly: the first VOI LUT of the VOI
  LUT Sequence when the file has one (:func:`pydicom.pixels.apply_voi`, given integers), else the first window
  (Window Center/Width with its VOI LUT Function, :func:`pydicom.pixels.apply_windowing`). A file with both is shown
  with its LUT (pydicom's own default; docs/dicom.md) and the description says so. The VOI output range
  ``[y_min, y_max]`` is computed through the same function (the LUT's entries; the window applied to values far
  outside it), not recomputed, and mapped linearly onto 0..255: what a viewer shows when it opens the image with its
  stored default VOI. Without a VOI LUT or window, the full range of the file's values after the Modality LUT (min..max
  over all frames) is mapped onto 0..255: viewers do the same for an image without a window (an "auto" or "full
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
data, float pixel data, unsupported photometric interpretations, frames over :data:`banet.spec.MAX_IMAGE_PIXELS`, and
files over :data:`banet.spec.MAX_DICOM_BYTES` on disk, inflated (Deflated Explicit VR Little Endian) or decoded (from
the header, before decoding). Frames are decoded one at a time (:func:`pydicom.pixels.iter_pixels`) and converted
one at a time (float32 scaling).

pydicom is imported when a file is read, so ``import banet`` stays light (the ``dicom`` extra installs it).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from banet.spec import DICOM_SUFFIXES, MAX_DICOM_BYTES, MAX_IMAGE_PIXELS

log = logging.getLogger(__name__)

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


DEFLATED = "1.2.840.10008.1.2.1.99"
"""Deflated Explicit VR Little Endian: the whole data set after the File Meta Information is one deflate stream, which
``pydicom.dcmread`` inflates in one ``zlib.decompress`` with no limit (pydicom/filereader.py, ``read_partial``)."""
INFLATE_CHUNK = 16 * 1024 * 1024


def check_file_size(path: Path) -> None:
    """Refuse a file larger than :data:`banet.spec.MAX_DICOM_BYTES` before anything reads it."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DicomError(f"{path}: cannot read ({err.strerror or err})") from None
    if size > MAX_DICOM_BYTES:
        raise DicomError(f"{path}: {size} bytes on disk, over the DICOM file limit of {MAX_DICOM_BYTES} bytes "
                         "(banet.spec.MAX_DICOM_BYTES)")


def check_deflated(path: Path) -> None:
    """For a Deflated Explicit VR Little Endian file, inflate the data set in bounded chunks, counting and discarding
    the output, and refuse it (naming the syntax) once it passes :data:`banet.spec.MAX_DICOM_BYTES`; pydicom then
    inflates it again, known to be within the limit. Other syntaxes: nothing to do (their data set is read as
    stored, bounded by the file size)."""
    import zlib

    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import _read_file_meta_info, read_preamble

    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_preamble(fh, False)
            # the File Meta Information is never deflated (PS3.10 7.1); pydicom's own reader of it leaves the file
            # at the first byte of the data set (pydicom/filereader.py, _read_file_meta_info, as dcmread uses it)
            meta = _read_file_meta_info(fh)
            if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
                return
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            inflated = 0
            while not inflater.eof and (data := fh.read(INFLATE_CHUNK)):
                while data:
                    inflated += len(inflater.decompress(data, INFLATE_CHUNK))
                    if inflated > MAX_DICOM_BYTES:
                        raise DicomError(f"{path}: transfer syntax {DEFLATED} (Deflated Explicit VR Little Endian) "
                                         f"inflates to more than the DICOM file limit of {MAX_DICOM_BYTES} bytes "
                                         "(banet.spec.MAX_DICOM_BYTES; a decompression bomb or a very large file)")
                    data = inflater.unconsumed_tail
    except DicomError:
        raise
    except (InvalidDicomError, OSError):
        return  # not Part 10 or unreadable: dcmread says so in its own words (read_dataset)
    except zlib.error as err:
        raise DicomError(f"{path}: malformed deflated data set ({err})") from None
    except Exception:  # noqa: BLE001 - a malformed File Meta Information: dcmread reports it (read_dataset)
        return


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False):
    """``pydicom.dcmread`` with its errors turned into :class:`DicomError` naming the file; a file over
    :data:`banet.spec.MAX_DICOM_BYTES` on disk or inflated is refused before pydicom reads it."""
    path = Path(path)
    pydicom = _require_pydicom(path)
    from pydicom.errors import InvalidDicomError

    check_file_size(path)
    check_deflated(path)
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
        samples, bits = int(ds.SamplesPerPixel), int(ds.BitsAllocated)
    except (TypeError, ValueError) as err:
        raise DicomError(f"{path}: malformed image header ({err})") from None
    if min(rows, columns, samples, bits) < 1:
        raise DicomError(f"{path}: malformed image header: {columns}x{rows} pixels, {samples} samples of {bits} bits")
    if rows * columns > MAX_IMAGE_PIXELS:
        raise DicomError(f"{path}: {columns}x{rows} pixels per frame exceeds the limit of {MAX_IMAGE_PIXELS}")
    if frames < 1:
        raise DicomError(f"{path}: Number of Frames is {frames}")
    decoded = decoded_bytes(frames, rows, columns, samples, bits)
    if decoded > MAX_DICOM_BYTES:
        raise DicomError(f"{path}: {frames} frame(s) of {columns}x{rows} pixels ({samples} sample(s) of {bits} bits) "
                         f"decode to {decoded} bytes with their display frames, over the DICOM file limit of "
                         f"{MAX_DICOM_BYTES} bytes (banet.spec.MAX_DICOM_BYTES); refused before decoding")


def decoded_bytes(frames: int, rows: int, columns: int, samples: int, bits_allocated: int) -> int:
    """What reading a file holds: the decoded frames (pydicom gives 1-bit data one byte a sample) and their ``(H, W,
    3)`` uint8 display frames (:func:`display_frames`), counted against :data:`banet.spec.MAX_DICOM_BYTES`."""
    return frames * rows * columns * (samples * max(1, (bits_allocated + 7) // 8) + 3)


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


def _decode(ds, plugin: str) -> list[np.ndarray]:
    from pydicom.pixels import iter_pixels

    options = {"decoding_plugin": plugin} if plugin else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(iter_pixels(ds, as_rgb=True, **options))


def _frames(ds, path: Path) -> list[np.ndarray]:
    """Each frame as pydicom decodes it, one at a time (``pydicom.pixels.iter_pixels``): ``(H, W)`` or ``(H, W, 3)``,
    colour as RGB. The decoded size was checked from the header first (:func:`check_image`)."""
    preferred = DECODER_PREFERENCE.get(str(ds.file_meta.TransferSyntaxUID), "")
    try:
        try:
            return _decode(ds, preferred)
        except (ValueError, RuntimeError) as err:
            if not preferred or "not available" in str(err):
                raise
            return _decode(ds, "")  # the preferred plugin failed: pydicom's own order
    except Exception as err:  # noqa: BLE001 - decoders raise their own types; the message is what counts
        text = " ".join(str(err).split())
        kind = "truncated or malformed pixel data" if "less than expected" in text or "Missing" in text \
            else f"cannot decode the pixel data ({ds.file_meta.TransferSyntaxUID.name})"
        raise DicomError(f"{path}: {kind}: {text[:400]}") from None


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``[low, high]`` linearly onto 0..255 uint8 (rounded; a constant image is 0); one frame at a time, in float32."""
    if high <= low:
        return np.zeros(np.shape(values), dtype=np.uint8)
    scaled = np.asarray(values, dtype=np.float32) - np.float32(low)
    scaled *= np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _first(value) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _has_window(ds) -> bool:
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def _has_voi_lut(ds) -> bool:
    items = ds.get("VOILUTSequence")
    return bool(items) and items[0].get("LUTDescriptor") is not None and items[0].get("LUTData") is not None


def _voi_lut_view(ds):
    """``ds`` for :func:`pydicom.pixels.apply_voi`, with the first LUT's entries read as 16-bit where they are 8-bit.

    pydicom 3.0 (pydicom/pixels/processing.py, ``apply_voi``) holds the LUT indices in an array of the entries' dtype:
    for 8-bit entries, uint8, so a LUT of more than 256 entries (4096 for a 12-bit CR) wraps its indices (stored
    1024 -> entry 0; measured: [0, 1024, 2048, 3072, 4095] -> [0, 0, 0, 0, 16]). The same entries as uint16 index
    correctly and give the same values. The caller's dataset is not modified (new elements in a new dict)."""
    from pydicom.dataset import Dataset

    item = ds.VOILUTSequence[0]
    descriptor = [int(v) for v in item.LUTDescriptor]
    if descriptor[2] != 8:
        return ds
    wide = Dataset(dict(item.items()))
    wide.add_new(0x00283002, item["LUTDescriptor"].VR, [descriptor[0], descriptor[1], 16])
    view = Dataset(dict(ds.items()))
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta
    view.add_new(0x00283010, "SQ", [wide])
    return view


class _Voi:
    """The one VOI transform a grayscale file is shown with, and its output range ``[low, high]`` computed by the same
    function: the first VOI LUT of the VOI LUT Sequence when there is one (``apply_voi``), else the first window
    (``apply_windowing``), else none (the full range of the values; :func:`grayscale_display`). A file with both is
    shown with its LUT, as pydicom's ``apply_voi_lut`` does by default (``prefer_lut=True``); docs/dicom.md says why."""

    def __init__(self, ds) -> None:
        from pydicom.pixels import apply_voi, apply_windowing

        self.kind = "lut" if _has_voi_lut(ds) else "window" if _has_window(ds) else None
        self.low = self.high = 0.0
        if self.kind == "lut":
            self.ds = _voi_lut_view(ds)
            item = ds.VOILUTSequence[0]
            entries, self.first = int(item.LUTDescriptor[0]) or 2 ** 16, int(item.LUTDescriptor[1])
            self.last = self.first + entries - 1
            # every entry through apply_voi itself: its output range is the LUT's (the data, not the descriptor's
            # nominal bit depth, which some CRs overstate)
            table = apply_voi(np.arange(self.first, self.last + 1, dtype=np.int64), self.ds, index=0)
            self.low, self.high = float(table.min()), float(table.max())
            explanation = str(item.get("LUTExplanation", "")).strip()
            self.what = (f"VOI LUT (first of the VOI LUT Sequence{': ' + explanation if explanation else ''}, "
                         f"{entries} entries, output {self.low:g}..{self.high:g})")
            if _has_window(ds):
                self.what += (f"; the file's window (centre {_first(ds.WindowCenter):g} width "
                              f"{_first(ds.WindowWidth):g}), an alternative view, not applied")
            self._apply = apply_voi
        elif self.kind == "window":
            self.ds = ds
            centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            # values far outside the window give apply_windowing's own y_min and y_max (LINEAR, LINEAR_EXACT; the
            # SIGMOID's asymptotes to within exp(-256))
            probe = np.array([centre - 64 * abs(width) - 1.0, centre + 64 * abs(width) + 1.0])
            low, high = (float(v) for v in apply_windowing(probe, ds, index=0))
            self.low, self.high = min(low, high), max(low, high)
            self.what = f"window centre {centre:g} width {width:g} ({ds.get('VOILUTFunction', 'LINEAR')})"
            self._apply = apply_windowing

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "lut":
            # the LUT indexes integers (pydicom warns that float input "may give incorrect results"): the Modality
            # LUT output rounded, and clipped to the LUT's input range (what the LUT does to values outside it)
            values = np.clip(np.rint(values), self.first, self.last).astype(np.int64)
        return self._apply(values, self.ds, index=0)


def grayscale_display(stored: list[np.ndarray], ds) -> tuple[list[np.ndarray], str]:
    """``F`` stored frames ``(H, W)`` -> ``F`` frames ``(H, W)`` uint8 as displayed, and the transform in words. One
    frame at a time (the Modality LUT and the VOI each make one frame's float64 array)."""
    from pydicom.pixels import apply_modality_lut

    voi = _Voi(ds)
    if voi.kind is None:
        low, high = np.inf, -np.inf
        for frame in stored:  # one range over all frames: a cine's frames stay comparable
            values = apply_modality_lut(frame, ds)
            low, high = min(low, float(np.min(values))), max(high, float(np.max(values)))
        gray = [_scale(apply_modality_lut(frame, ds), low, high) for frame in stored]
        what = f"full range of the values {low:g}..{high:g} (no VOI LUT or window in the file)"
    else:
        gray = [_scale(voi(apply_modality_lut(frame, ds)), voi.low, voi.high) for frame in stored]
        what = voi.what
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        what = "modality LUT, then " + what
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        gray = [255 - frame for frame in gray]
        what += ", inverted (MONOCHROME1)"
    return gray, what


def display_frames(ds, path: str | Path = "image") -> tuple[tuple[np.ndarray, ...], str]:
    """Decode ``ds``'s pixel data and apply the display transform (module docstring): ``F`` frames ``(H, W, 3)`` uint8.
    The header is checked first (:func:`check_image`: the frame size and the whole file's decoded size), then the
    frames are decoded and converted one at a time."""
    path = Path(path)
    check_image(ds, path)
    check_decoder(ds, path)
    stored = _frames(ds, path)
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric in GRAYSCALE:
        if any(frame.ndim != 2 for frame in stored):
            raise DicomError(f"{path}: {photometric} with {int(ds.SamplesPerPixel)} samples per pixel is malformed")
        gray, what = grayscale_display(stored, ds)
        del stored
        rgb = [np.repeat(frame[..., None], 3, axis=-1) for frame in gray]
        what += "; replicated to 3 channels"
    elif photometric == PALETTE:
        from pydicom.pixels import apply_color_lut

        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        rgb = [_scale(apply_color_lut(frame, ds), 0, 2 ** bits - 1) for frame in stored]
        what = f"palette colour expanded ({bits}-bit LUT entries)"
    else:
        bits = int(ds.get("BitsStored", ds.BitsAllocated))
        if any(frame.ndim != 3 or frame.shape[-1] != 3 for frame in stored):
            raise DicomError(f"{path}: {photometric} pixel data of shape {stored[0].shape} is not 3-sample colour")
        rgb = [frame if bits == 8 and frame.dtype == np.uint8 else _scale(frame, 0, 2 ** bits - 1) for frame in stored]
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
