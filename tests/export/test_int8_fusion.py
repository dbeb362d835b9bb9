"""export.int8_fusion (the static TensorRT INT8 fusibility check) and the placement the TensorRT INT8 graph uses.

Issue 19 defect 12: the INT8 graph had Q/DQ on 15 of 59 convs and 2 of 8 ResNet residual adds in the pattern
TensorRT fuses; the export now places Q/DQ by TensorRT's rules on every conv the mask gate allows, and reports
the check in the manifest.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from export_helpers import artifact as _artifact


def _graph(*, qdq_before_relu: bool = False, residual_dq: bool = True, quantize_b_input: bool = True):
    """x -> Q/DQ -> conv A -> ReLU -> [Q/DQ] -> conv B -> Add(., residual) -> ReLU -> y (4 channels, 8x8).

    The residual is ReLU(A) through the DQ that conv B reads (``residual_dq``) or the float tensor.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def qdq(name: str, src: str) -> str:
        inits.extend([numpy_helper.from_array(np.array(0.05, np.float32), f"{name}_s"),
                      numpy_helper.from_array(np.array(0, np.int8), f"{name}_z")])
        nodes.append(helper.make_node("QuantizeLinear", [src, f"{name}_s", f"{name}_z"], [f"{name}_q"], name=f"{name}_Q"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"],
                                      name=f"{name}_DQ"))
        return f"{name}_dq"

    def weight(name: str) -> str:
        inits.extend([numpy_helper.from_array(rng.integers(-127, 127, (4, 4, 3, 3)).astype(np.int8), f"{name}_w"),
                      numpy_helper.from_array(np.full(4, 0.01, np.float32), f"{name}_ws"),
                      numpy_helper.from_array(np.zeros(4, np.int8), f"{name}_wz")])
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_w", f"{name}_ws", f"{name}_wz"], [f"{name}_wdq"],
                                      name=f"{name}_wDQ", axis=0))
        return f"{name}_wdq"

    nodes_conv = lambda name, src: helper.make_node("Conv", [src, weight(name)], [f"{name}_out"], name=name, pads=[1] * 4)  # noqa: E731
    nodes.append(nodes_conv("A", qdq("x", "x")))
    a_out = qdq("a", "A_out") if qdq_before_relu else "A_out"
    nodes.append(helper.make_node("Relu", [a_out], ["r1"], name="relu1"))
    r1_dq = qdq("r1", "r1")
    nodes.append(nodes_conv("B", r1_dq if quantize_b_input else "r1"))
    nodes.append(helper.make_node("Add", ["B_out", r1_dq if residual_dq else "r1"], ["sum"], name="add"))
    nodes.append(helper.make_node("Relu", ["sum"], ["y"], name="relu2"))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 19)])
    onnx.checker.check_model(model)
    return model


def test_check_reads_tensorrts_fusion_rules():
    """Hand-built graphs with known answers: the fusible pattern, a Q/DQ between conv and ReLU, a float residual,
    a weight-only conv. The graphs run in ONNX Runtime, so they are valid Q/DQ graphs."""
    import onnxruntime as ort

    from export.int8_fusion import check_int8_fusion

    good = check_int8_fusion(_graph())
    assert (good.convs, good.convs_int8, good.convs_weight_only) == (2, 2, 0)
    assert (good.residual_adds, good.residual_adds_fused, good.qdq_between_conv_and_relu) == (1, 1, 0)
    # conv A writes INT8 (its ReLU output's only consumer is the Q); the image's Q is the one reformat
    assert good.int8_outputs == 1 and (good.quantize_standalone, good.dequantize_standalone) == (1, 0)
    assert good.reformat_tensors == ["x"] and good.to_dict()["rules"].startswith("TensorRT developer guide")

    split = check_int8_fusion(_graph(qdq_before_relu=True))
    assert split.qdq_between_conv_and_relu == 1 and split.pointwise_boundaries > good.pointwise_boundaries

    float_residual = check_int8_fusion(_graph(residual_dq=False))
    assert (float_residual.residual_adds_fused, float_residual.residual_adds_float) == (0, 1)
    assert float_residual.float_residual_adds == ["add"]
    # the ReLU output now also goes to the float Add: conv A cannot write INT8, its Q is a reformat of its own
    assert float_residual.int8_outputs == 0 and float_residual.quantize_standalone == 2

    weight_only = check_int8_fusion(_graph(quantize_b_input=False))
    assert (weight_only.convs_int8, weight_only.convs_weight_only) == (1, 1) and weight_only.float_convs == ["B"]
    assert weight_only.residual_adds_float == 1  # conv B runs FP16: nothing INT8 to fuse the add into
    for model in (_graph(), _graph(qdq_before_relu=True), _graph(residual_dq=False), _graph(quantize_b_input=False)):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        assert session.run(None, {"x": np.ones((1, 4, 8, 8), np.float32)})[0].shape == (1, 4, 8, 8)



