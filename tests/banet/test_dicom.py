"""banet.dicom without a server: the display transform, colour conversion, frames, and the refusals, on pydicom's
own test files (read from the package folder) and on DICOM files made here from known pixels."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from banet.dicom import DicomError, is_dicom_file, read_dicom
from dicom_helpers import (expected_monochrome1_display, monochrome1_12bit, pydicom_test_files,
                           secondary_capture_rgb)

pytestmark = pytest.mark.needs_dicom


@pytest.fixture(scope="module")
def files():
    return pydicom_test_files()


def test_import_banet_dicom_does_not_import_pydicom():
    code = "import sys, banet.dicom, banet.dicom_seg, banet.client; print('pydicom' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_monochrome1_12bit_window_reproduces_the_8bit_image(tmp_path):
    """Stored ``s = 1000 + 8 (255 - g)``, rescaled ``x = s - 1024``; the window has width ``w = 255*8 + 1`` and centre
    ``c = -24 + 0.5 + (w - 1)/2``, so DICOM's linear VOI function maps ``x`` onto ``(x + 24) / (8*255)`` of the output
    range, i.e. 8-bit level ``255 - g``, and MONOCHROME1 inverts it back to ``g``."""
    gray = np.random.default_rng(0).integers(0, 256, size=(37, 53), dtype=np.uint8)
    image = read_dicom(monochrome1_12bit(gray, tmp_path / "cr.dcm"))
    assert len(image.frames) == 1 and image.frames[0].shape == (37, 53, 3)
    assert "window" in image.display and "MONOCHROME1" in image.display and "modality LUT" in image.display
    frame = image.frames[0]
    assert (frame[..., 0] == frame[..., 1]).all() and (frame[..., 0] == frame[..., 2]).all()
    np.testing.assert_array_equal(frame[..., 0], expected_monochrome1_display(gray))


def test_without_a_window_the_full_range_of_the_values_is_shown(tmp_path):
    import pydicom

    gray = np.random.default_rng(1).integers(0, 256, size=(20, 30), dtype=np.uint8)
    path = monochrome1_12bit(gray, tmp_path / "cr.dcm")
    ds = pydicom.dcmread(path)
    del ds.WindowCenter, ds.WindowWidth
    ds.PhotometricInterpretation = "MONOCHROME2"
    stored = np.frombuffer(ds.PixelData, dtype=np.uint16).reshape(20, 30).copy()
    stored[0, 0], stored[-1, -1] = 1200, 1800  # no outliers: the range is that of the image
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    frame = read_dicom(path).frames[0][..., 0]
    low, high = stored.min(), stored.max()
    expected = np.rint((stored - low) * (255.0 / (high - low))).astype(np.uint8)
    np.testing.assert_array_equal(frame, expected)
    assert frame.min() == 0 and frame.max() == 255


def test_rgb_secondary_capture_is_read_unchanged(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(11, 17, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_dicom(secondary_capture_rgb(rgb, tmp_path / "sc.dcm")).frames[0], rgb)


def test_ybr_files_come_out_as_rgb(files):
    """dcmtk wrote the same picture as RGB and as YCbCr (YBR_FULL, YBR_FULL_422): all read as the same RGB."""
    reference = read_dicom(files / "SC_rgb_dcmtk_+eb+cr.dcm").frames[0].astype(int)
    for name in ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_ybr_full_422_uncompressed.dcm"):
        frame = read_dicom(files / name).frames[0].astype(int)
        assert np.abs(frame - reference).mean() < 4, name  # lossy JPEG of a YCbCr picture: a few levels


def test_palette_colour_is_expanded(files):
    frame = read_dicom(files / "examples_palette.dcm").frames[0]
    assert frame.shape == (350, 800, 3)
    assert (frame[..., 0] != frame[..., 1]).any()  # colour, not a grey index


def test_multi_frame_gives_frames(files):
    image = read_dicom(files / "examples_ybr_color.dcm")
    assert len(image.frames) == 30 and all(f.shape == (240, 320, 3) for f in image.frames)
    assert not all((f == image.frames[0]).all() for f in image.frames[1:])


REFUSED = {
    "test-SR.dcm": r"no Pixel Data: Comprehensive SR Storage",
    "reportsi.dcm": r"no Pixel Data: Basic Text SR Storage",
    "rtplan.dcm": r"RT Plan",
    "rtdose.dcm": r"RT Dose",
    "waveform_ecg.dcm": r"no Pixel Data: 12-lead ECG Waveform Storage",
    "liver_1frame.dcm": r"Segmentation \(already a segmentation",
    "MR_truncated.dcm": r"truncated or malformed pixel data",
    "no_meta.dcm": r"not a DICOM Part 10 file",
    "nested_priv_SQ.dcm": r"malformed image: the required element",
    "JPEG-lossy.dcm": r"cannot decode the pixel data \(JPEG Extended",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_dicom_is_refused_with_its_reason(files, name):
    with pytest.raises(DicomError, match=REFUSED[name]) as err:
        read_dicom(files / name)
    assert name in str(err.value)


def test_unsupported_photometric_interpretation_is_named(files, tmp_path):
    import pydicom

    ds = pydicom.dcmread(files / "SC_rgb_small_odd.dcm")
    ds.PhotometricInterpretation = "HSV"
    ds.save_as(tmp_path / "hsv.dcm")
    with pytest.raises(DicomError, match=r"photometric interpretation 'HSV' is not supported"):
        read_dicom(tmp_path / "hsv.dcm")


def test_transfer_syntax_without_a_decoder_names_syntax_and_packages(files, monkeypatch):
    """pydicom's real JPEG 2000 decoder with its installed plugins taken away (as on a machine without them)."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0"),
                                                  "pillow": ("pillow>=10.0",)})
    with pytest.raises(DicomError) as err:
        read_dicom(files / "MR_small_jp2klossless.dcm")
    message = str(err.value)
    assert "1.2.840.10008.1.2.4.90" in message and "JPEG 2000 Image Compression (Lossless Only)" in message
    assert "no decoder installed" in message and "pylibjpeg-openjpeg" in message


