"""The served network variant: uint8 pixels in, float16 probability out, the arithmetic inside the graph.

:func:`add_uint8_io` wraps any exported graph (FP32, FP16 with float32 I/O, INT8 Q/DQ) without
touching its inside::

    image_u8 (B, S, S, 3) uint8                                    spec.SERVING_INPUT
      -> Cast float32 -> Transpose NCHW -> Mul scale -> Add bias   processing.normalization_affine()
      -> image (B, 3, S, S) float32 -> [the exported network] -> logits (B, 1, S, S) float32
      -> Sigmoid -> Cast float16
    probability (B, 1, S, S) float16                               spec.SERVING_OUTPUT

so the GPU (TensorRT fuses the cast, transpose and affine map into the first layers) does the
normalization and the sigmoid, and a quarter (input) and half (output) of the bytes crosses the
ensemble. (Why float16 and not uint8 levels for the output: :data:`banet.spec.SERVING_OUTPUT`.)

:func:`serving_artifacts` adds one such graph per exported precision to an export; the export's
gate scores each one over the whole served path (:func:`export.parity.score_served`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from banet import processing, spec

log = logging.getLogger(__name__)

SUFFIX = "_serving"
"""Artifact name and file suffix of the uint8-I/O variant (``onnx_fp16_serving``, ``model_fp16_serving.onnx``)."""


class ServingGraphError(ValueError):
    """The graph cannot be wrapped (not the float32 network of :mod:`banet.spec`); the message says why."""


def _float_io(graph) -> tuple[Any, Any]:
    import onnx

    inputs = {t.name: t for t in graph.input}
    outputs = {t.name: t for t in graph.output}
    if spec.NETWORK_INPUT.name not in inputs or spec.NETWORK_OUTPUT.name not in outputs:
        raise ServingGraphError(f"expected input {spec.NETWORK_INPUT.name!r} and output {spec.NETWORK_OUTPUT.name!r}, "
                                f"found inputs {list(inputs)} and outputs {list(outputs)}")
    for tensor in (inputs[spec.NETWORK_INPUT.name], outputs[spec.NETWORK_OUTPUT.name]):
        if tensor.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ServingGraphError(f"{tensor.name} is {onnx.TensorProto.DataType.Name(tensor.type.tensor_type.elem_type)}, "
                                    "expected FLOAT (wrap the float32-I/O graph)")
    return inputs[spec.NETWORK_INPUT.name], outputs[spec.NETWORK_OUTPUT.name]


def graph_io(path: str | Path) -> str:
    """``"uint8"`` or ``"float32"``: which :data:`banet.spec.NETWORK_IO` the ONNX file at ``path`` has."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = [t.name for t in model.graph.input]
    for io in spec.NETWORK_IO:
        if names == [spec.network_tensors(io)[0].name]:
            return io
    raise ServingGraphError(f"{path}: input {names} is neither {spec.SERVING_INPUT.name!r} nor {spec.NETWORK_INPUT.name!r}")


def add_uint8_io(src: str | Path, dst: str | Path) -> Path:
    """Write ``src`` (float32 ``image`` -> ``logits``) as the uint8-I/O serving graph ``dst``.

    The batch axis stays symbolic; the spatial size comes from the source's input. Raises
    :class:`ServingGraphError` for a graph without the spec's float32 I/O.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    image, logits = _float_io(graph)
    dims = image.type.tensor_type.shape.dim
    batch = dims[0].dim_param or spec.BATCH_AXIS_NAME
    height, width = dims[2].dim_value, dims[3].dim_value
    if not (height and width):
        raise ServingGraphError(f"{src}: the image input needs a fixed spatial size, got {[d.dim_param or d.dim_value for d in dims]}")
    scale, bias = processing.normalization_affine()
    prefix = "serving/"
    constants = [
        numpy_helper.from_array(scale.reshape(1, 3, 1, 1), prefix + "scale"),
        numpy_helper.from_array(bias.reshape(1, 3, 1, 1), prefix + "bias"),
    ]
    head = [
        helper.make_node("Cast", [spec.SERVING_INPUT.name], [prefix + "pixels"], to=TensorProto.FLOAT, name=prefix + "cast_in"),
        helper.make_node("Transpose", [prefix + "pixels"], [prefix + "pixels_nchw"], perm=[0, 3, 1, 2], name=prefix + "nhwc_to_nchw"),
        helper.make_node("Mul", [prefix + "pixels_nchw", prefix + "scale"], [prefix + "scaled"], name=prefix + "scale"),
        helper.make_node("Add", [prefix + "scaled", prefix + "bias"], [spec.NETWORK_INPUT.name], name=prefix + "normalize"),
    ]
    tail = [
        helper.make_node("Sigmoid", [spec.NETWORK_OUTPUT.name], [prefix + "probability_f32"], name=prefix + "sigmoid"),
        helper.make_node("Cast", [prefix + "probability_f32"], [spec.SERVING_OUTPUT.name], to=TensorProto.FLOAT16,
                         name=prefix + "cast_out"),
    ]
    nodes = head + list(graph.node) + tail
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    new_input = helper.make_tensor_value_info(spec.SERVING_INPUT.name, TensorProto.UINT8, [batch, height, width, 3])
    new_output = helper.make_tensor_value_info(spec.SERVING_OUTPUT.name, TensorProto.FLOAT16, [batch, 1, height, width])
    graph.input.remove(image)
    graph.input.insert(0, new_input)
    graph.output.remove(logits)
    graph.output.insert(0, new_output)
    model.doc_string = (model.doc_string + "\n" if model.doc_string else "") + (
        "banet serving variant: uint8 NHWC pixels in (normalized inside), float16 sigmoid probability out")
    onnx.checker.check_model(model)
    dst = Path(dst)
    onnx.save(model, str(dst))
    log.info("wrote %s (uint8 I/O around %s)", dst, Path(src).name)
    return dst


def serving_path(path: str | Path) -> Path:
    """``model_fp16.onnx`` -> ``model_fp16_serving.onnx`` (beside it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}{SUFFIX}{path.suffix}")


def serving_artifacts(folder: Path, artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One uint8-I/O graph per float ONNX artifact in ``artifacts`` (manifest entries), written beside it."""
    from export.onnx import check_onnx, graph_opset

    out = []
    for art in artifacts:
        if art.get("format") != "onnx" or art.get("io", "float32") != "float32":
            continue
        started = time.perf_counter()
        path = add_uint8_io(folder / art["path"], serving_path(folder / art["path"]))
        info = check_onnx(path, opset=graph_opset(path), io="uint8")
        out.append({"name": f"{art['name']}{SUFFIX}", "precision": art["precision"], "format": "onnx", "io": "uint8",
                    "path": path.name, "source": art["path"], "nodes": info["nodes"],
                    "inputs": info["inputs"], "outputs": info["outputs"],
                    "export_seconds": time.perf_counter() - started,
                    **({"target": art["target"]} if "target" in art else {})})
    return out
