"""DICOM out: the served masks of one DICOM image as a DICOM Segmentation (highdicom), beside the PNG masks.

    from banet.dicom_seg import Algorithm, build_segmentation, save_dataset
    seg = build_segmentation(source_dataset, masks, label="lesion", algorithm=Algorithm.from_manifest(path))
    save_dataset(seg, "OUT/seg/scan.dcm")

The SEG is BINARY with one segment (``label``; category "Morphologically abnormal structure", type "Lesion",
SNOMED CT), one frame per source frame (empty frames kept, so frame N is the mask of source frame N), algorithm
type AUTOMATIC with an Algorithm Identification (name, version, and the served precision and model as
parameters). highdicom copies the patient and study from the source, references the source SOP Instance (and
series) in the Referenced Series / Source Image Sequences, and takes the Frame of Reference, the pixel spacing and
the plane position/orientation from the source where it has them (for a source without a Frame of Reference, the
pixel spacing only with a slice thickness: see :func:`_seg_source`).

What the client knows of the served model (:class:`Algorithm`): the client talks to a URL, not to the repository
on the server's disk, so the export's ``manifest.json`` (precision, export version, checkpoint) is read only when
the user passes it (``banet-client --manifest``); otherwise the version and backend that Triton reports for the
network model (gRPC model metadata / config) are used, and the precision is recorded as ``unknown``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from banet import spec

log = logging.getLogger(__name__)

DEFAULT_LABEL = "lesion"
ALGORITHM_NAME = "BA-Net"
MANUFACTURER = "banet-deploy"


@dataclass(frozen=True)
class Algorithm:
    """What the SEG says produced it: ``name``, ``version``, ``precision`` and the ``source`` of those values."""

    name: str = ALGORITHM_NAME
    version: str = "unknown"
    precision: str = "unknown"
    served_model: str = spec.ENSEMBLE_MODEL
    source: str = "defaults (no manifest, no server metadata)"
    extra: dict[str, str] = field(default_factory=dict)

    def parameters(self) -> dict[str, str]:
        return {"precision": self.precision, "served_model": self.served_model, "identified_from": self.source,
                **self.extra}

    @classmethod
    def from_manifest(cls, path: str | Path, *, served_model: str = spec.ENSEMBLE_MODEL) -> Algorithm:
        """From an export's ``manifest.json``: the promoted artifact's precision, the export version, the checkpoint."""
        path = Path(path)
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable export manifest ({err})") from None
        promoted = manifest.get("promoted") or {}
        by_name = {a.get("name"): a for a in [*manifest.get("artifacts", []), *manifest.get("engines", [])]}
        artifact = by_name.get(promoted.get("artifact"), {})
        precision = artifact.get("precision")
        if precision is None:
            raise ValueError(f"{path}: the manifest names no promoted artifact with a precision (was the export "
                             "promoted into a repository? pass the manifest of the export that was)")
        checkpoint = manifest.get("checkpoint") or {}
        return cls(version=f"export {manifest.get('version', '?')}", precision=str(precision),
                   served_model=served_model, source=f"export manifest {path}",
                   extra={"artifact": str(promoted.get("artifact")), "backend": str(promoted.get("backend")),
                          "checkpoint_sha256": str(checkpoint.get("sha256", ""))[:16]})

    @classmethod
    def from_server(cls, client, *, served_model: str = spec.ENSEMBLE_MODEL,
                    network_model: str = spec.NETWORK_MODEL, timeout_s: float = 10.0) -> Algorithm:
        """From Triton (a ``tritonclient.grpc`` client): the network model's served version and backend."""
        try:
            meta = client.get_model_metadata(network_model, client_timeout=timeout_s)
            config = client.get_model_config(network_model, client_timeout=timeout_s).config
        except Exception as err:  # noqa: BLE001 - metadata is a nicety; the SEG is still written
            log.warning("no model metadata from the server (%s); the SEG records default algorithm values", err)
            return cls(served_model=served_model)
        versions = sorted(meta.versions, key=lambda v: int(v) if v.isdigit() else -1)
        backend = config.platform or config.backend
        return cls(version=f"{network_model} version {versions[-1] if versions else '?'}", precision="unknown",
                   served_model=served_model, source="Triton model metadata (no --manifest given)",
                   extra={"backend": backend})


