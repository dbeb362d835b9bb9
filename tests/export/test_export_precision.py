"""FP16 and INT8 (Q/DQ) artifacts: precision in the graph, float32 I/O, they run in ORT and pass their gates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.needs_data


def _artifact(exported, name) -> tuple[Path, dict]:
    item = next(a for a in exported["artifacts"] if a["name"] == name)
    return Path(exported["directory"]) / item["path"], item


def test_fp16_graph_keeps_float32_io(exported):
    from export.onnxruntime import ort_runner

    path, item = _artifact(exported, "onnx_fp16")
    model = onnx.load(str(path))
    dtypes = Counter(init.data_type for init in model.graph.initializer)
    assert dtypes[onnx.TensorProto.FLOAT16] > dtypes[onnx.TensorProto.FLOAT], "weights should be float16"
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    out = ort_runner(path)(np.zeros((2, 3, 64, 64), np.float32))
    assert out.dtype == np.float32 and out.shape == (2, 1, 64, 64)
    assert item["gate"] == "pass", item["parity"]["reasons"]
    assert item["parity"]["max_abs_logit_diff"] > 0, "an FP16 graph that matches FP32 bit for bit is not FP16"


def test_int8_graph_is_qdq_and_passes_gate(exported):
    from export.onnxruntime import ort_runner

    path, item = _artifact(exported, "onnx_int8")
    ops = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    assert item["calibration"]["images"] == 8
    out = ort_runner(path)(np.zeros((3, 3, 64, 64), np.float32))
    assert out.shape == (3, 1, 64, 64)
    # Random weights put about half of each image's logits near the threshold, so INT8 rounding
    # flips more pixels than it would on a trained model: check that the graph is close and that
    # the verdict follows the numbers, not that this untrained model passes.
    par = item["parity"]
    assert 0.8 < par["mean_agreement"] <= 1.0
    assert item["gate"] == ("pass" if par["mean_agreement"] >= 0.98 and par["ja_loss"] <= 0.5 else "fail")


def test_too_little_calibration_data_is_a_clear_error(kvasir):
    from export.parity import image_paths
    from export.precision import CalibrationError, select_calibration_images

    paths = image_paths(f"{kvasir}:val")  # 100 images
    with pytest.raises(CalibrationError, match=r"holds 100 calibration images, 256 requested"):
        select_calibration_images(paths, 256, source=f"{kvasir}:val")
    with pytest.raises(CalibrationError, match="at least"):
        select_calibration_images(paths, 2, source="x")
    picked = select_calibration_images(paths, 10, source="x")
    assert len(set(picked)) == 10 and picked[0] == paths[0] and picked[-1] == paths[-1]
