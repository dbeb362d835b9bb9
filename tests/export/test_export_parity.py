"""The accuracy gate fails a deliberately broken artifact and honours its thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def parity_inputs(real_tiny_checkpoint, kvasir):
    from banet.checkpoint import model_from_checkpoint
    from banet.inference import torch_runner
    from export import parity

    model, _ = model_from_checkpoint(real_tiny_checkpoint)
    data = parity.load_parity_set(f"{kvasir}:test", count=8)
    assert data.truths is not None and len(data.images) == 8
    return data, parity.reference(torch_runner(model), data, image_size=64)


def _perturbed(src: Path, dst: Path, scale: float) -> Path:
    """Multiply every convolution weight by random factors around 1 +- ``scale``."""
    from onnx import numpy_helper

    model = onnx.load(str(src))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        if init.name in conv_weights:
            w = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array((w * (1 + scale * rng.standard_normal(w.shape))).astype(w.dtype), init.name))
    onnx.save(model, str(dst))
    return dst


def test_gate_fails_a_broken_artifact(exported, parity_inputs, tmp_path):
    from export import parity
    from export.onnxruntime import ort_runner

    data, ref = parity_inputs
    good = Path(exported["directory"]) / "model.onnx"
    ok = parity.score(ort_runner(good), data, ref, artifact="good", precision="fp32", image_size=64)
    assert ok.passed, ok.reasons
    broken = _perturbed(good, tmp_path / "broken.onnx", scale=0.5)
    bad = parity.score(ort_runner(broken), data, ref, artifact="broken", precision="int8", image_size=64)
    assert not bad.passed
    assert any("mask agreement" in r for r in bad.reasons)
    assert bad.mean_agreement < 0.98 and bad.worst_agreement <= bad.mean_agreement
    assert bad.worst_image in data.names


def test_gate_thresholds_are_honoured(exported, parity_inputs):
    from export import parity
    from export.onnxruntime import ort_runner

    data, ref = parity_inputs
    run = ort_runner(Path(exported["directory"]) / "model_int8.onnx")
    result = parity.score(run, data, ref, artifact="int8", precision="int8", image_size=64,
                          gate=parity.Gate(min_agreement=1.01, max_ja_loss=-100.0))
    assert not result.passed and len(result.reasons) == 2
    assert result.reference_ja is not None and result.ja_loss == pytest.approx(result.reference_ja - result.artifact_ja)


def test_parse_data_spec():
    from export.parity import parse_data_spec

    assert parse_data_spec("../shared/data/kvasir-seg:train") == (Path("../shared/data/kvasir-seg"), "train")
    assert parse_data_spec("/images") == (Path("/images"), None)
    assert parse_data_spec("C:stuff") == (Path("C:stuff"), None)
