"""Precision that lives in the graph: FP16 casts and explicit INT8 quantization (Q/DQ).

TensorRT 10+ builds strongly typed networks (TensorRT 11 removed the FP16/INT8 builder flags and
the INT8 calibrators), so the reduced precision is written into the ONNX graph here and every
consumer (ONNX Runtime, TensorRT, Triton) runs exactly that graph.

- FP16: ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types=True``
  (I/O stay float32, so clients and Triton configs do not change).
- INT8: ONNX Runtime's ``quantize_static`` in QDQ format, per-channel weights, symmetric int8
  activations and weights (the form TensorRT consumes), calibrated on real images. Only the
  compute-heavy convolutions get Q/DQ (the largest ones that together hold ``mac_coverage`` of the
  graph's convolution multiply-accumulates, never the stem conv on the image or the final conv);
  everything else (small 1x1 convs, high-resolution early layers, the head, the parameter-free
  attention Sigmoid/Mul/Add, Resize, Concat) stays float, as TensorRT explicit quantization is
  usually done. Quantizing every op failed the INT8 gate on the trained tiny model (docs/export.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from banet import processing
from banet.spec import NETWORK_INPUT

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile")
DEFAULT_CALIBRATION_METHOD = "percentile"
PERCENTILE = 99.999
"""Percentile calibration clips each activation range at this percentile of ``|x|`` (ORT's default)."""
DEFAULT_MAC_COVERAGE = 0.75
"""Share of the convolution multiply-accumulates to run in INT8 (the largest convs first)."""
INT8_OP_TYPES = ("Conv",)
"""ORT's ``Entropy`` is left out on purpose: ``quantize_static`` does not pass a histogram bin count
to it, and with its defaults (128 bins, 128 quantized bins) the KL search has a single candidate, so
it returns exactly the MinMax ranges (every scale identical, checked on the BA-Net graph)."""
MIN_CALIBRATION_IMAGES = 8
"""Fewer images than this cannot give activation ranges worth shipping: refused outright."""


class CalibrationError(ValueError):
    """Too little or unusable calibration data; the message names the folder and the counts."""


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write an FP16 copy of the FP32 graph ``src`` (weights and compute in float16, I/O float32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # Resize in fp16 is not implemented by every ORT CPU build; the blocked ops stay fp32 with casts.
    half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    # The converter appends its input casts at the end of the node list; onnx.checker (and strict
    # parsers) want a topologically sorted graph.
    _sort_topologically(half.graph)
    onnx.save(half, str(dst))
    log.info("wrote FP16 graph %s", dst)
    return Path(dst)


def _sort_topologically(graph) -> None:
    """Reorder ``graph.node`` in place so that every node comes after the producers of its inputs."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or dangling inputs near node {pending[0].name!r}")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    nodes = [type(n)() for n in ordered]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


class _ImageReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over preprocessed images, one at a time."""

    def __init__(self, paths: Sequence[Path], size: int, progress: Callable[[int], None] | None = None):
        self.paths = list(paths)
        self.size = size
        self.progress = progress
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.paths):
            return None
        path = self.paths[self.index]
        self.index += 1
        x = processing.preprocess(processing.load_image(path), self.size)[None]
        if self.progress is not None:
            self.progress(1)
        return {NETWORK_INPUT.name: x}

    def rewind(self) -> None:  # some ORT versions call it between calibration passes
        self.index = 0


def select_calibration_images(paths: Sequence[Path], count: int, *, source: str) -> list[Path]:
    """Pick ``count`` images spread evenly over ``paths`` (sorted, deterministic).

    Raises :class:`CalibrationError` when ``source`` holds fewer images than asked for or fewer
    than :data:`MIN_CALIBRATION_IMAGES`.
    """
    if count < MIN_CALIBRATION_IMAGES:
        raise CalibrationError(f"--calib-count {count} is too small: INT8 calibration needs at least "
                               f"{MIN_CALIBRATION_IMAGES} images")
    if len(paths) < count:
        raise CalibrationError(f"{source} holds {len(paths)} calibration images, {count} requested; "
                               f"point --calib-data at more images or lower --calib-count "
                               f"(at least {MIN_CALIBRATION_IMAGES})")
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in picks]


