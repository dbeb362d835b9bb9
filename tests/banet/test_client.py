"""banet.client without a server: payload checks, file collection, output naming, retries on a dead port.

(The client against a real tritonserver: test_client_compact.py, test_client_faults.py and tests/triton_repo/.)
"""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from banet import processing, spec
from banet.client import (InferenceError, TritonSegmenter, collect_images, encode_image, segment_files)

pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] not installed")


def _dead_url() -> str:
    from banet.server import free_port

    return f"127.0.0.1:{free_port()}"  # free right now: nobody listens there


def test_encode_image_accepts_paths_bytes_and_arrays(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    processing.save_png(rgb, path)
    assert encode_image(path) == path.read_bytes() == encode_image(path.read_bytes())
    np.testing.assert_array_equal(processing.decode_image(encode_image(rgb)), rgb)
    with pytest.raises(ValueError, match=r"expected an \(H, W\) or \(H, W, 3\) uint8 array"):
        encode_image(rgb.astype(np.float32))
    with pytest.raises(TypeError, match="must be a path, bytes or a numpy array"):
        encode_image(3.5)
    with pytest.raises(ValueError, match="missing.png: cannot read"):
        encode_image(tmp_path / "missing.png")


def test_oversized_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(spec.MAX_REQUEST_BYTES + 1)  # sparse: no 64 MB written
    with pytest.raises(ValueError, match=f"big.png: {spec.MAX_REQUEST_BYTES + 1} bytes exceeds the limit"):
        encode_image(big)


def test_collect_images_expands_folders_and_names_missing_paths(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in collect_images([tmp_path])] == ["a.jpg", "b.png"]
    assert [p.name for p in collect_images([tmp_path / "b.png", tmp_path])] == ["b.png", "a.jpg"]
    with pytest.raises(ValueError, match="nope: no such file or folder"):
        collect_images([tmp_path / "nope"])


def test_dead_server_is_retried_with_backoff_then_reported():
    seg = TritonSegmenter(_dead_url(), timeout_s=5, retries=2, backoff_s=0.2)
    started = time.monotonic()
    with pytest.raises(InferenceError, match=r"UNAVAILABLE, 3 attempt\(s\)") as info:
        seg.predict(np.zeros((4, 4, 3), np.uint8))
    assert time.monotonic() - started >= 0.2 + 0.4  # two backoff sleeps happened
    assert info.value.status == "StatusCode.UNAVAILABLE"
    assert not seg.is_ready()
    seg.close()


def test_duplicate_output_names_are_an_error_not_an_overwrite(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for folder in ("x", "y"):
        processing.save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / folder / "same.png")
    seg = TritonSegmenter(_dead_url(), timeout_s=5, retries=0)
    results = segment_files(seg, [tmp_path / "x" / "same.png", tmp_path / "y" / "same.png"], tmp_path / "out")
    assert results[1].status == "error" and "already used by" in results[1].error
    assert results[0].status == "error" and "UNAVAILABLE" in results[0].error  # nobody listens
    seg.close()


def test_cli_reports_each_failure_in_the_csv_and_exits_nonzero(tmp_path, capsys):
    from banet.cli.client import main

    processing.save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "in" / "one.png")
    out = tmp_path / "out"
    code = main([str(tmp_path / "in"), "--url", _dead_url(), "--out", str(out), "--retries", "0", "--quiet"])
    assert code == 1
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["status"], r["image"].endswith("one.png")) for r in rows] == [("error", True)]
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main([str(tmp_path / "in"), "--out", str(out), "--threshold", "1.5"]) == 2
    assert "--threshold must be within [0, 1]" in capsys.readouterr().err


class _Result:
    """A stand-in for tritonclient's InferResult: ``as_numpy`` of the given outputs (None for others)."""

    def __init__(self, **outputs):
        self.outputs = outputs

    def as_numpy(self, name):
        return self.outputs.get(name)


