"""Parity on real Kvasir-SEG images with real ONNX Runtime sessions, scored by export.parity's gates."""

from __future__ import annotations

import pytest

from bench.backends import RunnerBackend, TorchBackend, TorchVariant, Unavailable, ort_backend
from bench.backend_parity import score_backends

BENCH_SIZE = 64  # the size of the bench_artifacts export (tests/bench/conftest.py)

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def parity_set(data_root):
    from export.parity import load_parity_set

    return load_parity_set(f"{data_root / 'kvasir-seg'}:test", count=6)


@pytest.fixture(scope="module")
def reference(bench_checkpoint):
    from banet.checkpoint import model_from_checkpoint

    return TorchBackend(model_from_checkpoint(bench_checkpoint)[0], TorchVariant())


def test_onnx_artifacts_scored_against_fp32(bench_artifacts, reference, parity_set):
    from export.parity import DEFAULT_GATES

    backends = [ort_backend(bench_artifacts / "model.onnx", "fp32"),
                ort_backend(bench_artifacts / "model_int8.onnx", "int8"),
                Unavailable("tensorrt-fp16@cuda", "the tensorrt Python package is not installed", "fp16", "cuda")]
    rows = {r["backend"]: r for r in score_backends(backends, reference, parity_set, image_size=BENCH_SIZE)}
    fp32, int8, trt = rows["ort-fp32@cpu"], rows["ort-int8@cpu"], rows["tensorrt-fp16@cuda"]
    assert fp32["images"] == int8["images"] == 6
    assert fp32["gate"] == {"min_agreement": DEFAULT_GATES["fp32"].min_agreement,
                            "max_ja_loss": DEFAULT_GATES["fp32"].max_ja_loss,
                            "min_worst_agreement": DEFAULT_GATES["fp32"].min_worst_agreement}
    assert fp32["passed"] and fp32["mean_agreement"] >= 0.999 and fp32["max_abs_logit_diff"] < 1e-3
    assert fp32["worst_image"] in parity_set.names
    assert fp32["reference_ja"] is not None and fp32["ja_loss"] == pytest.approx(0.0, abs=0.05)
    # INT8 really differs from FP32 in its logits; its masks are scored all the same
    assert int8["max_abs_logit_diff"] > fp32["max_abs_logit_diff"]
    assert 0.0 <= int8["worst_agreement"] <= int8["mean_agreement"] <= 1.0
    assert int8["gate_precision"] == "int8"
    assert trt["skipped"] == "the tensorrt Python package is not installed"


def test_a_wrong_backend_fails_the_gate(bench_artifacts, reference, parity_set):
    from export.onnxruntime import ort_runner

    run = ort_runner(bench_artifacts / "model.onnx")
    flipped = RunnerBackend("ort-fp32-flipped@cpu", "fp32", "cpu", lambda: (lambda b: -run(b)))
    (row,) = score_backends([flipped], reference, parity_set, image_size=BENCH_SIZE)
    assert not row["passed"]
    assert row["mean_agreement"] < 0.5
    assert any("agreement" in reason for reason in row["reasons"])