def build_segmentation(source, masks: list[np.ndarray], *, label: str = DEFAULT_LABEL,
                       algorithm: Algorithm | None = None, series_number: int = 300):
    """A highdicom Segmentation of ``source`` (a pydicom Dataset) from ``masks``: one ``(H, W)`` array per source
    frame (nonzero = the segment). Raises ValueError when the masks do not match the source's frames."""
    import highdicom as hd
    from highdicom.spatial import get_image_coordinate_system
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    algorithm = algorithm or Algorithm()
    rows, columns = int(source.Rows), int(source.Columns)
    frames = int(source.get("NumberOfFrames", 1) or 1)
    if len(masks) != frames or any(m.shape != (rows, columns) for m in masks):
        raise ValueError(f"{len(masks)} mask(s) of {[m.shape for m in masks][:3]} for a source of {frames} frame(s) "
                         f"of {rows}x{columns}")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not source.get(keyword):
            raise ValueError(f"the source has no {keyword}, which a SEG must reference")
    if frames > 1 and get_image_coordinate_system(source) is None:
        # highdicom writes one plane only for a source outside a coordinate system (highdicom/image.py,
        # _get_spatial_data: "Only one spatial location supported"; the Source Image reference then has no frame
        # number): it refuses some such sources and keeps the first frame of others (pydicom's
        # SC_rgb_rle_2frame.dcm). Inventing a frame of reference and plane positions the source does not have would
        # make the SEG claim a geometry that is not there, so: refused; the per-frame PNG masks are still written.
        raise ValueError(f"a SEG of a multi-frame source ({frames} frames) needs its Frame of Reference UID and "
                         "plane positions, which this source lacks (highdicom 0.28 writes one frame only without)")
    source = _seg_source(source)
    pixels = np.stack([np.asarray(m) > 0 for m in masks])
    if frames == 1:
        pixels = pixels[0]
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=codes.cid7162.ArtificialIntelligence, version=algorithm.version,
        source=MANUFACTURER, parameters=algorithm.parameters())
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identification)
    return hd.seg.Segmentation(
        source_images=[source], pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name, software_versions=algorithm.version,
        device_serial_number="0", omit_empty_frames=False, content_label="BANET",
        content_description=f"{algorithm.name} {label} ({algorithm.precision})"[:64])


TYPE2_PATIENT_STUDY = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
                       "StudyTime", "ReferringPhysicianName", "AccessionNumber")
"""Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1): present but possibly empty.
highdicom copies them from the source; a source that omits them (seen in pydicom's test files) means "empty"."""


PIXEL_MEASURES_WITHOUT_COORDINATES = ("PixelSpacing", "SpacingBetweenSlices")
"""Left out of the SEG of a source outside a coordinate system and without Slice Thickness (:func:`_seg_source`)."""


def _seg_source(source):
    """What highdicom is given for ``source``: a new Dataset over the same elements (the caller's is not modified),
    with the Type 2 patient/study attributes the source omits present and empty, and, for a source outside a
    coordinate system and without a Slice Thickness (a secondary capture with a calibrated Pixel Spacing), no Pixel
    Spacing. "Outside a coordinate system" is highdicom's own test (``highdicom.spatial.get_image_coordinate_system``
    is None): no Frame of Reference UID, or one without plane position (pydicom's JPEG2000.dcm).

    Why the last: from such a source highdicom 0.28 writes a Pixel Measures Sequence with Pixel Spacing and no
    Slice Thickness (highdicom/image.py ``_get_pixel_measures_sequence``), which the standard allows (Slice
    Thickness is Type 1C, required in a SEG only with a Frame of Reference: CP 1426), but its own reader requires
    both (highdicom/content.py ``PixelMeasuresSequence.from_sequence``, called by ``Segmentation.from_dataset``),
    so ``highdicom.seg.segread`` refuses the file (still so on highdicom's main branch, 2026-08). Inventing a slice
    thickness for a photograph would be false; leaving the Pixel Measures out loses nothing a viewer needs: the SEG
    frame is the referenced source frame pixel for pixel (Spatial Locations Preserved YES), whose spacing stays in
    the source."""
    from highdicom.spatial import get_image_coordinate_system
    from pydicom.dataset import Dataset

    missing = [k for k in TYPE2_PATIENT_STUDY if k not in source]
    drop = []
    if get_image_coordinate_system(source) is None and "SliceThickness" not in source:
        drop = [k for k in PIXEL_MEASURES_WITHOUT_COORDINATES if k in source]
    if not missing and not drop:
        return source
    # Dataset(source) and copy.copy(source) share the element dict with source (pydicom/dataset.py __init__):
    # a new dict keeps the caller's dataset as it was
    view = Dataset(dict(source.items()))
    if hasattr(source, "file_meta"):
        view.file_meta = source.file_meta
    for keyword in missing:
        setattr(view, keyword, "")
    for keyword in drop:
        delattr(view, keyword)
    return view


def save_dataset(dataset, path: str | Path) -> Path:
    """Write a pydicom Dataset to a hidden temporary file beside ``path``, then rename it into place (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        dataset.save_as(tmp, enforce_file_format=True)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_segmentation_masks(path: str | Path) -> list[np.ndarray]:
    """The frames of a one-segment binary DICOM SEG (as :func:`build_segmentation` writes them), read with pydicom,
    as ``(H, W)`` bool masks in source-frame order (each frame's Referenced Frame Number, where present).

    pydicom rather than highdicom's reader because ``banet-eval`` reads SEG masks that other tools wrote, and
    highdicom's ``segread`` refuses some valid ones (e.g. Pixel Measures without Slice Thickness, see
    :func:`_seg_source`); the SEGs this module writes are tested to read back with both.
    """
    import pydicom

    seg = pydicom.dcmread(path)
    array = np.asarray(seg.pixel_array)
    if array.ndim == 2:
        array = array[None]
    order = list(range(len(array)))
    groups = seg.get("PerFrameFunctionalGroupsSequence") or []
    numbers = []
    for group in groups:
        try:
            numbers.append(int(group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber))
        except (AttributeError, IndexError, TypeError, ValueError):
            break
    if len(numbers) == len(array):
        order = sorted(order, key=lambda i: numbers[i])
    return [array[i] > 0 for i in order]


# --- one DICOM input through the served model: what banet-client writes -----------------------------------
@dataclass(frozen=True)
class SegOptions:
    """``banet-client``'s SEG choices: the segment ``label`` and the :class:`Algorithm` recorded."""

    label: str = DEFAULT_LABEL
    algorithm: Algorithm = field(default_factory=Algorithm)


