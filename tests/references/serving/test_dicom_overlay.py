"""references/serving/dicom_overlay.py: ``wrap`` makes DICOM versions of an image, ``render`` draws a SEG (read with
highdicom) on the source it references, as banet/dicom.py displays it, and refuses a SEG of another image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.needs_dicom


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def test_wrap_then_render_draws_the_segment_on_each_source(tmp_path, capsys):
    from banet import processing
    from banet.dicom import read_dicom
    from banet.dicom_seg import build_segmentation, save_dataset
    from references.serving.dicom_overlay import CAPTION_HEIGHT, main

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "frame.png")
    assert main(["wrap", str(tmp_path / "frame.png"), "--out", str(tmp_path / "dcm")]) == 0
    sources = [tmp_path / "dcm" / "frame_sc.dcm", tmp_path / "dcm" / "frame_cr.dcm"]
    assert main(["wrap", str(tmp_path / "frame.png"), "--out", str(tmp_path / "dcm")]) == 2  # no overwrite
    mask = _disc((60, 90), (30, 40), 15)
    argv, shown = [], []
    for i, source in enumerate(sources):
        image = read_dicom(source)
        shown.append(image.frames[0])
        seg = save_dataset(build_segmentation(image.dataset, [mask], label="polyp"), tmp_path / f"seg{i}.dcm")
        argv += [str(source), str(seg)]
    np.testing.assert_array_equal(shown[0], rgb)  # the secondary capture shows the image itself
    out = tmp_path / "overlay.png"
    assert main(["render", *argv, "--out", str(out), "--height", "60"]) == 0
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (CAPTION_HEIGHT + 60, 2 * 90, 3)
    far = ~_disc((60, 90), (30, 40), 20)  # beyond the tint and the 3-pixel outline
    edge = processing.boundary(mask) > 0
    for k, display in enumerate(shown):
        panel = picture[CAPTION_HEIGHT:, 90 * k:90 * (k + 1)].astype(int)
        np.testing.assert_array_equal(panel[far], display[far])
        assert (panel[edge] == processing.PREDICTION_COLOUR).all()
        assert np.abs(panel[mask & ~edge] - display[mask & ~edge]).mean() > 5  # tinted
    assert main(["render", *argv, "--out", str(out)]) == 2  # an existing picture is kept
    # a SEG paired with a source it does not reference is refused
    capsys.readouterr()
    assert main(["render", argv[0], argv[3], "--out", str(tmp_path / "wrong.png")]) == 2
    assert "does not reference the source SOP instance" in capsys.readouterr().err
    assert not (tmp_path / "wrong.png").exists()
