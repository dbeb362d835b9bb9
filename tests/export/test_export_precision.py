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


def test_int8_quantizes_only_the_heavy_convs(exported):
    """Q/DQ only in front of the chosen convs; stem, head and the attention element-wise ops stay float."""
    from export.precision import DEFAULT_MAC_COVERAGE, conv_macs, select_int8_convs

    model = onnx.load(str(_artifact(exported, "onnx_int8")[0]))
    meta = {p.key: p.value for p in model.metadata_props}
    chosen = set(meta["banet.int8_nodes"].split(","))
    assert chosen and "calibration" in meta["banet.int8_recipe"]
    produced_by = {out: node for node in model.graph.node for out in node.output}

    def dequantized(name: str) -> bool:
        return name in produced_by and produced_by[name].op_type == "DequantizeLinear"

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert {n.name for n in convs if dequantized(n.input[1])} == chosen, "exactly the chosen convs have int8 weights"
    assert convs[0].name not in chosen and convs[-1].name not in chosen, "stem and head stay float"
    # Sigmoid/Mul of the attention blocks, Resize and Concat never read an int8 tensor
    reading_int8 = {n.op_type for n in model.graph.node if any(dequantized(i) for i in n.input)}
    assert not reading_int8 & {"Sigmoid", "Mul", "Resize", "Concat"}, reading_int8

    fp32 = onnx.shape_inference.infer_shapes(onnx.load(str(_artifact(exported, "onnx_fp32")[0])))
    macs = conv_macs(fp32)
    assert sum(macs[n] for n in chosen) >= DEFAULT_MAC_COVERAGE * sum(macs.values())
    assert len(select_int8_convs(fp32, 0.3)) < len(chosen) < len(select_int8_convs(fp32, 1.0)) < len(macs)
    with pytest.raises(ValueError, match="coverage"):
        select_int8_convs(fp32, 0.0)
