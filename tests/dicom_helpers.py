"""DICOM files for the tests: pydicom's own test files (read from the package folder, never fetched), DICOM versions
of real images (references/serving/dicom_samples.py), and a SEG read back with highdicom (imported by name: pytest
puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# the DICOM versions of ordinary images: one definition, shared with references/serving/dicom_overlay.py
from references.serving.dicom_samples import (monochrome1_12bit, secondary_capture_jpeg,  # noqa: F401
                                              secondary_capture_rgb)


def pydicom_test_files() -> Path:
    """``pydicom/data/test_files``: listed directly (``get_testdata_files`` would try the internet)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def expected_monochrome1_display(gray: np.ndarray) -> np.ndarray:
    """What the viewer shows for :func:`monochrome1_12bit`: ``gray``, with the two out-of-window corners clipped."""
    shown = gray.copy()
    shown[0, 0] = 255  # stored 0 is below the window -> VOI minimum -> inverted: white
    shown[-1, -1] = 0
    return shown


def read_seg_with_highdicom(path: Path, source, *, label: str, algorithm_version: str | None = None) -> list[np.ndarray]:
    """Open a SEG written by ``banet.dicom_seg`` with highdicom's own reader (``highdicom.seg.segread``), check what
    a consumer of it relies on (one BINARY segment ``label`` made by BA-Net, the source's study, series and SOP
    instance referenced), and return its masks per source frame, ``(H, W)`` bool, fetched by source reference
    (``get_pixels_by_source_instance`` / ``get_pixels_by_source_frame``), not by the SEG's frame order."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    assert seg.segmentation_type == hd.seg.SegmentationTypeValues.BINARY
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == label and segment.SegmentAlgorithmType == "AUTOMATIC"
    (ident,) = segment.SegmentationAlgorithmIdentificationSequence
    assert ident.AlgorithmName == "BA-Net" and ident.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    if algorithm_version is not None:
        assert ident.AlgorithmVersion == algorithm_version, ident.AlgorithmVersion
    assert seg.get_source_image_uids() == [(source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)]
    frames = int(source.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    else:
        pixels = seg.get_pixels_by_source_frame(source.SOPInstanceUID, list(range(1, frames + 1)), segment_numbers=[1])
    assert pixels.shape == (frames, int(source.Rows), int(source.Columns), 1), pixels.shape
    return [pixels[i, :, :, 0] > 0 for i in range(frames)]


def _dataset(sop_class: str, transfer_syntax: str, rows: int, columns: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.TransferSyntaxUID = sop_class, transfer_syntax
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality, ds.Rows, ds.Columns = "BANET-TEST", "CR", rows, columns
    return ds


def cr_with_voi_lut_and_window(stored: np.ndarray, path: Path, *, lut_bits: int) -> Path:
    """A 12-bit MONOCHROME2 CR carrying both VOI choices of PS3.3 C.11.2 (as CR/DX files often do): a linear VOI LUT
    of 4096 entries, ``round(255 i / 4095)``, with ``lut_bits``-bit entries (8 or 16), and a narrow window (centre
    2048, width 400) that would show something else."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian

    ds = _dataset(ComputedRadiographyImageStorage, ExplicitVRLittleEndian, *stored.shape)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 400
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, lut_bits])  # LUT Descriptor: US or SS
    item.LUTExplanation = "linear"
    item.add_new(0x00283006, "US", [int(v) for v in voi_lut_entries()])  # LUT Data: US (or OW) per PS3.3 C.11.2
    ds.VOILUTSequence = [item]
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def voi_lut_entries() -> np.ndarray:
    """The VOI LUT of :func:`cr_with_voi_lut_and_window`: 12-bit input linearly onto 0..255."""
    return np.rint(np.arange(4096) * 255 / 4095).astype(np.int64)


def frame_count_bomb(path: Path, *, frames: int, rows: int, columns: int, fragments: int = 16) -> Path:
    """A small RLE file whose header claims ``frames`` frames of ``columns x rows`` (a few RLE fragments of one run
    each): a decoder that trusts the header allocates ``frames * rows * columns`` bytes."""
    import struct

    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless, SecondaryCaptureImageStorage

    ds = _dataset(SecondaryCaptureImageStorage, RLELossless, rows, columns)
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    segment = struct.pack("<16I", 1, 64, *[0] * 14) + b"\x81\x00"  # RLE header, one segment: 128 zeros
    ds.PixelData = encapsulate([segment] * fragments)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def deflate_bomb(path: Path, inflated_bytes: int) -> Path:
    """A Deflated Explicit VR Little Endian file whose data set is ``inflated_bytes`` zero bytes (about 1/1000 of that
    on disk). Each 16 MiB of zeros is deflated once and repeated: a full flush resets the compressor, so every
    chunk's compressed bytes are the same."""
    import zlib

    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    chunk = 16 * 1024 * 1024
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflater.compress(bytes(chunk)) + deflater.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(inflated_bytes, chunk)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fh, meta, enforce_standard=True)
        fh.write(block * count)
        fh.write(deflater.compress(bytes(rest)) + deflater.flush())
    return path


def enhanced_ct(path: Path, frames: int = 3) -> Path:
    """A multi-frame source in a patient coordinate system: ``frames`` copies of pydicom's CT_small.dcm, 5 mm apart and
    each shifted sideways (so that every frame's mask differs), converted by highdicom into one Legacy Converted
    Enhanced CT Image (Frame of Reference, shared orientation and pixel measures, a Plane Position per frame)."""
    import copy

    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid

    source = pydicom.dcmread(pydicom_test_files() / "CT_small.dcm")
    series, legacy = generate_uid(), []
    for index in range(frames):
        ds = copy.deepcopy(source)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.InstanceNumber = series, index + 1
        x, y, z = (float(v) for v in source.ImagePositionPatient)
        ds.ImagePositionPatient, ds.SliceLocation = [x, y, z + 5.0 * index], z + 5.0 * index
        ds.PixelData = np.roll(source.pixel_array, 16 * index, axis=1).tobytes()
        legacy.append(ds)
    image = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=legacy, series_instance_uid=generate_uid(), series_number=9, sop_instance_uid=generate_uid(),
        instance_number=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save_as(path, enforce_file_format=True)
    return path


class ThresholdSegmenter:
    """A stand-in for TritonSegmenter without a server: the mask of an image (a path or a frame) is its red channel
    over 127."""

    def predict(self, image, threshold=None):
        from banet import processing
        from banet.client import Prediction

        pixels = image if isinstance(image, np.ndarray) else processing.load_image(image)
        mask = np.where(pixels[..., 0] > 127, 255, 0).astype(np.uint8)
        return Prediction(mask, None, int((mask > 0).sum()), latency_s=0.0)
