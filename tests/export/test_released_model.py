"""The released checkpoint (``models/banet_tiny128_kvasir.pt``, issue 21) in the suite: a converged model, where the
other export tests use random weights centred on real images. Its card must describe this file and state the scores
that evaluation gives today, and the export's accuracy gates must be scored on it with real calibration images and
real test images (FP16, ONNX Runtime's CPU INT8 and their uint8 serving variants pass; the TensorRT INT8 graph is
scored, see :data:`TRT_INT8`): the conditions of a user's trained model, where calibration ranges and thresholds
behave as they do in deployment.
TensorRT engines are left out here (``engine=False``); the builds are tested in ``test_export_tensorrt``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from banet.metrics import METRIC_NAMES

RELEASE = Path(__file__).resolve().parents[2] / "models" / "banet_tiny128_kvasir.pt"
GATE_IMAGES = 32
"""Test images the gates are scored on here (the release's own run scored 100: bench/results/precision_parity_*)."""


def _card() -> tuple[str, dict]:
    return RELEASE.with_suffix(".md").read_text(), json.loads(RELEASE.with_suffix(".json").read_text())


def test_the_card_describes_this_checkpoint():
    text, card = _card()
    (digest,) = re.findall(r"sha256 `([0-9a-f]{64})`", text)
    assert hashlib.sha256(RELEASE.read_bytes()).hexdigest() == digest
    assert RELEASE.stat().st_size < 10 * 2 ** 20  # the limit for a committed checkpoint
    assert set(card["scores"]) == {"val", "test"} and card["scores"]["test"]["images"] == 100


def test_the_cards_scores_are_what_evaluation_gives(data_root):
    """Both scorings of the 100 Kvasir-SEG test images, today, against the card (2e-3: thread counts and
    kernels may round a few contour pixels differently); a converged model, far from random weights' ~0.3."""
    from banet.evaluate import evaluate

    _, card = _card()
    expected = card["scores"]["test"]
    result = evaluate(RELEASE, data_root / "kvasir-seg", "test", device="cpu")
    assert len(result["per_image"]) == expected["images"]
    for ours, theirs in (("model_paper", "paper_256"), ("model", "original_size")):
        for metric in METRIC_NAMES:
            assert result[ours]["mean"][metric] == pytest.approx(expected[theirs][metric], abs=2e-3), (ours, metric)
    assert result["model_paper"]["mean"]["JA"] > 0.7


@pytest.fixture(scope="module")
def released_export(data_root, tmp_path_factory) -> dict:
    from export.pipeline import ExportConfig, run_export

    kvasir = data_root / "kvasir-seg"
    return run_export(ExportConfig(
        checkpoint=str(RELEASE), out=str(tmp_path_factory.mktemp("released-export")), fp16=True, int8=True,
        calib_data=f"{kvasir}:train", calib_count=32, parity_data=f"{kvasir}:test", parity_count=GATE_IMAGES,
        engine=False))


TRT_INT8 = ("onnx_int8", "onnx_int8_serving")
"""The TensorRT INT8 graph: on the released seed its gate fails on the 100 test images (mean / worst agreement
0.9781 / 0.7612 against 0.98 / 0.80; bench/results/precision_parity_2026-12-02T2239Z_*_seed1), on seed 0 it
passed; here it must be scored and close, not pass."""


def test_the_gates_on_the_converged_model(released_export):
    artifacts = {a["name"]: a for a in released_export["artifacts"]}
    names = [f"onnx_{p}{io}" for io in ("", "_serving") for p in ("fp32", "fp16", "int8", "int8_cpu")]
    assert sorted(artifacts) == sorted(names)
    assert released_export["image_size"] == 128  # the checkpoint's training size, read from it
    for name in names:
        art = artifacts[name]
        if name in TRT_INT8:
            assert art["gate"] in ("pass", "fail") and art["parity"]["mean_agreement"] > 0.95, (name, art["parity"])
        else:
            assert art["gate"] == "pass", (name, art.get("parity"))
        parity = art["parity"]
        assert parity["images"] == GATE_IMAGES
        # the converged model's masks are not trivial: the reference itself scores like the card (JA in %)
        assert parity["reference_ja"] > 60, (name, parity["reference_ja"])
        assert abs(parity["artifact_ja"] - parity["reference_ja"]) < 1.0, (name, parity)
    # the lower precisions really differ from FP32 (a gate that compared FP32 with itself would read 1.0)
    assert artifacts["onnx_int8"]["parity"]["mean_agreement"] < 1.0
    assert artifacts["onnx_int8_cpu"]["parity"]["mean_agreement"] < 1.0