@pytest.mark.needs_data
def test_int8_graph_is_int8_from_stem_to_head_and_reports_its_fusibility(exported):
    """The manifest's INT8 record holds the check; every conv the gate allows carries Q/DQ on input and weight,
    every ResNet residual add is in TensorRT's fusible pattern, nothing sits between a conv and its ReLU."""
    from export.int8_fusion import check_int8_fusion
    from export.precision import INT8_PLACEMENTS

    path, item = _artifact(exported, "onnx_int8")
    fusion = item["int8_fusion"]
    assert fusion == check_int8_fusion(path).to_dict()
    trials = item["placement_trials"]
    assert [t["placement"] for t in trials] == list(INT8_PLACEMENTS[:len(trials)])
    # the first placement whose calibration-image masks stay within the INT8 gate is kept; 'all' unless the gate forbids
    kept = next((t for t in trials if t["within_gate"]), trials[-1])
    assert item["placement"] == kept["placement"] and all(not t["within_gate"] for t in trials[:-1])
    assert fusion["convs_int8"] == kept["convs"] and fusion["convs_weight_only"] == 0
    if item["placement"] == "all":
        assert fusion["convs_int8"] == fusion["convs"] == 59
    else:  # the gate forbade the fuller placements on this checkpoint (random-ish weights at 64 px)
        assert trials[0]["calibration_agreement_mean"] < 0.98 or trials[0]["calibration_agreement_worst"] < 0.8
    # every residual add whose conv runs in INT8 is in the fusible pattern; the others' convs are FP16
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    for add in (n for n in model.graph.node if n.name in fusion["float_residual_adds"]):
        assert not any(i in producer and producer[i].name not in fusion["float_convs"]
                       and producer[i].op_type == "Conv" for i in add.input), add.name
    assert fusion["residual_adds"] == 8 and fusion["qdq_between_conv_and_relu"] == 0
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["banet.int8_trials"]) == trials and meta["banet.int8_placement"] == item["placement"]


def test_placement_ladder_on_a_tiny_graph(tmp_path):
    """placement_convs: 'all' every conv, 'no_stem_head' drops the stem and final conv, 'heavy' fewer still;
    qdq_tensors puts the residual input of each fused add (never the conv output read by the add)."""
    import torch

    from banet.model import PRESETS, build_model
    from export.onnx import export_onnx
    from export.precision import INT8_PLACEMENTS, placement_convs, qdq_tensors

    torch.manual_seed(0)
    model = build_model(PRESETS["tiny"]).eval()
    export_onnx(model, tmp_path / "m.onnx", image_size=64)
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "m.onnx")))
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv"]
    sets = {p: placement_convs(graph, p) for p in INT8_PLACEMENTS}
    assert sets["all"] == convs
    assert set(sets["no_stem_head"]) == set(convs) - {convs[0], convs[-1]}
    assert 0 < len(sets["heavy"]) < len(sets["no_stem_head"])
    with pytest.raises(ValueError, match="placement"):
        placement_convs(graph, "everything")
    tensors, inputs, _ = qdq_tensors(graph, sets["all"])
    producer = {o: n for n in graph.graph.node for o in n.output}
    adds = {name: t for name, t in inputs.items() if name.endswith("/Add")}
    assert len(adds) == 8
    for name, residual in adds.items():
        add = next(n for n in graph.graph.node if n.name == name)
        fused = next(i for i in add.input if i != residual)
        assert producer[fused].op_type == "Conv" and fused not in tensors, "the conv output read by the add gets no Q"
        assert residual in tensors


@pytest.mark.needs_data
@pytest.mark.needs_trt_builder
def test_full_placement_counts_and_builds(tmp_path, kvasir, trt_builder):
    """The 'all' placement on the tiny graph: 59/59 convs INT8, 8/8 residual adds fusible, no Q/DQ between
    a conv and its ReLU, fewer FP16 convs than the 15-of-59 recipe before; TensorRT parses and builds it."""
    import torch

    from banet.model import PRESETS, build_model
    from export.int8_fusion import check_int8_fusion
    from export.onnx import export_onnx
    from export.parity import image_paths
    from export.precision import quantize_int8, select_calibration_images

    torch.manual_seed(0)
    export_onnx(build_model(PRESETS["tiny"]).eval(), tmp_path / "m.onnx", image_size=64)
    calib = select_calibration_images(image_paths(f"{kvasir}:train"), 8, source="kvasir")
    path = quantize_int8(tmp_path / "m.onnx", tmp_path / "int8.onnx", calib, image_size=64, placements=("all",))
    fusion = check_int8_fusion(path)
    assert (fusion.convs, fusion.convs_int8, fusion.convs_weight_only) == (59, 59, 0)
    assert (fusion.residual_adds, fusion.residual_adds_fused, fusion.qdq_between_conv_and_relu) == (8, 8, 0)
    assert fusion.dequantize_standalone == 0 and fusion.int8_outputs >= 20
    # what is left to convert: the image, Concats of FP16 attention / resize outputs that feed a conv, and a
    # conv + ReLU output that FP16 ops also read
    producer = {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}
    assert {producer.get(t) for t in fusion.reformat_tensors} <= {"Cast", "Concat", "Relu"}
    assert fusion.reformats <= 16, fusion.reformat_tensors

    from export import tensorrt as trt_route

    built = trt_route.build_engine(path, tmp_path / "int8.plan", image_size=64, builder=trt_builder)
    assert built.to_dict()["network"]["convolutions_int8"] == 59