def _disc(h: int = 30, w: int = 40) -> np.ndarray:
    return np.where(np.hypot(*np.mgrid[-h // 2:h - h // 2, -w // 2:w - w // 2]) < 9, 255, 0).astype(np.uint8)


def test_compact_responses_decode_to_the_mask_and_derive_its_boundary():
    from banet import mask_codec

    seg = TritonSegmenter(_dead_url())
    masks = [_disc(), np.zeros((30, 40), np.uint8)]
    result = _Result(MASK_ENCODED=np.asarray([[mask_codec.encode_mask(m)] for m in masks], dtype=object),
                     AREA=np.asarray([[processing.mask_area(m)] for m in masks], np.int64))
    preds = seg._predictions(result, 2, 0.01, 1, "test")
    for pred, mask in zip(preds, masks):
        np.testing.assert_array_equal(pred.mask, mask)
        np.testing.assert_array_equal(pred.boundary, processing.boundary(mask))
    assert preds[0].area == processing.mask_area(masks[0]) > 0
    seg.close()


@pytest.mark.parametrize("outputs, reason", [
    (dict(AREA=np.asarray([[3]], np.int64)), "sent no MASK_ENCODED"),
    (dict(MASK_ENCODED=np.asarray([[b"BMR1junk"]], dtype=object), AREA=np.asarray([[3]], np.int64)), "MASK_ENCODED: corrupt"),
    (dict(MASK_ENCODED=np.asarray([[None]], dtype=object), AREA=np.asarray([[316]], np.int64)), "MASK_ENCODED"),
    (dict(AREA=np.asarray([[1]], np.int64)), "foreground pixels, the server's AREA says 1"),
], ids=["missing", "corrupt", "not-bytes", "area-mismatch"])
def test_a_response_that_does_not_hold_the_mask_is_an_error(outputs, reason):
    from banet import mask_codec

    if "MASK_ENCODED" not in outputs and "foreground" in reason:
        outputs["MASK_ENCODED"] = np.asarray([[mask_codec.encode_mask(_disc())]], dtype=object)
    seg = TritonSegmenter(_dead_url())
    with pytest.raises(InferenceError, match=reason):
        seg._predictions(_Result(**outputs), 1, 0.01, 1, "test")
    seg.close()


def test_full_responses_keep_the_servers_boundary_and_modes_are_checked():
    mask = _disc()
    server_boundary = np.zeros_like(mask)  # whatever the server sent is what the prediction holds
    seg = TritonSegmenter(_dead_url(), outputs="full")
    pred = seg._predictions(_Result(MASK=mask[None], BOUNDARY=server_boundary[None],
                                    AREA=np.asarray([[processing.mask_area(mask)]], np.int64)), 1, 0.01, 1, "test")[0]
    np.testing.assert_array_equal(pred.boundary, server_boundary)  # not re-derived (that one has a contour)
    assert processing.boundary(mask).any()
    seg.close()
    with pytest.raises(ValueError, match="outputs must be one of compact, full"):
        TritonSegmenter(_dead_url(), outputs="tensors")
    from banet.cli.client import build_parser

    assert build_parser().parse_args(["x", "--out", "o"]).outputs == "compact"
    assert build_parser().parse_args(["x", "--out", "o", "--outputs", "full"]).outputs == "full"


def test_raw_model_follows_the_model_unless_named():
    """Arrays go to banet_raw only beside the default banet; another --model gets PNGs unless --raw-model names
    its raw ensemble (review 1820 #3; the routing itself on the real server: test_client_compact.py)."""
    from banet.cli import client as cli_client, video as cli_video

    assert TritonSegmenter().raw_model == spec.RAW_ENSEMBLE_MODEL
    assert TritonSegmenter(model="other").raw_model is None
    assert TritonSegmenter(model="other", raw_model="other_raw").raw_model == "other_raw"
    assert TritonSegmenter(raw_model=None).raw_model is None
    with pytest.raises(ValueError, match="pixels need a raw-pixel model"):
        TritonSegmenter(_dead_url(), raw_model=None).infer(np.zeros((1, 4, 4, 3), np.uint8))
    for parser, first in ((cli_client.build_parser(), "a.png"), (cli_video.build_parser(), "clip.mp4")):
        for extra, want in (([], "auto"), (["--raw-model", "none"], None), (["--raw-model", "x_raw"], "x_raw")):
            assert parser.parse_args([first, "--out", "o", *extra]).raw_model == want
