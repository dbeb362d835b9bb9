"""DICOM versions of ordinary images, as hospitals store such pictures: an RGB Secondary Capture, the JPEG file's
own stream encapsulated (JPEG Baseline, as an endoscope writes it), and a 12-bit MONOCHROME1 CR with a Rescale
Intercept and a window (as a chest X-ray comes). Used by the DICOM tests (tests/dicom_helpers.py) and by
``python -m references.serving.dicom_overlay wrap``; each file gets new Study/Series/SOP Instance UIDs and no Frame
of Reference (photographs have none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _base(sop_class: str, transfer_syntax: str, rows: int, columns: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "BANET-TEST", "Test^Phantom", "", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20261202", "120000", "1", "", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows, ds.Columns = rows, columns
    ds.PixelSpacing = [0.5, 0.5]
    return ds


def secondary_capture_rgb(pixels: np.ndarray, path: Path) -> Path:
    """``(H, W, 3)`` uint8 as an uncompressed RGB Secondary Capture (Explicit VR Little Endian)."""
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    ds = _base(SecondaryCaptureImageStorage, ExplicitVRLittleEndian, *pixels.shape[:2])
    ds.Modality, ds.ConversionType = "ES", "WSD"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def secondary_capture_jpeg(jpeg_file: Path, path: Path) -> Path:
    """A baseline JPEG file's own bytes encapsulated as a JPEG Baseline Secondary Capture (no re-encoding, as an
    endoscope writes it): ``YBR_FULL_422``, the photometric interpretation of a JFIF YCbCr 4:2:0 stream."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage

    with Image.open(jpeg_file) as img:
        width, height = img.size
        assert img.mode == "RGB" and img.format == "JPEG", (img.mode, img.format)
    ds = _base(SecondaryCaptureImageStorage, JPEGBaseline8Bit, height, width)
    ds.Modality, ds.ConversionType = "ES", "WSD"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([Path(jpeg_file).read_bytes()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


WINDOW_BASE, WINDOW_STEP, RESCALE_INTERCEPT = 1000, 8, -1024
"""12-bit stored value of display level g: ``BASE + STEP * (255 - g)`` (inverted: MONOCHROME1), so 255 levels span
2040 of the 4096 stored values, with values outside the window to check the clipping."""


def monochrome1_12bit(gray: np.ndarray, path: Path) -> Path:
    """``(H, W)`` uint8 as a 12-bit MONOCHROME1 CR image with a Rescale Intercept and a window (centre/width in
    rescaled units) whose display transform gives ``gray`` back exactly (a derivation in the test's docstring)."""
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian

    stored = (WINDOW_BASE + WINDOW_STEP * (255 - gray.astype(np.int32))).astype(np.uint16)
    stored[0, 0] = 0  # far below the window: shown as the window's end (white in MONOCHROME1)
    stored[-1, -1] = 4095  # far above: black
    ds = _base(ComputedRadiographyImageStorage, ExplicitVRLittleEndian, *gray.shape)
    ds.Modality = "CR"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, RESCALE_INTERCEPT, "US"
    width = 255 * WINDOW_STEP + 1
    ds.WindowCenter = WINDOW_BASE + RESCALE_INTERCEPT + 0.5 + (width - 1) / 2
    ds.WindowWidth = width
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