def conv_macs(model) -> dict[str, int]:
    """Multiply-accumulates per image of every ``Conv`` node of a shape-inferred ONNX ``model``, by node name."""
    from onnx import numpy_helper

    values = [*model.graph.value_info, *model.graph.output]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    macs = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        out = shapes.get(node.output[0])
        if node.input[1] not in weights or not out or len(out) != 4 or not all(out[2:]):
            raise ValueError(f"conv {node.name!r}: no static weight or output shape; run shape inference first")
        macs[node.name] = int(np.prod(weights[node.input[1]])) * out[2] * out[3]
    return macs


def select_int8_convs(model, coverage: float = DEFAULT_MAC_COVERAGE) -> list[str]:
    """Names of the ``Conv`` nodes to quantize: the largest by MACs until ``coverage`` of all conv MACs.

    The stem (a conv reading a graph input) and the final convs (no conv after them: the 1-channel
    head) are never picked: they are cheap here and the most sensitive to rounding. Neither is a
    conv whose output an attention gate reads (a ``Sigmoid`` consumer: IA's first branch convs and
    the mini-MTL merge, whose pre-activation outputs feed IA and CFF): ORT's QDQ format also
    quantizes a quantized conv's output, which would hand the gates int8-rounded inputs. ``model``
    must be shape-inferred (:func:`conv_macs`); ``coverage`` in (0, 1].
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"MAC coverage must be in (0, 1], got {coverage}")
    macs = conv_macs(model)
    inputs = {i.name for i in model.graph.input}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def feeds_a_conv(node) -> bool:
        seen, todo = set(), list(node.output)
        while todo:
            for nxt in consumers.get(todo.pop(), []):
                if nxt.op_type == "Conv":
                    return True
                if id(nxt) not in seen:
                    seen.add(id(nxt))
                    todo.extend(nxt.output)
        return False

    def feeds_a_gate(node) -> bool:
        return any(c.op_type == "Sigmoid" for out in node.output for c in consumers.get(out, []))

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    kept_float = {n.name for n in convs if n.input[0] in inputs or not feeds_a_conv(n) or feeds_a_gate(n)}
    total = sum(macs.values())
    picked, covered = [], 0
    for name in sorted((k for k in macs if k not in kept_float), key=lambda k: (-macs[k], k)):
        if covered >= coverage * total:
            break
        covered += macs[name]
        picked.append(name)
    log.info("INT8 convs: %d of %d (%.0f %% of conv MACs); float: stem/head/gate inputs %s", len(picked),
             len(convs), 100.0 * sum(macs[n] for n in picked) / total, sorted(kept_float))
    return picked


def quantize_int8(src: str | Path, dst: str | Path, calibration_images: Sequence[Path], *, image_size: int,
                  method: str = DEFAULT_CALIBRATION_METHOD, mac_coverage: float = DEFAULT_MAC_COVERAGE,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Write an INT8 Q/DQ copy of the FP32 graph ``src`` calibrated on ``calibration_images``.

    ``method`` is one of :data:`CALIBRATION_METHODS` (ORT's MinMax, or Percentile at
    :data:`PERCENTILE`). Only the convs chosen by :func:`select_int8_convs` (``mac_coverage``) get
    Q/DQ; their names are written into the graph's metadata (``banet.int8_nodes``).
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="banet-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph cleanup first, as ORT's quantization guide recommends
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        nodes = select_int8_convs(onnx.load(str(prepared)), mac_coverage)
        quantize_static(
            str(prepared), str(dst), _ImageReader(calibration_images, image_size, progress),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(INT8_OP_TYPES), nodes_to_quantize=nodes,
            calibrate_method=calibrate,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibPercentile": PERCENTILE},
        )
    quantized = onnx.load(str(dst))
    recipe = f"{method} calibration on {len(calibration_images)} images; Q/DQ on {len(nodes)} convs ({mac_coverage:.0%} of conv MACs)"
    for key, value in (("banet.int8_recipe", recipe), ("banet.int8_nodes", ",".join(nodes))):
        quantized.metadata_props.add(key=key, value=value)
    onnx.save(quantized, str(dst))
    log.info("wrote INT8 Q/DQ graph %s (%s)", dst, recipe)
    return Path(dst)
