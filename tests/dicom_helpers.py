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