def test_dicom_files_are_recognised_by_suffix_and_by_marker(files, tmp_path):
    from banet.client import collect_images

    shutil.copy(files / "MR_small.dcm", tmp_path / "IM0001")  # PACS exports often have no suffix
    shutil.copy(files / "CT_small.dcm", tmp_path / "b.DICOM")
    (tmp_path / "notes").write_bytes(b"\0" * 200)  # no suffix, no DICM marker: not an input
    (tmp_path / "c.png").write_bytes(b"")
    assert is_dicom_file(tmp_path / "IM0001") and is_dicom_file(tmp_path / "b.DICOM")
    assert not is_dicom_file(tmp_path / "notes") and not is_dicom_file(tmp_path / "c.png")
    assert [p.name for p in collect_images([tmp_path])] == ["IM0001", "b.DICOM", "c.png"]


def test_a_dicom_data_set_is_found_read_and_scored(tmp_path, tiny_checkpoint):
    """images/*.dcm with masks as DICOM SEG or PNG: found by find_pairs, read by read_pair, scored by evaluate."""
    from banet import processing
    from banet.data.annotations import read_pair
    from banet.data.pairs import find_pairs
    from banet.dicom_seg import build_segmentation, save_dataset
    from banet.evaluate import evaluate

    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    truth = {}
    for index in range(2):
        rgb = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        image = read_dicom(secondary_capture_rgb(rgb, tmp_path / "images" / f"case{index}.dcm"))
        mask = np.zeros((40, 48), np.uint8)
        mask[5:20 + index * 10, 10:30] = 255
        truth[f"case{index}"] = (rgb, mask > 0)
        if index == 0:
            save_dataset(build_segmentation(image.dataset, [mask]), tmp_path / "masks" / "case0.dcm")
        else:
            processing.save_png(mask, tmp_path / "masks" / "case1.png")
    pairs = find_pairs(tmp_path)
    assert [(p.name, p.mask.suffix) for p in pairs] == [("case0", ".dcm"), ("case1", ".png")]
    for pair in pairs:
        image, mask = read_pair(pair)
        np.testing.assert_array_equal(image, truth[pair.name][0])
        np.testing.assert_array_equal(mask, truth[pair.name][1])
    result = evaluate(tiny_checkpoint, tmp_path, None)
    assert result["model"]["images"] == 2 and [r["name"] for r in result["per_image"]] == ["case0", "case1"]
