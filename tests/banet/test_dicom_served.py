"""DICOM through the real tritonserver and gRPC client (the session's one served tiny model, tests/serving_fixtures.py):
every pydicom test file gives a mask per frame of its own size and a SEG, or a clear error; DICOM versions of real
Kvasir-SEG images give the masks of the original images' decoded pixels; ``banet-client scan.dcm --url --out OUT``
writes ``OUT/masks/scan.png`` and ``OUT/seg/scan.dcm``. Every SEG is read back with pydicom and with highdicom's own
reader and equals the PNG mask."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from banet import processing
from banet.client import collect_images, segment_files
from banet.dicom_seg import Algorithm, SegOptions, read_segmentation_masks
from banet.spec import MAX_DICOM_BYTES
from dicom_helpers import (deflate_bomb, enhanced_ct, expected_monochrome1_display, frame_count_bomb,
                           monochrome1_12bit, pydicom_test_files, read_seg_with_highdicom, secondary_capture_jpeg,
                           secondary_capture_rgb)

pytestmark = [pytest.mark.needs_dicom, pytest.mark.needs_triton]

NO_IMAGE = r"no Pixel Data"
NO_SEG = r"masks written; DICOM SEG not written"
EXPECTED = {
    # name: (frames of masks written, error pattern or None)
    "693_J2KI.dcm": (1, NO_SEG + r".*Frame Of Reference UID"),  # a CT without the frame of reference its IOD requires
    "CT_small.dcm": (1, None), "ExplVR_BigEnd.dcm": (1, NO_SEG + r".*non-conformant value"),
    "ExplVR_BigEndNoMeta.dcm": (0, r"not a DICOM Part 10 file"), "ExplVR_LitEndNoMeta.dcm": (0, r"not a DICOM Part 10"),
    "GDCMJ2K_TextGBR.dcm": (1, None), "J2K_pixelrep_mismatch.dcm": (1, None),
    "JPEG-lossy.dcm": (0, r"cannot decode the pixel data \(JPEG Extended"),
    "JPEG2000-embedded-sequence-delimiter.dcm": (0, r"cannot decode the pixel data \(JPEG 2000"),
    "JPEG2000.dcm": (1, None), "JPGExtended.dcm": (1, None),
    "JPEGLSNearLossless_08.dcm": (1, NO_SEG + r".*no StudyInstanceUID"),
    "JPEGLSNearLossless_16.dcm": (1, NO_SEG + r".*no StudyInstanceUID"),
    **{n: (1, None) for n in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
                              "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                              "MR_small_padded.dcm")},
    "MR_truncated.dcm": (0, r"truncated or malformed pixel data"),
    **{n: (1, None) for n in ("SC_jpeg_no_color_transform.dcm", "SC_jpeg_no_color_transform_2.dcm",
                              "SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+n2.dcm",
                              "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm",
                              "SC_rgb_gdcm_KY.dcm", "SC_rgb_jpeg.dcm", "SC_rgb_jpeg_app14_dcmd.dcm",
                              "SC_rgb_jpeg_dcmd.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm",
                              "SC_rgb_jpeg_lossy_gdcm.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit.dcm",
                              "SC_rgb_rle_32bit.dcm", "SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm",
                              "SC_rgb_small_odd_jpeg.dcm", "SC_ybr_full_422_uncompressed.dcm", "examples_jpeg2k.dcm",
                              "examples_overlay.dcm", "examples_palette.dcm", "examples_rgb_color.dcm",
                              "image_dfl.dcm")},
    "SC_rgb_jls_lossy_line.dcm": (1, NO_SEG + r".*no StudyInstanceUID"),
    "SC_rgb_jls_lossy_sample.dcm": (1, NO_SEG + r".*no StudyInstanceUID"),
    **{n: (2, NO_SEG + r".*needs its Frame of Reference UID and plane positions") for n in (
        "SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_rle_32bit_2frame.dcm")},
    "examples_ybr_color.dcm": (30, NO_SEG + r".*needs its Frame of Reference UID and plane positions"),
    "UN_sequence.dcm": (0, NO_IMAGE), "empty_charset_LEI.dcm": (0, NO_IMAGE), "no_meta_group_length.dcm": (0, NO_IMAGE),
    "priv_SQ.dcm": (0, NO_IMAGE), "reportsi.dcm": (0, NO_IMAGE + r": Basic Text SR"),
    "reportsi_with_empty_number_tags.dcm": (0, NO_IMAGE + r": Basic Text SR"), "test-SR.dcm": (0, NO_IMAGE + r": Comp"),
    "waveform_ecg.dcm": (0, NO_IMAGE + r": 12-lead ECG"), "badVR.dcm": (0, r"RT Dose"),
    **{n: (0, r"RT Dose") for n in ("rtdose.dcm", "rtdose_1frame.dcm", "rtdose_expb.dcm", "rtdose_expb_1frame.dcm",
                                    "rtdose_rle.dcm", "rtdose_rle_1frame.dcm")},
    "rtplan.dcm": (0, r"RT Plan"), "rtplan_truncated.dcm": (0, r"RT Plan"), "rtstruct.dcm": (0, r"not a DICOM Part 10"),
    "liver_1frame.dcm": (0, r"Segmentation"), "liver_expb_1frame.dcm": (0, r"Segmentation"),
    "meta_missing_tsyntax.dcm": (0, r"malformed image"), "nested_priv_SQ.dcm": (0, r"malformed image"),
    "no_meta.dcm": (0, r"not a DICOM Part 10 file"),
}


def test_every_pydicom_test_file_is_served_or_refused_with_its_reason(segmenter, tmp_path):
    import pydicom

    folder = pydicom_test_files()
    inputs = collect_images([folder])
    assert sorted(p.name for p in inputs) == sorted(EXPECTED), "pydicom's test files changed: update EXPECTED"
    options = SegOptions(label="lesion", algorithm=Algorithm.from_server(segmenter.client))
    assert options.algorithm.version.startswith("banet_model version ")
    results = {r.image: r for r in segment_files(segmenter, inputs, tmp_path, concurrency=2, dicom=options)}
    for path in inputs:
        frames, error = EXPECTED[path.name]
        result = results[str(path)]
        if error is None:
            assert result.status == "ok", (path.name, result.error)
        else:
            assert result.status == "error" and re.search(error, result.error), (path.name, result.error)
            assert path.name in result.error or str(path) in result.error
        masks = sorted((tmp_path / "masks").glob(f"{path.stem}.png")) + sorted(
            (tmp_path / "masks").glob(f"{path.stem}_frame*.png"))
        assert len(masks) == frames, (path.name, masks)
        if not frames:
            continue
        ds = pydicom.dcmread(path)
        for mask_path in masks:
            mask = processing.load_mask(mask_path)
            assert mask.shape == (int(ds.Rows), int(ds.Columns)), path.name
        seg_path = tmp_path / "seg" / f"{path.stem}.dcm"
        assert seg_path.exists() == (error is None), path.name
        if error is None:
            seg = pydicom.dcmread(seg_path)
            assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
                ds.SOPInstanceUID and seg.StudyInstanceUID == ds.StudyInstanceUID
            from_hd = read_seg_with_highdicom(seg_path, ds, label="lesion", algorithm_version=options.algorithm.version)
            assert len(from_hd) == len(masks), path.name
            for from_seg, from_highdicom, mask_path in zip(read_segmentation_masks(seg_path), from_hd, masks):
                np.testing.assert_array_equal(from_seg, processing.load_mask(mask_path), err_msg=path.name)
                np.testing.assert_array_equal(from_highdicom, processing.load_mask(mask_path), err_msg=path.name)
    assert sum(r.status == "ok" for r in results.values()) >= 40
    # a second run without --force replaces nothing
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*") if p.is_file()}
    again = segment_files(segmenter, [folder / "MR_small.dcm"], tmp_path, dicom=options)
    assert again[0].status == "exists"
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


@pytest.mark.needs_data
def test_dicom_versions_of_kvasir_images_give_the_masks_of_the_originals(segmenter, kvasir_test_pairs, tmp_path):
    """RGB secondary capture, the original JPEG stream encapsulated (JPEG Baseline, YBR_FULL_422), and a 12-bit
    MONOCHROME1 CR with a window made from the grey version: each mask equals the served mask of the original
    decoded pixels (the grey one: of the 8-bit grey image replicated to RGB)."""
    import pydicom
    from PIL import Image

    source = tmp_path / "in"
    source.mkdir()
    expected = {}
    for jpeg, _ in kvasir_test_pairs[:3]:
        rgb = processing.load_image(jpeg)
        expected[f"{jpeg.stem}_sc"] = segmenter.predict(rgb).mask
        secondary_capture_rgb(rgb, source / f"{jpeg.stem}_sc.dcm")
        expected[f"{jpeg.stem}_jpeg"] = expected[f"{jpeg.stem}_sc"]
        secondary_capture_jpeg(jpeg, source / f"{jpeg.stem}_jpeg.dcm")
        gray = np.asarray(Image.fromarray(rgb).convert("L"))
        shown = expected_monochrome1_display(gray)
        expected[f"{jpeg.stem}_cr"] = segmenter.predict(np.repeat(shown[..., None], 3, axis=2)).mask
        monochrome1_12bit(gray, source / f"{jpeg.stem}_cr")  # no suffix: found by its DICM marker
    results = segment_files(segmenter, collect_images([source]), tmp_path / "out",
                            dicom=SegOptions(label="polyp"))
    assert [r.status for r in results] == ["ok"] * len(expected), [r.error for r in results]
    for stem, mask in expected.items():
        assert 0 < (mask > 0).mean() < 1, stem  # a real boundary: equality below is not trivial
        np.testing.assert_array_equal(processing.load_mask(tmp_path / "out" / "masks" / f"{stem}.png"), mask > 127)
        (from_seg,) = read_segmentation_masks(tmp_path / "out" / "seg" / f"{stem}.dcm")
        np.testing.assert_array_equal(from_seg, mask > 127, err_msg=stem)
        source_ds = pydicom.dcmread(next(source.glob(f"{stem}*")))
        (from_hd,) = read_seg_with_highdicom(tmp_path / "out" / "seg" / f"{stem}.dcm", source_ds, label="polyp",
                                             algorithm_version="unknown")
        np.testing.assert_array_equal(from_hd, mask > 127, err_msg=stem)
    shutil.rmtree(source)


def test_banet_client_on_a_dicom_file_writes_its_mask_and_seg(triton_server, tmp_path):
    """The issue's "done means": ``banet-client scan.dcm --url HOST:8001 --out OUT`` (the console script's main)
    writes ``OUT/masks/scan.png`` and ``OUT/seg/scan.dcm``, the SEG referencing scan.dcm and equal to the mask."""
    import pydicom

    from banet.cli.client import main

    scan = tmp_path / "scan.dcm"
    shutil.copyfile(pydicom_test_files() / "CT_small.dcm", scan)
    out = tmp_path / "OUT"
    assert main([str(scan), "--url", triton_server.grpc_url, "--out", str(out), "--quiet"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "masks/scan.png", "overlays/scan.png", "results.csv", "seg/scan.dcm"]
    mask = processing.load_mask(out / "masks" / "scan.png")
    assert mask.shape == (128, 128)
    (from_hd,) = read_seg_with_highdicom(out / "seg" / "scan.dcm", pydicom.dcmread(scan), label="lesion")
    np.testing.assert_array_equal(from_hd, mask)


def test_bombs_get_their_own_error_and_the_batch_goes_on_to_a_multi_frame_seg(segmenter, tmp_path):
    """One at a time (concurrency 1): a header claiming 10000 frames of 4096x4096 and a 1 MB deflated file inflating
    past MAX_DICOM_BYTES are each refused with their reason; the next file, a 3-frame enhanced CT in a patient
    coordinate system, is served: 3 masks and a SEG of 3 frames, read back by source frame with highdicom."""
    import pydicom

    inputs = [frame_count_bomb(tmp_path / "frames.dcm", frames=10_000, rows=4096, columns=4096),
              deflate_bomb(tmp_path / "deflated.dcm", MAX_DICOM_BYTES + 1),
              enhanced_ct(tmp_path / "cine.dcm", frames=3)]
    frames, deflated, cine = segment_files(segmenter, inputs, tmp_path / "out", concurrency=1)
    assert frames.status == "error" and "10000 frame(s) of 4096x4096 pixels" in frames.error
    assert "refused before decoding" in frames.error
    assert deflated.status == "error" and "Deflated Explicit VR Little Endian) inflates to more than" in deflated.error
    assert cine.status == "ok", cine.error
    masks = [processing.load_mask(tmp_path / "out" / "masks" / f"cine_frame{i:04d}.png") for i in (1, 2, 3)]
    from_hd = read_seg_with_highdicom(tmp_path / "out" / "seg" / "cine.dcm", pydicom.dcmread(inputs[2]), label="lesion")
    for from_highdicom, mask in zip(from_hd, masks):
        np.testing.assert_array_equal(from_highdicom, mask)
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [
        "cine_frame0001.png", "cine_frame0002.png", "cine_frame0003.png"]
