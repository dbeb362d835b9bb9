"""banet.dicom_seg without a server: the SEG of a known mask, read back with pydicom and highdicom, its references
to the source, the algorithm identification, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from banet.dicom import read_dicom
from banet.dicom_seg import Algorithm, build_segmentation, read_segmentation_masks, save_dataset
from dicom_helpers import (ThresholdSegmenter, enhanced_ct, pydicom_test_files, read_seg_with_highdicom,
                           secondary_capture_rgb)

pytestmark = pytest.mark.needs_dicom


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.where((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2, 255, 0).astype(np.uint8)


def check_references(seg, source) -> None:
    """The SEG belongs to the source's patient and study, references its series and SOP instance, and shares its
    frame of reference and, where the source is in a coordinate system, its pixel spacing (outside one the SEG has
    no Pixel Measures: banet.dicom_seg._seg_source)."""
    from highdicom.spatial import get_image_coordinate_system

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
    if "PixelSpacing" in source and get_image_coordinate_system(source) is not None:
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
    # highdicom's own reader: the same pixels, the segment and algorithm
    (from_hd,) = read_seg_with_highdicom(path, source, label="tumour", algorithm_version="export 3")
    np.testing.assert_array_equal(from_hd, mask > 0)
    opened = hd.seg.segread(str(path))
    (segment,) = opened.SegmentSequence
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lesion"
    (ident,) = segment.SegmentationAlgorithmIdentificationSequence
    assert "precision=int8" in ident.AlgorithmParameters and "backend=tensorrt_plan" in ident.AlgorithmParameters


@pytest.mark.parametrize("kind", ["made", "SC_rgb_rle.dcm", "JPEG2000.dcm"])
def test_seg_of_a_secondary_capture_reads_back_with_highdicom(tmp_path, kind):
    """Secondary captures with a Pixel Spacing outside a coordinate system: a built one without a Frame of Reference
    (as tests/dicom_helpers.py wraps Kvasir frames), pydicom's RLE one, and pydicom's JPEG 2000 one (a Frame of
    Reference UID but no plane position). highdicom 0.28 wrote their Pixel Measures without Slice Thickness and its
    own segread refused them; the caller's dataset is not modified (no Type 2 attributes added, spacing kept)."""
    import pydicom

    if kind == "made":
        rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
        source_path = secondary_capture_rgb(rgb, tmp_path / "sc.dcm")
    else:
        source_path = pydicom_test_files() / kind
    source = read_dicom(source_path).dataset
    del source.AccessionNumber  # a Type 2 attribute the SEG needs present: filled in a copy, not in the caller's
    before = {elem.keyword: elem.value for elem in source if elem.keyword != "PixelData"}
    rows, columns = int(source.Rows), int(source.Columns)
    mask = _disc((rows, columns), (rows // 3, columns // 2), min(rows, columns) // 4)
    path = save_dataset(build_segmentation(source, [mask], label="polyp"), tmp_path / "seg.dcm")
    assert {elem.keyword: elem.value for elem in source if elem.keyword != "PixelData"} == before
    (from_hd,) = read_seg_with_highdicom(path, source, label="polyp", algorithm_version="unknown")
    np.testing.assert_array_equal(from_hd, mask > 0)
    (from_pydicom,) = read_segmentation_masks(path)
    np.testing.assert_array_equal(from_pydicom, mask > 0)
    check_references(pydicom.dcmread(path), source)
    assert "PixelMeasuresSequence" not in pydicom.dcmread(path).SharedFunctionalGroupsSequence[0]


def test_seg_of_a_multi_frame_source_without_frame_of_reference_is_refused():
    image = read_dicom(pydicom_test_files() / "SC_rgb_rle_2frame.dcm")
    with pytest.raises(ValueError, match="multi-frame source .* needs its Frame of Reference UID and plane"):
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


def test_a_multi_frame_source_in_a_coordinate_system_gives_a_seg_with_a_frame_per_source_frame(tmp_path):
    """docs/dicom.md: a multi-frame input ``cine.dcm`` gives ``masks/cine_frame0001.png`` ... and a SEG with F frames,
    SEG frame N the mask of source frame N (read back by source frame with highdicom, and with pydicom)."""
    import pydicom

    from banet import processing
    from banet.client import segment_files

    source_path = enhanced_ct(tmp_path / "in" / "cine.dcm", frames=3)
    source = pydicom.dcmread(source_path)
    assert int(source.NumberOfFrames) == 3 and "FrameOfReferenceUID" in source
    (result,) = segment_files(ThresholdSegmenter(), [source_path], tmp_path / "out")
    assert result.status == "ok", result.error
    masks = [processing.load_mask(tmp_path / "out" / "masks" / f"cine_frame{i:04d}.png") for i in (1, 2, 3)]
    assert all(0 < m.mean() < 1 for m in masks) and not (masks[0] == masks[1]).all()  # frames differ: order matters
    seg_path = tmp_path / "out" / "seg" / "cine.dcm"
    seg = pydicom.dcmread(seg_path)
    assert int(seg.NumberOfFrames) == 3 and seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    check_references(seg, source)
    from_hd = read_seg_with_highdicom(seg_path, source, label="lesion")
    for from_highdicom, from_pydicom, mask in zip(from_hd, read_segmentation_masks(seg_path), masks):
        np.testing.assert_array_equal(from_highdicom, mask)
        np.testing.assert_array_equal(from_pydicom, mask)


@pytest.mark.parametrize("dicom_first", [False, True])
def test_a_multi_frame_dicom_and_an_image_with_the_same_output_name_collide(tmp_path, dicom_first):
    """``scan.dcm`` (3 frames) writes masks/scan_frame0001.png, as does the image ``scan_frame0001.png``: the later of
    the two is an error naming the clash, and the mask on disk is the earlier one's."""
    from banet import processing
    from banet.client import segment_files

    dicom = enhanced_ct(tmp_path / "in" / "scan.dcm", frames=3)
    image = tmp_path / "in" / "scan_frame0001.png"
    processing.save_png(np.full((8, 8, 3), 255, np.uint8), image)  # all foreground: unlike any CT frame's mask
    inputs = [dicom, image] if dicom_first else [image, dicom]
    first, later = segment_files(ThresholdSegmenter(), inputs, tmp_path / "out")
    assert first.status == "ok", first.error
    assert later.status == "error" and later.error == (
        f"{inputs[1]}: output name masks/scan_frame0001.png already used by {inputs[0]}")
    mask = processing.load_mask(tmp_path / "out" / "masks" / "scan_frame0001.png")
    assert mask.shape == ((128, 128) if dicom_first else (8, 8))
