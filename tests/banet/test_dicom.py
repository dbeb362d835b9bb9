"""banet.dicom without a server: the display transform, colour conversion, frames, and the refusals, on pydicom's
own test files (read from the package folder) and on DICOM files made here from known pixels."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from banet.dicom import DicomError, is_dicom_file, read_dicom
from banet.spec import MAX_DICOM_BYTES
from dicom_helpers import (cr_with_voi_lut_and_window, deflate_bomb, expected_monochrome1_display, frame_count_bomb,
                           monochrome1_12bit, pydicom_test_files, secondary_capture_rgb, voi_lut_entries)

pytestmark = pytest.mark.needs_dicom


@pytest.fixture(scope="module")
def files():
    return pydicom_test_files()


def test_import_banet_dicom_does_not_import_pydicom():
    code = ("import sys, banet.dicom, banet.dicom_seg, banet.client, banet.data.annotations, banet.data.layouts; "
            "print('pydicom' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_dicom_suffixes_are_defined_once_in_the_spec():
    """One definition (banet.spec), read by the DICOM reader, the data-set reader and the data-set layouts."""
    import ast
    import importlib
    from pathlib import Path

    import banet
    from banet import dicom, spec
    from banet.data import layouts

    # by name: banet.data's own ``from __future__ import annotations`` shadows the submodule as an attribute
    annotations = importlib.import_module("banet.data.annotations")

    assert dicom.DICOM_SUFFIXES is spec.DICOM_SUFFIXES and annotations.DICOM_SUFFIXES is spec.DICOM_SUFFIXES
    assert set(spec.DICOM_SUFFIXES) <= set(layouts.IMAGE_EXTENSIONS)
    package = Path(banet.__file__).parent
    defined = [str(path.relative_to(package)) for path in package.rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "DICOM_SUFFIXES" for t in node.targets)]
    assert defined == ["spec.py"]
    literal = [str(path.relative_to(package)) for path in package.rglob("*.py")
               if '".dcm", ".dicom"' in path.read_text()]
    assert literal == ["spec.py"]


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


@pytest.mark.parametrize("lut_bits", [8, 16])
def test_a_file_with_a_voi_lut_and_a_window_is_shown_with_its_lut_and_says_so(tmp_path, lut_bits):
    """PS3.3 C.11.2: a VOI LUT Sequence and a window are alternative views; the LUT is shown (docs/dicom.md), over the
    LUT's own output range. The window (centre 2048, width 400) would give [0, 0, 128, 255, 255]; the LUT through
    the window's range gave [0, 0, 0, 0, 255]. 8-bit entries: pydicom 3.0's apply_voi wraps the indices of a LUT of
    more than 256 entries (banet.dicom._voi_lut_view)."""
    import pydicom

    stored = np.array([[0, 1024, 2048, 3072, 4095]], dtype=np.uint16)
    path = cr_with_voi_lut_and_window(stored, tmp_path / "cr.dcm", lut_bits=lut_bits)
    image = read_dicom(path)
    lut = voi_lut_entries()
    expected = np.rint(lut[stored] * 255.0 / lut.max()).astype(np.uint8)  # the LUT's range 0..255 onto 0..255
    np.testing.assert_array_equal(image.frames[0][..., 0], expected)
    np.testing.assert_array_equal(expected, [[0, 64, 128, 191, 255]])
    assert image.display.startswith("VOI LUT (first of the VOI LUT Sequence: linear, 4096 entries, output 0..255)")
    assert "window (centre 2048 width 400), an alternative view, not applied" in image.display
    assert pydicom.dcmread(path).VOILUTSequence[0].LUTDescriptor[2] == lut_bits  # the caller's dataset unchanged
    assert image.dataset.VOILUTSequence[0].LUTDescriptor[2] == lut_bits


def test_a_voi_lut_is_given_integers_after_a_fractional_modality_lut(tmp_path):
    """Rescale slope 0.5: the LUT indexes the rounded rescaled values (x = 0.5 s), clipped to its 4096 entries."""
    import pydicom

    stored = np.array([[0, 1025, 4097, 8190, 8191]], dtype=np.uint16)
    path = cr_with_voi_lut_and_window(stored, tmp_path / "cr.dcm", lut_bits=16)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit, ds.RescaleSlope, ds.RescaleIntercept = 13, 12, 0.5, 0
    ds.save_as(path, enforce_file_format=True)
    image = read_dicom(path)
    index = np.clip(np.rint(stored * 0.5), 0, 4095).astype(int)
    np.testing.assert_array_equal(image.frames[0][..., 0], voi_lut_entries()[index])
    assert image.display.startswith("modality LUT, then VOI LUT")


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


@pytest.mark.parametrize(("frames", "size"), [(10_000, 4096), (100_000, 64)])
def test_a_header_claiming_more_pixels_than_the_limit_is_refused_before_decoding(tmp_path, frames, size):
    """Every frame is under MAX_IMAGE_PIXELS; together they decode past MAX_DICOM_BYTES (10000 frames of 4096x4096:
    168 GB; 100000 of 64x64: 1.6 GB with their display frames). Refused from the header, nothing allocated."""
    path = frame_count_bomb(tmp_path / "bomb.dcm", frames=frames, rows=size, columns=size)
    assert path.stat().st_size < 10_000
    with pytest.raises(DicomError, match=rf"{frames} frame\(s\) of {size}x{size} pixels .* over the DICOM file limit "
                       rf"of {MAX_DICOM_BYTES} bytes \(banet.spec.MAX_DICOM_BYTES\); refused before decoding"):
        read_dicom(path)


def test_a_deflated_file_inflating_past_the_limit_is_refused_naming_the_syntax(tmp_path):
    """About 1 MB on disk, MAX_DICOM_BYTES + 1 inflated: refused while inflating in bounded chunks (pydicom's dcmread
    would inflate it whole first). A deflated file within the limit is still read (pydicom's image_dfl.dcm)."""
    path = deflate_bomb(tmp_path / "bomb.dcm", MAX_DICOM_BYTES + 1)
    assert path.stat().st_size < MAX_DICOM_BYTES // 500
    with pytest.raises(DicomError, match=r"bomb.dcm: transfer syntax 1.2.840.10008.1.2.1.99 \(Deflated Explicit VR "
                       r"Little Endian\) inflates to more than the DICOM file limit"):
        read_dicom(path)
    assert read_dicom(pydicom_test_files() / "image_dfl.dcm").frames[0].shape[:2] == (512, 512)


def test_a_file_larger_than_the_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.dcm"
    with open(path, "wb") as fh:  # sparse: no disk used
        fh.write(b"\0" * 128 + b"DICM")
        fh.truncate(MAX_DICOM_BYTES + 1)
    with pytest.raises(DicomError, match=rf"huge.dcm: {MAX_DICOM_BYTES + 1} bytes on disk, over the DICOM file limit"):
        read_dicom(path)
