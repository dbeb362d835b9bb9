"""PyTorch -> ONNX: export the eval-mode network, simplify it, check it.

The graph has one input :data:`banet.spec.NETWORK_INPUT` ``(B, 3, S, S)`` float32 and one output
:data:`banet.spec.NETWORK_OUTPUT` ``(B, 1, S, S)`` float32, with a dynamic batch axis named
:data:`banet.spec.BATCH_AXIS_NAME` and opset :data:`banet.spec.ONNX_OPSET`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from banet.spec import BATCH_AXIS_NAME, NETWORK_INPUT, NETWORK_OUTPUT, ONNX_OPSET, network_tensors

log = logging.getLogger(__name__)


class OnnxExportError(RuntimeError):
    """The ONNX graph could not be written, simplified or validated; the message says which file."""


def available() -> bool:
    """True when ``onnx`` and ``onnxsim`` are importable (``pip install '.[export]'``)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxsim"))


def export_onnx(model, path: str | Path, *, image_size: int, opset: int = ONNX_OPSET) -> Path:
    """Write the eval-mode ``model`` as ONNX: ``image (B, 3, S, S)`` -> ``logits (B, 1, S, S)``.

    Uses the TorchScript exporter (``dynamo=False``): its graphs are the ones TensorRT's ONNX
    parser and onnxsim have handled for years, and it needs no extra packages.
    """
    import warnings

    import onnx
    import torch

    path = Path(path)
    model = model.eval()
    example = torch.zeros(2, NETWORK_INPUT.shape[0], image_size, image_size, dtype=torch.float32)
    axes = {NETWORK_INPUT.name: {0: BATCH_AXIS_NAME}, NETWORK_OUTPUT.name: {0: BATCH_AXIS_NAME}}
    # The spatial size is fixed per export, so the tracer's "shape check becomes a constant"
    # warnings about the decoder's resize-if-needed branches are expected.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is chosen on purpose
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[NETWORK_INPUT.name], output_names=[NETWORK_OUTPUT.name],
            dynamic_axes=axes, do_constant_folding=True,
        )
    # The tracer leaves the output's C/H/W symbolic (they come out of a Resize); state them, so that
    # onnxsim, TensorRT and Triton see (B, 1, S, S).
    graph = onnx.load(str(path))
    dims = graph.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(dims[1:], (NETWORK_OUTPUT.shape[0], image_size, image_size)):
        dim.Clear()
        dim.dim_value = value
    onnx.save(graph, str(path))
    log.info("exported %s (opset %d, %dx%d)", path, opset, image_size, image_size)
    return path


def simplify_onnx(src: str | Path, dst: str | Path) -> tuple[int, int]:
    """Simplify ``src`` with onnxsim into ``dst``; returns (nodes before, nodes after).

    The batch axis stays dynamic (onnxsim keeps symbolic dimensions it is not told to fix).
    """
    import onnx
    import onnxsim

    model = onnx.load(str(src))
    before = len(model.graph.node)
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise OnnxExportError(f"onnxsim could not validate the simplified graph of {src}")
    onnx.save(simplified, str(dst))
    after = len(simplified.graph.node)
    log.info("simplified %s: %d -> %d nodes", dst, before, after)
    return before, after


def check_onnx(path: str | Path, *, opset: int = ONNX_OPSET, io: str = "float32") -> dict:
    """Run ``onnx.checker`` and verify names, dtypes, rank and opset against :mod:`banet.spec`.

    ``io``: ``"float32"`` for the exported network (:data:`~banet.spec.NETWORK_INPUT` ->
    :data:`~banet.spec.NETWORK_OUTPUT`), ``"uint8"`` for its serving variant
    (:data:`~banet.spec.SERVING_INPUT` ``(B, S, S, 3)`` -> :data:`~banet.spec.SERVING_OUTPUT`).
    Returns ``{"inputs": {name: shape}, "outputs": {name: shape}, "opset": int, "nodes": int}``
    with the symbolic batch axis as its name (a string).
    """
    import numpy as np
    import onnx
    from onnx.helper import np_dtype_to_tensor_dtype

    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:  # onnx raises ValidationError and friends
        raise OnnxExportError(f"{path}: onnx.checker failed: {err}") from None
    model = onnx.load(str(path), load_external_data=False)

    def shapes(values) -> dict[str, list]:
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    inputs, outputs = shapes(model.graph.input), shapes(model.graph.output)
    expected = network_tensors(io)
    for spec, found in zip(expected, (inputs, outputs)):
        if list(found) != [spec.name]:
            raise OnnxExportError(f"{path}: expected one tensor named {spec.name!r}, found {list(found)}")
        shape = found[spec.name]
        channels_at = 3 if spec.shape[-1] == 3 else 1  # NHWC serving input, NCHW otherwise
        if len(shape) != len(spec.shape) + 1 or shape[0] != BATCH_AXIS_NAME or shape[channels_at] != spec.shape[channels_at - 1]:
            layout = "S, S, 3" if channels_at == 3 else f"{spec.shape[0]}, S, S"
            raise OnnxExportError(f"{path}: {spec.name} has shape {shape}, expected [{BATCH_AXIS_NAME}, {layout}]")
    elem = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    for spec in expected:
        want = np_dtype_to_tensor_dtype(np.dtype(spec.dtype))
        if elem[spec.name] != want:
            raise OnnxExportError(f"{path}: {spec.name} is {onnx.TensorProto.DataType.Name(elem[spec.name])}, expected "
                                  f"{onnx.TensorProto.DataType.Name(want)} (I/O keep the spec's dtypes in every precision)")
    found_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if found_opset != opset:
        raise OnnxExportError(f"{path}: opset {found_opset}, expected {opset}")
    return {"inputs": inputs, "outputs": outputs, "opset": found_opset, "nodes": len(model.graph.node)}


def graph_opset(path: str | Path) -> int | None:
    """The default-domain opset of the ONNX file at ``path``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