def output_paths(out_dir: Path, image: Path, frames: int) -> tuple[list[Path], list[Path], Path]:
    """``(masks, overlays, seg)``: ``masks/<stem>.png`` for one frame, ``masks/<stem>_frame0001.png`` ... for several
    (DICOM frame numbers start at 1); ``seg/<stem>.dcm``."""
    names = [f"{image.stem}.png"] if frames == 1 else [f"{image.stem}_frame{i:04d}.png" for i in range(1, frames + 1)]
    return ([out_dir / "masks" / n for n in names], [out_dir / "overlays" / n for n in names],
            out_dir / "seg" / f"{image.stem}.dcm")


def output_names(image: Path) -> list[str]:
    """What :func:`segment_dicom_file` writes for ``image``, relative to the output folder (``masks/...png`` per frame
    and ``seg/<stem>.dcm``; overlays mirror the masks), from the header only (``stop_before_pixels``). A file whose
    header cannot be read claims the one-frame names: it is reported as an error when it is segmented."""
    from banet.dicom import DicomError, read_dataset

    try:
        frames = max(1, int(read_dataset(image, stop_before_pixels=True).get("NumberOfFrames", 1) or 1))
    except (DicomError, TypeError, ValueError):
        frames = 1
    masks, _, seg = output_paths(Path("."), image, frames)
    return [*(p.as_posix() for p in masks), seg.as_posix()]


def segment_dicom_file(segmenter, image: Path, out_dir: Path, *, force: bool = False, threshold: float | None = None,
                       options: SegOptions | None = None):
    """Segment every frame of one DICOM file with ``segmenter.predict(frame)`` and write the PNG masks, overlays and
    the SEG, each atomically; existing outputs are kept unless ``force``. Returns a :class:`banet.client.FileResult`
    (never raises for a bad file). A SEG that cannot be made (the source lacks what a SEG must reference) is an
    error of that file; its masks are written all the same."""
    from banet import processing
    from banet.client import FileResult, InferenceError
    from banet.dicom import DicomError, read_dicom

    options = options or SegOptions()
    try:
        dicom = read_dicom(image)
    except DicomError as err:
        return FileResult(str(image), "error", error=str(err))
    masks_out, overlays_out, seg_out = output_paths(out_dir, image, len(dicom.frames))
    every = [*masks_out, *overlays_out, seg_out]
    if not force and all(p.exists() for p in every):
        return FileResult(str(image), "exists", mask=";".join(map(str, masks_out)), overlay=str(seg_out),
                          error="outputs exist (pass --force to replace)")
    predictions = []
    try:
        for index, frame in enumerate(dicom.frames):
            pred = segmenter.predict(frame, threshold=threshold)
            if pred.mask.shape != frame.shape[:2]:
                raise InferenceError(f"{image}: frame {index + 1}: server mask {pred.mask.shape} != image {frame.shape[:2]}")
            predictions.append(pred)
        for frame, pred, mask_path, overlay_path in zip(dicom.frames, predictions, masks_out, overlays_out):
            if force or not mask_path.exists():
                processing.save_png(pred.mask, mask_path)
            if force or not overlay_path.exists():
                processing.save_png(processing.overlay(frame, pred.mask), overlay_path)
    except (InferenceError, ValueError, TypeError, OSError) as err:
        return FileResult(str(image), "error", error=str(err))
    error = ""
    if force or not seg_out.exists():
        try:
            seg = build_segmentation(dicom.dataset, [p.mask for p in predictions], label=options.label,
                                     algorithm=options.algorithm)
            save_dataset(seg, seg_out)
        except Exception as err:  # noqa: BLE001 - highdicom raises many types for sources it cannot reference
            error = f"{image}: masks written; DICOM SEG not written: {type(err).__name__}: {err}"
    height, width = predictions[0].mask.shape
    return FileResult(str(image), "error" if error else "ok", error=error,
                      latency_ms=sum(p.latency_s for p in predictions) * 1000.0,
                      area=sum(p.area for p in predictions), height=int(height), width=int(width),
                      attempts=max(p.attempts for p in predictions), mask=";".join(map(str, masks_out)),
                      overlay=";".join(map(str, overlays_out)) + ("" if error else f";{seg_out}"))
