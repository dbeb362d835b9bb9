"""The CPU INT8 artifact (export/quantize_cpu.py): what ONNX Runtime really fuses, its gate, where it is served.

The fusion checks read ONNX Runtime's own optimized graph (``SessionOptions.optimized_model_filepath``):
a recipe change that leaves the quantized convs running in FP32 (S8 activations, no Q/DQ on a conv
output, a dropped ReLU fold) lowers the ``QLinearConv`` count and fails here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from export_helpers import artifact as _artifact

pytestmark = pytest.mark.needs_data


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_cpu_int8_artifact_is_its_own_recipe(exported):
    """U8 activations, S8 per-channel weights, float32 I/O, target onnxruntime beside the TensorRT one."""
    from export.precision import INT8_TARGETS
    from export.quantize_cpu import TARGET

    path, item = _artifact(exported, "onnx_int8_cpu")
    assert path.name == "model_int8_cpu.onnx" and item["precision"] == "int8"
    assert item["target"] == TARGET == "onnxruntime" and TARGET in INT8_TARGETS
    assert _artifact(exported, "onnx_int8")[1]["target"] == "tensorrt"  # the TensorRT artifact is unchanged
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantize and all(inits[q.input[2]].data_type == onnx.TensorProto.UINT8 for q in quantize), \
        "x86 ORT fuses Q/DQ convs only with U8 activations"
    chosen = _meta(path)["banet.int8_nodes"].split(",")
    producer = {out: node for node in model.graph.node for out in node.output}
    for conv in (n for n in model.graph.node if n.name in chosen):
        weight = producer[conv.input[1]]
        assert weight.op_type == "DequantizeLinear" and inits[weight.input[0]].data_type == onnx.TensorProto.INT8
        assert len(onnx.numpy_helper.to_array(inits[weight.input[1]]).shape) == 1, f"{conv.name}: per-channel scales"
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    from export.onnxruntime import ort_runner

    out = ort_runner(path)(np.zeros((2, 3, 64, 64), np.float32))
    assert out.dtype == np.float32 and out.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name", ["onnx_int8_cpu", "onnx_int8_cpu_serving"])
def test_every_quantized_conv_fuses_into_qlinearconv(exported, name):
    """In ORT's optimized graph each chosen conv is a QLinearConv, the others (stem, head, early
    stages) stay Conv, and no conv weight is dequantized at run time. The manifest records the counts."""
    from export.quantize_cpu import optimized_graph

    path, item = _artifact(exported, name)
    chosen = _meta(path)["banet.int8_nodes"].split(",")
    convs = sum(1 for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")
    graph = optimized_graph(path, path.parent / f"{path.stem}.ort_optimized.onnx")
    (path.parent / f"{path.stem}.ort_optimized.onnx").unlink()
    ops = Counter(n.op_type for n in graph.graph.node)
    int8_convs = ops["QLinearConv"] + ops["NhwcQLinearConv"]
    assert len(chosen) >= 10 and int8_convs == len(chosen), (ops, len(chosen))
    assert ops["Conv"] + ops["FusedConv"] == convs - len(chosen), ops
    assert ops["QLinearAdd"] >= 1, "the residual adds between int8 convs run in int8 too"
    inits = {i.name for i in graph.graph.initializer}
    weight_dq = [n.name for n in graph.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert not weight_dq, f"weights dequantized on every call (a conv that did not fuse): {weight_dq[:3]}"
    if name == "onnx_int8_cpu":
        assert item["ort_optimized_graph"]["int8_convs"] == int8_convs
        assert item["ort_optimized_graph"]["float_convs"] == convs - len(chosen)


def test_the_fusion_count_catches_a_recipe_that_falls_back_to_fp32(exported):
    """The same counter on the TensorRT recipe (S8 activations, no Q/DQ on conv outputs) finds no
    QLinearConv: those convs run in FP32 in ORT, which is what the CPU recipe must never do."""
    from export.quantize_cpu import fused_node_counts

    trt_path, _ = _artifact(exported, "onnx_int8")
    cpu = _artifact(exported, "onnx_int8_cpu")[1]["ort_optimized_graph"]
    trt = fused_node_counts(trt_path)
    assert trt["int8_convs"] < cpu["int8_convs"] // 2, (trt, cpu)


def test_relus_are_folded_and_the_stem_head_and_early_stages_stay_float(exported):
    from export.quantize_cpu import DEFAULT_FLOAT_PREFIXES

    path, item = _artifact(exported, "onnx_int8_cpu")
    chosen = set(_meta(path)["banet.int8_nodes"].split(","))
    fp32 = onnx.load(str(_artifact(exported, "onnx_fp32")[0]))
    convs = [n.name for n in fp32.graph.node if n.op_type == "Conv"]
    assert convs[0] not in chosen and convs[-1] not in chosen, "stem and head stay float"
    assert not any(c.startswith(DEFAULT_FLOAT_PREFIXES) for c in chosen)
    assert chosen == {c for c in convs[1:-1] if not c.startswith(DEFAULT_FLOAT_PREFIXES)}
    model = onnx.load(str(path))
    relus = Counter(n.op_type for n in model.graph.node)["Relu"]
    assert relus < Counter(n.op_type for n in fp32.graph.node)["Relu"] - len(chosen) // 2, \
        "the ReLUs after the int8 convs are folded into their output quantization"
    recipe = _meta(path)["banet.int8_recipe"]
    assert "U8 activations" in recipe and "reduce_range" in recipe and "export CPU flags" in recipe


def test_cpu_int8_gate_is_scored_like_the_others(exported):
    """Mean and worst-image gates, on the float graph and on the served path; quantized, not a copy of FP32."""
    for name in ("onnx_int8_cpu", "onnx_int8_cpu_serving"):
        _, item = _artifact(exported, name)
        par = item["parity"]
        assert item["gate"] == ("pass" if par["passed"] else "fail")
        assert {"mean_agreement", "worst_agreement", "worst_image"} <= par.keys()
        # random-ish weights at 64 px put many logits near the threshold (see test_export_precision)
        assert par["mean_agreement"] >= 0.9 and par["worst_agreement"] >= 0.5, par
    fp16 = _artifact(exported, "onnx_fp16")[1]["parity"]
    assert _artifact(exported, "onnx_int8_cpu")[1]["parity"]["max_abs_logit_diff"] > 5 * fp16["max_abs_logit_diff"]


@pytest.mark.parametrize("backend, artifact", [("python_onnxruntime", "onnx_int8_cpu_serving")])
def test_repository_serves_the_cpu_artifact_on_the_cpu_backend(exported, tmp_path, backend, artifact):
    from banet.spec import NETWORK_MODEL
    from export.pipeline import ExportConfig, promote

    final = Path(exported["directory"])
    config = ExportConfig(checkpoint="unused.pt", out=str(final.parent), image_size=64, int8=True, calib_data="x",
                          repository=str(tmp_path / "repo"), backend=backend, promote="int8", force_promote=True)
    promoted = promote(final, exported, config)
    assert promoted["artifact"] == artifact
    copied = next((tmp_path / "repo" / NETWORK_MODEL / "1").glob("*.onnx"))
    assert copied.read_bytes() == (final / "model_int8_cpu_serving.onnx").read_bytes()


def test_tensorrt_plan_backend_takes_the_tensorrt_int8(exported, tmp_path):
    """tensorrt_plan promotes the engine built from the TensorRT INT8 graph, never the CPU one."""
    from export.pipeline import INT8_ARTIFACT_BY_BACKEND, ExportConfig, ExportError, promote

    assert INT8_ARTIFACT_BY_BACKEND["tensorrt_plan"] == "onnx_int8"
    final = Path(exported["directory"])
    config = ExportConfig(checkpoint="unused.pt", out=str(final.parent), image_size=64, int8=True, calib_data="x",
                          repository=str(tmp_path / "repo"), backend="tensorrt_plan", promote="int8")
    with pytest.raises(ExportError, match="no data-center TensorRT int8 plan"):
        promote(final, exported, config)  # no data-center TensorRT here: no plan from model_int8*.onnx
    assert not (tmp_path / "repo").exists()
