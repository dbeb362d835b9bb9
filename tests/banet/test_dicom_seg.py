"""banet.dicom_seg without a server: the SEG of a known mask, read back with pydicom and highdicom, its references
to the source, the algorithm identification, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from banet.dicom import read_dicom
from banet.dicom_seg import Algorithm, build_segmentation, read_segmentation_masks, save_dataset
from dicom_helpers import pydicom_test_files

pytestmark = pytest.mark.needs_dicom


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.where((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2, 255, 0).astype(np.uint8)


def check_references(seg, source) -> None:
    """The SEG belongs to the source's patient and study, references its series and SOP instance, and shares its
    frame of reference and pixel spacing where the source has them."""
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.get("PatientID", "")
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.SOPInstanceUID != source.SOPInstanceUID
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence] == [source.SOPInstanceUID]
    for group in seg.PerFrameFunctionalGroupsSequence:
        (image,) = group.DerivationImageSequence[0].SourceImageSequence
        assert image.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert image.ReferencedSOPClassUID == source.SOPClassUID
    if "FrameOfReferenceUID" in source:
        assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    if "PixelSpacing" in source:
        measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in source.PixelSpacing]


def test_seg_of_an_mr_image_reads_back_pixel_for_pixel(tmp_path):
    import highdicom as hd
    import pydicom

    source_path = pydicom_test_files() / "MR_small.dcm"
    source = read_dicom(source_path).dataset
    mask = _disc((64, 64), (20, 40), 12)
    algorithm = Algorithm(version="export 3", precision="int8", source="test", extra={"backend": "tensorrt_plan"})
    path = save_dataset(build_segmentation(source, [mask], label="tumour", algorithm=algorithm), tmp_path / "seg.dcm")
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed into place
    seg = pydicom.dcmread(path)
    check_references(seg, pydicom.dcmread(source_path))
    (back,) = read_segmentation_masks(path)
    np.testing.assert_array_equal(back, mask > 0)
    # highdicom's own reader (the source has a frame of reference): the same pixels, the segment and algorithm
    opened = hd.seg.segread(str(path))
    np.testing.assert_array_equal(np.asarray(opened.pixel_array).reshape(64, 64) > 0, mask > 0)
    (segment,) = opened.SegmentSequence
    assert segment.SegmentLabel == "tumour" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lesion"
    (ident,) = segment.SegmentationAlgorithmIdentificationSequence
    assert ident.AlgorithmName == "BA-Net" and ident.AlgorithmVersion == "export 3"
    assert "precision=int8" in ident.AlgorithmParameters and "backend=tensorrt_plan" in ident.AlgorithmParameters


def test_seg_of_a_multi_frame_source_without_frame_of_reference_is_refused():
    image = read_dicom(pydicom_test_files() / "SC_rgb_rle_2frame.dcm")
    with pytest.raises(ValueError, match="multi-frame source .* needs its Frame of Reference UID"):
        build_segmentation(image.dataset, [np.zeros((100, 100), np.uint8)] * 2)


def test_masks_must_match_the_source_frames():
    image = read_dicom(pydicom_test_files() / "MR_small.dcm")
    with pytest.raises(ValueError, match="for a source of 1 frame"):
        build_segmentation(image.dataset, [np.zeros((64, 63), np.uint8)])


def test_algorithm_from_an_export_manifest(tmp_path):
    manifest = {"version": 4, "checkpoint": {"sha256": "ab" * 32},
                "artifacts": [{"name": "onnx_fp16_u8", "precision": "fp16"}], "engines": [],
                "promoted": {"artifact": "onnx_fp16_u8", "backend": "python_onnxruntime"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    algorithm = Algorithm.from_manifest(tmp_path / "manifest.json")
    assert (algorithm.version, algorithm.precision) == ("export 4", "fp16")
    assert algorithm.parameters()["artifact"] == "onnx_fp16_u8"
    del manifest["promoted"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no promoted artifact"):
        Algorithm.from_manifest(tmp_path / "manifest.json")
